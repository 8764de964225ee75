//! The per-consumer rewriting of forwarded RTP, and keyframe bookkeeping. Pure: time is an
//! input.
//!
//! A consumer's stream must look like one continuous stream to its receiver even though it
//! starts in the middle of the producer's, skips what arrived while it was paused, and must
//! begin with a small sequence number (str0m derives the SRTP rollover counter from the
//! extended sequence number, and a receiver starts at 0). So each consumer maps the
//! producer's sequence numbers and timestamps onto its own: at the start of every run
//! (first packet, and the first after a resume) the offsets are chosen so the run continues
//! right after what the consumer sent last, with the timestamp advanced by the wall-clock
//! time in between.

use std::time::{Duration, Instant};

/// Maps a producer's (extended sequence number, RTP timestamp) onto one consumer's.
#[derive(Debug, Clone)]
pub struct Rebaser {
    clock_rate: u32,
    /// The next outgoing sequence number of a new run.
    next_seq: u64,
    seq_offset: i64,
    ts_offset: u32,
    last_out_ts: u32,
    last_sent_at: Option<Instant>,
    /// The first incoming sequence number of the current run; older ones are dropped.
    run_start: u64,
    synced: bool,
}

impl Rebaser {
    /// `initial_seq` and `initial_ts` are the consumer's first outgoing values (random in
    /// practice; a small sequence number keeps the rollover counter at 0).
    pub fn new(initial_seq: u16, initial_ts: u32, clock_rate: u32) -> Self {
        Self {
            clock_rate: clock_rate.max(1),
            next_seq: u64::from(initial_seq),
            seq_offset: 0,
            ts_offset: 0,
            last_out_ts: initial_ts,
            last_sent_at: None,
            run_start: 0,
            synced: false,
        }
    }

    /// The next packet starts a new run (after a pause, a resume or a source switch).
    pub fn resync(&mut self) {
        self.synced = false;
    }

    /// The outgoing (extended sequence number, timestamp) of an incoming packet, or `None`
    /// when it belongs before the current run and must be dropped.
    pub fn rewrite(&mut self, in_seq: u64, in_ts: u32, now: Instant) -> Option<(u64, u32)> {
        if !self.synced {
            self.seq_offset = self.next_seq as i64 - in_seq as i64;
            let out_ts = match self.last_sent_at {
                Some(at) => {
                    let gap = now.saturating_duration_since(at);
                    let ticks = (gap.as_micros() * u128::from(self.clock_rate) / 1_000_000)
                        .clamp(1, u128::from(u32::MAX / 2)) as u32;
                    self.last_out_ts.wrapping_add(ticks)
                }
                None => self.last_out_ts,
            };
            self.ts_offset = out_ts.wrapping_sub(in_ts);
            self.run_start = in_seq;
            self.synced = true;
        }
        if in_seq < self.run_start {
            return None;
        }
        let out_seq = (in_seq as i64 + self.seq_offset) as u64;
        let out_ts = in_ts.wrapping_add(self.ts_offset);
        if out_seq >= self.next_seq {
            self.next_seq = out_seq + 1;
            self.last_out_ts = out_ts;
            self.last_sent_at = Some(now);
        }
        Some((out_seq, out_ts))
    }
}

/// At most one request per interval (PLI/FIR towards a producer).
#[derive(Debug, Clone)]
pub struct Throttle {
    interval: Duration,
    last: Option<Instant>,
}

impl Throttle {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            last: None,
        }
    }

    /// Whether a request may go out now; if so, it counts as sent.
    pub fn allow(&mut self, now: Instant) -> bool {
        match self.last {
            Some(last) if now.saturating_duration_since(last) < self.interval => false,
            _ => {
                self.last = Some(now);
                true
            }
        }
    }
}

/// The video payload formats whose keyframes we recognise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoFormat {
    Vp8,
    H264,
}

/// Whether an RTP payload starts (or, for H264, carries) a keyframe.
pub fn is_keyframe(format: VideoFormat, payload: &[u8]) -> bool {
    match format {
        VideoFormat::Vp8 => vp8_keyframe(payload),
        VideoFormat::H264 => h264_keyframe(payload),
    }
}

/// RFC 7741: skip the payload descriptor; the first partition of a frame (S=1, PID=0) is
/// a keyframe when the P bit of the VP8 header is 0.
fn vp8_keyframe(p: &[u8]) -> bool {
    let Some(&first) = p.first() else {
        return false;
    };
    let start = first & 0x10 != 0;
    let pid = first & 0x07;
    if !start || pid != 0 {
        return false;
    }
    let mut i = 1;
    if first & 0x80 != 0 {
        let Some(&ext) = p.get(i) else { return false };
        i += 1;
        if ext & 0x80 != 0 {
            let Some(&pic) = p.get(i) else { return false };
            i += if pic & 0x80 != 0 { 2 } else { 1 };
        }
        if ext & 0x40 != 0 {
            i += 1;
        }
        if ext & 0x30 != 0 {
            i += 1;
        }
    }
    p.get(i).is_some_and(|b| b & 0x01 == 0)
}

/// RFC 6184: an IDR slice (5) or SPS (7), alone, in a STAP-A (24) or starting a FU-A (28).
fn h264_keyframe(p: &[u8]) -> bool {
    let key = |t: u8| t == 5 || t == 7;
    let Some(&first) = p.first() else {
        return false;
    };
    match first & 0x1f {
        24 => {
            let mut i = 1;
            while i + 2 < p.len() {
                let size = usize::from(u16::from_be_bytes([p[i], p[i + 1]]));
                if size == 0 {
                    return false;
                }
                if key(p[i + 2] & 0x1f) {
                    return true;
                }
                i += 2 + size;
            }
            false
        }
        28 => p.get(1).is_some_and(|h| h & 0x80 != 0 && key(h & 0x1f)),
        t => key(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rebasing_starts_small_and_continues_across_resumes() {
        let t0 = Instant::now();
        let mut r = Rebaser::new(100, 5000, 90_000);
        // The producer is far into its stream; the consumer starts at 100.
        assert_eq!(r.rewrite(70_000, 1_000_000, t0), Some((100, 5000)));
        assert_eq!(r.rewrite(70_001, 1_003_000, t0), Some((101, 8000)));
        // Reordering inside a run is kept; a packet from before the run is dropped.
        assert_eq!(r.rewrite(70_003, 1_006_000, t0), Some((103, 11_000)));
        assert_eq!(r.rewrite(70_002, 1_006_000, t0), Some((102, 11_000)));
        assert_eq!(r.rewrite(69_999, 997_000, t0), None);

        // Paused for 2 s while the producer moved on: the next run continues at 104 and
        // the timestamp advances by the 2 s of wall-clock time.
        r.resync();
        let t1 = t0 + Duration::from_secs(2);
        assert_eq!(
            r.rewrite(75_000, 3_000_000, t1),
            Some((104, 11_000 + 180_000))
        );
        assert_eq!(
            r.rewrite(75_001, 3_000_900, t1),
            Some((105, 11_000 + 180_900))
        );
        assert_eq!(r.rewrite(74_999, 2_999_000, t1), None);
    }

    #[test]
    fn timestamps_wrap() {
        let t0 = Instant::now();
        let mut r = Rebaser::new(0, u32::MAX - 10, 48_000);
        assert_eq!(r.rewrite(5, 0, t0), Some((0, u32::MAX - 10)));
        assert_eq!(r.rewrite(6, 960, t0), Some((1, 949)));
    }

    #[test]
    fn throttle_lets_one_through_per_interval() {
        let t0 = Instant::now();
        let mut t = Throttle::new(Duration::from_millis(1000));
        assert!(t.allow(t0));
        assert!(!t.allow(t0 + Duration::from_millis(999)));
        assert!(t.allow(t0 + Duration::from_millis(1000)));
        assert!(!t.allow(t0 + Duration::from_millis(1500)));
    }

    #[test]
    fn vp8_keyframes() {
        // S=1, PID=0, no extension; VP8 header P bit 0 → keyframe.
        assert!(is_keyframe(VideoFormat::Vp8, &[0x10, 0x00, 0x9d, 0x01]));
        assert!(!is_keyframe(VideoFormat::Vp8, &[0x10, 0x01, 0x9d, 0x01]));
        // Not the start of a partition.
        assert!(!is_keyframe(VideoFormat::Vp8, &[0x00, 0x00]));
        // X=1 with I (15-bit picture id), L and T/K: the header is at index 6.
        assert!(is_keyframe(
            VideoFormat::Vp8,
            &[0x90, 0xE0, 0x80, 0x01, 0x05, 0x20, 0x00]
        ));
        assert!(!is_keyframe(
            VideoFormat::Vp8,
            &[0x90, 0xE0, 0x80, 0x01, 0x05, 0x20, 0x01]
        ));
        // X=1 with a 7-bit picture id only.
        assert!(is_keyframe(VideoFormat::Vp8, &[0x90, 0x80, 0x05, 0x00]));
        assert!(!is_keyframe(VideoFormat::Vp8, &[0x90, 0x80]));
        assert!(!is_keyframe(VideoFormat::Vp8, &[]));
    }

    #[test]
    fn h264_keyframes() {
        assert!(is_keyframe(VideoFormat::H264, &[0x65, 0x88]));
        assert!(is_keyframe(VideoFormat::H264, &[0x67, 0x42]));
        assert!(!is_keyframe(VideoFormat::H264, &[0x41, 0x9a]));
        // STAP-A with SPS + PPS.
        assert!(is_keyframe(
            VideoFormat::H264,
            &[0x78, 0x00, 0x02, 0x67, 0x42, 0x00, 0x02, 0x68, 0xce]
        ));
        assert!(!is_keyframe(
            VideoFormat::H264,
            &[0x78, 0x00, 0x02, 0x41, 0x9a]
        ));
        assert!(!is_keyframe(VideoFormat::H264, &[0x78, 0x00, 0x00, 0x65]));
        // FU-A: start of an IDR, and a middle fragment of one.
        assert!(is_keyframe(VideoFormat::H264, &[0x7c, 0x85, 0x00]));
        assert!(!is_keyframe(VideoFormat::H264, &[0x7c, 0x05, 0x00]));
        assert!(!is_keyframe(VideoFormat::H264, &[]));
    }
}

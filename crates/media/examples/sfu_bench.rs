//! Media benchmark: one room on one media worker, a few publishers and many subscribers,
//! all synthetic str0m peers on loopback in this process (see `synthetic.rs`).
//!
//! cargo run --release -p switchboard-media --example sfu_bench -- \
//!     --publishers 3 --subscribers 50 --seconds 20 --pps 90 --bytes 1000
//!
//! Each publisher sends VP8-shaped packets (`--pps` per second of `--bytes` payload); every
//! subscriber consumes every publisher. Reported: packets forwarded per second (the
//! worker's counter), the worker thread's CPU (from /proc/self/task), the process RSS,
//! and how many packets reached the subscribers.

use std::time::{Duration, Instant};

use serde_json::json;
use switchboard_media::synthetic::SyntheticPeer;
use switchboard_media::{Media, MediaConfig, MediaKind, parse_producer};
use tokio::sync::mpsc;

struct Args {
    publishers: usize,
    subscribers: usize,
    seconds: u64,
    pps: u64,
    bytes: usize,
}

fn args() -> Args {
    let mut a = Args {
        publishers: 3,
        subscribers: 50,
        seconds: 20,
        pps: 90,
        bytes: 1000,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let value = pair.get(1).map(String::as_str).unwrap_or_default();
        match pair[0].as_str() {
            "--publishers" => a.publishers = value.parse().expect("--publishers N"),
            "--subscribers" => a.subscribers = value.parse().expect("--subscribers N"),
            "--seconds" => a.seconds = value.parse().expect("--seconds N"),
            "--pps" => a.pps = value.parse().expect("--pps N"),
            "--bytes" => a.bytes = value.parse().expect("--bytes N"),
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

/// CPU ticks (user + system) of the thread named `name`.
fn thread_ticks(name: &str) -> Option<u64> {
    for entry in std::fs::read_dir("/proc/self/task").ok()? {
        let path = entry.ok()?.path();
        let comm = std::fs::read_to_string(path.join("comm")).ok()?;
        if comm.trim() == name {
            let stat = std::fs::read_to_string(path.join("stat")).ok()?;
            let after = &stat[stat.rfind(')')? + 2..];
            let fields: Vec<&str> = after.split_whitespace().collect();
            let utime: u64 = fields.get(11)?.parse().ok()?;
            let stime: u64 = fields.get(12)?.parse().ok()?;
            return Some(utime + stime);
        }
    }
    None
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let a = args();
    let (tx, _events) = mpsc::unbounded_channel();
    let config = MediaConfig {
        workers: 1,
        listen_ip: "127.0.0.1".parse().unwrap(),
        announced_ip: None,
        port_base: 0,
    };
    let media = Media::start(&config, tx).expect("media workers");
    let room = "bench";
    let rss_idle = rss_mib();

    let mut publishers = Vec::new();
    for i in 0..a.publishers {
        let id = format!("send-{i}");
        let params = media.create_transport(room, &id, true, None).await.unwrap();
        let (mut peer, dtls) = SyntheticPeer::connect_to(&params).unwrap();
        media.connect_transport(room, &id, &dtls).await.unwrap();
        let ssrc = 10_000 + 2 * i as u32;
        let spec = parse_producer(
            MediaKind::Video,
            &json!({
                "mid": "0",
                "codecs": [{"mimeType": "video/VP8", "payloadType": 96, "clockRate": 90000}],
                "encodings": [{"ssrc": ssrc, "rtx": {"ssrc": ssrc + 1}}],
            }),
        )
        .unwrap();
        media
            .produce(room, &id, &format!("p{i}"), spec)
            .await
            .unwrap();
        peer.declare_send("0", MediaKind::Video, ssrc, Some(ssrc + 1));
        publishers.push((peer, ssrc));
    }
    let device = json!({"codecs": [{"mimeType": "video/VP8", "clockRate": 90000}]});
    let mut subscribers = Vec::new();
    let mut consumers = Vec::new();
    for j in 0..a.subscribers {
        let id = format!("recv-{j}");
        let params = media
            .create_transport(room, &id, false, None)
            .await
            .unwrap();
        let (mut peer, dtls) = SyntheticPeer::connect_to(&params).unwrap();
        media.connect_transport(room, &id, &dtls).await.unwrap();
        for i in 0..a.publishers {
            let consumer = format!("c{j}-{i}");
            let rtp = media
                .consume(room, &id, &consumer, &format!("p{i}"), device.clone())
                .await
                .unwrap();
            peer.declare_receive(MediaKind::Video, &rtp).unwrap();
            consumers.push(consumer);
        }
        subscribers.push(peer);
    }
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(60) {
        for (p, _) in publishers.iter_mut() {
            p.poll();
        }
        for s in subscribers.iter_mut() {
            s.poll();
        }
        if publishers.iter().all(|(p, _)| p.connected) && subscribers.iter().all(|s| s.connected) {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let connected = subscribers.iter().filter(|s| s.connected).count();
    for c in &consumers {
        media.resume_consumer(room, c).await.unwrap();
    }

    let counters = media.counters();
    let forwarded = |c: &Vec<&switchboard_media::WorkerCounters>| {
        c.iter()
            .map(|w| {
                w.packets_forwarded
                    .load(std::sync::atomic::Ordering::Relaxed)
            })
            .sum::<u64>()
    };
    let payload = {
        let mut p = vec![0x10u8, 0x00, 0x9d, 0x01, 0x2a];
        p.resize(a.bytes, 0xab);
        p
    };
    let ticks_per_sec = 100.0; // USER_HZ on Linux
    // Warm up 2 s, then measure.
    let interval = Duration::from_secs_f64(1.0 / a.pps as f64);
    let mut next_send = Instant::now();
    let mut seq = 1u64;
    let mut ts = 0u32;
    let warmup_end = Instant::now() + Duration::from_secs(2);
    let mut measuring = None;
    let end = warmup_end + Duration::from_secs(a.seconds);
    let mut received_at_start = 0;
    loop {
        let now = Instant::now();
        if measuring.is_none() && now >= warmup_end {
            received_at_start = subscribers.iter().map(|s| s.packets_received).sum();
            measuring = Some((
                now,
                forwarded(&counters),
                thread_ticks("media-worker-0").unwrap_or(0),
            ));
        }
        if now >= end {
            break;
        }
        while next_send <= now {
            for (p, ssrc) in publishers.iter_mut() {
                p.send_rtp(*ssrc, 96, seq, ts, seq.is_multiple_of(3), &payload);
            }
            seq += 1;
            if seq.is_multiple_of(3) {
                ts = ts.wrapping_add(3000);
            }
            next_send += interval;
        }
        for (p, _) in publishers.iter_mut() {
            p.poll();
        }
        for s in subscribers.iter_mut() {
            s.poll();
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    let received_before: u64 = subscribers.iter().map(|s| s.packets_received).sum();
    let (t0, f0, cpu0) = measuring.expect("measured");
    let secs = t0.elapsed().as_secs_f64();
    let f1 = forwarded(&counters);
    let cpu1 = thread_ticks("media-worker-0").unwrap_or(0);
    let pps = (f1 - f0) as f64 / secs;
    let cpu = (cpu1 - cpu0) as f64 / ticks_per_sec / secs * 100.0;
    let delivered = (received_before - received_at_start) as f64 / secs;
    println!(
        "publishers={} subscribers={} (connected {connected}) consumers={} offered={} pps/publisher payload={} B",
        a.publishers,
        a.subscribers,
        consumers.len(),
        a.pps,
        a.bytes
    );
    println!(
        "forwarded {pps:.0} packets/s ({:.1} Mbit/s payload), worker CPU {cpu:.1}% of one core, \
         {:.0} packets/s per worker-core-second, delivered to subscribers {delivered:.0} packets/s, \
         RSS {:.1} MiB (idle {rss_idle:.1} MiB, includes the synthetic peers)",
        pps * a.bytes as f64 * 8.0 / 1e6,
        if cpu > 0.0 { pps / (cpu / 100.0) } else { 0.0 },
        rss_mib()
    );
}

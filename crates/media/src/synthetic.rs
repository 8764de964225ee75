//! A synthetic WebRTC peer for tests and benchmarks: str0m as the client side of one of
//! our transports (full ICE, controlling, DTLS client), on its own UDP socket.
//!
//! It reads the `createTransport` params exactly as mediasoup-client would and hands back
//! the `dtlsParameters` a client sends in `connectTransport`, so it exercises the same
//! paths as a browser: STUN routed by ufrag, the remote ufrag learned from the first
//! request, DTLS, SRTP and the forwarding.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use str0m::media::{MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpPacket, RtpWrite, Ssrc};
use str0m::{Candidate, Event, IceCreds, Input, Output, Rtc, RtcConfig};

use crate::capabilities::send_tables;

/// One client transport.
pub struct SyntheticPeer {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    deadline: Instant,
    buf: Vec<u8>,
    /// ICE and DTLS completed.
    pub connected: bool,
    /// RTP packets received (after SRTP, RTX unwrapped).
    pub packets_received: u64,
    pub bytes_received: u64,
    /// The last packet received, for assertions.
    pub last_packet: Option<(u32, u64, u32)>,
}

fn field<'a>(v: &'a Value, path: &[&str]) -> io::Result<&'a Value> {
    let mut cur = v;
    for p in path {
        cur = cur
            .get(*p)
            .ok_or_else(|| io::Error::other(format!("transport params lack {path:?}")))?;
    }
    Ok(cur)
}

fn text(v: &Value, path: &[&str]) -> io::Result<String> {
    field(v, path)?
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| io::Error::other(format!("{path:?} is not a string")))
}

impl SyntheticPeer {
    /// A peer for the transport described by `params` (`createTransport`'s `params`).
    /// Returns it and the `dtlsParameters` for `connectTransport`.
    pub fn connect_to(params: &Value) -> io::Result<(SyntheticPeer, Value)> {
        let candidate = &field(params, &["iceCandidates"])?[0];
        let server: SocketAddr = format!(
            "{}:{}",
            text(candidate, &["ip"])?,
            field(candidate, &["port"])?.as_u64().unwrap_or_default()
        )
        .parse()
        .map_err(io::Error::other)?;
        let socket = UdpSocket::bind(SocketAddr::new(server.ip(), 0))?;
        socket.set_nonblocking(true)?;
        let local = socket.local_addr()?;
        // The router's table plus every other dynamic payload type, so tests can send with
        // payload types of their choosing.
        let (codecs, extensions) = send_tables(None);
        let mut config = RtcConfig::new()
            .set_rtp_mode(true)
            .set_extension_map(extensions);
        *config.codec_config() = codecs;
        let now = Instant::now();
        let mut rtc = config.build(now);
        let fingerprint = {
            let mut api = rtc.direct_api();
            api.set_ice_controlling(true);
            api.set_remote_ice_credentials(IceCreds {
                ufrag: text(params, &["iceParameters", "usernameFragment"])?,
                pass: text(params, &["iceParameters", "password"])?,
            });
            let fp = &field(params, &["dtlsParameters", "fingerprints"])?[0];
            let remote = format!("{} {}", text(fp, &["algorithm"])?, text(fp, &["value"])?)
                .parse()
                .map_err(io::Error::other)?;
            api.set_remote_fingerprint(remote);
            api.local_dtls_fingerprint().clone()
        };
        rtc.add_local_candidate(Candidate::host(local, "udp").map_err(io::Error::other)?);
        rtc.add_remote_candidate(Candidate::host(server, "udp").map_err(io::Error::other)?);
        rtc.direct_api()
            .start_dtls(true)
            .map_err(io::Error::other)?;
        let value = fingerprint
            .bytes
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":");
        let dtls = json!({
            "role": "client",
            "fingerprints": [{"algorithm": fingerprint.hash_func, "value": value}],
        });
        let peer = SyntheticPeer {
            rtc,
            socket,
            local,
            deadline: now,
            buf: vec![0; 2048],
            connected: false,
            packets_received: 0,
            bytes_received: 0,
            last_packet: None,
        };
        Ok((peer, dtls))
    }

    /// Declares an outgoing stream (a producer): `mid`, kind, SSRC and RTX SSRC.
    pub fn declare_send(&mut self, mid: &str, kind: MediaKind, ssrc: u32, rtx: Option<u32>) {
        let mid = Mid::from(mid);
        let mut api = self.rtc.direct_api();
        api.declare_media(mid, kind);
        api.declare_stream_tx(Ssrc::from(ssrc), rtx.map(Ssrc::from), mid, None);
    }

    /// Declares an incoming stream from a consumer's `rtpParameters`.
    pub fn declare_receive(&mut self, kind: MediaKind, rtp_parameters: &Value) -> io::Result<()> {
        let mid = Mid::from(text(rtp_parameters, &["mid"])?.as_str());
        let encoding = &field(rtp_parameters, &["encodings"])?[0];
        let ssrc = field(encoding, &["ssrc"])?.as_u64().unwrap_or_default() as u32;
        let rtx = encoding
            .get("rtx")
            .and_then(|r| r.get("ssrc"))
            .and_then(Value::as_u64)
            .map(|r| Ssrc::from(r as u32));
        let mut api = self.rtc.direct_api();
        api.declare_media(mid, kind);
        api.expect_stream_rx(Ssrc::from(ssrc), rtx, mid, None);
        Ok(())
    }

    /// Sends one RTP packet on a declared stream.
    pub fn send_rtp(&mut self, ssrc: u32, pt: u8, seq: u64, ts: u32, marker: bool, payload: &[u8]) {
        let now = Instant::now();
        if let Some(stream) = self.rtc.direct_api().stream_tx(&Ssrc::from(ssrc)) {
            stream.write_rtp(
                RtpWrite::new(pt.into(), seq.into(), ts, now, payload.to_vec())
                    .marker(marker)
                    .nackable(true),
            );
        }
        let _ = self.rtc.handle_input(Input::Timeout(now));
        self.drain();
    }

    /// Reads what arrived and runs due timers; never blocks.
    pub fn poll(&mut self) {
        loop {
            match self.socket.recv_from(&mut self.buf) {
                Ok((n, source)) => {
                    let now = Instant::now();
                    let data = self.buf[..n].to_vec();
                    if let Ok(receive) = Receive::new(Protocol::Udp, source, self.local, &data) {
                        let _ = self.rtc.handle_input(Input::Receive(now, receive));
                        self.drain();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => break,
            }
        }
        let now = Instant::now();
        if now >= self.deadline {
            let _ = self.rtc.handle_input(Input::Timeout(now));
            self.drain();
        }
    }

    /// Polls until `done` holds or `timeout` passes; whether it held.
    pub fn poll_until(&mut self, timeout: Duration, done: impl Fn(&Self) -> bool) -> bool {
        let end = Instant::now() + timeout;
        while Instant::now() < end {
            self.poll();
            if done(self) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        done(self)
    }

    fn drain(&mut self) {
        loop {
            match self.rtc.poll_output() {
                Ok(Output::Transmit(t)) => {
                    let _ = self.socket.send_to(&t.contents, t.destination);
                }
                Ok(Output::Timeout(at)) => {
                    self.deadline = at;
                    return;
                }
                Ok(Output::Event(event)) => self.event(event),
                Err(_) => return,
            }
        }
    }

    fn event(&mut self, event: Event) {
        match event {
            Event::Connected => self.connected = true,
            Event::RtpPacket(RtpPacket {
                header,
                payload,
                seq_no,
                ..
            }) => {
                self.packets_received += 1;
                self.bytes_received += payload.len() as u64;
                self.last_packet = Some((*header.ssrc, *seq_no, header.timestamp));
            }
            _ => {}
        }
    }
}

//! The SFU: seed 002's MediasoupService (a pool of media workers, one per core by default,
//! rooms placed on the least loaded) and the transport/producer/consumer operations of
//! protocol §8, in mediasoup-client's shapes, on str0m (see `sfu-notes.md`).
//!
//! [`Media`] is the signalling side's handle. It knows which worker holds which room and
//! sends commands there; everything about a room's media (its transports, producers and
//! consumers) lives in that worker's thread. Who may use which id is the caller's business
//! (the server's `services::media` keeps that registry).
//!
//! Pure parts, unit-tested: [`capabilities`] (router capabilities, codec matching, str0m
//! tables, consumer parameters), [`demux`] (O(1) packet routing), [`rewrite`] (sequence
//! and timestamp rebasing, keyframe detection, throttling).

pub mod capabilities;
pub mod demux;
pub mod rewrite;
pub mod synthetic;
mod worker;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::Value;
use str0m::config::Fingerprint;
use tokio::sync::{mpsc, oneshot};

use worker::{Command, WorkerHandle};

pub use capabilities::{ProducerSpec, parse_producer, router_rtp_capabilities};
pub use str0m::media::MediaKind;
pub use worker::WorkerCounters;

/// Why a media request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    /// The request is malformed or asks for something unsupported; nothing changed.
    #[error("{0}")]
    Invalid(String),
    /// No such transport, producer or consumer.
    #[error("{0}")]
    NotFound(String),
    /// The state does not allow it (e.g. connecting a transport twice).
    #[error("{0}")]
    Conflict(String),
    /// The media workers are not running.
    #[error("{0}")]
    Unavailable(String),
}

/// Where the workers listen and what they announce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaConfig {
    /// Number of workers (threads, one UDP port each).
    pub workers: usize,
    /// The address the UDP sockets bind to.
    pub listen_ip: IpAddr,
    /// The address put in ICE candidates (a public address behind NAT). When unset: the
    /// listen address, or 127.0.0.1 if that is unspecified (0.0.0.0).
    pub announced_ip: Option<IpAddr>,
    /// Worker `i` binds `port_base + i`; 0 lets the system choose each port.
    pub port_base: u16,
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            workers: default_workers(),
            listen_ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            announced_ip: None,
            port_base: 40000,
        }
    }
}

/// One worker per core.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl MediaConfig {
    pub fn announced(&self) -> IpAddr {
        match self.announced_ip {
            Some(ip) => ip,
            None if self.listen_ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            None => self.listen_ip,
        }
    }
}

/// What the workers report to the signalling side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaEvent {
    /// ICE and DTLS completed on a transport.
    TransportConnected {
        room_id: String,
        transport_id: String,
    },
    /// The first RTP packet of a room arrived from a producer.
    MediaFlowing { room_id: String },
    /// A transport's connection closed on its own (DTLS close or failure); its producers
    /// and consumers are gone.
    TransportClosed {
        room_id: String,
        transport_id: String,
    },
}

/// A transport's DTLS role as the client states it in `connectTransport`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtlsRole {
    Client,
    Server,
    Auto,
}

/// Reads `dtlsParameters {role, fingerprints:[{algorithm, value}]}`: the role and the
/// preferred fingerprint (sha-256 when offered).
pub fn parse_dtls_parameters(value: &Value) -> Result<(DtlsRole, Fingerprint), MediaError> {
    let invalid = |m: &str| MediaError::Invalid(m.to_string());
    let role = match value.get("role").and_then(Value::as_str).unwrap_or("auto") {
        "client" => DtlsRole::Client,
        "server" => DtlsRole::Server,
        "auto" => DtlsRole::Auto,
        _ => {
            return Err(invalid(
                "dtlsParameters.role must be client, server or auto",
            ));
        }
    };
    let list = value
        .get("fingerprints")
        .and_then(Value::as_array)
        .filter(|l| !l.is_empty())
        .ok_or_else(|| invalid("dtlsParameters.fingerprints must be a non-empty array"))?;
    let parsed: Vec<Fingerprint> = list
        .iter()
        .filter_map(|f| {
            let algorithm = f.get("algorithm")?.as_str()?;
            let hex = f.get("value")?.as_str()?;
            if algorithm.is_empty() || algorithm.contains(' ') || hex.len() > 256 {
                return None;
            }
            format!("{} {}", algorithm.to_ascii_lowercase(), hex)
                .parse::<Fingerprint>()
                .ok()
                .filter(|f| !f.bytes.is_empty())
        })
        .collect();
    let best = parsed
        .iter()
        .find(|f| f.hash_func == "sha-256")
        .or_else(|| parsed.first())
        .cloned()
        .ok_or_else(|| invalid("dtlsParameters.fingerprints has no usable fingerprint"))?;
    Ok((role, best))
}

/// The pool of media workers.
pub struct Media {
    workers: Vec<WorkerHandle>,
    placement: Mutex<HashMap<String, usize>>,
    next: AtomicUsize,
}

impl Media {
    /// Binds one UDP socket per worker and starts the threads.
    pub fn start(
        config: &MediaConfig,
        events: mpsc::UnboundedSender<MediaEvent>,
    ) -> std::io::Result<Media> {
        let count = config.workers.max(1);
        let mut workers = Vec::with_capacity(count);
        for index in 0..count {
            let port = if config.port_base == 0 {
                0
            } else {
                config
                    .port_base
                    .checked_add(index as u16)
                    .ok_or_else(|| std::io::Error::other("media port range overflows"))?
            };
            let bind = SocketAddr::new(config.listen_ip, port);
            workers.push(worker::spawn(
                index,
                bind,
                config.announced(),
                events.clone(),
            )?);
        }
        Ok(Media {
            workers,
            placement: Mutex::new(HashMap::new()),
            next: AtomicUsize::new(0),
        })
    }

    /// The UDP addresses the workers announce.
    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.workers.iter().map(|w| w.addr).collect()
    }

    /// Per-worker counters.
    pub fn counters(&self) -> Vec<&WorkerCounters> {
        self.workers.iter().map(|w| w.counters.as_ref()).collect()
    }

    /// Whether a room's media is placed here.
    pub fn has_room(&self, room_id: &str) -> bool {
        self.placement
            .lock()
            .expect("placement lock")
            .contains_key(room_id)
    }

    /// The worker of a room; a new room goes to the worker with the fewest transports
    /// (ties broken round-robin).
    fn place(&self, room_id: &str) -> usize {
        let mut placement = self.placement.lock().expect("placement lock");
        if let Some(index) = placement.get(room_id) {
            return *index;
        }
        let n = self.workers.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let index = (0..n)
            .map(|i| (start + i) % n)
            .min_by_key(|i| self.workers[*i].counters.transports.load(Ordering::Relaxed))
            .unwrap_or(0);
        placement.insert(room_id.to_string(), index);
        index
    }

    fn worker_of(&self, room_id: &str) -> Result<&WorkerHandle, MediaError> {
        let placement = self.placement.lock().expect("placement lock");
        placement
            .get(room_id)
            .map(|i| &self.workers[*i])
            .ok_or_else(|| MediaError::NotFound("the room has no media".into()))
    }

    async fn ask<T>(
        worker: &WorkerHandle,
        make: impl FnOnce(oneshot::Sender<Result<T, MediaError>>) -> Command,
    ) -> Result<T, MediaError> {
        let (tx, rx) = oneshot::channel();
        worker.send(make(tx))?;
        rx.await
            .map_err(|_| MediaError::Unavailable("the media worker stopped".into()))?
    }

    /// `createTransport`: the `params` for mediasoup-client. `device_caps` (send only) are
    /// the device's send capabilities, which fix the transport's payload types.
    pub async fn create_transport(
        &self,
        room_id: &str,
        transport_id: &str,
        send: bool,
        device_caps: Option<Value>,
    ) -> Result<Value, MediaError> {
        let worker = &self.workers[self.place(room_id)];
        Self::ask(worker, |reply| Command::CreateTransport {
            room_id: room_id.to_string(),
            transport_id: transport_id.to_string(),
            send,
            device_caps: if send { device_caps } else { None },
            reply,
        })
        .await
    }

    /// `connectTransport`: the client's DTLS role decides ours ('client' and 'auto' make
    /// us the DTLS server... see [`DtlsRole`]).
    pub async fn connect_transport(
        &self,
        room_id: &str,
        transport_id: &str,
        dtls_parameters: &Value,
    ) -> Result<(), MediaError> {
        let (role, fingerprint) = parse_dtls_parameters(dtls_parameters)?;
        // The client is DTLS client → we are passive. The client is server, or leaves it
        // to us (mediasoup's rule for 'auto') → we connect actively.
        let active = role != DtlsRole::Client;
        let worker = self.worker_of(room_id)?;
        Self::ask(worker, |reply| Command::ConnectTransport {
            transport_id: transport_id.to_string(),
            fingerprint,
            active,
            reply,
        })
        .await
    }

    /// `produce`, with parameters already read by [`parse_producer`].
    pub async fn produce(
        &self,
        room_id: &str,
        transport_id: &str,
        producer_id: &str,
        spec: ProducerSpec,
    ) -> Result<(), MediaError> {
        let worker = self.worker_of(room_id)?;
        Self::ask(worker, |reply| Command::Produce {
            transport_id: transport_id.to_string(),
            producer_id: producer_id.to_string(),
            spec,
            reply,
        })
        .await
    }

    /// `consume`: the consumer's `rtpParameters` (router payload types); it starts paused.
    pub async fn consume(
        &self,
        room_id: &str,
        transport_id: &str,
        consumer_id: &str,
        producer_id: &str,
        device_caps: Value,
    ) -> Result<Value, MediaError> {
        let worker = self.worker_of(room_id)?;
        Self::ask(worker, |reply| Command::Consume {
            transport_id: transport_id.to_string(),
            consumer_id: consumer_id.to_string(),
            producer_id: producer_id.to_string(),
            device_caps,
            reply,
        })
        .await
    }

    pub async fn resume_consumer(
        &self,
        room_id: &str,
        consumer_id: &str,
    ) -> Result<(), MediaError> {
        let worker = self.worker_of(room_id)?;
        Self::ask(worker, |reply| Command::ResumeConsumer {
            consumer_id: consumer_id.to_string(),
            reply,
        })
        .await
    }

    pub async fn set_producer_paused(
        &self,
        room_id: &str,
        producer_id: &str,
        paused: bool,
    ) -> Result<(), MediaError> {
        let worker = self.worker_of(room_id)?;
        Self::ask(worker, |reply| Command::SetProducerPaused {
            producer_id: producer_id.to_string(),
            paused,
            reply,
        })
        .await
    }

    /// Closes a producer and every consumer of it.
    pub async fn close_producer(&self, room_id: &str, producer_id: &str) -> Result<(), MediaError> {
        let worker = self.worker_of(room_id)?;
        Self::ask(worker, |reply| Command::CloseProducer {
            producer_id: producer_id.to_string(),
            reply,
        })
        .await
    }

    pub async fn close_consumer(&self, room_id: &str, consumer_id: &str) -> Result<(), MediaError> {
        let worker = self.worker_of(room_id)?;
        Self::ask(worker, |reply| Command::CloseConsumer {
            consumer_id: consumer_id.to_string(),
            reply,
        })
        .await
    }

    /// Closes a transport with its producers (and their consumers) and consumers.
    pub async fn close_transport(
        &self,
        room_id: &str,
        transport_id: &str,
    ) -> Result<(), MediaError> {
        let worker = self.worker_of(room_id)?;
        Self::ask(worker, |reply| Command::CloseTransport {
            transport_id: transport_id.to_string(),
            reply,
        })
        .await
    }

    /// Frees everything of a room (seed 002's `deleteRouter`).
    pub async fn close_room(&self, room_id: &str) -> Result<(), MediaError> {
        let index = self
            .placement
            .lock()
            .expect("placement lock")
            .remove(room_id);
        let Some(index) = index else { return Ok(()) };
        Self::ask(&self.workers[index], |reply| Command::CloseRoom {
            room_id: room_id.to_string(),
            reply,
        })
        .await
    }
}

impl Drop for Media {
    fn drop(&mut self) {
        for w in &self.workers {
            let _ = w.send(Command::Shutdown);
        }
        for w in &mut self.workers {
            if let Some(thread) = w.thread.take() {
                let _ = thread.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dtls_parameters() {
        let (role, fp) = parse_dtls_parameters(&json!({
            "role": "client",
            "fingerprints": [
                {"algorithm": "sha-1", "value": "AA:BB"},
                {"algorithm": "sha-256", "value": "01:02:0A"}
            ]
        }))
        .unwrap();
        assert_eq!(role, DtlsRole::Client);
        assert_eq!(fp.hash_func, "sha-256");
        assert_eq!(fp.bytes, vec![1, 2, 10]);
        let (role, fp) = parse_dtls_parameters(&json!({
            "fingerprints": [{"algorithm": "SHA-512", "value": "FF"}]
        }))
        .unwrap();
        assert_eq!(role, DtlsRole::Auto);
        assert_eq!(fp.hash_func, "sha-512");
        for bad in [
            json!({"role": "both", "fingerprints": [{"algorithm": "sha-256", "value": "01"}]}),
            json!({"role": "client", "fingerprints": []}),
            json!({"role": "client"}),
            json!({"role": "client", "fingerprints": [{"algorithm": "sha-256", "value": "zz"}]}),
            json!({"role": "client", "fingerprints": [{"algorithm": "sha-256"}]}),
        ] {
            assert!(
                matches!(parse_dtls_parameters(&bad), Err(MediaError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn announced_address_defaults() {
        let mut config = MediaConfig::default();
        assert_eq!(config.announced(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        config.listen_ip = "10.1.2.3".parse().unwrap();
        assert_eq!(config.announced(), "10.1.2.3".parse::<IpAddr>().unwrap());
        config.announced_ip = Some("203.0.113.9".parse().unwrap());
        assert_eq!(config.announced(), "203.0.113.9".parse::<IpAddr>().unwrap());
    }
}

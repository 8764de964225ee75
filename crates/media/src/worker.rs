//! One media worker (seed 002's mediasoup worker): a thread owning one UDP socket, every
//! transport (str0m `Rtc`) of the rooms placed on it, a timer heap, and a command channel
//! from the signalling side with a wake-up.
//!
//! The loop: wait on the socket and the waker until the earliest `Rtc` deadline; run the
//! commands; read every datagram and hand it to its transport (see [`crate::demux`]); fire
//! due timers; then let every transport that was written to send. After each input to an
//! `Rtc` its output is drained until it asks for a timeout (str0m's rule).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use serde_json::{Value, json};
use str0m::config::{CryptoProvider, DtlsCert, Fingerprint};
use str0m::media::{KeyframeRequestKind, MediaKind, Mid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{ExtensionValues, RtpPacket, RtpWrite, Ssrc};
use str0m::{Candidate, Event, IceCreds, Input, Output, Rtc, RtcConfig};
use tokio::sync::{mpsc, oneshot};

use crate::capabilities::{
    self, ProducerSpec, RouterCodec, consumer_rtp_parameters, router_codec_config,
    router_extension_map, send_tables,
};
use crate::demux::{Demux, Route};
use crate::rewrite::{Rebaser, Throttle, VideoFormat, is_keyframe};
use crate::{MediaError, MediaEvent};

const SOCKET: Token = Token(0);
const WAKER: Token = Token(1);
/// At most one keyframe request per producer per interval (sfu-notes.md: about 1/s).
const KEYFRAME_INTERVAL: Duration = Duration::from_millis(1000);
/// The longest the loop sleeps without a deadline (commands wake it anyway).
const IDLE_WAIT: Duration = Duration::from_secs(1);

type Reply<T> = oneshot::Sender<Result<T, MediaError>>;

/// What the signalling side asks a worker to do.
pub(crate) enum Command {
    CreateTransport {
        room_id: String,
        transport_id: String,
        send: bool,
        device_caps: Option<Value>,
        reply: Reply<Value>,
    },
    ConnectTransport {
        transport_id: String,
        fingerprint: Fingerprint,
        active: bool,
        reply: Reply<()>,
    },
    Produce {
        transport_id: String,
        producer_id: String,
        spec: ProducerSpec,
        reply: Reply<()>,
    },
    Consume {
        transport_id: String,
        consumer_id: String,
        producer_id: String,
        device_caps: Value,
        reply: Reply<Value>,
    },
    ResumeConsumer {
        consumer_id: String,
        reply: Reply<()>,
    },
    SetProducerPaused {
        producer_id: String,
        paused: bool,
        reply: Reply<()>,
    },
    CloseProducer {
        producer_id: String,
        reply: Reply<()>,
    },
    CloseConsumer {
        consumer_id: String,
        reply: Reply<()>,
    },
    CloseTransport {
        transport_id: String,
        reply: Reply<()>,
    },
    CloseRoom {
        room_id: String,
        reply: Reply<()>,
    },
    Shutdown,
}

/// Counters a worker shares with the signalling side (for placement and `/stats`).
#[derive(Debug, Default)]
pub struct WorkerCounters {
    pub transports: AtomicUsize,
    pub producers: AtomicUsize,
    pub consumers: AtomicUsize,
    pub packets_in: AtomicU64,
    pub packets_forwarded: AtomicU64,
    pub bytes_forwarded: AtomicU64,
}

/// The signalling side's handle on a running worker.
pub(crate) struct WorkerHandle {
    pub tx: std_mpsc::Sender<Command>,
    pub waker: Arc<Waker>,
    pub addr: SocketAddr,
    pub counters: Arc<WorkerCounters>,
    pub thread: Option<std::thread::JoinHandle<()>>,
}

impl WorkerHandle {
    pub fn send(&self, command: Command) -> Result<(), MediaError> {
        self.tx
            .send(command)
            .map_err(|_| MediaError::Unavailable("the media worker stopped".into()))?;
        self.waker
            .wake()
            .map_err(|e| MediaError::Unavailable(format!("cannot wake the media worker: {e}")))
    }
}

/// Binds the socket and starts the thread. `announced_ip` is what candidates carry.
pub(crate) fn spawn(
    index: usize,
    bind: SocketAddr,
    announced_ip: std::net::IpAddr,
    events: mpsc::UnboundedSender<MediaEvent>,
) -> io::Result<WorkerHandle> {
    let std_socket = std::net::UdpSocket::bind(bind)?;
    std_socket.set_nonblocking(true)?;
    let port = std_socket.local_addr()?.port();
    let mut socket = UdpSocket::from_std(std_socket);
    let poll = Poll::new()?;
    poll.registry()
        .register(&mut socket, SOCKET, Interest::READABLE)?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let provider = str0m::crypto::from_feature_flags();
    let cert = provider
        .dtls_provider
        .generate_certificate()
        .ok_or_else(|| io::Error::other("could not generate the DTLS certificate"))?;
    let (tx, rx) = std_mpsc::channel();
    let counters = Arc::new(WorkerCounters::default());
    let announced = SocketAddr::new(announced_ip, port);
    let worker = Worker {
        socket,
        announced,
        cert,
        provider: Arc::new(provider),
        transports: HashMap::new(),
        ids: HashMap::new(),
        demux: Demux::default(),
        producers: HashMap::new(),
        consumers: HashMap::new(),
        timers: BinaryHeap::new(),
        next_key: 1,
        dirty: Vec::new(),
        dead: Vec::new(),
        flowing_rooms: HashSet::new(),
        events,
        counters: counters.clone(),
    };
    let thread = std::thread::Builder::new()
        .name(format!("media-worker-{index}"))
        .spawn(move || worker.run(poll, rx))?;
    Ok(WorkerHandle {
        tx,
        waker,
        addr: announced,
        counters,
        thread: Some(thread),
    })
}

type Key = u64;

struct Transport {
    id: String,
    room_id: String,
    send: bool,
    rtc: Rtc,
    local_ufrag: String,
    remote_ufrag_known: bool,
    dtls_started: bool,
    connected: bool,
    deadline: Option<Instant>,
    /// Send transports: media SSRC → producer id.
    producers_by_ssrc: HashMap<u32, String>,
    /// Receive transports: mid → consumer id.
    consumers_by_mid: HashMap<Mid, String>,
    next_mid: u32,
}

struct Producer {
    room_id: String,
    transport: Key,
    spec: ProducerSpec,
    format: Option<VideoFormat>,
    paused: bool,
    consumers: Vec<String>,
    keyframes: Throttle,
}

struct Consumer {
    transport: Key,
    producer_id: String,
    mid: Mid,
    ssrc: u32,
    payload_type: u8,
    kind: MediaKind,
    paused: bool,
    waiting_keyframe: bool,
    rebaser: Rebaser,
}

struct Worker {
    socket: UdpSocket,
    announced: SocketAddr,
    cert: DtlsCert,
    provider: Arc<CryptoProvider>,
    transports: HashMap<Key, Transport>,
    ids: HashMap<String, Key>,
    demux: Demux<Key>,
    producers: HashMap<String, Producer>,
    consumers: HashMap<String, Consumer>,
    timers: BinaryHeap<Reverse<(Instant, Key)>>,
    next_key: Key,
    /// Transports written to since they last sent.
    dirty: Vec<Key>,
    /// Transports whose `Rtc` closed itself.
    dead: Vec<Key>,
    flowing_rooms: HashSet<String>,
    events: mpsc::UnboundedSender<MediaEvent>,
    counters: Arc<WorkerCounters>,
}

fn not_found(what: &str) -> MediaError {
    MediaError::NotFound(format!("no such {what}"))
}

fn random_string(len: usize) -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

fn video_format(codec: &RouterCodec) -> Option<VideoFormat> {
    match codec.mime_type {
        "video/VP8" => Some(VideoFormat::Vp8),
        "video/H264" => Some(VideoFormat::H264),
        _ => None,
    }
}

impl Worker {
    fn run(mut self, mut poll: Poll, rx: std_mpsc::Receiver<Command>) {
        let mut events = Events::with_capacity(64);
        let mut buf = vec![0u8; 2048];
        loop {
            let now = Instant::now();
            let wait = self
                .timers
                .peek()
                .map(|Reverse((at, _))| at.saturating_duration_since(now))
                .unwrap_or(IDLE_WAIT)
                .min(IDLE_WAIT);
            if let Err(e) = poll.poll(&mut events, Some(wait))
                && e.kind() != io::ErrorKind::Interrupted
            {
                tracing::error!(error = %e, "media worker poll failed");
                return;
            }
            loop {
                match rx.try_recv() {
                    Ok(Command::Shutdown) | Err(std_mpsc::TryRecvError::Disconnected) => {
                        return;
                    }
                    Ok(command) => self.command(command),
                    Err(std_mpsc::TryRecvError::Empty) => break,
                }
            }
            loop {
                match self.socket.recv_from(&mut buf) {
                    Ok((n, source)) => self.datagram(&buf[..n], source),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        // ICMP errors (a peer went away) surface here on Linux.
                        tracing::debug!(error = %e, "media socket read");
                        continue;
                    }
                }
            }
            self.fire_timers(Instant::now());
            self.flush();
        }
    }

    // --- Network -----------------------------------------------------------------------

    fn datagram(&mut self, buf: &[u8], source: SocketAddr) {
        let (key, remote_ufrag) = match self.demux.route(buf, source) {
            Route::Stun { key, remote_ufrag } => (key, Some(remote_ufrag)),
            Route::Known(key) => (key, None),
            Route::Unknown => return,
        };
        let Some(t) = self.transports.get_mut(&key) else {
            return;
        };
        if let Some(remote) = remote_ufrag
            && !t.remote_ufrag_known
        {
            // mediasoup-client never sends the browser's ICE credentials; an ICE-lite
            // answer is signed with our own password, so the ufrag from the first request
            // is all str0m needs (sfu-notes.md).
            t.rtc.direct_api().set_remote_ice_credentials(IceCreds {
                ufrag: remote.to_string(),
                pass: String::new(),
            });
            t.remote_ufrag_known = true;
        }
        let now = Instant::now();
        let Ok(receive) = Receive::new(Protocol::Udp, source, self.announced, buf) else {
            return;
        };
        let input = Input::Receive(now, receive);
        if !t.rtc.accepts(&input) {
            return;
        }
        if let Err(e) = t.rtc.handle_input(input) {
            tracing::debug!(transport_id = %t.id, error = %e, "media input refused");
        }
        if remote_ufrag.is_some() {
            self.demux.learn(key, source);
        }
        self.drive(key);
    }

    fn fire_timers(&mut self, now: Instant) {
        while let Some(Reverse((at, key))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(t) = self.transports.get_mut(&key) else {
                continue;
            };
            if t.deadline != Some(at) {
                continue; // superseded
            }
            t.deadline = None;
            if let Err(e) = t.rtc.handle_input(Input::Timeout(now)) {
                tracing::debug!(transport_id = %t.id, error = %e, "media timeout failed");
            }
            self.drive(key);
        }
    }

    /// Lets every transport written to send, until nothing is left to do.
    fn flush(&mut self) {
        while !self.dirty.is_empty() {
            let now = Instant::now();
            let mut keys = std::mem::take(&mut self.dirty);
            keys.sort_unstable();
            keys.dedup();
            for key in keys {
                if let Some(t) = self.transports.get_mut(&key) {
                    let _ = t.rtc.handle_input(Input::Timeout(now));
                    self.drive(key);
                }
            }
        }
        for key in std::mem::take(&mut self.dead) {
            if let Some(t) = self.transports.get(&key) {
                let (transport_id, room_id) = (t.id.clone(), t.room_id.clone());
                self.close_transport(key);
                let _ = self.events.send(MediaEvent::TransportClosed {
                    room_id,
                    transport_id,
                });
            }
        }
    }

    /// Drains one `Rtc`'s output until it asks for a timeout, then handles its events.
    fn drive(&mut self, key: Key) {
        let mut events = Vec::new();
        {
            let Some(t) = self.transports.get_mut(&key) else {
                return;
            };
            loop {
                match t.rtc.poll_output() {
                    Ok(Output::Transmit(tx)) => {
                        if let Err(e) = self.socket.send_to(&tx.contents, tx.destination) {
                            tracing::trace!(error = %e, "media send dropped");
                        }
                    }
                    Ok(Output::Timeout(at)) => {
                        if t.deadline != Some(at) {
                            t.deadline = Some(at);
                            self.timers.push(Reverse((at, key)));
                        }
                        break;
                    }
                    Ok(Output::Event(event)) => events.push(event),
                    Err(e) => {
                        tracing::debug!(transport_id = %t.id, error = %e, "media transport failed");
                        t.rtc.disconnect();
                        break;
                    }
                }
            }
            if !t.rtc.is_alive() {
                self.dead.push(key);
            }
        }
        for event in events {
            self.event(key, event);
        }
    }

    fn event(&mut self, key: Key, event: Event) {
        match event {
            Event::Connected => {
                let Some(t) = self.transports.get_mut(&key) else {
                    return;
                };
                t.connected = true;
                let _ = self.events.send(MediaEvent::TransportConnected {
                    room_id: t.room_id.clone(),
                    transport_id: t.id.clone(),
                });
            }
            Event::RtpPacket(packet) => self.forward(key, packet),
            Event::KeyframeRequest(request) => {
                let Some(t) = self.transports.get(&key) else {
                    return;
                };
                let Some(consumer_id) = t.consumers_by_mid.get(&request.mid) else {
                    return;
                };
                let Some(c) = self.consumers.get(consumer_id) else {
                    return;
                };
                let producer_id = c.producer_id.clone();
                self.request_keyframe(&producer_id, request.kind, Instant::now());
            }
            Event::Closed => self.dead.push(key),
            _ => {}
        }
    }

    fn request_keyframe(&mut self, producer_id: &str, kind: KeyframeRequestKind, now: Instant) {
        let Some(p) = self.producers.get_mut(producer_id) else {
            return;
        };
        if p.format.is_none() || !p.keyframes.allow(now) {
            return;
        }
        let ssrc = Ssrc::from(p.spec.ssrc);
        let source = p.transport;
        if let Some(t) = self.transports.get_mut(&source)
            && let Some(stream) = t.rtc.direct_api().stream_rx(&ssrc)
        {
            stream.request_keyframe(kind);
            self.dirty.push(source);
        }
    }

    /// One packet from a producer to each of its running consumers.
    fn forward(&mut self, key: Key, packet: RtpPacket) {
        self.counters.packets_in.fetch_add(1, Ordering::Relaxed);
        let Some(t) = self.transports.get(&key) else {
            return;
        };
        let Some(producer_id) = t.producers_by_ssrc.get(&*packet.header.ssrc) else {
            return;
        };
        let Some(p) = self.producers.get(producer_id) else {
            return;
        };
        if !self.flowing_rooms.contains(&p.room_id) {
            self.flowing_rooms.insert(p.room_id.clone());
            let _ = self.events.send(MediaEvent::MediaFlowing {
                room_id: p.room_id.clone(),
            });
        }
        if p.paused || p.consumers.is_empty() {
            return;
        }
        let producer_id = producer_id.clone();
        let keyframe = p.format.is_none_or(|f| is_keyframe(f, &packet.payload));
        let now = Instant::now();
        let mut want_keyframe = false;
        let ext = ExtensionValues {
            audio_level: packet.header.ext_vals.audio_level,
            voice_activity: packet.header.ext_vals.voice_activity,
            video_orientation: packet.header.ext_vals.video_orientation,
            ..Default::default()
        };
        let consumers = p.consumers.clone();
        for consumer_id in &consumers {
            let Some(c) = self.consumers.get_mut(consumer_id) else {
                continue;
            };
            if c.paused {
                continue;
            }
            // Check the destination first: a keyframe that cannot be delivered yet must not
            // end the consumer's wait, or its picture would start on a delta frame and stay
            // broken until the next spontaneous keyframe.
            let Some(dest) = self.transports.get_mut(&c.transport) else {
                continue;
            };
            if !dest.connected {
                continue;
            }
            if c.waiting_keyframe {
                if !keyframe {
                    want_keyframe = true;
                    continue;
                }
                c.waiting_keyframe = false;
            }
            let Some((seq, ts)) =
                c.rebaser
                    .rewrite(*packet.seq_no, packet.header.timestamp, packet.timestamp)
            else {
                continue;
            };
            if let Some(stream) = dest.rtc.direct_api().stream_tx(&Ssrc::from(c.ssrc)) {
                stream.write_rtp(
                    RtpWrite::new(
                        c.payload_type.into(),
                        seq.into(),
                        ts,
                        packet.timestamp,
                        packet.payload.clone(),
                    )
                    .marker(packet.header.marker)
                    .ext_vals(ext.clone())
                    .nackable(c.kind == MediaKind::Video),
                );
                self.counters
                    .packets_forwarded
                    .fetch_add(1, Ordering::Relaxed);
                self.counters
                    .bytes_forwarded
                    .fetch_add(packet.payload.len() as u64, Ordering::Relaxed);
                self.dirty.push(c.transport);
            }
        }
        if want_keyframe {
            self.request_keyframe(&producer_id, KeyframeRequestKind::Pli, now);
        }
    }

    // --- Commands ----------------------------------------------------------------------

    fn command(&mut self, command: Command) {
        match command {
            Command::CreateTransport {
                room_id,
                transport_id,
                send,
                device_caps,
                reply,
            } => {
                let result = self.create_transport(room_id, transport_id, send, device_caps);
                let _ = reply.send(result);
            }
            Command::ConnectTransport {
                transport_id,
                fingerprint,
                active,
                reply,
            } => {
                let _ = reply.send(self.connect_transport(&transport_id, fingerprint, active));
            }
            Command::Produce {
                transport_id,
                producer_id,
                spec,
                reply,
            } => {
                let _ = reply.send(self.produce(&transport_id, producer_id, spec));
            }
            Command::Consume {
                transport_id,
                consumer_id,
                producer_id,
                device_caps,
                reply,
            } => {
                let _ = reply.send(self.consume(
                    &transport_id,
                    consumer_id,
                    &producer_id,
                    &device_caps,
                ));
            }
            Command::ResumeConsumer { consumer_id, reply } => {
                let _ = reply.send(self.resume_consumer(&consumer_id));
            }
            Command::SetProducerPaused {
                producer_id,
                paused,
                reply,
            } => {
                let _ = reply.send(self.set_producer_paused(&producer_id, paused));
            }
            Command::CloseProducer { producer_id, reply } => {
                let found = self.close_producer(&producer_id);
                let _ = reply.send(if found {
                    Ok(())
                } else {
                    Err(not_found("producer"))
                });
            }
            Command::CloseConsumer { consumer_id, reply } => {
                let found = self.close_consumer(&consumer_id);
                let _ = reply.send(if found {
                    Ok(())
                } else {
                    Err(not_found("consumer"))
                });
            }
            Command::CloseTransport {
                transport_id,
                reply,
            } => {
                let result = match self.ids.get(&transport_id).copied() {
                    Some(key) => {
                        self.close_transport(key);
                        Ok(())
                    }
                    None => Err(not_found("transport")),
                };
                let _ = reply.send(result);
            }
            Command::CloseRoom { room_id, reply } => {
                let keys: Vec<Key> = self
                    .transports
                    .iter()
                    .filter(|(_, t)| t.room_id == room_id)
                    .map(|(k, _)| *k)
                    .collect();
                for key in keys {
                    self.close_transport(key);
                }
                self.flowing_rooms.remove(&room_id);
                let _ = reply.send(Ok(()));
            }
            Command::Shutdown => {}
        }
        self.update_counters();
    }

    fn update_counters(&self) {
        let c = &self.counters;
        c.transports.store(self.transports.len(), Ordering::Relaxed);
        c.producers.store(self.producers.len(), Ordering::Relaxed);
        c.consumers.store(self.consumers.len(), Ordering::Relaxed);
    }

    fn create_transport(
        &mut self,
        room_id: String,
        transport_id: String,
        send: bool,
        device_caps: Option<Value>,
    ) -> Result<Value, MediaError> {
        if self.ids.contains_key(&transport_id) {
            return Err(MediaError::Conflict("the transport exists".into()));
        }
        let ufrag = loop {
            let candidate = random_string(16);
            if !self.demux.has_ufrag(&candidate) {
                break candidate;
            }
        };
        let password = random_string(32);
        let (codecs, exts) = if send {
            send_tables(device_caps.as_ref())
        } else {
            (router_codec_config(), router_extension_map())
        };
        let mut config = RtcConfig::new()
            .set_crypto_provider(self.provider.clone())
            .set_ice_lite(true)
            .set_rtp_mode(true)
            .set_dtls_cert(self.cert.clone())
            .set_local_ice_credentials(IceCreds {
                ufrag: ufrag.clone(),
                pass: password.clone(),
            })
            .set_extension_map(exts);
        *config.codec_config() = codecs;
        let now = Instant::now();
        let mut rtc = config.build(now);
        rtc.direct_api().set_ice_controlling(false);
        if send {
            rtc.direct_api().enable_twcc_feedback();
        }
        let candidate = Candidate::host(self.announced, "udp")
            .map_err(|e| MediaError::Unavailable(format!("bad announced address: {e}")))?;
        let priority = candidate.prio();
        rtc.add_local_candidate(candidate);
        let fingerprint = rtc.direct_api().local_dtls_fingerprint().clone();
        let value = fingerprint
            .bytes
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":");
        let key = self.next_key;
        self.next_key += 1;
        self.demux.add_transport(key, &ufrag);
        self.ids.insert(transport_id.clone(), key);
        self.transports.insert(
            key,
            Transport {
                id: transport_id.clone(),
                room_id,
                send,
                rtc,
                local_ufrag: ufrag.clone(),
                remote_ufrag_known: false,
                dtls_started: false,
                connected: false,
                deadline: None,
                producers_by_ssrc: HashMap::new(),
                consumers_by_mid: HashMap::new(),
                next_mid: 0,
            },
        );
        self.drive(key);
        let ip = self.announced.ip().to_string();
        Ok(json!({
            "id": transport_id,
            "iceParameters": {"usernameFragment": ufrag, "password": password, "iceLite": true},
            "iceCandidates": [{
                "foundation": "udpcandidate",
                "priority": priority,
                "address": ip,
                "ip": ip,
                "port": self.announced.port(),
                "type": "host",
                "protocol": "udp",
            }],
            "dtlsParameters": {
                "role": "auto",
                "fingerprints": [{"algorithm": fingerprint.hash_func, "value": value}],
            },
        }))
    }

    fn transport_mut(&mut self, transport_id: &str) -> Result<(Key, &mut Transport), MediaError> {
        let key = *self
            .ids
            .get(transport_id)
            .ok_or_else(|| not_found("transport"))?;
        let t = self
            .transports
            .get_mut(&key)
            .ok_or_else(|| not_found("transport"))?;
        Ok((key, t))
    }

    fn connect_transport(
        &mut self,
        transport_id: &str,
        fingerprint: Fingerprint,
        active: bool,
    ) -> Result<(), MediaError> {
        let (key, t) = self.transport_mut(transport_id)?;
        if t.dtls_started {
            return Err(MediaError::Conflict(
                "the transport is already connected".into(),
            ));
        }
        let mut api = t.rtc.direct_api();
        api.set_remote_fingerprint(fingerprint);
        api.start_dtls(active)
            .map_err(|e| MediaError::Invalid(format!("cannot start DTLS: {e}")))?;
        t.dtls_started = true;
        self.drive(key);
        Ok(())
    }

    fn produce(
        &mut self,
        transport_id: &str,
        producer_id: String,
        spec: ProducerSpec,
    ) -> Result<(), MediaError> {
        if self.producers.contains_key(&producer_id) {
            return Err(MediaError::Conflict("the producer exists".into()));
        }
        let (key, t) = self.transport_mut(transport_id)?;
        if !t.send {
            return Err(MediaError::Invalid("produce needs a send transport".into()));
        }
        let mid = Mid::from(spec.mid.as_str());
        let ssrc_taken = t.producers_by_ssrc.contains_key(&spec.ssrc)
            || spec
                .rtx_ssrc
                .is_some_and(|r| t.producers_by_ssrc.contains_key(&r));
        let mid_taken = t.rtc.media(mid).is_some();
        if ssrc_taken || mid_taken {
            return Err(MediaError::Conflict(
                "the transport already receives this mid or ssrc".into(),
            ));
        }
        let room_id = t.room_id.clone();
        let mut api = t.rtc.direct_api();
        api.declare_media(mid, spec.kind);
        api.expect_stream_rx(
            Ssrc::from(spec.ssrc),
            spec.rtx_ssrc.map(Ssrc::from),
            mid,
            None,
        );
        t.producers_by_ssrc.insert(spec.ssrc, producer_id.clone());
        let format = video_format(spec.codec);
        self.producers.insert(
            producer_id,
            Producer {
                room_id,
                transport: key,
                spec,
                format,
                paused: false,
                consumers: Vec::new(),
                keyframes: Throttle::new(KEYFRAME_INTERVAL),
            },
        );
        self.dirty.push(key);
        Ok(())
    }

    fn consume(
        &mut self,
        transport_id: &str,
        consumer_id: String,
        producer_id: &str,
        device_caps: &Value,
    ) -> Result<Value, MediaError> {
        if self.consumers.contains_key(&consumer_id) {
            return Err(MediaError::Conflict("the consumer exists".into()));
        }
        let (codec, cname, producer_room) = {
            let p = self
                .producers
                .get(producer_id)
                .ok_or_else(|| not_found("producer"))?;
            (p.spec.codec, p.spec.cname.clone(), p.room_id.clone())
        };
        if !capabilities::can_consume(device_caps, codec) {
            return Err(MediaError::Invalid(format!(
                "the device cannot receive {}",
                codec.mime_type
            )));
        }
        let (key, t) = self.transport_mut(transport_id)?;
        if t.send {
            return Err(MediaError::Invalid(
                "consume needs a receive transport".into(),
            ));
        }
        if t.room_id != producer_room {
            return Err(not_found("producer"));
        }
        let mid_text = t.next_mid.to_string();
        t.next_mid += 1;
        let mid = Mid::from(mid_text.as_str());
        let mut api = t.rtc.direct_api();
        let ssrc = api.new_ssrc();
        let rtx = codec.rtx_payload_type.map(|_| {
            loop {
                let rtx = api.new_ssrc();
                if rtx != ssrc {
                    break rtx;
                }
            }
        });
        api.declare_media(mid, codec.kind);
        api.declare_stream_tx(ssrc, rtx, mid, None);
        t.consumers_by_mid.insert(mid, consumer_id.clone());
        let params = consumer_rtp_parameters(codec, &mid_text, *ssrc, rtx.map(|r| *r), &cname);
        let (initial_seq, initial_ts) = {
            use rand::Rng;
            let mut rng = rand::rng();
            (rng.random_range(0..0x4000u16), rng.random::<u32>())
        };
        self.consumers.insert(
            consumer_id.clone(),
            Consumer {
                transport: key,
                producer_id: producer_id.to_string(),
                mid,
                ssrc: *ssrc,
                payload_type: codec.payload_type,
                kind: codec.kind,
                paused: true,
                waiting_keyframe: codec.kind == MediaKind::Video,
                rebaser: Rebaser::new(initial_seq, initial_ts, codec.clock_rate),
            },
        );
        if let Some(p) = self.producers.get_mut(producer_id) {
            p.consumers.push(consumer_id);
        }
        self.dirty.push(key);
        Ok(params)
    }

    fn resume_consumer(&mut self, consumer_id: &str) -> Result<(), MediaError> {
        let c = self
            .consumers
            .get_mut(consumer_id)
            .ok_or_else(|| not_found("consumer"))?;
        if !c.paused {
            return Ok(());
        }
        c.paused = false;
        c.rebaser.resync();
        c.waiting_keyframe = c.kind == MediaKind::Video;
        let producer_id = c.producer_id.clone();
        self.request_keyframe(&producer_id, KeyframeRequestKind::Pli, Instant::now());
        Ok(())
    }

    fn set_producer_paused(&mut self, producer_id: &str, paused: bool) -> Result<(), MediaError> {
        let p = self
            .producers
            .get_mut(producer_id)
            .ok_or_else(|| not_found("producer"))?;
        if p.paused == paused {
            return Ok(());
        }
        p.paused = paused;
        if !paused {
            for consumer_id in p.consumers.clone() {
                if let Some(c) = self.consumers.get_mut(&consumer_id) {
                    c.rebaser.resync();
                    c.waiting_keyframe = c.kind == MediaKind::Video;
                }
            }
            self.request_keyframe(producer_id, KeyframeRequestKind::Pli, Instant::now());
        }
        Ok(())
    }

    fn close_consumer(&mut self, consumer_id: &str) -> bool {
        let Some(c) = self.consumers.remove(consumer_id) else {
            return false;
        };
        if let Some(p) = self.producers.get_mut(&c.producer_id) {
            p.consumers.retain(|id| id != consumer_id);
        }
        if let Some(t) = self.transports.get_mut(&c.transport) {
            t.consumers_by_mid.remove(&c.mid);
            let mut api = t.rtc.direct_api();
            api.remove_stream_tx(Ssrc::from(c.ssrc));
            api.remove_media(c.mid);
            self.dirty.push(c.transport);
        }
        true
    }

    fn close_producer(&mut self, producer_id: &str) -> bool {
        let Some(p) = self.producers.remove(producer_id) else {
            return false;
        };
        for consumer_id in &p.consumers {
            self.close_consumer(consumer_id);
        }
        if let Some(t) = self.transports.get_mut(&p.transport) {
            t.producers_by_ssrc.remove(&p.spec.ssrc);
            let mid = Mid::from(p.spec.mid.as_str());
            let mut api = t.rtc.direct_api();
            api.remove_stream_rx(Ssrc::from(p.spec.ssrc));
            api.remove_media(mid);
            self.dirty.push(p.transport);
        }
        true
    }

    fn close_transport(&mut self, key: Key) {
        let Some(t) = self.transports.get(&key) else {
            return;
        };
        let producers: Vec<String> = t.producers_by_ssrc.values().cloned().collect();
        let consumers: Vec<String> = t.consumers_by_mid.values().cloned().collect();
        for id in producers {
            self.close_producer(&id);
        }
        for id in consumers {
            self.close_consumer(&id);
        }
        if let Some(mut t) = self.transports.remove(&key) {
            self.demux.remove_transport(key, &t.local_ufrag);
            self.ids.remove(&t.id);
            t.rtc.disconnect();
        }
        self.update_counters();
    }
}

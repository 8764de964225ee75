//! SFU signalling (protocol §8; seed 002's TransportManager and the media half of its
//! RoomManager) on top of `switchboard_media`.
//!
//! This instance's registry says which socket owns which transport, producer and consumer
//! (ids belong to the socket that created them), keeps the room's participants'
//! `producerIds` / `consumerIds` in step, sends the server events, and frees media when a
//! participant leaves, the room ends or a socket disconnects.
//!
//! The media workers start on the first `createTransport` (so instances that never carry
//! media bind no UDP ports). A room's media lives on the instance that created its first
//! transport (recorded with the room); a participant connected to another instance gets
//! `UNAVAILABLE` until cross-instance media lands (issue #9).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use serde_json::{Value, json};
use switchboard_domain::DomainError;
use switchboard_domain::rooms::{self as domain, MediaIdChange, RoomRecord};
use switchboard_media::{Media, MediaError, MediaEvent, parse_producer};
use switchboard_protocol::events;
use switchboard_protocol::sfu::{MediaKind, MediaSource};
use switchboard_store::{Transition, UpdateError, keys, update_record};
use tokio::sync::mpsc;

use crate::app::{App, SharedApp};
use crate::error::{AppError, AppResult};
use crate::outbox::rooms as channels;

/// At most this many live transports per socket (a client needs one send and one receive).
pub const MAX_TRANSPORTS_PER_SOCKET: usize = 4;

/// The socket asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: String,
    pub device_id: String,
    pub socket_id: String,
}

#[derive(Debug, Clone)]
struct Owner {
    user_id: String,
    device_id: String,
    socket_id: String,
}

impl From<&Caller> for Owner {
    fn from(c: &Caller) -> Self {
        Self {
            user_id: c.user_id.clone(),
            device_id: c.device_id.clone(),
            socket_id: c.socket_id.clone(),
        }
    }
}

#[derive(Debug, Clone)]
struct TransportEntry {
    room_id: String,
    owner: Owner,
    send: bool,
    /// When it was created (receive transports: the newest one is used by `consume`).
    serial: u64,
}

#[derive(Debug, Clone)]
struct ProducerEntry {
    room_id: String,
    owner: Owner,
    transport_id: String,
    kind: MediaKind,
    app_data: Value,
    /// As last set by `pauseProducer` / `resumeProducer` or `mediaStateChanged`.
    paused: bool,
}

/// The participant media flag a producer stands for (docs/protocol.md §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MediaFlag {
    /// Paused = `isMuted`.
    Mic,
    /// Paused = `!isVideoEnabled`.
    Camera,
}

impl ProducerEntry {
    /// `appData.source` 'mic' / 'camera', or without a source the kind; screen shares and
    /// other sources stand for no flag.
    fn flag(&self) -> Option<MediaFlag> {
        match self.app_data.get("source") {
            None => Some(match self.kind {
                MediaKind::Audio => MediaFlag::Mic,
                MediaKind::Video => MediaFlag::Camera,
            }),
            Some(source) => match source.as_str()?.parse::<MediaSource>().ok()? {
                MediaSource::Mic => Some(MediaFlag::Mic),
                MediaSource::Camera => Some(MediaFlag::Camera),
                MediaSource::Screen => None,
            },
        }
    }
}

#[derive(Debug, Clone)]
struct ConsumerEntry {
    room_id: String,
    owner: Owner,
    transport_id: String,
    producer_id: String,
}

#[derive(Debug, Default)]
struct Registry {
    transports: HashMap<String, TransportEntry>,
    producers: HashMap<String, ProducerEntry>,
    consumers: HashMap<String, ConsumerEntry>,
    serial: u64,
}

/// What closing something took with it, for the events and the room bookkeeping.
#[derive(Debug, Default)]
struct Closed {
    transports: Vec<TransportEntry>,
    producers: Vec<(String, ProducerEntry)>,
    consumers: Vec<(String, ConsumerEntry)>,
}

impl Registry {
    /// Removes producers (with their consumers) matching `which`.
    fn take_producers(&mut self, which: impl Fn(&ProducerEntry) -> bool, out: &mut Closed) {
        let ids: Vec<String> = self
            .producers
            .iter()
            .filter(|(_, p)| which(p))
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            if let Some(p) = self.producers.remove(&id) {
                self.take_consumers(|c| c.producer_id == id, out);
                out.producers.push((id, p));
            }
        }
    }

    fn take_consumers(&mut self, which: impl Fn(&ConsumerEntry) -> bool, out: &mut Closed) {
        let ids: Vec<String> = self
            .consumers
            .iter()
            .filter(|(_, c)| which(c))
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            if let Some(c) = self.consumers.remove(&id) {
                out.consumers.push((id, c));
            }
        }
    }

    /// Removes transports matching `which` with everything on them.
    fn take_transports(
        &mut self,
        which: impl Fn(&str, &TransportEntry) -> bool,
    ) -> (Vec<String>, Closed) {
        let mut out = Closed::default();
        let ids: Vec<String> = self
            .transports
            .iter()
            .filter(|(id, t)| which(id, t))
            .map(|(id, _)| id.clone())
            .collect();
        for id in &ids {
            self.take_producers(|p| p.transport_id == *id, &mut out);
            self.take_consumers(|c| c.transport_id == *id, &mut out);
            if let Some(t) = self.transports.remove(id) {
                out.transports.push(t);
            }
        }
        (ids, out)
    }
}

/// The media workers (started on first use) and the registry.
#[derive(Default)]
pub struct MediaHub {
    media: Mutex<Option<Arc<Media>>>,
    registry: Mutex<Registry>,
}

impl MediaHub {
    fn running(&self) -> Option<Arc<Media>> {
        self.media.lock().expect("media lock").clone()
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().expect("media registry lock")
    }

    /// Per-worker figures for `/stats`.
    pub fn stats(&self) -> Value {
        let Some(media) = self.running() else {
            return json!({"running": false});
        };
        use std::sync::atomic::Ordering::Relaxed;
        let workers: Vec<Value> = media
            .addresses()
            .into_iter()
            .zip(media.counters())
            .map(|(addr, c)| {
                json!({
                    "address": addr.to_string(),
                    "transports": c.transports.load(Relaxed),
                    "producers": c.producers.load(Relaxed),
                    "consumers": c.consumers.load(Relaxed),
                    "packetsIn": c.packets_in.load(Relaxed),
                    "packetsForwarded": c.packets_forwarded.load(Relaxed),
                    "bytesForwarded": c.bytes_forwarded.load(Relaxed),
                })
            })
            .collect();
        json!({"running": true, "workers": workers})
    }
}

fn media_error(e: MediaError) -> AppError {
    match e {
        MediaError::Invalid(m) => AppError::invalid(m),
        MediaError::NotFound(m) => AppError::not_found(m),
        MediaError::Conflict(m) => DomainError::Conflict(m).into(),
        MediaError::Unavailable(m) => DomainError::Specific {
            code: switchboard_protocol::ErrorCode::Unavailable,
            message: m,
        }
        .into(),
    }
}

fn forbidden(message: &str) -> AppError {
    DomainError::Forbidden(message.to_string()).into()
}

/// The running workers, starting them (and the task that handles their events) on first
/// use.
fn start(app: &SharedApp) -> AppResult<Arc<Media>> {
    let mut slot = app.media.media.lock().expect("media lock");
    if let Some(media) = slot.as_ref() {
        return Ok(media.clone());
    }
    let config = app.settings.media.to_config();
    let (tx, rx) = mpsc::unbounded_channel();
    let media = Media::start(&config, tx).map_err(|e| {
        tracing::error!(error = %e, "could not start the media workers");
        AppError::Internal(format!("the media workers could not start: {e}"))
    })?;
    tracing::info!(workers = config.workers, addresses = ?media.addresses(), "media workers started");
    let media = Arc::new(media);
    *slot = Some(media.clone());
    tokio::spawn(handle_events(Arc::downgrade(app), rx));
    Ok(media)
}

async fn handle_events(app: Weak<App>, mut rx: mpsc::UnboundedReceiver<MediaEvent>) {
    while let Some(event) = rx.recv().await {
        let Some(app) = app.upgrade() else { return };
        match event {
            MediaEvent::TransportConnected {
                room_id,
                transport_id,
            } => {
                tracing::debug!(%room_id, %transport_id, "media transport connected");
            }
            MediaEvent::MediaFlowing { room_id } => {
                if let Err(error) =
                    crate::services::rooms::mark_connected(&app, &room_id, app.now()).await
                {
                    tracing::warn!(%room_id, %error, "could not mark the room connected");
                }
            }
            MediaEvent::TransportClosed {
                room_id,
                transport_id,
            } => {
                tracing::debug!(%room_id, %transport_id, "media transport closed by its peer");
                let (_, closed) = app
                    .media
                    .registry()
                    .take_transports(|id, _| id == transport_id);
                announce(&app, closed).await;
            }
        }
    }
}

async fn room_record(app: &App, room_id: &str) -> AppResult<RoomRecord> {
    crate::services::rooms::record(app, room_id)
        .await?
        .filter(|r| !r.is_ended())
        .ok_or_else(|| AppError::not_found("no such room"))
}

/// Only the participant's socket in the room may use its media.
async fn participant(app: &App, caller: &Caller, room_id: &str) -> AppResult<RoomRecord> {
    let record = room_record(app, room_id).await?;
    match record.participant(&caller.user_id) {
        None => Err(forbidden("only participants may do this")),
        Some(p) if p.socket_id != caller.socket_id => Err(forbidden(
            "you take part in this room from another socket; join it from this one first",
        )),
        Some(_) => Ok(record),
    }
}

async fn update_room(
    app: &App,
    room_id: &str,
    user_id: &str,
    change: MediaIdChange,
) -> AppResult<Option<RoomRecord>> {
    update_record(app.store.as_ref(), &keys::room(room_id), |cur| {
        domain::media_ids(cur, user_id, &change).map(|r| Transition::Write(r, None))
    })
    .await
    .map_err(|e| match e {
        UpdateError::Rejected(e) => AppError::from(e),
        UpdateError::Store(e) => AppError::from(e),
    })
}

/// The devices of the room's participants other than `user_id`.
fn others(record: &RoomRecord, user_id: &str) -> Vec<String> {
    record
        .devices
        .iter()
        .filter(|(user, _)| user.as_str() != user_id)
        .map(|(user, device)| channels::device(user, device))
        .collect()
}

// --- Requests ------------------------------------------------------------------------------

/// `getRouterRtpCapabilities`.
pub async fn router_capabilities(app: &App, caller: &Caller, room_id: &str) -> AppResult<Value> {
    participant(app, caller, room_id).await?;
    Ok(switchboard_media::router_rtp_capabilities())
}

/// `createTransport`.
pub async fn create_transport(
    app: &SharedApp,
    caller: &Caller,
    room_id: &str,
    send: bool,
    device_caps: Option<Value>,
) -> AppResult<Value> {
    participant(app, caller, room_id).await?;
    {
        let registry = app.media.registry();
        let mine = registry
            .transports
            .values()
            .filter(|t| t.owner.socket_id == caller.socket_id)
            .count();
        if mine >= MAX_TRANSPORTS_PER_SOCKET {
            return Err(DomainError::Conflict(format!(
                "a socket may hold at most {MAX_TRANSPORTS_PER_SOCKET} transports"
            ))
            .into());
        }
    }
    let mut holder = String::new();
    update_record(app.store.as_ref(), &keys::room(room_id), |cur| {
        let (record, h) = domain::place_media(cur, &caller.user_id, &app.instance_id)?;
        holder = h;
        Ok::<_, DomainError>(Transition::Write(record, None))
    })
    .await
    .map_err(|e| match e {
        UpdateError::Rejected(e) => AppError::from(e),
        UpdateError::Store(e) => AppError::from(e),
    })?;
    if holder != app.instance_id {
        return Err(DomainError::Specific {
            code: switchboard_protocol::ErrorCode::Unavailable,
            message: "this room's media is served by another server instance; \
                      cross-instance media is not supported yet"
                .into(),
        }
        .into());
    }
    let media = start(app)?;
    let transport_id = uuid::Uuid::new_v4().to_string();
    let params = media
        .create_transport(room_id, &transport_id, send, device_caps)
        .await
        .map_err(media_error)?;
    let mut registry = app.media.registry();
    registry.serial += 1;
    let serial = registry.serial;
    registry.transports.insert(
        transport_id,
        TransportEntry {
            room_id: room_id.to_string(),
            owner: caller.into(),
            send,
            serial,
        },
    );
    Ok(params)
}

/// Looks up an entry the caller must own: unknown ids are `NOT_FOUND`, other sockets'
/// `FORBIDDEN`.
fn owned<'a, T>(
    map: &'a HashMap<String, T>,
    id: &str,
    owner: impl Fn(&T) -> &Owner,
    caller: &Caller,
    what: &str,
) -> AppResult<&'a T> {
    let entry = map
        .get(id)
        .ok_or_else(|| AppError::not_found(format!("no such {what}")))?;
    if owner(entry).socket_id != caller.socket_id {
        return Err(forbidden(&format!("the {what} belongs to another socket")));
    }
    Ok(entry)
}

fn running(app: &App) -> AppResult<Arc<Media>> {
    app.media
        .running()
        .ok_or_else(|| AppError::not_found("no media in this room"))
}

/// `connectTransport`.
pub async fn connect_transport(
    app: &App,
    caller: &Caller,
    transport_id: &str,
    dtls_parameters: &Value,
) -> AppResult<()> {
    switchboard_media::parse_dtls_parameters(dtls_parameters).map_err(media_error)?;
    let room_id = {
        let registry = app.media.registry();
        owned(
            &registry.transports,
            transport_id,
            |t| &t.owner,
            caller,
            "transport",
        )?
        .room_id
        .clone()
    };
    participant(app, caller, &room_id).await?;
    running(app)?
        .connect_transport(&room_id, transport_id, dtls_parameters)
        .await
        .map_err(media_error)
}

/// `produce`: returns the producer id; the other participants get `newProducer`.
pub async fn produce(
    app: &App,
    caller: &Caller,
    room_id: &str,
    transport_id: &str,
    kind: MediaKind,
    rtp_parameters: &Value,
    app_data: Option<Value>,
) -> AppResult<String> {
    let media_kind = match kind {
        MediaKind::Audio => switchboard_media::MediaKind::Audio,
        MediaKind::Video => switchboard_media::MediaKind::Video,
    };
    let spec = parse_producer(media_kind, rtp_parameters).map_err(media_error)?;
    {
        let registry = app.media.registry();
        let t = owned(
            &registry.transports,
            transport_id,
            |t| &t.owner,
            caller,
            "transport",
        )?;
        if t.room_id != room_id {
            return Err(AppError::not_found("no such transport in this room"));
        }
        if !t.send {
            return Err(AppError::invalid("produce needs a send transport"));
        }
    }
    let record = participant(app, caller, room_id).await?;
    let producer_id = uuid::Uuid::new_v4().to_string();
    running(app)?
        .produce(room_id, transport_id, &producer_id, spec)
        .await
        .map_err(media_error)?;
    let app_data = app_data.unwrap_or_else(|| json!({}));
    app.media.registry().producers.insert(
        producer_id.clone(),
        ProducerEntry {
            room_id: room_id.to_string(),
            owner: caller.into(),
            transport_id: transport_id.to_string(),
            kind,
            app_data: app_data.clone(),
            paused: false,
        },
    );
    // Announce to the participants of the record that holds the producer: whoever joined
    // before this write is told here, whoever joins after it finds the id in the room's
    // `producerIds`. The participants read before the worker call could miss a joiner.
    let recorded = match update_room(
        app,
        room_id,
        &caller.user_id,
        MediaIdChange::AddProducer(producer_id.clone()),
    )
    .await
    {
        Ok(Some(updated)) => updated,
        Ok(None) => record,
        Err(error) => {
            tracing::warn!(%room_id, %error, "could not record the producer in the room");
            record
        }
    };
    app.outbox
        .emit_to(
            others(&recorded, &caller.user_id),
            events::NEW_PRODUCER,
            json!({
                "producerId": producer_id,
                "userId": caller.user_id,
                "kind": kind.as_str(),
                "appData": app_data,
            }),
        )
        .await;
    Ok(producer_id)
}

/// `consume`: on the caller's newest receive transport in the room; starts paused.
pub async fn consume(
    app: &App,
    caller: &Caller,
    room_id: &str,
    producer_id: &str,
    device_caps: Value,
) -> AppResult<Value> {
    let (transport_id, kind, app_data) = {
        let registry = app.media.registry();
        let producer = registry
            .producers
            .get(producer_id)
            .filter(|p| p.room_id == room_id)
            .ok_or_else(|| AppError::not_found("no such producer in this room"))?;
        let transport_id = registry
            .transports
            .iter()
            .filter(|(_, t)| {
                !t.send && t.room_id == room_id && t.owner.socket_id == caller.socket_id
            })
            .max_by_key(|(_, t)| t.serial)
            .map(|(id, _)| id.clone())
            .ok_or_else(|| {
                DomainError::Conflict("create a receive transport in this room first".into())
            })?;
        (transport_id, producer.kind, producer.app_data.clone())
    };
    participant(app, caller, room_id).await?;
    let consumer_id = uuid::Uuid::new_v4().to_string();
    let rtp_parameters = running(app)?
        .consume(
            room_id,
            &transport_id,
            &consumer_id,
            producer_id,
            device_caps,
        )
        .await
        .map_err(media_error)?;
    app.media.registry().consumers.insert(
        consumer_id.clone(),
        ConsumerEntry {
            room_id: room_id.to_string(),
            owner: caller.into(),
            transport_id,
            producer_id: producer_id.to_string(),
        },
    );
    if let Err(error) = update_room(
        app,
        room_id,
        &caller.user_id,
        MediaIdChange::AddConsumer(consumer_id.clone()),
    )
    .await
    {
        tracing::warn!(%room_id, %error, "could not record the consumer in the room");
    }
    Ok(json!({
        "id": consumer_id,
        "producerId": producer_id,
        "kind": kind.as_str(),
        "rtpParameters": rtp_parameters,
        "appData": app_data,
    }))
}

fn owned_consumer(app: &App, caller: &Caller, room_id: &str, consumer_id: &str) -> AppResult<()> {
    let registry = app.media.registry();
    let c = owned(
        &registry.consumers,
        consumer_id,
        |c| &c.owner,
        caller,
        "consumer",
    )?;
    if c.room_id != room_id {
        return Err(AppError::not_found("no such consumer in this room"));
    }
    Ok(())
}

fn owned_producer(
    app: &App,
    caller: &Caller,
    room_id: &str,
    producer_id: &str,
) -> AppResult<ProducerEntry> {
    let registry = app.media.registry();
    let p = owned(
        &registry.producers,
        producer_id,
        |p| &p.owner,
        caller,
        "producer",
    )?;
    if p.room_id != room_id {
        return Err(AppError::not_found("no such producer in this room"));
    }
    Ok(p.clone())
}

/// `resumeConsumer`: forwarding starts (with a keyframe request for video).
pub async fn resume_consumer(
    app: &App,
    caller: &Caller,
    room_id: &str,
    consumer_id: &str,
) -> AppResult<()> {
    owned_consumer(app, caller, room_id, consumer_id)?;
    running(app)?
        .resume_consumer(room_id, consumer_id)
        .await
        .map_err(media_error)
}

/// `setConsumerPreferredLayers`: accepted; without simulcast there is one layer.
pub async fn set_preferred_layers(
    app: &App,
    caller: &Caller,
    room_id: &str,
    consumer_id: &str,
) -> AppResult<()> {
    owned_consumer(app, caller, room_id, consumer_id)
}

/// `pauseProducer` / `resumeProducer`: the other participants hear of it, and a mic or
/// camera producer sets the owner's `isMuted` / `isVideoEnabled` (only when that changes;
/// this path never pauses other producers, so the two directions cannot feed each other).
pub async fn set_producer_paused(
    app: &App,
    caller: &Caller,
    room_id: &str,
    producer_id: &str,
    paused: bool,
) -> AppResult<()> {
    let entry = owned_producer(app, caller, room_id, producer_id)?;
    let record = participant(app, caller, room_id).await?;
    pause_in_media(&*running(app)?, app, room_id, producer_id, paused).await?;
    announce_pause(app, &record, &caller.user_id, producer_id, paused).await;
    let result = match entry.flag() {
        None => Ok(()),
        Some(MediaFlag::Mic) => {
            crate::services::rooms::media_state_from_producer(
                app,
                &caller.user_id,
                room_id,
                Some(paused),
                None,
            )
            .await
        }
        Some(MediaFlag::Camera) => {
            crate::services::rooms::media_state_from_producer(
                app,
                &caller.user_id,
                room_id,
                None,
                Some(!paused),
            )
            .await
        }
    };
    if let Err(error) = result {
        tracing::warn!(%room_id, %producer_id, %error, "could not follow the producer in the media state");
    }
    Ok(())
}

/// Pauses or resumes in the worker; true when the producer's state changed.
async fn pause_in_media(
    media: &Media,
    app: &App,
    room_id: &str,
    producer_id: &str,
    paused: bool,
) -> AppResult<bool> {
    media
        .set_producer_paused(room_id, producer_id, paused)
        .await
        .map_err(media_error)?;
    let mut registry = app.media.registry();
    Ok(registry
        .producers
        .get_mut(producer_id)
        .is_some_and(|p| std::mem::replace(&mut p.paused, paused) != paused))
}

async fn announce_pause(
    app: &App,
    record: &RoomRecord,
    user_id: &str,
    producer_id: &str,
    paused: bool,
) {
    let event = if paused {
        events::PRODUCER_PAUSED
    } else {
        events::PRODUCER_RESUMED
    };
    app.outbox
        .emit_to(
            others(record, user_id),
            event,
            json!({"producerId": producer_id, "userId": user_id}),
        )
        .await;
}

/// After `mediaStateChanged`: the participant's mic producers in the room pause when muted
/// and resume when not, camera producers follow `isVideoEnabled`; only producers whose state
/// changes are touched and announced (`producerPaused` / `producerResumed`). The room's
/// media state is not written again from here, so nothing loops.
pub async fn follow_media_state(
    app: &App,
    user_id: &str,
    room_id: &str,
    is_muted: bool,
    is_video_enabled: bool,
) {
    let Some(media) = app.media.running() else {
        return;
    };
    let changes: Vec<(String, bool)> = app
        .media
        .registry()
        .producers
        .iter()
        .filter(|(_, p)| p.room_id == room_id && p.owner.user_id == user_id)
        .filter_map(|(id, p)| {
            let paused = match p.flag()? {
                MediaFlag::Mic => is_muted,
                MediaFlag::Camera => !is_video_enabled,
            };
            (p.paused != paused).then(|| (id.clone(), paused))
        })
        .collect();
    if changes.is_empty() {
        return;
    }
    let Ok(record) = room_record(app, room_id).await else {
        return;
    };
    for (producer_id, paused) in changes {
        match pause_in_media(&media, app, room_id, &producer_id, paused).await {
            Ok(true) => announce_pause(app, &record, user_id, &producer_id, paused).await,
            Ok(false) => {}
            Err(error) => {
                tracing::debug!(%producer_id, %error, "could not follow the media state");
            }
        }
    }
}

/// `closeProducer`: its consumers close too.
pub async fn close_producer(
    app: &App,
    caller: &Caller,
    room_id: &str,
    producer_id: &str,
) -> AppResult<()> {
    owned_producer(app, caller, room_id, producer_id)?;
    let media = running(app)?;
    let mut closed = Closed::default();
    {
        let mut registry = app.media.registry();
        if let Some(p) = registry.producers.remove(producer_id) {
            registry.take_consumers(|c| c.producer_id == producer_id, &mut closed);
            closed.producers.push((producer_id.to_string(), p));
        }
    }
    if let Err(error) = media.close_producer(room_id, producer_id).await {
        tracing::debug!(%producer_id, %error, "media producer already gone");
    }
    announce(app, closed).await;
    Ok(())
}

/// Tells everyone what closed and updates the rooms' participants.
async fn announce(app: &App, closed: Closed) {
    for (producer_id, p) in &closed.producers {
        if let Ok(record) = room_record(app, &p.room_id).await {
            app.outbox
                .emit_to(
                    others(&record, &p.owner.user_id),
                    events::PRODUCER_CLOSED,
                    json!({"producerId": producer_id, "userId": p.owner.user_id}),
                )
                .await;
        }
        let _ = update_room(
            app,
            &p.room_id,
            &p.owner.user_id,
            MediaIdChange::RemoveProducer(producer_id.clone()),
        )
        .await;
    }
    let mut by_owner: HashMap<(String, String), Vec<String>> = HashMap::new();
    for (consumer_id, c) in &closed.consumers {
        app.outbox
            .emit(
                channels::device(&c.owner.user_id, &c.owner.device_id),
                events::CONSUMER_CLOSED,
                json!({"consumerId": consumer_id, "producerId": c.producer_id}),
            )
            .await;
        by_owner
            .entry((c.room_id.clone(), c.owner.user_id.clone()))
            .or_default()
            .push(consumer_id.clone());
    }
    for ((room_id, user_id), ids) in by_owner {
        let _ = update_room(app, &room_id, &user_id, MediaIdChange::RemoveConsumers(ids)).await;
    }
}

// --- Cleanup -------------------------------------------------------------------------------

/// Closes the transports matching `which` in the workers, then announces.
async fn close_where(app: &App, which: impl Fn(&str, &TransportEntry) -> bool) {
    let Some(media) = app.media.running() else {
        return;
    };
    let (ids, closed) = app.media.registry().take_transports(which);
    for (id, t) in ids.iter().zip(&closed.transports) {
        if let Err(error) = media.close_transport(&t.room_id, id).await {
            tracing::debug!(transport_id = %id, %error, "media transport already gone");
        }
    }
    // The owners' own media is gone with them: only the others need telling, and the
    // owners' ids are cleared from the room.
    let owners: Vec<(String, String)> = closed
        .transports
        .iter()
        .map(|t| (t.room_id.clone(), t.owner.user_id.clone()))
        .collect();
    announce(app, closed).await;
    for (room_id, user_id) in owners {
        let _ = update_room(app, &room_id, &user_id, MediaIdChange::Clear).await;
    }
}

/// A socket disconnected: its transports, producers and consumers close.
pub async fn socket_closed(app: &App, socket_id: &str) {
    close_where(app, |_, t| t.owner.socket_id == socket_id).await;
}

/// A participant left a room: their media there closes.
pub async fn participant_left(app: &App, room_id: &str, user_id: &str) {
    close_where(app, |_, t| {
        t.room_id == room_id && t.owner.user_id == user_id
    })
    .await;
}

/// A room ended: all its media is freed.
pub async fn room_ended(app: &App, room_id: &str) {
    let Some(media) = app.media.running() else {
        return;
    };
    let _ = app
        .media
        .registry()
        .take_transports(|_, t| t.room_id == room_id);
    if let Err(error) = media.close_room(room_id).await {
        tracing::debug!(%room_id, %error, "could not free the room's media");
    }
}

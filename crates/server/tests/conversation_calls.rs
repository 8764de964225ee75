//! Conversation calls (protocol §7, seed 004) driven in simulated time, with a recording
//! outbox standing in for Socket.IO: the status machine `initiated → ringing → active →
//! ended`, one live call per conversation (`CALL_ALREADY_ACTIVE`, zombies cleaned up first),
//! the 30 s no-join timeout, the zombie sweep, the 60 s reconnect window, the signalling
//! relay, ICE servers, guests and history. Every scenario runs on the memory store and on
//! Redis (skipped when Redis is unreachable, unless `SWITCHBOARD_REQUIRE_BACKENDS=1`); the
//! Redis runs use two instances sharing the store.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use switchboard_db::{CallOutcome, Db, DbOptions};
use switchboard_domain::devices::DeviceConnect;
use switchboard_domain::time::{Clock, ManualClock};
use switchboard_protocol::chat::ConversationType;
use switchboard_protocol::conversation_calls::{
    CallInitiate, CallSignal, CallStatus, CallType, ClientSignal, SignalType,
};
use switchboard_protocol::events;
use switchboard_protocol::sfu::MediaKind;
use switchboard_server::app::{App, Backends, SharedApp};
use switchboard_server::config::{Overrides, Secret, Settings};
use switchboard_server::error::AppResult;
use switchboard_server::outbox::rooms;
use switchboard_server::services::conversation_calls::{self as calls, Peer};
use switchboard_server::services::rooms::{self as room_service, Entry, Party};
use switchboard_server::services::{conversations, sessions, users};
use switchboard_store::StateStore;
use switchboard_store::bus::MemoryBus;
use switchboard_store::memory::MemoryStore;

mod support;
use support::Recorder;

const START: i64 = 1_800_000_000_000;

#[derive(Clone, Copy)]
enum Backend {
    Memory,
    Redis,
}

struct Harness {
    /// The instance most calls go through.
    app: SharedApp,
    /// A second instance on the same store and database.
    other: SharedApp,
    clock: ManualClock,
    outbox: Arc<Recorder>,
    store: Arc<dyn StateStore>,
    db: Db,
    conv: String,
    dir: std::path::PathBuf,
}

impl Drop for Harness {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

async fn harness(backend: Backend) -> Option<Harness> {
    let overrides = Overrides {
        bind: Some("127.0.0.1:0".parse().unwrap()),
        dev: true,
        redis_url: None,
        database_url: None,
    };
    let mut settings = Settings::load_from(None, &overrides, &|_| None).unwrap();
    settings.presence.public = Some(false);
    settings.ice.stun_urls = vec!["stun:stun.test:3478".into()];
    settings.ice.turn_urls = vec!["turn:turn.test:3478".into()];
    settings.ice.turn_secret = Secret::new("s3cret");
    let clock = ManualClock::new(START);
    let (first, second): (Arc<dyn StateStore>, Arc<dyn StateStore>) = match backend {
        Backend::Memory => {
            let store = Arc::new(MemoryStore::new(Arc::new(clock.clone()) as Arc<dyn Clock>));
            (store.clone(), store)
        }
        Backend::Redis => {
            use switchboard_store::redis::{RedisOptions, RedisStore};
            let url = std::env::var("SWITCHBOARD_TEST_REDIS_URL")
                .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
            let prefix = format!("sbtest-convcalls-{}:", uuid::Uuid::new_v4().simple());
            let connect = || RedisStore::connect(&url, &prefix, RedisOptions::default());
            match (connect().await, connect().await) {
                (Ok(a), Ok(b)) => (Arc::new(a), Arc::new(b)),
                (Err(e), _) | (_, Err(e)) => {
                    if std::env::var("SWITCHBOARD_REQUIRE_BACKENDS").as_deref() == Ok("1") {
                        panic!("SWITCHBOARD_REQUIRE_BACKENDS=1 but Redis is unreachable: {e}");
                    }
                    eprintln!("skipping: Redis unreachable at {url}: {e}");
                    return None;
                }
            }
        }
    };
    let dir = std::env::temp_dir().join(format!("sb-convcalls-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = Db::connect(
        &format!("sqlite://{}/t.db?mode=rwc", dir.display()),
        &DbOptions::default(),
    )
    .await
    .unwrap();
    db.migrate().await.unwrap();
    let outbox = Arc::new(Recorder::default());
    let instance = |store: Arc<dyn StateStore>| {
        App::new(
            settings.clone(),
            Backends {
                store,
                db: db.clone(),
                bus: Arc::new(MemoryBus::new()),
            },
            Arc::new(clock.clone()),
            outbox.clone(),
        )
    };
    let app = instance(first.clone());
    let other = instance(second);
    for (id, name) in [
        ("ann", "Ann"),
        ("bob", "Bob"),
        ("cat", "Cat"),
        ("dan", "Dan"),
        ("zed", "Zed"),
    ] {
        users::upsert(&app, id, name).await.unwrap();
    }
    let conv = conversations::create(
        &app,
        "ann",
        ConversationType::Group,
        &["bob".to_string(), "cat".to_string()],
        Some("team"),
    )
    .await
    .unwrap()
    .id;
    let h = Harness {
        app,
        other,
        clock,
        outbox,
        store: first,
        db,
        conv,
        dir,
    };
    for user in ["ann", "bob", "cat"] {
        h.connect(user).await;
    }
    h.outbox.clear();
    Some(h)
}

fn peer(user: &str) -> Peer {
    Peer {
        peer_id: user.into(),
        guest_conversation: None,
        socket_id: format!("sock-{user}"),
        device_id: format!("dev-{user}"),
    }
}

fn guest(id: &str, conversation: &str) -> Peer {
    Peer {
        guest_conversation: Some(conversation.into()),
        ..peer(id)
    }
}

fn device(user: &str) -> String {
    rooms::device(user, &format!("dev-{user}"))
}

fn code<T: std::fmt::Debug>(r: AppResult<T>) -> &'static str {
    r.unwrap_err().code().as_str()
}

impl Harness {
    /// The user's device connects, as the handshake does it.
    async fn connect(&self, user: &str) {
        sessions::admit(
            &self.app,
            &DeviceConnect {
                user_id: user.into(),
                device_id: format!("dev-{user}"),
                socket_id: format!("sock-{user}"),
                instance_id: self.app.instance_id.clone(),
                ip: None,
                user_agent: None,
            },
        )
        .await
        .unwrap();
        sessions::mark_connected(&self.app, user, user, &format!("dev-{user}"))
            .await
            .unwrap();
    }

    /// The user's device vanishes without its socket's drop being handled (its instance
    /// crashed): presence no longer has it, the call still does.
    async fn vanish(&self, user: &str) {
        sessions::release(
            &self.app,
            user,
            &format!("dev-{user}"),
            &format!("sock-{user}"),
        )
        .await
        .unwrap();
    }

    async fn initiate(&self, user: &str) -> AppResult<String> {
        calls::initiate(
            &self.app,
            &peer(user),
            CallInitiate {
                conversation_id: self.conv.clone(),
                call_type: CallType::Video,
                settings: None,
            },
        )
        .await
        .map(|r| r.call_id)
    }

    /// Moves simulated time on and fires every due timer through the second instance, as
    /// the deadline-queue runner would (once each). Returns how many fired.
    async fn advance(&self, secs: i64) -> usize {
        self.clock.advance(secs * 1000);
        let due = self
            .store
            .timers_claim_due(self.clock.now_ms(), 100, "test", Duration::from_secs(30))
            .await
            .unwrap();
        let n = due.len();
        for timer in due {
            assert!(
                calls::fire(&self.other, &timer).await,
                "unknown timer {}",
                timer.kind
            );
            self.store.timer_complete(&timer.id, "test").await.unwrap();
        }
        n
    }

    async fn status(&self, call_id: &str) -> CallStatus {
        calls::record(&self.app, call_id)
            .await
            .unwrap()
            .unwrap()
            .call
            .status
    }

    async fn history(&self, call_id: &str) -> switchboard_db::CallSession {
        self.db.get_call_session(call_id).await.unwrap().unwrap()
    }

    async fn signal(&self, from: &str, call_id: &str, kind: SignalType, to: &str) -> AppResult<()> {
        let (sdp, candidate) = match kind {
            SignalType::IceCandidate => (
                None,
                Some(json!({"candidate": "candidate:1 1 udp 1 127.0.0.1 9 typ host"})),
            ),
            _ => (Some(json!("v=0\r\n")), None),
        };
        calls::signal(
            &self.app,
            &peer(from),
            CallSignal {
                call_id: call_id.into(),
                signal: ClientSignal {
                    signal_type: kind,
                    to: to.into(),
                    sdp,
                    candidate,
                },
            },
        )
        .await
    }
}

macro_rules! on_both {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn memory() {
                super::$name(super::Backend::Memory).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                super::$name(super::Backend::Redis).await
            }
        }
    )+};
}

on_both!(
    status_machine_with_history,
    one_live_call_per_conversation_and_zombies_make_way,
    nobody_joining_times_out_once_as_missed,
    a_dropped_participant_resumes_or_leaves_after_the_window,
    the_sweep_ends_calls_nobody_attends,
    signals_go_only_between_participants,
    guests_members_and_the_third_participant,
);

async fn status_machine_with_history(b: Backend) {
    let Some(h) = harness(b).await else { return };
    let call = h.initiate("ann").await.unwrap();
    // bob and cat are connected, so their devices heard it: ringing.
    assert_eq!(h.status(&call).await, CallStatus::Ringing);
    let initiated = h
        .outbox
        .to_room(&rooms::conversation(&h.conv), events::CALL_INITIATED);
    assert_eq!(initiated.len(), 1);
    assert_eq!(initiated[0]["initiator"], "ann");
    assert_eq!(initiated[0]["mode"], "p2p");
    assert_eq!(initiated[0]["participants"][0]["role"], "initiator");

    let joined = calls::join(&h.other, &peer("bob"), &call).await.unwrap();
    assert_eq!(joined.call.status, CallStatus::Active);
    assert!(
        joined.ice_servers[1]
            .username
            .as_deref()
            .unwrap()
            .ends_with(":bob")
    );
    // Each participant hears the join with TURN credentials of their own.
    let to_ann = h
        .outbox
        .to_room(&device("ann"), events::CALL_PARTICIPANT_JOINED);
    let to_bob = h
        .outbox
        .to_room(&device("bob"), events::CALL_PARTICIPANT_JOINED);
    assert_eq!((to_ann.len(), to_bob.len()), (1, 1));
    assert_eq!(to_ann[0]["participant"]["userId"], "bob");
    let username = |v: &Value| v["iceServers"][1]["username"].as_str().unwrap().to_string();
    assert!(username(&to_ann[0]).ends_with(":ann"));
    assert!(username(&to_bob[0]).ends_with(":bob"));
    assert_eq!(
        to_ann[0]["iceServers"][0]["urls"],
        json!(["stun:stun.test:3478"])
    );

    // Media: toggles reach both; ICE both ways marks the call connected.
    calls::toggle_media(&h.app, &peer("bob"), &call, MediaKind::Video, false)
        .await
        .unwrap();
    let toggled = h.outbox.to_room(&device("ann"), events::CALL_MEDIA_TOGGLED);
    assert_eq!(toggled[0]["mediaType"], "video");
    assert_eq!(toggled[0]["enabled"], false);
    h.clock.advance(2_000);
    h.signal("ann", &call, SignalType::IceCandidate, "bob")
        .await
        .unwrap();
    assert_eq!(
        h.history(&call).await.connected_at,
        None,
        "one way is not connected"
    );
    h.signal("bob", &call, SignalType::IceCandidate, "ann")
        .await
        .unwrap();
    let connected = START + 2_000;
    assert_eq!(h.history(&call).await.connected_at, Some(connected));
    calls::quality(
        &h.app,
        &peer("ann"),
        &call,
        json!({"rtt": 12}).as_object().unwrap(),
    )
    .await
    .unwrap();

    h.clock.advance(61_000);
    calls::leave(&h.app, &peer("bob"), &call).await.unwrap();
    assert_eq!(
        h.status(&call).await,
        CallStatus::Active,
        "ann is still in it"
    );
    let left = h
        .outbox
        .to_room(&device("ann"), events::CALL_PARTICIPANT_LEFT);
    assert_eq!(left[0]["userId"], "bob");
    assert_eq!(left[0]["participantId"], to_ann[0]["participant"]["id"]);
    h.clock.advance(1_000);
    calls::leave(&h.other, &peer("ann"), &call).await.unwrap();
    let ended = h
        .outbox
        .to_room(&rooms::conversation(&h.conv), events::CALL_ENDED);
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0]["duration"], 62, "from connectedAt");
    assert_eq!(ended[0]["endedBy"], "ann");

    let history = h.history(&call).await;
    assert_eq!(history.outcome, Some(CallOutcome::Completed));
    assert_eq!(history.duration_secs, Some(62));
    assert_eq!(history.participants.len(), 2);
    let bob = history
        .participants
        .iter()
        .find(|p| p.user_id.as_deref() == Some("bob"))
        .unwrap();
    assert_eq!(bob.joined_at, START);
    assert_eq!(bob.left_at, Some(START + 63_000));
    assert!(!bob.video_enabled);
    let ann = history
        .participants
        .iter()
        .find(|p| p.user_id.as_deref() == Some("ann"))
        .unwrap();
    assert_eq!(ann.connection_quality, Some(json!({"rtt": 12})));
    // cat never joined and still sees the call in their history.
    let (cat_calls, _) = h.db.call_history_for_user("cat", None, None).await.unwrap();
    assert_eq!(cat_calls[0].id, call);
    // Over: a late join is refused, and the conversation takes a new call.
    assert_eq!(
        code(calls::join(&h.app, &peer("cat"), &call).await),
        "CONFLICT"
    );
    assert!(h.initiate("bob").await.is_ok());
}

async fn one_live_call_per_conversation_and_zombies_make_way(b: Backend) {
    let Some(h) = harness(b).await else { return };
    // Two initiations at once on two instances: exactly one wins.
    let request = || CallInitiate {
        conversation_id: h.conv.clone(),
        call_type: CallType::Audio,
        settings: None,
    };
    let (ann, bob) = (peer("ann"), peer("bob"));
    let (x, y) = tokio::join!(
        calls::initiate(&h.app, &ann, request()),
        calls::initiate(&h.other, &bob, request()),
    );
    let (winner, loser) = match (x, y) {
        (Ok(w), Err(l)) => (w, l),
        (Err(l), Ok(w)) => (w, l),
        other => panic!("exactly one initiation wins: {other:?}"),
    };
    assert_eq!(loser.code().as_str(), "CALL_ALREADY_ACTIVE");
    let first = winner.call_id;
    let initiator = winner.call.initiator.clone();
    assert_eq!(code(h.initiate("cat").await), "CALL_ALREADY_ACTIVE");

    // The initiator's instance dies: nobody attends the call any more, so it is a zombie,
    // ended before the next call starts.
    h.vanish(&initiator).await;
    let second = h.initiate("cat").await.unwrap();
    assert_ne!(first, second);
    let old = h.history(&first).await;
    assert_eq!(old.end_reason.as_deref(), Some("zombie"));
    assert_eq!(old.outcome, Some(CallOutcome::Missed));
    assert_eq!(
        calls::live_call_of(&h.app, &h.conv)
            .await
            .unwrap()
            .unwrap()
            .call
            .id,
        second
    );
}

async fn nobody_joining_times_out_once_as_missed(b: Backend) {
    let Some(h) = harness(b).await else { return };
    let call = h.initiate("ann").await.unwrap();
    assert_eq!(h.advance(29).await, 0, "not yet");
    assert_eq!(h.status(&call).await, CallStatus::Ringing);
    assert_eq!(h.advance(1).await, 1);
    assert_eq!(h.status(&call).await, CallStatus::Ended);
    let ended = h
        .outbox
        .to_room(&rooms::conversation(&h.conv), events::CALL_ENDED);
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0]["reason"], "timeout");
    assert_eq!(ended[0]["duration"], 0);
    assert_eq!(
        h.outbox.to_room(&device("ann"), events::CALL_ENDED).len(),
        1
    );
    let history = h.history(&call).await;
    assert_eq!(history.outcome, Some(CallOutcome::Missed));
    assert_eq!(history.end_reason.as_deref(), Some("timeout"));
    // The timer fired once, and the conversation is free.
    assert_eq!(h.advance(60).await, 0);
    assert_eq!(h.outbox.count(events::CALL_ENDED), 1);
    assert_eq!(
        code(calls::join(&h.app, &peer("bob"), &call).await),
        "CONFLICT"
    );
    assert!(h.initiate("bob").await.is_ok());

    // A join in time cancels the timeout.
    let h2 = harness(b).await.unwrap();
    let call = h2.initiate("ann").await.unwrap();
    h2.clock.advance(10_000);
    calls::join(&h2.app, &peer("bob"), &call).await.unwrap();
    h2.advance(30).await;
    assert_eq!(h2.status(&call).await, CallStatus::Active);
}

async fn a_dropped_participant_resumes_or_leaves_after_the_window(b: Backend) {
    let Some(h) = harness(b).await else { return };
    let call = h.initiate("ann").await.unwrap();
    let joined = calls::join(&h.app, &peer("bob"), &call).await.unwrap();
    let bob_record = joined.call.participants[1].id.clone();

    calls::socket_dropped(&h.other, "bob", "sock-bob")
        .await
        .unwrap();
    let reconnecting = h
        .outbox
        .to_room(&device("ann"), events::CALL_PARTICIPANT_RECONNECTING);
    assert_eq!(reconnecting, [json!({"callId": call, "userId": "bob"})]);
    assert!(
        h.outbox
            .to_room(&device("bob"), events::CALL_PARTICIPANT_RECONNECTING)
            .is_empty()
    );
    // A drop of a socket the participant does not use changes nothing.
    calls::socket_dropped(&h.app, "ann", "sock-elsewhere")
        .await
        .unwrap();

    // Back within the window on a new socket: same record, the window's timer is void.
    h.advance(30).await;
    let mut back = peer("bob");
    back.socket_id = "sock-bob-2".into();
    let rejoined = calls::join(&h.app, &back, &call).await.unwrap();
    assert_eq!(
        rejoined.call.participants.len(),
        2,
        "no new participant record"
    );
    assert_eq!(h.advance(60).await, 0, "the reconnect timer was cancelled");
    assert_eq!(h.status(&call).await, CallStatus::Active);

    // Dropped again and not back: after 60 s bob leaves; ann stays.
    calls::socket_dropped(&h.app, "bob", "sock-bob-2")
        .await
        .unwrap();
    h.outbox.clear();
    h.advance(59).await;
    assert!(
        h.outbox
            .to_room(&device("ann"), events::CALL_PARTICIPANT_LEFT)
            .is_empty()
    );
    h.advance(1).await;
    let left = h
        .outbox
        .to_room(&device("ann"), events::CALL_PARTICIPANT_LEFT);
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["participantId"], bob_record);
    assert_eq!(h.status(&call).await, CallStatus::Active);
    let bob = h
        .history(&call)
        .await
        .participants
        .into_iter()
        .find(|p| p.id == bob_record)
        .unwrap();
    assert_eq!(bob.left_at, Some(START + 150_000));

    // The last participant dropping and not returning ends the call.
    calls::user_gone(&h.app, "ann").await.unwrap();
    h.advance(60).await;
    assert_eq!(h.status(&call).await, CallStatus::Ended);
    assert_eq!(
        h.history(&call).await.outcome,
        Some(CallOutcome::Failed),
        "never connected"
    );
}

async fn the_sweep_ends_calls_nobody_attends(b: Backend) {
    let Some(h) = harness(b).await else { return };
    calls::schedule_sweep(&h.app).await.unwrap();
    let call = h.initiate("ann").await.unwrap();
    calls::join(&h.app, &peer("bob"), &call).await.unwrap();
    let healthy = {
        let conv2 = conversations::create(
            &h.app,
            "cat",
            ConversationType::Direct,
            &["zed".into()],
            None,
        )
        .await
        .unwrap()
        .id;
        h.connect("zed").await;
        let r = calls::initiate(
            &h.app,
            &peer("cat"),
            CallInitiate {
                conversation_id: conv2,
                call_type: CallType::Audio,
                settings: None,
            },
        )
        .await
        .unwrap();
        calls::join(&h.app, &peer("zed"), &r.call_id).await.unwrap();
        r.call_id
    };
    // Both of the first call's devices vanish with a crashed instance.
    h.vanish("ann").await;
    h.vanish("bob").await;
    assert_eq!(h.advance(299).await, 0);
    // The heartbeat keeps the live devices live.
    let live =
        [("cat", "dev-cat"), ("zed", "dev-zed")].map(|(u, d)| (u.to_string(), d.to_string()));
    h.store
        .presence_refresh(
            &live,
            h.clock.now_ms(),
            h.app.settings.timers.presence_ttl(),
        )
        .await
        .unwrap();
    assert_eq!(
        h.status(&call).await,
        CallStatus::Active,
        "nobody noticed yet"
    );
    assert_eq!(h.advance(1).await, 1, "the sweep ran");
    assert_eq!(h.status(&call).await, CallStatus::Ended);
    assert_eq!(h.history(&call).await.end_reason.as_deref(), Some("zombie"));
    assert_eq!(
        h.status(&healthy).await,
        CallStatus::Active,
        "attended calls stay"
    );
    // It scheduled its next run.
    assert_eq!(h.advance(300).await, 1);
}

async fn signals_go_only_between_participants(b: Backend) {
    let Some(h) = harness(b).await else { return };
    let call = h.initiate("ann").await.unwrap();
    assert_eq!(
        code(h.signal("ann", &call, SignalType::Offer, "bob").await),
        "NOT_FOUND",
        "bob has not joined"
    );
    calls::join(&h.app, &peer("bob"), &call).await.unwrap();
    h.signal("ann", &call, SignalType::Offer, "bob")
        .await
        .unwrap();
    let offers = h.outbox.to_room(&device("bob"), events::CALL_SIGNAL);
    assert_eq!(
        offers,
        [
            json!({"callId": call, "signal": {"type": "offer", "from": "ann", "to": "bob", "sdp": "v=0\r\n"}})
        ]
    );
    assert!(
        h.outbox
            .to_room(&rooms::user("bob"), events::CALL_SIGNAL)
            .is_empty(),
        "not every device"
    );
    assert!(
        h.outbox
            .to_room(&device("ann"), events::CALL_SIGNAL)
            .is_empty()
    );
    assert_eq!(
        code(h.signal("cat", &call, SignalType::Offer, "bob").await),
        "FORBIDDEN"
    );
    // Another device of a participant does not signal for the one in the call.
    let mut laptop = peer("ann");
    laptop.device_id = "dev-ann-laptop".into();
    let offer = CallSignal {
        call_id: call.clone(),
        signal: ClientSignal {
            signal_type: SignalType::Offer,
            to: "bob".into(),
            sdp: Some(json!("v=0")),
            candidate: None,
        },
    };
    assert_eq!(
        code(calls::signal(&h.app, &laptop, offer).await),
        "FORBIDDEN"
    );
    assert_eq!(
        code(h.signal("ann", &call, SignalType::Offer, "ann").await),
        "INVALID_PAYLOAD"
    );
    assert_eq!(
        code(
            h.signal("ann", "no-such-call", SignalType::Offer, "bob")
                .await
        ),
        "NOT_FOUND"
    );
    // `call:connected` from a participant connects the call; from others it is refused.
    assert_eq!(
        code(calls::report_connected(&h.app, &peer("cat"), &call).await),
        "FORBIDDEN"
    );
    calls::report_connected(&h.app, &peer("bob"), &call)
        .await
        .unwrap();
    calls::report_connected(&h.app, &peer("ann"), &call)
        .await
        .unwrap();
    assert_eq!(h.history(&call).await.connected_at, Some(START));
}

async fn guests_members_and_the_third_participant(b: Backend) {
    let Some(h) = harness(b).await else { return };
    let call = h.initiate("ann").await.unwrap();
    // Not a member: refused; a guest of another conversation: refused.
    assert_eq!(
        code(calls::join(&h.app, &peer("zed"), &call).await),
        "FORBIDDEN"
    );
    assert_eq!(
        code(calls::join(&h.app, &guest("anon-1", "elsewhere"), &call).await),
        "FORBIDDEN"
    );
    // Guests do not start calls.
    assert_eq!(
        code(
            calls::initiate(
                &h.app,
                &guest("anon-1", &h.conv),
                CallInitiate {
                    conversation_id: h.conv.clone(),
                    call_type: CallType::Audio,
                    settings: None,
                },
            )
            .await
        ),
        "FORBIDDEN"
    );
    // A guest of this conversation joins as an anonymous participant.
    let joined = calls::join(&h.app, &guest("anon-1", &h.conv), &call)
        .await
        .unwrap();
    let record = joined
        .call
        .participants
        .iter()
        .find(|p| p.anonymous_id.is_some())
        .unwrap()
        .clone();
    assert_eq!(record.user_id, None);
    assert!(
        joined.ice_servers[1]
            .username
            .as_deref()
            .unwrap()
            .ends_with(":anon-1")
    );
    // A call with a guest cannot move to the SFU (guests cannot join rooms): the third
    // participant is refused.
    assert_eq!(
        code(calls::join(&h.app, &peer("bob"), &call).await),
        "CALL_FULL"
    );
    calls::leave(&h.app, &guest("anon-1", &h.conv), &call)
        .await
        .unwrap();
    let left = h
        .outbox
        .to_room(&device("ann"), events::CALL_PARTICIPANT_LEFT);
    assert_eq!(
        left.last().unwrap(),
        &json!({"callId": call, "participantId": record.id, "anonymousId": "anon-1"})
    );
    let history = h.history(&call).await;
    let g = history
        .participants
        .iter()
        .find(|p| p.id == record.id)
        .unwrap();
    assert_eq!(g.anonymous_id.as_deref(), Some("anon-1"));
    assert!(g.left_at.is_some());

    // Force-leave: the sender leaves, and a call left empty ends.
    calls::join(&h.app, &peer("bob"), &call).await.unwrap();
    let ended = calls::force_leave(&h.app, &peer("bob"), &h.conv)
        .await
        .unwrap();
    assert!(ended.is_empty(), "ann is still in it");
    let ended = calls::force_leave(&h.app, &peer("ann"), &h.conv)
        .await
        .unwrap();
    assert_eq!(ended, vec![call.clone()]);
    assert_eq!(h.status(&call).await, CallStatus::Ended);
    assert_eq!(
        code(calls::force_leave(&h.app, &peer("zed"), &h.conv).await),
        "FORBIDDEN"
    );
}

on_both!(participants_are_busy_elsewhere_and_shown_in_a_call);

async fn participants_are_busy_elsewhere_and_shown_in_a_call(b: Backend) {
    let Some(h) = harness(b).await else { return };
    let in_call = |user: &'static str| {
        let store = h.store.clone();
        let now = h.clock.now_ms();
        async move {
            store
                .presence_get(&[user.to_string()], now)
                .await
                .unwrap()
                .pop()
                .flatten()
                .is_some_and(|e| e.in_call)
        }
    };
    let call = h.initiate("ann").await.unwrap();
    calls::join(&h.app, &peer("bob"), &call).await.unwrap();
    assert!(in_call("ann").await && in_call("bob").await);
    assert!(!in_call("cat").await);
    // A call in another conversation: cat may start it, but bob is busy.
    let other = conversations::create(
        &h.app,
        "cat",
        ConversationType::Direct,
        &["bob".into()],
        None,
    )
    .await
    .unwrap()
    .id;
    let second = calls::initiate(
        &h.app,
        &peer("cat"),
        CallInitiate {
            conversation_id: other.clone(),
            call_type: CallType::Audio,
            settings: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(
        code(calls::join(&h.other, &peer("bob"), &second.call_id).await),
        "BUSY"
    );
    // Rejoining one's own call is not busy.
    calls::join(&h.app, &peer("bob"), &call).await.unwrap();
    // Once bob left, the slot is free and his presence is back.
    calls::leave(&h.app, &peer("bob"), &call).await.unwrap();
    assert!(!in_call("bob").await);
    calls::join(&h.other, &peer("bob"), &second.call_id)
        .await
        .unwrap();
    assert!(in_call("bob").await);
    // The call ending frees everyone left in it.
    calls::leave(&h.app, &peer("ann"), &call).await.unwrap();
    assert!(!in_call("ann").await);
}

on_both!(a_third_participant_moves_the_call_to_an_sfu_room);

fn party(user: &str) -> Party {
    Party {
        user_id: user.into(),
        name: user.into(),
        socket_id: format!("sock-{user}"),
        device_id: format!("dev-{user}"),
    }
}

async fn a_third_participant_moves_the_call_to_an_sfu_room(b: Backend) {
    let Some(h) = harness(b).await else { return };
    conversations::add_members(&h.app, "ann", &h.conv, &["dan".to_string()])
        .await
        .unwrap();
    h.connect("dan").await;
    let call = h.initiate("ann").await.unwrap();
    let joined = calls::join(&h.app, &peer("bob"), &call).await.unwrap();
    assert_eq!(to_json(&joined.call)["mode"], "p2p");
    assert_eq!(h.outbox.count(events::CALL_MODE_CHANGED), 0);

    // cat and dan join at once on two instances: one of them is the third, and the call
    // moves to one room, once.
    let (cat, dan) = (peer("cat"), peer("dan"));
    let (x, y) = tokio::join!(
        calls::join(&h.app, &cat, &call),
        calls::join(&h.other, &dan, &call),
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    let room_id = x.call.room_id.clone().expect("the call names its room");
    assert_eq!(y.call.room_id.as_deref(), Some(room_id.as_str()));
    assert_eq!(to_json(&x.call)["mode"], "sfu");
    assert_eq!(to_json(&y.call)["mode"], "sfu");
    assert_eq!(
        h.outbox.count(events::CALL_MODE_CHANGED),
        1,
        "one switch, one event"
    );
    let changed = json!({"callId": call, "mode": "sfu", "roomId": room_id});
    // Everyone attending at the switch hears it (the fourth, joining after, learns it from
    // the join ack).
    let heard: Vec<&str> = ["ann", "bob", "cat", "dan"]
        .into_iter()
        .filter(|u| {
            h.outbox.to_room(&device(u), events::CALL_MODE_CHANGED) == vec![changed.clone()]
        })
        .collect();
    assert_eq!(heard.len(), 3, "{heard:?}");
    assert!(heard.contains(&"ann") && heard.contains(&"bob"));
    let history = h.history(&call).await;
    assert_eq!(history.room_id.as_deref(), Some(room_id.as_str()));

    // The room: private to the conversation's members, hosted by the initiator, who takes
    // part already; call participants join it although their call holds their slot.
    let room = room_service::get(&h.app, &room_id).await.unwrap();
    assert_eq!(room.host_id, "ann");
    assert!(room.is_private);
    let joined_room = room_service::enter(&h.other, &party("cat"), &room_id, Entry::Join)
        .await
        .unwrap();
    assert_eq!(joined_room.participants.len(), 2);
    room_service::enter(&h.app, &party("ann"), &room_id, Entry::Join)
        .await
        .unwrap();
    assert_eq!(
        code(room_service::enter(&h.app, &party("zed"), &room_id, Entry::Join).await),
        "FORBIDDEN",
        "not a member of the conversation"
    );
    // Rejoining the call from the room's device is fine too.
    let rejoined = calls::join(&h.app, &peer("cat"), &call).await.unwrap();
    assert_eq!(rejoined.call.room_id.as_deref(), Some(room_id.as_str()));

    // Back to two: still on the SFU, same room; nobody else gets a room.
    calls::leave(&h.app, &peer("cat"), &call).await.unwrap();
    calls::leave(&h.other, &peer("dan"), &call).await.unwrap();
    let r = calls::record(&h.app, &call).await.unwrap().unwrap();
    assert_eq!(to_json(&r.call)["mode"], "sfu");
    assert_eq!(r.call.room_id.as_deref(), Some(room_id.as_str()));
    let again = calls::join(&h.other, &peer("dan"), &call).await.unwrap();
    assert_eq!(again.call.room_id.as_deref(), Some(room_id.as_str()));
    assert_eq!(h.outbox.count(events::CALL_MODE_CHANGED), 1);
    assert_eq!(room_service::all(&h.app).await.unwrap().len(), 1);

    // The call ends when its last participant leaves, and its room with it.
    for user in ["ann", "bob", "dan"] {
        calls::leave(&h.app, &peer(user), &call).await.unwrap();
    }
    assert_eq!(h.status(&call).await, CallStatus::Ended);
    let room = room_service::get(&h.app, &room_id).await.unwrap();
    assert_eq!(to_json(&room.status), "ended");
    assert_eq!(h.outbox.count(events::ROOM_CALL_ENDED), 1);
    // Everyone is free again: cat's room membership went with the room.
    assert!(h.initiate("cat").await.is_ok());
}

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap()
}

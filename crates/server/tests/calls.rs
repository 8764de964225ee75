//! Direct calls (protocol §5) driven in simulated time, with a recording outbox standing in
//! for Socket.IO: ringing, refusals, push rings, the races of seed 002 §3.1 (callee accepts
//! while caller cancels, double accept, timeout while accepting), timeouts on the deadline
//! queue, the request TTL, disconnect cleanup and the call history.

use std::sync::Arc;
use std::time::Duration;

use switchboard_db::{Db, DbOptions};
use switchboard_domain::devices::DeviceConnect;
use switchboard_domain::time::{Clock, ManualClock};
use switchboard_protocol::calls::{Delivery, PendingCallState};
use switchboard_protocol::events;
use switchboard_server::app::{App, Backends, SharedApp};
use switchboard_server::config::{Overrides, Settings};
use switchboard_server::error::AppResult;
use switchboard_server::outbox::rooms;
use switchboard_server::services::calls::{self, Actor};
use switchboard_server::services::{call_state, notifications, sessions, users};
use switchboard_store::Timer;
use switchboard_store::bus::MemoryBus;
use switchboard_store::memory::MemoryStore;

mod support;
use support::Recorder;

struct Harness {
    app: SharedApp,
    clock: ManualClock,
    outbox: Arc<Recorder>,
    dir: std::path::PathBuf,
}

impl Drop for Harness {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

const START: i64 = 1_800_000_000_000;

async fn harness() -> Harness {
    let overrides = Overrides {
        bind: Some("127.0.0.1:0".parse().unwrap()),
        dev: true,
        redis_url: None,
        database_url: None,
    };
    let mut settings = Settings::load_from(None, &overrides, &|_| None).unwrap();
    settings.presence.public = Some(false);
    let dir = std::env::temp_dir().join(format!("sb-calls-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let clock = ManualClock::new(START);
    let outbox = Arc::new(Recorder::default());
    let db = Db::connect(
        &format!("sqlite://{}/t.db?mode=rwc", dir.display()),
        &DbOptions::default(),
    )
    .await
    .unwrap();
    db.migrate().await.unwrap();
    let store = Arc::new(MemoryStore::new(Arc::new(clock.clone()) as Arc<dyn Clock>));
    let backends = Backends {
        store,
        db,
        bus: Arc::new(MemoryBus::new()),
    };
    let app = App::new(settings, backends, Arc::new(clock.clone()), outbox.clone());
    for (id, name) in [
        ("alice", "Alice"),
        ("bob", "Bob"),
        ("carol", "Carol"),
        ("dave", "Dave"),
    ] {
        users::upsert(&app, id, name).await.unwrap();
    }
    Harness {
        app,
        clock,
        outbox,
        dir,
    }
}

fn name(user: &str) -> String {
    let mut c = user.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

fn socket(user: &str, device: &str) -> String {
    format!("sock-{user}-{device}")
}

/// A device connects, as the handshake does it.
async fn connect(app: &App, user: &str, device: &str) {
    sessions::admit(
        app,
        &DeviceConnect {
            user_id: user.into(),
            device_id: device.into(),
            socket_id: socket(user, device),
            instance_id: app.instance_id.clone(),
            ip: None,
            user_agent: None,
        },
    )
    .await
    .unwrap();
    sessions::mark_connected(app, user, &name(user), device)
        .await
        .unwrap();
    calls::device_connected(app, user, device).await.unwrap();
}

/// A device's socket drops, as the gateway handles it.
async fn disconnect(app: &App, user: &str, device: &str) {
    if sessions::release(app, user, device, &socket(user, device))
        .await
        .unwrap()
    {
        calls::device_disconnected(app, user, device).await.unwrap();
    }
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn call(app: &App, from: &str, device: &str, call_id: &str, to: &str) -> AppResult<Delivery> {
    let name = name(from);
    let sock = socket(from, device);
    let caller = Actor {
        user_id: from,
        name: &name,
        device_id: device,
        socket_id: &sock,
    };
    Ok(calls::call_user(app, &caller, call_id, to)
        .await?
        .delivery
        .expect("a delivery"))
}

async fn accept(app: &App, user: &str, device: &str, call_id: &str) -> AppResult<String> {
    let name = name(user);
    let sock = socket(user, device);
    let callee = Actor {
        user_id: user,
        name: &name,
        device_id: device,
        socket_id: &sock,
    };
    Ok(calls::accept(app, &callee, call_id).await?.room_id)
}

async fn reject(app: &App, user: &str, device: &str, call_id: &str) -> AppResult<()> {
    let name = name(user);
    let sock = socket(user, device);
    let callee = Actor {
        user_id: user,
        name: &name,
        device_id: device,
        socket_id: &sock,
    };
    calls::reject(app, &callee, call_id, Some("in a meeting"))
        .await
        .map(|_| ())
}

fn code<T: std::fmt::Debug>(r: AppResult<T>) -> &'static str {
    r.unwrap_err().code().as_str()
}

/// Claims the due timers the way the runner does and fires the ring timeouts.
async fn fire_due(app: &SharedApp) -> usize {
    let due: Vec<Timer> = app
        .store
        .timers_claim_due(app.now(), 100, "test", Duration::from_secs(30))
        .await
        .unwrap();
    let mut fired = 0;
    for timer in due {
        if timer.kind == calls::RING_TIMER {
            calls::ring_timed_out(app, &timer).await;
            fired += 1;
        }
        app.store.timer_complete(&timer.id, "test").await.unwrap();
    }
    fired
}

async fn state(app: &App, call_id: &str) -> Option<PendingCallState> {
    calls::request(app, call_id).await.unwrap().map(|r| r.state)
}

async fn outcome(app: &App, call_id: &str) -> Option<String> {
    let call = calls::get(app, call_id).await.unwrap();
    call["outcome"].as_str().map(str::to_string)
}

/// Alice (one device) and Bob (phone and laptop) are connected.
async fn two_users() -> Harness {
    let h = harness().await;
    connect(&h.app, "alice", "a1").await;
    connect(&h.app, "bob", "phone").await;
    connect(&h.app, "bob", "laptop").await;
    h.outbox.clear();
    h
}

#[tokio::test]
async fn a_call_rings_every_device_of_the_callee_and_shows_in_requests() {
    let h = two_users().await;
    let id = new_id();
    assert_eq!(
        call(&h.app, "alice", "a1", &id, "bob").await.unwrap(),
        Delivery::Ringing
    );
    let rung = h
        .outbox
        .to_room(&rooms::user("bob"), events::INCOMING_CALL_NEW);
    assert_eq!(
        rung.len(),
        1,
        "one emit to Bob's user room reaches every device"
    );
    assert_eq!(
        rung[0],
        serde_json::json!({"callId": id, "from": "alice", "fromName": "Alice"})
    );
    let bob = calls::requests(&h.app, "bob").await.unwrap();
    assert_eq!(bob.incoming.len(), 1);
    assert!(bob.outgoing.is_empty());
    assert_eq!(bob.incoming[0].from_name, "Alice");
    assert_eq!(bob.incoming[0].to_name, "Bob");
    assert_eq!(bob.incoming[0].state, PendingCallState::Pending);
    let alice = calls::requests(&h.app, "alice").await.unwrap();
    assert_eq!(alice.outgoing.len(), 1);
    assert!(alice.incoming.is_empty());
    // A device Bob connects while it rings rings too.
    connect(&h.app, "bob", "tablet").await;
    assert_eq!(
        h.outbox
            .to_room(&rooms::device("bob", "tablet"), events::INCOMING_CALL_NEW)
            .len(),
        1
    );
    // The call is in both histories as ringing.
    let (history, _) = calls::history(&h.app, "bob", None, None).await.unwrap();
    assert_eq!(history[0]["id"], id.as_str());
    assert_eq!(history[0]["status"], "ringing");
    assert_eq!(history[0]["kind"], "direct");
}

#[tokio::test]
async fn call_user_refusals_change_nothing() {
    let h = two_users().await;
    // Yourself, or a bad id: INVALID_PAYLOAD.
    assert_eq!(
        code(call(&h.app, "alice", "a1", &new_id(), "alice").await),
        "INVALID_PAYLOAD"
    );
    assert_eq!(
        code(call(&h.app, "alice", "a1", "not-a-uuid", "bob").await),
        "INVALID_PAYLOAD"
    );
    // Nobody with a session: OFFLINE, worth retrying.
    let offline = call(&h.app, "alice", "a1", &new_id(), "dave")
        .await
        .unwrap_err();
    assert_eq!(offline.code().as_str(), "OFFLINE");
    let ack = serde_json::to_value(offline.to_ack()).unwrap();
    assert_eq!(ack["canRetry"], true);
    assert_eq!(ack["success"], false);
    assert!(h.outbox.events(events::INCOMING_CALL_NEW).is_empty());

    // Bob is ringing: Carol gets BUSY, and so does Alice calling anyone else.
    connect(&h.app, "carol", "c1").await;
    connect(&h.app, "dave", "d1").await;
    let first = new_id();
    call(&h.app, "alice", "a1", &first, "bob").await.unwrap();
    h.outbox.clear();
    let busy = call(&h.app, "carol", "c1", &new_id(), "bob")
        .await
        .unwrap_err();
    assert_eq!(busy.code().as_str(), "BUSY");
    assert_eq!(
        serde_json::to_value(busy.to_ack()).unwrap()["canRetry"],
        true
    );
    assert_eq!(
        code(call(&h.app, "alice", "a1", &new_id(), "dave").await),
        "BUSY"
    );
    assert_eq!(
        code(call(&h.app, "dave", "d1", &new_id(), "alice").await),
        "BUSY"
    );
    assert!(h.outbox.events(events::INCOMING_CALL_NEW).is_empty());
    // Carol and Dave were not left engaged by the refusals.
    assert_eq!(call_state::current(&h.app, "carol").await.unwrap(), None);
    assert_eq!(call_state::current(&h.app, "dave").await.unwrap(), None);
    assert!(
        calls::requests(&h.app, "carol")
            .await
            .unwrap()
            .outgoing
            .is_empty()
    );

    // Reusing a call id: CONFLICT, while it rings and after it is over.
    assert_eq!(
        code(call(&h.app, "carol", "c1", &first, "dave").await),
        "CONFLICT"
    );
    calls::cancel(&h.app, "alice", &first).await.unwrap();
    h.clock.advance(120_000);
    assert_eq!(state(&h.app, &first).await, None, "the record has expired");
    assert_eq!(
        code(call(&h.app, "carol", "c1", &first, "dave").await),
        "CONFLICT"
    );
    // Once the ring is over Carol can call Bob.
    call(&h.app, "carol", "c1", &new_id(), "bob").await.unwrap();
}

#[tokio::test]
async fn a_callee_with_only_a_sleeping_device_is_rung_by_push() {
    let h = harness().await;
    connect(&h.app, "alice", "a1").await;
    connect(&h.app, "bob", "phone").await;
    disconnect(&h.app, "bob", "phone").await;
    h.outbox.clear();
    let id = new_id();
    assert_eq!(
        call(&h.app, "alice", "a1", &id, "bob").await.unwrap(),
        Delivery::Push
    );
    let (notices, _) = notifications::list(&h.app, "bob", None, None)
        .await
        .unwrap();
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].kind, "incoming_call");
    assert_eq!(notices[0].priority, notifications::Priority::High);
    assert_eq!(notices[0].data["callId"], id.as_str());
    // The phone wakes up and connects while the call is pending: it rings and can answer.
    connect(&h.app, "bob", "phone").await;
    let rung = h
        .outbox
        .to_room(&rooms::device("bob", "phone"), events::INCOMING_CALL_NEW);
    assert_eq!(rung.len(), 1);
    assert_eq!(rung[0]["callId"], id.as_str());
    accept(&h.app, "bob", "phone", &id).await.unwrap();
    assert_eq!(state(&h.app, &id).await, Some(PendingCallState::Accepted));
}

#[tokio::test]
async fn accepting_opens_a_direct_room_and_stops_the_other_devices() {
    let h = two_users().await;
    let id = new_id();
    call(&h.app, "alice", "a1", &id, "bob").await.unwrap();
    let room_id = accept(&h.app, "bob", "laptop", &id).await.unwrap();
    let accepted = h
        .outbox
        .to_room(&rooms::device("alice", "a1"), events::CALL_ACCEPTED_NEW);
    assert_eq!(accepted.len(), 1, "the caller's calling device hears it");
    assert_eq!(accepted[0]["callId"], id.as_str());
    assert_eq!(accepted[0]["roomId"], room_id.as_str());
    assert_eq!(accepted[0]["room"]["roomType"], "direct");
    let elsewhere = h.outbox.events(events::CALL_CANCELLED);
    assert_eq!(elsewhere.len(), 1);
    assert_eq!(elsewhere[0].rooms, vec![rooms::user("bob")]);
    assert_eq!(
        elsewhere[0].except.as_deref(),
        Some(rooms::device("bob", "laptop").as_str())
    );
    assert_eq!(elsewhere[0].data["reason"], "answered_elsewhere");
    assert_eq!(state(&h.app, &id).await, Some(PendingCallState::Accepted));
    // Both are in the room now: nobody can ring either of them.
    connect(&h.app, "carol", "c1").await;
    assert_eq!(
        code(call(&h.app, "carol", "c1", &new_id(), "bob").await),
        "BUSY"
    );
    assert_eq!(
        code(call(&h.app, "carol", "c1", &new_id(), "alice").await),
        "BUSY"
    );
    // The ring timer is gone: nothing fires at 30 s.
    h.clock.advance(31_000);
    assert_eq!(fire_due(&h.app).await, 0);
    assert!(h.outbox.events(events::CALL_TIMEOUT).is_empty());
    assert!(
        calls::requests(&h.app, "bob")
            .await
            .unwrap()
            .incoming
            .is_empty()
    );
}

#[tokio::test]
async fn only_the_callee_answers_and_only_the_caller_cancels() {
    let h = two_users().await;
    connect(&h.app, "carol", "c1").await;
    let id = new_id();
    call(&h.app, "alice", "a1", &id, "bob").await.unwrap();
    assert_eq!(code(accept(&h.app, "alice", "a1", &id).await), "FORBIDDEN");
    assert_eq!(code(accept(&h.app, "carol", "c1", &id).await), "FORBIDDEN");
    assert_eq!(code(reject(&h.app, "alice", "a1", &id).await), "FORBIDDEN");
    assert_eq!(code(calls::cancel(&h.app, "bob", &id).await), "FORBIDDEN");
    assert_eq!(
        code(accept(&h.app, "bob", "phone", &new_id()).await),
        "NOT_FOUND"
    );
    assert_eq!(state(&h.app, &id).await, Some(PendingCallState::Pending));
}

#[tokio::test]
async fn rejecting_tells_the_caller_and_the_other_devices() {
    let h = two_users().await;
    let id = new_id();
    call(&h.app, "alice", "a1", &id, "bob").await.unwrap();
    reject(&h.app, "bob", "phone", &id).await.unwrap();
    let told = h
        .outbox
        .to_room(&rooms::device("alice", "a1"), events::CALL_REJECTED_NEW);
    assert_eq!(
        told,
        vec![serde_json::json!({"callId": id, "reason": "in a meeting"})]
    );
    let others = h.outbox.events(events::CALL_CANCELLED);
    assert_eq!(others.len(), 1);
    assert_eq!(
        others[0].except.as_deref(),
        Some(rooms::device("bob", "phone").as_str())
    );
    assert_eq!(outcome(&h.app, &id).await.as_deref(), Some("rejected"));
    assert_eq!(code(accept(&h.app, "bob", "laptop", &id).await), "CONFLICT");
    // Both are free again.
    call(&h.app, "bob", "phone", &new_id(), "alice")
        .await
        .unwrap();
}

#[tokio::test]
async fn cancelling_stops_every_callee_device_and_is_history() {
    let h = two_users().await;
    let id = new_id();
    call(&h.app, "alice", "a1", &id, "bob").await.unwrap();
    h.clock.advance(3_000);
    calls::cancel(&h.app, "alice", &id).await.unwrap();
    assert_eq!(
        h.outbox
            .to_room(&rooms::user("bob"), events::CALL_CANCELLED),
        vec![serde_json::json!({"callId": id})]
    );
    assert_eq!(code(calls::cancel(&h.app, "alice", &id).await), "CONFLICT");
    assert_eq!(code(reject(&h.app, "bob", "phone", &id).await), "CONFLICT");
    let call = calls::get(&h.app, &id).await.unwrap();
    assert_eq!(call["outcome"], "cancelled");
    assert_eq!(call["status"], "ended");
    assert_eq!(call["endedAt"], START + 3_000);
    assert!(
        call.get("duration").is_none(),
        "never connected, no duration"
    );
    h.clock.advance(30_000);
    assert_eq!(fire_due(&h.app).await, 0, "the ring timer was cancelled");
}

#[tokio::test]
async fn callee_accepts_while_caller_cancels_exactly_one_wins() {
    for round in 0..20 {
        let h = two_users().await;
        let id = new_id();
        call(&h.app, "alice", "a1", &id, "bob").await.unwrap();
        let (accepted, cancelled) = tokio::join!(
            accept(&h.app, "bob", "phone", &id),
            calls::cancel(&h.app, "alice", &id)
        );
        match (&accepted, &cancelled) {
            (Ok(_), Err(e)) => {
                assert_eq!(e.code().as_str(), "CONFLICT", "round {round}");
                assert_eq!(state(&h.app, &id).await, Some(PendingCallState::Accepted));
                // Bob's other devices stop because he answered, not because Alice hung up.
                let stops = h
                    .outbox
                    .to_room(&rooms::user("bob"), events::CALL_CANCELLED);
                assert!(stops.iter().all(|d| d["reason"] == "answered_elsewhere"));
            }
            (Err(e), Ok(_)) => {
                assert_eq!(e.code().as_str(), "CONFLICT", "round {round}");
                assert_eq!(state(&h.app, &id).await, Some(PendingCallState::Cancelled));
                assert!(h.outbox.events(events::CALL_ACCEPTED_NEW).is_empty());
                assert_eq!(outcome(&h.app, &id).await.as_deref(), Some("cancelled"));
            }
            other => panic!("round {round}: exactly one must win, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn double_accept_from_two_devices_opens_one_room() {
    for round in 0..20 {
        let h = two_users().await;
        let id = new_id();
        call(&h.app, "alice", "a1", &id, "bob").await.unwrap();
        let (phone, laptop) = tokio::join!(
            accept(&h.app, "bob", "phone", &id),
            accept(&h.app, "bob", "laptop", &id)
        );
        let wins = [&phone, &laptop].iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "round {round}: {phone:?} {laptop:?}");
        let loser = if phone.is_ok() { laptop } else { phone };
        assert_eq!(loser.unwrap_err().code().as_str(), "CONFLICT");
        assert_eq!(h.outbox.events(events::CALL_ACCEPTED_NEW).len(), 1);
        // A network retry of the winner is a conflict too, and changes nothing.
        assert_eq!(code(accept(&h.app, "bob", "phone", &id).await), "CONFLICT");
        assert_eq!(h.outbox.events(events::CALL_ACCEPTED_NEW).len(), 1);
    }
}

#[tokio::test]
async fn an_unanswered_call_times_out_once_with_a_missed_call() {
    let h = two_users().await;
    let id = new_id();
    call(&h.app, "alice", "a1", &id, "bob").await.unwrap();
    h.clock.advance(29_999);
    assert_eq!(fire_due(&h.app).await, 0, "not before 30 s");
    h.clock.advance(1);
    assert_eq!(fire_due(&h.app).await, 1);
    let to_caller = h
        .outbox
        .events(events::CALL_TIMEOUT)
        .into_iter()
        .filter(|s| {
            s.rooms.contains(&rooms::device("alice", "a1")) && s.rooms.contains(&rooms::user("bob"))
        })
        .count();
    assert_eq!(to_caller, 1, "one callTimeout to both sides");
    assert_eq!(state(&h.app, &id).await, Some(PendingCallState::Timeout));
    assert_eq!(outcome(&h.app, &id).await.as_deref(), Some("missed"));
    let (notices, _) = notifications::list(&h.app, "bob", None, None)
        .await
        .unwrap();
    assert!(
        notices
            .iter()
            .any(|n| n.kind == "missed_call" && n.priority == notifications::Priority::High)
    );
    h.clock.advance(60_000);
    assert_eq!(fire_due(&h.app).await, 0, "fired exactly once");
    assert_eq!(h.outbox.events(events::CALL_TIMEOUT).len(), 1);
    assert_eq!(code(accept(&h.app, "bob", "phone", &id).await), "NOT_FOUND");
    // Both are free again.
    call(&h.app, "alice", "a1", &new_id(), "bob").await.unwrap();
}

#[tokio::test]
async fn timeout_while_accepting_has_one_answer() {
    // At the deadline the timeout wins even if the accept reaches the store first.
    let h = two_users().await;
    let id = new_id();
    call(&h.app, "alice", "a1", &id, "bob").await.unwrap();
    h.clock.advance(30_000);
    let (accepted, fired) = tokio::join!(accept(&h.app, "bob", "phone", &id), fire_due(&h.app));
    assert_eq!(fired, 1);
    assert_eq!(accepted.unwrap_err().code().as_str(), "CONFLICT");
    assert_eq!(state(&h.app, &id).await, Some(PendingCallState::Timeout));
    assert!(h.outbox.events(events::CALL_ACCEPTED_NEW).is_empty());

    // A millisecond before it, the accept wins and the timer changes nothing.
    let h = two_users().await;
    let id = new_id();
    call(&h.app, "alice", "a1", &id, "bob").await.unwrap();
    h.clock.advance(29_999);
    accept(&h.app, "bob", "phone", &id).await.unwrap();
    h.clock.advance(1);
    assert_eq!(fire_due(&h.app).await, 0);
    assert!(h.outbox.events(events::CALL_TIMEOUT).is_empty());
    assert_eq!(state(&h.app, &id).await, Some(PendingCallState::Accepted));
}

#[tokio::test]
async fn a_timer_that_fires_after_the_record_expired_still_ends_the_call_once() {
    // Every instance was down past the TTL: the record is gone when the timer finally runs.
    let h = two_users().await;
    let id = new_id();
    call(&h.app, "alice", "a1", &id, "bob").await.unwrap();
    h.clock.advance(61_000);
    assert_eq!(
        state(&h.app, &id).await,
        None,
        "a pending request never outlives 60 s"
    );
    assert!(
        calls::requests(&h.app, "bob")
            .await
            .unwrap()
            .incoming
            .is_empty()
    );
    assert_eq!(fire_due(&h.app).await, 1);
    assert_eq!(outcome(&h.app, &id).await.as_deref(), Some("missed"));
    assert_eq!(h.outbox.events(events::CALL_TIMEOUT).len(), 1);
    // Bob is not left busy by the stale slot.
    call(&h.app, "alice", "a1", &new_id(), "bob").await.unwrap();
}

#[tokio::test]
async fn a_caller_whose_device_drops_stops_ringing() {
    let h = two_users().await;
    connect(&h.app, "alice", "a2").await;
    let id = new_id();
    call(&h.app, "alice", "a1", &id, "bob").await.unwrap();
    // Another of Alice's devices going away changes nothing.
    disconnect(&h.app, "alice", "a2").await;
    assert_eq!(state(&h.app, &id).await, Some(PendingCallState::Pending));
    disconnect(&h.app, "alice", "a1").await;
    assert_eq!(state(&h.app, &id).await, Some(PendingCallState::Cancelled));
    assert_eq!(
        h.outbox
            .to_room(&rooms::user("bob"), events::CALL_CANCELLED)
            .len(),
        1
    );
    let call = calls::get(&h.app, &id).await.unwrap();
    assert_eq!(call["outcome"], "cancelled");
    assert_eq!(call["endReason"], calls::CALLER_DISCONNECTED);
}

#[tokio::test]
async fn history_pages_newest_first_with_outcomes() {
    let h = two_users().await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let id = new_id();
        call(&h.app, "alice", "a1", &id, "bob").await.unwrap();
        h.clock.advance(1_000);
        if i % 2 == 0 {
            reject(&h.app, "bob", "phone", &id).await.unwrap();
        } else {
            calls::cancel(&h.app, "alice", &id).await.unwrap();
        }
        h.clock.advance(1_000);
        ids.push(id);
    }
    let (page, more) = calls::history(&h.app, "bob", None, Some(2)).await.unwrap();
    assert!(more);
    assert_eq!(page[0]["id"], ids[2].as_str());
    assert_eq!(page[1]["id"], ids[1].as_str());
    assert_eq!(page[1]["outcome"], "cancelled");
    let (rest, more) = calls::history(&h.app, "bob", Some(&ids[1]), Some(2))
        .await
        .unwrap();
    assert!(!more);
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0]["outcome"], "rejected");
    assert_eq!(rest[0]["endedBy"], "bob");
    assert_eq!(rest[0]["initiator"], "alice");
    assert_eq!(
        code(calls::history(&h.app, "bob", Some("nope"), None).await),
        "NOT_FOUND"
    );
    assert_eq!(code(calls::get(&h.app, "nope").await), "NOT_FOUND");
    let (carol, _) = calls::history(&h.app, "carol", None, None).await.unwrap();
    assert!(carol.is_empty());
}

/// A second instance of the deployment: the same store and database, its own outbox.
fn second_instance(h: &Harness) -> (SharedApp, Arc<Recorder>) {
    let outbox = Arc::new(Recorder::default());
    let backends = Backends {
        store: h.app.store.clone(),
        db: h.app.db.clone(),
        bus: Arc::new(MemoryBus::new()),
    };
    let mut settings = h.app.settings.clone();
    settings.server.instance_id = "second".into();
    let app = App::new(
        settings,
        backends,
        Arc::new(h.clock.clone()),
        outbox.clone(),
    );
    (app, outbox)
}

#[tokio::test]
async fn two_instances_agree_on_the_winner_and_fire_the_timeout_once() {
    let h = two_users().await;
    let (b, _b_out) = second_instance(&h);
    // Accept on one instance, cancel on the other, in the same millisecond.
    for _ in 0..10 {
        let id = new_id();
        call(&h.app, "alice", "a1", &id, "bob").await.unwrap();
        let (accepted, cancelled) = tokio::join!(
            accept(&b, "bob", "phone", &id),
            calls::cancel(&h.app, "alice", &id)
        );
        assert_eq!(
            [accepted.is_ok(), cancelled.is_ok()]
                .iter()
                .filter(|w| **w)
                .count(),
            1,
            "{accepted:?} {cancelled:?}"
        );
        if let Ok(room_id) = accepted {
            switchboard_server::services::rooms::leave(&h.app, "alice", &room_id)
                .await
                .unwrap();
        }
        // Stay under the call rate limit (10 per 60 s).
        h.clock.advance(7_000);
    }
    // Both instances poll the deadline queue at the deadline: one of them fires it.
    h.outbox.clear();
    let id = new_id();
    call(&b, "alice", "a1", &id, "bob").await.unwrap();
    h.clock.advance(30_000);
    let claim = |app: SharedApp, owner: &'static str| async move {
        let due = app
            .store
            .timers_claim_due(app.now(), 100, owner, Duration::from_secs(30))
            .await
            .unwrap();
        for timer in &due {
            calls::ring_timed_out(&app, timer).await;
            app.store.timer_complete(&timer.id, owner).await.unwrap();
        }
        due.len()
    };
    let (first, second) = tokio::join!(claim(h.app.clone(), "one"), claim(b.clone(), "two"));
    assert_eq!(
        first + second,
        1,
        "exactly one instance fires the ring timeout"
    );
    assert_eq!(state(&h.app, &id).await, Some(PendingCallState::Timeout));
    let (notices, _) = notifications::list(&h.app, "bob", None, None)
        .await
        .unwrap();
    assert_eq!(
        notices.iter().filter(|n| n.kind == "missed_call").count(),
        1
    );
}

#[tokio::test]
async fn call_attempts_are_rate_limited() {
    let h = two_users().await;
    for _ in 0..10 {
        let id = new_id();
        call(&h.app, "alice", "a1", &id, "bob").await.unwrap();
        calls::cancel(&h.app, "alice", &id).await.unwrap();
    }
    let limited = call(&h.app, "alice", "a1", &new_id(), "bob")
        .await
        .unwrap_err();
    assert_eq!(limited.code().as_str(), "RATE_LIMITED");
    assert!(serde_json::to_value(limited.to_ack()).unwrap()["retryAfterMs"].as_u64() > Some(0));
    h.clock.advance(60_000);
    call(&h.app, "alice", "a1", &new_id(), "bob").await.unwrap();
}

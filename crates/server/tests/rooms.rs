//! Rooms (protocol §6, seed 002's RoomManager) driven in simulated time, with a recording
//! outbox standing in for Socket.IO: the races seed 002 §3.1 names (two leaves at once,
//! double `endCall`, a host reconnect racing the grace check), host grace and hostless
//! mode, the reconnect window, invitations, the call-state slot (`BUSY`), direct rooms from
//! accepted calls, in-room chat, the room list and call history. Two `App`s sharing one
//! store stand in for two instances; the memory store is wrapped so that every operation
//! yields (races really interleave), and one suite runs two instances on Redis in parallel
//! threads (skipped when Redis is unreachable, unless `SWITCHBOARD_REQUIRE_BACKENDS=1`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use switchboard_db::{CallOutcome, Db, DbOptions};
use switchboard_domain::Millis;
use switchboard_domain::time::{Clock, ManualClock};
use switchboard_protocol::rooms::{CreateRoom, Room, RoomStatus, RoomType};
use switchboard_server::app::{App, Backends, SharedApp};
use switchboard_server::config::{Overrides, Settings};
use switchboard_server::error::AppResult;
use switchboard_server::services::call_state::{self, Engagement};
use switchboard_server::services::notifications::{self, Priority};
use switchboard_server::services::rooms::{self, Entry, Party};
use switchboard_server::services::users;
use switchboard_store::bus::MemoryBus;
use switchboard_store::memory::MemoryStore;
use switchboard_store::{
    CachedMessage, CasOutcome, PresenceChange, PresenceEntry, RateDecision, RecentPage, StateStore,
    StoreResult, Timer, Versioned,
};

mod support;
use support::Recorder;

/// The memory store with a yield before every operation, so that two operations started
/// together (`tokio::join!`) really interleave at each store round trip, as they would on
/// Redis: a race then exercises the CAS retry paths instead of running one side to
/// completion first. Counts the compare-and-set conflicts it saw (lost races).
struct Interleaved(Arc<MemoryStore>, AtomicUsize);

#[async_trait]
impl StateStore for Interleaved {
    fn backend(&self) -> &'static str {
        self.0.backend()
    }
    async fn ping(&self) -> StoreResult<Duration> {
        tokio::task::yield_now().await;
        self.0.ping().await
    }
    async fn get(&self, key: &str) -> StoreResult<Option<Versioned>> {
        tokio::task::yield_now().await;
        self.0.get(key).await
    }
    async fn compare_and_set(
        &self,
        key: &str,
        expected: Option<u64>,
        value: &str,
        ttl: Option<Duration>,
    ) -> StoreResult<CasOutcome> {
        tokio::task::yield_now().await;
        let outcome = self.0.compare_and_set(key, expected, value, ttl).await;
        if matches!(outcome, Ok(CasOutcome::Conflict)) {
            self.1.fetch_add(1, Ordering::Relaxed);
        }
        outcome
    }
    async fn compare_and_delete(&self, key: &str, expected: u64) -> StoreResult<bool> {
        tokio::task::yield_now().await;
        self.0.compare_and_delete(key, expected).await
    }
    async fn index_add(
        &self,
        key: &str,
        members: &[String],
        ttl: Option<Duration>,
    ) -> StoreResult<()> {
        tokio::task::yield_now().await;
        self.0.index_add(key, members, ttl).await
    }
    async fn index_remove(&self, key: &str, members: &[String]) -> StoreResult<()> {
        tokio::task::yield_now().await;
        self.0.index_remove(key, members).await
    }
    async fn index_members(&self, key: &str) -> StoreResult<Vec<String>> {
        tokio::task::yield_now().await;
        self.0.index_members(key).await
    }
    async fn cache_get(&self, key: &str) -> StoreResult<Option<String>> {
        tokio::task::yield_now().await;
        self.0.cache_get(key).await
    }
    async fn cache_set(&self, key: &str, value: &str, ttl: Duration) -> StoreResult<()> {
        tokio::task::yield_now().await;
        self.0.cache_set(key, value, ttl).await
    }
    async fn cache_set_members(
        &self,
        key: &str,
        members: &[String],
        ttl: Duration,
    ) -> StoreResult<()> {
        tokio::task::yield_now().await;
        self.0.cache_set_members(key, members, ttl).await
    }
    async fn cache_get_members(&self, key: &str) -> StoreResult<Option<Vec<String>>> {
        tokio::task::yield_now().await;
        self.0.cache_get_members(key).await
    }
    async fn cache_invalidate(&self, keys: &[String]) -> StoreResult<()> {
        tokio::task::yield_now().await;
        self.0.cache_invalidate(keys).await
    }
    async fn counter_add(&self, key: &str, field: &str, delta: i64) -> StoreResult<i64> {
        tokio::task::yield_now().await;
        self.0.counter_add(key, field, delta).await
    }
    async fn counters(&self, key: &str) -> StoreResult<Vec<(String, i64)>> {
        tokio::task::yield_now().await;
        self.0.counters(key).await
    }
    async fn counter_reset(&self, key: &str, field: &str) -> StoreResult<()> {
        tokio::task::yield_now().await;
        self.0.counter_reset(key, field).await
    }
    async fn counters_add_many(&self, updates: &[(String, String, i64)]) -> StoreResult<Vec<i64>> {
        tokio::task::yield_now().await;
        self.0.counters_add_many(updates).await
    }
    async fn recent_fill(
        &self,
        key: &str,
        entries: &[CachedMessage],
        max: usize,
        ttl: Duration,
    ) -> StoreResult<()> {
        tokio::task::yield_now().await;
        self.0.recent_fill(key, entries, max, ttl).await
    }
    async fn recent_add(
        &self,
        key: &str,
        entries: &[CachedMessage],
        max: usize,
        ttl: Duration,
    ) -> StoreResult<bool> {
        tokio::task::yield_now().await;
        self.0.recent_add(key, entries, max, ttl).await
    }
    async fn recent_update(&self, key: &str, id: &str, json: &str) -> StoreResult<bool> {
        tokio::task::yield_now().await;
        self.0.recent_update(key, id, json).await
    }
    async fn recent_page(
        &self,
        key: &str,
        before: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Option<RecentPage>> {
        tokio::task::yield_now().await;
        self.0.recent_page(key, before, after, limit).await
    }
    async fn log_push(
        &self,
        key: &str,
        entry: &str,
        max: usize,
        ttl: Option<Duration>,
    ) -> StoreResult<()> {
        tokio::task::yield_now().await;
        self.0.log_push(key, entry, max, ttl).await
    }
    async fn log_range(&self, key: &str, limit: usize) -> StoreResult<Vec<String>> {
        tokio::task::yield_now().await;
        self.0.log_range(key, limit).await
    }
    async fn rate_limit_hit(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
        now: Millis,
    ) -> StoreResult<RateDecision> {
        tokio::task::yield_now().await;
        self.0.rate_limit_hit(key, limit, window, now).await
    }
    async fn timer_schedule(&self, timer: &Timer) -> StoreResult<()> {
        tokio::task::yield_now().await;
        self.0.timer_schedule(timer).await
    }
    async fn timer_cancel(&self, id: &str) -> StoreResult<bool> {
        tokio::task::yield_now().await;
        self.0.timer_cancel(id).await
    }
    async fn timers_claim_due(
        &self,
        now: Millis,
        max: usize,
        owner: &str,
        lease: Duration,
    ) -> StoreResult<Vec<Timer>> {
        tokio::task::yield_now().await;
        self.0.timers_claim_due(now, max, owner, lease).await
    }
    async fn timer_complete(&self, id: &str, owner: &str) -> StoreResult<bool> {
        tokio::task::yield_now().await;
        self.0.timer_complete(id, owner).await
    }
    async fn presence_connect(
        &self,
        user_id: &str,
        device_id: &str,
        now: Millis,
        ttl: Duration,
    ) -> StoreResult<PresenceChange> {
        tokio::task::yield_now().await;
        self.0.presence_connect(user_id, device_id, now, ttl).await
    }
    async fn presence_disconnect(
        &self,
        user_id: &str,
        device_id: &str,
        now: Millis,
    ) -> StoreResult<PresenceChange> {
        tokio::task::yield_now().await;
        self.0.presence_disconnect(user_id, device_id, now).await
    }
    async fn presence_refresh(
        &self,
        devices: &[(String, String)],
        now: Millis,
        ttl: Duration,
    ) -> StoreResult<Vec<(String, String)>> {
        tokio::task::yield_now().await;
        self.0.presence_refresh(devices, now, ttl).await
    }
    async fn presence_set_status(
        &self,
        user_id: &str,
        status: &str,
    ) -> StoreResult<Option<String>> {
        tokio::task::yield_now().await;
        self.0.presence_set_status(user_id, status).await
    }
    async fn presence_set_in_call(&self, user_id: &str, in_call: bool) -> StoreResult<bool> {
        tokio::task::yield_now().await;
        self.0.presence_set_in_call(user_id, in_call).await
    }
    async fn presence_get(
        &self,
        user_ids: &[String],
        now: Millis,
    ) -> StoreResult<Vec<Option<PresenceEntry>>> {
        tokio::task::yield_now().await;
        self.0.presence_get(user_ids, now).await
    }
    async fn presence_online_users(&self, now: Millis) -> StoreResult<Vec<String>> {
        tokio::task::yield_now().await;
        self.0.presence_online_users(now).await
    }
    async fn presence_reap_expired(&self, now: Millis, max: usize) -> StoreResult<Vec<String>> {
        tokio::task::yield_now().await;
        self.0.presence_reap_expired(now, max).await
    }
}

const START: i64 = 1_800_000_000_000;

struct Harness {
    app: SharedApp,
    clock: ManualClock,
    outbox: Arc<Recorder>,
    store: Arc<MemoryStore>,
    interleaved: Arc<Interleaved>,
    db: Db,
    dir: std::path::PathBuf,
}

impl Drop for Harness {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

fn settings() -> Settings {
    let overrides = Overrides {
        bind: Some("127.0.0.1:0".parse().unwrap()),
        dev: true,
        redis_url: None,
        database_url: None,
    };
    let mut settings = Settings::load_from(None, &overrides, &|_| None).unwrap();
    settings.presence.public = Some(false);
    settings
}

async fn harness_with(settings: Settings) -> Harness {
    let dir = std::env::temp_dir().join(format!("sb-rooms-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let clock = ManualClock::new(START);
    let db = Db::connect(
        &format!("sqlite://{}/t.db?mode=rwc", dir.display()),
        &DbOptions::default(),
    )
    .await
    .unwrap();
    db.migrate().await.unwrap();
    let store = Arc::new(MemoryStore::new(Arc::new(clock.clone()) as Arc<dyn Clock>));
    let interleaved = Arc::new(Interleaved(store.clone(), AtomicUsize::new(0)));
    let outbox = Arc::new(Recorder::default());
    let app = instance(&settings, &interleaved, &db, &clock, outbox.clone());
    for (id, name) in [
        ("ann", "Ann"),
        ("bob", "Bob"),
        ("cat", "Cat"),
        ("dan", "Dan"),
        ("zed", "Zed"),
    ] {
        users::upsert(&app, id, name).await.unwrap();
    }
    Harness {
        app,
        clock,
        outbox,
        store,
        interleaved,
        db,
        dir,
    }
}

/// An instance on the shared store and database (a second server of the deployment).
fn instance(
    settings: &Settings,
    store: &Arc<Interleaved>,
    db: &Db,
    clock: &ManualClock,
    outbox: Arc<Recorder>,
) -> SharedApp {
    let backends = Backends {
        store: store.clone(),
        db: db.clone(),
        bus: Arc::new(MemoryBus::new()),
    };
    App::new(settings.clone(), backends, Arc::new(clock.clone()), outbox)
}

async fn harness() -> Harness {
    harness_with(settings()).await
}

impl Harness {
    fn second_instance(&self) -> (SharedApp, Arc<Recorder>) {
        let outbox = Arc::new(Recorder::default());
        let app = instance(
            &self.app.settings,
            &self.interleaved,
            &self.db,
            &self.clock,
            outbox.clone(),
        );
        (app, outbox)
    }

    /// Moves simulated time on and runs every room timer that fell due, as the
    /// deadline-queue runner would (once each).
    async fn advance(&self, secs: i64) {
        self.clock.advance(secs * 1000);
        let due = self
            .store
            .timers_claim_due(self.clock.now_ms(), 100, "test", Duration::from_secs(30))
            .await
            .unwrap();
        for timer in due {
            assert!(
                rooms::fire(&self.app, &timer).await,
                "unknown timer {}",
                timer.kind
            );
            self.store.timer_complete(&timer.id, "test").await.unwrap();
        }
    }

    /// Compare-and-set writes that lost a race so far.
    fn lost_races(&self) -> usize {
        self.interleaved.1.load(Ordering::Relaxed)
    }

    async fn in_call(&self, user: &str) -> bool {
        self.store
            .presence_get(&[user.to_string()], self.clock.now_ms())
            .await
            .unwrap()
            .pop()
            .flatten()
            .is_some_and(|e| e.in_call)
    }

    async fn room(&self, id: &str) -> Room {
        rooms::get(&self.app, id).await.unwrap()
    }
}

fn party(user: &str) -> Party {
    party_on(user, 1)
}

/// The user on their `n`-th socket (a reconnect is a new socket).
fn party_on(user: &str, n: u32) -> Party {
    let mut name = user.to_string();
    name[..1].make_ascii_uppercase();
    Party {
        user_id: user.into(),
        name,
        socket_id: format!("sock-{user}-{n}"),
        device_id: format!("dev-{user}"),
    }
}

fn code<T: std::fmt::Debug>(r: AppResult<T>) -> &'static str {
    r.unwrap_err().code().as_str()
}

async fn group(h: &Harness, host: &str, invited: &[&str]) -> Room {
    rooms::create(
        &h.app,
        &party(host),
        CreateRoom {
            room_type: RoomType::Group,
            room_name: Some("Standup".into()),
            target_user_id: None,
            invited_user_ids: (!invited.is_empty())
                .then(|| invited.iter().map(|s| s.to_string()).collect()),
        },
    )
    .await
    .unwrap()
}

async fn join(h: &Harness, user: &str, room: &str) -> AppResult<Room> {
    rooms::enter(&h.app, &party(user), room, Entry::Join).await
}

fn participants(room: &Room) -> Vec<String> {
    let mut ids: Vec<String> = room
        .participants
        .iter()
        .map(|p| p.user_id.clone())
        .collect();
    ids.sort();
    ids
}

async fn slot(h: &Harness, user: &str) -> Option<Engagement> {
    call_state::current(&h.app, user).await.unwrap()
}

fn in_room(id: &str) -> Engagement {
    Engagement::InRoom {
        room_id: id.to_string(),
    }
}

// --- The interface the Calls feature uses ------------------------------------------------

#[tokio::test]
async fn the_call_state_slot_is_claimed_once_and_stale_slots_count_as_free() {
    let h = harness().await;
    let ring = Engagement::Ringing {
        call_id: "c1".into(),
    };
    // A ring whose request record is gone is stale: the slot counts as free.
    assert_eq!(
        call_state::engage(&h.app, "ann", ring.clone())
            .await
            .unwrap(),
        Ok(())
    );
    let room = group(&h, "bob", &[]).await;
    assert_eq!(
        call_state::engage(&h.app, "ann", in_room(&room.room_id))
            .await
            .unwrap(),
        Ok(()),
        "the ring's request does not exist, so ann is free"
    );
    // A live room is not stale: bob is busy.
    assert_eq!(
        call_state::engage(&h.app, "bob", ring.clone())
            .await
            .unwrap(),
        Err(in_room(&room.room_id))
    );
    // Claiming what the slot holds succeeds; replace and release only act on a match.
    assert_eq!(
        call_state::engage(&h.app, "bob", in_room(&room.room_id))
            .await
            .unwrap(),
        Ok(())
    );
    assert!(
        !call_state::replace(&h.app, "bob", &ring, in_room("x"))
            .await
            .unwrap()
    );
    assert!(!call_state::release(&h.app, "bob", &ring).await.unwrap());
    assert!(
        call_state::release(&h.app, "bob", &in_room(&room.room_id))
            .await
            .unwrap()
    );
    assert_eq!(slot(&h, "bob").await, None);

    // A pending request keeps its ring live; replace swaps it for the room.
    let request = serde_json::json!({"callId": "c2", "state": "pending"}).to_string();
    h.store
        .compare_and_set(
            &switchboard_store::keys::call_request("c2"),
            None,
            &request,
            None,
        )
        .await
        .unwrap();
    let ring2 = Engagement::Ringing {
        call_id: "c2".into(),
    };
    assert_eq!(
        call_state::engage(&h.app, "cat", ring2.clone())
            .await
            .unwrap(),
        Ok(())
    );
    assert_eq!(
        call_state::engage(&h.app, "cat", in_room("other"))
            .await
            .unwrap(),
        Err(ring2.clone())
    );
    assert!(
        call_state::replace(&h.app, "cat", &ring2, in_room("c2"))
            .await
            .unwrap()
    );
    assert_eq!(slot(&h, "cat").await, Some(in_room("c2")));
}

#[tokio::test]
async fn concurrent_claims_of_one_slot_have_one_winner() {
    let h = harness().await;
    let a = Engagement::Ringing {
        call_id: "a".into(),
    };
    let b = Engagement::Ringing {
        call_id: "b".into(),
    };
    for id in ["a", "b"] {
        let request = serde_json::json!({"callId": id, "state": "pending"}).to_string();
        h.store
            .compare_and_set(
                &switchboard_store::keys::call_request(id),
                None,
                &request,
                None,
            )
            .await
            .unwrap();
    }
    let (x, y) = tokio::join!(
        call_state::engage(&h.app, "dan", a.clone()),
        call_state::engage(&h.app, "dan", b.clone())
    );
    let results = [x.unwrap(), y.unwrap()];
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
}

#[tokio::test]
async fn an_accepted_call_opens_a_direct_room_and_ending_it_writes_history() {
    let h = harness().await;
    let ring = Engagement::Ringing {
        call_id: "call-1".into(),
    };
    let request = serde_json::json!({"callId": "call-1", "state": "accepted"}).to_string();
    h.store
        .compare_and_set(
            &switchboard_store::keys::call_request("call-1"),
            None,
            &request,
            None,
        )
        .await
        .unwrap();
    for u in ["ann", "bob"] {
        assert_eq!(
            call_state::engage(&h.app, u, ring.clone()).await.unwrap(),
            Ok(())
        );
    }
    let room = rooms::open_direct(&h.app, "call-1", party("ann"), party("bob"))
        .await
        .unwrap();
    assert_eq!(room.room_id, "call-1");
    assert_eq!(room.room_type, RoomType::Direct);
    assert_eq!(room.status, RoomStatus::Active);
    assert!(room.is_private);
    assert_eq!(participants(&room), ["ann", "bob"]);
    assert!(
        room.participants
            .iter()
            .all(|p| p.status == switchboard_protocol::rooms::ParticipantStatus::Accepted)
    );
    assert_eq!(slot(&h, "ann").await, Some(in_room("call-1")));
    assert_eq!(slot(&h, "bob").await, Some(in_room("call-1")));
    assert!(h.in_call("ann").await && h.in_call("bob").await);
    let joins = h.outbox.joins();
    assert!(
        joins.contains(&("device:3:bob:dev-bob".into(), "room:call-1".into())),
        "{joins:?}"
    );
    // A second open of the same call is refused.
    assert_eq!(
        code(rooms::open_direct(&h.app, "call-1", party("ann"), party("bob")).await),
        "CONFLICT"
    );
    // Someone else cannot join a direct room.
    assert_eq!(code(join(&h, "cat", "call-1").await), "FORBIDDEN");

    let session = h.db.get_call_session("call-1").await.unwrap().unwrap();
    assert_eq!(session.answered_at, Some(START));
    h.clock.advance(5_000);
    rooms::mark_connected(&h.app, "call-1", h.clock.now_ms())
        .await
        .unwrap();
    h.clock.advance(42_000);
    // Either side ends a direct room.
    rooms::end(&h.app, "bob", "call-1").await.unwrap();
    let ended = h.outbox.to_room("room:call-1", "callEnded");
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0]["endedBy"], "bob");
    assert_eq!(slot(&h, "ann").await, None);
    assert!(!h.in_call("ann").await && !h.in_call("bob").await);
    let session = h.db.get_call_session("call-1").await.unwrap().unwrap();
    assert_eq!(session.outcome, Some(CallOutcome::Completed));
    assert_eq!(session.connected_at, Some(START + 5_000));
    assert_eq!(session.duration_secs, Some(42));
    let (history, _) = h.db.call_history_for_user("bob", None, None).await.unwrap();
    assert_eq!(history[0].id, "call-1");
    assert_eq!(h.room("call-1").await.status, RoomStatus::Ended);
    assert!(rooms::list_for(&h.app, "ann").await.unwrap().is_empty());
}

// --- Seed 002 §3.1 races ---------------------------------------------------------------

#[tokio::test]
async fn two_leaves_at_once_lose_nobody() {
    let h = harness().await;
    let room = group(&h, "ann", &[]).await;
    for u in ["bob", "cat", "dan"] {
        join(&h, u, &room.room_id).await.unwrap();
    }
    let lost = h.lost_races();
    let (a, b) = tokio::join!(
        rooms::leave(&h.app, "bob", &room.room_id),
        rooms::leave(&h.app, "cat", &room.room_id)
    );
    a.unwrap();
    b.unwrap();
    assert!(h.lost_races() > lost, "the two leaves really raced");
    let now = h.room(&room.room_id).await;
    assert_eq!(participants(&now), ["ann", "dan"]);
    assert_eq!(now.status, RoomStatus::Active);
    let left: Vec<Value> = h
        .outbox
        .to_room(&format!("room:{}", room.room_id), "userLeft");
    assert_eq!(left.len(), 2);
    assert_eq!(slot(&h, "bob").await, None);
    assert_eq!(slot(&h, "cat").await, None);

    // The last two leaving at once end the room exactly once.
    let (a, b) = tokio::join!(
        rooms::leave(&h.app, "ann", &room.room_id),
        rooms::leave(&h.app, "dan", &room.room_id)
    );
    a.unwrap();
    b.unwrap();
    assert_eq!(h.outbox.count("callEnded"), 1);
    assert_eq!(h.room(&room.room_id).await.status, RoomStatus::Ended);
}

#[tokio::test]
async fn two_leaves_on_two_instances_lose_nobody() {
    let h = harness().await;
    let (other, _) = h.second_instance();
    let room = group(&h, "ann", &[]).await;
    join(&h, "bob", &room.room_id).await.unwrap();
    rooms::enter(&other, &party("cat"), &room.room_id, Entry::Join)
        .await
        .unwrap();
    let (a, b) = tokio::join!(
        rooms::leave(&h.app, "bob", &room.room_id),
        rooms::leave(&other, "cat", &room.room_id)
    );
    a.unwrap();
    b.unwrap();
    assert_eq!(participants(&h.room(&room.room_id).await), ["ann"]);
}

#[tokio::test]
async fn a_double_end_call_ends_once_and_the_loser_gets_conflict() {
    let h = harness().await;
    let room = group(&h, "ann", &[]).await;
    join(&h, "bob", &room.room_id).await.unwrap();
    h.clock.advance(1_000);
    let lost = h.lost_races();
    let (a, b) = tokio::join!(
        rooms::end(&h.app, "ann", &room.room_id),
        rooms::end(&h.app, "ann", &room.room_id)
    );
    let codes: Vec<&str> = [a, b]
        .into_iter()
        .map(|r| r.err().map_or("ok", |e| e.code().as_str()))
        .collect();
    let mut sorted = codes.clone();
    sorted.sort();
    assert_eq!(sorted, ["CONFLICT", "ok"], "{codes:?}");
    assert!(h.lost_races() > lost, "the two ends really raced");
    assert_eq!(h.outbox.count("callEnded"), 1);
    let session = h.db.get_call_session(&room.room_id).await.unwrap().unwrap();
    assert_eq!(session.outcome, Some(CallOutcome::Completed));
    assert_eq!(session.ended_by.as_deref(), Some("ann"));
    assert_eq!(slot(&h, "bob").await, None);
}

#[tokio::test]
async fn host_and_hostless_participant_ending_together_end_once() {
    let mut s = settings();
    s.rooms.enable_hostless_mode = true;
    let h = harness_with(s).await;
    let room = group(&h, "ann", &[]).await;
    join(&h, "bob", &room.room_id).await.unwrap();
    join(&h, "cat", &room.room_id).await.unwrap();
    rooms::socket_dropped(&h.app, "ann", "sock-ann-1")
        .await
        .unwrap();
    h.advance(30).await;
    assert!(h.room(&room.room_id).await.is_hostless);
    let (a, b) = tokio::join!(
        rooms::end(&h.app, "bob", &room.room_id),
        rooms::end(&h.app, "cat", &room.room_id)
    );
    assert_eq!([a.is_ok(), b.is_ok()].iter().filter(|ok| **ok).count(), 1);
    assert_eq!(h.outbox.count("callEnded"), 1);
}

#[tokio::test]
async fn a_host_back_before_the_grace_check_keeps_the_room() {
    let h = harness().await;
    let room = group(&h, "ann", &[]).await;
    join(&h, "bob", &room.room_id).await.unwrap();
    rooms::socket_dropped(&h.app, "ann", "sock-ann-1")
        .await
        .unwrap();
    assert!(h.room(&room.room_id).await.host_disconnected_at.is_some());
    h.advance(29).await;
    // The host comes back on a new socket and joins again, in the same instant the grace
    // timer would fire: whichever lands first, the outcome is consistent.
    h.clock.advance(1_000);
    let due = h
        .store
        .timers_claim_due(h.clock.now_ms(), 100, "test", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(due.len(), 1);
    let back = party_on("ann", 2);
    let (joined, ()) = tokio::join!(
        rooms::enter(&h.app, &back, &room.room_id, Entry::Join),
        async {
            rooms::fire(&h.app, &due[0]).await;
        }
    );
    joined.unwrap();
    let now = h.room(&room.room_id).await;
    let restored = h.outbox.count("hostReconnected");
    let hostless = h.outbox.count("roomHostless");
    assert_eq!(restored + hostless, 1, "exactly one of the two wins");
    assert_eq!(now.is_hostless, hostless == 1);
    assert_eq!(now.host_disconnected_at, None);
    assert_eq!(now.status, RoomStatus::Active);
    let ann = now
        .participants
        .iter()
        .find(|p| p.user_id == "ann")
        .unwrap();
    assert_eq!(ann.socket_id, "sock-ann-2");
    // The reconnect window was cancelled: ann stays after 60 s.
    h.advance(61).await;
    assert_eq!(participants(&h.room(&room.room_id).await), ["ann", "bob"]);
}

#[tokio::test]
async fn a_host_back_in_time_is_restored_and_the_stale_timer_does_nothing() {
    let h = harness().await;
    let room = group(&h, "ann", &[]).await;
    join(&h, "bob", &room.room_id).await.unwrap();
    rooms::socket_dropped(&h.app, "ann", "sock-ann-1")
        .await
        .unwrap();
    h.advance(10).await;
    rooms::enter(&h.app, &party_on("ann", 2), &room.room_id, Entry::Join)
        .await
        .unwrap();
    let back = h
        .outbox
        .to_room(&format!("room:{}", room.room_id), "hostReconnected");
    assert_eq!(
        back,
        [serde_json::json!({"roomId": room.room_id, "userId": "ann"})]
    );
    h.advance(60).await;
    assert_eq!(h.outbox.count("roomHostless"), 0);
    let now = h.room(&room.room_id).await;
    assert!(!now.is_hostless);
    assert_eq!(participants(&now), ["ann", "bob"]);
}

#[tokio::test]
async fn a_host_gone_past_the_grace_period_leaves_a_hostless_room_then_leaves_it() {
    let h = harness().await;
    let room = group(&h, "ann", &[]).await;
    join(&h, "bob", &room.room_id).await.unwrap();
    rooms::socket_dropped(&h.app, "ann", "sock-ann-1")
        .await
        .unwrap();
    // The host's other devices dropping change nothing.
    rooms::socket_dropped(&h.app, "ann", "sock-ann-9")
        .await
        .unwrap();
    h.advance(29).await;
    assert_eq!(h.outbox.count("roomHostless"), 0);
    h.advance(1).await;
    let hostless = h
        .outbox
        .to_room(&format!("room:{}", room.room_id), "roomHostless");
    assert_eq!(hostless.len(), 1);
    assert!(h.room(&room.room_id).await.is_hostless);
    // Bob may end it now, but first the host's reconnect window runs out.
    h.advance(30).await;
    let now = h.room(&room.room_id).await;
    assert_eq!(participants(&now), ["bob"]);
    assert_eq!(slot(&h, "ann").await, None);
    assert!(!h.in_call("ann").await);
    rooms::end(&h.app, "bob", &room.room_id).await.unwrap();
}

#[tokio::test]
async fn without_hostless_mode_the_grace_expiry_ends_the_room() {
    let mut s = settings();
    s.rooms.enable_hostless_mode = false;
    let h = harness_with(s).await;
    let room = group(&h, "ann", &[]).await;
    join(&h, "bob", &room.room_id).await.unwrap();
    rooms::socket_dropped(&h.app, "ann", "sock-ann-1")
        .await
        .unwrap();
    h.advance(30).await;
    let ended = h
        .outbox
        .to_room(&format!("room:{}", room.room_id), "callEnded");
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0]["reason"], "host_timeout");
    assert_eq!(slot(&h, "bob").await, None);
}

#[tokio::test]
async fn a_dropped_side_of_a_direct_room_ends_it_after_the_reconnect_window() {
    let h = harness().await;
    rooms::open_direct(&h.app, "call-9", party("ann"), party("bob"))
        .await
        .unwrap();
    rooms::socket_dropped(&h.app, "bob", "sock-bob-1")
        .await
        .unwrap();
    h.advance(59).await;
    assert_eq!(h.outbox.count("callEnded"), 0);
    h.advance(1).await;
    let ended = h.outbox.to_room("room:call-9", "callEnded");
    assert_eq!(ended.len(), 1);
    assert_eq!(ended[0]["endedBy"], "server");
    assert_eq!(slot(&h, "ann").await, None);
    assert_eq!(slot(&h, "bob").await, None);
    let session = h.db.get_call_session("call-9").await.unwrap().unwrap();
    assert_eq!(session.outcome, Some(CallOutcome::Completed));
    assert_eq!(session.duration_secs, None, "never connected: no duration");
}

#[tokio::test]
async fn a_participant_back_within_the_window_stays() {
    let h = harness().await;
    rooms::open_direct(&h.app, "call-8", party("ann"), party("bob"))
        .await
        .unwrap();
    rooms::socket_dropped(&h.app, "bob", "sock-bob-1")
        .await
        .unwrap();
    h.advance(40).await;
    rooms::enter(&h.app, &party_on("bob", 2), "call-8", Entry::Join)
        .await
        .unwrap();
    h.advance(60).await;
    assert_eq!(h.outbox.count("callEnded"), 0);
    assert_eq!(h.room("call-8").await.status, RoomStatus::Active);
}

// --- Invitations, permissions, busy ---------------------------------------------------

#[tokio::test]
async fn private_rooms_invite_and_invitations_expire() {
    let h = harness().await;
    let room = group(&h, "ann", &["bob", "cat"]).await;
    assert!(room.is_private);
    let invite = h.outbox.to_room("user:bob", "incomingCall");
    assert_eq!(
        invite,
        [
            serde_json::json!({"roomId": room.room_id, "roomType": "group", "fromUserId": "ann", "fromUserName": "Ann"})
        ]
    );
    // Nobody is connected in this harness: every invitee also gets a high-priority push.
    let (pushed, _) = notifications::list(&h.app, "bob", None, None)
        .await
        .unwrap();
    assert_eq!(pushed.len(), 1);
    assert_eq!(pushed[0].kind, "room_invitation");
    assert_eq!(pushed[0].priority, Priority::High);
    assert_eq!(pushed[0].data["roomId"], room.room_id.as_str());
    assert!(
        notifications::list(&h.app, "zed", None, None)
            .await
            .unwrap()
            .0
            .is_empty()
    );
    assert_eq!(code(join(&h, "zed", &room.room_id).await), "FORBIDDEN");
    assert_eq!(
        code(rooms::enter(&h.app, &party("zed"), &room.room_id, Entry::Accept).await),
        "FORBIDDEN"
    );
    h.advance(10).await;
    let accepted = rooms::enter(&h.app, &party("bob"), &room.room_id, Entry::Accept)
        .await
        .unwrap();
    assert_eq!(participants(&accepted), ["ann", "bob"]);
    let acc = h
        .outbox
        .to_room(&format!("room:{}", room.room_id), "callAccepted");
    assert_eq!(
        acc,
        [serde_json::json!({"userId": "bob", "roomId": room.room_id})]
    );
    assert!(h.in_call("bob").await);
    // Private rooms are listed only for their invitees and participants.
    assert_eq!(rooms::list_for(&h.app, "cat").await.unwrap().len(), 1);
    assert!(rooms::list_for(&h.app, "zed").await.unwrap().is_empty());
    // Cat never answers: 60 s after the invitation it expires.
    h.advance(49).await;
    assert!(h.outbox.to_room("user:cat", "invitationExpired").is_empty());
    h.advance(1).await;
    assert_eq!(
        h.outbox.to_room("user:cat", "invitationExpired"),
        [serde_json::json!({"roomId": room.room_id})]
    );
    assert!(h.outbox.to_room("user:bob", "invitationExpired").is_empty());
    assert_eq!(
        code(rooms::enter(&h.app, &party("cat"), &room.room_id, Entry::Accept).await),
        "FORBIDDEN"
    );
    // An invitee may still join the private room by joinRoom.
    join(&h, "cat", &room.room_id).await.unwrap();
}

#[tokio::test]
async fn a_declined_direct_room_ends_and_is_recorded_as_rejected() {
    let h = harness().await;
    let room = rooms::create(
        &h.app,
        &party("ann"),
        CreateRoom {
            room_type: RoomType::Direct,
            room_name: None,
            target_user_id: Some("bob".into()),
            invited_user_ids: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(room.status, RoomStatus::Pending);
    assert_eq!(room.room_name, "Ann & Bob");
    rooms::reject(&h.app, "bob", "Bob", &room.room_id)
        .await
        .unwrap();
    let rejected = h
        .outbox
        .to_room(&format!("room:{}", room.room_id), "callRejected");
    assert_eq!(
        rejected,
        [serde_json::json!({"userId": "bob", "userName": "Bob", "roomId": room.room_id})]
    );
    assert_eq!(h.outbox.count("callEnded"), 1);
    assert_eq!(slot(&h, "ann").await, None);
    let session = h.db.get_call_session(&room.room_id).await.unwrap().unwrap();
    assert_eq!(session.outcome, Some(CallOutcome::Rejected));
    assert_eq!(
        code(rooms::reject(&h.app, "bob", "Bob", &room.room_id).await),
        "CONFLICT"
    );
}

#[tokio::test]
async fn an_unanswered_direct_room_is_missed() {
    let h = harness().await;
    let room = rooms::create(
        &h.app,
        &party("ann"),
        CreateRoom {
            room_type: RoomType::Direct,
            room_name: None,
            target_user_id: Some("bob".into()),
            invited_user_ids: None,
        },
    )
    .await
    .unwrap();
    h.advance(60).await;
    assert_eq!(h.outbox.to_room("user:bob", "invitationExpired").len(), 1);
    let session = h.db.get_call_session(&room.room_id).await.unwrap().unwrap();
    assert_eq!(session.outcome, Some(CallOutcome::Missed));
    let (history, _) = h.db.call_history_for_user("bob", None, None).await.unwrap();
    assert_eq!(history.len(), 1, "the invitee sees the missed call");
}

#[tokio::test]
async fn users_in_a_room_are_busy_elsewhere() {
    let h = harness().await;
    let a = group(&h, "ann", &[]).await;
    let b = group(&h, "cat", &[]).await;
    join(&h, "bob", &a.room_id).await.unwrap();
    assert_eq!(code(join(&h, "bob", &b.room_id).await), "BUSY");
    assert_eq!(participants(&h.room(&b.room_id).await), ["cat"]);
    // Joining the own room again is not busy (a new socket taking over).
    join(&h, "bob", &a.room_id).await.unwrap();
    rooms::leave(&h.app, "bob", &a.room_id).await.unwrap();
    join(&h, "bob", &b.room_id).await.unwrap();
    // A refused join leaves the slot free.
    let private = group(&h, "dan", &["ann"]).await;
    assert_eq!(code(join(&h, "zed", &private.room_id).await), "FORBIDDEN");
    assert_eq!(slot(&h, "zed").await, None);
}

#[tokio::test]
async fn only_the_host_ends_a_group_room_and_leaving_hands_it_over() {
    let h = harness().await;
    let room = group(&h, "ann", &[]).await;
    join(&h, "bob", &room.room_id).await.unwrap();
    join(&h, "cat", &room.room_id).await.unwrap();
    assert_eq!(
        code(rooms::end(&h.app, "bob", &room.room_id).await),
        "FORBIDDEN"
    );
    assert_eq!(
        code(rooms::end(&h.app, "zed", &room.room_id).await),
        "FORBIDDEN"
    );
    assert_eq!(
        code(rooms::leave(&h.app, "zed", &room.room_id).await),
        "NOT_FOUND"
    );
    rooms::leave(&h.app, "ann", &room.room_id).await.unwrap();
    assert_eq!(
        h.outbox
            .to_room(&format!("room:{}", room.room_id), "roomHostless")
            .len(),
        1
    );
    rooms::end(&h.app, "cat", &room.room_id).await.unwrap();
    assert_eq!(code(join(&h, "dan", &room.room_id).await), "CONFLICT");
    assert_eq!(code(join(&h, "dan", "no-such-room").await), "NOT_FOUND");
}

// --- Chat, media, list ------------------------------------------------------------------

#[tokio::test]
async fn in_room_chat_resolves_replies_and_toggles_reactions() {
    let h = harness().await;
    let room = group(&h, "ann", &[]).await;
    join(&h, "bob", &room.room_id).await.unwrap();
    let first = rooms::send_message(&h.app, &party("ann"), &room.room_id, "hello all", None)
        .await
        .unwrap();
    let reply = rooms::send_message(
        &h.app,
        &party("bob"),
        &room.room_id,
        "hi Ann",
        Some(&first.message_id),
    )
    .await
    .unwrap();
    let quoted = reply.reply_to.clone().unwrap();
    assert_eq!(quoted.message_id, first.message_id);
    assert_eq!(quoted.user_name, "Ann");
    assert_eq!(quoted.content, "hello all");
    let sent = h
        .outbox
        .to_room(&format!("room:{}", room.room_id), "newMessage");
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1]["replyTo"]["userName"], "Ann");
    assert_eq!(
        code(rooms::send_message(&h.app, &party("zed"), &room.room_id, "x", None).await),
        "FORBIDDEN"
    );
    assert_eq!(
        code(rooms::send_message(&h.app, &party("bob"), &room.room_id, "x", Some("nope")).await),
        "NOT_FOUND"
    );
    let m = rooms::react(&h.app, "bob", &room.room_id, &first.message_id, "👍")
        .await
        .unwrap();
    assert_eq!(m.reactions[0].count, 1);
    let m = rooms::react(&h.app, "ann", &room.room_id, &first.message_id, "👍")
        .await
        .unwrap();
    assert_eq!(m.reactions[0].user_ids, ["bob", "ann"]);
    let m = rooms::react(&h.app, "bob", &room.room_id, &first.message_id, "👍")
        .await
        .unwrap();
    assert_eq!(m.reactions[0].user_ids, ["ann"]);
    let updates = h
        .outbox
        .to_room(&format!("room:{}", room.room_id), "messageReactionUpdated");
    assert_eq!(updates.len(), 3);
    assert_eq!(updates[2]["reactions"][0]["count"], 1);
    assert_eq!(
        code(rooms::react(&h.app, "zed", &room.room_id, &first.message_id, "👍").await),
        "FORBIDDEN"
    );
    assert_eq!(h.room(&room.room_id).await.messages.len(), 2);
}

#[tokio::test]
async fn media_state_reaches_the_room() {
    let h = harness().await;
    let room = group(&h, "ann", &[]).await;
    join(&h, "bob", &room.room_id).await.unwrap();
    let joined = h.outbox.events("userJoined");
    assert_eq!(joined.len(), 1);
    assert_eq!(
        joined[0].except.as_deref(),
        Some("user:bob"),
        "not echoed to the joiner"
    );
    assert_eq!(
        joined[0].data,
        serde_json::json!({"userId": "bob", "userName": "Bob", "socketId": "sock-bob-1"})
    );
    h.clock.advance(3_000);
    rooms::media_state(&h.app, "bob", &room.room_id, true, true)
        .await
        .unwrap();
    let updates = h.outbox.to_room(
        &format!("room:{}", room.room_id),
        "participantMediaStateUpdated",
    );
    assert_eq!(
        updates,
        [
            serde_json::json!({"userId": "bob", "name": "Bob", "isMuted": true, "isVideoEnabled": true})
        ]
    );
    let bob = h
        .room(&room.room_id)
        .await
        .participants
        .into_iter()
        .find(|p| p.user_id == "bob")
        .unwrap();
    assert!(bob.is_muted && bob.is_video_enabled);
    assert_eq!(bob.media_state_updated_at, START + 3_000);
    assert_eq!(
        code(rooms::media_state(&h.app, "zed", &room.room_id, true, false).await),
        "FORBIDDEN"
    );
}

#[tokio::test]
async fn the_room_list_shows_public_rooms_to_all_and_private_ones_to_invitees() {
    let h = harness().await;
    let public = group(&h, "ann", &[]).await;
    let lobby = h.outbox.to_room("lobby", "roomListUpdated");
    assert_eq!(lobby.len(), 1);
    assert_eq!(lobby[0]["rooms"][0]["roomId"], public.room_id);
    assert_eq!(lobby[0]["rooms"][0]["participantCount"], 1);
    h.outbox.clear();
    let private = group(&h, "cat", &["dan"]).await;
    assert!(
        h.outbox.to_room("lobby", "roomListUpdated").is_empty(),
        "private rooms stay private"
    );
    let dan = h.outbox.to_room("user:dan", "roomListUpdated");
    assert_eq!(dan.len(), 1);
    assert_eq!(dan[0]["rooms"].as_array().unwrap().len(), 2);
    assert!(h.outbox.to_room("user:zed", "roomListUpdated").is_empty());
    // A change to a public room: the lobby gets the public list, dan his fuller one after.
    h.outbox.clear();
    join(&h, "bob", &public.room_id).await.unwrap();
    let lobby = h.outbox.to_room("lobby", "roomListUpdated");
    assert_eq!(lobby[0]["rooms"].as_array().unwrap().len(), 1);
    assert_eq!(lobby[0]["rooms"][0]["participantCount"], 2);
    let dan = h.outbox.to_room("user:dan", "roomListUpdated");
    assert_eq!(dan[0]["rooms"].as_array().unwrap().len(), 2);
    let ids: Vec<String> = rooms::list_for(&h.app, "zed")
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.room_id)
        .collect();
    assert_eq!(ids, std::slice::from_ref(&public.room_id));
    assert_eq!(rooms::list_for(&h.app, "dan").await.unwrap().len(), 2);
    // An ended room leaves the list.
    rooms::end(&h.app, "cat", &private.room_id).await.unwrap();
    assert_eq!(rooms::list_for(&h.app, "dan").await.unwrap().len(), 1);
    assert_eq!(rooms::all(&h.app).await.unwrap().len(), 1);
}

#[tokio::test]
async fn room_creation_is_rate_limited() {
    let h = harness().await;
    for _ in 0..5 {
        let room = group(&h, "ann", &[]).await;
        rooms::end(&h.app, "ann", &room.room_id).await.unwrap();
    }
    let refused = rooms::create(
        &h.app,
        &party("ann"),
        CreateRoom {
            room_type: RoomType::Group,
            room_name: None,
            target_user_id: None,
            invited_user_ids: None,
        },
    )
    .await;
    let error = refused.unwrap_err();
    assert_eq!(error.code().as_str(), "RATE_LIMITED");
    assert!(error.retry_after_ms().is_some());
    assert_eq!(slot(&h, "ann").await, None);
}

#[tokio::test]
async fn a_participant_lost_with_a_crashed_instance_leaves_after_the_window() {
    let h = harness().await;
    let room = group(&h, "ann", &[]).await;
    join(&h, "bob", &room.room_id).await.unwrap();
    // The presence reaper found all of ann's devices lapsed: no disconnect ever ran.
    rooms::user_gone(&h.app, "ann").await.unwrap();
    h.advance(30).await;
    assert_eq!(h.outbox.count("roomHostless"), 1);
    h.advance(30).await;
    assert_eq!(participants(&h.room(&room.room_id).await), ["bob"]);
    // Users who are in no room are ignored.
    rooms::user_gone(&h.app, "zed").await.unwrap();
}

#[tokio::test]
async fn room_chat_is_rate_limited_like_conversation_chat() {
    let h = harness().await;
    let room = group(&h, "ann", &[]).await;
    for i in 0..10 {
        rooms::send_message(&h.app, &party("ann"), &room.room_id, &format!("m{i}"), None)
            .await
            .unwrap();
    }
    let refused = rooms::send_message(&h.app, &party("ann"), &room.room_id, "one more", None).await;
    assert_eq!(code(refused), "RATE_LIMITED");
    assert_eq!(h.room(&room.room_id).await.messages.len(), 10);
    h.clock.advance(10_000);
    rooms::send_message(&h.app, &party("ann"), &room.room_id, "later", None)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_host_back_just_after_the_grace_check_rejoins_a_hostless_room() {
    let h = harness().await;
    let room = group(&h, "ann", &[]).await;
    join(&h, "bob", &room.room_id).await.unwrap();
    rooms::socket_dropped(&h.app, "ann", "sock-ann-1")
        .await
        .unwrap();
    // The grace check wins the race: the room is hostless when the host's join lands.
    h.advance(30).await;
    let back = rooms::enter(&h.app, &party_on("ann", 2), &room.room_id, Entry::Join)
        .await
        .unwrap();
    assert!(back.is_hostless);
    assert_eq!(h.outbox.count("roomHostless"), 1);
    assert_eq!(
        h.outbox.count("hostReconnected"),
        0,
        "the host is not restored"
    );
    // Back as a participant: the reconnect window no longer applies.
    h.advance(60).await;
    assert_eq!(participants(&h.room(&room.room_id).await), ["ann", "bob"]);
    // Any participant may end a hostless room.
    rooms::end(&h.app, "bob", &room.room_id).await.unwrap();
}

// --- On Redis, two instances, real parallelism -------------------------------------------

/// Two `App`s on their own Redis connections (same prefix) and one database, on a
/// multi-threaded runtime: the races run truly in parallel. Skipped when Redis is
/// unreachable, unless `SWITCHBOARD_REQUIRE_BACKENDS=1`.
async fn on_redis() -> Option<(
    Harness,
    SharedApp,
    SharedApp,
    switchboard_store::redis::RedisStore,
)> {
    use switchboard_store::redis::{RedisOptions, RedisStore};
    let url = std::env::var("SWITCHBOARD_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("sbtest-rooms-{}:", uuid::Uuid::new_v4().simple());
    let connect = || RedisStore::connect(&url, &prefix, RedisOptions::default());
    let (first, second, admin) = match (connect().await, connect().await, connect().await) {
        (Ok(a), Ok(b), Ok(c)) => (a, b, c),
        (Err(e), ..) | (_, Err(e), _) | (.., Err(e)) => {
            if std::env::var("SWITCHBOARD_REQUIRE_BACKENDS").as_deref() == Ok("1") {
                panic!("SWITCHBOARD_REQUIRE_BACKENDS=1 but Redis is unreachable: {e}");
            }
            eprintln!("skipping: Redis unreachable at {url}: {e}");
            return None;
        }
    };
    let h = harness().await;
    let app = |store: RedisStore| {
        App::new(
            h.app.settings.clone(),
            Backends {
                store: Arc::new(store),
                db: h.db.clone(),
                bus: Arc::new(MemoryBus::new()),
            },
            Arc::new(h.clock.clone()),
            h.outbox.clone(),
        )
    };
    let (a, b) = (app(first), app(second));
    Some((h, a, b, admin))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_redis_many_leaves_across_two_instances_lose_nobody_and_the_end_happens_once() {
    let Some((h, a, b, admin)) = on_redis().await else {
        return;
    };
    let host = rooms::create(
        &a,
        &party("ann"),
        CreateRoom {
            room_type: RoomType::Group,
            room_name: None,
            target_user_id: None,
            invited_user_ids: None,
        },
    )
    .await
    .unwrap();
    let id = host.room_id.clone();
    let guests: Vec<String> = (0..12).map(|i| format!("guest{i}")).collect();
    let mut joins = tokio::task::JoinSet::new();
    for (i, g) in guests.iter().enumerate() {
        let app = if i % 2 == 0 { a.clone() } else { b.clone() };
        let (g, id) = (g.clone(), id.clone());
        joins.spawn(async move {
            rooms::enter(&app, &party(&g), &id, Entry::Join)
                .await
                .map(|_| ())
        });
    }
    while let Some(r) = joins.join_next().await {
        r.unwrap().unwrap();
    }
    let room = rooms::get(&a, &id).await.unwrap();
    assert_eq!(room.participants.len(), 13, "every concurrent join landed");

    let mut leaves = tokio::task::JoinSet::new();
    for (i, g) in guests.iter().enumerate() {
        let app = if i % 2 == 0 { b.clone() } else { a.clone() };
        let (g, id) = (g.clone(), id.clone());
        leaves.spawn(async move { rooms::leave(&app, &g, &id).await });
    }
    while let Some(r) = leaves.join_next().await {
        r.unwrap().unwrap();
    }
    let room = rooms::get(&b, &id).await.unwrap();
    assert_eq!(
        participants(&room),
        ["ann"],
        "every concurrent leave landed"
    );
    for g in &guests {
        assert_eq!(call_state::current(&a, g).await.unwrap(), None);
    }

    let (x, y) = tokio::join!(
        tokio::spawn({
            let (a, id) = (a.clone(), id.clone());
            async move { rooms::end(&a, "ann", &id).await }
        }),
        tokio::spawn({
            let (b, id) = (b.clone(), id.clone());
            async move { rooms::end(&b, "ann", &id).await }
        })
    );
    let oks = [x.unwrap(), y.unwrap()]
        .into_iter()
        .filter(|r| r.is_ok())
        .count();
    assert_eq!(oks, 1, "exactly one endCall wins");
    assert_eq!(h.outbox.count("callEnded"), 1);
    let session = h.db.get_call_session(&id).await.unwrap().unwrap();
    assert_eq!(session.outcome, Some(CallOutcome::Completed));
    admin.purge_prefix().await.unwrap();
}

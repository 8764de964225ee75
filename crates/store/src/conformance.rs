//! The one behaviour suite every [`StateStore`] backend must pass, races included.
//!
//! Each case is a `pub async fn(&Fixture)` that asserts what a user of Switchboard would
//! notice (a call accepted twice, an unread count lost, a timer fired twice, a friend shown
//! online forever). [`store_conformance_tests!`](crate::store_conformance_tests) expands one
//! `#[tokio::test]` per case for a fixture constructor; `tests/memory.rs` and
//! `tests/redis.rs` instantiate it.
//!
//! Time: scores and windows use `now` arguments, so those cases pass synthetic times based
//! on [`Fixture::now`] and never wait. Only the backend-enforced TTLs need time to pass:
//! [`Fixture::advance`] moves a manual clock for memory and really sleeps for Redis, so
//! those cases use short TTLs (150 ms) and advance comfortably past them (400 ms), and
//! check "not yet expired" only against long TTLs.
//!
//! The [`Bus`] cases run here too: [`Fixture::bus`] gives a new instance of the deployment's
//! bus (or of another deployment's, to check isolation).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use switchboard_domain::Millis;
use switchboard_domain::time::{Clock, ManualClock, SystemClock};
use tokio::task::JoinSet;

use crate::bus::{Bus, MemoryBus, RedisBus};
use crate::memory::MemoryStore;
use crate::redis::{RedisOptions, RedisStore};
use crate::{
    CachedMessage, CasOutcome, PresenceEntry, RecentPage, StateStore, StoreError, Timer,
    Transition, keys, update_record,
};

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;
type BusFuture = Pin<Box<dyn Future<Output = Arc<dyn Bus>> + Send>>;
type BusFactory = Box<dyn Fn(Deployment) -> BusFuture + Send + Sync>;

/// Whose bus [`Fixture::bus`] joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deployment {
    /// The deployment under test (the one sharing [`Fixture::store`]).
    This,
    /// Another deployment on the same backend (another key prefix on Redis).
    Other,
}

/// A backend under test, with the means to let time pass for it.
pub struct Fixture {
    pub store: Arc<dyn StateStore>,
    /// Other instances sharing the same state: separate connections for Redis, the same
    /// store for memory. Race cases spread their tasks over `store` and these.
    pub peers: Vec<Arc<dyn StateStore>>,
    /// The clock the backend enforces TTLs with; `now` arguments come from it.
    pub clock: Arc<dyn Clock>,
    advance: Box<dyn Fn(Duration) -> BoxFuture + Send + Sync>,
    cleanup: Option<Box<dyn Fn() -> BoxFuture + Send + Sync>>,
    bus: BusFactory,
}

/// Environment variable with the Redis URL of the Redis tests.
pub const REDIS_URL_ENV: &str = "SWITCHBOARD_TEST_REDIS_URL";
/// Environment variable that turns "skip when unreachable" into a failure (CI sets it).
pub const REQUIRE_BACKENDS_ENV: &str = "SWITCHBOARD_REQUIRE_BACKENDS";
/// How long one case may run before it counts as hung.
const CASE_TIMEOUT: Duration = Duration::from_secs(30);

/// A TTL short enough to wait out, and how long to wait for it: Redis expires keys within
/// a millisecond of their TTL, the rest is slack for a loaded machine.
const SHORT_TTL: Duration = Duration::from_millis(150);
const PAST_SHORT_TTL: Duration = Duration::from_millis(400);
/// A TTL that no case outlives.
const LONG_TTL: Duration = Duration::from_secs(60);

impl Fixture {
    /// A fixture for any backend: `advance` must make `by` pass for the backend's TTLs.
    /// Its buses are [`MemoryBus`]es (one per deployment) until [`with_bus`](Self::with_bus).
    pub fn new(
        store: Arc<dyn StateStore>,
        peers: Vec<Arc<dyn StateStore>>,
        clock: Arc<dyn Clock>,
        advance: impl Fn(Duration) -> BoxFuture + Send + Sync + 'static,
    ) -> Self {
        let this: Arc<dyn Bus> = Arc::new(MemoryBus::new());
        let other: Arc<dyn Bus> = Arc::new(MemoryBus::new());
        Self {
            store,
            peers,
            clock,
            advance: Box::new(advance),
            cleanup: None,
            bus: Box::new(move |deployment| {
                let bus = match deployment {
                    Deployment::This => this.clone(),
                    Deployment::Other => other.clone(),
                };
                Box::pin(async move { bus })
            }),
        }
    }

    /// Replaces how [`bus`](Self::bus) makes bus instances: `factory` returns a new instance
    /// of the given deployment's bus at each call.
    pub fn with_bus(
        mut self,
        factory: impl Fn(Deployment) -> BusFuture + Send + Sync + 'static,
    ) -> Self {
        self.bus = Box::new(factory);
        self
    }

    /// A fresh memory store on a manual clock.
    pub fn memory() -> Self {
        let clock = ManualClock::new(1_700_000_000_000);
        let store: Arc<dyn StateStore> = Arc::new(MemoryStore::new(Arc::new(clock.clone())));
        let moved = clock.clone();
        Self::new(store, Vec::new(), Arc::new(clock), move |by| {
            moved.advance(by.as_millis() as i64);
            Box::pin(async {})
        })
    }

    /// A Redis store under a fresh random prefix, with three peer connections; `None` (and a
    /// note on stderr) when Redis is unreachable, unless [`REQUIRE_BACKENDS_ENV`] is `1`.
    pub async fn redis() -> Option<Self> {
        let url = std::env::var(REDIS_URL_ENV).unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let required = std::env::var(REQUIRE_BACKENDS_ENV).is_ok_and(|v| v == "1");
        let prefix = format!("sbtest:{}:", uuid::Uuid::new_v4().simple());
        let connect = || RedisStore::connect(&url, &prefix, RedisOptions::default());
        let store = match connect().await {
            Ok(store) => store,
            Err(e) if required => {
                panic!("Redis at {url} is required ({REQUIRE_BACKENDS_ENV}=1): {e}")
            }
            Err(e) => {
                eprintln!(
                    "note: skipping a Redis conformance case, Redis at {url} is unreachable ({e}); \
                     set {REQUIRE_BACKENDS_ENV}=1 to fail instead"
                );
                return None;
            }
        };
        let mut peers: Vec<Arc<dyn StateStore>> = Vec::new();
        for _ in 0..3 {
            peers.push(Arc::new(
                connect().await.expect("second connection to Redis"),
            ));
        }
        let for_cleanup = store.clone();
        let bus_prefix = prefix.clone();
        let mut fixture = Self::new(Arc::new(store), peers, Arc::new(SystemClock), |by| {
            Box::pin(tokio::time::sleep(by))
        })
        .with_bus(move |deployment| {
            let (url, prefix) = (url.clone(), bus_prefix.clone());
            Box::pin(async move {
                let prefix = match deployment {
                    Deployment::This => prefix,
                    Deployment::Other => format!("{prefix}other:"),
                };
                let bus = RedisBus::connect(&url, &prefix)
                    .await
                    .expect("bus connection to Redis");
                Arc::new(bus) as Arc<dyn Bus>
            })
        });
        fixture.cleanup = Some(Box::new(move || {
            let store = for_cleanup.clone();
            Box::pin(async move {
                // Best effort: a leftover prefix only costs a little memory in a test Redis.
                if let Err(e) = store.purge_prefix().await {
                    eprintln!(
                        "note: could not delete test keys under {}: {e}",
                        store.prefix()
                    );
                }
            })
        }));
        Some(fixture)
    }

    /// The fixture clock's current time, the base for every `now` argument.
    pub fn now(&self) -> Millis {
        self.clock.now_ms()
    }

    /// Lets `by` pass for the backend's TTLs.
    pub async fn advance(&self, by: Duration) {
        (self.advance)(by).await;
    }

    /// A new instance of `deployment`'s bus (for memory, every instance is the same bus).
    pub async fn bus(&self, deployment: Deployment) -> Arc<dyn Bus> {
        (self.bus)(deployment).await
    }

    /// Instance `i` of the deployment: the store itself, then its peers, round-robin.
    pub fn instance(&self, i: usize) -> Arc<dyn StateStore> {
        match i % (self.peers.len() + 1) {
            0 => self.store.clone(),
            n => self.peers[n - 1].clone(),
        }
    }

    async fn cleanup(&self) {
        if let Some(cleanup) = &self.cleanup {
            cleanup().await;
        }
    }
}

/// The constructor [`store_conformance_tests!`](crate::store_conformance_tests) takes for memory.
pub async fn memory_fixture() -> Option<Fixture> {
    Some(Fixture::memory())
}

/// The constructor [`store_conformance_tests!`](crate::store_conformance_tests) takes for Redis.
pub async fn redis_fixture() -> Option<Fixture> {
    Fixture::redis().await
}

/// Runs one case on its own task (so a panic is caught), cleans up, then reports the case's
/// outcome.
pub async fn run<F, Fut>(fixture: Fixture, case: F)
where
    F: FnOnce(Arc<Fixture>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let fixture = Arc::new(fixture);
    let outcome = tokio::spawn(tokio::time::timeout(CASE_TIMEOUT, case(fixture.clone()))).await;
    fixture.cleanup().await;
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(_)) => panic!("case did not finish within {CASE_TIMEOUT:?}"),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("case task failed: {e}"),
    }
}

/// Expands one `#[tokio::test]` per conformance case for a fixture constructor, an
/// `async fn() -> Option<Fixture>` (`None` skips the case):
///
/// ```ignore
/// switchboard_store::store_conformance_tests!(switchboard_store::conformance::memory_fixture);
/// ```
#[macro_export]
macro_rules! store_conformance_tests {
    ($fixture:path) => {
        $crate::store_conformance_tests!(@cases $fixture;
            ping_answers,
            cas_create_if_absent_race,
            update_record_concurrent_increments_lose_none,
            update_record_rejects_and_deletes,
            cas_stale_version_conflicts,
            delete_by_version,
            record_ttl_expiry,
            wrong_kind_is_corrupt,
            index_add_remove_members,
            index_ttl,
            cache_miss_vs_cached_empty_set,
            cache_ttl,
            cache_invalidate,
            counters_add_reset_list,
            counters_add_many_in_order,
            counters_add_many_concurrent_batches_lose_none,
            recent_cold_cache_is_none_and_add_writes_nothing,
            recent_pages_newest_before_after,
            recent_add_replaces_and_trims_to_newest,
            recent_update_replaces_json,
            recent_complete_flag,
            recent_ttl_expiry_makes_it_cold,
            recent_invalidate_makes_it_cold,
            recent_concurrent_adds_keep_newest_max,
            recent_wrong_kind_is_corrupt,
            capped_log_newest_first,
            capped_log_ttl,
            rate_limit_allows_exactly_limit,
            rate_limit_refuses_with_retry_after,
            rate_limit_window_slides,
            rate_limit_concurrent_hits_never_exceed,
            timer_not_due_then_claimed_once,
            timer_concurrent_claimers_claim_each_once,
            timer_cancel,
            timer_reschedule_replaces,
            timer_lease_expiry_makes_it_claimable,
            timer_complete_by_wrong_owner_fails,
            presence_two_devices_connect_disconnect,
            presence_refresh_extends,
            presence_expiry_makes_user_offline,
            presence_reap_reports_each_user_once,
            presence_status_kept,
            presence_last_seen_updated,
            presence_offline_user_keeps_metadata,
            presence_set_status_returns_previous,
            presence_set_status_race_sees_a_chain,
            presence_in_call_flag,
            presence_in_call_race_changes_once,
            bus_every_instance_receives_every_message,
            bus_concurrent_publishers_keep_their_order,
            bus_deployments_are_isolated,
        );
    };
    (@cases $fixture:path; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                if let Some(fixture) = $fixture().await {
                    $crate::conformance::run(fixture, |f| async move {
                        $crate::conformance::$case(&f).await
                    })
                    .await;
                }
            }
        )+
    };
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// The live devices of a `presence_get` slot (`None`: the user is unknown).
fn devices_of(entry: &Option<PresenceEntry>) -> Option<Vec<String>> {
    entry.as_ref().map(|e| e.devices.clone())
}

/// Reaps once and sorts the result (the order of one reap is unspecified).
async fn reap(store: &Arc<dyn StateStore>, now: Millis, max: usize) -> Vec<String> {
    let mut users = store.presence_reap_expired(now, max).await.expect("reap");
    users.sort();
    users
}

// --- Basics and versioned records -----------------------------------------------------------

pub async fn ping_answers(f: &Fixture) {
    let rtt = f.store.ping().await.expect("ping");
    assert!(rtt < Duration::from_secs(2), "ping took {rtt:?}");
}

/// Sixteen instances try to create the same call at once: exactly one succeeds, and the
/// record holds the winner's value.
pub async fn cas_create_if_absent_race(f: &Fixture) {
    let key = keys::call_request("race");
    let mut tasks = JoinSet::new();
    for i in 0..16 {
        let (store, key) = (f.instance(i), key.clone());
        tasks.spawn(async move {
            let value = format!("writer-{i}");
            let outcome = store
                .compare_and_set(&key, None, &value, Some(LONG_TTL))
                .await;
            (value, outcome.expect("cas"))
        });
    }
    let outcomes = tasks.join_all().await;
    let winners: Vec<_> = outcomes
        .iter()
        .filter(|(_, o)| matches!(o, CasOutcome::Written { .. }))
        .collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    assert_eq!(winners[0].1, CasOutcome::Written { version: 1 });
    let stored = f.store.get(&key).await.unwrap().expect("record");
    assert_eq!(
        (stored.value.as_str(), stored.version),
        (winners[0].0.as_str(), 1)
    );
}

/// 32 concurrent read-modify-write increments through `update_record`: none is lost.
pub async fn update_record_concurrent_increments_lose_none(f: &Fixture) {
    let key = keys::active_call("counted");
    let mut tasks = JoinSet::new();
    for i in 0..32 {
        let (store, key) = (f.instance(i), key.clone());
        tasks.spawn(async move {
            update_record(&*store, &key, |n: Option<u64>| {
                Ok::<_, Infallible>(Transition::Write(n.unwrap_or(0) + 1, None))
            })
            .await
            .expect("update")
        });
    }
    let mut written: Vec<u64> = tasks
        .join_all()
        .await
        .into_iter()
        .map(|n| n.unwrap())
        .collect();
    written.sort_unstable();
    assert_eq!(
        written,
        (1..=32).collect::<Vec<_>>(),
        "each increment saw a distinct state"
    );
    let stored = f.store.get(&key).await.unwrap().expect("record");
    assert_eq!((stored.value.as_str(), stored.version), ("32", 32));
}

pub async fn update_record_rejects_and_deletes(f: &Fixture) {
    let key = keys::call_request("short-lived");
    let created = update_record(&*f.store, &key, |s: Option<String>| match s {
        None => Ok(Transition::Write("ringing".to_owned(), Some(LONG_TTL))),
        Some(_) => Err("exists"),
    })
    .await;
    assert_eq!(created.ok().flatten().as_deref(), Some("ringing"));
    let again = update_record(&*f.store, &key, |s: Option<String>| match s {
        None => Ok(Transition::Write("ringing".to_owned(), None)),
        Some(_) => Err("exists"),
    })
    .await;
    assert!(matches!(again, Err(crate::UpdateError::Rejected("exists"))));
    let deleted = update_record(&*f.store, &key, |_: Option<String>| {
        Ok::<_, Infallible>(Transition::Delete)
    })
    .await;
    assert!(matches!(deleted, Ok(None)));
    assert_eq!(f.store.get(&key).await.unwrap(), None);
}

pub async fn cas_stale_version_conflicts(f: &Fixture) {
    let (s, key) = (&f.store, keys::active_call("c1"));
    assert_eq!(
        s.compare_and_set(&key, None, "a", None).await.unwrap(),
        CasOutcome::Written { version: 1 }
    );
    assert_eq!(
        s.compare_and_set(&key, Some(1), "b", None).await.unwrap(),
        CasOutcome::Written { version: 2 }
    );
    for stale in [Some(1), None, Some(3)] {
        assert_eq!(
            s.compare_and_set(&key, stale, "x", None).await.unwrap(),
            CasOutcome::Conflict,
            "{stale:?}"
        );
    }
    let stored = s.get(&key).await.unwrap().unwrap();
    assert_eq!((stored.value.as_str(), stored.version), ("b", 2));
    // Expecting a version of a record that does not exist is a conflict, and creates nothing.
    let absent = keys::active_call("c2");
    assert_eq!(
        s.compare_and_set(&absent, Some(1), "x", None)
            .await
            .unwrap(),
        CasOutcome::Conflict
    );
    assert_eq!(s.get(&absent).await.unwrap(), None);
}

pub async fn delete_by_version(f: &Fixture) {
    let (s, key) = (&f.store, keys::session("u1", "phone"));
    s.compare_and_set(&key, None, "a", None).await.unwrap();
    s.compare_and_set(&key, Some(1), "b", None).await.unwrap();
    assert!(
        !s.compare_and_delete(&key, 1).await.unwrap(),
        "stale version must not delete"
    );
    assert!(s.get(&key).await.unwrap().is_some());
    assert!(s.compare_and_delete(&key, 2).await.unwrap());
    assert_eq!(s.get(&key).await.unwrap(), None);
    assert!(!s.compare_and_delete(&key, 2).await.unwrap());
    // Versions restart after a delete.
    assert_eq!(
        s.compare_and_set(&key, None, "c", None).await.unwrap(),
        CasOutcome::Written { version: 1 }
    );
}

pub async fn record_ttl_expiry(f: &Fixture) {
    let s = &f.store;
    let short = keys::call_request("short");
    let long = keys::call_request("long");
    let forever = keys::active_call("forever");
    let persisted = keys::active_call("persisted");
    let extended = keys::active_call("extended");
    s.compare_and_set(&short, None, "s", Some(SHORT_TTL))
        .await
        .unwrap();
    s.compare_and_set(&long, None, "l", Some(LONG_TTL))
        .await
        .unwrap();
    s.compare_and_set(&forever, None, "f", None).await.unwrap();
    // A write without a TTL removes the earlier one; a write with a TTL replaces it.
    s.compare_and_set(&persisted, None, "p", Some(SHORT_TTL))
        .await
        .unwrap();
    s.compare_and_set(&persisted, Some(1), "p2", None)
        .await
        .unwrap();
    s.compare_and_set(&extended, None, "e", Some(SHORT_TTL))
        .await
        .unwrap();
    s.compare_and_set(&extended, Some(1), "e2", Some(LONG_TTL))
        .await
        .unwrap();
    assert!(s.get(&short).await.unwrap().is_some());

    f.advance(PAST_SHORT_TTL).await;
    assert_eq!(
        s.get(&short).await.unwrap(),
        None,
        "expired record must read as absent"
    );
    for key in [&long, &forever, &persisted, &extended] {
        assert!(
            s.get(key).await.unwrap().is_some(),
            "{key} expired too early"
        );
    }
    // An expired record is absent for writers too.
    assert_eq!(
        s.compare_and_set(&short, None, "again", None)
            .await
            .unwrap(),
        CasOutcome::Written { version: 1 }
    );
}

/// Using a key with a method of another kind is reported, not misread.
pub async fn wrong_kind_is_corrupt(f: &Fixture) {
    let s = &f.store;
    let key = keys::conversation("typed");
    s.cache_set(&key, "{}", LONG_TTL).await.unwrap();
    assert!(matches!(s.get(&key).await, Err(StoreError::Corrupt(_))));
    assert!(matches!(
        s.compare_and_set(&key, Some(1), "x", None).await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        s.counter_add(&key, "f", 1).await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        s.index_members(&key).await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        s.log_range(&key, 10).await,
        Err(StoreError::Corrupt(_))
    ));
    assert_eq!(
        s.cache_get(&key).await.unwrap().as_deref(),
        Some("{}"),
        "the value is untouched"
    );
}

// --- Indexes and caches ---------------------------------------------------------------------

pub async fn index_add_remove_members(f: &Fixture) {
    let (s, key) = (&f.store, keys::user_calls("u1"));
    assert!(s.index_members(&key).await.unwrap().is_empty());
    s.index_add(&key, &strings(&["c2", "c1"]), None)
        .await
        .unwrap();
    s.index_add(&key, &strings(&["c2", "c3"]), None)
        .await
        .unwrap();
    s.index_add(&key, &[], None).await.unwrap();
    assert_eq!(
        s.index_members(&key).await.unwrap(),
        strings(&["c1", "c2", "c3"])
    );
    s.index_remove(&key, &strings(&["c1", "unknown"]))
        .await
        .unwrap();
    assert_eq!(s.index_members(&key).await.unwrap(), strings(&["c2", "c3"]));
    s.index_remove(&key, &strings(&["c2", "c3"])).await.unwrap();
    assert!(s.index_members(&key).await.unwrap().is_empty());
    s.index_remove(&key, &strings(&["c2"])).await.unwrap();
}

pub async fn index_ttl(f: &Fixture) {
    let s = &f.store;
    let (short, long) = (keys::user_calls("short"), keys::user_calls("long"));
    s.index_add(&short, &strings(&["c1"]), Some(SHORT_TTL))
        .await
        .unwrap();
    s.index_add(&long, &strings(&["c1"]), Some(SHORT_TTL))
        .await
        .unwrap();
    // A later add with a TTL extends the set's life; one without leaves it alone.
    s.index_add(&long, &strings(&["c2"]), Some(LONG_TTL))
        .await
        .unwrap();
    s.index_add(&long, &strings(&["c3"]), None).await.unwrap();
    f.advance(PAST_SHORT_TTL).await;
    assert!(s.index_members(&short).await.unwrap().is_empty());
    assert_eq!(
        s.index_members(&long).await.unwrap(),
        strings(&["c1", "c2", "c3"])
    );
}

/// A user with no friends is cached as such: the database is not asked again.
pub async fn cache_miss_vs_cached_empty_set(f: &Fixture) {
    let s = &f.store;
    let (lonely, social) = (keys::friends("lonely"), keys::friends("social"));
    assert_eq!(s.cache_get_members(&lonely).await.unwrap(), None, "miss");
    s.cache_set_members(&lonely, &[], LONG_TTL).await.unwrap();
    assert_eq!(
        s.cache_get_members(&lonely).await.unwrap(),
        Some(vec![]),
        "cached empty set"
    );
    s.cache_set_members(&social, &strings(&["b", "a"]), LONG_TTL)
        .await
        .unwrap();
    assert_eq!(
        s.cache_get_members(&social).await.unwrap(),
        Some(strings(&["a", "b"]))
    );
    s.cache_set_members(&social, &strings(&["c"]), LONG_TTL)
        .await
        .unwrap();
    assert_eq!(
        s.cache_get_members(&social).await.unwrap(),
        Some(strings(&["c"])),
        "replaced, not merged"
    );

    let conv = keys::conversation("c1");
    assert_eq!(s.cache_get(&conv).await.unwrap(), None);
    s.cache_set(&conv, r#"{"status":"ACCEPTED"}"#, LONG_TTL)
        .await
        .unwrap();
    assert_eq!(
        s.cache_get(&conv).await.unwrap().as_deref(),
        Some(r#"{"status":"ACCEPTED"}"#)
    );
}

pub async fn cache_ttl(f: &Fixture) {
    let s = &f.store;
    let (value, set, kept) = (
        keys::conversation("a"),
        keys::friends("a"),
        keys::conversation("kept"),
    );
    s.cache_set(&value, "1", SHORT_TTL).await.unwrap();
    s.cache_set_members(&set, &[], SHORT_TTL).await.unwrap();
    s.cache_set(&kept, "3", LONG_TTL).await.unwrap();
    assert!(s.cache_get(&value).await.unwrap().is_some());
    assert!(s.cache_get_members(&set).await.unwrap().is_some());
    f.advance(PAST_SHORT_TTL).await;
    assert_eq!(s.cache_get(&value).await.unwrap(), None);
    assert_eq!(
        s.cache_get_members(&set).await.unwrap(),
        None,
        "an expired empty set is a miss"
    );
    assert_eq!(s.cache_get(&kept).await.unwrap().as_deref(), Some("3"));
}

pub async fn cache_invalidate(f: &Fixture) {
    let s = &f.store;
    let (a, b, kept) = (
        keys::conversation("a"),
        keys::friends("b"),
        keys::conversation("kept"),
    );
    s.cache_set(&a, "1", LONG_TTL).await.unwrap();
    s.cache_set_members(&b, &strings(&["x"]), LONG_TTL)
        .await
        .unwrap();
    s.cache_set(&kept, "3", LONG_TTL).await.unwrap();
    s.cache_invalidate(&[a.clone(), b.clone(), keys::friends("never-cached")])
        .await
        .unwrap();
    s.cache_invalidate(&[]).await.unwrap();
    assert_eq!(s.cache_get(&a).await.unwrap(), None);
    assert_eq!(s.cache_get_members(&b).await.unwrap(), None);
    assert_eq!(s.cache_get(&kept).await.unwrap().as_deref(), Some("3"));
}

// --- Counters and logs ----------------------------------------------------------------------

pub async fn counters_add_reset_list(f: &Fixture) {
    let (s, key) = (&f.store, keys::unread("u1"));
    assert!(s.counters(&key).await.unwrap().is_empty());
    assert_eq!(s.counter_add(&key, "conv-a", 1).await.unwrap(), 1);
    assert_eq!(s.counter_add(&key, "conv-a", 2).await.unwrap(), 3);
    assert_eq!(s.counter_add(&key, "conv-b", 5).await.unwrap(), 5);
    assert_eq!(s.counter_add(&key, "conv-c", -2).await.unwrap(), -2);
    assert_eq!(
        s.counters(&key).await.unwrap(),
        vec![
            ("conv-a".into(), 3),
            ("conv-b".into(), 5),
            ("conv-c".into(), -2)
        ]
    );
    s.counter_reset(&key, "conv-a").await.unwrap();
    s.counter_reset(&key, "never-set").await.unwrap();
    assert_eq!(s.counter_add(&key, "conv-c", 2).await.unwrap(), 0);
    assert_eq!(
        s.counters(&key).await.unwrap(),
        vec![("conv-b".into(), 5)],
        "zero fields are not listed"
    );
    assert_eq!(
        s.counter_add(&key, "conv-a", 1).await.unwrap(),
        1,
        "a reset counter starts over"
    );
}

/// A member's unread counts bumped by a message, for every member at once.
pub async fn counters_add_many_in_order(f: &Fixture) {
    let s = &f.store;
    let (a, b) = (keys::unread("a"), keys::unread("b"));
    assert!(s.counters_add_many(&[]).await.unwrap().is_empty());
    s.counter_add(&a, "conv-1", 4).await.unwrap();
    let updates = vec![
        (a.clone(), "conv-1".to_owned(), 1),
        (b.clone(), "conv-1".to_owned(), 1),
        (a.clone(), "conv-2".to_owned(), 2),
        (a.clone(), "conv-1".to_owned(), 1),
        (b.clone(), "conv-3".to_owned(), 0),
    ];
    assert_eq!(
        s.counters_add_many(&updates).await.unwrap(),
        vec![5, 1, 2, 6, 0],
        "new values in order, a key repeated in a batch sees its earlier update"
    );
    assert_eq!(
        s.counters(&a).await.unwrap(),
        vec![("conv-1".into(), 6), ("conv-2".into(), 2)]
    );
    assert_eq!(s.counters(&b).await.unwrap(), vec![("conv-1".into(), 1)]);
    // Coming back to zero removes the field, as with counter_add.
    let back = vec![(b.clone(), "conv-1".to_owned(), -1)];
    assert_eq!(s.counters_add_many(&back).await.unwrap(), vec![0]);
    assert!(s.counters(&b).await.unwrap().is_empty());
    s.counter_reset(&a, "conv-1").await.unwrap();
    let again = vec![(a.clone(), "conv-1".to_owned(), 1)];
    assert_eq!(s.counters_add_many(&again).await.unwrap(), vec![1]);
}

/// Concurrent messages in one conversation bump every member: no increment is lost.
pub async fn counters_add_many_concurrent_batches_lose_none(f: &Fixture) {
    let members: Vec<String> = (0..5).map(|i| keys::unread(&format!("m{i}"))).collect();
    let mut tasks = JoinSet::new();
    for i in 0..16 {
        let store = f.instance(i);
        let updates: Vec<(String, String, i64)> = members
            .iter()
            .map(|k| (k.clone(), "conv".to_owned(), 1))
            .collect();
        tasks.spawn(async move {
            for _ in 0..5 {
                store.counters_add_many(&updates).await.expect("batch");
            }
        });
    }
    tasks.join_all().await;
    for key in &members {
        assert_eq!(
            f.store.counters(key).await.unwrap(),
            vec![("conv".into(), 80)],
            "{key}"
        );
    }
}

const MAX: usize = 100;

fn msg(id: &str, created_at: Millis) -> CachedMessage {
    CachedMessage {
        id: id.to_owned(),
        created_at,
        json: format!(r#"{{"id":"{id}"}}"#),
    }
}

fn page_ids(page: &Option<RecentPage>) -> Option<(Vec<String>, bool)> {
    page.as_ref()
        .map(|p| (p.entries.iter().map(|m| m.id.clone()).collect(), p.complete))
}

fn ids(items: &[&str], complete: bool) -> Option<(Vec<String>, bool)> {
    Some((strings(items), complete))
}

async fn page(
    s: &Arc<dyn StateStore>,
    key: &str,
    before: Option<&str>,
    after: Option<&str>,
    limit: usize,
) -> Option<(Vec<String>, bool)> {
    page_ids(
        &s.recent_page(key, before, after, limit)
            .await
            .expect("page"),
    )
}

pub async fn recent_cold_cache_is_none_and_add_writes_nothing(f: &Fixture) {
    let (s, key) = (&f.store, keys::messages("cold"));
    assert_eq!(s.recent_page(&key, None, None, 10).await.unwrap(), None);
    assert_eq!(
        s.recent_page(&key, Some("x"), None, 10).await.unwrap(),
        None
    );
    assert!(
        !s.recent_add(&key, &[msg("m1", 1)], MAX, LONG_TTL)
            .await
            .unwrap()
    );
    assert!(!s.recent_update(&key, "m1", "{}").await.unwrap());
    assert_eq!(
        s.recent_page(&key, None, None, 10).await.unwrap(),
        None,
        "an add to a cold cache creates no partial cache"
    );
    // A conversation without messages is cached as warm and empty.
    let empty = keys::messages("empty");
    s.recent_fill(&empty, &[], MAX, LONG_TTL).await.unwrap();
    assert_eq!(page(s, &empty, None, None, 10).await, ids(&[], true));
    assert!(
        s.recent_add(&empty, &[msg("m1", 1)], MAX, LONG_TTL)
            .await
            .unwrap()
    );
    assert_eq!(page(s, &empty, None, None, 10).await, ids(&["m1"], true));
}

pub async fn recent_pages_newest_before_after(f: &Fixture) {
    let (s, key) = (&f.store, keys::messages("c1"));
    let t = f.now();
    // Unsorted, with ties on created_at broken by id.
    let entries = [
        msg("e", t + 3),
        msg("a", t + 1),
        msg("d", t + 2),
        msg("c", t + 2),
        msg("b", t + 2),
        msg("f", t + 4),
    ];
    s.recent_fill(&key, &entries, MAX, LONG_TTL).await.unwrap();
    let full = s.recent_page(&key, None, None, 10).await.unwrap().unwrap();
    assert_eq!(
        full.entries,
        vec![
            msg("a", t + 1),
            msg("b", t + 2),
            msg("c", t + 2),
            msg("d", t + 2),
            msg("e", t + 3),
            msg("f", t + 4),
        ],
        "ascending by (created_at, id), with created_at and json intact"
    );
    assert!(full.complete);
    assert_eq!(page(s, &key, None, None, 2).await, ids(&["e", "f"], true));
    assert_eq!(page(s, &key, None, None, 0).await, ids(&[], true));
    assert_eq!(
        page(s, &key, Some("e"), None, 2).await,
        ids(&["c", "d"], true)
    );
    assert_eq!(
        page(s, &key, Some("c"), None, 5).await,
        ids(&["a", "b"], true)
    );
    assert_eq!(page(s, &key, Some("a"), None, 5).await, ids(&[], true));
    assert_eq!(
        page(s, &key, None, Some("b"), 2).await,
        ids(&["c", "d"], true),
        "oldest first, just after the cursor"
    );
    assert_eq!(
        page(s, &key, None, Some("d"), 10).await,
        ids(&["e", "f"], true)
    );
    assert_eq!(page(s, &key, None, Some("f"), 10).await, ids(&[], true));
    assert_eq!(
        page(s, &key, Some("f"), Some("b"), 2).await,
        ids(&["c", "d"], true),
        "both cursors: the first entries after `after`, older than `before`"
    );
    assert_eq!(
        page(s, &key, Some("d"), Some("b"), 10).await,
        ids(&["c"], true)
    );
    assert_eq!(
        page(s, &key, Some("b"), Some("d"), 10).await,
        ids(&[], true)
    );
    // A refill replaces everything.
    s.recent_fill(&key, &[msg("z", t)], MAX, LONG_TTL)
        .await
        .unwrap();
    assert_eq!(page(s, &key, None, None, 10).await, ids(&["z"], true));
}

pub async fn recent_add_replaces_and_trims_to_newest(f: &Fixture) {
    let (s, key) = (&f.store, keys::messages("c1"));
    let t = f.now();
    let entries: Vec<_> = (0..5).map(|i| msg(&format!("m{i}"), t + i)).collect();
    s.recent_fill(&key, &entries, 5, LONG_TTL).await.unwrap();
    // Replacing by id keeps the count; the replacement takes the new json.
    let mut edited = msg("m4", t + 4);
    edited.json = "edited".into();
    assert!(
        s.recent_add(&key, &[edited.clone()], 5, LONG_TTL)
            .await
            .unwrap()
    );
    let got = s.recent_page(&key, None, None, 10).await.unwrap().unwrap();
    assert_eq!(got.entries.len(), 5);
    assert_eq!(got.entries[4], edited);
    // Adds beyond max drop the oldest; an entry older than all of a full cache is dropped.
    assert!(
        s.recent_add(
            &key,
            &[msg("m6", t + 6), msg("m5", t + 5), msg("old", t - 1)],
            5,
            LONG_TTL
        )
        .await
        .unwrap()
    );
    assert_eq!(
        page(s, &key, None, None, 10).await.map(|p| p.0),
        Some(strings(&["m2", "m3", "m4", "m5", "m6"]))
    );
    // A fill with more than max keeps the newest max; duplicates count once, the later wins.
    let mut many: Vec<_> = (0..8).map(|i| msg(&format!("n{i}"), t + i)).collect();
    many.push(msg("n7", t + 100));
    s.recent_fill(&key, &many, 3, LONG_TTL).await.unwrap();
    let got = s.recent_page(&key, None, None, 10).await.unwrap().unwrap();
    assert_eq!(
        got.entries,
        vec![msg("n5", t + 5), msg("n6", t + 6), msg("n7", t + 100)]
    );
}

pub async fn recent_update_replaces_json(f: &Fixture) {
    let (s, key) = (&f.store, keys::messages("c1"));
    let t = f.now();
    s.recent_fill(&key, &[msg("a", t), msg("b", t + 1)], MAX, LONG_TTL)
        .await
        .unwrap();
    assert!(
        s.recent_update(&key, "a", r#"{"deleted":true}"#)
            .await
            .unwrap()
    );
    assert!(!s.recent_update(&key, "unknown", "{}").await.unwrap());
    assert!(!s.recent_update(&key, "", "{}").await.unwrap());
    let got = s.recent_page(&key, None, None, 10).await.unwrap().unwrap();
    assert_eq!(
        got.entries,
        vec![
            CachedMessage {
                id: "a".into(),
                created_at: t,
                json: r#"{"deleted":true}"#.into(),
            },
            msg("b", t + 1),
        ],
        "only the json changes, and no entry is created"
    );
}

pub async fn recent_complete_flag(f: &Fixture) {
    let s = &f.store;
    let t = f.now();
    let five: Vec<_> = (0..5).map(|i| msg(&format!("m{i}"), t + i)).collect();

    // A small conversation cached whole: every page is authoritative, even past the oldest.
    let small = keys::messages("small");
    s.recent_fill(&small, &five, MAX, LONG_TTL).await.unwrap();
    assert_eq!(
        page(s, &small, None, None, 10).await,
        ids(&["m0", "m1", "m2", "m3", "m4"], true)
    );
    assert_eq!(
        page(s, &small, Some("m1"), None, 10).await,
        ids(&["m0"], true)
    );
    assert_eq!(page(s, &small, Some("m0"), None, 10).await, ids(&[], true));
    // A cursor outside the cache cannot be answered.
    assert_eq!(
        page(s, &small, Some("gone"), None, 10).await,
        ids(&[], false)
    );
    assert_eq!(
        page(s, &small, None, Some("gone"), 10).await,
        ids(&[], false)
    );
    assert_eq!(
        page(s, &small, Some("m3"), Some("gone"), 10).await,
        ids(&[], false)
    );

    // A full cache (the fill got max entries): older messages may be in the database.
    let full = keys::messages("full");
    s.recent_fill(&full, &five, 5, LONG_TTL).await.unwrap();
    assert_eq!(
        page(s, &full, None, None, 5).await,
        ids(&["m0", "m1", "m2", "m3", "m4"], true),
        "exactly limit entries: authoritative"
    );
    assert_eq!(
        page(s, &full, None, None, 6).await,
        ids(&["m0", "m1", "m2", "m3", "m4"], false),
        "ran into the oldest cached entry"
    );
    assert_eq!(
        page(s, &full, Some("m3"), None, 2).await,
        ids(&["m1", "m2"], true)
    );
    assert_eq!(
        page(s, &full, Some("m2"), None, 3).await,
        ids(&["m0", "m1"], false)
    );
    assert_eq!(page(s, &full, Some("m0"), None, 1).await, ids(&[], false));
    assert_eq!(
        page(s, &full, None, Some("m0"), 10).await,
        ids(&["m1", "m2", "m3", "m4"], true),
        "newer entries are always cached"
    );

    // A whole cache stays whole while adds fit, and turns partial once one is trimmed.
    let growing = keys::messages("growing");
    s.recent_fill(&growing, &five[..3], 4, LONG_TTL)
        .await
        .unwrap();
    assert!(
        s.recent_add(&growing, &five[3..4], 4, LONG_TTL)
            .await
            .unwrap()
    );
    assert_eq!(
        page(s, &growing, None, None, 10).await,
        ids(&["m0", "m1", "m2", "m3"], true)
    );
    assert!(
        s.recent_add(&growing, &five[4..], 4, LONG_TTL)
            .await
            .unwrap()
    );
    assert_eq!(
        page(s, &growing, None, None, 10).await,
        ids(&["m1", "m2", "m3", "m4"], false)
    );

    // A cache of at most nothing is warm but knows nothing.
    let none = keys::messages("none");
    s.recent_fill(&none, &five, 0, LONG_TTL).await.unwrap();
    assert_eq!(page(s, &none, None, None, 10).await, ids(&[], false));
}

pub async fn recent_ttl_expiry_makes_it_cold(f: &Fixture) {
    let s = &f.store;
    let t = f.now();
    let (short, renewed, empty, kept) = (
        keys::messages("short"),
        keys::messages("renewed"),
        keys::messages("empty"),
        keys::messages("kept"),
    );
    s.recent_fill(&short, &[msg("a", t)], MAX, SHORT_TTL)
        .await
        .unwrap();
    s.recent_fill(&renewed, &[msg("a", t)], MAX, SHORT_TTL)
        .await
        .unwrap();
    s.recent_fill(&empty, &[], MAX, SHORT_TTL).await.unwrap();
    s.recent_fill(&kept, &[msg("a", t)], MAX, LONG_TTL)
        .await
        .unwrap();
    // An add renews the TTL; an update does not.
    assert!(
        s.recent_add(&renewed, &[msg("b", t + 1)], MAX, LONG_TTL)
            .await
            .unwrap()
    );
    assert!(s.recent_update(&short, "a", "{}").await.unwrap());
    f.advance(PAST_SHORT_TTL).await;
    assert_eq!(s.recent_page(&short, None, None, 10).await.unwrap(), None);
    assert_eq!(s.recent_page(&empty, None, None, 10).await.unwrap(), None);
    assert!(
        !s.recent_add(&short, &[msg("c", t + 2)], MAX, LONG_TTL)
            .await
            .unwrap()
    );
    assert_eq!(s.recent_page(&short, None, None, 10).await.unwrap(), None);
    assert_eq!(
        page(s, &renewed, None, None, 10).await,
        ids(&["a", "b"], true)
    );
    assert_eq!(page(s, &kept, None, None, 10).await, ids(&["a"], true));
}

pub async fn recent_invalidate_makes_it_cold(f: &Fixture) {
    let s = &f.store;
    let t = f.now();
    let (a, empty, kept) = (
        keys::messages("a"),
        keys::messages("empty"),
        keys::messages("kept"),
    );
    s.recent_fill(&a, &[msg("m1", t)], MAX, LONG_TTL)
        .await
        .unwrap();
    s.recent_fill(&empty, &[], MAX, LONG_TTL).await.unwrap();
    s.recent_fill(&kept, &[msg("m1", t)], MAX, LONG_TTL)
        .await
        .unwrap();
    s.cache_invalidate(&[a.clone(), empty.clone(), keys::conversation("a")])
        .await
        .unwrap();
    assert_eq!(s.recent_page(&a, None, None, 10).await.unwrap(), None);
    assert_eq!(s.recent_page(&empty, None, None, 10).await.unwrap(), None);
    assert!(
        !s.recent_add(&a, &[msg("m2", t + 1)], MAX, LONG_TTL)
            .await
            .unwrap()
    );
    assert!(!s.recent_update(&a, "m1", "{}").await.unwrap());
    assert_eq!(s.recent_page(&a, None, None, 10).await.unwrap(), None);
    assert_eq!(page(s, &kept, None, None, 10).await, ids(&["m1"], true));
    // A refill after the invalidation starts from what it is given only.
    s.recent_fill(&a, &[msg("m3", t + 3)], MAX, LONG_TTL)
        .await
        .unwrap();
    assert_eq!(page(s, &a, None, None, 10).await, ids(&["m3"], true));
}

/// Eight instances add 25 messages each, one by one or in small batches, into a cache of
/// at most 100 that already holds older messages: it never holds more than 100, and ends
/// with exactly the newest 100.
pub async fn recent_concurrent_adds_keep_newest_max(f: &Fixture) {
    let key = keys::messages("busy");
    let t = f.now();
    let older: Vec<_> = (0..60).map(|i| msg(&format!("old{i:02}"), t + i)).collect();
    f.store
        .recent_fill(&key, &older, MAX, LONG_TTL)
        .await
        .unwrap();
    let mut tasks = JoinSet::new();
    for task in 0..8_i64 {
        let (store, key) = (f.instance(task as usize), key.clone());
        tasks.spawn(async move {
            let mut i = 0;
            while i < 25 {
                let n = if (task + i) % 3 == 0 {
                    2.min(25 - i)
                } else {
                    1
                };
                let batch: Vec<_> = (i..i + n)
                    .map(|j| {
                        // Interleaved times, with ties between tasks broken by id.
                        msg(&format!("t{task}-{j:02}"), t + 1_000 + j * 4 + task / 2)
                    })
                    .collect();
                assert!(
                    store
                        .recent_add(&key, &batch, MAX, LONG_TTL)
                        .await
                        .expect("add")
                );
                let held = store
                    .recent_page(&key, None, None, usize::MAX)
                    .await
                    .expect("page")
                    .expect("warm");
                assert!(held.entries.len() <= MAX, "{}", held.entries.len());
                i += n;
            }
        });
    }
    tasks.join_all().await;
    let mut all: Vec<CachedMessage> = older;
    for task in 0..8_i64 {
        all.extend((0..25).map(|j| msg(&format!("t{task}-{j:02}"), t + 1_000 + j * 4 + task / 2)));
    }
    all.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    let newest = all.split_off(all.len() - MAX);
    let got = f
        .store
        .recent_page(&key, None, None, 1_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.entries, newest);
    assert!(
        !got.complete,
        "trimmed: older messages are in the database only"
    );
}

pub async fn recent_wrong_kind_is_corrupt(f: &Fixture) {
    let s = &f.store;
    let key = keys::messages("typed");
    s.log_push(&key, "x", 10, Some(LONG_TTL)).await.unwrap();
    assert!(matches!(
        s.recent_page(&key, None, None, 10).await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        s.recent_add(&key, &[msg("a", 1)], MAX, LONG_TTL).await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        s.recent_update(&key, "a", "{}").await,
        Err(StoreError::Corrupt(_))
    ));
    // A fill replaces whatever the key held.
    s.recent_fill(&key, &[msg("a", 1)], MAX, LONG_TTL)
        .await
        .unwrap();
    assert_eq!(page(s, &key, None, None, 10).await, ids(&["a"], true));
    assert!(matches!(
        s.log_range(&key, 10).await,
        Err(StoreError::Corrupt(_))
    ));
}

pub async fn capped_log_newest_first(f: &Fixture) {
    let (s, key) = (&f.store, keys::notifications("u1"));
    assert!(s.log_range(&key, 10).await.unwrap().is_empty());
    for i in 1..=5 {
        s.log_push(&key, &format!("n{i}"), 3, None).await.unwrap();
    }
    assert_eq!(
        s.log_range(&key, 10).await.unwrap(),
        strings(&["n5", "n4", "n3"])
    );
    assert_eq!(s.log_range(&key, 2).await.unwrap(), strings(&["n5", "n4"]));
    assert!(s.log_range(&key, 0).await.unwrap().is_empty());
    // A smaller cap trims what is there.
    s.log_push(&key, "n6", 2, None).await.unwrap();
    assert_eq!(s.log_range(&key, 10).await.unwrap(), strings(&["n6", "n5"]));
}

pub async fn capped_log_ttl(f: &Fixture) {
    let s = &f.store;
    let (short, long) = (keys::notifications("short"), keys::notifications("long"));
    s.log_push(&short, "m1", 100, Some(SHORT_TTL))
        .await
        .unwrap();
    s.log_push(&long, "m1", 100, Some(SHORT_TTL)).await.unwrap();
    s.log_push(&long, "m2", 100, Some(LONG_TTL)).await.unwrap();
    s.log_push(&long, "m3", 100, None).await.unwrap();
    f.advance(PAST_SHORT_TTL).await;
    assert!(s.log_range(&short, 10).await.unwrap().is_empty());
    assert_eq!(
        s.log_range(&long, 10).await.unwrap(),
        strings(&["m3", "m2", "m1"])
    );
}

// --- Rate limits ----------------------------------------------------------------------------

pub async fn rate_limit_allows_exactly_limit(f: &Fixture) {
    let (s, key) = (&f.store, keys::rate_limit("u1", "send_message"));
    let (base, window) = (f.now(), Duration::from_secs(10));
    for i in 0..10u32 {
        let d = s
            .rate_limit_hit(&key, 10, window, base + i as Millis)
            .await
            .unwrap();
        assert!(d.allowed, "hit {i} refused");
        assert_eq!(d.remaining, 9 - i);
    }
    let d = s.rate_limit_hit(&key, 10, window, base + 10).await.unwrap();
    assert!(!d.allowed, "the 11th hit in the window must be refused");
    // Another user or action has its own window.
    let other = keys::rate_limit("u2", "send_message");
    assert!(
        s.rate_limit_hit(&other, 10, window, base + 10)
            .await
            .unwrap()
            .allowed
    );
    let limit_zero = keys::rate_limit("u1", "disabled");
    assert!(
        !s.rate_limit_hit(&limit_zero, 0, window, base)
            .await
            .unwrap()
            .allowed
    );
}

pub async fn rate_limit_refuses_with_retry_after(f: &Fixture) {
    let (s, key) = (&f.store, keys::rate_limit("u1", "call"));
    let (base, window) = (f.now(), Duration::from_millis(10_000));
    s.rate_limit_hit(&key, 2, window, base).await.unwrap();
    s.rate_limit_hit(&key, 2, window, base + 1_000)
        .await
        .unwrap();
    let d = s
        .rate_limit_hit(&key, 2, window, base + 4_000)
        .await
        .unwrap();
    assert!(!d.allowed);
    assert_eq!(d.remaining, 0);
    // The oldest hit (at base) leaves the window at base + 10 s: 6 s from now.
    assert_eq!(d.retry_after_ms, 6_000);
}

pub async fn rate_limit_window_slides(f: &Fixture) {
    let (s, key) = (&f.store, keys::rate_limit("u1", "typing"));
    let (base, window) = (f.now(), Duration::from_millis(1_000));
    assert!(
        s.rate_limit_hit(&key, 2, window, base)
            .await
            .unwrap()
            .allowed
    );
    assert!(
        s.rate_limit_hit(&key, 2, window, base + 100)
            .await
            .unwrap()
            .allowed
    );
    let refused = s.rate_limit_hit(&key, 2, window, base + 500).await.unwrap();
    assert_eq!((refused.allowed, refused.retry_after_ms), (false, 500));
    // At base + 1000 the first hit has left (the window is (now - 1000, now]).
    let again = s
        .rate_limit_hit(&key, 2, window, base + 1_000)
        .await
        .unwrap();
    assert_eq!((again.allowed, again.remaining), (true, 0));
    let refused = s
        .rate_limit_hit(&key, 2, window, base + 1_050)
        .await
        .unwrap();
    assert_eq!((refused.allowed, refused.retry_after_ms), (false, 50));
    // Refused hits were not recorded: once base + 100 leaves, one hit is free again.
    let d = s
        .rate_limit_hit(&key, 2, window, base + 1_100)
        .await
        .unwrap();
    assert_eq!((d.allowed, d.remaining), (true, 0));
}

pub async fn rate_limit_concurrent_hits_never_exceed(f: &Fixture) {
    let key = keys::rate_limit("u1", "burst");
    let now = f.now();
    let mut tasks = JoinSet::new();
    for i in 0..40 {
        let (store, key) = (f.instance(i), key.clone());
        tasks.spawn(async move {
            store
                .rate_limit_hit(&key, 10, Duration::from_secs(60), now)
                .await
                .expect("hit")
                .allowed
        });
    }
    let allowed = tasks.join_all().await.into_iter().filter(|a| *a).count();
    assert_eq!(allowed, 10);
}

// --- Deadline queue -------------------------------------------------------------------------

fn timer(id: &str, kind: &str, due_at: Millis) -> Timer {
    Timer {
        id: id.to_owned(),
        kind: kind.to_owned(),
        payload: format!(r#"{{"callId":"{id}"}}"#),
        due_at,
    }
}

const LEASE: Duration = Duration::from_secs(30);

pub async fn timer_not_due_then_claimed_once(f: &Fixture) {
    let s = &f.store;
    let base = f.now();
    let t = timer("ring-1", "ring_timeout", base + 1_000);
    s.timer_schedule(&t).await.unwrap();
    assert!(
        s.timers_claim_due(base + 999, 10, "a", LEASE)
            .await
            .unwrap()
            .is_empty(),
        "not due yet"
    );
    assert_eq!(
        s.timers_claim_due(base + 1_000, 10, "a", LEASE)
            .await
            .unwrap(),
        vec![t]
    );
    assert!(
        s.timers_claim_due(base + 1_000, 10, "b", LEASE)
            .await
            .unwrap()
            .is_empty(),
        "claimed once"
    );
    assert!(s.timer_complete("ring-1", "a").await.unwrap());
    assert!(
        s.timers_claim_due(base + 1_000_000, 10, "b", LEASE)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        s.timers_claim_due(base, 0, "b", LEASE)
            .await
            .unwrap()
            .is_empty()
    );
}

/// 200 due timers, 4 instances claiming in small batches at once: each timer is handed out
/// exactly once.
pub async fn timer_concurrent_claimers_claim_each_once(f: &Fixture) {
    let base = f.now();
    for i in 0..200 {
        f.store
            .timer_schedule(&timer(&format!("t{i:03}"), "job", base + i))
            .await
            .unwrap();
    }
    let mut tasks = JoinSet::new();
    for claimer in 0..4 {
        let store = f.instance(claimer);
        tasks.spawn(async move {
            let owner = format!("instance-{claimer}");
            let mut mine = Vec::new();
            loop {
                let batch = store
                    .timers_claim_due(base + 1_000, 7, &owner, LEASE)
                    .await
                    .expect("claim");
                if batch.is_empty() {
                    return mine;
                }
                mine.extend(batch.into_iter().map(|t| t.id));
            }
        });
    }
    let mut claimed: Vec<String> = tasks.join_all().await.into_iter().flatten().collect();
    assert_eq!(
        claimed.len(),
        200,
        "every timer claimed exactly once in total"
    );
    claimed.sort();
    claimed.dedup();
    assert_eq!(claimed.len(), 200, "no timer claimed twice");
    assert!(
        f.store
            .timers_claim_due(base + 1_000, 500, "late", LEASE)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn timer_cancel(f: &Fixture) {
    let s = &f.store;
    let base = f.now();
    s.timer_schedule(&timer("t1", "ring_timeout", base + 1_000))
        .await
        .unwrap();
    assert!(
        s.timer_cancel("t1").await.unwrap(),
        "pending timer cancelled"
    );
    assert!(!s.timer_cancel("t1").await.unwrap());
    assert!(!s.timer_cancel("never-scheduled").await.unwrap());
    assert!(
        s.timers_claim_due(base + 10_000, 10, "a", LEASE)
            .await
            .unwrap()
            .is_empty(),
        "a cancelled timer never fires"
    );

    // A claimed timer cannot be stopped (its owner runs it), but it is not retried either.
    s.timer_schedule(&timer("t2", "ring_timeout", base))
        .await
        .unwrap();
    assert_eq!(
        s.timers_claim_due(base, 10, "a", LEASE)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(!s.timer_cancel("t2").await.unwrap());
    assert!(!s.timer_complete("t2", "a").await.unwrap());
    let after_lease = base + LEASE.as_millis() as Millis + 1;
    assert!(
        s.timers_claim_due(after_lease, 10, "b", LEASE)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn timer_reschedule_replaces(f: &Fixture) {
    let s = &f.store;
    let base = f.now();
    s.timer_schedule(&timer("t1", "ring_timeout", base + 1_000))
        .await
        .unwrap();
    let moved = timer("t1", "grace_expired", base + 5_000);
    s.timer_schedule(&moved).await.unwrap();
    assert!(
        s.timers_claim_due(base + 4_999, 10, "a", LEASE)
            .await
            .unwrap()
            .is_empty(),
        "the old due time is gone"
    );
    assert_eq!(
        s.timers_claim_due(base + 5_000, 10, "a", LEASE)
            .await
            .unwrap(),
        vec![moved]
    );

    // Rescheduling a claimed timer takes the claim away from its owner.
    let again = timer("t1", "grace_expired", base + 6_000);
    s.timer_schedule(&again).await.unwrap();
    assert!(!s.timer_complete("t1", "a").await.unwrap());
    assert_eq!(
        s.timers_claim_due(base + 6_000, 10, "b", LEASE)
            .await
            .unwrap(),
        vec![again]
    );
    assert!(s.timer_complete("t1", "b").await.unwrap());
}

/// An instance claims a timer and dies: once the lease runs out another instance gets it.
pub async fn timer_lease_expiry_makes_it_claimable(f: &Fixture) {
    let s = &f.store;
    let base = f.now();
    let lease = Duration::from_millis(1_000);
    let t = timer("t1", "ring_timeout", base);
    s.timer_schedule(&t).await.unwrap();
    assert_eq!(
        s.timers_claim_due(base, 10, "dead", lease).await.unwrap(),
        vec![t.clone()]
    );
    assert!(
        s.timers_claim_due(base + 999, 10, "alive", lease)
            .await
            .unwrap()
            .is_empty(),
        "still leased"
    );
    assert_eq!(
        s.timers_claim_due(base + 1_000, 10, "alive", lease)
            .await
            .unwrap(),
        vec![t]
    );
    assert!(
        !s.timer_complete("t1", "dead").await.unwrap(),
        "the dead owner lost its claim"
    );
    assert!(s.timer_complete("t1", "alive").await.unwrap());
    assert!(
        s.timers_claim_due(base + 100_000, 10, "x", lease)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn timer_complete_by_wrong_owner_fails(f: &Fixture) {
    let s = &f.store;
    let base = f.now();
    s.timer_schedule(&timer("t1", "job", base)).await.unwrap();
    assert!(
        !s.timer_complete("t1", "a").await.unwrap(),
        "a pending timer cannot be completed"
    );
    s.timers_claim_due(base, 10, "a", LEASE).await.unwrap();
    assert!(!s.timer_complete("t1", "b").await.unwrap());
    assert!(s.timer_complete("t1", "a").await.unwrap());
    assert!(
        !s.timer_complete("t1", "a").await.unwrap(),
        "completed once"
    );
    assert!(!s.timer_complete("unknown", "a").await.unwrap());
}

// --- Presence -------------------------------------------------------------------------------

const PRESENCE_TTL: Duration = Duration::from_secs(60);

pub async fn presence_two_devices_connect_disconnect(f: &Fixture) {
    let s = &f.store;
    let base = f.now();
    let c = s
        .presence_connect("alice", "phone", base, PRESENCE_TTL)
        .await
        .unwrap();
    assert_eq!(
        (c.was_online, c.devices, c.is_online()),
        (false, 1, true),
        "first device: goes online"
    );
    let c = s
        .presence_connect("alice", "laptop", base + 1, PRESENCE_TTL)
        .await
        .unwrap();
    assert_eq!((c.was_online, c.devices), (true, 2));
    let c = s
        .presence_connect("alice", "phone", base + 2, PRESENCE_TTL)
        .await
        .unwrap();
    assert_eq!(
        (c.was_online, c.devices),
        (true, 2),
        "reconnecting a device does not add one"
    );

    let got = s
        .presence_get(&strings(&["alice", "bob"]), base + 3)
        .await
        .unwrap();
    assert_eq!(
        got[0].as_ref().map(|e| e.devices.clone()),
        Some(strings(&["laptop", "phone"]))
    );
    assert_eq!(got[0].as_ref().map(|e| e.user_id.as_str()), Some("alice"));
    assert_eq!(got[1], None);
    assert_eq!(
        s.presence_online_users(base + 3).await.unwrap(),
        strings(&["alice"])
    );

    let d = s
        .presence_disconnect("alice", "phone", base + 4)
        .await
        .unwrap();
    assert_eq!(
        (d.was_online, d.devices),
        (true, 1),
        "still online on the laptop"
    );
    let d = s
        .presence_disconnect("alice", "laptop", base + 5)
        .await
        .unwrap();
    assert_eq!(
        (d.was_online, d.devices, d.is_online()),
        (true, 0, false),
        "last device: goes offline"
    );
    let d = s
        .presence_disconnect("alice", "laptop", base + 6)
        .await
        .unwrap();
    assert_eq!(
        (d.was_online, d.devices),
        (false, 0),
        "offline is reported once"
    );

    let got = s
        .presence_get(&strings(&["alice"]), base + 7)
        .await
        .unwrap();
    assert_eq!(devices_of(&got[0]), Some(vec![]), "offline, still known");
    assert!(s.presence_online_users(base + 7).await.unwrap().is_empty());
    assert!(
        s.presence_reap_expired(base + 10_000_000, 100)
            .await
            .unwrap()
            .is_empty(),
        "nothing left to reap"
    );
    assert!(s.presence_get(&[], base).await.unwrap().is_empty());
}

pub async fn presence_refresh_extends(f: &Fixture) {
    let s = &f.store;
    let (base, ttl) = (f.now(), Duration::from_millis(1_000));
    s.presence_connect("alice", "phone", base, ttl)
        .await
        .unwrap();
    s.presence_connect("bob", "phone", base, ttl).await.unwrap();
    let unknown = s
        .presence_refresh(
            &[
                ("alice".into(), "phone".into()),
                ("alice".into(), "tablet".into()),
            ],
            base + 800,
            ttl,
        )
        .await
        .unwrap();
    assert_eq!(
        unknown,
        vec![("alice".to_owned(), "tablet".to_owned())],
        "only unknown devices come back"
    );
    assert!(s.presence_refresh(&[], base, ttl).await.unwrap().is_empty());

    // alice now lives until base + 1800, bob until base + 1000.
    assert_eq!(
        s.presence_online_users(base + 1_500).await.unwrap(),
        strings(&["alice"])
    );
    let got = s
        .presence_get(&strings(&["alice", "bob"]), base + 1_500)
        .await
        .unwrap();
    assert_eq!(devices_of(&got[0]), Some(strings(&["phone"])));
    assert_eq!(devices_of(&got[1]), Some(vec![]), "bob lapsed");
    let got = s
        .presence_get(&strings(&["alice"]), base + 1_800)
        .await
        .unwrap();
    assert_eq!(devices_of(&got[0]), Some(vec![]));

    // A reaped device is not revived by a late heartbeat: it must connect again, which
    // reports the user online again.
    assert_eq!(reap(s, base + 2_000, 10).await, strings(&["alice", "bob"]));
    let late = s
        .presence_refresh(&[("bob".into(), "phone".into())], base + 2_100, ttl)
        .await
        .unwrap();
    assert_eq!(late, vec![("bob".to_owned(), "phone".to_owned())]);
    assert!(
        s.presence_online_users(base + 2_100)
            .await
            .unwrap()
            .is_empty()
    );
    let c = s
        .presence_connect("bob", "phone", base + 2_100, ttl)
        .await
        .unwrap();
    assert_eq!((c.was_online, c.devices), (false, 1));
}

pub async fn presence_expiry_makes_user_offline(f: &Fixture) {
    let s = &f.store;
    let base = f.now();
    s.presence_connect("alice", "phone", base, Duration::from_millis(1_000))
        .await
        .unwrap();
    s.presence_connect("bob", "phone", base, Duration::from_millis(5_000))
        .await
        .unwrap();
    assert_eq!(
        s.presence_online_users(base + 999).await.unwrap(),
        strings(&["alice", "bob"])
    );
    assert!(
        s.presence_get(&strings(&["alice"]), base + 999)
            .await
            .unwrap()[0]
            .is_some()
    );
    // Lapsed at base + 1000, before any reaper ran.
    assert_eq!(
        s.presence_online_users(base + 1_000).await.unwrap(),
        strings(&["bob"])
    );
    let got = s
        .presence_get(&strings(&["alice", "bob"]), base + 1_000)
        .await
        .unwrap();
    assert_eq!(
        devices_of(&got[0]),
        Some(vec![]),
        "lapsed, not reaped yet: no live device"
    );
    assert_eq!(devices_of(&got[1]), Some(strings(&["phone"])));

    // Until a reaper reports alice offline she still counts as online for transitions: a new
    // device does not announce her again, and the lapsed one is dropped.
    let c = s
        .presence_connect(
            "alice",
            "laptop",
            base + 1_500,
            Duration::from_millis(1_000),
        )
        .await
        .unwrap();
    assert_eq!((c.was_online, c.devices), (true, 1));
    // A disconnect that leaves only lapsed devices reports the offline transition itself, so
    // the reaper does not report it again.
    s.presence_connect("carol", "phone", base, Duration::from_millis(1_000))
        .await
        .unwrap();
    s.presence_connect("carol", "laptop", base, Duration::from_millis(1_000))
        .await
        .unwrap();
    let d = s
        .presence_disconnect("carol", "phone", base + 1_500)
        .await
        .unwrap();
    assert_eq!((d.was_online, d.devices), (true, 0));
    assert_eq!(reap(s, base + 10_000, 10).await, strings(&["alice", "bob"]));
}

/// 50 users lapse; 4 instances reap concurrently in small batches: each user is reported
/// offline by exactly one of them, and users with a live device are not reported.
pub async fn presence_reap_reports_each_user_once(f: &Fixture) {
    let s = &f.store;
    let base = f.now();
    let short = Duration::from_millis(1_000);
    let mut expected = Vec::new();
    for i in 0..50 {
        let user = format!("user-{i:02}");
        s.presence_connect(&user, "phone", base, short)
            .await
            .unwrap();
        expected.push(user);
    }
    s.presence_connect("stays", "phone", base, PRESENCE_TTL)
        .await
        .unwrap();
    s.presence_connect("mixed", "old-phone", base, short)
        .await
        .unwrap();
    s.presence_connect("mixed", "laptop", base, PRESENCE_TTL)
        .await
        .unwrap();

    let now = base + 2_000;
    let mut tasks = JoinSet::new();
    for reaper in 0..4 {
        let store = f.instance(reaper);
        tasks.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let batch = store.presence_reap_expired(now, 7).await.expect("reap");
                if batch.is_empty() {
                    return mine;
                }
                mine.extend(batch);
            }
        });
    }
    let mut reaped: Vec<String> = tasks.join_all().await.into_iter().flatten().collect();
    reaped.sort();
    assert_eq!(
        reaped, expected,
        "each lapsed user exactly once, no one else"
    );
    assert!(s.presence_reap_expired(now, 100).await.unwrap().is_empty());
    assert_eq!(
        s.presence_online_users(now).await.unwrap(),
        strings(&["mixed", "stays"])
    );
    let mixed = s.presence_get(&strings(&["mixed"]), now).await.unwrap();
    assert_eq!(
        mixed[0].as_ref().map(|e| e.devices.clone()),
        Some(strings(&["laptop"]))
    );
    // A reaped user's lapsed device is gone: disconnecting it reports nothing.
    let d = s
        .presence_disconnect("user-00", "phone", now)
        .await
        .unwrap();
    assert_eq!((d.was_online, d.devices), (false, 0));
}

pub async fn presence_status_kept(f: &Fixture) {
    let s = &f.store;
    let base = f.now();
    s.presence_set_status("alice", "busy").await.unwrap();
    s.presence_connect("alice", "phone", base, PRESENCE_TTL)
        .await
        .unwrap();
    s.presence_connect("bob", "phone", base, PRESENCE_TTL)
        .await
        .unwrap();
    let got = s
        .presence_get(&strings(&["alice", "bob"]), base)
        .await
        .unwrap();
    assert_eq!(
        got[0].as_ref().and_then(|e| e.status.as_deref()),
        Some("busy")
    );
    assert_eq!(
        got[1].as_ref().map(|e| e.status.clone()),
        Some(None),
        "no status until one is set"
    );

    // The status survives going offline and coming back, and heartbeats.
    s.presence_disconnect("alice", "phone", base + 1)
        .await
        .unwrap();
    s.presence_connect("alice", "laptop", base + 2, PRESENCE_TTL)
        .await
        .unwrap();
    s.presence_refresh(&[("alice".into(), "laptop".into())], base + 3, PRESENCE_TTL)
        .await
        .unwrap();
    let got = s
        .presence_get(&strings(&["alice"]), base + 3)
        .await
        .unwrap();
    assert_eq!(
        got[0].as_ref().and_then(|e| e.status.as_deref()),
        Some("busy")
    );
    s.presence_set_status("alice", "away").await.unwrap();
    let got = s
        .presence_get(&strings(&["alice"]), base + 3)
        .await
        .unwrap();
    assert_eq!(
        got[0].as_ref().and_then(|e| e.status.as_deref()),
        Some("away")
    );
}

pub async fn presence_last_seen_updated(f: &Fixture) {
    let s = &f.store;
    let base = f.now();
    let last_seen = |at: Millis| async move {
        s.presence_get(&strings(&["alice"]), at).await.unwrap()[0]
            .as_ref()
            .map(|e| e.last_seen)
    };
    s.presence_connect("alice", "phone", base, PRESENCE_TTL)
        .await
        .unwrap();
    assert_eq!(last_seen(base).await, Some(base));
    s.presence_refresh(
        &[("alice".into(), "phone".into())],
        base + 100,
        PRESENCE_TTL,
    )
    .await
    .unwrap();
    assert_eq!(last_seen(base + 100).await, Some(base + 100));
    // Another instance with a slightly late clock never moves it back.
    s.presence_connect("alice", "laptop", base + 50, PRESENCE_TTL)
        .await
        .unwrap();
    assert_eq!(last_seen(base + 100).await, Some(base + 100));
    s.presence_disconnect("alice", "laptop", base + 200)
        .await
        .unwrap();
    assert_eq!(last_seen(base + 200).await, Some(base + 200));
}

/// An offline user keeps an entry (no devices) while their metadata is retained, so the
/// server can show `offline` with the last seen time; a user never seen has none.
pub async fn presence_offline_user_keeps_metadata(f: &Fixture) {
    let s = &f.store;
    let base = f.now();
    s.presence_connect("alice", "phone", base, PRESENCE_TTL)
        .await
        .unwrap();
    s.presence_set_status("alice", "away").await.unwrap();
    s.presence_disconnect("alice", "phone", base + 10)
        .await
        .unwrap();
    // bob's only device lapses and is reaped; carol's lapses and is not reaped yet.
    s.presence_connect("bob", "phone", base, Duration::from_millis(1_000))
        .await
        .unwrap();
    s.presence_connect("carol", "phone", base + 500, Duration::from_millis(1_000))
        .await
        .unwrap();
    assert_eq!(reap(s, base + 1_200, 10).await, strings(&["bob"]));

    let got = s
        .presence_get(&strings(&["alice", "bob", "carol", "nobody"]), base + 1_600)
        .await
        .unwrap();
    assert_eq!(
        got[0],
        Some(PresenceEntry {
            user_id: "alice".into(),
            devices: vec![],
            status: Some("away".into()),
            last_seen: base + 10,
            in_call: false,
        })
    );
    assert_eq!(
        got[1],
        Some(PresenceEntry {
            user_id: "bob".into(),
            devices: vec![],
            status: None,
            last_seen: base,
            in_call: false,
        })
    );
    let carol = got[2].as_ref().expect("carol is known");
    assert!(
        carol.devices.is_empty() && !carol.is_online(),
        "lapsed devices are not listed: {carol:?}"
    );
    assert_eq!(carol.last_seen, base + 500);
    assert_eq!(got[3], None, "never seen");

    // Metadata made by a status alone (no activity yet) is an entry too, never active.
    s.presence_set_status("dave", "busy").await.unwrap();
    let got = s
        .presence_get(&strings(&["dave"]), base + 1_600)
        .await
        .unwrap();
    assert_eq!(
        got[0]
            .as_ref()
            .map(|e| (e.devices.len(), e.status.as_deref(), e.last_seen)),
        Some((0, Some("busy"), 0))
    );

    // Coming back lists the device again, with the retained status.
    s.presence_connect("alice", "laptop", base + 2_000, PRESENCE_TTL)
        .await
        .unwrap();
    let got = s
        .presence_get(&strings(&["alice"]), base + 2_000)
        .await
        .unwrap();
    let alice = got[0].as_ref().expect("alice");
    assert_eq!(
        (
            alice.devices.clone(),
            alice.status.as_deref(),
            alice.is_online()
        ),
        (strings(&["laptop"]), Some("away"), true)
    );
}

pub async fn presence_set_status_returns_previous(f: &Fixture) {
    let s = &f.store;
    let base = f.now();
    assert_eq!(s.presence_set_status("alice", "busy").await.unwrap(), None);
    assert_eq!(
        s.presence_set_status("alice", "busy")
            .await
            .unwrap()
            .as_deref(),
        Some("busy"),
        "setting the same status again: unchanged"
    );
    s.presence_connect("alice", "phone", base, PRESENCE_TTL)
        .await
        .unwrap();
    s.presence_disconnect("alice", "phone", base + 1)
        .await
        .unwrap();
    assert_eq!(
        s.presence_set_status("alice", "away")
            .await
            .unwrap()
            .as_deref(),
        Some("busy"),
        "kept across a disconnect"
    );
    // A user who is known (connected) but never set a status has no previous one.
    s.presence_connect("bob", "phone", base, PRESENCE_TTL)
        .await
        .unwrap();
    assert_eq!(s.presence_set_status("bob", "online").await.unwrap(), None);
    let got = s
        .presence_get(&strings(&["alice", "bob"]), base + 2)
        .await
        .unwrap();
    assert_eq!(
        got[0].as_ref().and_then(|e| e.status.as_deref()),
        Some("away")
    );
    assert_eq!(
        got[1].as_ref().and_then(|e| e.status.as_deref()),
        Some("online")
    );
}

/// 16 instances set 16 different statuses at once: each sees the status set just before its
/// own, so the answers chain from "none" to the final status with no status seen twice.
pub async fn presence_set_status_race_sees_a_chain(f: &Fixture) {
    let mut tasks = JoinSet::new();
    for i in 0..16 {
        let store = f.instance(i);
        tasks.spawn(async move {
            let status = format!("s{i:02}");
            let previous = store
                .presence_set_status("alice", &status)
                .await
                .expect("set status");
            (status, previous)
        });
    }
    let answers = tasks.join_all().await;
    let firsts: Vec<_> = answers.iter().filter(|(_, p)| p.is_none()).collect();
    assert_eq!(firsts.len(), 1, "{answers:?}");
    let mut previous: Vec<&str> = answers.iter().filter_map(|(_, p)| p.as_deref()).collect();
    previous.sort_unstable();
    previous.dedup();
    assert_eq!(previous.len(), 15, "each status replaced once: {answers:?}");
    let last = f
        .store
        .presence_get(&strings(&["alice"]), f.now())
        .await
        .unwrap()[0]
        .as_ref()
        .and_then(|e| e.status.clone())
        .expect("a status");
    assert!(
        !previous.contains(&last.as_str()),
        "the final status was replaced by no one"
    );
}

pub async fn presence_in_call_flag(f: &Fixture) {
    let s = &f.store;
    let base = f.now();
    let in_call = |user: &'static str| async move {
        s.presence_get(&strings(&[user]), base + 100).await.unwrap()[0]
            .as_ref()
            .map(|e| e.in_call)
    };
    s.presence_connect("alice", "phone", base, PRESENCE_TTL)
        .await
        .unwrap();
    assert_eq!(
        in_call("alice").await,
        Some(false),
        "not in a call by default"
    );
    assert!(s.presence_set_in_call("alice", true).await.unwrap());
    assert!(
        !s.presence_set_in_call("alice", true).await.unwrap(),
        "no change"
    );
    assert_eq!(in_call("alice").await, Some(true));

    // The flag is kept with the metadata: independent of devices and of the status.
    s.presence_set_status("alice", "busy").await.unwrap();
    s.presence_disconnect("alice", "phone", base + 1)
        .await
        .unwrap();
    let got = s
        .presence_get(&strings(&["alice"]), base + 100)
        .await
        .unwrap();
    let alice = got[0].as_ref().expect("alice");
    assert_eq!(
        (alice.devices.len(), alice.in_call, alice.status.as_deref()),
        (0, true, Some("busy"))
    );
    s.presence_connect("alice", "phone", base + 2, PRESENCE_TTL)
        .await
        .unwrap();
    assert_eq!(in_call("alice").await, Some(true));

    assert!(s.presence_set_in_call("alice", false).await.unwrap());
    assert!(
        !s.presence_set_in_call("alice", false).await.unwrap(),
        "no change"
    );
    let got = s
        .presence_get(&strings(&["alice"]), base + 100)
        .await
        .unwrap();
    let alice = got[0].as_ref().expect("alice");
    assert_eq!(
        (alice.in_call, alice.status.as_deref(), alice.last_seen),
        (false, Some("busy"), base + 2),
        "clearing the flag leaves the rest alone"
    );

    // Clearing for an unknown user creates nothing; setting one creates an entry.
    assert!(!s.presence_set_in_call("nobody", false).await.unwrap());
    assert_eq!(in_call("nobody").await, None);
    assert!(s.presence_set_in_call("bob", true).await.unwrap());
    let got = s
        .presence_get(&strings(&["bob"]), base + 100)
        .await
        .unwrap();
    assert_eq!(
        got[0]
            .as_ref()
            .map(|e| (e.devices.len(), e.in_call, e.last_seen)),
        Some((0, true, 0))
    );
    assert!(s.presence_set_in_call("bob", false).await.unwrap());
    assert_eq!(in_call("bob").await, None, "nothing else was kept for bob");
}

/// 16 instances mark a user in a call at once (the user joins on two devices, say): exactly
/// one sees the change, so `friend_in_call` goes out once; the same for leaving.
pub async fn presence_in_call_race_changes_once(f: &Fixture) {
    for value in [true, false] {
        let mut tasks = JoinSet::new();
        for i in 0..16 {
            let store = f.instance(i);
            tasks.spawn(async move {
                store
                    .presence_set_in_call("alice", value)
                    .await
                    .expect("set in call")
            });
        }
        let changed = tasks.join_all().await.into_iter().filter(|c| *c).count();
        assert_eq!(changed, 1, "in_call = {value}");
    }
}

// --- Bus ------------------------------------------------------------------------------------

/// How long a message may take to arrive.
const BUS_WAIT: Duration = Duration::from_secs(5);
/// How long to wait for a message that must not arrive.
const BUS_QUIET: Duration = Duration::from_millis(300);

async fn next_message(rx: &mut tokio::sync::broadcast::Receiver<String>) -> String {
    tokio::time::timeout(BUS_WAIT, rx.recv())
        .await
        .expect("a bus message within 5 s")
        .expect("bus receiver open and not lagging")
}

async fn assert_quiet(rx: &mut tokio::sync::broadcast::Receiver<String>) {
    if let Ok(got) = tokio::time::timeout(BUS_QUIET, rx.recv()).await {
        panic!("unexpected bus message: {got:?}");
    }
}

pub async fn bus_every_instance_receives_every_message(f: &Fixture) {
    let (a, b) = (f.bus(Deployment::This).await, f.bus(Deployment::This).await);
    // Publishing with no subscriber is fine. (On Redis this message may still reach the
    // receivers made just below: it can be on its way to this instance when they subscribe.)
    a.publish("nobody listens yet").await.unwrap();
    let (mut ra, mut rb) = (a.subscribe(), b.subscribe());
    let mut ra2 = a.subscribe();
    a.publish(r#"{"from":"a","n":1}"#).await.unwrap();
    b.publish(r#"{"from":"b","n":1}"#).await.unwrap();
    a.publish(r#"{"from":"a","n":2}"#).await.unwrap();
    for rx in [&mut ra, &mut rb, &mut ra2] {
        let mut got = Vec::new();
        while got.len() < 3 {
            let msg = next_message(rx).await;
            if msg != "nobody listens yet" {
                got.push(msg);
            }
        }
        // Each publisher's messages arrive in order; the publisher gets its own too.
        let from_a: Vec<_> = got.iter().filter(|m| m.contains(r#""a""#)).collect();
        assert_eq!(
            from_a,
            vec![r#"{"from":"a","n":1}"#, r#"{"from":"a","n":2}"#],
            "{got:?}"
        );
        assert!(got.contains(&r#"{"from":"b","n":1}"#.to_owned()), "{got:?}");
        assert_quiet(rx).await;
    }
}

/// Four instances publish 50 messages each at once: every subscriber gets all 200, each
/// publisher's in order.
pub async fn bus_concurrent_publishers_keep_their_order(f: &Fixture) {
    let mut buses = Vec::new();
    for _ in 0..4 {
        buses.push(f.bus(Deployment::This).await);
    }
    let mut receivers: Vec<_> = buses.iter().map(|b| b.subscribe()).collect();
    let mut tasks = JoinSet::new();
    for (p, bus) in buses.iter().enumerate() {
        let bus = bus.clone();
        tasks.spawn(async move {
            for n in 0..50 {
                bus.publish(&format!("{p}:{n:02}")).await.expect("publish");
            }
        });
    }
    tasks.join_all().await;
    for rx in &mut receivers {
        let mut per_publisher = vec![Vec::new(); 4];
        for _ in 0..200 {
            let msg = next_message(rx).await;
            let (p, n) = msg.split_once(':').expect("p:n");
            per_publisher[p.parse::<usize>().unwrap()].push(n.parse::<u32>().unwrap());
        }
        for got in &per_publisher {
            assert_eq!(got, &(0..50).collect::<Vec<_>>());
        }
    }
}

/// Another deployment's bus (another prefix) neither sees this one's messages nor leaks
/// its own into it.
pub async fn bus_deployments_are_isolated(f: &Fixture) {
    let (this, other) = (
        f.bus(Deployment::This).await,
        f.bus(Deployment::Other).await,
    );
    let (mut this_rx, mut other_rx) = (this.subscribe(), other.subscribe());
    other.publish("other:1").await.unwrap();
    this.publish("this:1").await.unwrap();
    other.publish("other:2").await.unwrap();
    assert_eq!(next_message(&mut this_rx).await, "this:1");
    assert_quiet(&mut this_rx).await;
    assert_eq!(next_message(&mut other_rx).await, "other:1");
    assert_eq!(next_message(&mut other_rx).await, "other:2");
    assert_quiet(&mut other_rx).await;
}

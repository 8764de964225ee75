//! The conformance suite on Redis, plus what only Redis can get wrong: key placement,
//! failing fast when Redis is gone or hung, and recovering when it comes back.
//!
//! Redis comes from `SWITCHBOARD_TEST_REDIS_URL` (default `redis://127.0.0.1:6379`); each
//! case uses a random key prefix and deletes its keys afterwards. When Redis is unreachable
//! the cases are skipped with a note, unless `SWITCHBOARD_REQUIRE_BACKENDS=1`. The outage
//! cases start their own `redis-server` (skipped when it is not installed).

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use switchboard_store::bus::{Bus, RedisBus};
use switchboard_store::conformance::Fixture;
use switchboard_store::redis::{RedisOptions, RedisStore};
use switchboard_store::{CachedMessage, StateStore, StoreError, keys};

switchboard_store::store_conformance_tests!(switchboard_store::conformance::redis_fixture);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[tokio::test]
async fn unreachable_redis_fails_fast_with_unavailable() {
    let port = free_port(); // bound then released: nothing listens there
    let started = Instant::now();
    let result = RedisStore::connect(
        &format!("redis://127.0.0.1:{port}"),
        "sb:",
        RedisOptions::default(),
    )
    .await;
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn braces_in_the_prefix_are_refused() {
    let result =
        RedisStore::connect("redis://127.0.0.1:1", "sb:{x}:", RedisOptions::default()).await;
    assert!(matches!(result, Err(StoreError::Unavailable(m)) if m.contains("prefix")));
}

#[tokio::test]
async fn every_key_lives_under_the_prefix_and_purge_removes_them() {
    let Some(fixture) = Fixture::redis().await else {
        return;
    };
    let url = std::env::var("SWITCHBOARD_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let store = RedisStore::connect(&url, "sbtest-purge:", RedisOptions::default())
        .await
        .expect("connect");
    store.purge_prefix().await.unwrap();
    let now = fixture.now();
    store
        .compare_and_set(&keys::active_call("c1"), None, "{}", None)
        .await
        .unwrap();
    store
        .counter_add(&keys::unread("u1"), "c1", 1)
        .await
        .unwrap();
    store
        .presence_connect("u1", "phone", now, Duration::from_secs(60))
        .await
        .unwrap();
    store
        .timer_schedule(&switchboard_store::Timer {
            id: "t".into(),
            kind: "k".into(),
            payload: "{}".into(),
            due_at: now,
        })
        .await
        .unwrap();
    store
        .recent_fill(
            &keys::messages("c1"),
            &[CachedMessage {
                id: "m1".into(),
                created_at: now,
                json: "{}".into(),
            }],
            100,
            Duration::from_secs(60),
        )
        .await
        .unwrap();

    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let mut found: Vec<String> = redis::cmd("KEYS")
        .arg("sbtest-purge:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    found.sort();
    assert_eq!(
        found,
        vec![
            "sbtest-purge:call:{call:c1}:active",
            "sbtest-purge:messages:{c:c1}",
            "sbtest-purge:messages:{c:c1}:json",
            "sbtest-purge:unread:{u:u1}",
            "sbtest-purge:{presence}:devices:u1",
            "sbtest-purge:{presence}:online",
            "sbtest-purge:{presence}:user:u1",
            "sbtest-purge:{timers}:data",
            "sbtest-purge:{timers}:due",
        ]
    );
    assert_eq!(store.purge_prefix().await.unwrap(), 9);
    let left: Vec<String> = redis::cmd("KEYS")
        .arg("sbtest-purge:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(left.is_empty());
}

/// A recent-message cache is two keys that expire separately; when one is gone before the
/// other (a millisecond apart), the cache is cold and the leftover is deleted, rather than
/// being read as a cache that lost its messages.
#[tokio::test]
async fn recent_cache_with_one_key_gone_is_cold() {
    let Some(fixture) = Fixture::redis().await else {
        return;
    };
    let url = std::env::var("SWITCHBOARD_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("sbtest-skew-{}:", fixture.now());
    let store = RedisStore::connect(&url, &prefix, RedisOptions::default())
        .await
        .expect("connect");
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let m = |id: &str, at| CachedMessage {
        id: id.into(),
        created_at: at,
        json: "{}".into(),
    };
    let ttl = Duration::from_secs(60);
    for (conv, gone) in [("a", "messages:{c:a}"), ("b", "messages:{c:b}:json")] {
        let key = keys::messages(conv);
        store
            .recent_fill(&key, &[m("m1", 1), m("m2", 2)], 100, ttl)
            .await
            .unwrap();
        let _: () = redis::cmd("DEL")
            .arg(format!("{prefix}{gone}"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(store.recent_page(&key, None, None, 10).await.unwrap(), None);
        assert!(
            !store
                .recent_add(&key, &[m("m3", 3)], 100, ttl)
                .await
                .unwrap()
        );
        let left: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(left.is_empty(), "{left:?}");
    }
    store.purge_prefix().await.unwrap();
}

/// A `redis-server` of our own, so that the shared one is never stopped.
struct OwnRedis {
    child: Child,
    port: u16,
}

impl OwnRedis {
    fn start(port: u16) -> Option<Self> {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args(["--enable-debug-command", "local"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        Some(Self { child, port })
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn connect(&self, options: RedisOptions) -> RedisStore {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match RedisStore::connect(&self.url(), "sb:", options.clone()).await {
                Ok(store) => return store,
                Err(e) if Instant::now() > deadline => {
                    panic!("own redis-server did not start: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    async fn bus(&self, prefix: &str) -> RedisBus {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match RedisBus::connect(&self.url(), prefix).await {
                Ok(bus) => return bus,
                Err(e) if Instant::now() > deadline => {
                    panic!("own redis-server did not start: {e}")
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn own_redis() -> Option<OwnRedis> {
    let server = OwnRedis::start(free_port());
    if server.is_none() {
        eprintln!("note: skipping, redis-server is not installed");
    }
    server
}

#[tokio::test]
async fn fails_fast_while_redis_is_down_and_recovers_when_it_returns() {
    let Some(server) = own_redis() else { return };
    let port = server.port;
    let store = server.connect(RedisOptions::default()).await;
    let key = keys::active_call("survivor");
    store
        .compare_and_set(&key, None, "before", None)
        .await
        .unwrap();

    server.stop();
    for _ in 0..3 {
        let started = Instant::now();
        let result = store.get(&key).await;
        assert!(
            matches!(result, Err(StoreError::Unavailable(_))),
            "{result:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "took {:?}",
            started.elapsed()
        );
    }

    let server = OwnRedis::start(port).expect("restart redis-server");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        // The data is gone (no persistence), but the same store works again by itself.
        match store.get(&key).await {
            Ok(value) => {
                assert_eq!(value, None);
                break;
            }
            Err(StoreError::Unavailable(_)) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("did not recover: {e}"),
        }
    }
    store
        .compare_and_set(&key, None, "after", None)
        .await
        .unwrap();
    drop(server);
}

#[tokio::test]
async fn a_hung_redis_times_out_instead_of_blocking() {
    let Some(server) = own_redis() else { return };
    let options = RedisOptions {
        response_timeout: Duration::from_millis(300),
        ..RedisOptions::default()
    };
    let store = server.connect(options).await;
    store.ping().await.unwrap();

    // DEBUG SLEEP blocks the whole server, like a long fork or a stuck disk would.
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let sleeper = tokio::spawn(async move {
        let _: redis::RedisResult<()> = redis::cmd("DEBUG")
            .arg("SLEEP")
            .arg(1.5)
            .query_async(&mut conn)
            .await;
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let result = store.get("k").await;
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(1_200),
        "took {:?}",
        started.elapsed()
    );
    sleeper.await.unwrap();
    // Once Redis answers again, so does the store (after at most a reconnect).
    let deadline = Instant::now() + Duration::from_secs(5);
    while store.ping().await.is_err() {
        assert!(Instant::now() < deadline, "did not recover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn unreachable_redis_fails_the_bus_fast_with_unavailable() {
    let port = free_port();
    let started = Instant::now();
    let result = RedisBus::connect(&format!("redis://127.0.0.1:{port}"), "sb:").await;
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// Redis restarts: both instances' subscriptions come back by themselves and messages flow
/// again, without anyone reconnecting the buses.
#[tokio::test]
async fn bus_resubscribes_after_a_redis_restart() {
    let Some(server) = own_redis() else { return };
    let port = server.port;
    let (a, b) = (server.bus("sb:").await, server.bus("sb:").await);
    let mut rx = b.subscribe();
    a.publish("before").await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
    assert_eq!(got.expect("in time").expect("open"), "before");

    server.stop();
    assert!(
        matches!(
            a.publish("while down").await,
            Err(StoreError::Unavailable(_))
        ),
        "publishing fails while Redis is down"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let server = OwnRedis::start(port).expect("restart redis-server");

    // Messages published before b has subscribed again are lost (at most once): keep
    // publishing until one arrives.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut n = 0;
    'waiting: loop {
        assert!(
            Instant::now() < deadline,
            "the bus did not recover within 10 s"
        );
        n += 1;
        let _ = a.publish(&format!("after-{n}")).await;
        let until = tokio::time::Instant::now() + Duration::from_millis(200);
        if let Ok(got) = tokio::time::timeout_at(until, rx.recv()).await {
            let got = got.expect("receiver open and not lagging");
            assert!(got.starts_with("after-"), "{got:?}");
            break 'waiting;
        }
    }
    // Both directions work again, the publisher receiving its own messages too.
    let mut rx_a = a.subscribe();
    b.publish("from b").await.unwrap();
    for rx in [&mut rx, &mut rx_a] {
        let got = loop {
            let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("in time")
                .expect("open");
            if !got.starts_with("after-") {
                break got;
            }
        };
        assert_eq!(got, "from b");
    }
    drop(server);
}

/// Dropping a bus stops its background task: its receivers end.
#[tokio::test]
async fn dropping_the_bus_closes_its_receivers() {
    let Some(_fixture) = Fixture::redis().await else {
        return;
    };
    let url = std::env::var("SWITCHBOARD_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("sbtest:{}:", uuid::Uuid::new_v4().simple());
    let bus = RedisBus::connect(&url, &prefix).await.expect("connect");
    let mut rx = bus.subscribe();
    drop(bus);
    let got = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
    assert!(
        matches!(
            got,
            Ok(Err(tokio::sync::broadcast::error::RecvError::Closed))
        ),
        "{got:?}"
    );
}

/// The subscription connection alone is cut (Redis stays up): the bus subscribes again.
#[tokio::test]
async fn bus_resubscribes_when_its_connection_is_killed() {
    let Some(server) = own_redis() else { return };
    let (a, b) = (server.bus("sb:").await, server.bus("sb:").await);
    let mut rx = b.subscribe();
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(killed, 2, "both buses' subscriptions");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        assert!(Instant::now() < deadline, "the bus did not resubscribe");
        a.publish("again").await.unwrap();
        if let Ok(got) = tokio::time::timeout(Duration::from_millis(100), rx.recv()).await {
            assert_eq!(got.unwrap(), "again");
            break;
        }
    }
}

//! The deadline queue fires every timer exactly once across instances that share Redis.
//! Two full `Application`s run side by side against one Redis and one database.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use switchboard_server::config::{Overrides, Settings};
use switchboard_server::jobs::TimerHandler;
use switchboard_server::startup::Application;
use switchboard_store::Timer;

type Fired = Arc<Mutex<HashMap<String, Vec<String>>>>;

fn redis_url() -> String {
    std::env::var("SWITCHBOARD_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

fn settings(data_dir: &std::path::Path, prefix: &str, redis: Option<String>) -> Settings {
    let overrides = Overrides {
        bind: Some("127.0.0.1:0".parse().unwrap()),
        dev: true,
        redis_url: redis,
        database_url: None,
    };
    let mut s = Settings::load_from(None, &overrides, &|_| None).expect("settings");
    s.server.data_dir = data_dir.to_path_buf();
    s.store.prefix = prefix.to_string();
    s.log.level = "warn".into();
    s
}

fn recorder(fired: Fired) -> TimerHandler {
    Arc::new(move |app, timer: Timer| {
        let fired = fired.clone();
        Box::pin(async move {
            fired
                .lock()
                .unwrap()
                .entry(timer.id)
                .or_default()
                .push(app.instance_id.clone());
        })
    })
}

async fn redis_reachable() -> bool {
    let Ok(client) = redis::Client::open(redis_url()) else {
        return false;
    };
    matches!(
        tokio::time::timeout(
            Duration::from_secs(2),
            client.get_multiplexed_async_connection()
        )
        .await,
        Ok(Ok(_))
    )
}

async fn run_instances(
    count: usize,
    redis: Option<String>,
    timers: usize,
) -> HashMap<String, Vec<String>> {
    let data_root =
        std::env::temp_dir().join(format!("sb-timers-{}", uuid::Uuid::new_v4().simple()));
    let prefix = format!("sbtest-{}:", uuid::Uuid::new_v4().simple());
    let fired: Fired = Arc::default();
    let mut stops = Vec::new();
    let mut runs = Vec::new();
    let mut first_app = None;
    for instance in 0..count {
        // Each instance gets its own SQLite file: the timers need only the shared store.
        let data_dir = data_root.join(instance.to_string());
        let application = Application::build(settings(&data_dir, &prefix, redis.clone()))
            .await
            .expect("build");
        application.register_timer("test", recorder(fired.clone()));
        first_app.get_or_insert_with(|| application.app());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        stops.push(stop);
        runs.push(tokio::spawn(application.run_until_stopped(async move {
            let _ = stopped.await;
        })));
    }
    let app = first_app.expect("one instance");
    let now = app.now();
    for i in 0..timers {
        let timer = Timer {
            id: format!("t{i}"),
            kind: "test".into(),
            payload: "{}".into(),
            due_at: now + i as i64,
        };
        app.store.timer_schedule(&timer).await.expect("schedule");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while fired.lock().unwrap().len() < timers && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Give a duplicate, if there were one, the time to show up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for stop in stops {
        let _ = stop.send(());
    }
    for run in runs {
        run.await.expect("join").expect("clean shutdown");
    }
    std::fs::remove_dir_all(&data_root).ok();
    fired.lock().unwrap().clone()
}

#[tokio::test]
async fn timers_fire_once_on_a_single_memory_instance() {
    let fired = run_instances(1, None, 50).await;
    assert_eq!(fired.len(), 50, "every timer fired");
    assert!(
        fired.values().all(|by| by.len() == 1),
        "no timer fired twice: {fired:?}"
    );
}

#[tokio::test]
async fn timers_fire_exactly_once_across_two_instances_sharing_redis() {
    if !redis_reachable().await {
        assert!(
            std::env::var("SWITCHBOARD_REQUIRE_BACKENDS").is_err(),
            "Redis is required but unreachable at {}",
            redis_url()
        );
        eprintln!("skipped: Redis unreachable at {}", redis_url());
        return;
    }
    let fired = run_instances(2, Some(redis_url()), 300).await;
    assert_eq!(fired.len(), 300, "every timer fired");
    let twice: Vec<_> = fired.iter().filter(|(_, by)| by.len() != 1).collect();
    assert!(twice.is_empty(), "timers fired more than once: {twice:?}");
    let instances: std::collections::HashSet<&String> = fired.values().flatten().collect();
    assert_eq!(instances.len(), 2, "both instances took part in firing");
}

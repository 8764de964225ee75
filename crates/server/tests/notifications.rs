//! Push notifications end to end: a real instance (memory store, SQLite, the real timer
//! runner) delivers to a real HTTP receiver started in the test, which checks signatures
//! and can be told to fail the first attempts of each delivery.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};
use switchboard_server::app::SharedApp;
use switchboard_server::auth::Claims;
use switchboard_server::config::{Overrides, Secret, Settings};
use switchboard_server::services::notifications::{self, NewNotice, Priority};
use switchboard_server::startup::Application;
use switchboard_server::webhook;

const SECRET: &str = "webhook-test-secret";

/// What the receiver saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    delivery: String,
    attempt: u32,
    event: String,
    signed: bool,
    body: Value,
    /// Unix ms on receipt.
    at: i64,
    accepted: bool,
}

#[derive(Default)]
struct ReceiverState {
    /// Each delivery id's first `fail_first` requests are answered 500.
    fail_first: u32,
    seen: Mutex<Vec<Seen>>,
    per_delivery: Mutex<HashMap<String, u32>>,
}

struct Receiver {
    url: String,
    state: Arc<ReceiverState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Receiver {
    async fn start(fail_first: u32) -> Self {
        let state = Arc::new(ReceiverState {
            fail_first,
            ..Default::default()
        });
        let router = Router::new()
            .route("/hook", post(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Self {
            url,
            state,
            stop: Some(stop),
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    fn accepted(&self) -> Vec<Seen> {
        self.seen().into_iter().filter(|s| s.accepted).collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let signed = header("content-type") == "application/json"
        && webhook::verify(
            SECRET.as_bytes(),
            &header(webhook::TIMESTAMP_HEADER),
            &body,
            &header(webhook::SIGNATURE_HEADER),
        );
    let delivery = header(webhook::DELIVERY_HEADER);
    let nth = {
        let mut counts = state.per_delivery.lock().unwrap();
        let n = counts.entry(delivery.clone()).or_default();
        *n += 1;
        *n
    };
    let accepted = signed && nth > state.fail_first;
    state.seen.lock().unwrap().push(Seen {
        delivery,
        attempt: header(webhook::ATTEMPT_HEADER).parse().unwrap_or(0),
        event: header(webhook::EVENT_HEADER),
        signed,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        at: unix_ms(),
        accepted,
    });
    if !signed {
        StatusCode::UNAUTHORIZED
    } else if accepted {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}

struct Instance {
    app: SharedApp,
    base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    run: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    data_dir: std::path::PathBuf,
}

impl Instance {
    async fn start(configure: impl FnOnce(&mut Settings)) -> Self {
        let data_dir =
            std::env::temp_dir().join(format!("sb-notif-{}", uuid::Uuid::new_v4().simple()));
        let overrides = Overrides {
            bind: Some("127.0.0.1:0".parse().unwrap()),
            dev: true,
            redis_url: None,
            database_url: None,
        };
        let mut s = Settings::load_from(None, &overrides, &|_| None).unwrap();
        s.server.data_dir = data_dir.clone();
        s.log.level = "warn".into();
        s.auth.jwt_secret = Secret::new("jwt-test-secret");
        s.notifications.webhook_secret = Secret::new(SECRET);
        s.notifications.backoff_initial_ms = 50;
        s.notifications.backoff_max_ms = 200;
        s.notifications.request_timeout_secs = 2;
        configure(&mut s);
        let application = Application::build(s).await.unwrap();
        let app = application.app();
        let base = format!("http://127.0.0.1:{}", application.port());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let run = tokio::spawn(application.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        Self {
            app,
            base,
            stop: Some(stop),
            run: Some(run),
            data_dir,
        }
    }

    async fn get(&self, path: &str, bearer: Option<&str>) -> (u16, Value) {
        let mut request = reqwest::Client::new().get(format!("{}{path}", self.base));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.run
            .take()
            .unwrap()
            .await
            .unwrap()
            .expect("clean shutdown");
        std::fs::remove_dir_all(&self.data_dir).ok();
    }
}

fn notice(user: &str, kind: &str, priority: Priority) -> NewNotice {
    NewNotice {
        user_id: user.into(),
        kind: kind.into(),
        title: format!("{kind} title"),
        body: format!("{kind} body"),
        data: json!({ "conversationId": "c1" }),
        priority,
    }
}

/// Polls `done` every 20 ms for at most `within`.
async fn eventually(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if done() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    done()
}

#[tokio::test]
async fn a_notification_is_delivered_once_with_a_valid_signature() {
    let receiver = Receiver::start(0).await;
    let url = receiver.url.clone();
    let instance = Instance::start(|s| s.notifications.webhook_url = url).await;
    let app = instance.app.clone();

    let sent = notifications::record(&app, notice("alice", "incoming_call", Priority::High))
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(3), || !receiver.accepted().is_empty()).await,
        "delivered"
    );
    // A duplicate, if there were one, would show up within a few polls.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let seen = receiver.seen();
    assert_eq!(seen.len(), 1, "exactly one request: {seen:?}");
    let got = &seen[0];
    assert!(got.signed && got.accepted);
    assert_eq!(got.delivery, sent.id);
    assert_eq!(got.attempt, 1);
    assert_eq!(got.event, "notification");
    assert_eq!(
        got.body,
        json!({
            "id": sent.id, "userId": "alice", "kind": "incoming_call",
            "title": "incoming_call title", "body": "incoming_call body",
            "data": {"conversationId": "c1"}, "priority": "high",
            "createdAt": sent.created_at, "attempt": 1,
        })
    );

    let (status, stats) = instance.get("/stats", None).await;
    assert_eq!(status, 200);
    let jobs = &stats["jobs"]["notifications"];
    assert_eq!(jobs["recorded"], 1, "{stats}");
    assert_eq!(jobs["queued"], 1, "{stats}");
    assert_eq!(jobs["delivered"], 1, "{stats}");
    assert_eq!(jobs["deadLettered"], 0, "{stats}");
    assert!(stats["jobs"]["sessionSweep"].is_object(), "{stats}");

    // The user's list, through the admin endpoint and the user's own token.
    let (status, list) = instance.get("/api/users/alice/notifications", None).await;
    assert_eq!(status, 200);
    assert_eq!(list["notifications"][0]["id"], sent.id.as_str());
    let token = app
        .auth
        .mint(&Claims {
            sub: "alice".into(),
            name: None,
            exp: (unix_ms() / 1000 + 3600) as u64,
            device: None,
            guest: false,
            conversation_id: None,
        })
        .unwrap();
    let (status, mine) = instance.get("/api/me/notifications", Some(&token)).await;
    assert_eq!(status, 200, "{mine}");
    assert_eq!(mine["userId"], "alice");
    assert_eq!(mine["notifications"][0]["id"], sent.id.as_str());
    let (status, _) = instance.get("/api/me/notifications", Some("nope")).await;
    assert_eq!(status, 401);

    instance.stop().await;
}

#[tokio::test]
async fn a_receiver_failing_twice_gets_the_notification_on_the_third_attempt() {
    let receiver = Receiver::start(2).await;
    let url = receiver.url.clone();
    let instance = Instance::start(|s| {
        s.notifications.webhook_url = url;
        s.notifications.max_attempts = 5;
    })
    .await;
    let app = instance.app.clone();

    let sent = notifications::record(&app, notice("bob", "missed_call", Priority::High))
        .await
        .unwrap();
    assert!(
        eventually(Duration::from_secs(5), || !receiver.accepted().is_empty()).await,
        "delivered in the end: {:?}",
        receiver.seen()
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    let seen = receiver.seen();
    let attempts: Vec<(u32, bool)> = seen.iter().map(|s| (s.attempt, s.accepted)).collect();
    assert_eq!(attempts, [(1, false), (2, false), (3, true)], "{seen:?}");
    assert!(seen.iter().all(|s| s.delivery == sent.id && s.signed));
    assert!(seen.iter().all(|s| s.body["attempt"] == s.attempt));
    // Backoff: at least 50 ms, then at least 100 ms between attempts.
    assert!(seen[1].at - seen[0].at >= 45, "{seen:?}");
    assert!(seen[2].at - seen[1].at >= 95, "{seen:?}");

    let (_, letters) = instance.get("/api/notifications/dead-letters", None).await;
    assert_eq!(letters["count"], 0, "{letters}");
    let (_, stats) = instance.get("/stats", None).await;
    assert_eq!(stats["jobs"]["notifications"]["retried"], 2, "{stats}");
    assert_eq!(stats["jobs"]["notifications"]["delivered"], 1, "{stats}");
    instance.stop().await;
}

#[tokio::test]
async fn a_receiver_that_always_fails_leaves_a_dead_letter_after_max_attempts() {
    let receiver = Receiver::start(u32::MAX).await;
    let url = receiver.url.clone();
    let instance = Instance::start(|s| {
        s.notifications.webhook_url = url;
        s.notifications.max_attempts = 3;
    })
    .await;
    let app = instance.app.clone();

    let sent = notifications::record(&app, notice("carol", "incoming_call", Priority::High))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let letters = loop {
        let (status, letters) = instance.get("/api/notifications/dead-letters", None).await;
        assert_eq!(status, 200);
        if letters["count"] == 1 || tokio::time::Instant::now() > deadline {
            break letters;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(letters["count"], 1, "dead-lettered: {letters}");
    let letter = &letters["deadLetters"][0];
    assert_eq!(letter["attempts"], 3);
    assert_eq!(letter["lastError"], "HTTP 500");
    assert_eq!(letter["url"], receiver.url.as_str());
    assert_eq!(letter["body"]["id"], sent.id.as_str());
    assert_eq!(letter["body"]["attempt"], 3);

    // No attempt after the dead letter.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let attempts: Vec<u32> = receiver.seen().iter().map(|s| s.attempt).collect();
    assert_eq!(attempts, [1, 2, 3]);

    // The notification is still in the user's list.
    let (_, list) = instance.get("/api/users/carol/notifications", None).await;
    assert_eq!(list["notifications"][0]["id"], sent.id.as_str(), "{list}");
    let (_, stats) = instance.get("/stats", None).await;
    assert_eq!(stats["jobs"]["notifications"]["deadLettered"], 1, "{stats}");
    assert_eq!(
        stats["jobs"]["notifications"]["lastError"], "HTTP 500",
        "{stats}"
    );

    // An operator discards it.
    let id = letter["id"].as_str().unwrap();
    let response = reqwest::Client::new()
        .delete(format!(
            "{}/api/notifications/dead-letters/{id}",
            instance.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let (_, letters) = instance.get("/api/notifications/dead-letters", None).await;
    assert_eq!(letters["count"], 0);
    instance.stop().await;
}

#[tokio::test]
async fn high_priority_goes_out_at_once_while_normal_waits_for_the_interval() {
    let receiver = Receiver::start(0).await;
    let url = receiver.url.clone();
    let instance = Instance::start(|s| {
        s.notifications.webhook_url = url;
        s.timers.notification_interval_secs = 2;
    })
    .await;
    let app = instance.app.clone();

    // Start early in an interval, so "at once" and "at the boundary" are far apart.
    while unix_ms().rem_euclid(2_000) > 200 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let normal = notifications::record(&app, notice("dave", "message", Priority::Normal))
        .await
        .unwrap();
    let high = notifications::record(&app, notice("dave", "incoming_call", Priority::High))
        .await
        .unwrap();
    let boundary = notifications::next_batch_at(normal.created_at, Duration::from_secs(2));

    assert!(
        eventually(Duration::from_secs(1), || receiver
            .accepted()
            .iter()
            .any(|s| s.delivery == high.id))
        .await,
        "high priority delivered at once"
    );
    assert!(
        receiver.seen().iter().all(|s| s.delivery != normal.id),
        "normal priority still queued"
    );
    assert!(
        eventually(Duration::from_secs(3), || receiver
            .accepted()
            .iter()
            .any(|s| s.delivery == normal.id))
        .await,
        "normal priority delivered at the boundary"
    );
    let seen = receiver.seen();
    let at = |id: &str| seen.iter().find(|s| s.delivery == id).unwrap().at;
    assert!(at(&high.id) < boundary, "{seen:?}");
    assert!(
        at(&normal.id) >= boundary,
        "not before the boundary: {seen:?}"
    );
    assert!(at(&normal.id) < boundary + 1_000, "soon after it: {seen:?}");
    assert_eq!(seen.len(), 2);
    instance.stop().await;
}

#[tokio::test]
async fn the_per_user_list_keeps_the_newest_and_pages() {
    // No webhook: notifications are only recorded.
    let instance = Instance::start(|s| s.notifications.per_user = 5).await;
    let app = instance.app.clone();

    let mut ids = Vec::new();
    for i in 0..8 {
        let mut n = notice("erin", "message", Priority::Normal);
        n.title = format!("m{i}");
        ids.push(notifications::record(&app, n).await.unwrap().id);
    }
    let newest: Vec<String> = ids.iter().rev().take(5).cloned().collect();

    let (status, list) = instance.get("/api/users/erin/notifications", None).await;
    assert_eq!(status, 200);
    let got: Vec<&str> = list["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(got, newest, "the newest per_user, newest first");
    assert_eq!(list["hasMore"], false);

    let (_, page) = instance
        .get("/api/users/erin/notifications?limit=2", None)
        .await;
    assert_eq!(page["notifications"].as_array().unwrap().len(), 2);
    assert_eq!(page["hasMore"], true);
    let (_, next) = instance
        .get(
            &format!("/api/users/erin/notifications?limit=2&before={}", newest[1]),
            None,
        )
        .await;
    assert_eq!(next["notifications"][0]["id"], newest[2].as_str());
    assert_eq!(next["notifications"][1]["id"], newest[3].as_str());
    let (status, _) = instance
        .get("/api/users/erin/notifications?before=unknown", None)
        .await;
    assert_eq!(status, 404);
    let (status, _) = instance
        .get("/api/users/erin/notifications?limit=x", None)
        .await;
    assert_eq!(status, 400);

    // Nothing is queued without a webhook.
    let (_, stats) = instance.get("/stats", None).await;
    assert_eq!(stats["jobs"]["notifications"]["recorded"], 8);
    assert_eq!(stats["jobs"]["notifications"]["queued"], 0);

    // Triggers for connected users are skipped.
    app.store
        .presence_connect("frank", "phone", app.now(), Duration::from_secs(60))
        .await
        .unwrap();
    let sent = notifications::notify_if_offline(&app, notice("frank", "message", Priority::Normal))
        .await
        .unwrap();
    assert!(!sent, "frank is connected");
    let sent = notifications::notify_if_offline(&app, notice("gina", "message", Priority::Normal))
        .await
        .unwrap();
    assert!(sent, "gina is not");
    let (_, frank) = instance.get("/api/users/frank/notifications", None).await;
    assert_eq!(frank["notifications"].as_array().unwrap().len(), 0);
    instance.stop().await;
}

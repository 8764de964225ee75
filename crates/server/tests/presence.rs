//! Presence services driven in simulated time, with a recording outbox standing in for
//! Socket.IO: what friends are told under races and expiry.

use std::sync::Arc;
use std::time::Duration;

use switchboard_db::{Db, DbOptions};
use switchboard_domain::devices::DeviceConnect;
use switchboard_domain::presence::UserStatus;
use switchboard_domain::time::{Clock, ManualClock};
use switchboard_server::app::{App, Backends, SharedApp};
use switchboard_server::config::{Overrides, Settings};
use switchboard_server::services::{friends, presence, sessions};
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

async fn harness(presence_ttl_secs: u64) -> Harness {
    let dir = std::env::temp_dir().join(format!("sb-presence-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let overrides = Overrides {
        bind: Some("127.0.0.1:0".parse().unwrap()),
        dev: true,
        redis_url: None,
        database_url: None,
    };
    let mut settings = Settings::load_from(None, &overrides, &|_| None).unwrap();
    settings.presence.public = Some(false);
    settings.timers.presence_ttl_secs = presence_ttl_secs;
    let db = Db::connect(
        &format!("sqlite://{}/t.db?mode=rwc", dir.display()),
        &DbOptions::default(),
    )
    .await
    .unwrap();
    db.migrate().await.unwrap();
    let clock = ManualClock::new(1_800_000_000_000);
    let outbox = Arc::new(Recorder::default());
    let store = Arc::new(MemoryStore::new(Arc::new(clock.clone()) as Arc<dyn Clock>));
    let backends = Backends {
        store,
        db,
        bus: Arc::new(MemoryBus::new()),
    };
    let app = App::new(settings, backends, Arc::new(clock.clone()), outbox.clone());
    friends::replace(&app, "alice", &["bob".to_string()])
        .await
        .unwrap();
    Harness {
        app,
        clock,
        outbox,
        dir,
    }
}

/// Connects a device the way the gateway does: admit (session record), then mark it live.
async fn connect(app: &App, user: &str, device: &str) {
    let admission = DeviceConnect {
        user_id: user.into(),
        device_id: device.into(),
        socket_id: format!("{user}-{device}"),
        instance_id: "test".into(),
        ip: None,
        user_agent: None,
    };
    sessions::admit(app, &admission).await.unwrap();
    sessions::mark_connected(app, user, user, device)
        .await
        .unwrap();
}

/// Disconnects a device the way the gateway does.
async fn disconnect(app: &App, user: &str, device: &str) {
    assert!(
        sessions::release(app, user, device, &format!("{user}-{device}"))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn two_devices_connecting_and_leaving_in_the_same_instant_tell_friends_once_each_way() {
    let h = harness(300).await;
    connect(&h.app, "bob", "b1").await;
    let (a, b) = (h.app.clone(), h.app.clone());
    tokio::join!(
        connect(&a, "alice", "phone"),
        connect(&b, "alice", "laptop")
    );
    assert_eq!(
        h.outbox.to_user("bob", "friend_online").len(),
        1,
        "one friend_online for two simultaneous devices"
    );
    tokio::join!(
        disconnect(&a, "alice", "phone"),
        disconnect(&b, "alice", "laptop")
    );
    let offline = h.outbox.to_user("bob", "friend_offline");
    assert_eq!(offline.len(), 1, "one friend_offline once both are gone");
    assert_eq!(offline[0]["userId"], "alice");
}

#[tokio::test]
async fn closing_one_of_two_devices_changes_nothing_for_friends() {
    let h = harness(300).await;
    connect(&h.app, "bob", "b1").await;
    connect(&h.app, "alice", "phone").await;
    connect(&h.app, "alice", "laptop").await;
    disconnect(&h.app, "alice", "phone").await;
    assert!(h.outbox.to_user("bob", "friend_offline").is_empty());
    let seen = presence::get(&h.app, "bob", &["alice".to_string()])
        .await
        .unwrap();
    assert_eq!(seen["alice"].devices, 1);
}

#[tokio::test]
async fn a_status_change_racing_the_last_disconnect_never_reports_a_ghost() {
    let h = harness(300).await;
    connect(&h.app, "bob", "b1").await;
    connect(&h.app, "alice", "phone").await;
    let (a, b) = (h.app.clone(), h.app.clone());
    let (status, ()) = tokio::join!(
        presence::set_status(&a, "alice", "alice", UserStatus::Away),
        disconnect(&b, "alice", "phone")
    );
    status.unwrap();
    let seen = presence::get(&h.app, "bob", &["alice".to_string()])
        .await
        .unwrap();
    assert_eq!(
        seen["alice"].status.as_str(),
        "offline",
        "whatever the order, alice ends offline"
    );
    assert_eq!(h.outbox.to_user("bob", "friend_offline").len(), 1);
    // The status survives for her next connect, and friends learn it with friend_online.
    connect(&h.app, "alice", "phone").await;
    let statuses = h.outbox.to_user("bob", "friend_status");
    assert_eq!(
        statuses.last().map(|s| s["status"].clone()),
        Some("away".into())
    );
}

#[tokio::test]
async fn a_dead_instance_s_users_expire_and_friends_hear_it_once() {
    let h = harness(10).await;
    connect(&h.app, "bob", "b1").await;
    connect(&h.app, "alice", "phone").await;
    // Alice's instance dies: nobody refreshes her device. Bob's instance keeps refreshing his.
    h.clock.advance(9_000);
    h.app
        .store
        .presence_refresh(
            &[("bob".into(), "b1".into())],
            h.app.now(),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    h.clock.advance(2_000);
    let expired = h
        .app
        .store
        .presence_reap_expired(h.app.now(), 100)
        .await
        .unwrap();
    assert_eq!(expired, vec!["alice".to_string()]);
    presence::users_expired(&h.app, &expired).await.unwrap();
    assert!(
        h.app
            .store
            .presence_reap_expired(h.app.now(), 100)
            .await
            .unwrap()
            .is_empty(),
        "reported once"
    );
    assert_eq!(h.outbox.to_user("bob", "friend_offline").len(), 1);
    let seen = presence::get(&h.app, "bob", &["alice".to_string()])
        .await
        .unwrap();
    assert_eq!(seen["alice"].status.as_str(), "offline");
}

#[tokio::test]
async fn in_call_shows_over_the_user_status_and_leaving_restores_it() {
    let h = harness(300).await;
    connect(&h.app, "bob", "b1").await;
    connect(&h.app, "alice", "phone").await;
    presence::set_status(&h.app, "alice", "alice", UserStatus::Busy)
        .await
        .unwrap();
    presence::mark_in_call(&h.app, "alice").await.unwrap();
    let seen = presence::get(&h.app, "bob", &["alice".to_string()])
        .await
        .unwrap();
    assert_eq!(seen["alice"].status.as_str(), "in_call");
    presence::mark_out_of_call(&h.app, "alice").await.unwrap();
    let seen = presence::get(&h.app, "bob", &["alice".to_string()])
        .await
        .unwrap();
    assert_eq!(seen["alice"].status.as_str(), "busy");
    assert_eq!(h.outbox.to_user("bob", "friend_in_call").len(), 1);
    assert_eq!(h.outbox.to_user("bob", "friend_out_of_call").len(), 1);
}

#[tokio::test]
async fn strangers_see_nothing_in_friends_mode() {
    let h = harness(300).await;
    connect(&h.app, "alice", "phone").await;
    connect(&h.app, "mallory", "m1").await;
    let seen = presence::get(&h.app, "mallory", &["alice".to_string()])
        .await
        .unwrap();
    assert!(seen.is_empty(), "alice is not visible to a stranger");
    let online = presence::visible_online(&h.app, "mallory").await.unwrap();
    assert_eq!(
        online
            .iter()
            .map(|u| u.user_id.as_str())
            .collect::<Vec<_>>(),
        vec!["mallory"]
    );
    assert!(h.outbox.to_user("mallory", "friend_online").is_empty());
}

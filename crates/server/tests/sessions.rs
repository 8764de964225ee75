//! Device sessions and the periodic sweep, driven in simulated time on the memory store.

use std::sync::Arc;

use switchboard_domain::devices::DeviceConnect;
use switchboard_domain::time::ManualClock;
use switchboard_server::config::{Overrides, Settings};
use switchboard_server::services::sessions;
use switchboard_server::startup::Application;

async fn app_at(clock: ManualClock) -> (Application, std::path::PathBuf) {
    let data_dir =
        std::env::temp_dir().join(format!("sb-sessions-{}", uuid::Uuid::new_v4().simple()));
    let overrides = Overrides {
        bind: Some("127.0.0.1:0".parse().unwrap()),
        dev: true,
        redis_url: None,
        database_url: None,
    };
    let mut settings = Settings::load_from(None, &overrides, &|_| None).unwrap();
    settings.server.data_dir = data_dir.clone();
    settings.timers.session_ttl_secs = 60;
    (
        Application::build_with_clock(settings, Arc::new(clock))
            .await
            .unwrap(),
        data_dir,
    )
}

fn device(user: &str, device: &str, socket: &str) -> DeviceConnect {
    DeviceConnect {
        user_id: user.into(),
        device_id: device.into(),
        socket_id: socket.into(),
        instance_id: "test".into(),
        ip: Some("127.0.0.1".into()),
        user_agent: Some("test".into()),
    }
}

#[tokio::test]
async fn sessions_outlive_disconnects_until_their_ttl_then_the_sweep_forgets_them() {
    let clock = ManualClock::new(1_800_000_000_000);
    let (application, data_dir) = app_at(clock.clone()).await;
    let app = application.app();

    sessions::admit(&app, &device("alice", "phone", "s1"))
        .await
        .unwrap();
    sessions::admit(&app, &device("bob", "laptop", "s2"))
        .await
        .unwrap();
    assert!(
        sessions::release(&app, "alice", "phone", "s1")
            .await
            .unwrap(),
        "the holder releases the device"
    );

    clock.advance(30_000);
    let listed = sessions::list(&app, "alice").await.unwrap();
    assert_eq!(
        listed.len(),
        1,
        "a disconnected device keeps its session within the TTL"
    );
    assert_eq!(listed[0].socket_id, None);
    assert_eq!(sessions::sweep_expired(&app).await.unwrap(), 0);

    clock.advance(31_000);
    assert!(
        sessions::list(&app, "alice").await.unwrap().is_empty(),
        "the session lapsed"
    );
    assert_eq!(
        sessions::sweep_expired(&app).await.unwrap(),
        2,
        "both users' sessions lapsed and are swept"
    );
    std::fs::remove_dir_all(data_dir).ok();
}

#[tokio::test]
async fn a_replaced_socket_cannot_release_the_device() {
    let clock = ManualClock::new(1_800_000_000_000);
    let (application, data_dir) = app_at(clock.clone()).await;
    let app = application.app();

    sessions::admit(&app, &device("alice", "phone", "old"))
        .await
        .unwrap();
    let admitted = sessions::admit(&app, &device("alice", "phone", "new"))
        .await
        .unwrap();
    assert_eq!(admitted.replaced_socket.as_deref(), Some("old"));
    assert!(
        !sessions::release(&app, "alice", "phone", "old")
            .await
            .unwrap(),
        "the displaced socket no longer holds the device"
    );
    let listed = sessions::list(&app, "alice").await.unwrap();
    assert_eq!(listed[0].socket_id.as_deref(), Some("new"));
    std::fs::remove_dir_all(data_dir).ok();
}

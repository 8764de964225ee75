//! The browser client at `/`: built files, the single-page-app fallback, and the server's
//! own paths never shadowed by it.

use std::path::{Path, PathBuf};

use switchboard_server::config::{Overrides, Settings};
use switchboard_server::startup::Application;

struct Served {
    base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    run: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    dirs: Vec<PathBuf>,
}

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sb-web-{tag}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A fake build: an index page and one hashed bundle.
fn fake_build() -> PathBuf {
    let dir = temp_dir("dist");
    std::fs::write(
        dir.join("index.html"),
        "<!doctype html><title>Switchboard</title>",
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("assets")).unwrap();
    std::fs::write(dir.join("assets/index-abc123.js"), "console.log('app')").unwrap();
    dir
}

impl Served {
    async fn start(static_dir: &Path) -> Self {
        let data_dir = temp_dir("data");
        let overrides = Overrides {
            bind: Some("127.0.0.1:0".parse().unwrap()),
            dev: true,
            redis_url: None,
            database_url: None,
        };
        let mut s = Settings::load_from(None, &overrides, &|_| None).unwrap();
        s.server.data_dir = data_dir.clone();
        s.log.level = "warn".into();
        s.web.static_dir = static_dir.to_path_buf();
        let application = Application::build(s).await.unwrap();
        let base = format!("http://127.0.0.1:{}", application.port());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let run = tokio::spawn(application.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        Self {
            base,
            stop: Some(stop),
            run: Some(run),
            dirs: vec![data_dir],
        }
    }

    async fn get(&self, path: &str) -> (u16, String, String) {
        let response = reqwest::get(format!("{}{path}", self.base)).await.unwrap();
        let status = response.status().as_u16();
        let cache = response
            .headers()
            .get("cache-control")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (status, cache, response.text().await.unwrap())
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.run.take().unwrap().await.unwrap().unwrap();
        for dir in self.dirs {
            std::fs::remove_dir_all(dir).ok();
        }
    }
}

#[tokio::test]
async fn the_client_is_served_at_root_with_the_spa_fallback_and_api_paths_stay_json() {
    let dist = fake_build();
    let server = Served::start(&dist).await;

    let (status, cache, body) = server.get("/").await;
    assert_eq!(status, 200);
    assert!(body.contains("<title>Switchboard</title>"), "{body}");
    assert_eq!(cache, "no-cache");

    // A client-side route reloaded in the browser gets the app.
    let (status, _, body) = server.get("/conversations/some-id").await;
    assert_eq!(status, 200);
    assert!(body.contains("<title>Switchboard</title>"));

    let (status, cache, body) = server.get("/assets/index-abc123.js").await;
    assert_eq!(status, 200);
    assert_eq!(body, "console.log('app')");
    assert!(cache.contains("immutable"), "{cache}");

    // The server's own paths are not shadowed.
    let (status, _, body) = server.get("/health").await;
    assert_eq!(status, 200);
    assert!(body.contains("\"status\""), "{body}");
    for path in [
        "/api/no-such-thing",
        "/metrics/x",
        "/socket.io-nope/../api/x",
    ] {
        let (status, _, body) = server.get(path).await;
        assert_eq!(status, 404, "{path}");
        assert!(body.contains("NOT_FOUND"), "{path}: {body}");
    }

    server.stop().await;
    std::fs::remove_dir_all(dist).ok();
}

#[tokio::test]
async fn without_a_build_root_is_a_json_404() {
    let empty = temp_dir("empty");
    let server = Served::start(&empty).await;
    let (status, _, body) = server.get("/").await;
    assert_eq!(status, 404);
    assert!(body.contains("NOT_FOUND"), "{body}");
    server.stop().await;
    std::fs::remove_dir_all(empty).ok();
}

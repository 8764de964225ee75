//! The browser client (`web/`): its built files at `/`, with the single-page-app fallback
//! (any other GET path answers `index.html`, so a reload on a client route works). Paths
//! that belong to the server (`/api/…`, `/socket.io/…`, the ops endpoints) are never
//! answered with the client: unknown ones stay JSON 404s.

use std::path::{Path, PathBuf};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;
use tower_http::services::{ServeDir, ServeFile};

use crate::config::WebSettings;
use crate::error::AppError;

/// First path segments the server owns.
const SERVER_SEGMENTS: &[&str] = &[
    "api",
    "socket.io",
    "redis",
    "health",
    "metrics",
    "stats",
    "online-users",
];

/// The built client, when one is there to serve.
#[derive(Debug, Clone)]
pub struct WebClient {
    dir: PathBuf,
}

impl WebClient {
    /// `None` when serving is turned off (empty `static_dir`) or nothing is built there.
    pub fn from_settings(settings: &WebSettings) -> Option<Self> {
        let dir = &settings.static_dir;
        if dir.as_os_str().is_empty() {
            return None;
        }
        if !dir.join("index.html").is_file() {
            tracing::warn!(
                dir = %dir.display(),
                "web client not built (no index.html): `/` is not served; run `make web`"
            );
            return None;
        }
        tracing::info!(dir = %dir.display(), "serving the web client at /");
        Some(Self { dir: dir.clone() })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Answers a request no API route matched.
    pub async fn serve(&self, request: Request) -> Response {
        let path = request.uri().path();
        let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
        let readable = matches!(*request.method(), Method::GET | Method::HEAD);
        if SERVER_SEGMENTS.contains(&first) || !readable {
            return AppError::not_found("no such endpoint").into_response();
        }
        let hashed_asset = path.starts_with("/assets/");
        let files = ServeDir::new(&self.dir).fallback(ServeFile::new(self.dir.join("index.html")));
        let mut response = match files.oneshot(request).await {
            Ok(response) => response.map(Body::new),
            Err(never) => match never {},
        };
        // Vite names bundles by content hash: they never change. index.html must be
        // revalidated so a new build is picked up.
        let cache = if hashed_asset && response.status().is_success() {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        };
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
        response
    }
}

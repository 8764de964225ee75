//! Scenarios and the pieces they share: simulated users and what they receive.

pub mod ack;
pub mod calls;
pub mod churn;
pub mod fanout;
pub mod idle;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Result, anyhow};
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::client::{Incoming, SioClient};

/// The id, display name and device of simulated user `n`.
pub fn user_id(n: u32) -> String {
    format!("lg-u{n}")
}

/// The dev-mode handshake of simulated user `n` (one device per user).
pub fn dev_auth(n: u32) -> serde_json::Value {
    json!({ "userId": user_id(n), "name": format!("Load {n}"), "deviceId": "lg-d0" })
}

/// Events received by all simulated clients, by name. Counters only grow; scenarios
/// take snapshots around their measured window.
#[derive(Debug, Default)]
pub struct EventCounters {
    counts: HashMap<&'static str, AtomicU64>,
    other: AtomicU64,
    /// Connections the server closed while the client wanted them open.
    pub unexpected_closes: AtomicU64,
}

impl EventCounters {
    /// Counters for the `tracked` event names; every other event counts as "other".
    pub fn new(tracked: &[&'static str]) -> Self {
        Self {
            counts: tracked.iter().map(|&n| (n, AtomicU64::new(0))).collect(),
            ..Self::default()
        }
    }

    pub fn record(&self, name: &str) {
        match self.counts.get(name) {
            Some(c) => c.fetch_add(1, Ordering::Relaxed),
            None => self.other.fetch_add(1, Ordering::Relaxed),
        };
    }

    pub fn get(&self, name: &str) -> u64 {
        self.counts
            .get(name)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    #[allow(
        dead_code,
        reason = "part of the client API for the ack and fan-out scenarios to come"
    )]
    pub fn other(&self) -> u64 {
        self.other.load(Ordering::Relaxed)
    }
}

/// A connected simulated client, driven by its own task that answers pings and counts
/// the events it receives until told to leave.
pub struct LiveClient {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<()>>,
}

impl LiveClient {
    pub fn spawn(
        mut client: SioClient,
        counters: Arc<EventCounters>,
        close_timeout: Duration,
    ) -> Self {
        let (stop, mut stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    biased;
                    _ = &mut stop_rx => return client.close(close_timeout).await,
                    incoming = client.next_event() => match incoming? {
                        Incoming::Event(event) => counters.record(&event.name),
                        Incoming::Ack { .. } => {}
                        Incoming::Closed => {
                            counters.unexpected_closes.fetch_add(1, Ordering::Relaxed);
                            // Wait for the owner to notice and release this user.
                            let _ = stop_rx.await;
                            return Ok(());
                        }
                    },
                }
            }
        });
        Self { stop, task }
    }

    /// Disconnects (Socket.IO DISCONNECT + WebSocket close) and waits until it is done.
    pub async fn disconnect(self) -> Result<()> {
        let _ = self.stop.send(());
        self.task
            .await
            .map_err(|e| anyhow!("client task failed: {e}"))?
    }
}

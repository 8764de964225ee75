//! The bus: messages from one instance of a deployment to all of them.
//!
//! A message is opaque text (JSON in practice). Every instance, the publisher included,
//! receives every message published after it subscribed, in the order each publisher sent
//! them. A message published just before `subscribe` may or may not be received. Delivery
//! is best effort: a subscriber that falls more than [`BUS_CAPACITY`] messages behind gets
//! [`RecvError::Lagged`](tokio::sync::broadcast::error::RecvError) and skips ahead; on Redis
//! the messages published while an instance's subscription is down (a Redis restart) are
//! lost for that instance, and a publish retried on a broken connection may arrive twice
//! (see [`RedisBus`]'s `publish`). Consumers must tolerate gaps and duplicates: the state
//! store, not the bus, is the source of truth.
//!
//! - [`MemoryBus`]: one process; a tokio broadcast channel.
//! - [`RedisBus`]: `PUBLISH` on the channel `<prefix>bus` over the store's kind of
//!   reconnecting connection, and a background task with a dedicated pub/sub connection that
//!   forwards the channel into a local broadcast channel, reconnecting and subscribing again
//!   by itself (documented in `docs/redis-keys.md`).

use std::time::Duration;

use async_trait::async_trait;
use futures::{FutureExt, StreamExt};
use redis::aio::{ConnectionManager, PubSubSink, PubSubStream};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::redis::{RedisOptions, connection_manager, map_err};
use crate::{StoreError, StoreResult};

/// Messages a subscriber may fall behind by before it starts losing them.
pub const BUS_CAPACITY: usize = 4096;

/// The channel name under a deployment's prefix.
pub const BUS_CHANNEL: &str = "bus";

/// Instance-to-instance messages of one deployment.
#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Sends `message` to every subscriber of every instance, this one included. `Ok` means
    /// the message was handed to the transport, not that anyone received it.
    async fn publish(&self, message: &str) -> StoreResult<()>;

    /// A receiver of every message published from now on (by any instance).
    fn subscribe(&self) -> broadcast::Receiver<String>;
}

// Both buses satisfy the trait, checked when the crate compiles.
const _: () = {
    const fn is_bus<T: Bus>() {}
    is_bus::<MemoryBus>();
    is_bus::<RedisBus>();
};

/// The in-process bus: a single instance's messages to itself.
#[derive(Debug, Clone)]
pub struct MemoryBus {
    tx: broadcast::Sender<String>,
}

impl MemoryBus {
    pub fn new() -> Self {
        Self {
            tx: broadcast::channel(BUS_CAPACITY).0,
        }
    }
}

impl Default for MemoryBus {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Bus for MemoryBus {
    async fn publish(&self, message: &str) -> StoreResult<()> {
        // No subscriber is not an error: nobody was listening, as on Redis.
        let _ = self.tx.send(message.to_owned());
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<String> {
        self.tx.subscribe()
    }
}

/// First and longest pause between attempts to restore the subscription.
const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(2);
/// How often the subscription connection is checked with a `PING`, and how long the answer
/// may take: a connection that died without being closed (a vanished host) is noticed too.
const PING_EVERY: Duration = Duration::from_secs(5);

/// The bus over Redis pub/sub, for the instances of a deployment sharing one Redis.
///
/// Not `Clone`: share it in an `Arc`. Dropping it stops its background task and closes its
/// connections; receivers obtained from it then end (`RecvError::Closed`).
pub struct RedisBus {
    conn: ConnectionManager,
    channel: String,
    tx: broadcast::Sender<String>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for RedisBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password: only the channel is shown.
        f.debug_struct("RedisBus")
            .field("channel", &self.channel)
            .finish_non_exhaustive()
    }
}

impl RedisBus {
    /// Connects to `url` (as [`RedisStore::connect`](crate::redis::RedisStore::connect)) and
    /// subscribes to the channel `<prefix>bus`; instances of one deployment use the same
    /// prefix as their store. Returns once the subscription is confirmed, so every message
    /// published after that reaches this bus's subscribers. Fails with
    /// [`StoreError::Unavailable`] if Redis cannot be reached now; after that, a lost
    /// subscription is restored in the background for as long as the bus lives.
    pub async fn connect(url: &str, prefix: &str) -> StoreResult<Self> {
        let options = RedisOptions::default();
        let client = redis::Client::open(url).map_err(map_err)?;
        let channel = format!("{prefix}{BUS_CHANNEL}");
        let conn = connection_manager(client.clone(), &options).await?;
        let subscription = subscribe(&client, &channel, options.connect_timeout).await?;
        let tx = broadcast::channel(BUS_CAPACITY).0;
        let task = tokio::spawn(forward(
            client,
            channel.clone(),
            tx.clone(),
            subscription,
            options.connect_timeout,
        ));
        Ok(Self {
            conn,
            channel,
            tx,
            task,
        })
    }

    /// The Redis channel this bus publishes and listens on.
    pub fn channel(&self) -> &str {
        &self.channel
    }
}

impl Drop for RedisBus {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[async_trait]
impl Bus for RedisBus {
    /// One `PUBLISH`. If the connection turns out to be broken (typically the first publish
    /// after a Redis restart, on an instance that was idle meanwhile), it is sent once more
    /// on a new connection; if the old connection broke after Redis got the message, it is
    /// then delivered twice, so consumers tolerate duplicates as well as gaps.
    async fn publish(&self, message: &str) -> StoreResult<()> {
        let mut cmd = redis::cmd("PUBLISH");
        cmd.arg(&self.channel).arg(message);
        match cmd.exec_async(&mut self.conn.clone()).await {
            Err(e) if e.is_connection_dropped() => {
                tracing::debug!(channel = %self.channel, error = %e, "bus publish retried");
                cmd.exec_async(&mut self.conn.clone())
                    .await
                    .map_err(map_err)
            }
            result => result.map_err(map_err),
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<String> {
        self.tx.subscribe()
    }
}

/// A dedicated pub/sub connection subscribed to `channel`.
async fn subscribe(
    client: &redis::Client,
    channel: &str,
    timeout: Duration,
) -> StoreResult<(PubSubSink, PubSubStream)> {
    let attempt = async {
        let (mut sink, stream) = client.get_async_pubsub().await?.split();
        sink.subscribe(channel).await?;
        Ok((sink, stream))
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(result) => result.map_err(map_err),
        Err(_) => Err(StoreError::Unavailable(format!(
            "subscribing to {channel} took more than {timeout:?}"
        ))),
    }
}

/// The background task: forwards the subscription into `tx`, and when the connection is
/// lost subscribes again (backing off from [`RECONNECT_MIN`] to [`RECONNECT_MAX`]), until
/// the task is aborted.
async fn forward(
    client: redis::Client,
    channel: String,
    tx: broadcast::Sender<String>,
    mut subscription: (PubSubSink, PubSubStream),
    timeout: Duration,
) {
    loop {
        let (sink, stream) = &mut subscription;
        pump(sink, stream, &tx, &channel).await;
        tracing::warn!(%channel, "bus subscription lost, reconnecting");
        let mut delay = RECONNECT_MIN;
        subscription = loop {
            match subscribe(&client, &channel, timeout).await {
                Ok(subscription) => break subscription,
                Err(e) => {
                    tracing::debug!(%channel, error = %e, retry_in = ?delay, "bus reconnect failed");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(RECONNECT_MAX);
                }
            }
        };
        tracing::info!(%channel, "bus subscription restored");
    }
}

/// Forwards messages until the connection ends or stops answering pings.
async fn pump(
    sink: &mut PubSubSink,
    stream: &mut PubSubStream,
    tx: &broadcast::Sender<String>,
    channel: &str,
) {
    let deliver = |msg: redis::Msg| match msg.get_payload::<String>() {
        // No receiver is fine: nobody on this instance listens right now.
        Ok(text) => drop(tx.send(text)),
        Err(e) => tracing::warn!(%channel, error = %e, "dropping a bus message that is not text"),
    };
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(msg) => deliver(msg),
                None => return,
            },
            _ = ping.tick() => {
                let answer = tokio::time::timeout(PING_EVERY, sink.ping::<redis::Value>()).await;
                if !matches!(answer, Ok(Ok(_))) {
                    // Hand over what already arrived before giving the connection up.
                    while let Some(Some(msg)) = stream.next().now_or_never() {
                        deliver(msg);
                    }
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_bus_delivers_to_every_subscriber_in_order() {
        let bus = MemoryBus::new();
        bus.publish("before anyone listens").await.unwrap();
        let (mut a, mut b) = (bus.subscribe(), bus.subscribe());
        bus.publish("one").await.unwrap();
        bus.publish("two").await.unwrap();
        for rx in [&mut a, &mut b] {
            assert_eq!(rx.recv().await.unwrap(), "one");
            assert_eq!(rx.recv().await.unwrap(), "two");
            assert!(rx.try_recv().is_err(), "nothing else");
        }
    }
}

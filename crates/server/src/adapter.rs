//! The Socket.IO Redis adapter's connection, made to survive Redis restarts.
//!
//! socketioxide-redis ships a driver on a plain multiplexed connection, which never
//! reconnects: after a Redis restart every cross-instance emit fails for good and the
//! subscriptions are gone. This driver sits on redis' `ConnectionManager` instead, which
//! reconnects and resubscribes by itself; pushed pub/sub messages are routed to the
//! adapter's per-channel streams. [`AdapterDriver::keepalive`] pings through the manager so
//! an instance that only listens notices a lost connection and gets its subscriptions back.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, PushInfo, PushKind};
use socketioxide_redis::drivers::{ChanItem, Driver, MessageStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// How often an idle connection is checked (and so how fast subscriptions come back).
const KEEPALIVE: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct DriverError(#[from] redis::RedisError);

type Subscribers = Arc<RwLock<HashMap<String, mpsc::Sender<ChanItem>>>>;

/// A reconnecting pub/sub driver for the Socket.IO Redis adapter.
#[derive(Clone)]
pub struct AdapterDriver {
    subscribers: Subscribers,
    connection: ConnectionManager,
}

impl AdapterDriver {
    /// Connects with RESP3 (pub/sub messages arrive as pushes on the same connection).
    pub async fn connect(client: redis::Client) -> redis::RedisResult<Self> {
        let subscribers: Subscribers = Arc::default();
        let routes = subscribers.clone();
        let config = ConnectionManagerConfig::new()
            .set_push_sender(move |push: PushInfo| {
                deliver(push, &routes);
                Ok::<(), std::convert::Infallible>(())
            })
            .set_automatic_resubscription()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(500));
        let connection = ConnectionManager::new_with_config(client, config).await?;
        Ok(Self {
            subscribers,
            connection,
        })
    }

    /// Pings until `stop`; a failed ping makes the manager reconnect and resubscribe.
    pub async fn keepalive(self, stop: CancellationToken) {
        let mut healthy = true;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(KEEPALIVE) => {}
            }
            let ping = redis::cmd("PING")
                .query_async::<()>(&mut self.connection.clone())
                .await;
            match (&ping, healthy) {
                (Err(error), true) => {
                    tracing::warn!(%error, "Socket.IO adapter lost Redis; reconnecting")
                }
                (Ok(()), false) => tracing::info!("Socket.IO adapter reconnected to Redis"),
                _ => {}
            }
            healthy = ping.is_ok();
        }
    }
}

/// Routes a pushed pub/sub message to the stream of its channel.
fn deliver(push: PushInfo, subscribers: &Subscribers) {
    if !matches!(push.kind, PushKind::Message | PushKind::SMessage) {
        return;
    }
    let mut data = push.data.into_iter();
    let (Some(channel), Some(payload)) = (data.next(), data.next()) else {
        return;
    };
    let (Ok(channel), Ok(payload)) = (
        String::from_redis_value(channel),
        Vec::<u8>::from_redis_value(payload),
    ) else {
        return;
    };
    let sender = subscribers
        .read()
        .expect("adapter subscribers lock")
        .get(&channel)
        .cloned();
    if let Some(sender) = sender
        && sender.try_send((channel, payload)).is_err()
    {
        tracing::warn!("Socket.IO adapter stream full; a cross-instance message was dropped");
    }
}

impl Driver for AdapterDriver {
    type Error = DriverError;

    async fn publish(&self, chan: String, val: Vec<u8>) -> Result<(), Self::Error> {
        redis::cmd("PUBLISH")
            .arg(chan)
            .arg(val)
            .query_async::<()>(&mut self.connection.clone())
            .await?;
        Ok(())
    }

    async fn subscribe(
        &self,
        chan: String,
        size: usize,
    ) -> Result<MessageStream<ChanItem>, Self::Error> {
        let (sender, receiver) = mpsc::channel(size);
        self.subscribers
            .write()
            .expect("adapter subscribers lock")
            .insert(chan.clone(), sender);
        self.connection.clone().subscribe(chan.as_str()).await?;
        Ok(MessageStream::new(receiver))
    }

    async fn unsubscribe(&self, chan: String) -> Result<(), Self::Error> {
        self.subscribers
            .write()
            .expect("adapter subscribers lock")
            .remove(&chan);
        self.connection.clone().unsubscribe(chan.as_str()).await?;
        Ok(())
    }

    async fn num_serv(&self, chan: &str) -> Result<u16, Self::Error> {
        let (_, count): (String, u16) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(chan)
            .query_async(&mut self.connection.clone())
            .await?;
        Ok(count)
    }
}

//! How services reach clients without depending on the Socket.IO adapter type.
//!
//! The gateway is generic over the adapter (local in memory mode, Redis across instances);
//! services only need "emit this to that room" and "disconnect that room", which work the
//! same on every instance through whichever adapter is in use.

use async_trait::async_trait;
use socketioxide::adapter::Adapter;
use socketioxide::{BroadcastError, SocketIo};

#[async_trait]
pub trait Outbox: Send + Sync + 'static {
    /// Emits to every socket in `room`, on every instance.
    async fn emit(&self, room: String, event: &'static str, data: serde_json::Value) {
        self.emit_to(vec![room], event, data).await
    }
    /// Emits once to every socket in any of `rooms`, on every instance.
    async fn emit_to(&self, rooms: Vec<String>, event: &'static str, data: serde_json::Value);
    /// Emits once to every socket in any of `rooms` except those in `except`, on every
    /// instance (e.g. a conversation's members but not the sender's own devices).
    async fn emit_except(
        &self,
        rooms: Vec<String>,
        except: String,
        event: &'static str,
        data: serde_json::Value,
    );
    /// Makes every socket in `room` (on every instance) join `target`.
    async fn join(&self, room: String, target: String);
    /// Makes every socket in `room` (on every instance) leave `target`.
    async fn leave(&self, room: String, target: String);
    /// Emits to the sockets in `room` that are connected to this instance only.
    async fn emit_local(&self, room: String, event: &'static str, data: serde_json::Value);
    /// Disconnects every socket in `room`, on every instance.
    async fn disconnect(&self, room: String);
    /// Disconnects every socket of this instance (graceful shutdown).
    async fn close(&self);
}

#[async_trait]
impl<A: Adapter> Outbox for SocketIo<A> {
    async fn emit_to(&self, rooms: Vec<String>, event: &'static str, data: serde_json::Value) {
        if rooms.is_empty() {
            return;
        }
        match self.to(rooms.clone()).emit(event, &data).await {
            Ok(()) => {}
            // The adapter could not reach the other instances (Redis is down): the sockets
            // of this instance still get the event.
            Err(BroadcastError::Adapter(error)) => {
                tracing::warn!(event, %error, "cross-instance broadcast failed; delivering locally");
                let _ = self.local().to(rooms).emit(event, &data).await;
            }
            // Some sockets could not take it (closed, or slow consumers being dropped).
            Err(error) => tracing::debug!(event, %error, "broadcast partly failed"),
        }
    }

    async fn emit_except(
        &self,
        rooms: Vec<String>,
        except: String,
        event: &'static str,
        data: serde_json::Value,
    ) {
        if rooms.is_empty() {
            return;
        }
        match self
            .to(rooms.clone())
            .except(except.clone())
            .emit(event, &data)
            .await
        {
            Ok(()) => {}
            Err(BroadcastError::Adapter(error)) => {
                tracing::warn!(event, %error, "cross-instance broadcast failed; delivering locally");
                let _ = self
                    .local()
                    .to(rooms)
                    .except(except)
                    .emit(event, &data)
                    .await;
            }
            Err(error) => tracing::debug!(event, %error, "broadcast partly failed"),
        }
    }

    async fn join(&self, room: String, target: String) {
        if let Err(error) = self.to(room.clone()).join(target.clone()).await {
            tracing::warn!(%room, %target, %error, "cross-instance join failed; joining local sockets");
            let _ = self.local().to(room).join(target).await;
        }
    }

    async fn leave(&self, room: String, target: String) {
        if let Err(error) = self.to(room.clone()).leave(target.clone()).await {
            tracing::warn!(%room, %target, %error, "cross-instance leave failed; leaving local sockets");
            let _ = self.local().to(room).leave(target).await;
        }
    }

    async fn emit_local(&self, room: String, event: &'static str, data: serde_json::Value) {
        if let Err(error) = self.local().to(room.clone()).emit(event, &data).await {
            tracing::debug!(%room, event, %error, "local broadcast partly failed");
        }
    }

    async fn disconnect(&self, room: String) {
        match self.to(room.clone()).disconnect().await {
            Ok(()) => {}
            Err(BroadcastError::Adapter(error)) => {
                tracing::warn!(%room, %error, "cross-instance disconnect failed; disconnecting locally");
                let _ = self.local().to(room).disconnect().await;
            }
            Err(error) => tracing::debug!(%room, %error, "disconnect partly failed"),
        }
    }

    async fn close(&self) {
        SocketIo::close(self).await;
    }
}

/// Room names. Every socket joins its user's and its device's room on connect.
pub mod rooms {
    pub fn user(user_id: &str) -> String {
        format!("user:{user_id}")
    }

    pub fn conversation(conversation_id: &str) -> String {
        format!("conv:{conversation_id}")
    }

    /// A §6 room: the devices taking part in it.
    pub fn room(room_id: &str) -> String {
        format!("room:{room_id}")
    }

    /// Every connected socket (public room lists, protocol §6 `roomListUpdated`).
    pub fn lobby() -> String {
        "lobby".to_string()
    }

    pub fn device(user_id: &str, device_id: &str) -> String {
        // The length prefix keeps ids that contain `:` from colliding.
        format!("device:{}:{user_id}:{device_id}", user_id.len())
    }
}

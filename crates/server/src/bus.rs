//! Messages between the instances of a deployment (Redis pub/sub, or in-process in memory
//! mode). They carry facts every instance must act on for its own sockets, such as "this
//! user's presence changed, refresh the online lists of your local sockets".

use serde::{Deserialize, Serialize};

use crate::app::App;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BusEvent {
    /// A user came online, went offline, or changed status or call state.
    PresenceChanged { user_id: String },
    /// These users' friend lists changed.
    FriendsChanged { user_ids: Vec<String> },
}

/// Publishes to every instance, this one included.
pub async fn publish(app: &App, event: &BusEvent) {
    let text = match serde_json::to_string(event) {
        Ok(text) => text,
        Err(error) => return tracing::error!(%error, "unserialisable bus event"),
    };
    if let Err(error) = app.bus.publish(&text).await {
        tracing::warn!(%error, "bus publish failed; online lists may lag until the next change");
    }
}

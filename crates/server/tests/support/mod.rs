//! Shared by the server's simulated-time test suites: an outbox that records what the
//! services asked Socket.IO to do, standing in for the gateway.
//!
//! Each test binary includes this module with `mod support;` and uses part of it.
#![allow(dead_code)]

use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::Value;
use switchboard_server::outbox::Outbox;

/// One emit the outbox was asked for.
#[derive(Debug, Clone)]
pub struct Emit {
    pub rooms: Vec<String>,
    /// The socket left out (`emit_except`).
    pub except: Option<String>,
    pub event: &'static str,
    pub data: Value,
}

/// Records emits and room joins/leaves in the order they were asked for.
#[derive(Default)]
pub struct Recorder {
    emits: Mutex<Vec<Emit>>,
    joins: Mutex<Vec<(String, String)>>,
    leaves: Mutex<Vec<(String, String)>>,
}

#[async_trait]
impl Outbox for Recorder {
    async fn emit_to(&self, rooms: Vec<String>, event: &'static str, data: Value) {
        self.push(rooms, None, event, data);
    }
    async fn emit_local(&self, room: String, event: &'static str, data: Value) {
        self.push(vec![room], None, event, data);
    }
    async fn emit_except(
        &self,
        rooms: Vec<String>,
        except: String,
        event: &'static str,
        data: Value,
    ) {
        self.push(rooms, Some(except), event, data);
    }
    async fn join(&self, room: String, target: String) {
        self.joins.lock().unwrap().push((room, target));
    }
    async fn leave(&self, room: String, target: String) {
        self.leaves.lock().unwrap().push((room, target));
    }
    async fn disconnect(&self, _room: String) {}
    async fn close(&self) {}
}

impl Recorder {
    fn push(&self, rooms: Vec<String>, except: Option<String>, event: &'static str, data: Value) {
        self.emits.lock().unwrap().push(Emit {
            rooms,
            except,
            event,
            data,
        });
    }

    /// Every emit of `event`, oldest first.
    pub fn events(&self, event: &str) -> Vec<Emit> {
        self.emits
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.event == event)
            .cloned()
            .collect()
    }

    /// The payloads of `event` sent to the Socket.IO room `room`.
    pub fn to_room(&self, room: &str, event: &str) -> Vec<Value> {
        self.events(event)
            .into_iter()
            .filter(|e| e.rooms.iter().any(|r| r == room))
            .map(|e| e.data)
            .collect()
    }

    /// The payloads of `event` sent to `user`'s room (all their sockets).
    pub fn to_user(&self, user: &str, event: &str) -> Vec<Value> {
        self.to_room(&format!("user:{user}"), event)
    }

    pub fn count(&self, event: &str) -> usize {
        self.events(event).len()
    }

    /// `(room, socket or room)` of every join, oldest first.
    pub fn joins(&self) -> Vec<(String, String)> {
        self.joins.lock().unwrap().clone()
    }

    pub fn leaves(&self) -> Vec<(String, String)> {
        self.leaves.lock().unwrap().clone()
    }

    /// Forgets the emits so far (joins and leaves stay).
    pub fn clear(&self) {
        self.emits.lock().unwrap().clear();
    }
}

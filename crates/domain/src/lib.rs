//! Sans-IO domain logic of Switchboard.
//!
//! Nothing in this crate reads the clock, sleeps, spawns or touches a socket: time comes in
//! as [`Millis`] arguments and results come back as values, so every race and timeout can be
//! replayed deterministically in tests.
//!
//! # Layout
//! - [`time`]: the millisecond timestamp type and the [`time::Clock`] seam the drivers use.
//! - [`error`]: [`DomainError`], the one error vocabulary the services map to ack codes.
//! - [`calls`]: the direct-call ringing machine (pending → accepted | rejected | cancelled |
//!   timeout), seed 002's `CallManager` as pure transitions.
//! - [`chat`]: chat rules: membership and management, content, deletion visibility,
//!   unread recipients, typing.
//! - [`conversation_calls`]: conversation calls (seed 004): initiated → ringing → active →
//!   ended, reconnection, zombies, ICE-based connection, TURN REST credentials.
//! - [`devices`]: device sessions: connect, replacement, disconnect, the device cap.
//! - [`presence`]: derived status (OFFLINE → ONLINE ⇄ IN-CALL) and what friends are told.
//! - [`rooms`]: rooms (seed 002's `RoomManager`): join/leave/end, invitations, host grace,
//!   reconnect window, in-room chat and media state.
//! - [`limits`]: validation of ids, names and sizes (protocol §11).

pub mod calls;
pub mod chat;
pub mod conversation_calls;
pub mod devices;
pub mod error;
pub mod limits;
pub mod presence;
pub mod rooms;
pub mod time;

pub use error::DomainError;
pub use time::Millis;

//! The Switchboard server: services over the domain, the store and the database, and the
//! Socket.IO + HTTP gateway in front of them.
//!
//! # Layout
//! - [`config`]: layered settings (defaults → TOML → environment → flags).
//! - [`startup`]: [`startup::Application`], built from settings and run until stopped.
//! - [`app`]: the shared state of one instance.
//! - [`auth`]: JWT and dev-mode handshakes, token minting.
//! - [`gateway`]: Socket.IO: handshake, devices, the event table, the ack convention.
//! - [`http`]: health, metrics, stats and the admin API.
//! - [`services`]: what handlers call; they apply domain rules to the store and database.
//! - [`jobs`]: heartbeat, presence reaper, and the deadline-queue runner.
//! - [`outbox`]: emitting to rooms on every instance, whatever the adapter.
//! - [`adapter`]: the Socket.IO Redis adapter's reconnecting driver.
//! - [`bus`]: messages between instances (Redis pub/sub, or in-process).
//! - [`webhook`]: signed outgoing webhook POSTs (HMAC-SHA256) and their verification.
//! - [`error`]: the one mapping from failures to ack codes and HTTP statuses.
//! - [`metrics`], [`telemetry`]: Prometheus metrics and structured logs.

pub mod adapter;
pub mod app;
pub mod auth;
pub mod bus;
pub mod config;
pub mod error;
pub mod gateway;
pub mod http;
pub mod jobs;
pub mod metrics;
pub mod outbox;
pub mod services;
pub mod startup;
pub mod telemetry;
pub mod webhook;

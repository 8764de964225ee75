//! A lean Socket.IO v4 client over a single WebSocket (no polling, no reconnection).
//!
//! Engine.IO pings are answered inside [`SioClient::next_event`], so a caller that keeps
//! reading stays connected.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::sio::{self, EioPacket, SioKind};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A connected Socket.IO client of the main namespace.
#[allow(
    dead_code,
    reason = "`sid` is kept for debugging; no scenario reads it yet"
)]
pub struct SioClient {
    ws: Ws,
    /// The Socket.IO session id from the CONNECT ack.
    pub sid: String,
    /// How long the connect took: dialing the WebSocket → Socket.IO CONNECT ack.
    pub connect_latency: Duration,
}

/// An event the server sent.
#[derive(Debug, Clone)]
#[allow(dead_code, reason = "`ack_id`: no scenario answers server acks yet")]
pub struct Event {
    pub name: String,
    /// The whole JSON array `["name", ...args]`.
    pub data: String,
    /// Set when the server expects an ack (`43<id>[...]`).
    pub ack_id: Option<u64>,
}

/// What [`SioClient::next_event`] produced.
#[derive(Debug)]
pub enum Incoming {
    Event(Event),
    /// An ack to an event this client emitted with an id.
    Ack {
        id: u64,
        data: String,
    },
    /// The server disconnected the socket or closed the connection.
    Closed,
}

/// The handshake was answered with a CONNECT_ERROR (`44{"message":..}`).
#[derive(Debug)]
pub struct ConnectRefused(pub String);

impl std::fmt::Display for ConnectRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "connect refused: {}", self.0)
    }
}

impl std::error::Error for ConnectRefused {}

/// `ws://host:port` → the Engine.IO WebSocket endpoint.
pub fn endpoint(base: &str) -> String {
    format!("{base}/socket.io/?EIO=4&transport=websocket")
}

impl SioClient {
    /// Opens the WebSocket, waits for the Engine.IO open packet, sends CONNECT with `auth`
    /// and waits for the ack. The whole exchange is bounded by `timeout`.
    pub async fn connect(url: &str, auth: &Value, timeout: Duration) -> Result<Self> {
        tokio::time::timeout(timeout, Self::connect_inner(url, auth))
            .await
            .map_err(|_| anyhow!("connect timed out after {timeout:?}"))?
    }

    async fn connect_inner(url: &str, auth: &Value) -> Result<Self> {
        let started = Instant::now();
        let (mut ws, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
            .await
            .with_context(|| format!("WebSocket to {url}"))?;
        let mut opened = false;
        loop {
            let msg = ws
                .next()
                .await
                .ok_or_else(|| anyhow!("closed during handshake"))??;
            let Message::Text(text) = msg else {
                if let Message::Close(_) = msg {
                    bail!("closed during handshake");
                }
                continue;
            };
            match sio::parse_frame(text.as_str())? {
                EioPacket::Open(_) if !opened => {
                    opened = true;
                    ws.send(Message::text(sio::encode_connect(auth))).await?;
                }
                EioPacket::Ping(_) => ws.send(Message::text(sio::PONG)).await?,
                EioPacket::Message(p) if p.namespace == "/" => match p.kind {
                    SioKind::Connect => {
                        let sid = serde_json::from_str::<Value>(p.data)
                            .ok()
                            .and_then(|v| v.get("sid")?.as_str().map(str::to_string))
                            .unwrap_or_default();
                        return Ok(Self {
                            ws,
                            sid,
                            connect_latency: started.elapsed(),
                        });
                    }
                    SioKind::ConnectError => {
                        let message = serde_json::from_str::<Value>(p.data)
                            .ok()
                            .and_then(|v| v.get("message")?.as_str().map(str::to_string))
                            .unwrap_or_else(|| p.data.to_string());
                        return Err(ConnectRefused(message).into());
                    }
                    _ => {}
                },
                EioPacket::Close => bail!("closed during handshake"),
                _ => {}
            }
        }
    }

    /// The next thing the server sent that the caller may care about. Pings are answered
    /// here. Cancel-safe between frames.
    pub async fn next_event(&mut self) -> Result<Incoming> {
        loop {
            let Some(msg) = self.ws.next().await else {
                return Ok(Incoming::Closed);
            };
            let text = match msg? {
                Message::Text(text) => text,
                Message::Close(_) => return Ok(Incoming::Closed),
                _ => continue,
            };
            match sio::parse_frame(text.as_str())? {
                EioPacket::Ping(_) => self.ws.send(Message::text(sio::PONG)).await?,
                EioPacket::Close => return Ok(Incoming::Closed),
                EioPacket::Message(p) if p.namespace == "/" => match p.kind {
                    SioKind::Event => {
                        let name = sio::event_name(p.data)
                            .ok_or_else(|| anyhow!("event without a name: {}", p.data))?
                            .into_owned();
                        return Ok(Incoming::Event(Event {
                            name,
                            data: p.data.to_string(),
                            ack_id: p.ack_id,
                        }));
                    }
                    SioKind::Ack => {
                        if let Some(id) = p.ack_id {
                            return Ok(Incoming::Ack {
                                id,
                                data: p.data.to_string(),
                            });
                        }
                    }
                    SioKind::Disconnect => return Ok(Incoming::Closed),
                    _ => {}
                },
                _ => {}
            }
        }
    }

    /// Emits `name` with `args`; with `ack_id`, the server answers with an ack of that id.
    pub async fn emit(&mut self, name: &str, args: &[Value], ack_id: Option<u64>) -> Result<()> {
        self.ws
            .send(Message::text(sio::encode_event(name, args, ack_id)))
            .await?;
        Ok(())
    }

    #[allow(dead_code, reason = "no scenario answers server acks yet")]
    /// Answers a server event that asked for an ack.
    pub async fn ack(&mut self, ack_id: u64, args: &[Value]) -> Result<()> {
        self.ws
            .send(Message::text(sio::encode_ack(ack_id, args)))
            .await?;
        Ok(())
    }

    /// Sends DISCONNECT, closes the WebSocket and waits (bounded) for the server's close.
    pub async fn close(mut self, timeout: Duration) -> Result<()> {
        let closing = async {
            self.ws
                .send(Message::text(sio::encode_disconnect()))
                .await?;
            self.ws.close(None).await?;
            while let Some(msg) = self.ws.next().await {
                if msg.is_err() {
                    break;
                }
            }
            anyhow::Ok(())
        };
        tokio::time::timeout(timeout, closing)
            .await
            .map_err(|_| anyhow!("close timed out after {timeout:?}"))?
    }
}

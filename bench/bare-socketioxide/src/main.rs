//! Baseline for `make bench`: a bare socketioxide server (the same socketioxide version
//! as Switchboard) doing only the primitive work the load generator measures, so the
//! figures show what Switchboard's own work costs on top of the gateway library.
//!
//! Environment: `PORT` (default 0 = any free port), `REDIS_URL` (set: the Socket.IO Redis
//! adapter is used, with `REDIS_PREFIX` as its channel prefix). Prints
//! `listening on http://127.0.0.1:<port>` once it accepts connections.
//!
//! Events (every handler answers through the Socket.IO ack):
//! - `ping {..}` → `{success: true}`
//! - `join {room}` → the socket joins `room`; `{success: true}`
//! - `broadcast {room, content}` → `message:new {message: {room, content}}` to the room,
//!   the sender included; `{success: true}`

use anyhow::{Context, Result};
use serde::Deserialize;
use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{AckSender, Data, SocketRef};
use socketioxide_redis::{RedisAdapter, RedisAdapterConfig, RedisAdapterCtr};
use tokio::net::TcpSocket;

/// Pending connections the kernel queues before `accept` (tokio's default is 1024, capped
/// by `net.core.somaxconn`); connection bursts of the idle scenario need more.
const LISTEN_BACKLOG: u32 = 4096;

#[derive(Debug, Deserialize)]
struct Join {
    room: String,
}

#[derive(Debug, Deserialize)]
struct Broadcast {
    room: String,
    #[serde(default)]
    content: Value,
}

fn ok() -> Value {
    json!({ "success": true })
}

fn on_connect<A: Adapter>(socket: SocketRef<A>) {
    socket.on("ping", async |ack: AckSender<A>| {
        let _ = ack.send(&ok());
    });
    socket.on(
        "join",
        async |socket: SocketRef<A>, Data(join): Data<Join>, ack: AckSender<A>| {
            socket.join(join.room);
            let _ = ack.send(&ok());
        },
    );
    socket.on(
        "broadcast",
        async |socket: SocketRef<A>, Data(b): Data<Broadcast>, ack: AckSender<A>| {
            let message = json!({ "message": { "room": b.room, "content": b.content } });
            let _ = socket.within(b.room).emit("message:new", &message).await;
            let _ = ack.send(&ok());
        },
    );
}

#[tokio::main]
async fn main() -> Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .map(|p| p.parse().context("PORT"))
        .transpose()?
        .unwrap_or(0);
    let builder = SocketIo::builder();
    let router = match std::env::var("REDIS_URL") {
        Ok(url) => {
            // socketioxide-redis' driver takes pub/sub messages as RESP3 pushes.
            let url = if url.contains("protocol=") {
                url
            } else if url.contains('?') {
                format!("{url}&protocol=resp3")
            } else {
                format!("{}/?protocol=resp3", url.trim_end_matches('/'))
            };
            let client = redis::Client::open(url).context("REDIS_URL")?;
            let prefix = std::env::var("REDIS_PREFIX").unwrap_or_else(|_| "bench-bare".into());
            let adapter = RedisAdapterCtr::new_with_redis_config(
                &client,
                RedisAdapterConfig::new().with_prefix(prefix),
            )
            .await
            .context("connecting the Redis adapter")?;
            let (layer, io) = builder
                .with_adapter::<RedisAdapter<_>>(adapter)
                .build_layer();
            io.ns("/", async |s: SocketRef<RedisAdapter<_>>| on_connect(s))
                .await
                .map_err(|e| anyhow::anyhow!("initialising the Redis adapter: {e}"))?;
            axum::Router::new().layer(layer)
        }
        Err(_) => {
            let (layer, io) = builder.build_layer();
            io.ns("/", async |s: SocketRef| on_connect(s));
            axum::Router::new().layer(layer)
        }
    };
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(([127, 0, 0, 1], port).into())?;
    let listener = socket.listen(LISTEN_BACKLOG)?;
    println!("listening on http://{}", listener.local_addr()?);
    // Nagle off, as in Switchboard.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router).await?;
    Ok(())
}

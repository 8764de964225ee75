//! `fanout`: chat message throughput and delivery latency.
//!
//! G conversations of S members each (direct for S = 2, groups otherwise), every member
//! connected with one socket. In each conversation the first `senders` members send
//! `message:send` closed-loop, each keeping `window` sends waiting for their ack. Every
//! member socket (the sender's included) receives `message:new`. The content of each
//! message carries its sender and send time, so a receiver measures end-to-end delivery
//! latency against the generator's own clock without any lookup.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};

use super::dev_auth;
use crate::client::{Incoming, SioClient};
use crate::procfs;
use crate::server::{ServerOptions, ServerProcess, Target};
use crate::stats;

const MESSAGE_NEW: &str = "message:new";
const UNREAD_UPDATED: &str = "unread:updated";
/// Marks the content of a generated message: `lgp:<sender>:<seq>:<sent µs>`.
const PROBE_PREFIX: &str = "lgp:";

#[derive(Debug, Clone, clap::Args)]
pub struct FanoutArgs {
    /// Conversation sizes to measure, one sub-run each (2 = direct conversations).
    #[arg(long, value_delimiter = ',', default_value = "2,50",
          value_parser = clap::value_parser!(u32).range(2..=1000))]
    pub sizes: Vec<u32>,
    /// Conversations per sub-run (every member is a distinct user with one socket).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub conversations: u32,
    /// Sending members per conversation (capped at the size).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub senders: u32,
    /// Sends each sender keeps waiting for their ack (closed loop).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub window: u32,
    /// Length of the measured window, in seconds.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub duration_secs: u64,
    /// Unmeasured sending before the window.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(0..=60))]
    pub warmup_secs: u64,
    /// After sending stops, how long to wait for the last acks and deliveries.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub drain_secs: u64,
    /// Connects / creates in flight during setup.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub setup_concurrency: u32,
    /// Bytes of filler appended to each message's content.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(0..=4000))]
    pub padding: u32,
}

/// The server environment the scenario needs: the per-user message rate limit (10 per
/// 10 s by default) would otherwise cap every sender at one message a second.
pub fn server_env() -> Vec<(String, String)> {
    vec![
        (
            "SWITCHBOARD_RATE_LIMITS__MESSAGE__LIMIT".into(),
            "1000000".into(),
        ),
        (
            "SWITCHBOARD_RATE_LIMITS__MESSAGE__WINDOW_SECS".into(),
            "1".into(),
        ),
    ]
}

/// The figures of one sub-run (one conversation size).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct FanoutResult {
    pub backend: String,
    pub size: u32,
    pub conversations: u32,
    pub senders_total: u32,
    pub in_flight: u32,
    pub setup_secs: f64,
    pub window_secs: f64,
    /// Acks with `success: true` received in the window.
    pub accepted: u64,
    /// `message:new` received in the window by all sockets, the senders' own included.
    pub deliveries: u64,
    /// `unread:updated` received in the window.
    pub unread_updates: u64,
    pub ack_p50_ms: f64,
    pub ack_p99_ms: f64,
    /// Send → `message:new` at the other members.
    pub delivery_p50_ms: f64,
    pub delivery_p99_ms: f64,
    /// Group commits seen in the window (distinct `createdAt` of the acked messages: the
    /// writer stamps a whole batch with one, strictly increasing, time).
    pub batches: u64,
    pub batch_max: u64,
    /// Over the whole run: messages acked and the deliveries that should have followed.
    pub acked_total: u64,
    pub delivered_total: u64,
    pub expected_total: u64,
    pub refused: u64,
    pub unanswered: u64,
    pub unexpected_closes: u64,
    pub first_error: Option<String>,
    pub server_cpu_secs: f64,
    /// CPU of the local `redis-server` over the window (Redis backend only, when found).
    pub redis_cpu_secs: Option<f64>,
    pub server_rss_end_mib: f64,
    pub server_rss_peak_mib: f64,
    pub loadgen_cpu_secs: f64,
}

impl FanoutResult {
    pub fn accepted_per_sec(&self) -> f64 {
        self.accepted as f64 / self.window_secs
    }
    pub fn deliveries_per_sec(&self) -> f64 {
        self.deliveries as f64 / self.window_secs
    }
    pub fn mean_batch(&self) -> f64 {
        if self.batches == 0 {
            0.0
        } else {
            self.accepted as f64 / self.batches as f64
        }
    }
    pub fn server_cpu_percent(&self) -> f64 {
        100.0 * self.server_cpu_secs / self.window_secs
    }
    pub fn loadgen_cpu_percent(&self) -> f64 {
        100.0 * self.loadgen_cpu_secs / self.window_secs
    }
    pub fn errors(&self) -> u64 {
        self.refused + self.unanswered + self.unexpected_closes
    }
}

/// What a generated message's content says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub sender: u32,
    pub seq: u64,
    /// Microseconds since the run's base instant.
    pub sent_us: u64,
}

/// The content of a generated message.
pub fn probe_content(p: Probe, padding: usize) -> String {
    format!(
        "{PROBE_PREFIX}{}:{}:{}:{}",
        p.sender,
        p.seq,
        p.sent_us,
        "x".repeat(padding)
    )
}

/// Finds the probe in a `message:new` payload without parsing the whole JSON.
pub fn parse_probe(data: &str) -> Option<Probe> {
    let start = data.find("\"content\":\"")? + "\"content\":\"".len();
    let rest = data[start..].strip_prefix(PROBE_PREFIX)?;
    let mut parts = rest.splitn(4, ':');
    let sender = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let sent_us = parts.next()?.parse().ok()?;
    Some(Probe {
        sender,
        seq,
        sent_us,
    })
}

/// Phases of a run, shared by every member task.
struct Timeline {
    base: Instant,
    start: Instant,
    measure_from: Instant,
    measure_to: Instant,
    end: Instant,
}

impl Timeline {
    fn measured(&self, t: Instant) -> bool {
        t >= self.measure_from && t < self.measure_to
    }
}

struct Member {
    /// Global member index (the user number).
    index: u32,
    conversation_id: String,
    /// Sends this member keeps outstanding; 0 for a receive-only member.
    window: u32,
    target: Target,
}

#[derive(Debug, Default)]
struct Tally {
    accepted: u64,
    deliveries: u64,
    unread_updates: u64,
    ack_latency: Vec<Duration>,
    delivery_latency: Vec<Duration>,
    created_at: Vec<i64>,
    acked_total: u64,
    delivered_total: u64,
    refused: u64,
    unanswered: u64,
    unexpected_closes: u64,
    first_error: Option<String>,
}

impl Tally {
    fn merge(&mut self, o: Tally) {
        self.accepted += o.accepted;
        self.deliveries += o.deliveries;
        self.unread_updates += o.unread_updates;
        self.ack_latency.extend(o.ack_latency);
        self.delivery_latency.extend(o.delivery_latency);
        self.created_at.extend(o.created_at);
        self.acked_total += o.acked_total;
        self.delivered_total += o.delivered_total;
        self.refused += o.refused;
        self.unanswered += o.unanswered;
        self.unexpected_closes += o.unexpected_closes;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
    }
}

/// Ack payload `[{success, message: {createdAt,..}}]` → `Ok(createdAt)` (`None` from a
/// baseline, whose `broadcast` ack carries no message) or the error text.
fn parse_send_ack(data: &str) -> Result<Option<i64>, String> {
    let value: Value = serde_json::from_str(data).map_err(|e| format!("bad ack: {e}"))?;
    let body = value.get(0).ok_or("empty ack")?;
    if body.get("success").and_then(Value::as_bool) != Some(true) {
        return Err(format!("refused: {body}"));
    }
    Ok(body.pointer("/message/createdAt").and_then(Value::as_i64))
}

/// The send of a target: `message:send` to a conversation on Switchboard, `broadcast` to a
/// room on the baselines (which deliver `message:new` to the room, the sender included).
fn send_request(target: Target, conversation: &str, content: String) -> (&'static str, Value) {
    match target {
        Target::Switchboard => (
            "message:send",
            json!({ "conversationId": conversation, "content": content }),
        ),
        Target::Node | Target::Bare => (
            "broadcast",
            json!({ "room": conversation, "content": content }),
        ),
    }
}

/// One socket's life: send (if a sender) until the window closes, count what arrives,
/// wait for the last acks, then disconnect.
async fn member_loop(
    mut client: SioClient,
    member: Member,
    timeline: Arc<Timeline>,
    padding: usize,
) -> Tally {
    let mut tally = Tally::default();
    let mut outstanding: HashMap<u64, Instant> = HashMap::new();
    let mut seq = 0u64;
    let result: Result<()> = async {
        loop {
            let now = Instant::now();
            if now >= timeline.end {
                break;
            }
            let sending = member.window > 0 && now >= timeline.start && now < timeline.measure_to;
            if sending {
                while outstanding.len() < member.window as usize {
                    seq += 1;
                    let sent = Instant::now();
                    let content = probe_content(
                        Probe {
                            sender: member.index,
                            seq,
                            sent_us: (sent - timeline.base).as_micros() as u64,
                        },
                        padding,
                    );
                    let (name, payload) =
                        send_request(member.target, &member.conversation_id, content);
                    client.emit(name, &[payload], Some(seq)).await?;
                    outstanding.insert(seq, sent);
                }
            }
            // Wake at the next phase boundary even if nothing arrives.
            let wake = if now < timeline.start {
                timeline.start
            } else if now < timeline.measure_to && member.window > 0 {
                timeline.measure_to
            } else {
                timeline.end
            };
            let Ok(incoming) = tokio::time::timeout_at(wake.into(), client.next_event()).await
            else {
                continue;
            };
            let at = Instant::now();
            match incoming? {
                Incoming::Ack { id, data } => {
                    let Some(sent) = outstanding.remove(&id) else {
                        continue;
                    };
                    match parse_send_ack(&data) {
                        Ok(created_at) => {
                            tally.acked_total += 1;
                            if timeline.measured(at) {
                                tally.accepted += 1;
                                tally.ack_latency.push(at - sent);
                                tally.created_at.extend(created_at);
                            }
                        }
                        Err(e) => {
                            tally.refused += 1;
                            tally.first_error.get_or_insert(e);
                        }
                    }
                }
                Incoming::Event(event) => {
                    if event.name == MESSAGE_NEW {
                        tally.delivered_total += 1;
                        if timeline.measured(at) {
                            tally.deliveries += 1;
                            if let Some(p) = parse_probe(&event.data)
                                && p.sender != member.index
                            {
                                let sent = timeline.base + Duration::from_micros(p.sent_us);
                                tally
                                    .delivery_latency
                                    .push(at.saturating_duration_since(sent));
                            }
                        }
                    } else if event.name == UNREAD_UPDATED && timeline.measured(at) {
                        tally.unread_updates += 1;
                    }
                }
                Incoming::Closed => {
                    tally.unexpected_closes += 1;
                    bail!("the server closed the connection");
                }
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        tally.first_error.get_or_insert(format!("{e:#}"));
    } else {
        let _ = client.close(Duration::from_secs(5)).await;
    }
    tally.unanswered = outstanding.len() as u64;
    tally
}

/// Emits `name` with an ack id and waits for that ack, skipping other traffic.
async fn request(client: &mut SioClient, name: &str, payload: Value, id: u64) -> Result<Value> {
    client.emit(name, &[payload], Some(id)).await?;
    let wait = async {
        loop {
            match client.next_event().await? {
                Incoming::Ack { id: got, data } if got == id => {
                    let value: Value = serde_json::from_str(&data)?;
                    return Ok(value.get(0).cloned().unwrap_or(Value::Null));
                }
                Incoming::Closed => bail!("closed while waiting for the {name} ack"),
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(15), wait)
        .await
        .map_err(|_| anyhow!("no {name} ack within 15 s"))?
}

/// Starts a server, runs one conversation size against it and stops it.
pub async fn run(server: &ServerOptions, args: &FanoutArgs, size: u32) -> Result<FanoutResult> {
    let process = ServerProcess::spawn(server).await?;
    eprintln!(
        "loadgen: server pid {} on {} ({}), conversations of {size}",
        process.pid,
        process.addr,
        server.label()
    );
    let redis = server.backend == crate::server::Backend::Redis;
    let result = run_against(&process, server.target, args, size, redis).await;
    process.stop().await;
    let mut result = result?;
    result.backend = server.backend.as_str().to_string();
    Ok(result)
}

async fn run_against(
    server: &ServerProcess,
    target: Target,
    args: &FanoutArgs,
    size: u32,
    redis: bool,
) -> Result<FanoutResult> {
    let setup_started = Instant::now();
    let users = args.conversations * size;
    let setup = args.setup_concurrency as usize;
    let senders = args.senders.min(size);

    // Everyone connects first (the dev handshake creates the users).
    let mut clients: Vec<(u32, SioClient)> = futures::stream::iter(0..users)
        .map(|n| {
            let url = server.url_for(n);
            async move {
                SioClient::connect(&url, &dev_auth(n), Duration::from_secs(15))
                    .await
                    .map(|c| (n, c))
            }
        })
        .buffer_unordered(setup)
        .try_collect()
        .await
        .context("connecting the members")?;
    clients.sort_by_key(|(n, _)| *n);

    // The first member of each conversation creates it; the members' sockets join its room.
    let mut by_conversation: Vec<Vec<(u32, SioClient)>> = Vec::new();
    let mut it = clients.into_iter();
    for _ in 0..args.conversations {
        by_conversation.push(it.by_ref().take(size as usize).collect());
    }
    let created: Vec<(String, Vec<(u32, SioClient)>)> = if target != Target::Switchboard {
        join_rooms(by_conversation, setup).await?
    } else {
        futures::stream::iter(by_conversation)
        .map(|mut members| async move {
            let others: Vec<String> = members[1..]
                .iter()
                .map(|(n, _)| super::user_id(*n))
                .collect();
            let payload = if size == 2 {
                json!({ "type": "direct", "memberIds": others })
            } else {
                json!({ "type": "group", "memberIds": others, "name": format!("lg {}", members[0].0) })
            };
            let ack = request(&mut members[0].1, "conversation:create", payload, 1).await?;
            let id = ack
                .pointer("/conversation/id")
                .and_then(Value::as_str)
                .ok_or_else(|| anyhow!("conversation:create answered {ack}"))?
                .to_string();
            anyhow::Ok((id, members))
        })
        .buffer_unordered(setup)
        .try_collect()
        .await
        .context("creating the conversations")?
    };
    let setup_secs = setup_started.elapsed().as_secs_f64();
    eprintln!(
        "loadgen: {users} members in {} conversations of {size}, set up in {setup_secs:.1} s",
        args.conversations
    );

    let base = Instant::now();
    let start = base + Duration::from_millis(500);
    let measure_from = start + Duration::from_secs(args.warmup_secs);
    let measure_to = measure_from + Duration::from_secs(args.duration_secs);
    let timeline = Arc::new(Timeline {
        base,
        start,
        measure_from,
        measure_to,
        end: measure_to + Duration::from_secs(args.drain_secs),
    });
    let mut tasks = Vec::with_capacity(users as usize);
    for (conversation_id, members) in created {
        for (i, (index, client)) in members.into_iter().enumerate() {
            let member = Member {
                index,
                conversation_id: conversation_id.clone(),
                window: if (i as u32) < senders { args.window } else { 0 },
                target,
            };
            tasks.push(tokio::spawn(member_loop(
                client,
                member,
                timeline.clone(),
                args.padding as usize,
            )));
        }
    }

    let usage = procfs::measure_window(&server.pids, redis, measure_from, measure_to).await?;

    let mut tally = Tally::default();
    for task in tasks {
        match task.await {
            Ok(t) => tally.merge(t),
            Err(e) => {
                tally.first_error.get_or_insert(format!("member task: {e}"));
            }
        }
    }
    let batch_sizes = batch_sizes(&tally.created_at);
    let result = FanoutResult {
        backend: String::new(),
        size,
        conversations: args.conversations,
        senders_total: senders * args.conversations,
        in_flight: senders * args.conversations * args.window,
        setup_secs,
        window_secs: args.duration_secs as f64,
        accepted: tally.accepted,
        deliveries: tally.deliveries,
        unread_updates: tally.unread_updates,
        ack_p50_ms: stats::millis(stats::percentile(&mut tally.ack_latency, 50.0)),
        ack_p99_ms: stats::millis(stats::percentile(&mut tally.ack_latency, 99.0)),
        delivery_p50_ms: stats::millis(stats::percentile(&mut tally.delivery_latency, 50.0)),
        delivery_p99_ms: stats::millis(stats::percentile(&mut tally.delivery_latency, 99.0)),
        batches: batch_sizes.len() as u64,
        batch_max: batch_sizes.values().copied().max().unwrap_or(0),
        acked_total: tally.acked_total,
        delivered_total: tally.delivered_total,
        expected_total: tally.acked_total * u64::from(size),
        refused: tally.refused,
        unanswered: tally.unanswered,
        unexpected_closes: tally.unexpected_closes,
        first_error: tally.first_error,
        server_cpu_secs: usage.server_cpu_secs,
        redis_cpu_secs: usage.redis_cpu_secs,
        server_rss_end_mib: usage.server_memory.rss_kib as f64 / 1024.0,
        server_rss_peak_mib: usage.server_memory.peak_kib as f64 / 1024.0,
        loadgen_cpu_secs: usage.loadgen_cpu_secs,
    };
    if let Some(e) = &result.first_error {
        eprintln!("loadgen: first error: {e}");
    }
    if result.accepted == 0 {
        bail!(
            "no message was accepted in the window{}",
            result
                .first_error
                .as_ref()
                .map(|e| format!(" (first error: {e})"))
                .unwrap_or_default()
        );
    }
    Ok(result)
}

/// The baselines' conversations: room `lg-room-<first member>`, which every member's
/// socket joins.
async fn join_rooms(
    by_conversation: Vec<Vec<(u32, SioClient)>>,
    setup: usize,
) -> Result<Vec<(String, Vec<(u32, SioClient)>)>> {
    futures::stream::iter(by_conversation)
        .map(|mut members| async move {
            let room = format!("lg-room-{}", members[0].0);
            for (_, client) in &mut members {
                let ack = request(client, "join", json!({ "room": room }), 1).await?;
                if ack.get("success").and_then(Value::as_bool) != Some(true) {
                    bail!("join answered {ack}");
                }
            }
            anyhow::Ok((room, members))
        })
        .buffer_unordered(setup)
        .try_collect()
        .await
        .context("joining the rooms")
}

/// Messages per group commit, keyed by the commit's `createdAt`.
fn batch_sizes(created_at: &[i64]) -> HashMap<i64, u64> {
    let mut sizes: HashMap<i64, u64> = HashMap::new();
    for &t in created_at {
        *sizes.entry(t).or_default() += 1;
    }
    sizes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_round_trips_through_a_message_new_payload() {
        let p = Probe {
            sender: 17,
            seq: 42,
            sent_us: 1_234_567,
        };
        let content = probe_content(p, 8);
        assert_eq!(content, "lgp:17:42:1234567:xxxxxxxx");
        let data = json!(["message:new", {"message": {
            "id": "m1", "conversationId": "c1", "senderId": "lg-u17", "senderName": "Load 17",
            "content": content, "createdAt": 1_700_000_000_000_i64, "reactions": []
        }}])
        .to_string();
        assert_eq!(parse_probe(&data), Some(p));
        assert_eq!(
            parse_probe(r#"["message:new",{"message":{"content":"hello"}}]"#),
            None
        );
        assert_eq!(parse_probe(r#"["message:new",{}]"#), None);
    }

    #[test]
    fn send_acks_and_batches() {
        assert_eq!(
            parse_send_ack(r#"[{"success":true,"message":{"id":"m","createdAt":5}}]"#),
            Ok(Some(5))
        );
        assert_eq!(parse_send_ack(r#"[{"success":true}]"#), Ok(None));
        let (name, payload) = send_request(Target::Node, "r1", "hi".into());
        assert_eq!(name, "broadcast");
        assert_eq!(payload, json!({ "room": "r1", "content": "hi" }));
        assert_eq!(
            send_request(Target::Switchboard, "c1", "hi".into()).0,
            "message:send"
        );
        assert!(
            parse_send_ack(r#"[{"success":false,"error":{"code":"RATE_LIMITED"}}]"#)
                .unwrap_err()
                .contains("RATE_LIMITED")
        );
        let sizes = batch_sizes(&[5, 5, 6, 5, 9]);
        assert_eq!(sizes.len(), 3);
        assert_eq!(sizes[&5], 3);
    }
}

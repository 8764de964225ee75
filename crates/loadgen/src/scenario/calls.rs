//! `calls`: direct-call setup (protocol §5) and ending (§6).
//!
//! P pairs of users (a caller and a callee, one socket each). Each pair runs closed-loop:
//! the caller emits `callUser {callId, targetUserId}` with a fresh UUID, the callee answers
//! its `incomingCallNew` at once with `acceptCallNew {callId}`, and the caller receives
//! `callAcceptedNew {callId, roomId, room}`. The caller then ends the direct room with
//! `endCall {roomId}`, and the pair waits until both sides have received `callEnded`
//! (a user still in a room is BUSY) before the next setup.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use super::{dev_auth, user_id};
use crate::client::{Incoming, SioClient};
use crate::procfs;
use crate::server::{ServerOptions, ServerProcess};
use crate::stats;

const CALL_USER: &str = "callUser";
const ACCEPT_CALL: &str = "acceptCallNew";
const END_CALL: &str = "endCall";
const CANCEL_CALL: &str = "cancelCall";
const INCOMING_CALL: &str = "incomingCallNew";
const CALL_ACCEPTED: &str = "callAcceptedNew";
const CALL_ENDED: &str = "callEnded";

#[derive(Debug, Clone, clap::Args)]
pub struct CallsArgs {
    /// Caller / callee pairs (every user is distinct, with one socket), each closed-loop.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=5000))]
    pub pairs: u32,
    /// Length of the measured window, in seconds.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub duration_secs: u64,
    /// Unmeasured calls before the window.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(0..=60))]
    pub warmup_secs: u64,
    /// After the window, how long the calls in progress get to finish (no new setups start).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=60))]
    pub drain_secs: u64,
    /// Connects in flight during setup.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub setup_concurrency: u32,
    /// How long a pair waits for each step (setup, end) before counting it unanswered,
    /// cancelling / ending what it can and starting over.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=120))]
    pub step_timeout_secs: u64,
}

/// The server environment the scenario needs: call attempts are limited to 10 per 60 s
/// per user by default (`rate_limits.call`), which would cap every caller at one setup
/// every 6 s. Room creation (`rate_limits.room_create`, 5 per 60 s) is lifted as well in
/// case accepting a call counts against it.
pub fn server_env() -> Vec<(String, String)> {
    let mut env = Vec::new();
    for limit in ["CALL", "ROOM_CREATE"] {
        env.push((
            format!("SWITCHBOARD_RATE_LIMITS__{limit}__LIMIT"),
            "1000000".into(),
        ));
        env.push((
            format!("SWITCHBOARD_RATE_LIMITS__{limit}__WINDOW_SECS"),
            "1".into(),
        ));
    }
    env
}

/// The figures of one run.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct CallsResult {
    pub backend: String,
    pub pairs: u32,
    pub setup_secs: f64,
    pub window_secs: f64,
    /// `callAcceptedNew` received by callers in the window.
    pub setups: u64,
    /// Calls whose end (both `callEnded` and the `endCall` ack) completed in the window.
    pub ends: u64,
    /// `callUser` emit → `callAcceptedNew` at the caller.
    pub setup_p50_ms: f64,
    pub setup_p99_ms: f64,
    /// `callUser` emit → its ack.
    pub call_ack_p50_ms: f64,
    pub call_ack_p99_ms: f64,
    /// `acceptCallNew` emit → its ack.
    pub accept_ack_p50_ms: f64,
    pub accept_ack_p99_ms: f64,
    /// `endCall` emit → the ack and `callEnded` at both sides, whichever comes last.
    pub end_p50_ms: f64,
    pub end_p99_ms: f64,
    /// Over the whole run: calls set up and ended.
    pub setups_total: u64,
    pub ends_total: u64,
    /// `callUser` acks that said `delivery: 'push'` (the callee was not seen as connected).
    pub push_deliveries: u64,
    /// Refusals over the whole run, by `<event> <CODE>`.
    pub refusals: BTreeMap<String, u64>,
    /// Steps that got no answer within the step timeout (or before the drain ended).
    pub unanswered: u64,
    /// Pairs that stopped because a connection closed (or failed) while they were calling.
    pub unexpected_closes: u64,
    pub first_error: Option<String>,
    pub server_cpu_secs: f64,
    /// CPU of the local `redis-server` over the window (Redis backend only, when found).
    pub redis_cpu_secs: Option<f64>,
    pub server_rss_end_mib: f64,
    pub server_rss_peak_mib: f64,
    pub loadgen_cpu_secs: f64,
}

impl CallsResult {
    pub fn setups_per_sec(&self) -> f64 {
        self.setups as f64 / self.window_secs
    }
    pub fn server_cpu_percent(&self) -> f64 {
        100.0 * self.server_cpu_secs / self.window_secs
    }
    pub fn loadgen_cpu_percent(&self) -> f64 {
        100.0 * self.loadgen_cpu_secs / self.window_secs
    }
    pub fn refused(&self) -> u64 {
        self.refusals.values().sum()
    }
    pub fn errors(&self) -> u64 {
        self.refused() + self.unanswered + self.unexpected_closes
    }
}

/// A fresh random UUID v4 (the caller chooses the `callId`).
pub fn uuid_v4(rng: &mut impl Rng) -> String {
    let mut b: [u8; 16] = rng.random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// A failed ack: `{success: false, error, code, retryAfterMs?}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: String,
    pub error: String,
    pub retry_after_ms: Option<u64>,
}

/// Ack payload `[{success, ...}]` → the body when it succeeded, else the refusal (an
/// unreadable ack is a refusal with code `BAD_ACK`).
pub fn parse_ack(data: &str) -> Result<Value, Refusal> {
    let bad = |error: String| Refusal {
        code: "BAD_ACK".into(),
        error,
        retry_after_ms: None,
    };
    let mut value: Value = serde_json::from_str(data).map_err(|e| bad(format!("{e}")))?;
    let body = value
        .get_mut(0)
        .map(Value::take)
        .ok_or_else(|| bad(format!("empty ack {data}")))?;
    if body.get("success").and_then(Value::as_bool) == Some(true) {
        return Ok(body);
    }
    Err(Refusal {
        code: body
            .get("code")
            .and_then(Value::as_str)
            .unwrap_or("NO_CODE")
            .to_string(),
        error: body.to_string(),
        retry_after_ms: body.get("retryAfterMs").and_then(Value::as_u64),
    })
}

/// A string field of an event's payload: `["name", {key: "..", ..}]` → `..`.
pub fn event_field(data: &str, key: &str) -> Option<String> {
    let value: Value = serde_json::from_str(data).ok()?;
    value.get(1)?.get(key)?.as_str().map(str::to_string)
}

/// `BUSY 3, RATE_LIMITED 1`-style list of refusal counts, or `none`.
pub fn format_refusals(refusals: &BTreeMap<String, u64>) -> String {
    if refusals.is_empty() {
        return "none".into();
    }
    refusals
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Phases of a run, shared by every pair task.
struct Timeline {
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

#[derive(Debug, Default)]
struct Tally {
    setups: u64,
    ends: u64,
    setup_latency: Vec<Duration>,
    call_ack_latency: Vec<Duration>,
    accept_ack_latency: Vec<Duration>,
    end_latency: Vec<Duration>,
    setups_total: u64,
    ends_total: u64,
    push_deliveries: u64,
    refusals: BTreeMap<String, u64>,
    unanswered: u64,
    unexpected_closes: u64,
    first_error: Option<String>,
}

impl Tally {
    fn merge(&mut self, o: Tally) {
        self.setups += o.setups;
        self.ends += o.ends;
        self.setup_latency.extend(o.setup_latency);
        self.call_ack_latency.extend(o.call_ack_latency);
        self.accept_ack_latency.extend(o.accept_ack_latency);
        self.end_latency.extend(o.end_latency);
        self.setups_total += o.setups_total;
        self.ends_total += o.ends_total;
        self.push_deliveries += o.push_deliveries;
        for (k, v) in o.refusals {
            *self.refusals.entry(k).or_default() += v;
        }
        self.unanswered += o.unanswered;
        self.unexpected_closes += o.unexpected_closes;
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
    }

    fn refuse(&mut self, event: &str, r: &Refusal) {
        *self
            .refusals
            .entry(format!("{event} {}", r.code))
            .or_default() += 1;
        self.first_error
            .get_or_insert_with(|| format!("{event} refused: {}", r.error));
    }

    fn no_answer(&mut self, what: &str) {
        self.unanswered += 1;
        self.first_error.get_or_insert_with(|| format!("no {what}"));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Caller,
    Callee,
}

/// How one call cycle went.
enum Outcome {
    /// Set up and ended; the pair is free again.
    Done,
    /// `callUser` was refused; nothing to clean up.
    Refused { retry_after: Duration },
    /// A step was refused or got no answer: the call may still be pending or the room
    /// still open.
    Stuck {
        call_id: String,
        room_id: Option<String>,
    },
}

struct Pair {
    index: u32,
    caller: SioClient,
    callee: SioClient,
    callee_id: String,
    next_ack: u64,
}

impl Pair {
    fn ack_id(&mut self) -> u64 {
        self.next_ack += 1;
        self.next_ack
    }

    /// The next thing either socket received, or `None` at `deadline`.
    async fn next(&mut self, deadline: Instant) -> Result<Option<(Side, Incoming)>> {
        let either = async {
            tokio::select! {
                r = self.caller.next_event() => r.map(|i| (Side::Caller, i)),
                r = self.callee.next_event() => r.map(|i| (Side::Callee, i)),
            }
        };
        match tokio::time::timeout_at(deadline.into(), either).await {
            Ok(r) => r.map(Some),
            Err(_) => Ok(None),
        }
    }

    /// One call: set up, then ended by the caller.
    async fn cycle(
        &mut self,
        call_id: String,
        timeline: &Timeline,
        step_timeout: Duration,
        tally: &mut Tally,
    ) -> Result<Outcome> {
        // Setup: callUser → incomingCallNew → acceptCallNew → callAcceptedNew (+ both acks).
        let started = Instant::now();
        let call_ack = self.ack_id();
        self.caller
            .emit(
                CALL_USER,
                &[json!({ "callId": call_id, "targetUserId": self.callee_id })],
                Some(call_ack),
            )
            .await?;
        let deadline = (started + step_timeout).min(timeline.end);
        let mut call_acked = false;
        let mut accept: Option<(u64, Instant)> = None;
        let mut accept_acked = false;
        let mut accepted = false;
        let mut room_id: Option<String> = None;
        while !(call_acked && accept_acked && accepted) {
            let Some((side, incoming)) = self.next(deadline).await? else {
                tally.no_answer(if !call_acked {
                    "callUser ack"
                } else if accept.is_none() {
                    "incomingCallNew"
                } else if !accept_acked {
                    "acceptCallNew ack"
                } else {
                    "callAcceptedNew"
                });
                return Ok(Outcome::Stuck { call_id, room_id });
            };
            let at = Instant::now();
            match (side, incoming) {
                (_, Incoming::Closed) => bail!("the server closed the {side:?}'s connection"),
                (Side::Caller, Incoming::Ack { id, data }) if id == call_ack => {
                    match parse_ack(&data) {
                        Ok(body) => {
                            call_acked = true;
                            if timeline.measured(at) {
                                tally.call_ack_latency.push(at - started);
                            }
                            if body.get("delivery").and_then(Value::as_str) == Some("push") {
                                tally.push_deliveries += 1;
                            }
                        }
                        Err(r) => {
                            tally.refuse(CALL_USER, &r);
                            let retry_after = Duration::from_millis(
                                r.retry_after_ms.unwrap_or(20).clamp(1, 1000),
                            );
                            return Ok(Outcome::Refused { retry_after });
                        }
                    }
                }
                (Side::Callee, Incoming::Event(e))
                    if e.name == INCOMING_CALL
                        && accept.is_none()
                        && event_field(&e.data, "callId").as_deref() == Some(call_id.as_str()) =>
                {
                    let id = self.ack_id();
                    self.callee
                        .emit(ACCEPT_CALL, &[json!({ "callId": call_id })], Some(id))
                        .await?;
                    accept = Some((id, Instant::now()));
                }
                (Side::Callee, Incoming::Ack { id, data })
                    if accept.is_some_and(|(a, _)| a == id) =>
                {
                    match parse_ack(&data) {
                        Ok(body) => {
                            accept_acked = true;
                            if let Some(room) = body.get("roomId").and_then(Value::as_str) {
                                room_id.get_or_insert_with(|| room.to_string());
                            }
                            if let Some((_, sent)) = accept
                                && timeline.measured(at)
                            {
                                tally.accept_ack_latency.push(at - sent);
                            }
                        }
                        Err(r) => {
                            tally.refuse(ACCEPT_CALL, &r);
                            return Ok(Outcome::Stuck { call_id, room_id });
                        }
                    }
                }
                (Side::Caller, Incoming::Event(e))
                    if e.name == CALL_ACCEPTED
                        && !accepted
                        && event_field(&e.data, "callId").as_deref() == Some(call_id.as_str()) =>
                {
                    accepted = true;
                    if let Some(room) = event_field(&e.data, "roomId") {
                        room_id = Some(room);
                    }
                    tally.setups_total += 1;
                    if timeline.measured(at) {
                        tally.setups += 1;
                        tally.setup_latency.push(at - started);
                    }
                }
                _ => {}
            }
        }
        let Some(room) = room_id else {
            tally.first_error.get_or_insert_with(|| {
                "neither callAcceptedNew nor the acceptCallNew ack named the room".into()
            });
            return Ok(Outcome::Stuck {
                call_id,
                room_id: None,
            });
        };

        // End: endCall → its ack + callEnded at both sides.
        let end_started = Instant::now();
        let end_ack = self.ack_id();
        self.caller
            .emit(END_CALL, &[json!({ "roomId": room })], Some(end_ack))
            .await?;
        let deadline = (end_started + step_timeout).min(timeline.end);
        let (mut end_acked, mut caller_ended, mut callee_ended) = (false, false, false);
        while !(end_acked && caller_ended && callee_ended) {
            let Some((side, incoming)) = self.next(deadline).await? else {
                tally.no_answer(if !end_acked {
                    "endCall ack"
                } else {
                    "callEnded"
                });
                return Ok(Outcome::Stuck {
                    call_id,
                    room_id: Some(room),
                });
            };
            match (side, incoming) {
                (_, Incoming::Closed) => bail!("the server closed the {side:?}'s connection"),
                (Side::Caller, Incoming::Ack { id, data }) if id == end_ack => {
                    if let Err(r) = parse_ack(&data) {
                        tally.refuse(END_CALL, &r);
                        return Ok(Outcome::Stuck {
                            call_id,
                            room_id: Some(room),
                        });
                    }
                    end_acked = true;
                }
                (side, Incoming::Event(e))
                    if e.name == CALL_ENDED
                        && event_field(&e.data, "roomId").as_deref() == Some(room.as_str()) =>
                {
                    match side {
                        Side::Caller => caller_ended = true,
                        Side::Callee => callee_ended = true,
                    }
                }
                _ => {}
            }
        }
        let at = Instant::now();
        tally.ends_total += 1;
        if timeline.measured(at) {
            tally.ends += 1;
            tally.end_latency.push(at - end_started);
        }
        Ok(Outcome::Done)
    }

    /// After a stuck cycle: cancel the call and end the room (best effort, no acks
    /// awaited), then let a moment's traffic drain so the next cycle starts clean.
    async fn recover(&mut self, call_id: &str, room_id: Option<&str>) -> Result<()> {
        self.caller
            .emit(CANCEL_CALL, &[json!({ "callId": call_id })], None)
            .await?;
        if let Some(room) = room_id {
            self.caller
                .emit(END_CALL, &[json!({ "roomId": room })], None)
                .await?;
        }
        let until = Instant::now() + Duration::from_secs(1);
        while let Some((side, incoming)) = self.next(until).await? {
            if let Incoming::Closed = incoming {
                bail!("the server closed the {side:?}'s connection");
            }
        }
        Ok(())
    }
}

/// One pair's life: call closed-loop until the window closes, finish the call in
/// progress, then disconnect both.
async fn pair_loop(mut pair: Pair, timeline: Arc<Timeline>, step_timeout: Duration) -> Tally {
    let mut tally = Tally::default();
    let mut rng = StdRng::from_rng(&mut rand::rng());
    let result: Result<()> = async {
        tokio::time::sleep_until(timeline.start.into()).await;
        while Instant::now() < timeline.measure_to {
            let call_id = uuid_v4(&mut rng);
            match pair
                .cycle(call_id, &timeline, step_timeout, &mut tally)
                .await?
            {
                Outcome::Done => {}
                Outcome::Refused { retry_after } => tokio::time::sleep(retry_after).await,
                Outcome::Stuck { call_id, room_id } => {
                    pair.recover(&call_id, room_id.as_deref()).await?;
                }
            }
        }
        Ok(())
    }
    .await;
    match result {
        // The pair's connection closed or failed under it; it makes no more calls.
        Err(e) => {
            tally.unexpected_closes += 1;
            tally
                .first_error
                .get_or_insert(format!("pair {}: {e:#}", pair.index));
        }
        Ok(()) => {
            let _ = pair.caller.close(Duration::from_secs(5)).await;
            let _ = pair.callee.close(Duration::from_secs(5)).await;
        }
    }
    tally
}

/// Starts a server, runs the scenario against it and stops it.
pub async fn run(server: &ServerOptions, args: &CallsArgs) -> Result<CallsResult> {
    let process = ServerProcess::spawn(server).await?;
    eprintln!(
        "loadgen: server pid {} on {} ({}), {} pairs",
        process.pid,
        process.addr,
        server.label(),
        args.pairs
    );
    let redis = server.backend == crate::server::Backend::Redis;
    let result = run_against(&process, args, redis).await;
    process.stop().await;
    let mut result = result?;
    result.backend = server.backend.as_str().to_string();
    Ok(result)
}

async fn run_against(server: &ServerProcess, args: &CallsArgs, redis: bool) -> Result<CallsResult> {
    let setup_started = Instant::now();
    let users = args.pairs * 2;

    // Everyone connects first (the dev handshake creates the users); user 2i calls 2i + 1.
    let mut clients: Vec<(u32, SioClient)> = futures::stream::iter(0..users)
        .map(|n| {
            // With two instances, callers (even users) and callees (odd) are on different ones.
            let url = server.url_for(n);
            async move {
                SioClient::connect(&url, &dev_auth(n), Duration::from_secs(15))
                    .await
                    .map(|c| (n, c))
            }
        })
        .buffer_unordered(args.setup_concurrency as usize)
        .try_collect()
        .await
        .context("connecting the users")?;
    clients.sort_by_key(|(n, _)| *n);
    let setup_secs = setup_started.elapsed().as_secs_f64();
    eprintln!(
        "loadgen: {users} users in {} pairs connected in {setup_secs:.1} s",
        args.pairs
    );

    let base = Instant::now();
    let start = base + Duration::from_millis(500);
    let measure_from = start + Duration::from_secs(args.warmup_secs);
    let measure_to = measure_from + Duration::from_secs(args.duration_secs);
    let timeline = Arc::new(Timeline {
        start,
        measure_from,
        measure_to,
        end: measure_to + Duration::from_secs(args.drain_secs),
    });
    let step_timeout = Duration::from_secs(args.step_timeout_secs);
    let mut tasks = Vec::with_capacity(args.pairs as usize);
    let mut it = clients.into_iter();
    while let (Some((caller_n, caller)), Some((callee_n, callee))) = (it.next(), it.next()) {
        let pair = Pair {
            index: caller_n / 2,
            caller,
            callee,
            callee_id: user_id(callee_n),
            next_ack: 0,
        };
        tasks.push(tokio::spawn(pair_loop(
            pair,
            timeline.clone(),
            step_timeout,
        )));
    }

    let usage = procfs::measure_window(&server.pids, redis, measure_from, measure_to).await?;

    let mut tally = Tally::default();
    for task in tasks {
        match task.await {
            Ok(t) => tally.merge(t),
            Err(e) => {
                tally.first_error.get_or_insert(format!("pair task: {e}"));
            }
        }
    }
    let result = CallsResult {
        backend: String::new(),
        pairs: args.pairs,
        setup_secs,
        window_secs: args.duration_secs as f64,
        setups: tally.setups,
        ends: tally.ends,
        setup_p50_ms: stats::millis(stats::percentile(&mut tally.setup_latency, 50.0)),
        setup_p99_ms: stats::millis(stats::percentile(&mut tally.setup_latency, 99.0)),
        call_ack_p50_ms: stats::millis(stats::percentile(&mut tally.call_ack_latency, 50.0)),
        call_ack_p99_ms: stats::millis(stats::percentile(&mut tally.call_ack_latency, 99.0)),
        accept_ack_p50_ms: stats::millis(stats::percentile(&mut tally.accept_ack_latency, 50.0)),
        accept_ack_p99_ms: stats::millis(stats::percentile(&mut tally.accept_ack_latency, 99.0)),
        end_p50_ms: stats::millis(stats::percentile(&mut tally.end_latency, 50.0)),
        end_p99_ms: stats::millis(stats::percentile(&mut tally.end_latency, 99.0)),
        setups_total: tally.setups_total,
        ends_total: tally.ends_total,
        push_deliveries: tally.push_deliveries,
        refusals: tally.refusals,
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
    if result.setups == 0 {
        bail!(
            "no call was set up in the window{}",
            result
                .first_error
                .as_ref()
                .map(|e| format!(" (first error: {e})"))
                .unwrap_or_default()
        );
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use futures::SinkExt;
    use tokio::sync::mpsc;
    use tokio_tungstenite::tungstenite::Message;

    use super::*;
    use crate::sio::{self, EioPacket, SioKind};

    type Peers = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<String>>>>;

    /// A minimal Socket.IO server speaking the part of §5 / §6 the scenario uses. Ringing
    /// and `callEnded` go out before the acks they belong to, to exercise the ordering.
    /// Quirks, by caller: `lg-u0`'s first `callUser` is refused `BUSY`; `lg-u2`'s first
    /// one is ignored (no ack, no ringing).
    async fn mock_server() -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let peers: Peers = Arc::default();
        let attempts: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (peers, attempts) = (peers.clone(), attempts.clone());
                tokio::spawn(async move {
                    let ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
                    let (mut sink, mut stream) = ws.split();
                    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
                    tokio::spawn(async move {
                        while let Some(frame) = rx.recv().await {
                            if sink.send(Message::text(frame)).await.is_err() {
                                break;
                            }
                        }
                    });
                    let _ = tx.send(
                        r#"0{"sid":"e","upgrades":[],"pingInterval":25000,"pingTimeout":20000}"#
                            .into(),
                    );
                    let send_to = |user: &str, name: &str, payload: Value| {
                        if let Some(peer) = peers.lock().unwrap().get(user) {
                            let _ = peer.send(sio::encode_event(name, &[payload], None));
                        }
                    };
                    let mut me = String::new();
                    while let Some(Ok(Message::Text(text))) = stream.next().await {
                        let Ok(EioPacket::Message(p)) = sio::parse_frame(text.as_str()) else {
                            continue;
                        };
                        let ack = |body: Value| {
                            if let Some(id) = p.ack_id {
                                let _ = tx.send(sio::encode_ack(id, &[body]));
                            }
                        };
                        match p.kind {
                            SioKind::Connect => {
                                let auth: Value = serde_json::from_str(p.data).unwrap();
                                me = auth["userId"].as_str().unwrap().to_string();
                                peers.lock().unwrap().insert(me.clone(), tx.clone());
                                let _ = tx.send(r#"40{"sid":"s"}"#.into());
                            }
                            SioKind::Event => {
                                let v: Value = serde_json::from_str(p.data).unwrap();
                                let body = &v[1];
                                let call_id = body["callId"].as_str().unwrap_or_default();
                                match v[0].as_str().unwrap() {
                                    CALL_USER => {
                                        let n = {
                                            let mut a = attempts.lock().unwrap();
                                            let n = a.entry(me.clone()).or_default();
                                            *n += 1;
                                            *n
                                        };
                                        match (me.as_str(), n) {
                                            ("lg-u0", 1) => ack(json!({
                                                "success": false, "error": "busy",
                                                "code": "BUSY", "canRetry": true
                                            })),
                                            ("lg-u2", 1) => {}
                                            _ => {
                                                let target = body["targetUserId"].as_str().unwrap();
                                                send_to(
                                                    target,
                                                    INCOMING_CALL,
                                                    json!({
                                                        "callId": call_id, "from": me, "fromName": "x"
                                                    }),
                                                );
                                                ack(
                                                    json!({ "success": true, "delivery": "ringing" }),
                                                );
                                            }
                                        }
                                    }
                                    ACCEPT_CALL => {
                                        // Caller n + 0 rings callee n + 1: the caller is one below.
                                        let n: u32 = me.trim_start_matches("lg-u").parse().unwrap();
                                        let room = format!("room-{call_id}");
                                        ack(
                                            json!({ "success": true, "roomId": room, "room": {"roomId": room} }),
                                        );
                                        send_to(
                                            &user_id(n - 1),
                                            CALL_ACCEPTED,
                                            json!({
                                                "callId": call_id, "roomId": room, "room": {"roomId": room}
                                            }),
                                        );
                                    }
                                    END_CALL => {
                                        let room = body["roomId"].as_str().unwrap();
                                        let n: u32 = me.trim_start_matches("lg-u").parse().unwrap();
                                        for user in [n, n + 1] {
                                            send_to(
                                                &user_id(user),
                                                CALL_ENDED,
                                                json!({
                                                    "roomId": room, "endedBy": me
                                                }),
                                            );
                                        }
                                        ack(json!({ "success": true, "message": "ended" }));
                                    }
                                    _ => {}
                                }
                            }
                            SioKind::Disconnect => break,
                            _ => {}
                        }
                    }
                    // Dropping every sender ends the writer, which closes the connection.
                    peers.lock().unwrap().remove(&me);
                });
            }
        });
        addr
    }

    async fn pair_against(addr: std::net::SocketAddr, caller: u32, measure: Duration) -> Tally {
        let url = crate::client::endpoint(&format!("ws://{addr}"));
        let connect = |n| {
            let url = url.clone();
            async move {
                SioClient::connect(&url, &dev_auth(n), Duration::from_secs(5))
                    .await
                    .unwrap()
            }
        };
        let pair = Pair {
            index: caller / 2,
            caller: connect(caller).await,
            callee: connect(caller + 1).await,
            callee_id: user_id(caller + 1),
            next_ack: 0,
        };
        let now = Instant::now();
        let timeline = Arc::new(Timeline {
            start: now,
            measure_from: now,
            measure_to: now + measure,
            end: now + measure + Duration::from_secs(2),
        });
        pair_loop(pair, timeline, Duration::from_millis(300)).await
    }

    #[tokio::test]
    async fn a_pair_calls_closed_loop_and_retries_a_refusal() {
        let addr = mock_server().await;
        let tally = pair_against(addr, 0, Duration::from_millis(300)).await;
        assert!(tally.setups > 0, "{tally:?}");
        assert_eq!(tally.setups as usize, tally.setup_latency.len());
        assert_eq!(tally.ends as usize, tally.end_latency.len());
        assert_eq!(tally.setups_total, tally.ends_total);
        assert_eq!(tally.call_ack_latency.len(), tally.accept_ack_latency.len());
        assert_eq!(format_refusals(&tally.refusals), "callUser BUSY 1");
        assert_eq!((tally.unanswered, tally.unexpected_closes), (0, 0));
        assert_eq!(tally.push_deliveries, 0);
    }

    #[tokio::test]
    async fn an_unanswered_call_is_counted_and_the_pair_goes_on() {
        let addr = mock_server().await;
        let tally = pair_against(addr, 2, Duration::from_millis(1600)).await;
        assert_eq!(tally.unanswered, 1, "{tally:?}");
        assert_eq!(tally.first_error.as_deref(), Some("no callUser ack"));
        assert!(tally.setups > 0);
        assert!(tally.refusals.is_empty());
        assert_eq!(tally.unexpected_closes, 0);
    }

    #[test]
    fn uuids_are_v4() {
        let mut rng = StdRng::seed_from_u64(7);
        let a = uuid_v4(&mut rng);
        let b = uuid_v4(&mut rng);
        assert_ne!(a, b);
        for id in [a, b] {
            assert_eq!(id.len(), 36);
            let groups: Vec<&str> = id.split('-').collect();
            assert_eq!(
                groups.iter().map(|g| g.len()).collect::<Vec<_>>(),
                [8, 4, 4, 4, 12]
            );
            assert!(id.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
            assert!(!id.chars().any(|c| c.is_ascii_uppercase()));
            assert_eq!(&id[14..15], "4");
            assert!("89ab".contains(&id[19..20]));
        }
    }

    #[test]
    fn acks_and_refusals() {
        let body = parse_ack(r#"[{"success":true,"delivery":"ringing"}]"#).unwrap();
        assert_eq!(body["delivery"], "ringing");
        let body = parse_ack(r#"[{"success":true,"roomId":"r1","room":{"roomId":"r1"}}]"#).unwrap();
        assert_eq!(body["roomId"], "r1");
        let r = parse_ack(
            r#"[{"success":false,"error":"too many","code":"RATE_LIMITED","retryAfterMs":250}]"#,
        )
        .unwrap_err();
        assert_eq!(r.code, "RATE_LIMITED");
        assert_eq!(r.retry_after_ms, Some(250));
        assert!(r.error.contains("too many"));
        let r = parse_ack(r#"[{"success":false,"error":"busy","code":"BUSY","canRetry":true}]"#)
            .unwrap_err();
        assert_eq!((r.code.as_str(), r.retry_after_ms), ("BUSY", None));
        assert_eq!(
            parse_ack(r#"[{"success":false}]"#).unwrap_err().code,
            "NO_CODE"
        );
        assert_eq!(parse_ack("[]").unwrap_err().code, "BAD_ACK");
        assert_eq!(parse_ack("not json").unwrap_err().code, "BAD_ACK");
    }

    #[test]
    fn event_fields() {
        let data =
            json!(["incomingCallNew", {"callId": "c1", "from": "lg-u0", "fromName": "Load 0"}])
                .to_string();
        assert_eq!(event_field(&data, "callId").as_deref(), Some("c1"));
        assert_eq!(event_field(&data, "roomId"), None);
        let data = json!(["callEnded", {"roomId": "r1", "endedBy": "lg-u0"}]).to_string();
        assert_eq!(event_field(&data, "roomId").as_deref(), Some("r1"));
        assert_eq!(event_field(r#"["callEnded"]"#, "roomId"), None);
        assert_eq!(event_field("garbage", "roomId"), None);
    }

    #[test]
    fn refusals_merge_and_format() {
        let mut a = Tally::default();
        let busy = Refusal {
            code: "BUSY".into(),
            error: "{}".into(),
            retry_after_ms: None,
        };
        a.refuse(CALL_USER, &busy);
        let mut b = Tally::default();
        b.refuse(CALL_USER, &busy);
        b.refuse(
            END_CALL,
            &Refusal {
                code: "NOT_FOUND".into(),
                error: "{}".into(),
                retry_after_ms: None,
            },
        );
        a.merge(b);
        assert_eq!(
            format_refusals(&a.refusals),
            "callUser BUSY 2, endCall NOT_FOUND 1"
        );
        assert_eq!(format_refusals(&BTreeMap::new()), "none");
        assert_eq!(a.first_error.as_deref(), Some("callUser refused: {}"));
    }
}

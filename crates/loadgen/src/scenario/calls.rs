//! `calls`: direct-call setup throughput and latency (protocol §5).
//!
//! P caller/callee pairs, each user with one socket. Every pair runs closed-loop call setups:
//! the caller sends `callUser` and waits for its ack, the callee waits for `incomingCallNew`
//! and sends `acceptCallNew`, the caller waits for `callAcceptedNew`, then hangs up with
//! `endCall` (ack) so the next call can ring. One setup is measured from the `callUser` send
//! to `callAcceptedNew` at the caller; the ring (`callUser` → `incomingCallNew`) is measured
//! on its own as well. Only the setup path is timed, not the hang-up.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};

use super::fanout::request;
use super::{dev_auth, user_id};
use crate::client::{Incoming, SioClient, endpoint};
use crate::procfs;
use crate::report::Machine;
use crate::server::{ServerOptions, ServerProcess};
use crate::stats;

#[derive(Debug, Clone, clap::Args)]
pub struct CallsArgs {
    /// Caller/callee pairs calling concurrently.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=2000))]
    pub pairs: u32,
    /// Length of the measured window, in seconds.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub duration_secs: u64,
    /// Unmeasured calls before the window.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(0..=60))]
    pub warmup_secs: u64,
    /// Connects in flight during setup.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub setup_concurrency: u32,
}

/// The call rate limit (10 per 60 s per user by default) would cap every pair at one call
/// every six seconds.
pub fn server_env() -> Vec<(String, String)> {
    vec![
        (
            "SWITCHBOARD_RATE_LIMITS__CALL__LIMIT".into(),
            "1000000".into(),
        ),
        (
            "SWITCHBOARD_RATE_LIMITS__CALL__WINDOW_SECS".into(),
            "1".into(),
        ),
    ]
}

#[derive(Debug, Clone, Default)]
pub struct CallsResult {
    pub backend: String,
    pub pairs: u32,
    pub window_secs: f64,
    /// Setups completed (`callAcceptedNew` received) in the window.
    pub setups: u64,
    pub setup_p50_ms: f64,
    pub setup_p99_ms: f64,
    pub ring_p50_ms: f64,
    pub ring_p99_ms: f64,
    pub failures: u64,
    pub first_error: Option<String>,
    pub server_cpu_secs: f64,
    pub redis_cpu_secs: Option<f64>,
    pub loadgen_cpu_secs: f64,
}

impl CallsResult {
    pub fn setups_per_sec(&self) -> f64 {
        self.setups as f64 / self.window_secs
    }
}

#[derive(Default)]
struct Tally {
    setups: Vec<Duration>,
    rings: Vec<Duration>,
    failures: u64,
    first_error: Option<String>,
}

/// A random UUID v4 (the caller chooses the call id, §5).
fn uuid_v4() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Reads until an event named `name` whose `callId` is `call_id`; returns its payload.
async fn wait_event(client: &mut SioClient, name: &str, call_id: &str) -> Result<Value> {
    let wait = async {
        loop {
            match client.next_event().await? {
                Incoming::Event(e) if e.name == name && e.data.contains(call_id) => {
                    let value: Value = serde_json::from_str(&e.data)?;
                    return Ok(value.get(1).cloned().unwrap_or(Value::Null));
                }
                Incoming::Closed => bail!("closed while waiting for {name}"),
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(15), wait)
        .await
        .map_err(|_| anyhow!("no {name} within 15 s"))?
}

async fn one_call(
    caller: &mut SioClient,
    callee: &mut SioClient,
    callee_id: &str,
    seq: u64,
) -> Result<(Duration, Duration)> {
    let call_id = uuid_v4();
    let started = Instant::now();
    let ack = request(
        caller,
        "callUser",
        json!({ "callId": call_id, "targetUserId": callee_id }),
        seq * 2,
    )
    .await?;
    if ack["success"] != true {
        bail!("callUser answered {ack}");
    }
    wait_event(callee, "incomingCallNew", &call_id).await?;
    let ring = started.elapsed();
    let ack = request(
        callee,
        "acceptCallNew",
        json!({ "callId": call_id }),
        seq * 2,
    )
    .await?;
    if ack["success"] != true {
        bail!("acceptCallNew answered {ack}");
    }
    let accepted = wait_event(caller, "callAcceptedNew", &call_id).await?;
    let setup = started.elapsed();
    let room_id = accepted["roomId"]
        .as_str()
        .ok_or_else(|| anyhow!("callAcceptedNew without roomId: {accepted}"))?
        .to_string();
    let ack = request(caller, "endCall", json!({ "roomId": room_id }), seq * 2 + 1).await?;
    if ack["success"] != true {
        bail!("endCall answered {ack}");
    }
    Ok((ring, setup))
}

async fn pair_loop(
    mut caller: SioClient,
    mut callee: SioClient,
    callee_id: String,
    measure_from: Instant,
    measure_to: Instant,
) -> Tally {
    let mut tally = Tally::default();
    let mut seq = 1;
    while Instant::now() < measure_to {
        let started = Instant::now();
        match one_call(&mut caller, &mut callee, &callee_id, seq).await {
            Ok((ring, setup)) => {
                if started >= measure_from && started + setup < measure_to {
                    tally.rings.push(ring);
                    tally.setups.push(setup);
                }
            }
            Err(e) => {
                tally.failures += 1;
                tally.first_error.get_or_insert(format!("{e:#}"));
                break;
            }
        }
        seq += 1;
    }
    let _ = caller.close(Duration::from_secs(5)).await;
    let _ = callee.close(Duration::from_secs(5)).await;
    tally
}

/// Starts a server, measures call setups against it and stops it.
pub async fn run(server: &ServerOptions, args: &CallsArgs) -> Result<CallsResult> {
    let process = ServerProcess::spawn(server).await?;
    eprintln!(
        "loadgen: server pid {} on {} ({}), {} calling pairs",
        process.pid,
        process.addr,
        server.backend.as_str(),
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
    let url = endpoint(&server.ws_base());
    let users = args.pairs * 2;
    let mut clients: Vec<(u32, SioClient)> = futures::stream::iter(0..users)
        .map(|n| {
            let url = url.clone();
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

    let start = Instant::now() + Duration::from_millis(300);
    let measure_from = start + Duration::from_secs(args.warmup_secs);
    let measure_to = measure_from + Duration::from_secs(args.duration_secs);
    let mut tasks = Vec::new();
    let mut it = clients.into_iter();
    while let (Some((_, caller)), Some((callee_n, callee))) = (it.next(), it.next()) {
        tasks.push(tokio::spawn(pair_loop(
            caller,
            callee,
            user_id(callee_n),
            measure_from,
            measure_to,
        )));
    }
    tokio::time::sleep_until(measure_from.into()).await;
    let redis_pid = if redis {
        procfs::find_by_comm("redis-server")
    } else {
        None
    };
    let redis_before = redis_pid.and_then(|p| procfs::process_cpu_secs(p).ok());
    let server_before = procfs::process_cpu_secs(server.pid)?;
    let self_before = procfs::self_cpu_secs();
    tokio::time::sleep_until(measure_to.into()).await;
    let server_cpu = procfs::process_cpu_secs(server.pid)? - server_before;
    let self_cpu = procfs::self_cpu_secs() - self_before;
    let redis_cpu = redis_pid
        .and_then(|p| procfs::process_cpu_secs(p).ok())
        .zip(redis_before)
        .map(|(after, before)| after - before);

    let mut all = Tally::default();
    for task in tasks {
        match task.await {
            Ok(t) => {
                all.setups.extend(t.setups);
                all.rings.extend(t.rings);
                all.failures += t.failures;
                if all.first_error.is_none() {
                    all.first_error = t.first_error;
                }
            }
            Err(e) => {
                all.failures += 1;
                all.first_error.get_or_insert(format!("pair task: {e}"));
            }
        }
    }
    let ms = |samples: &mut Vec<Duration>, p: f64| {
        if samples.is_empty() {
            0.0
        } else {
            stats::millis(stats::percentile(samples, p))
        }
    };
    Ok(CallsResult {
        backend: String::new(),
        pairs: args.pairs,
        window_secs: args.duration_secs as f64,
        setups: all.setups.len() as u64,
        setup_p50_ms: ms(&mut all.setups, 50.0),
        setup_p99_ms: ms(&mut all.setups, 99.0),
        ring_p50_ms: ms(&mut all.rings, 50.0),
        ring_p99_ms: ms(&mut all.rings, 99.0),
        failures: all.failures,
        first_error: all.first_error,
        server_cpu_secs: server_cpu,
        redis_cpu_secs: redis_cpu,
        loadgen_cpu_secs: self_cpu,
    })
}

/// One row per run.
pub fn table(runs: &[CallsResult]) -> String {
    let mut out = String::from(
        "| backend | pairs | setups/s | setup p50 ms | setup p99 ms | ring p50 ms | ring p99 ms | server CPU % | redis CPU % | loadgen CPU % | failures |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in runs {
        let pct = |secs: f64| 100.0 * secs / r.window_secs;
        out.push_str(&format!(
            "| {} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} | {} | {:.0} | {} |\n",
            r.backend,
            r.pairs,
            r.setups_per_sec(),
            r.setup_p50_ms,
            r.setup_p99_ms,
            r.ring_p50_ms,
            r.ring_p99_ms,
            pct(r.server_cpu_secs),
            r.redis_cpu_secs
                .map_or_else(|| "—".to_string(), |s| format!("{:.0}", pct(s))),
            pct(r.loadgen_cpu_secs),
            r.failures,
        ));
    }
    out
}

/// The markdown section for `docs/benchmarks.md`.
pub fn section(
    backend: &str,
    machine: &Machine,
    bin: &std::path::Path,
    command_line: &str,
    runs: &[CallsResult],
) -> String {
    let mut out = format!(
        "### Call setup ({backend})\n\n\
         `callUser` → `incomingCallNew` → `acceptCallNew` → `callAcceptedNew`, closed loop per \
         caller/callee pair, each call hung up with `endCall` before the next. Setup latency is \
         `callUser` sent → `callAcceptedNew` received at the caller; ring latency is \
         `callUser` sent → `incomingCallNew` at the callee.\n\n\
         Machine: {}. Server binary: `{}`. Command: `{command_line}`.\n\n",
        machine.describe(),
        bin.display(),
    );
    out.push_str(&table(runs));
    for r in runs {
        if let Some(e) = &r.first_error {
            out.push_str(&format!("\nFirst error ({}): {e}\n", r.backend));
        }
    }
    out
}

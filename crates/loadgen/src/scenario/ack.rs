//! `ack`: request/ack round trips on a cheap event.
//!
//! C clients (distinct users, one socket each) send a cheap request with an ack id: on
//! Switchboard `presence:get` of one other user (authorisation, a presence read and the
//! answer), on the baselines `ping`. Two phases on the same connections:
//! 1. closed loop: each client keeps `window` requests waiting for their ack, so the
//!    server runs at saturation; throughput, p50 / p99 and the server's CPU per ack;
//! 2. fixed rate (one phase per `--rates` value): the clients together send that many
//!    requests per second on a schedule, and latency is measured from each request's
//!    scheduled time (a late send counts as latency), so servers compare at equal load.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt};
use serde_json::{Value, json};

use super::{dev_auth, user_id};
use crate::client::{Incoming, SioClient};
use crate::procfs;
use crate::server::{Backend, ServerOptions, ServerProcess, Target};
use crate::stats;

#[derive(Debug, Clone, clap::Args)]
pub struct AckArgs {
    /// Connected clients (distinct users), all sending.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=5000))]
    pub clients: u32,
    /// Requests each client keeps waiting for their ack in the closed-loop phase.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub window: u32,
    /// Length of each measured window, in seconds.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub duration_secs: u64,
    /// Unmeasured load before each window.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=60))]
    pub warmup_secs: u64,
    /// Fixed-rate phases after the closed loop: requests per second, all clients together,
    /// one phase per rate (none by default).
    #[arg(long, value_delimiter = ',', value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rates: Vec<u32>,
    /// Connects in flight during setup.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub setup_concurrency: u32,
}

/// The figures of one phase.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct AckPhase {
    /// Requests per second asked for (fixed rate), or 0 for the closed loop.
    pub offered_rate: f64,
    pub window_secs: f64,
    /// Successful acks received in the window.
    pub acks: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub server_cpu_secs: f64,
    pub redis_cpu_secs: Option<f64>,
    pub loadgen_cpu_secs: f64,
    pub server_rss_mib: f64,
    /// Refused or unreadable acks, and requests still unanswered at the end.
    pub errors: u64,
}

impl AckPhase {
    pub fn acks_per_sec(&self) -> f64 {
        self.acks as f64 / self.window_secs.max(f64::EPSILON)
    }

    /// Server CPU time per ack, in microseconds.
    pub fn cpu_us_per_ack(&self) -> f64 {
        if self.acks == 0 {
            0.0
        } else {
            self.server_cpu_secs * 1e6 / self.acks as f64
        }
    }
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct AckResult {
    pub clients: u32,
    pub window: u32,
    /// The request each target answers: `presence:get` or `ping`.
    pub event: String,
    pub closed: AckPhase,
    /// One per `--rates`, in order.
    pub fixed: Vec<AckPhase>,
}

/// The cheap request a target answers with an ack, for client `n` of `clients`.
pub fn request_for(target: Target, n: u32, clients: u32) -> (&'static str, Value) {
    match target {
        Target::Switchboard => (
            "presence:get",
            json!({ "userIds": [user_id((n + 1) % clients.max(1))] }),
        ),
        Target::Node | Target::Bare => ("ping", json!({ "n": n })),
    }
}

/// `[{"success":true,...}]` without a full parse (the hot path of the generator).
pub fn ack_succeeded(data: &str) -> bool {
    let head = data
        .trim_start()
        .strip_prefix('[')
        .unwrap_or("")
        .trim_start();
    head.starts_with('{') && head[..head.len().min(64)].contains("\"success\":true")
}

enum Mode {
    Closed { window: u32 },
    Fixed { interval: Duration },
}

struct Phase {
    start: Instant,
    measure_from: Instant,
    measure_to: Instant,
    /// When waiting for the last acks stops.
    end: Instant,
}

#[derive(Default)]
struct Tally {
    acks: u64,
    latency: Vec<Duration>,
    errors: u64,
}

async fn client_phase(
    mut client: SioClient,
    request: (&'static str, Value),
    mode: Mode,
    phase: Arc<Phase>,
) -> (Option<SioClient>, Tally) {
    let mut tally = Tally::default();
    let mut outstanding: HashMap<u64, Instant> = HashMap::new();
    let mut next_id = 0u64;
    let (name, payload) = request;
    let payload = [payload];
    let result: Result<()> = async {
        tokio::time::sleep_until(phase.start.into()).await;
        let mut ticker = match mode {
            Mode::Fixed { interval } => {
                let mut t = tokio::time::interval_at(phase.start.into(), interval);
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                Some(t)
            }
            Mode::Closed { .. } => None,
        };
        loop {
            let now = Instant::now();
            let sending = now < phase.measure_to;
            if !sending && outstanding.is_empty() || now >= phase.end {
                break;
            }
            if let (Mode::Closed { window }, true) = (&mode, sending) {
                while outstanding.len() < *window as usize {
                    next_id += 1;
                    client.emit(name, &payload, Some(next_id)).await?;
                    outstanding.insert(next_id, Instant::now());
                }
            }
            let deadline = if sending { phase.measure_to } else { phase.end };
            let incoming = tokio::select! {
                biased;
                tick = async { ticker.as_mut().expect("fixed mode").tick().await }, if ticker.is_some() && sending => {
                    let scheduled: Instant = tick.into();
                    next_id += 1;
                    client.emit(name, &payload, Some(next_id)).await?;
                    outstanding.insert(next_id, scheduled);
                    continue;
                }
                incoming = client.next_event() => incoming?,
                _ = tokio::time::sleep_until(deadline.into()) => continue,
            };
            let at = Instant::now();
            match incoming {
                Incoming::Ack { id, data } => {
                    let Some(sent) = outstanding.remove(&id) else {
                        continue;
                    };
                    if !ack_succeeded(&data) {
                        tally.errors += 1;
                    } else if at >= phase.measure_from && at < phase.measure_to {
                        tally.acks += 1;
                        tally.latency.push(at.saturating_duration_since(sent));
                    }
                }
                Incoming::Event(_) => {}
                Incoming::Closed => bail!("the server closed the connection"),
            }
        }
        Ok(())
    }
    .await;
    tally.errors += outstanding.len() as u64;
    match result {
        Ok(()) => (Some(client), tally),
        Err(_) => {
            tally.errors += 1;
            (None, tally)
        }
    }
}

async fn run_phase(
    server: &ServerProcess,
    clients: Vec<(u32, SioClient)>,
    target: Target,
    args: &AckArgs,
    rate: Option<u32>,
    redis: bool,
) -> Result<(Vec<(u32, SioClient)>, AckPhase)> {
    let start = Instant::now() + Duration::from_millis(200);
    let measure_from = start + Duration::from_secs(args.warmup_secs);
    let measure_to = measure_from + Duration::from_secs(args.duration_secs);
    let phase = Arc::new(Phase {
        start,
        measure_from,
        measure_to,
        end: measure_to + Duration::from_secs(3),
    });
    let mut tasks = Vec::with_capacity(clients.len());
    for (i, (n, client)) in clients.into_iter().enumerate() {
        let mode = match rate {
            None => Mode::Closed {
                window: args.window,
            },
            Some(rate) => Mode::Fixed {
                interval: Duration::from_secs_f64(f64::from(args.clients) / f64::from(rate)),
            },
        };
        // Spread the fixed-rate clients' schedules over one interval: client i starts
        // i / rate seconds late.
        let phase = match rate {
            Some(rate) => Arc::new(Phase {
                start: phase.start + Duration::from_secs_f64(i as f64 / f64::from(rate)),
                measure_from: phase.measure_from,
                measure_to: phase.measure_to,
                end: phase.end,
            }),
            None => phase.clone(),
        };
        let request = request_for(target, n, args.clients);
        tasks.push(tokio::spawn(async move {
            let (client, tally) = client_phase(client, request, mode, phase).await;
            (n, client, tally)
        }));
    }
    let usage = procfs::measure_window(&server.pids, redis, measure_from, measure_to).await?;
    let mut kept = Vec::new();
    let mut latency = Vec::new();
    let mut acks = 0;
    let mut errors = 0;
    for task in tasks {
        let (n, client, tally) = task.await.context("client task")?;
        acks += tally.acks;
        errors += tally.errors;
        latency.extend(tally.latency);
        if let Some(c) = client {
            kept.push((n, c));
        }
    }
    let result = AckPhase {
        offered_rate: rate.map_or(0.0, f64::from),
        window_secs: args.duration_secs as f64,
        acks,
        p50_ms: stats::millis(stats::percentile(&mut latency, 50.0)),
        p99_ms: stats::millis(stats::percentile(&mut latency, 99.0)),
        server_cpu_secs: usage.server_cpu_secs,
        redis_cpu_secs: usage.redis_cpu_secs,
        loadgen_cpu_secs: usage.loadgen_cpu_secs,
        server_rss_mib: usage.server_memory.rss_kib as f64 / 1024.0,
        errors,
    };
    Ok((kept, result))
}

/// Starts the server, runs both phases and stops it.
pub async fn run(server: &ServerOptions, args: &AckArgs) -> Result<AckResult> {
    let process = ServerProcess::spawn(server).await?;
    eprintln!(
        "loadgen: ack against {} (pid {} on {})",
        server.label(),
        process.pid,
        process.addr
    );
    let result = run_against(&process, server.target, args, server.backend).await;
    process.stop().await;
    result
}

async fn run_against(
    server: &ServerProcess,
    target: Target,
    args: &AckArgs,
    backend: Backend,
) -> Result<AckResult> {
    let clients: Vec<(u32, SioClient)> = futures::stream::iter(0..args.clients)
        .map(|n| {
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
        .context("connecting the clients")?;
    let redis = backend == Backend::Redis;
    let (clients, closed) = run_phase(server, clients, target, args, None, redis).await?;
    if closed.acks == 0 {
        bail!("no request was acked in the closed-loop window");
    }
    let mut fixed = Vec::new();
    let mut clients = clients;
    for &rate in &args.rates {
        let (kept, phase) = run_phase(server, clients, target, args, Some(rate), redis).await?;
        clients = kept;
        fixed.push(phase);
    }
    Ok(AckResult {
        clients: args.clients,
        window: args.window,
        event: request_for(target, 0, 1).0.to_string(),
        closed,
        fixed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_success_is_read_from_the_first_argument() {
        assert!(ack_succeeded(r#"[{"success":true}]"#));
        assert!(ack_succeeded(
            r#"[{"success":true,"presence":{"lg-u1":{"status":"online"}}}]"#
        ));
        assert!(!ack_succeeded(
            r#"[{"success":false,"code":"RATE_LIMITED"}]"#
        ));
        assert!(!ack_succeeded("[]"));
        assert!(!ack_succeeded("garbage"));
    }

    #[test]
    fn each_target_gets_its_cheap_request() {
        let (name, payload) = request_for(Target::Switchboard, 4, 5);
        assert_eq!(name, "presence:get");
        assert_eq!(payload, json!({ "userIds": ["lg-u0"] }));
        assert_eq!(request_for(Target::Node, 1, 5).0, "ping");
        assert_eq!(request_for(Target::Bare, 1, 5).0, "ping");
    }

    #[test]
    fn cpu_per_ack() {
        let phase = AckPhase {
            window_secs: 10.0,
            acks: 200_000,
            server_cpu_secs: 4.0,
            ..AckPhase::default()
        };
        assert_eq!(phase.acks_per_sec(), 20_000.0);
        assert_eq!(phase.cpu_us_per_ack(), 20.0);
        assert_eq!(AckPhase::default().cpu_us_per_ack(), 0.0);
    }
}

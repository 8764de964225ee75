//! `idle`: memory per connected user and connect rate.
//!
//! Users connect in steps up to each of `levels` (cumulative), `concurrency` connects in
//! flight; they then stay connected and idle (answering the server's heartbeats). After
//! each step settles, the server's RSS is read. On Switchboard every user has a device
//! session and presence (friends mode), so the figure includes Switchboard's own state;
//! the baselines only hold the socket. Memory per user is the slope of a least-squares
//! line through (connections, RSS), the zero point included, so the fixed start-up memory
//! drops out.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;

use super::{EventCounters, LiveClient, dev_auth};
use crate::client::SioClient;
use crate::procfs;
use crate::server::{ServerOptions, ServerProcess};
use crate::stats;

#[derive(Debug, Clone, clap::Args)]
pub struct IdleArgs {
    /// Connected users after each step (cumulative, increasing). The generator holds one
    /// socket per user, so the top level stays below its open-file limit.
    #[arg(long, value_delimiter = ',', default_value = "1000,2000,4000",
          value_parser = clap::value_parser!(u32).range(1..=19_000))]
    pub levels: Vec<u32>,
    /// Connects in flight.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub concurrency: u32,
    /// Wait after each step before reading the server's memory.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=60))]
    pub settle_secs: u64,
}

/// One step: the server's memory with `connections` users connected.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct IdlePoint {
    pub connections: u32,
    pub rss_kib: u64,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct IdleResult {
    /// The zero point first, then one per level.
    pub points: Vec<IdlePoint>,
    /// Connects per second over all steps (dial → Socket.IO CONNECT ack).
    pub connects_per_sec: f64,
    pub connect_p50_ms: f64,
    pub connect_p99_ms: f64,
    /// Server CPU over the connect phases, per connect.
    pub server_cpu_us_per_connect: f64,
    pub loadgen_cpu_secs: f64,
    /// Failed connects plus connections the server closed while idle.
    pub errors: u64,
}

impl IdleResult {
    /// Server memory per connected user (KiB), from the least-squares slope.
    pub fn kib_per_user(&self) -> f64 {
        slope(&self.points)
    }
}

/// Least-squares slope of RSS (KiB) over connections; 0 with fewer than two points.
pub fn slope(points: &[IdlePoint]) -> f64 {
    if points.len() < 2 {
        return 0.0;
    }
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| f64::from(p.connections)).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.rss_kib as f64).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for p in points {
        let dx = f64::from(p.connections) - mean_x;
        num += dx * (p.rss_kib as f64 - mean_y);
        den += dx * dx;
    }
    if den == 0.0 { 0.0 } else { num / den }
}

pub async fn run(server: &ServerOptions, args: &IdleArgs) -> Result<IdleResult> {
    let mut levels = args.levels.clone();
    levels.sort_unstable();
    levels.dedup();
    let process = ServerProcess::spawn(server).await?;
    eprintln!(
        "loadgen: idle against {} (pid {} on {}), up to {} users",
        server.label(),
        process.pid,
        process.addr,
        levels.last().copied().unwrap_or(0)
    );
    let counters = Arc::new(EventCounters::new(&[]));
    let mut clients: Vec<LiveClient> = Vec::new();
    let result = run_against(&process, args, &levels, &counters, &mut clients).await;
    // Stop the server first: the clients then see their connection close and end at once.
    process.stop().await;
    drop(clients);
    result
}

async fn run_against(
    server: &ServerProcess,
    args: &IdleArgs,
    levels: &[u32],
    counters: &Arc<EventCounters>,
    clients: &mut Vec<LiveClient>,
) -> Result<IdleResult> {
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pids = &server.pids;
    let rss = || -> Result<u64> {
        pids.iter()
            .map(|&p| procfs::process_memory(p).map(|m| m.rss_kib))
            .sum()
    };
    let mut points = vec![IdlePoint {
        connections: 0,
        rss_kib: rss()?,
    }];
    let mut latency = Vec::new();
    let mut connect_secs = 0.0;
    let mut server_cpu = 0.0;
    let mut errors = 0u64;
    let loadgen_before = procfs::self_cpu_secs();
    let mut connected = 0u32;
    for &level in levels {
        let cpu_before: f64 = pids
            .iter()
            .map(|&p| procfs::process_cpu_secs(p))
            .sum::<Result<f64>>()?;
        let started = Instant::now();
        let mut results = futures::stream::iter(connected..level)
            .map(|n| {
                let url = server.url_for(n);
                async move { SioClient::connect(&url, &dev_auth(n), Duration::from_secs(30)).await }
            })
            .buffer_unordered(args.concurrency as usize);
        while let Some(r) = results.next().await {
            match r {
                Ok(client) => {
                    latency.push(client.connect_latency);
                    clients.push(LiveClient::spawn(
                        client,
                        counters.clone(),
                        Duration::from_secs(1),
                    ));
                }
                Err(_) => errors += 1,
            }
        }
        connect_secs += started.elapsed().as_secs_f64();
        server_cpu += pids
            .iter()
            .map(|&p| procfs::process_cpu_secs(p))
            .sum::<Result<f64>>()?
            - cpu_before;
        connected = level;
        tokio::time::sleep(Duration::from_secs(args.settle_secs)).await;
        points.push(IdlePoint {
            connections: clients.len() as u32,
            rss_kib: rss().context("reading the server's memory")?,
        });
        eprintln!(
            "loadgen: {} users connected, server RSS {} MiB",
            clients.len(),
            points.last().map_or(0, |p| p.rss_kib / 1024)
        );
    }
    errors += counters
        .unexpected_closes
        .load(std::sync::atomic::Ordering::Relaxed);
    if clients.is_empty() {
        bail!("no user could connect");
    }
    let connects = latency.len() as f64;
    Ok(IdleResult {
        points,
        connects_per_sec: connects / connect_secs.max(f64::EPSILON),
        connect_p50_ms: stats::millis(stats::percentile(&mut latency, 50.0)),
        connect_p99_ms: stats::millis(stats::percentile(&mut latency, 99.0)),
        server_cpu_us_per_connect: server_cpu * 1e6 / connects,
        loadgen_cpu_secs: procfs::self_cpu_secs() - loadgen_before,
        errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slope_is_the_memory_per_connection() {
        let points: Vec<IdlePoint> = [(0, 10_000), (1000, 30_000), (2000, 50_000)]
            .iter()
            .map(|&(connections, rss_kib)| IdlePoint {
                connections,
                rss_kib,
            })
            .collect();
        assert_eq!(slope(&points), 20.0);
        assert_eq!(slope(&points[..1]), 0.0);
        let flat = [IdlePoint::default(), IdlePoint::default()];
        assert_eq!(slope(&flat), 0.0);
    }
}

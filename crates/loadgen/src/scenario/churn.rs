//! `churn`: presence churn in friends mode.
//!
//! N users get F friends each (a deterministic random graph), a base share of them connects,
//! then for a fixed window workers repeatedly disconnect a random connected user and connect
//! a random disconnected one. Every connect and disconnect makes the server tell the user's
//! online friends (`friend_online` / `friend_offline`), which the simulated clients count.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::{StreamExt, TryStreamExt};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::{EventCounters, LiveClient, dev_auth, user_id};
use crate::client::{SioClient, endpoint};
use crate::procfs;
use crate::server::{ServerOptions, ServerProcess};
use crate::{graph, http, stats};

const FRIEND_ONLINE: &str = "friend_online";
const FRIEND_OFFLINE: &str = "friend_offline";
const ONLINE_LIST: &str = "onlineUsersUpdated";

#[derive(Debug, Clone, clap::Args)]
pub struct ChurnArgs {
    /// Simulated users.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u32).range(2..=50_000))]
    pub users: u32,
    /// Friends per user (mutual; a random, nearly regular graph).
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(0..=500))]
    pub friends: u32,
    /// Share of users kept connected (the base population), in percent.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=99))]
    pub online_percent: u32,
    /// Length of the measured churn window, in seconds.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub duration_secs: u64,
    /// Unmeasured churn before the window (warms the server's friend caches).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(0..=60))]
    pub warmup_secs: u64,
    /// Churn workers, i.e. disconnect+connect pairs in flight at once.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: u32,
    /// Requests / connects in flight during setup.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub setup_concurrency: u32,
    /// Seed of the friend graph and of the churn choices.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

/// The figures of one run.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ChurnResult {
    pub backend: String,
    pub users: u32,
    pub friends: u32,
    /// Average friends per user in the generated graph.
    pub avg_friends: f64,
    pub online_base: usize,
    pub concurrency: u32,
    pub setup_secs: f64,
    pub window_secs: f64,
    pub connects: u64,
    pub disconnects: u64,
    pub connect_errors: u64,
    pub disconnect_errors: u64,
    pub unexpected_closes: u64,
    pub connect_p50_ms: f64,
    pub connect_p99_ms: f64,
    pub disconnect_p50_ms: f64,
    pub disconnect_p99_ms: f64,
    pub friend_online: u64,
    pub friend_offline: u64,
    pub online_list_updates: u64,
    pub server_cpu_secs: f64,
    pub server_rss_end_mib: f64,
    pub server_rss_peak_mib: f64,
    pub loadgen_cpu_secs: f64,
}

impl ChurnResult {
    pub fn connects_per_sec(&self) -> f64 {
        self.connects as f64 / self.window_secs
    }
    pub fn disconnects_per_sec(&self) -> f64 {
        self.disconnects as f64 / self.window_secs
    }
    pub fn friend_events_per_sec(&self) -> f64 {
        (self.friend_online + self.friend_offline) as f64 / self.window_secs
    }
    pub fn server_cpu_percent(&self) -> f64 {
        100.0 * self.server_cpu_secs / self.window_secs
    }
    pub fn loadgen_cpu_percent(&self) -> f64 {
        100.0 * self.loadgen_cpu_secs / self.window_secs
    }
}

/// Who is connected. Workers take users out while they work on them, so no user is
/// touched by two workers at once.
struct Population {
    connected: Vec<(u32, LiveClient)>,
    offline: Vec<u32>,
}

struct Shared {
    population: Mutex<Population>,
    counters: Arc<EventCounters>,
    url: String,
    connect_timeout: Duration,
    close_timeout: Duration,
}

impl Shared {
    fn take_connected(&self, rng: &mut StdRng) -> Option<(u32, LiveClient)> {
        let mut p = self.population.lock().expect("population lock");
        if p.connected.is_empty() {
            return None;
        }
        let i = rng.random_range(0..p.connected.len());
        Some(p.connected.swap_remove(i))
    }

    fn take_offline(&self, rng: &mut StdRng) -> Option<u32> {
        let mut p = self.population.lock().expect("population lock");
        if p.offline.is_empty() {
            return None;
        }
        let i = rng.random_range(0..p.offline.len());
        Some(p.offline.swap_remove(i))
    }

    fn put_connected(&self, user: u32, client: LiveClient) {
        let mut p = self.population.lock().expect("population lock");
        p.connected.push((user, client));
    }

    fn put_offline(&self, user: u32) {
        let mut p = self.population.lock().expect("population lock");
        p.offline.push(user);
    }

    async fn connect(&self, user: u32) -> Result<(LiveClient, Duration)> {
        let client = SioClient::connect(&self.url, &dev_auth(user), self.connect_timeout).await?;
        let latency = client.connect_latency;
        Ok((
            LiveClient::spawn(client, self.counters.clone(), self.close_timeout),
            latency,
        ))
    }
}

#[derive(Debug, Default)]
struct ChurnTally {
    connects: u64,
    disconnects: u64,
    connect_errors: u64,
    disconnect_errors: u64,
    connect_latency: Vec<Duration>,
    disconnect_latency: Vec<Duration>,
    first_error: Option<String>,
}

impl ChurnTally {
    fn merge(&mut self, other: ChurnTally) {
        self.connects += other.connects;
        self.disconnects += other.disconnects;
        self.connect_errors += other.connect_errors;
        self.disconnect_errors += other.disconnect_errors;
        self.connect_latency.extend(other.connect_latency);
        self.disconnect_latency.extend(other.disconnect_latency);
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// Runs `workers` churn loops until `deadline`; each iteration disconnects one random
/// connected user and connects one random offline user.
async fn churn(shared: Arc<Shared>, workers: u32, seed: u64, deadline: Instant) -> ChurnTally {
    let tasks: Vec<_> = (0..workers)
        .map(|w| {
            let shared = shared.clone();
            tokio::spawn(async move {
                let mut rng = StdRng::seed_from_u64(seed ^ (u64::from(w) << 32 | 0x9e37));
                let mut tally = ChurnTally::default();
                while Instant::now() < deadline {
                    if let Some((user, client)) = shared.take_connected(&mut rng) {
                        let started = Instant::now();
                        match client.disconnect().await {
                            Ok(()) => {
                                tally.disconnects += 1;
                                tally.disconnect_latency.push(started.elapsed());
                            }
                            Err(e) => {
                                tally.disconnect_errors += 1;
                                tally
                                    .first_error
                                    .get_or_insert(format!("disconnect: {e:#}"));
                            }
                        }
                        shared.put_offline(user);
                    }
                    if let Some(user) = shared.take_offline(&mut rng) {
                        match shared.connect(user).await {
                            Ok((client, latency)) => {
                                tally.connects += 1;
                                tally.connect_latency.push(latency);
                                shared.put_connected(user, client);
                            }
                            Err(e) => {
                                tally.connect_errors += 1;
                                tally.first_error.get_or_insert(format!("connect: {e:#}"));
                                shared.put_offline(user);
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        }
                    }
                }
                tally
            })
        })
        .collect();
    let mut total = ChurnTally::default();
    for task in tasks {
        if let Ok(tally) = task.await {
            total.merge(tally);
        }
    }
    total
}

/// Starts a server, runs the scenario against it and stops it.
pub async fn run(server: &ServerOptions, args: &ChurnArgs) -> Result<ChurnResult> {
    let process = ServerProcess::spawn(server).await?;
    eprintln!(
        "loadgen: server pid {} on {} ({})",
        process.pid,
        process.addr,
        server.backend.as_str()
    );
    let result = run_against(&process, args).await;
    process.stop().await;
    let mut result = result?;
    result.backend = server.backend.as_str().to_string();
    Ok(result)
}

async fn run_against(server: &ServerProcess, args: &ChurnArgs) -> Result<ChurnResult> {
    let setup_started = Instant::now();
    let users = args.users as usize;
    let graph = graph::regular_ish(users, args.friends as usize, args.seed);
    let avg_friends = graph.iter().map(Vec::len).sum::<usize>() as f64 / users as f64;

    // Friendships, over the dev HTTP API. Each PUT replaces a user's whole (mutual) list,
    // so sending every user's full list leaves exactly the generated graph.
    let addr = server.addr;
    let setup = args.setup_concurrency as usize;
    futures::stream::iter(graph.iter().enumerate())
        .map(|(u, friends)| async move {
            let body =
                json!({ "friendIds": friends.iter().map(|&f| user_id(f)).collect::<Vec<_>>() });
            http::send_json(
                addr,
                "PUT",
                &format!("/api/users/{}/friends", user_id(u as u32)),
                &body,
            )
            .await
            .map(drop)
        })
        .buffer_unordered(setup)
        .try_collect::<()>()
        .await
        .context("setting up friendships")?;
    eprintln!(
        "loadgen: {users} users, {avg_friends:.1} friends each on average, set up in {:.1} s",
        setup_started.elapsed().as_secs_f64()
    );

    let counters = Arc::new(EventCounters::new(&[
        FRIEND_ONLINE,
        FRIEND_OFFLINE,
        ONLINE_LIST,
    ]));
    let mut rng = StdRng::seed_from_u64(args.seed.wrapping_add(1));
    let mut order: Vec<u32> = (0..args.users).collect();
    order.shuffle(&mut rng);
    let online_base = (users * args.online_percent as usize / 100).max(1);
    let offline = order.split_off(online_base);
    let shared = Arc::new(Shared {
        population: Mutex::new(Population {
            connected: Vec::with_capacity(online_base),
            offline,
        }),
        counters: counters.clone(),
        url: endpoint(&server.ws_base()),
        connect_timeout: Duration::from_secs(15),
        close_timeout: Duration::from_secs(10),
    });

    // The base population.
    let base_started = Instant::now();
    let connected: Vec<(u32, LiveClient)> = futures::stream::iter(order)
        .map(|user| {
            let shared = shared.clone();
            async move { shared.connect(user).await.map(|(c, _)| (user, c)) }
        })
        .buffer_unordered(setup)
        .try_collect()
        .await
        .context("connecting the base population")?;
    shared.population.lock().expect("population lock").connected = connected;
    eprintln!(
        "loadgen: {online_base} base users connected in {:.1} s",
        base_started.elapsed().as_secs_f64()
    );

    if args.warmup_secs > 0 {
        let deadline = Instant::now() + Duration::from_secs(args.warmup_secs);
        let warm = churn(
            shared.clone(),
            args.concurrency,
            args.seed ^ 0xa5a5,
            deadline,
        )
        .await;
        eprintln!(
            "loadgen: warm-up {} connects, {} disconnects",
            warm.connects, warm.disconnects
        );
    }
    // Let the coalesced online lists of the warm-up flush before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let setup_secs = setup_started.elapsed().as_secs_f64();

    // The measured window.
    let before_events = (
        counters.get(FRIEND_ONLINE),
        counters.get(FRIEND_OFFLINE),
        counters.get(ONLINE_LIST),
    );
    let before_closes = counters
        .unexpected_closes
        .load(std::sync::atomic::Ordering::Relaxed);
    let server_cpu_before = procfs::process_cpu_secs(server.pid)?;
    let self_cpu_before = procfs::self_cpu_secs();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.duration_secs);
    let mut tally = churn(shared.clone(), args.concurrency, args.seed, deadline).await;
    let window = started.elapsed();
    let server_cpu = procfs::process_cpu_secs(server.pid)? - server_cpu_before;
    let self_cpu = procfs::self_cpu_secs() - self_cpu_before;
    let memory = procfs::process_memory(server.pid)?;
    let result = ChurnResult {
        backend: String::new(),
        users: args.users,
        friends: args.friends,
        avg_friends,
        online_base,
        concurrency: args.concurrency,
        setup_secs,
        window_secs: window.as_secs_f64(),
        connects: tally.connects,
        disconnects: tally.disconnects,
        connect_errors: tally.connect_errors,
        disconnect_errors: tally.disconnect_errors,
        unexpected_closes: counters
            .unexpected_closes
            .load(std::sync::atomic::Ordering::Relaxed)
            - before_closes,
        connect_p50_ms: stats::millis(stats::percentile(&mut tally.connect_latency, 50.0)),
        connect_p99_ms: stats::millis(stats::percentile(&mut tally.connect_latency, 99.0)),
        disconnect_p50_ms: stats::millis(stats::percentile(&mut tally.disconnect_latency, 50.0)),
        disconnect_p99_ms: stats::millis(stats::percentile(&mut tally.disconnect_latency, 99.0)),
        friend_online: counters.get(FRIEND_ONLINE) - before_events.0,
        friend_offline: counters.get(FRIEND_OFFLINE) - before_events.1,
        online_list_updates: counters.get(ONLINE_LIST) - before_events.2,
        server_cpu_secs: server_cpu,
        server_rss_end_mib: memory.rss_kib as f64 / 1024.0,
        server_rss_peak_mib: memory.peak_kib as f64 / 1024.0,
        loadgen_cpu_secs: self_cpu,
    };
    if let Some(e) = &tally.first_error {
        eprintln!(
            "loadgen: {} connect / {} disconnect errors; first: {e}",
            tally.connect_errors, tally.disconnect_errors
        );
    }

    // Leave: everyone disconnects before the server is stopped.
    let remaining =
        std::mem::take(&mut shared.population.lock().expect("population lock").connected);
    futures::stream::iter(remaining)
        .for_each_concurrent(setup, |(_, client)| async move {
            let _ = client.disconnect().await;
        })
        .await;
    if result.connects == 0 {
        bail!("no connect completed in the window");
    }
    Ok(result)
}

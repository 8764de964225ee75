//! `loadgen suite`: the side-by-side benchmark behind `make bench`.
//!
//! Runs `ack`, `fanout`, `idle` and `calls` against Switchboard and the two baselines
//! (Node.js socket.io and bare socketioxide), on the memory and the Redis backends,
//! repetition by repetition with the targets alternating inside each repetition (so slow
//! drift of the shared machine hits every target alike and ratios are taken per
//! repetition); then `calls` and `fanout` against two Switchboard instances sharing Redis.
//! The server runs pinned to one CPU, the generator (and Redis) to the other. Every
//! measurement goes to a JSON file; the report and the charts are made from it.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::report::Machine;
use crate::scenario::ack::{self, AckArgs, AckResult};
use crate::scenario::calls::{self, CallsArgs, CallsResult};
use crate::scenario::fanout::{self, FanoutArgs, FanoutResult};
use crate::scenario::idle::{self, IdleArgs, IdleResult};
use crate::server::{Backend, ServerOptions, Target};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    /// A few minutes of load on small populations (the default of `make bench`).
    Quick,
    /// Longer windows, more repetitions, up to 18,000 idle connections.
    Full,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScenarioName {
    Ack,
    Fanout,
    Idle,
    Calls,
    /// `calls` and `fanout` against two Switchboard instances sharing Redis.
    Multi,
}

#[derive(Debug, clap::Args)]
pub struct SuiteArgs {
    #[arg(long, value_enum, default_value_t = Profile::Quick, env = "BENCH_PROFILE")]
    pub profile: Profile,
    /// Repetitions (default: 3 quick, 5 full).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=20))]
    pub reps: Option<u32>,
    /// Scenarios to run (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub scenarios: Vec<ScenarioName>,
    /// Servers to compare (default: all three).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub targets: Vec<Target>,
    /// Backends (default: memory and Redis).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub backends: Vec<Backend>,
    #[arg(long, default_value = "target/release/switchboard")]
    pub switchboard_bin: PathBuf,
    #[arg(long, default_value = "target/release/bare-socketioxide")]
    pub bare_bin: PathBuf,
    #[arg(long, default_value = "bench/node/server.js")]
    pub node_script: PathBuf,
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    pub postgres_url: String,
    /// CPU for the servers; the generator and Redis get the other one. `none` pins nothing.
    #[arg(long, default_value = "0")]
    pub server_cpu: String,
    /// Where every measurement is written (and read back by `loadgen report`).
    #[arg(long, default_value = "target/bench/results.json")]
    pub json: PathBuf,
    /// The markdown file whose suite section is rewritten.
    #[arg(long, default_value = "docs/benchmarks.md")]
    pub docs: PathBuf,
    /// Where the PNG charts go (linked from the docs).
    #[arg(long, default_value = "docs/bench")]
    pub charts: PathBuf,
}

/// One measurement: a scenario against one server setup in one repetition.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measurement {
    /// `ack`, `fanout:2`, `fanout:50`, `idle`, `calls`.
    pub scenario: String,
    pub target: Target,
    pub backend: Backend,
    pub instances: u32,
    pub rep: u32,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ack(AckResult),
    Fanout(FanoutResult),
    Idle(IdleResult),
    Calls(CallsResult),
    Failed(String),
}

/// The parameters a profile runs with, recorded next to the results.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    pub profile: Profile,
    pub reps: u32,
    pub ack_clients: u32,
    pub ack_window: u32,
    pub ack_rates: Vec<u32>,
    pub ack_secs: u64,
    pub fanout_sizes: Vec<u32>,
    pub fanout_conversations: u32,
    pub fanout_secs: u64,
    pub idle_levels: Vec<u32>,
    pub calls_pairs: u32,
    pub calls_secs: u64,
    pub pinned: bool,
}

impl Settings {
    pub fn of(profile: Profile) -> Self {
        match profile {
            Profile::Quick => Self {
                profile,
                reps: 3,
                ack_clients: 50,
                ack_window: 4,
                ack_rates: vec![1000, 4000],
                ack_secs: 3,
                fanout_sizes: vec![2, 50],
                fanout_conversations: 8,
                fanout_secs: 4,
                idle_levels: vec![500, 1000, 2000],
                calls_pairs: 32,
                calls_secs: 4,
                pinned: true,
            },
            Profile::Full => Self {
                profile,
                reps: 5,
                ack_clients: 100,
                ack_window: 4,
                ack_rates: vec![2000, 5000, 10_000, 15_000],
                ack_secs: 10,
                fanout_sizes: vec![2, 50],
                fanout_conversations: 16,
                fanout_secs: 15,
                idle_levels: vec![2000, 5000, 10_000, 18_000],
                calls_pairs: 64,
                calls_secs: 15,
                pinned: true,
            },
        }
    }

    fn ack_args(&self) -> AckArgs {
        AckArgs {
            clients: self.ack_clients,
            window: self.ack_window,
            duration_secs: self.ack_secs,
            warmup_secs: 1,
            rates: self.ack_rates.clone(),
            setup_concurrency: 32,
        }
    }

    fn fanout_args(&self) -> FanoutArgs {
        FanoutArgs {
            sizes: self.fanout_sizes.clone(),
            conversations: self.fanout_conversations,
            senders: 2,
            window: 2,
            duration_secs: self.fanout_secs,
            warmup_secs: 1,
            drain_secs: 3,
            setup_concurrency: 32,
            padding: 64,
        }
    }

    fn idle_args(&self) -> IdleArgs {
        IdleArgs {
            levels: self.idle_levels.clone(),
            concurrency: 64,
            settle_secs: 2,
        }
    }

    fn calls_args(&self) -> CallsArgs {
        CallsArgs {
            pairs: self.calls_pairs,
            duration_secs: self.calls_secs,
            warmup_secs: 1,
            drain_secs: 3,
            setup_concurrency: 32,
            step_timeout_secs: 10,
        }
    }
}

/// Everything one suite run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SuiteResults {
    pub machine: String,
    pub cpu_model: String,
    pub cpus: usize,
    pub commit: String,
    pub started: String,
    pub finished: String,
    pub settings: Settings,
    /// Other processes' CPU share while the suite ran (load average / CPUs at the end).
    pub load_average: String,
    pub measurements: Vec<Measurement>,
}

impl SuiteResults {
    pub fn load(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("writing {}", path.display()))
    }
}

/// Pins this process (and the threads it starts afterwards) to `cpu`.
pub fn pin_self(cpu: usize) -> Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_ZERO/CPU_SET only write into it, and
    // sched_setaffinity reads it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            anyhow::bail!(
                "sched_setaffinity to CPU {cpu}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(())
}

/// Moves the local `redis-server` (all threads) to `cpus` with `taskset`; returns its
/// previous affinity list to restore.
fn pin_redis(cpus: &str) -> Option<(u32, String)> {
    let pid = crate::procfs::find_by_comm("redis-server")?;
    let out = std::process::Command::new("taskset")
        .args(["-c", "-p", &pid.to_string()])
        .output()
        .ok()?;
    let before = String::from_utf8_lossy(&out.stdout)
        .rsplit(':')
        .next()?
        .trim()
        .to_string();
    let status = std::process::Command::new("taskset")
        .args(["-a", "-c", "-p", cpus, &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .ok()?;
    status.success().then_some((pid, before))
}

fn restore_redis(pinned: Option<(u32, String)>) {
    if let Some((pid, cpus)) = pinned {
        let _ = std::process::Command::new("taskset")
            .args(["-a", "-c", "-p", &cpus, &pid.to_string()])
            .stdout(std::process::Stdio::null())
            .status();
    }
}

fn now_utc() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

struct Runner<'a> {
    args: &'a SuiteArgs,
    settings: Settings,
    server_cpu: Option<usize>,
    results: SuiteResults,
}

impl Runner<'_> {
    fn options(&self, target: Target, backend: Backend, instances: u32) -> ServerOptions {
        let bin = match target {
            Target::Switchboard => self.args.switchboard_bin.clone(),
            Target::Node => self.args.node_script.clone(),
            Target::Bare => self.args.bare_bin.clone(),
        };
        let mut options = ServerOptions::switchboard(bin, backend);
        options.target = target;
        options.redis_url = self.args.redis_url.clone();
        options.postgres_url = self.args.postgres_url.clone();
        options.instances = instances;
        options.pin_cpu = self.server_cpu;
        options
    }

    fn record(&mut self, scenario: String, options: &ServerOptions, rep: u32, outcome: Outcome) {
        if let Outcome::Failed(e) = &outcome {
            eprintln!(
                "loadgen suite: {scenario} against {} failed: {e}",
                options.label()
            );
        }
        self.results.measurements.push(Measurement {
            scenario,
            target: options.target,
            backend: options.backend,
            instances: options.instances,
            rep,
            outcome,
        });
        // Keep what was measured so far, should a later run crash the suite.
        let _ = self.results.save(&self.args.json);
    }

    async fn ack(&mut self, options: &ServerOptions, rep: u32) {
        let outcome = match ack::run(options, &self.settings.ack_args()).await {
            Ok(r) => Outcome::Ack(r),
            Err(e) => Outcome::Failed(format!("{e:#}")),
        };
        self.record("ack".into(), options, rep, outcome);
    }

    async fn fanout(&mut self, options: &ServerOptions, rep: u32) {
        let mut options = options.clone();
        if options.target == Target::Switchboard {
            options.env.extend(fanout::server_env());
        }
        let args = self.settings.fanout_args();
        for &size in &self.settings.fanout_sizes.clone() {
            let outcome = match fanout::run(&options, &args, size).await {
                Ok(r) => Outcome::Fanout(r),
                Err(e) => Outcome::Failed(format!("{e:#}")),
            };
            self.record(format!("fanout:{size}"), &options, rep, outcome);
        }
    }

    async fn idle(&mut self, options: &ServerOptions, rep: u32) {
        let outcome = match idle::run(options, &self.settings.idle_args()).await {
            Ok(r) => Outcome::Idle(r),
            Err(e) => Outcome::Failed(format!("{e:#}")),
        };
        self.record("idle".into(), options, rep, outcome);
    }

    async fn calls(&mut self, options: &ServerOptions, rep: u32) {
        let mut options = options.clone();
        if options.target == Target::Switchboard {
            options.env.extend(calls::server_env());
        }
        let outcome = match calls::run(&options, &self.settings.calls_args()).await {
            Ok(r) => Outcome::Calls(r),
            Err(e) => Outcome::Failed(format!("{e:#}")),
        };
        self.record("calls".into(), &options, rep, outcome);
    }
}

fn or_all<T: Copy>(chosen: &[T], all: &[T]) -> Vec<T> {
    if chosen.is_empty() {
        all.to_vec()
    } else {
        chosen.to_vec()
    }
}

pub async fn run(args: SuiteArgs) -> Result<()> {
    let mut settings = Settings::of(args.profile);
    if let Some(reps) = args.reps {
        settings.reps = reps;
    }
    let server_cpu = match args.server_cpu.as_str() {
        "none" => None,
        cpu => Some(cpu.parse::<usize>().context("--server-cpu")?),
    };
    settings.pinned = server_cpu.is_some();
    let scenarios = or_all(
        &args.scenarios,
        &[
            ScenarioName::Ack,
            ScenarioName::Fanout,
            ScenarioName::Idle,
            ScenarioName::Calls,
            ScenarioName::Multi,
        ],
    );
    let targets = or_all(
        &args.targets,
        &[Target::Switchboard, Target::Node, Target::Bare],
    );
    let backends = or_all(&args.backends, &[Backend::Memory, Backend::Redis]);
    let machine = Machine::detect();
    let redis_pin = server_cpu.and_then(|cpu| {
        let other = if cpu == 0 { 1 } else { 0 };
        pin_redis(&other.to_string())
    });
    let mut runner = Runner {
        args: &args,
        settings: settings.clone(),
        server_cpu,
        results: SuiteResults {
            machine: machine.describe(),
            cpu_model: machine.cpu_model.clone(),
            cpus: machine.cpus,
            commit: machine.commit.clone(),
            started: now_utc(),
            finished: String::new(),
            settings,
            load_average: String::new(),
            measurements: Vec::new(),
        },
    };
    let reps = runner.settings.reps;
    for scenario in scenarios {
        for &backend in &backends {
            if scenario == ScenarioName::Multi && backend != Backend::Redis {
                continue;
            }
            for rep in 1..=reps {
                eprintln!("loadgen suite: {scenario:?} on {backend:?}, repetition {rep}/{reps}");
                // Alternate the order too, so no target always runs first.
                let mut order = targets.clone();
                let shift = (rep as usize - 1) % order.len().max(1);
                order.rotate_left(shift);
                match scenario {
                    ScenarioName::Multi => {
                        // Compared with the single-instance `calls` and `fanout` runs.
                        if targets.contains(&Target::Switchboard) {
                            let double = runner.options(Target::Switchboard, backend, 2);
                            runner.calls(&double, rep).await;
                            runner.fanout(&double, rep).await;
                        }
                    }
                    _ => {
                        for &target in &order {
                            let options = runner.options(target, backend, 1);
                            match scenario {
                                ScenarioName::Ack => runner.ack(&options, rep).await,
                                ScenarioName::Fanout => runner.fanout(&options, rep).await,
                                ScenarioName::Idle => runner.idle(&options, rep).await,
                                // The bare baseline has no call flow.
                                ScenarioName::Calls if target != Target::Bare => {
                                    runner.calls(&options, rep).await;
                                }
                                _ => {}
                            }
                        }
                    }
                }
            }
        }
    }
    restore_redis(redis_pin);
    runner.results.finished = now_utc();
    runner.results.load_average = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    runner.results.save(&args.json)?;
    eprintln!("loadgen suite: results in {}", args.json.display());
    crate::suite_report::write(&runner.results, &args.docs, &args.charts)
}

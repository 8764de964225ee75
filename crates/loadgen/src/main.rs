//! `loadgen`: load generator for the Switchboard server.
//!
//! It starts the server itself, drives it with simulated Socket.IO clients over loopback,
//! and reports throughput, latency, the server's CPU and memory, and its own CPU (so a
//! saturated generator is visible). Every scenario is bounded in size and time.

mod chart;
mod client;
mod graph;
mod http;
mod procfs;
mod report;
mod scenario;
mod server;
mod sio;
mod stats;
mod suite;
mod suite_report;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use scenario::ack::{self, AckArgs};
use scenario::calls::{self, CallsArgs};
use scenario::churn::{self, ChurnArgs};
use scenario::fanout::{self, FanoutArgs};
use scenario::idle::{self, IdleArgs};
use server::{Backend, ServerOptions, Target};

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    version,
    about = "Load generator for the Switchboard server"
)]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// Presence churn in friends mode: connects + disconnects per second with friend fan-out.
    Churn {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        churn: ChurnArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Chat fan-out: message throughput and delivery latency for conversations of given sizes.
    Fanout {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        fanout: FanoutArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Direct calls: call setups per second (callUser → callAcceptedNew) and call ends.
    Calls {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        calls: CallsArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Request/ack round trips on a cheap event: closed loop, then fixed rates (JSON out).
    Ack {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        ack: AckArgs,
    },
    /// Connected idle users: server memory per user and connect rate (JSON out).
    Idle {
        #[command(flatten)]
        server: ServerArgs,
        #[command(flatten)]
        idle: IdleArgs,
    },
    /// The side-by-side suite of `make bench`: Switchboard, Node.js socket.io and bare
    /// socketioxide, alternating; writes the results, docs/benchmarks.md and the charts.
    Suite {
        #[command(flatten)]
        suite: suite::SuiteArgs,
    },
    /// Rewrites the suite section of the docs and the charts from a saved results file.
    Report {
        #[arg(long, default_value = "target/bench/results.json")]
        json: PathBuf,
        #[arg(long, default_value = "docs/benchmarks.md")]
        docs: PathBuf,
        #[arg(long, default_value = "docs/bench")]
        charts: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct ServerArgs {
    /// Which server to start: Switchboard or one of the baselines under `bench/`.
    #[arg(long, value_enum, default_value_t = Target::Switchboard)]
    target: Target,
    /// The server binary (the Node baseline: its script); default per target, e.g.
    /// `target/release/switchboard` (`cargo build --release -p switchboard-server`).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Server instances sharing Redis (and, for Switchboard, a fresh PostgreSQL database).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=8))]
    instances: u32,
    /// PostgreSQL server for several Switchboard instances.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    postgres_url: String,
    /// Pin the server to this CPU (`taskset -c`).
    #[arg(long)]
    pin_cpu: Option<usize>,
    /// State store of the server.
    #[arg(long, value_enum, default_value_t = Backend::Memory)]
    backend: Backend,
    /// Redis for `--backend redis`; keys go under a fresh prefix that is deleted afterwards.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// The server's log level (`info` logs every connect, which then gets measured too).
    #[arg(long, default_value = "warn")]
    server_log: String,
    /// Extra server environment, `KEY=VALUE` (repeatable).
    #[arg(long = "server-env", value_parser = parse_key_value)]
    server_env: Vec<(String, String)>,
}

#[derive(Debug, clap::Args)]
struct OutputArgs {
    /// Repeat the scenario this many times (fresh server each time); the table adds a median row.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10))]
    runs: u32,
    /// Replace (or append) this scenario's section in a markdown file, e.g. docs/benchmarks.md.
    #[arg(long)]
    docs: Option<PathBuf>,
    /// Worker threads of the generator's runtime.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=64))]
    threads: u32,
}

impl ServerArgs {
    /// The server options, with `scenario_env` first so `--server-env` can override it.
    fn options(self, scenario_env: Vec<(String, String)>) -> ServerOptions {
        let mut env = if self.target == Target::Switchboard {
            scenario_env
        } else {
            Vec::new()
        };
        env.extend(self.server_env);
        ServerOptions {
            bin: self
                .server_bin
                .unwrap_or_else(|| self.target.default_program().into()),
            target: self.target,
            backend: self.backend,
            redis_url: self.redis_url,
            friends_mode: true,
            log_level: self.server_log,
            env,
            instances: self.instances,
            postgres_url: self.postgres_url,
            pin_cpu: self.pin_cpu,
        }
    }
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected KEY=VALUE, got {s:?}"))
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let command_line = std::iter::once("loadgen".to_string())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    let plain_runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    };
    let runtime = |output: &OutputArgs| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(output.threads as usize)
            .enable_all()
            .build()
    };
    match cli.scenario {
        Scenario::Churn {
            server,
            churn,
            output,
        } => runtime(&output)?.block_on(run_churn(server, churn, output, &command_line)),
        Scenario::Fanout {
            server,
            fanout,
            output,
        } => runtime(&output)?.block_on(run_fanout(server, fanout, output, &command_line)),
        Scenario::Calls {
            server,
            calls,
            output,
        } => runtime(&output)?.block_on(run_calls(server, calls, output, &command_line)),
        Scenario::Ack { server, ack } => plain_runtime()?.block_on(async {
            let result = ack::run(&server.options(Vec::new()), &ack).await?;
            println!("{}", serde_json::to_string_pretty(&result)?);
            Ok(())
        }),
        Scenario::Idle { server, idle } => plain_runtime()?.block_on(async {
            let result = idle::run(&server.options(Vec::new()), &idle).await?;
            println!("{}", serde_json::to_string_pretty(&result)?);
            eprintln!("loadgen: {:.1} KiB per user", result.kib_per_user());
            Ok(())
        }),
        Scenario::Suite { suite } => {
            // The generator (and everything it starts but the servers) runs on the CPU the
            // servers do not: pinned before the runtime's threads exist, so they inherit it.
            if let Ok(cpu) = suite.server_cpu.parse::<usize>() {
                suite::pin_self(if cpu == 0 { 1 } else { 0 })?;
            }
            plain_runtime()?.block_on(suite::run(suite))
        }
        Scenario::Report { json, docs, charts } => {
            let results = suite::SuiteResults::load(&json)?;
            suite_report::write(&results, &docs, &charts)
        }
    }
}

async fn run_fanout(
    server: ServerArgs,
    args: FanoutArgs,
    output: OutputArgs,
    command_line: &str,
) -> Result<()> {
    let options = server.options(fanout::server_env());
    let mut results = Vec::new();
    for run in 1..=output.runs {
        for &size in &args.sizes {
            eprintln!(
                "loadgen: fanout run {run}/{}, conversations of {size}",
                output.runs
            );
            let result = fanout::run(&options, &args, size).await?;
            println!("{}", report::fanout_table(std::slice::from_ref(&result)));
            results.push(result);
        }
    }
    let machine = report::Machine::detect();
    let section = report::fanout_section(
        options.backend.as_str(),
        &machine,
        &options.bin,
        command_line,
        &results,
    );
    println!("{section}");
    if let Some(path) = &output.docs {
        report::update_docs(
            path,
            &format!("fanout:{}", options.backend.as_str()),
            &section,
        )?;
        eprintln!("loadgen: updated {}", path.display());
    }
    Ok(())
}

async fn run_calls(
    server: ServerArgs,
    args: CallsArgs,
    output: OutputArgs,
    command_line: &str,
) -> Result<()> {
    let options = server.options(calls::server_env());
    let mut results = Vec::new();
    for run in 1..=output.runs {
        eprintln!(
            "loadgen: calls run {run}/{}, {} pairs",
            output.runs, args.pairs
        );
        let result = calls::run(&options, &args).await?;
        println!("{}", report::calls_table(std::slice::from_ref(&result)));
        results.push(result);
    }
    let machine = report::Machine::detect();
    let section = report::calls_section(
        options.backend.as_str(),
        &machine,
        &options.bin,
        command_line,
        &results,
    );
    println!("{section}");
    if let Some(path) = &output.docs {
        report::update_docs(
            path,
            &format!("calls:{}", options.backend.as_str()),
            &section,
        )?;
        eprintln!("loadgen: updated {}", path.display());
    }
    Ok(())
}

async fn run_churn(
    server: ServerArgs,
    args: ChurnArgs,
    output: OutputArgs,
    command_line: &str,
) -> Result<()> {
    let options = server.options(Vec::new());
    let mut results = Vec::new();
    for run in 1..=output.runs {
        eprintln!("loadgen: churn run {run}/{}", output.runs);
        let result = churn::run(&options, &args).await?;
        println!("{}", report::churn_table(std::slice::from_ref(&result)));
        results.push(result);
    }
    let machine = report::Machine::detect();
    let section = report::churn_section(
        options.backend.as_str(),
        &machine,
        &options.bin,
        command_line,
        &results,
    );
    println!("{section}");
    if let Some(path) = &output.docs {
        report::update_docs(
            path,
            &format!("churn:{}", options.backend.as_str()),
            &section,
        )?;
        eprintln!("loadgen: updated {}", path.display());
    }
    Ok(())
}

//! `loadgen`: load generator for the Switchboard server.
//!
//! It starts the server itself, drives it with simulated Socket.IO clients over loopback,
//! and reports throughput, latency, the server's CPU and memory, and its own CPU (so a
//! saturated generator is visible). Every scenario is bounded in size and time.

mod client;
mod graph;
mod http;
mod procfs;
mod report;
mod scenario;
mod server;
mod sio;
mod stats;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

use scenario::calls::{self, CallsArgs};
use scenario::churn::{self, ChurnArgs};
use scenario::fanout::{self, FanoutArgs};
use server::{Backend, ServerOptions};

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
}

#[derive(Debug, clap::Args)]
struct ServerArgs {
    /// The server binary to start (`cargo build --release -p switchboard-server`).
    #[arg(long, default_value = "target/release/switchboard")]
    server_bin: PathBuf,
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
    }
}

async fn run_fanout(
    server: ServerArgs,
    args: FanoutArgs,
    output: OutputArgs,
    command_line: &str,
) -> Result<()> {
    // The scenario's rate-limit settings first, so `--server-env` can override them.
    let mut env = fanout::server_env();
    env.extend(server.server_env);
    let options = ServerOptions {
        bin: server.server_bin,
        backend: server.backend,
        redis_url: server.redis_url,
        friends_mode: true,
        log_level: server.server_log,
        env,
    };
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
    // The scenario's rate-limit settings first, so `--server-env` can override them.
    let mut env = calls::server_env();
    env.extend(server.server_env);
    let options = ServerOptions {
        bin: server.server_bin,
        backend: server.backend,
        redis_url: server.redis_url,
        friends_mode: true,
        log_level: server.server_log,
        env,
    };
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
    let options = ServerOptions {
        bin: server.server_bin,
        backend: server.backend,
        redis_url: server.redis_url,
        friends_mode: true,
        log_level: server.server_log,
        env: server.server_env,
    };
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

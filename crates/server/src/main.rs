//! `switchboard`: serve, mint a token, or apply migrations.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use switchboard_server::auth::{Authenticator, Claims};
use switchboard_server::config::{Overrides, Settings};
use switchboard_server::startup::Application;
use switchboard_server::telemetry;

#[derive(Debug, Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Self-hostable real-time communications server: presence, chat, calls, SFU"
)]
struct Cli {
    /// A TOML configuration file.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the server.
    Serve {
        /// Address to listen on (default 127.0.0.1:3000; port 0 picks a free port).
        #[arg(long)]
        bind: Option<SocketAddr>,
        /// Development mode: the `{userId, name}` handshake and an open admin API.
        #[arg(long)]
        dev: bool,
        /// Keep state in Redis, shared by every instance using the same URL and prefix.
        #[arg(long, value_name = "URL")]
        redis_url: Option<String>,
        /// `sqlite://…` or `postgres://…` (default: SQLite in the data directory).
        #[arg(long, value_name = "URL")]
        database_url: Option<String>,
    },
    /// Prints a signed client token, as an app backend would mint it.
    Token {
        #[arg(long)]
        user: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        device: Option<String>,
        /// A guest limited to the calls of one conversation (needs --conversation).
        #[arg(long, requires = "conversation")]
        guest: bool,
        #[arg(long)]
        conversation: Option<String>,
        /// Lifetime, e.g. `1h`, `15m`, `30s`.
        #[arg(long, value_parser = humantime::parse_duration)]
        ttl: Option<Duration>,
    },
    /// Applies database migrations and exits.
    Migrate {
        #[arg(long, value_name = "URL")]
        database_url: Option<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            bind,
            dev,
            redis_url,
            database_url,
        } => {
            let settings = Settings::load(
                cli.config.as_deref(),
                &Overrides {
                    bind,
                    dev,
                    redis_url,
                    database_url,
                },
            )?;
            telemetry::init(&settings.log);
            tracing::debug!(?settings, "configuration");
            let application = Application::build(settings).await?;
            // Scripts and tests wait for this line to learn the port.
            println!(
                "switchboard listening on http://{}",
                application.local_addr()
            );
            tracing::info!(addr = %application.local_addr(), "listening");
            application.run_until_stopped(shutdown_signal()).await
        }
        Command::Token {
            user,
            name,
            device,
            guest,
            conversation,
            ttl,
        } => {
            let settings = Settings::load(cli.config.as_deref(), &Overrides::default())?;
            anyhow::ensure!(
                !settings.auth.jwt_secret.is_empty(),
                "set auth.jwt_secret (SWITCHBOARD_AUTH__JWT_SECRET) to mint tokens"
            );
            let ttl = ttl.unwrap_or(Duration::from_secs(settings.auth.default_token_ttl_secs));
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_secs();
            let claims = Claims {
                sub: user,
                name,
                exp: now + ttl.as_secs().max(1),
                device,
                guest,
                conversation_id: conversation,
            };
            let auth = Authenticator::new(
                settings.auth.jwt_secret.expose(),
                false,
                settings.limits.clone(),
            );
            println!("{}", auth.mint(&claims).context("signing the token")?);
            Ok(())
        }
        Command::Migrate { database_url } => {
            let settings = Settings::load(
                cli.config.as_deref(),
                &Overrides {
                    database_url,
                    ..Overrides::default()
                },
            )?;
            telemetry::init(&settings.log);
            let url = settings.database_url();
            if url.starts_with("sqlite:") {
                std::fs::create_dir_all(&settings.server.data_dir)?;
            }
            let db = switchboard_db::Db::connect(&url, &Default::default()).await?;
            db.migrate().await?;
            println!("migrations applied ({})", db.backend());
            Ok(())
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

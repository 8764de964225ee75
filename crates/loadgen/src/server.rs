//! Spawning the server under test, and cleaning up after it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    Memory,
    Redis,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Memory => "memory",
            Backend::Redis => "redis",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub bin: PathBuf,
    pub backend: Backend,
    pub redis_url: String,
    /// Presence in friends mode (`SWITCHBOARD_PRESENCE__PUBLIC=false`).
    pub friends_mode: bool,
    /// The server's log level; anything chattier than `warn` measures logging too.
    pub log_level: String,
    /// Extra `KEY=VALUE` environment for the server.
    pub env: Vec<(String, String)>,
}

/// A running server; killed on drop if [`ServerProcess::stop`] was not called.
pub struct ServerProcess {
    child: Child,
    pub pid: u32,
    pub addr: SocketAddr,
    data_dir: PathBuf,
    redis: Option<(String, String)>,
}

fn unique_suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{}-{:x}", std::process::id(), nanos & 0xffff_ffff)
}

impl ServerProcess {
    pub async fn spawn(opts: &ServerOptions) -> Result<Self> {
        if !opts.bin.exists() {
            bail!(
                "server binary {} not found; build it with `cargo build --release -p switchboard-server`",
                opts.bin.display()
            );
        }
        let suffix = unique_suffix();
        let data_dir = std::env::temp_dir().join(format!("switchboard-loadgen-{suffix}"));
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let mut cmd = Command::new(&opts.bin);
        cmd.args(["serve", "--dev", "--bind", "127.0.0.1:0"])
            .env_remove("RUST_LOG")
            .env("SWITCHBOARD_DATA_DIR", &data_dir)
            .env("SWITCHBOARD_LOG__LEVEL", &opts.log_level)
            .env(
                "SWITCHBOARD_PRESENCE__PUBLIC",
                if opts.friends_mode { "false" } else { "true" },
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::File::create(data_dir.join("server.log"))
                    .context("creating the server log")?,
            ))
            .kill_on_drop(true);
        let mut redis = None;
        if opts.backend == Backend::Redis {
            let prefix = format!("lg{suffix}:");
            cmd.args(["--redis-url", &opts.redis_url])
                .env("SWITCHBOARD_STORE__PREFIX", &prefix);
            redis = Some((opts.redis_url.clone(), prefix));
        }
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {}", opts.bin.display()))?;
        let pid = child.id().ok_or_else(|| anyhow!("server exited at once"))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let wait = async {
            while let Some(line) = lines.next_line().await? {
                if let Some(rest) = line.strip_prefix("switchboard listening on http://") {
                    return rest
                        .trim()
                        .parse::<SocketAddr>()
                        .with_context(|| format!("parsing {line:?}"));
                }
            }
            bail!(
                "server exited before listening; see {}",
                data_dir.join("server.log").display()
            )
        };
        let addr = tokio::time::timeout(Duration::from_secs(30), wait)
            .await
            .map_err(|_| anyhow!("server did not listen within 30 s"))??;
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            child,
            pid,
            addr,
            data_dir,
            redis,
        })
    }

    #[allow(
        dead_code,
        reason = "part of the client API for the ack and fan-out scenarios to come"
    )]
    pub fn http_base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn ws_base(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// SIGTERM, then SIGKILL after a few seconds; removes the data dir and Redis keys.
    pub async fn stop(mut self) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.pid as libc::pid_t, libc::SIGTERM) };
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
        if let Some((url, prefix)) = &self.redis {
            let script = format!(
                "redis-cli -u '{url}' --scan --pattern '{prefix}*' | xargs -r -n 500 redis-cli -u '{url}' unlink >/dev/null"
            );
            let _ = Command::new("sh")
                .args(["-c", &script])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await;
        }
    }
}

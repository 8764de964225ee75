//! Spawning the server under test, and cleaning up after it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
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

/// Which server is under test.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// Switchboard itself (`--server-bin`, default `target/release/switchboard`).
    Switchboard,
    /// The Node.js socket.io baseline (`bench/node/server.js`, run with `node`).
    Node,
    /// The bare socketioxide baseline (`target/release/bare-socketioxide`).
    Bare,
}

impl Target {
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Switchboard => "switchboard",
            Target::Node => "node",
            Target::Bare => "bare-socketioxide",
        }
    }

    /// The program (or script) to start when none is given.
    pub fn default_program(self) -> &'static str {
        match self {
            Target::Switchboard => "target/release/switchboard",
            Target::Node => "bench/node/server.js",
            Target::Bare => "target/release/bare-socketioxide",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The server binary (the Node baseline: its script).
    pub bin: PathBuf,
    pub target: Target,
    pub backend: Backend,
    pub redis_url: String,
    /// Presence in friends mode (`SWITCHBOARD_PRESENCE__PUBLIC=false`).
    pub friends_mode: bool,
    /// The server's log level; anything chattier than `warn` measures logging too.
    pub log_level: String,
    /// Extra `KEY=VALUE` environment for the server.
    pub env: Vec<(String, String)>,
    /// Instances sharing one Redis (and, for Switchboard, one fresh PostgreSQL database):
    /// simulated user `n` connects to instance `n % instances`. More than one needs Redis.
    pub instances: u32,
    /// PostgreSQL server for several Switchboard instances; a fresh database is created
    /// on it per run and dropped afterwards.
    pub postgres_url: String,
    /// Pin the server processes to this CPU (`taskset -c`).
    pub pin_cpu: Option<usize>,
}

impl ServerOptions {
    /// Switchboard on `backend` with everything else at its default.
    pub fn switchboard(bin: PathBuf, backend: Backend) -> Self {
        Self {
            bin,
            target: Target::Switchboard,
            backend,
            redis_url: "redis://127.0.0.1:6379".into(),
            friends_mode: true,
            log_level: "warn".into(),
            env: Vec::new(),
            instances: 1,
            postgres_url: "postgres://postgres@127.0.0.1:5432".into(),
            pin_cpu: None,
        }
    }

    /// A short label: `switchboard/memory`, `node/redis ×2`.
    pub fn label(&self) -> String {
        let mut label = format!("{}/{}", self.target.as_str(), self.backend.as_str());
        if self.instances > 1 {
            label.push_str(&format!(" ×{}", self.instances));
        }
        label
    }
}

/// The running server instances of one run; killed on drop if [`ServerProcess::stop`]
/// was not called.
pub struct ServerProcess {
    children: Vec<Child>,
    /// The first instance's pid and address (the only ones with a single instance).
    pub pid: u32,
    pub addr: SocketAddr,
    pub pids: Vec<u32>,
    pub addrs: Vec<SocketAddr>,
    data_dir: PathBuf,
    redis: Option<(String, String)>,
    /// `(server url, database name)` of the fresh PostgreSQL database, to drop at the end.
    database: Option<(String, String)>,
}

fn unique_suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{}-{:x}", std::process::id(), nanos & 0xffff_ffff)
}

async fn run_quietly(program: &str, args: &[&str]) -> Result<()> {
    let status = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .with_context(|| format!("running {program}"))?;
    if !status.success() {
        bail!("{program} {args:?} failed: {status}");
    }
    Ok(())
}

impl ServerProcess {
    pub async fn spawn(opts: &ServerOptions) -> Result<Self> {
        if !opts.bin.exists() {
            bail!(
                "server {} not found (make bench builds and installs all of them)",
                opts.bin.display()
            );
        }
        if opts.instances > 1 && opts.backend != Backend::Redis {
            bail!("several instances need the Redis backend");
        }
        let suffix = unique_suffix();
        let data_dir = std::env::temp_dir().join(format!("switchboard-loadgen-{suffix}"));
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let prefix = format!("lg{suffix}:");
        let redis =
            (opts.backend == Backend::Redis).then(|| (opts.redis_url.clone(), prefix.clone()));
        let mut database = None;
        if opts.instances > 1 && opts.target == Target::Switchboard {
            // Instances of one deployment share their database too.
            let name = format!("lgbench_{}", suffix.replace('-', "_"));
            let url = opts.postgres_url.trim_end_matches('/').to_string();
            run_quietly(
                "psql",
                &[
                    &format!("{url}/postgres"),
                    "-c",
                    &format!("CREATE DATABASE {name}"),
                ],
            )
            .await
            .context("creating the shared PostgreSQL database")?;
            database = Some((url, name));
        }
        let mut process = Self {
            children: Vec::new(),
            pid: 0,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            pids: Vec::new(),
            addrs: Vec::new(),
            data_dir,
            redis,
            database,
        };
        for instance in 0..opts.instances.max(1) {
            match process.spawn_instance(opts, instance, &prefix).await {
                Ok((child, pid, addr)) => {
                    process.children.push(child);
                    process.pids.push(pid);
                    process.addrs.push(addr);
                }
                Err(e) => {
                    process.stop().await;
                    return Err(e);
                }
            }
        }
        process.pid = process.pids[0];
        process.addr = process.addrs[0];
        Ok(process)
    }

    async fn spawn_instance(
        &self,
        opts: &ServerOptions,
        instance: u32,
        prefix: &str,
    ) -> Result<(Child, u32, SocketAddr)> {
        let log = self.data_dir.join(format!("server-{instance}.log"));
        let mut cmd = match opts.pin_cpu {
            Some(cpu) => {
                let mut c = Command::new("taskset");
                c.args(["-c", &cpu.to_string()]);
                if opts.target == Target::Node {
                    c.arg("node");
                }
                c.arg(&opts.bin);
                c
            }
            None if opts.target == Target::Node => {
                let mut c = Command::new("node");
                c.arg(&opts.bin);
                c
            }
            None => Command::new(&opts.bin),
        };
        cmd.env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::File::create(&log).context("creating the server log")?,
            ))
            .kill_on_drop(true);
        match opts.target {
            Target::Switchboard => {
                let data_dir = self.data_dir.join(format!("instance-{instance}"));
                std::fs::create_dir_all(&data_dir)?;
                cmd.args(["serve", "--dev", "--bind", "127.0.0.1:0"])
                    .env("SWITCHBOARD_DATA_DIR", &data_dir)
                    .env("SWITCHBOARD_LOG__LEVEL", &opts.log_level)
                    .env(
                        "SWITCHBOARD_PRESENCE__PUBLIC",
                        if opts.friends_mode { "false" } else { "true" },
                    );
                if opts.backend == Backend::Redis {
                    cmd.args(["--redis-url", &opts.redis_url])
                        .env("SWITCHBOARD_STORE__PREFIX", prefix);
                }
                if let Some((url, name)) = &self.database {
                    cmd.args(["--database-url", &format!("{url}/{name}")]);
                }
            }
            Target::Node | Target::Bare => {
                cmd.env("PORT", "0");
                if opts.backend == Backend::Redis {
                    cmd.env("REDIS_URL", &opts.redis_url)
                        .env("REDIS_PREFIX", format!("{prefix}socket.io"));
                }
            }
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
                if let Some(at) = line.find("listening on http://") {
                    return line[at + "listening on http://".len()..]
                        .trim()
                        .parse::<SocketAddr>()
                        .with_context(|| format!("parsing {line:?}"));
                }
            }
            bail!("server exited before listening; see {}", log.display())
        };
        let addr = tokio::time::timeout(Duration::from_secs(30), wait)
            .await
            .map_err(|_| anyhow!("server did not listen within 30 s"))??;
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        // `taskset` execs the server, so the pid is the server's own.
        Ok((child, pid, addr))
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

    /// The Engine.IO WebSocket endpoint simulated user `n` connects to.
    pub fn url_for(&self, n: u32) -> String {
        let addr = self.addrs[n as usize % self.addrs.len()];
        crate::client::endpoint(&format!("ws://{addr}"))
    }

    /// SIGTERM, then SIGKILL after a few seconds; removes the data dir, the Redis keys and
    /// the shared database.
    pub async fn stop(mut self) {
        for (child, &pid) in self.children.iter_mut().zip(&self.pids) {
            // SAFETY: signalling our own child by pid.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
            if tokio::time::timeout(Duration::from_secs(5), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
        if let Some((url, prefix)) = &self.redis {
            let script = format!(
                "redis-cli -u '{url}' --scan --pattern '{prefix}*' | xargs -r -n 500 redis-cli -u '{url}' unlink >/dev/null"
            );
            let _ = run_quietly("sh", &["-c", &script]).await;
        }
        if let Some((url, name)) = &self.database {
            let _ = run_quietly(
                "psql",
                &[
                    &format!("{url}/postgres"),
                    "-c",
                    &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                ],
            )
            .await;
        }
    }
}

//! CPU time and memory of the server (from `/proc`) and of the generator itself.

use anyhow::{Context, Result, anyhow};

fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// User + system CPU seconds of a process (all its threads), from `/proc/<pid>/stat`.
pub fn process_cpu_secs(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    parse_stat_cpu_ticks(&stat).map(|ticks| ticks as f64 / clock_ticks_per_sec())
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line. The command name in
/// parentheses may contain spaces, so fields are counted after its closing parenthesis.
fn parse_stat_cpu_ticks(stat: &str) -> Result<u64> {
    let after = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or_else(|| anyhow!("unexpected /proc stat format"))?;
    // After ')' come field 3 (state) onwards, so utime (14) is index 11.
    let fields: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .ok_or_else(|| anyhow!("short /proc stat"))?
            .parse::<u64>()
            .context("parsing /proc stat")
    };
    Ok(field(11)? + field(12)?)
}

/// Resident memory of a process, in KiB.
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// `VmRSS`: resident now.
    pub rss_kib: u64,
    /// `VmHWM`: the peak resident size so far.
    pub peak_kib: u64,
}

pub fn process_memory(pid: u32) -> Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let value = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    Ok(Memory {
        rss_kib: value("VmRSS:"),
        peak_kib: value("VmHWM:"),
    })
}

/// The first process whose `/proc/<pid>/comm` is `name` (e.g. the local `redis-server`),
/// so its CPU can be read too. Read-only; nothing is ever signalled through this.
pub fn find_by_comm(name: &str) -> Option<u32> {
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    pids.into_iter().find(|pid| {
        std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name)
    })
}

/// User + system CPU seconds of this process, from getrusage.
pub fn self_cpu_secs() -> f64 {
    // SAFETY: rusage is plain data; getrusage only writes into it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage struct.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    if rc != 0 {
        return 0.0;
    }
    let secs = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_in_name() {
        let stat = "1234 (tokio runtime) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 70 0 0 20 0 \
                    8 0 55 1000 200 18446744073709551615";
        assert_eq!(parse_stat_cpu_ticks(stat).unwrap(), 320);
    }

    #[test]
    fn reads_own_process() {
        let pid = std::process::id();
        assert!(process_cpu_secs(pid).unwrap() >= 0.0);
        assert!(process_memory(pid).unwrap().rss_kib > 0);
        assert_eq!(find_by_comm("no-such-process-name"), None);
    }
}

/// What the processes of a run used over a measured window.
#[derive(Debug, Clone, Copy)]
pub struct WindowUsage {
    pub server_cpu_secs: f64,
    /// The local `redis-server`'s CPU, when asked for and found.
    pub redis_cpu_secs: Option<f64>,
    pub loadgen_cpu_secs: f64,
    /// The server's memory at the end of the window.
    pub server_memory: Memory,
}

/// Sleeps until `from`, then samples CPU times until `to`: the servers' (summed over
/// `server_pids`, e.g. two instances), the generator's and, with `with_redis`, the local
/// Redis server's. Memory is summed over the servers too.
pub async fn measure_window(
    server_pids: &[u32],
    with_redis: bool,
    from: std::time::Instant,
    to: std::time::Instant,
) -> Result<WindowUsage> {
    tokio::time::sleep_until(from.into()).await;
    let redis_pid = if with_redis {
        find_by_comm("redis-server")
    } else {
        None
    };
    let servers_cpu = || -> Result<f64> {
        server_pids
            .iter()
            .map(|&pid| process_cpu_secs(pid))
            .sum::<Result<f64>>()
    };
    let redis_before = redis_pid.and_then(|p| process_cpu_secs(p).ok());
    let server_before = servers_cpu()?;
    let self_before = self_cpu_secs();
    tokio::time::sleep_until(to.into()).await;
    let mut server_memory = Memory::default();
    for &pid in server_pids {
        let m = process_memory(pid)?;
        server_memory.rss_kib += m.rss_kib;
        server_memory.peak_kib += m.peak_kib;
    }
    Ok(WindowUsage {
        server_cpu_secs: servers_cpu()? - server_before,
        redis_cpu_secs: redis_pid
            .and_then(|p| process_cpu_secs(p).ok())
            .zip(redis_before)
            .map(|(after, before)| after - before),
        loadgen_cpu_secs: self_cpu_secs() - self_before,
        server_memory,
    })
}

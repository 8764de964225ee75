//! Markdown output and `docs/benchmarks.md` updates.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use crate::scenario::churn::ChurnResult;
use crate::stats::median;

/// Where and on what the figures were taken.
#[derive(Debug, Clone)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub date: String,
    pub commit: String,
}

fn command_output(program: &str, args: &[&str]) -> Option<String> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

impl Machine {
    pub fn detect() -> Self {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find_map(|l| l.strip_prefix("model name"))
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let dirty = command_output("git", &["status", "--porcelain", "--untracked-files=no"])
            .is_some_and(|s| !s.is_empty());
        let commit = command_output("git", &["rev-parse", "--short", "HEAD"])
            .map(|c| {
                if dirty {
                    format!("{c} (with uncommitted changes)")
                } else {
                    c
                }
            })
            .unwrap_or_else(|| "unknown".into());
        Self {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            date: command_output("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
                .unwrap_or_else(|| "unknown".into()),
            commit,
        }
    }

    pub fn describe(&self) -> String {
        format!(
            "{} CPUs ({}), {}, commit {}",
            self.cpus, self.cpu_model, self.date, self.commit
        )
    }
}

const HEADER: &str = "| run | backend | users × friends | base online | workers | connects/s | disconnects/s | connect p50 / p99 (ms) | friend_* events/s | server CPU (s, % of one core) | server RSS end / peak (MiB) | loadgen CPU (% of one core) | errors |\n\
|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";

/// The displayed figures of one table row.
#[derive(Debug, Clone, Copy)]
struct RowValues {
    connects_per_sec: f64,
    disconnects_per_sec: f64,
    connect_p50_ms: f64,
    connect_p99_ms: f64,
    friend_events_per_sec: f64,
    /// CPU-seconds over the window; not shown for the median row.
    server_cpu_secs: Option<f64>,
    server_cpu_percent: f64,
    rss_end_mib: f64,
    rss_peak_mib: f64,
    loadgen_cpu_percent: f64,
    errors: f64,
}

impl RowValues {
    fn of(r: &ChurnResult) -> Self {
        Self {
            connects_per_sec: r.connects_per_sec(),
            disconnects_per_sec: r.disconnects_per_sec(),
            connect_p50_ms: r.connect_p50_ms,
            connect_p99_ms: r.connect_p99_ms,
            friend_events_per_sec: r.friend_events_per_sec(),
            server_cpu_secs: Some(r.server_cpu_secs),
            server_cpu_percent: r.server_cpu_percent(),
            rss_end_mib: r.server_rss_end_mib,
            rss_peak_mib: r.server_rss_peak_mib,
            loadgen_cpu_percent: r.loadgen_cpu_percent(),
            errors: (r.connect_errors + r.disconnect_errors + r.unexpected_closes) as f64,
        }
    }

    /// Each column's median on its own.
    fn median_of(rows: &[RowValues]) -> Self {
        let m = |f: fn(&RowValues) -> f64| median(&rows.iter().map(f).collect::<Vec<_>>());
        Self {
            connects_per_sec: m(|r| r.connects_per_sec),
            disconnects_per_sec: m(|r| r.disconnects_per_sec),
            connect_p50_ms: m(|r| r.connect_p50_ms),
            connect_p99_ms: m(|r| r.connect_p99_ms),
            friend_events_per_sec: m(|r| r.friend_events_per_sec),
            server_cpu_secs: None,
            server_cpu_percent: m(|r| r.server_cpu_percent),
            rss_end_mib: m(|r| r.rss_end_mib),
            rss_peak_mib: m(|r| r.rss_peak_mib),
            loadgen_cpu_percent: m(|r| r.loadgen_cpu_percent),
            errors: m(|r| r.errors),
        }
    }
}

fn row(label: &str, r: &ChurnResult, v: &RowValues) -> String {
    let cpu_secs = v
        .server_cpu_secs
        .map_or_else(|| "—".to_string(), |s| format!("{s:.1} s"));
    format!(
        "| {label} | {} | {} × {} ({:.1}) | {} | {} | {:.0} | {:.0} | {:.1} / {:.1} | {:.0} | {cpu_secs} ({:.0} %) | {:.0} / {:.0} | {:.0} % | {:.0} |\n",
        r.backend,
        r.users,
        r.friends,
        r.avg_friends,
        r.online_base,
        r.concurrency,
        v.connects_per_sec,
        v.disconnects_per_sec,
        v.connect_p50_ms,
        v.connect_p99_ms,
        v.friend_events_per_sec,
        v.server_cpu_percent,
        v.rss_end_mib,
        v.rss_peak_mib,
        v.loadgen_cpu_percent,
        v.errors,
    )
}

/// The markdown table of a set of runs of one backend, with a median row when there are
/// several.
pub fn churn_table(runs: &[ChurnResult]) -> String {
    let mut out = String::from(HEADER);
    let values: Vec<RowValues> = runs.iter().map(RowValues::of).collect();
    for (i, (r, v)) in runs.iter().zip(&values).enumerate() {
        out.push_str(&row(&(i + 1).to_string(), r, v));
    }
    if runs.len() > 1 {
        out.push_str(&row("**median**", &runs[0], &RowValues::median_of(&values)));
    }
    out
}

/// Extra per-run detail that does not fit the table.
pub fn churn_details(runs: &[ChurnResult]) -> String {
    let mut out = String::new();
    for (i, r) in runs.iter().enumerate() {
        let _ = writeln!(
            out,
            "- run {}: window {:.1} s, {} connects / {} disconnects, {} friend_online + {} friend_offline, \
             {} onlineUsersUpdated, disconnect p50 / p99 {:.1} / {:.1} ms, setup {:.0} s, \
             errors: {} connect, {} disconnect, {} unexpected closes",
            i + 1,
            r.window_secs,
            r.connects,
            r.disconnects,
            r.friend_online,
            r.friend_offline,
            r.online_list_updates,
            r.disconnect_p50_ms,
            r.disconnect_p99_ms,
            r.setup_secs,
            r.connect_errors,
            r.disconnect_errors,
            r.unexpected_closes,
        );
    }
    out
}

/// The generated section for one scenario and backend.
pub fn churn_section(
    backend: &str,
    machine: &Machine,
    command: &str,
    runs: &[ChurnResult],
) -> String {
    format!(
        "### churn — {backend}\n\n\
         Machine: {}.\n\n\
         Command: `{command}`\n\n\
         {}\n\
         {}",
        machine.describe(),
        churn_table(runs),
        churn_details(runs),
    )
}

/// Replaces the section between this key's markers in `path`, or appends it.
pub fn update_docs(path: &Path, key: &str, section: &str) -> Result<()> {
    let begin = format!("<!-- loadgen:{key}:begin -->");
    let end = format!("<!-- loadgen:{key}:end -->");
    let current = std::fs::read_to_string(path).unwrap_or_default();
    let block = format!("{begin}\n{}\n{end}", section.trim_end());
    let updated = match (current.find(&begin), current.find(&end)) {
        (Some(b), Some(e)) if e > b => {
            format!("{}{block}{}", &current[..b], &current[e + end.len()..])
        }
        _ => {
            let sep = if current.is_empty() || current.ends_with("\n\n") {
                ""
            } else if current.ends_with('\n') {
                "\n"
            } else {
                "\n\n"
            };
            format!("{current}{sep}{block}\n")
        }
    };
    std::fs::write(path, updated).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_section_is_replaced_in_place() {
        let dir = std::env::temp_dir().join(format!("loadgen-report-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("b.md");
        std::fs::write(&path, "# Bench\n\nintro\n").unwrap();
        update_docs(&path, "churn:memory", "one").unwrap();
        update_docs(&path, "churn:redis", "two").unwrap();
        update_docs(&path, "churn:memory", "three").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("# Bench\n\nintro\n\n<!-- loadgen:churn:memory:begin -->\nthree\n")
        );
        assert!(text.contains("two"));
        assert!(!text.contains("one"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}

//! Markdown output and `docs/benchmarks.md` updates.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use crate::scenario::calls::{self, CallsResult};
use crate::scenario::churn::ChurnResult;
use crate::scenario::fanout::FanoutResult;
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
            // The machine's CPUs, not this process' affinity (the suite pins itself to one).
            // SAFETY: sysconf has no preconditions.
            cpus: usize::try_from(unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) })
                .ok()
                .filter(|&n| n > 0)
                .unwrap_or(1),
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
    server_bin: &Path,
    command: &str,
    runs: &[ChurnResult],
) -> String {
    format!(
        "### churn — {backend}\n\n\
         Machine: {}; server binary modified {}.\n\n\
         Command: `{command}`\n\n\
         {}\n\
         {}",
        machine.describe(),
        binary_time(server_bin),
        churn_table(runs),
        churn_details(runs),
    )
}

const FANOUT_HEADER: &str = "| run | backend | members × conversations | senders × window | accepted msgs/s | deliveries/s | ack p50 / p99 (ms) | delivery p50 / p99 (ms) | commits/s (mean / max batch) | server CPU (s, % of one core) | server RSS end / peak (MiB) | loadgen CPU (% of one core) | errors |\n\
|---|---|---|---|---|---|---|---|---|---|---|---|---|\n";

/// The displayed figures of one fan-out row.
#[derive(Debug, Clone, Copy)]
struct FanoutRow {
    accepted: f64,
    deliveries: f64,
    ack_p50: f64,
    ack_p99: f64,
    delivery_p50: f64,
    delivery_p99: f64,
    commits: f64,
    mean_batch: f64,
    max_batch: f64,
    server_cpu_secs: Option<f64>,
    server_cpu_percent: f64,
    rss_end: f64,
    rss_peak: f64,
    loadgen_cpu_percent: f64,
    errors: f64,
}

impl FanoutRow {
    fn of(r: &FanoutResult) -> Self {
        Self {
            accepted: r.accepted_per_sec(),
            deliveries: r.deliveries_per_sec(),
            ack_p50: r.ack_p50_ms,
            ack_p99: r.ack_p99_ms,
            delivery_p50: r.delivery_p50_ms,
            delivery_p99: r.delivery_p99_ms,
            commits: r.batches as f64 / r.window_secs,
            mean_batch: r.mean_batch(),
            max_batch: r.batch_max as f64,
            server_cpu_secs: Some(r.server_cpu_secs),
            server_cpu_percent: r.server_cpu_percent(),
            rss_end: r.server_rss_end_mib,
            rss_peak: r.server_rss_peak_mib,
            loadgen_cpu_percent: r.loadgen_cpu_percent(),
            errors: r.errors() as f64,
        }
    }

    fn median_of(rows: &[FanoutRow]) -> Self {
        let m = |f: fn(&FanoutRow) -> f64| median(&rows.iter().map(f).collect::<Vec<_>>());
        Self {
            accepted: m(|r| r.accepted),
            deliveries: m(|r| r.deliveries),
            ack_p50: m(|r| r.ack_p50),
            ack_p99: m(|r| r.ack_p99),
            delivery_p50: m(|r| r.delivery_p50),
            delivery_p99: m(|r| r.delivery_p99),
            commits: m(|r| r.commits),
            mean_batch: m(|r| r.mean_batch),
            max_batch: m(|r| r.max_batch),
            server_cpu_secs: None,
            server_cpu_percent: m(|r| r.server_cpu_percent),
            rss_end: m(|r| r.rss_end),
            rss_peak: m(|r| r.rss_peak),
            loadgen_cpu_percent: m(|r| r.loadgen_cpu_percent),
            errors: m(|r| r.errors),
        }
    }
}

fn fanout_row(label: &str, r: &FanoutResult, v: &FanoutRow) -> String {
    let cpu_secs = v
        .server_cpu_secs
        .map_or_else(|| "—".to_string(), |s| format!("{s:.1} s"));
    format!(
        "| {label} | {} | {} × {} | {} × {} | {:.0} | {:.0} | {:.1} / {:.1} | {:.1} / {:.1} | {:.0} ({:.1} / {:.0}) | {cpu_secs} ({:.0} %) | {:.0} / {:.0} | {:.0} % | {:.0} |\n",
        r.backend,
        r.size,
        r.conversations,
        r.senders_total,
        r.in_flight / r.senders_total.max(1),
        v.accepted,
        v.deliveries,
        v.ack_p50,
        v.ack_p99,
        v.delivery_p50,
        v.delivery_p99,
        v.commits,
        v.mean_batch,
        v.max_batch,
        v.server_cpu_percent,
        v.rss_end,
        v.rss_peak,
        v.loadgen_cpu_percent,
        v.errors,
    )
}

/// The fan-out table: runs grouped by conversation size, each group with a median row
/// when it has several runs.
pub fn fanout_table(runs: &[FanoutResult]) -> String {
    let mut out = String::from(FANOUT_HEADER);
    let mut sizes: Vec<u32> = Vec::new();
    for r in runs {
        if !sizes.contains(&r.size) {
            sizes.push(r.size);
        }
    }
    for size in sizes {
        let group: Vec<&FanoutResult> = runs.iter().filter(|r| r.size == size).collect();
        let values: Vec<FanoutRow> = group.iter().map(|r| FanoutRow::of(r)).collect();
        for (i, (r, v)) in group.iter().zip(&values).enumerate() {
            out.push_str(&fanout_row(&(i + 1).to_string(), r, v));
        }
        if group.len() > 1 {
            out.push_str(&fanout_row(
                "**median**",
                group[0],
                &FanoutRow::median_of(&values),
            ));
        }
    }
    out
}

/// Per-run detail that does not fit the fan-out table.
pub fn fanout_details(runs: &[FanoutResult]) -> String {
    let mut out = String::new();
    for (i, r) in runs.iter().enumerate() {
        let run = runs[..i].iter().filter(|p| p.size == r.size).count() + 1;
        let _ = writeln!(
            out,
            "- size {} run {run}: window {:.0} s, {} accepted, {} message:new + {} unread:updated received in the window, \
             {} commits; whole run {} acked, {} of {} expected message:new delivered; setup {:.1} s;{} \
             errors: {} refused, {} unanswered, {} unexpected closes{}",
            r.size,
            r.window_secs,
            r.accepted,
            r.deliveries,
            r.unread_updates,
            r.batches,
            r.acked_total,
            r.delivered_total,
            r.expected_total,
            r.setup_secs,
            r.redis_cpu_secs
                .map(|c| format!(
                    " redis-server CPU {c:.1} s ({:.0} % of one core);",
                    100.0 * c / r.window_secs
                ))
                .unwrap_or_default(),
            r.refused,
            r.unanswered,
            r.unexpected_closes,
            r.first_error
                .as_ref()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default(),
        );
    }
    out
}

/// The generated fan-out section for one backend.
pub fn fanout_section(
    backend: &str,
    machine: &Machine,
    server_bin: &Path,
    command: &str,
    runs: &[FanoutResult],
) -> String {
    format!(
        "### fanout — {backend}\n\n\
         Machine: {}; server binary modified {}.\n\n\
         Command: `{command}`\n\n\
         {}\n\
         {}",
        machine.describe(),
        binary_time(server_bin),
        fanout_table(runs),
        fanout_details(runs),
    )
}

const CALLS_HEADER: &str = "| run | backend | pairs | setups/s | setup p50 / p99 (ms) | callUser ack p50 / p99 (ms) | end p50 / p99 (ms) | server CPU (s, % of one core) | server RSS end / peak (MiB) | loadgen CPU (% of one core) | errors |\n\
|---|---|---|---|---|---|---|---|---|---|---|\n";

/// The displayed figures of one calls row.
#[derive(Debug, Clone, Copy)]
struct CallsRow {
    setups: f64,
    setup_p50: f64,
    setup_p99: f64,
    ack_p50: f64,
    ack_p99: f64,
    end_p50: f64,
    end_p99: f64,
    server_cpu_secs: Option<f64>,
    server_cpu_percent: f64,
    rss_end: f64,
    rss_peak: f64,
    loadgen_cpu_percent: f64,
    errors: f64,
}

impl CallsRow {
    fn of(r: &CallsResult) -> Self {
        Self {
            setups: r.setups_per_sec(),
            setup_p50: r.setup_p50_ms,
            setup_p99: r.setup_p99_ms,
            ack_p50: r.call_ack_p50_ms,
            ack_p99: r.call_ack_p99_ms,
            end_p50: r.end_p50_ms,
            end_p99: r.end_p99_ms,
            server_cpu_secs: Some(r.server_cpu_secs),
            server_cpu_percent: r.server_cpu_percent(),
            rss_end: r.server_rss_end_mib,
            rss_peak: r.server_rss_peak_mib,
            loadgen_cpu_percent: r.loadgen_cpu_percent(),
            errors: r.errors() as f64,
        }
    }

    fn median_of(rows: &[CallsRow]) -> Self {
        let m = |f: fn(&CallsRow) -> f64| median(&rows.iter().map(f).collect::<Vec<_>>());
        Self {
            setups: m(|r| r.setups),
            setup_p50: m(|r| r.setup_p50),
            setup_p99: m(|r| r.setup_p99),
            ack_p50: m(|r| r.ack_p50),
            ack_p99: m(|r| r.ack_p99),
            end_p50: m(|r| r.end_p50),
            end_p99: m(|r| r.end_p99),
            server_cpu_secs: None,
            server_cpu_percent: m(|r| r.server_cpu_percent),
            rss_end: m(|r| r.rss_end),
            rss_peak: m(|r| r.rss_peak),
            loadgen_cpu_percent: m(|r| r.loadgen_cpu_percent),
            errors: m(|r| r.errors),
        }
    }
}

fn calls_row(label: &str, r: &CallsResult, v: &CallsRow) -> String {
    let cpu_secs = v
        .server_cpu_secs
        .map_or_else(|| "—".to_string(), |s| format!("{s:.1} s"));
    format!(
        "| {label} | {} | {} | {:.0} | {:.1} / {:.1} | {:.1} / {:.1} | {:.1} / {:.1} | {cpu_secs} ({:.0} %) | {:.0} / {:.0} | {:.0} % | {:.0} |\n",
        r.backend,
        r.pairs,
        v.setups,
        v.setup_p50,
        v.setup_p99,
        v.ack_p50,
        v.ack_p99,
        v.end_p50,
        v.end_p99,
        v.server_cpu_percent,
        v.rss_end,
        v.rss_peak,
        v.loadgen_cpu_percent,
        v.errors,
    )
}

/// The calls table of a set of runs of one backend, with a median row when there are
/// several.
pub fn calls_table(runs: &[CallsResult]) -> String {
    let mut out = String::from(CALLS_HEADER);
    let values: Vec<CallsRow> = runs.iter().map(CallsRow::of).collect();
    for (i, (r, v)) in runs.iter().zip(&values).enumerate() {
        out.push_str(&calls_row(&(i + 1).to_string(), r, v));
    }
    if runs.len() > 1 {
        out.push_str(&calls_row(
            "**median**",
            &runs[0],
            &CallsRow::median_of(&values),
        ));
    }
    out
}

/// Per-run detail that does not fit the calls table.
pub fn calls_details(runs: &[CallsResult]) -> String {
    let mut out = String::new();
    for (i, r) in runs.iter().enumerate() {
        let _ = writeln!(
            out,
            "- run {}: window {:.0} s, {} setups and {} ends in the window, acceptCallNew ack p50 / p99 \
             {:.1} / {:.1} ms; whole run {} set up, {} ended, {} rung by push; setup {:.1} s;{} \
             errors: refused {}, {} unanswered, {} unexpected closes{}",
            i + 1,
            r.window_secs,
            r.setups,
            r.ends,
            r.accept_ack_p50_ms,
            r.accept_ack_p99_ms,
            r.setups_total,
            r.ends_total,
            r.push_deliveries,
            r.setup_secs,
            r.redis_cpu_secs
                .map(|c| format!(
                    " redis-server CPU {c:.1} s ({:.0} % of one core);",
                    100.0 * c / r.window_secs
                ))
                .unwrap_or_default(),
            calls::format_refusals(&r.refusals),
            r.unanswered,
            r.unexpected_closes,
            r.first_error
                .as_ref()
                .map(|e| format!(" (first: {e})"))
                .unwrap_or_default(),
        );
    }
    out
}

/// The generated calls section for one backend.
pub fn calls_section(
    backend: &str,
    machine: &Machine,
    server_bin: &Path,
    command: &str,
    runs: &[CallsResult],
) -> String {
    format!(
        "### calls — {backend}\n\n\
         Machine: {}; server binary modified {}.\n\n\
         Command: `{command}`\n\n\
         {}\n\
         {}",
        machine.describe(),
        binary_time(server_bin),
        calls_table(runs),
        calls_details(runs),
    )
}

/// When the server binary was last written, so figures from a stale build are visible.
fn binary_time(path: &Path) -> String {
    let Some(secs) = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
    else {
        return "unknown".into();
    };
    command_output(
        "date",
        &["-u", "-d", &format!("@{secs}"), "+%Y-%m-%d %H:%M UTC"],
    )
    .unwrap_or_else(|| format!("{secs} s after the epoch"))
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
    fn calls_table_has_a_median_row_and_matching_columns() {
        let run = |setups: u64, p50: f64| CallsResult {
            backend: "memory".into(),
            pairs: 64,
            window_secs: 10.0,
            setups,
            setup_p50_ms: p50,
            server_cpu_secs: 5.0,
            refusals: [("callUser BUSY".to_string(), 2)].into(),
            unanswered: 1,
            ..CallsResult::default()
        };
        let runs = [run(1000, 3.0), run(3000, 1.0), run(2000, 2.0)];
        let table = calls_table(&runs);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2 + 3 + 1);
        let columns = lines[0].matches('|').count();
        assert!(lines.iter().all(|l| l.matches('|').count() == columns));
        assert!(lines[2].starts_with("| 1 | memory | 64 | 100 | 3.0 / 0.0 |"));
        assert!(lines[5].starts_with("| **median** | memory | 64 | 200 | 2.0 / 0.0 |"));
        assert!(lines[5].contains("| — (50 %) |"));
        assert!(lines[5].ends_with("| 3 |"));
        let details = calls_details(&runs);
        assert!(details.contains("refused callUser BUSY 2, 1 unanswered"));
    }

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

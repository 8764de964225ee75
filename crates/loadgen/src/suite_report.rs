//! The side-by-side report of a suite run: markdown tables (median and spread per server
//! setup, ratios per repetition, the goals) and the PNG charts.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;

use crate::chart;
use crate::server::{Backend, Target};
use crate::stats::median;
use crate::suite::{Measurement, Outcome, SuiteResults};

/// Median and range of a few repetitions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Summary {
    pub fn of(values: &[f64]) -> Option<Self> {
        if values.is_empty() {
            return None;
        }
        Some(Self {
            median: median(values),
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            n: values.len(),
        })
    }

    /// `1234 (1100–1300)`, with `decimals` digits; a single value has no range.
    pub fn render(&self, decimals: usize) -> String {
        if self.n == 1 {
            format!("{:.*}", decimals, self.median)
        } else {
            format!(
                "{:.*} ({:.*}–{:.*})",
                decimals, self.median, decimals, self.min, decimals, self.max
            )
        }
    }
}

/// Per-repetition ratios `a / b` of the repetitions both have (and `b` non-zero).
pub fn ratios(a: &[(u32, f64)], b: &[(u32, f64)]) -> Vec<f64> {
    a.iter()
        .filter_map(|&(rep, x)| {
            let (_, y) = b.iter().find(|(r, _)| *r == rep)?;
            (*y != 0.0).then(|| x / y)
        })
        .collect()
}

/// Per-repetition differences `a - b`.
pub fn differences(a: &[(u32, f64)], b: &[(u32, f64)]) -> Vec<f64> {
    a.iter()
        .filter_map(|&(rep, x)| {
            let (_, y) = b.iter().find(|(r, _)| *r == rep)?;
            Some(x - y)
        })
        .collect()
}

/// A figure taken from one measurement.
#[derive(Clone, Copy)]
pub struct Metric {
    pub label: &'static str,
    pub decimals: usize,
    pub get: fn(&Outcome) -> Option<f64>,
}

fn ack_metrics() -> Vec<Metric> {
    vec![
        Metric {
            label: "acks/s (closed loop)",
            decimals: 0,
            get: |o| match o {
                Outcome::Ack(r) => Some(r.closed.acks_per_sec()),
                _ => None,
            },
        },
        Metric {
            label: "p50 (ms)",
            decimals: 2,
            get: |o| match o {
                Outcome::Ack(r) => Some(r.closed.p50_ms),
                _ => None,
            },
        },
        Metric {
            label: "p99 (ms)",
            decimals: 2,
            get: |o| match o {
                Outcome::Ack(r) => Some(r.closed.p99_ms),
                _ => None,
            },
        },
        Metric {
            label: "server CPU-µs per ack",
            decimals: 1,
            get: |o| match o {
                Outcome::Ack(r) => Some(r.closed.cpu_us_per_ack()),
                _ => None,
            },
        },
        Metric {
            label: "server CPU (% of a core)",
            decimals: 0,
            get: |o| match o {
                Outcome::Ack(r) => Some(100.0 * r.closed.server_cpu_secs / r.closed.window_secs),
                _ => None,
            },
        },
        Metric {
            label: "loadgen CPU (% of a core)",
            decimals: 0,
            get: |o| match o {
                Outcome::Ack(r) => Some(100.0 * r.closed.loadgen_cpu_secs / r.closed.window_secs),
                _ => None,
            },
        },
        Metric {
            label: "errors",
            decimals: 0,
            get: |o| match o {
                Outcome::Ack(r) => {
                    Some((r.closed.errors + r.fixed.iter().map(|f| f.errors).sum::<u64>()) as f64)
                }
                _ => None,
            },
        },
    ]
}

fn fanout_metrics() -> Vec<Metric> {
    vec![
        Metric {
            label: "deliveries/s",
            decimals: 0,
            get: |o| match o {
                Outcome::Fanout(r) => Some(r.deliveries_per_sec()),
                _ => None,
            },
        },
        Metric {
            label: "sends acked/s",
            decimals: 0,
            get: |o| match o {
                Outcome::Fanout(r) => Some(r.accepted_per_sec()),
                _ => None,
            },
        },
        Metric {
            label: "delivery p50 (ms)",
            decimals: 1,
            get: |o| match o {
                Outcome::Fanout(r) => Some(r.delivery_p50_ms),
                _ => None,
            },
        },
        Metric {
            label: "delivery p99 (ms)",
            decimals: 1,
            get: |o| match o {
                Outcome::Fanout(r) => Some(r.delivery_p99_ms),
                _ => None,
            },
        },
        Metric {
            label: "server CPU-µs per delivery",
            decimals: 1,
            get: |o| match o {
                Outcome::Fanout(r) => {
                    (r.deliveries > 0).then(|| r.server_cpu_secs * 1e6 / r.deliveries as f64)
                }
                _ => None,
            },
        },
        Metric {
            label: "loadgen CPU (% of a core)",
            decimals: 0,
            get: |o| match o {
                Outcome::Fanout(r) => Some(r.loadgen_cpu_percent()),
                _ => None,
            },
        },
        Metric {
            label: "errors",
            decimals: 0,
            get: |o| match o {
                Outcome::Fanout(r) => {
                    Some((r.errors() + r.expected_total.saturating_sub(r.delivered_total)) as f64)
                }
                _ => None,
            },
        },
    ]
}

fn idle_metrics() -> Vec<Metric> {
    vec![
        Metric {
            label: "KiB per connected user",
            decimals: 1,
            get: |o| match o {
                Outcome::Idle(r) => Some(r.kib_per_user()),
                _ => None,
            },
        },
        Metric {
            label: "RSS at top (MiB)",
            decimals: 0,
            get: |o| match o {
                Outcome::Idle(r) => r.points.last().map(|p| p.rss_kib as f64 / 1024.0),
                _ => None,
            },
        },
        Metric {
            label: "connects/s",
            decimals: 0,
            get: |o| match o {
                Outcome::Idle(r) => Some(r.connects_per_sec),
                _ => None,
            },
        },
        Metric {
            label: "connect p99 (ms)",
            decimals: 1,
            get: |o| match o {
                Outcome::Idle(r) => Some(r.connect_p99_ms),
                _ => None,
            },
        },
        Metric {
            label: "server CPU-µs per connect",
            decimals: 0,
            get: |o| match o {
                Outcome::Idle(r) => Some(r.server_cpu_us_per_connect),
                _ => None,
            },
        },
        Metric {
            label: "errors",
            decimals: 0,
            get: |o| match o {
                Outcome::Idle(r) => Some(r.errors as f64),
                _ => None,
            },
        },
    ]
}

fn calls_metrics() -> Vec<Metric> {
    vec![
        Metric {
            label: "setups/s",
            decimals: 0,
            get: |o| match o {
                Outcome::Calls(r) => Some(r.setups_per_sec()),
                _ => None,
            },
        },
        Metric {
            label: "setup p50 (ms)",
            decimals: 1,
            get: |o| match o {
                Outcome::Calls(r) => Some(r.setup_p50_ms),
                _ => None,
            },
        },
        Metric {
            label: "setup p99 (ms)",
            decimals: 1,
            get: |o| match o {
                Outcome::Calls(r) => Some(r.setup_p99_ms),
                _ => None,
            },
        },
        Metric {
            label: "end p99 (ms)",
            decimals: 1,
            get: |o| match o {
                Outcome::Calls(r) => Some(r.end_p99_ms),
                _ => None,
            },
        },
        Metric {
            label: "server CPU-µs per setup",
            decimals: 0,
            get: |o| match o {
                Outcome::Calls(r) => {
                    (r.setups > 0).then(|| r.server_cpu_secs * 1e6 / r.setups as f64)
                }
                _ => None,
            },
        },
        Metric {
            label: "errors",
            decimals: 0,
            get: |o| match o {
                Outcome::Calls(r) => Some(r.errors() as f64),
                _ => None,
            },
        },
    ]
}

/// One server setup: which server, which backend, how many instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setup {
    pub target: Target,
    pub backend: Backend,
    pub instances: u32,
}

impl Setup {
    pub fn label(&self) -> String {
        let mut s = format!("{} / {}", self.target.as_str(), self.backend.as_str());
        if self.instances > 1 {
            let _ = write!(s, " ×{}", self.instances);
        }
        s
    }
}

fn matches(m: &Measurement, scenario: &str, setup: Setup) -> bool {
    m.scenario == scenario
        && m.target == setup.target
        && m.backend == setup.backend
        && m.instances == setup.instances
}

/// `(rep, value)` of one metric for one setup.
pub fn series(
    results: &SuiteResults,
    scenario: &str,
    setup: Setup,
    metric: &Metric,
) -> Vec<(u32, f64)> {
    results
        .measurements
        .iter()
        .filter(|m| matches(m, scenario, setup))
        .filter_map(|m| Some((m.rep, (metric.get)(&m.outcome)?)))
        .collect()
}

/// The setups a scenario was measured on, in a stable order.
fn setups(results: &SuiteResults, scenario: &str) -> Vec<Setup> {
    let mut out: Vec<Setup> = Vec::new();
    for backend in [Backend::Memory, Backend::Redis] {
        for instances in [1, 2] {
            for target in [Target::Switchboard, Target::Node, Target::Bare] {
                let setup = Setup {
                    target,
                    backend,
                    instances,
                };
                if results
                    .measurements
                    .iter()
                    .any(|m| matches(m, scenario, setup))
                {
                    out.push(setup);
                }
            }
        }
    }
    out
}

/// The table of one scenario: a row per setup, a column per metric, "median (min–max)".
pub fn scenario_table(results: &SuiteResults, scenario: &str, metrics: &[Metric]) -> String {
    let mut out = String::from("| server / backend | runs |");
    for m in metrics {
        let _ = write!(out, " {} |", m.label);
    }
    out.push_str("\n|---|---|");
    out.push_str(&"---|".repeat(metrics.len()));
    out.push('\n');
    for setup in setups(results, scenario) {
        let ok = results
            .measurements
            .iter()
            .filter(|m| matches(m, scenario, setup) && !matches!(m.outcome, Outcome::Failed(_)))
            .count();
        let _ = write!(out, "| {} | {ok} |", setup.label());
        for metric in metrics {
            let values: Vec<f64> = series(results, scenario, setup, metric)
                .into_iter()
                .map(|(_, v)| v)
                .collect();
            let cell =
                Summary::of(&values).map_or_else(|| "—".to_string(), |s| s.render(metric.decimals));
            let _ = write!(out, " {cell} |");
        }
        out.push('\n');
    }
    out
}

/// Per-repetition ratios of Switchboard against each baseline, on each backend.
pub fn ratio_table(results: &SuiteResults, scenario: &str, metrics: &[Metric]) -> String {
    let mut rows = String::new();
    for backend in [Backend::Memory, Backend::Redis] {
        let ours = Setup {
            target: Target::Switchboard,
            backend,
            instances: 1,
        };
        for other in [Target::Node, Target::Bare] {
            let theirs = Setup {
                target: other,
                backend,
                instances: 1,
            };
            let mut cells = Vec::new();
            let mut any = false;
            for metric in metrics {
                let r = ratios(
                    &series(results, scenario, ours, metric),
                    &series(results, scenario, theirs, metric),
                );
                any |= !r.is_empty();
                cells.push(
                    Summary::of(&r)
                        .map_or_else(|| "—".to_string(), |s| format!("{}×", s.render(2))),
                );
            }
            if any {
                let _ = writeln!(
                    rows,
                    "| switchboard ÷ {} | {} | {} |",
                    other.as_str(),
                    backend.as_str(),
                    cells.join(" | ")
                );
            }
        }
    }
    if rows.is_empty() {
        return String::new();
    }
    let mut out = String::from("| ratio (per repetition) | backend |");
    for m in metrics {
        let _ = write!(out, " {} |", m.label);
    }
    out.push_str("\n|---|---|");
    out.push_str(&"---|".repeat(metrics.len()));
    out.push('\n');
    out.push_str(&rows);
    out
}

fn find_metric(metrics: &[Metric], label: &str) -> Metric {
    *metrics
        .iter()
        .find(|m| m.label == label)
        .expect("a known metric")
}

/// One line of the goals table.
struct Goal {
    goal: &'static str,
    measured: String,
    verdict: &'static str,
}

fn verdict(summary: Option<Summary>, ok: impl Fn(f64) -> bool) -> &'static str {
    match summary {
        None => "not measured",
        Some(s) if ok(s.median) => "met (median)",
        Some(_) => "missed",
    }
}

fn ratio_goal(
    results: &SuiteResults,
    scenario: &str,
    metric: &Metric,
    other: Target,
    backend: Backend,
) -> Option<Summary> {
    let ours = Setup {
        target: Target::Switchboard,
        backend,
        instances: 1,
    };
    let theirs = Setup {
        target: other,
        backend,
        instances: 1,
    };
    Summary::of(&ratios(
        &series(results, scenario, ours, metric),
        &series(results, scenario, theirs, metric),
    ))
}

fn goals(results: &SuiteResults) -> Vec<Goal> {
    let ack = ack_metrics();
    let fan = fanout_metrics();
    let idle = idle_metrics();
    let calls = calls_metrics();
    let ratio_text =
        |s: Option<Summary>| s.map_or_else(|| "—".into(), |s| format!("{}×", s.render(2)));
    let mut out = Vec::new();
    let throughput = find_metric(&ack, "acks/s (closed loop)");
    let s = ratio_goal(results, "ack", &throughput, Target::Node, Backend::Memory);
    out.push(Goal {
        goal: "ack throughput ≥ 2.5× Node",
        measured: ratio_text(s),
        verdict: verdict(s, |v| v >= 2.5),
    });
    let s = ratio_goal(results, "ack", &throughput, Target::Bare, Backend::Memory);
    out.push(Goal {
        goal: "ack throughput ≥ 0.8× bare socketioxide",
        measured: ratio_text(s),
        verdict: verdict(s, |v| v >= 0.8),
    });
    let fanout_scenario = results
        .measurements
        .iter()
        .map(|m| m.scenario.as_str())
        .filter(|s| s.starts_with("fanout:"))
        .max_by_key(|s| s.trim_start_matches("fanout:").parse::<u32>().unwrap_or(0))
        .unwrap_or("fanout:50")
        .to_string();
    let deliveries = find_metric(&fan, "deliveries/s");
    let s = ratio_goal(
        results,
        &fanout_scenario,
        &deliveries,
        Target::Bare,
        Backend::Memory,
    );
    out.push(Goal {
        goal: "fan-out deliveries/s (largest rooms) ≥ 0.9× bare socketioxide",
        measured: ratio_text(s),
        verdict: verdict(s, |v| v >= 0.9),
    });
    let p99 = fixed_rate_p99_ratio(results);
    out.push(Goal {
        goal: "p99 at equal load ≤ 0.4× Node (measured on `ack` at the highest common fixed rate; fan-out has no fixed-rate phase yet)",
        measured: ratio_text(p99),
        verdict: verdict(p99, |v| v <= 0.4),
    });
    let kib = find_metric(&idle, "KiB per connected user");
    let ours = Setup {
        target: Target::Switchboard,
        backend: Backend::Memory,
        instances: 1,
    };
    let bare = Setup {
        target: Target::Bare,
        backend: Backend::Memory,
        instances: 1,
    };
    let d = Summary::of(&differences(
        &series(results, "idle", ours, &kib),
        &series(results, "idle", bare, &kib),
    ));
    out.push(Goal {
        goal: "RSS per connected user ≤ bare socketioxide's + 4 KiB",
        measured: d.map_or_else(|| "—".into(), |s| format!("{} KiB more", s.render(1))),
        verdict: verdict(d, |v| v <= 4.0),
    });
    let setup_p99 = find_metric(&calls, "setup p99 (ms)");
    for (backend, limit, goal) in [
        (
            Backend::Memory,
            5.0,
            "call setup p99 ≤ 5 ms on memory (at saturation here, not at 500 setups/s)",
        ),
        (
            Backend::Redis,
            10.0,
            "call setup p99 ≤ 10 ms on Redis (at saturation here, not at 500 setups/s)",
        ),
    ] {
        let ours = Setup {
            target: Target::Switchboard,
            backend,
            instances: 1,
        };
        let values: Vec<f64> = series(results, "calls", ours, &setup_p99)
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        let s = Summary::of(&values);
        out.push(Goal {
            goal,
            measured: s.map_or_else(|| "—".into(), |s| format!("{} ms", s.render(1))),
            verdict: verdict(s, |v| v <= limit),
        });
    }
    let setups = find_metric(&calls, "setups/s");
    let s = ratio_goal(results, "calls", &setups, Target::Node, Backend::Memory);
    out.push(Goal {
        goal: "call setups/s ≥ 3× Node",
        measured: ratio_text(s),
        verdict: verdict(s, |v| v >= 3.0),
    });
    out
}

/// `(rate, p50, p99)` of each fixed-rate phase of one measurement.
fn fixed_points(o: &Outcome) -> Vec<(f64, f64, f64)> {
    match o {
        Outcome::Ack(r) => r
            .fixed
            .iter()
            .map(|f| (f.offered_rate, f.p50_ms, f.p99_ms))
            .collect(),
        _ => Vec::new(),
    }
}

/// Switchboard's ack p99 ÷ Node's at the highest fixed rate both kept up with (acks within
/// 5 % of the offered rate), per repetition, memory backend.
fn fixed_rate_p99_ratio(results: &SuiteResults) -> Option<Summary> {
    let at = |target: Target, rep: u32| -> Vec<(f64, f64, f64)> {
        results
            .measurements
            .iter()
            .filter(|m| {
                m.scenario == "ack"
                    && m.target == target
                    && m.backend == Backend::Memory
                    && m.instances == 1
                    && m.rep == rep
            })
            .flat_map(|m| match &m.outcome {
                Outcome::Ack(r) => r
                    .fixed
                    .iter()
                    .filter(|f| f.acks_per_sec() >= 0.95 * f.offered_rate)
                    .map(|f| (f.offered_rate, f.p50_ms, f.p99_ms))
                    .collect::<Vec<_>>(),
                _ => Vec::new(),
            })
            .collect()
    };
    let reps: Vec<u32> = results.measurements.iter().map(|m| m.rep).collect();
    let mut out = Vec::new();
    for rep in 1..=reps.into_iter().max().unwrap_or(0) {
        let ours = at(Target::Switchboard, rep);
        let theirs = at(Target::Node, rep);
        let best = ours
            .iter()
            .filter_map(|o| theirs.iter().find(|t| t.0 == o.0).map(|t| (o.0, o.2, t.2)))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        if let Some((_, p99_ours, p99_theirs)) = best
            && p99_theirs > 0.0
        {
            out.push(p99_ours / p99_theirs);
        }
    }
    Summary::of(&out)
}

/// The fixed-rate table: p50 / p99 per setup and offered rate (medians over repetitions).
fn fixed_rate_table(results: &SuiteResults) -> String {
    let mut rates: Vec<f64> = results
        .measurements
        .iter()
        .flat_map(|m| fixed_points(&m.outcome))
        .map(|p| p.0)
        .collect();
    rates.sort_by(f64::total_cmp);
    rates.dedup();
    if rates.is_empty() {
        return String::new();
    }
    let mut out = String::from("| server / backend |");
    for r in &rates {
        let _ = write!(out, " {r:.0}/s: p50 / p99 (ms), achieved |");
    }
    out.push_str("\n|---|");
    out.push_str(&"---|".repeat(rates.len()));
    out.push('\n');
    for setup in setups(results, "ack") {
        let _ = write!(out, "| {} |", setup.label());
        for &rate in &rates {
            let mut p50 = Vec::new();
            let mut p99 = Vec::new();
            let mut achieved = Vec::new();
            for m in results
                .measurements
                .iter()
                .filter(|m| matches(m, "ack", setup))
            {
                if let Outcome::Ack(r) = &m.outcome
                    && let Some(f) = r.fixed.iter().find(|f| f.offered_rate == rate)
                {
                    p50.push(f.p50_ms);
                    p99.push(f.p99_ms);
                    achieved.push(f.acks_per_sec());
                }
            }
            match (Summary::of(&p50), Summary::of(&p99), Summary::of(&achieved)) {
                (Some(a), Some(b), Some(c)) => {
                    let _ = write!(
                        out,
                        " {:.2} / {:.2}, {:.0}/s |",
                        a.median, b.median, c.median
                    );
                }
                _ => out.push_str(" — |"),
            }
        }
        out.push('\n');
    }
    out
}

fn failures(results: &SuiteResults) -> String {
    let mut out = String::new();
    for m in &results.measurements {
        if let Outcome::Failed(e) = &m.outcome {
            let setup = Setup {
                target: m.target,
                backend: m.backend,
                instances: m.instances,
            };
            let _ = writeln!(
                out,
                "- {} against {}, repetition {}: {e}",
                m.scenario,
                setup.label(),
                m.rep
            );
        }
    }
    out
}

/// The generated section of `docs/benchmarks.md` (without its markers).
pub fn render(results: &SuiteResults, charts: &[(String, String)]) -> String {
    let s = &results.settings;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Side-by-side run: {} profile\n",
        match s.profile {
            crate::suite::Profile::Quick => "quick",
            crate::suite::Profile::Full => "full",
        }
    );
    let _ = writeln!(
        out,
        "Machine: {} CPUs ({}), commit {}. Run {} → {}; load average at the end {} (other jobs on \
         the machine show up there). {} repetitions; in each, the servers run one after the other \
         in rotating order, and ratios are taken within a repetition. {}\n",
        results.cpus,
        results.cpu_model,
        results.commit,
        results.started,
        results.finished,
        results.load_average,
        s.reps,
        if s.pinned {
            "The server under test is pinned to CPU 0, the generator and Redis to CPU 1 (PostgreSQL, used by the two-instance runs, is not pinned)."
        } else {
            "Nothing was pinned."
        }
    );
    let _ = writeln!(
        out,
        "Parameters: ack {} clients × {} in flight, {} s windows, fixed rates {:?}/s; fan-out {} conversations of {:?} members, 2 senders × 2 in flight each, {} s; idle up to {:?} users; calls {} pairs, {} s.\n",
        s.ack_clients,
        s.ack_window,
        s.ack_secs,
        s.ack_rates,
        s.fanout_conversations,
        s.fanout_sizes,
        s.fanout_secs,
        s.idle_levels,
        s.calls_pairs,
        s.calls_secs
    );
    out.push_str("#### Goals (issue #7)\n\n| goal | measured: median (min–max over repetitions) | verdict |\n|---|---|---|\n");
    for g in goals(results) {
        let _ = writeln!(out, "| {} | {} | {} |", g.goal, g.measured, g.verdict);
    }
    out.push('\n');

    let sections: Vec<(String, String, Vec<Metric>)> = {
        let mut v = vec![(
            "ack".to_string(),
            "ack: closed-loop request/ack (`presence:get` on Switchboard, `ping` on the baselines)"
                .to_string(),
            ack_metrics(),
        )];
        let mut sizes: Vec<u32> = results
            .measurements
            .iter()
            .filter_map(|m| m.scenario.strip_prefix("fanout:")?.parse().ok())
            .collect();
        sizes.sort_unstable();
        sizes.dedup();
        for size in sizes {
            v.push((format!("fanout:{size}"), format!("fanout: rooms / conversations of {size} (`message:send` on Switchboard, durable; `broadcast` on the baselines)"), fanout_metrics()));
        }
        v.push((
            "idle".into(),
            "idle: connected users (Switchboard: device session + presence, friends mode)".into(),
            idle_metrics(),
        ));
        v.push((
            "calls".into(),
            "calls: direct-call setup, closed loop (Node: seed 002's CallManager)".into(),
            calls_metrics(),
        ));
        v
    };
    for (scenario, title, metrics) in &sections {
        if !results.measurements.iter().any(|m| &m.scenario == scenario) {
            continue;
        }
        let _ = writeln!(out, "#### {title}\n");
        out.push_str(&scenario_table(results, scenario, metrics));
        out.push('\n');
        let ratio = ratio_table(results, scenario, metrics);
        if !ratio.is_empty() {
            out.push_str(&ratio);
            out.push('\n');
        }
        if scenario == "ack" {
            let fixed = fixed_rate_table(results);
            if !fixed.is_empty() {
                out.push_str("Fixed rate (latency from each request's scheduled send time; medians over repetitions):\n\n");
                out.push_str(&fixed);
                out.push('\n');
            }
        }
    }
    if !charts.is_empty() {
        out.push_str("#### Charts\n\n");
        for (title, file) in charts {
            let _ = writeln!(out, "![{title}]({file})\n");
        }
    }
    let failed = failures(results);
    if !failed.is_empty() {
        out.push_str("#### Failed measurements\n\n");
        out.push_str(&failed);
        out.push('\n');
    }
    out
}

/// Charts data: for each setup of `ack` on `backend`, `(rate, median p50, median p99)`.
pub fn latency_curves(results: &SuiteResults, backend: Backend) -> Vec<chart::LatencyCurve> {
    let mut out = Vec::new();
    for setup in setups(results, "ack")
        .into_iter()
        .filter(|s| s.backend == backend && s.instances == 1)
    {
        let mut by_rate: Vec<(f64, Vec<f64>, Vec<f64>)> = Vec::new();
        for m in results
            .measurements
            .iter()
            .filter(|m| matches(m, "ack", setup))
        {
            for (rate, p50, p99) in fixed_points(&m.outcome) {
                match by_rate.iter_mut().find(|e| e.0 == rate) {
                    Some(e) => {
                        e.1.push(p50);
                        e.2.push(p99);
                    }
                    None => by_rate.push((rate, vec![p50], vec![p99])),
                }
            }
        }
        by_rate.sort_by(|a, b| a.0.total_cmp(&b.0));
        let points = by_rate
            .into_iter()
            .map(|(r, a, b)| (r, median(&a), median(&b)))
            .collect::<Vec<_>>();
        if !points.is_empty() {
            out.push((setup.target.as_str().to_string(), points));
        }
    }
    out
}

/// Charts data: for each setup of `idle` on `backend`, `(connections, median RSS MiB)`.
pub fn rss_curves(results: &SuiteResults, backend: Backend) -> Vec<(String, Vec<(f64, f64)>)> {
    let mut out = Vec::new();
    for setup in setups(results, "idle")
        .into_iter()
        .filter(|s| s.backend == backend)
    {
        let mut by_level: Vec<(u32, Vec<f64>)> = Vec::new();
        for m in results
            .measurements
            .iter()
            .filter(|m| matches(m, "idle", setup))
        {
            if let Outcome::Idle(r) = &m.outcome {
                for (i, p) in r.points.iter().enumerate() {
                    let mib = p.rss_kib as f64 / 1024.0;
                    match by_level.get_mut(i) {
                        Some(e) => e.1.push(mib),
                        None => by_level.push((p.connections, vec![mib])),
                    }
                }
            }
        }
        let points = by_level
            .into_iter()
            .map(|(c, v)| (f64::from(c), median(&v)))
            .collect::<Vec<_>>();
        if !points.is_empty() {
            out.push((setup.target.as_str().to_string(), points));
        }
    }
    out
}

/// Draws the charts into `charts_dir` and rewrites the suite section of `docs`.
pub fn write(results: &SuiteResults, docs: &Path, charts_dir: &Path) -> Result<()> {
    let mut charts = Vec::new();
    let relative = |file: &str| -> String {
        let dir = charts_dir
            .strip_prefix(docs.parent().unwrap_or(Path::new("")))
            .unwrap_or(charts_dir);
        format!("{}/{file}", dir.display())
    };
    std::fs::create_dir_all(charts_dir)?;
    for backend in [Backend::Memory, Backend::Redis] {
        let curves = latency_curves(results, backend);
        if !curves.is_empty() {
            let file = format!("ack-latency-{}.png", backend.as_str());
            let title = format!("ack latency vs offered load ({} backend)", backend.as_str());
            match chart::latency_vs_load(&charts_dir.join(&file), &title, &curves) {
                Ok(()) => charts.push((title, relative(&file))),
                Err(e) => eprintln!("loadgen: no chart {file}: {e:#}"),
            }
        }
        let curves = rss_curves(results, backend);
        if !curves.is_empty() {
            let file = format!("idle-rss-{}.png", backend.as_str());
            let title = format!(
                "server RSS vs connected users ({} backend)",
                backend.as_str()
            );
            match chart::rss_vs_connections(&charts_dir.join(&file), &title, &curves) {
                Ok(()) => charts.push((title, relative(&file))),
                Err(e) => eprintln!("loadgen: no chart {file}: {e:#}"),
            }
        }
    }
    let section = render(results, &charts);
    crate::report::update_docs(docs, "suite", &section)?;
    eprintln!("loadgen: updated {}", docs.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::ack::{AckPhase, AckResult};
    use crate::scenario::idle::{IdlePoint, IdleResult};
    use crate::suite::{Profile, Settings};

    fn ack(target: Target, rep: u32, acks: u64, fixed_p99: f64) -> Measurement {
        Measurement {
            scenario: "ack".into(),
            target,
            backend: Backend::Memory,
            instances: 1,
            rep,
            outcome: Outcome::Ack(AckResult {
                clients: 10,
                window: 1,
                event: "ping".into(),
                closed: AckPhase {
                    window_secs: 10.0,
                    acks,
                    server_cpu_secs: 1.0,
                    p50_ms: 1.0,
                    p99_ms: 2.0,
                    ..AckPhase::default()
                },
                fixed: vec![AckPhase {
                    offered_rate: 1000.0,
                    window_secs: 10.0,
                    acks: 10_000,
                    p50_ms: 0.5,
                    p99_ms: fixed_p99,
                    ..AckPhase::default()
                }],
            }),
        }
    }

    fn idle(target: Target, rep: u32, kib_per_user: u64) -> Measurement {
        Measurement {
            scenario: "idle".into(),
            target,
            backend: Backend::Memory,
            instances: 1,
            rep,
            outcome: Outcome::Idle(IdleResult {
                points: vec![
                    IdlePoint {
                        connections: 0,
                        rss_kib: 10_000,
                    },
                    IdlePoint {
                        connections: 1000,
                        rss_kib: 10_000 + 1000 * kib_per_user,
                    },
                ],
                ..IdleResult::default()
            }),
        }
    }

    fn results(measurements: Vec<Measurement>) -> SuiteResults {
        SuiteResults {
            machine: "test".into(),
            cpu_model: "cpu".into(),
            cpus: 2,
            commit: "abc".into(),
            started: "t0".into(),
            finished: "t1".into(),
            settings: Settings::of(Profile::Quick),
            load_average: "1.0".into(),
            measurements,
        }
    }

    #[test]
    fn summaries_and_per_repetition_ratios() {
        let s = Summary::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        assert_eq!(s.render(1), "2.0 (1.0–3.0)");
        assert_eq!(Summary::of(&[5.0]).unwrap().render(0), "5");
        assert_eq!(Summary::of(&[]), None);
        // Repetition 3 of `b` is missing and repetition 2 is zero: neither gives a ratio.
        let a = [(1, 10.0), (2, 20.0), (3, 30.0)];
        let b = [(1, 5.0), (2, 0.0)];
        assert_eq!(ratios(&a, &b), vec![2.0]);
        assert_eq!(differences(&a, &b), vec![5.0, 20.0]);
    }

    #[test]
    fn report_has_tables_ratios_and_goals() {
        let r = results(vec![
            ack(Target::Switchboard, 1, 300_000, 1.0),
            ack(Target::Node, 1, 100_000, 4.0),
            ack(Target::Bare, 1, 400_000, 0.5),
            ack(Target::Switchboard, 2, 330_000, 1.0),
            ack(Target::Node, 2, 110_000, 2.0),
            idle(Target::Switchboard, 1, 30),
            idle(Target::Bare, 1, 28),
            Measurement {
                scenario: "idle".into(),
                target: Target::Node,
                backend: Backend::Memory,
                instances: 1,
                rep: 1,
                outcome: Outcome::Failed("boom".into()),
            },
        ]);
        let text = render(&r, &[("a chart".into(), "bench/a.png".into())]);
        // Throughput 30k vs 10k in both repetitions: ratio 3.0 against Node.
        assert!(
            text.contains("| ack throughput ≥ 2.5× Node | 3.00 (3.00–3.00)× | met (median) |"),
            "{text}"
        );
        assert!(
            text.contains("| ack throughput ≥ 0.8× bare socketioxide | 0.75× | missed |"),
            "{text}"
        );
        // p99 at 1000/s: 1 vs 4 ms, then 1 vs 2 ms → ratios 0.25 and 0.5, lower median 0.25.
        assert!(
            text.contains("0.25 (0.25–0.50)× | met (median) |"),
            "{text}"
        );
        assert!(text.contains("| RSS per connected user ≤ bare socketioxide's + 4 KiB | 2.0 KiB more | met (median) |"), "{text}");
        assert!(text.contains("| call setups/s ≥ 3× Node | — | not measured |"));
        assert!(
            text.contains("| switchboard / memory | 2 | 30000 (30000–33000) |"),
            "{text}"
        );
        assert!(
            text.contains("| switchboard ÷ node | memory | 3.00 (3.00–3.00)× |"),
            "{text}"
        );
        assert!(text.contains("![a chart](bench/a.png)"));
        assert!(text.contains("- idle against node / memory, repetition 1: boom"));
        // Every table row has as many cells as its header.
        for table in text.split("\n\n").filter(|t| t.starts_with('|')) {
            let columns = table.lines().next().unwrap().matches('|').count();
            assert!(
                table.lines().all(|l| l.matches('|').count() == columns),
                "{table}"
            );
        }
    }

    #[test]
    fn chart_series_take_medians_per_level() {
        let r = results(vec![
            idle(Target::Bare, 1, 20),
            idle(Target::Bare, 2, 40),
            idle(Target::Bare, 3, 30),
            ack(Target::Node, 1, 1, 4.0),
            ack(Target::Node, 2, 1, 2.0),
        ]);
        let rss = rss_curves(&r, Backend::Memory);
        assert_eq!(rss.len(), 1);
        assert_eq!(rss[0].0, "bare-socketioxide");
        assert_eq!(rss[0].1[1].0, 1000.0);
        assert!((rss[0].1[1].1 - (10_000.0 + 30_000.0) / 1024.0).abs() < 1e-9);
        let latency = latency_curves(&r, Backend::Memory);
        assert_eq!(
            latency,
            vec![("node".to_string(), vec![(1000.0, 0.5, 2.0)])]
        );
        assert!(latency_curves(&r, Backend::Redis).is_empty());
    }
}

//! The per-job cost breakdown: the phase histograms the workers (`shoal_worker_phase_seconds`,
//! served at their `--metrics-addr`) and the gateway (`shoal_gateway_phase_seconds` on its
//! `/metrics`) keep, read as OpenMetrics text before and after a step, the difference summed
//! over the processes, and each phase's count, mean, p50 and p99 read from the buckets.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shoal_testkit::CommandStats;

/// The workers' phase histogram.
pub const WORKER_METRIC: &str = "shoal_worker_phase_seconds";
/// The gateway's.
pub const GATEWAY_METRIC: &str = "shoal_gateway_phase_seconds";
/// Worker phases that are not work of their own: time queued, and the whole delivery.
const NOT_WORK: [&str; 2] = ["queued", "delivery"];

/// One phase's cumulative histogram: bucket upper bounds (seconds, `+Inf` last) with the
/// number of observations at or under each, their count and sum.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// (upper bound, cumulative count), in increasing bounds.
    pub buckets: Vec<(f64, f64)>,
    /// Observations.
    pub count: f64,
    /// Their sum, seconds.
    pub sum: f64,
}

impl Histogram {
    /// `self + other` (`sign` 1) or `self − other` (`sign` −1), bucket by bucket; a bound only
    /// one side has keeps that side's count.
    fn combine(&self, other: &Histogram, sign: f64) -> Histogram {
        let mut buckets: BTreeMap<u64, (f64, f64)> =
            self.buckets.iter().map(|&(le, n)| (le.to_bits(), (le, n))).collect();
        for &(le, n) in &other.buckets {
            buckets.entry(le.to_bits()).or_insert((le, 0.0)).1 += sign * n;
        }
        let mut buckets: Vec<(f64, f64)> = buckets.into_values().collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        Histogram { buckets, count: self.count + sign * other.count, sum: self.sum + sign * other.sum }
    }

    /// The `q`-quantile, seconds, interpolated linearly inside its bucket (the lowest bucket
    /// from 0; a quantile in `+Inf` is the highest finite bound).
    pub fn quantile(&self, q: f64) -> f64 {
        if self.count <= 0.0 {
            return 0.0;
        }
        let rank = q * self.count;
        let mut previous = (0.0, 0.0);
        for &(le, cumulative) in &self.buckets {
            if cumulative >= rank {
                if le.is_infinite() {
                    return previous.0;
                }
                let inside = cumulative - previous.1;
                let share = if inside > 0.0 { (rank - previous.1) / inside } else { 1.0 };
                return previous.0 + share * (le - previous.0);
            }
            previous = (le, cumulative);
        }
        previous.0
    }
}

/// Every `metric{phase="…"}` histogram in OpenMetrics `text`, by phase.
pub fn parse(text: &str, metric: &str) -> BTreeMap<String, Histogram> {
    parse_by(text, metric, "phase")
}

/// Every `metric{<by>="…"}` histogram in OpenMetrics `text`, by that label's value.
pub fn parse_by(text: &str, metric: &str, by: &str) -> BTreeMap<String, Histogram> {
    let mut phases: BTreeMap<String, Histogram> = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(metric) else { continue };
        let Some((kind, rest)) = rest.split_once('{') else { continue };
        let Some((labels, value)) = rest.split_once('}') else { continue };
        let Ok(value) = value.split_whitespace().next().unwrap_or("").parse::<f64>() else { continue };
        let label = |name: &str| {
            labels.split(',').find_map(|pair| pair.strip_prefix(name)?.strip_prefix("=\"")?.strip_suffix('"'))
        };
        let Some(phase) = label(by) else { continue };
        let histogram = phases.entry(phase.to_string()).or_default();
        match kind {
            "_bucket" => {
                let bound = match label("le") {
                    Some("+Inf") => f64::INFINITY,
                    Some(bound) => match bound.parse() {
                        Ok(bound) => bound,
                        Err(_) => continue,
                    },
                    None => continue,
                };
                histogram.buckets.push((bound, value));
            }
            "_count" => histogram.count = value,
            "_sum" => histogram.sum = value,
            _ => {}
        }
    }
    for histogram in phases.values_mut() {
        histogram.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    phases
}

/// The histograms of several processes, summed phase by phase.
pub fn merge(all: &[BTreeMap<String, Histogram>]) -> BTreeMap<String, Histogram> {
    let mut merged: BTreeMap<String, Histogram> = BTreeMap::new();
    for phases in all {
        for (phase, histogram) in phases {
            let sum = merged.get(phase).map_or_else(|| histogram.clone(), |m| m.combine(histogram, 1.0));
            merged.insert(phase.clone(), sum);
        }
    }
    merged
}

/// What `after` holds beyond `before` (a step's observations without the warm-up's).
pub fn since(after: &BTreeMap<String, Histogram>, before: &BTreeMap<String, Histogram>) -> BTreeMap<String, Histogram> {
    after
        .iter()
        .map(|(phase, histogram)| {
            (phase.clone(), before.get(phase).map_or_else(|| histogram.clone(), |b| histogram.combine(b, -1.0)))
        })
        .collect()
}

/// One phase's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseFigures {
    /// The phase's label.
    pub phase: String,
    /// Times it was observed.
    pub count: u64,
    /// Mean, microseconds (exact: the histogram's sum over its count).
    pub mean_us: f64,
    /// Median, microseconds (interpolated within a bucket 25 % wide).
    pub p50_us: f64,
    /// 99th percentile, microseconds (likewise).
    pub p99_us: f64,
    /// Its share of the time of all work phases, per cent (`queued` and `delivery`, which are
    /// not work of their own, have none).
    pub share_pct: f64,
}

/// Where the time of a job went at one rate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Breakdown {
    /// The workers' phases, summed over the workers.
    pub worker: Vec<PhaseFigures>,
    /// The gateway's.
    pub gateway: Vec<PhaseFigures>,
    /// The largest costs, worker and gateway phases together, by total time, largest first.
    pub dominant: Vec<String>,
    /// Redis's commands over the timed jobs, by name: the scripts, and the commands they call.
    #[serde(default)]
    pub redis_commands: BTreeMap<String, RedisCommand>,
}

/// One Redis command over a timed window, from `INFO commandstats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RedisCommand {
    /// Calls.
    pub calls: u64,
    /// Microseconds Redis spent in each, on average.
    pub us_per_call: f64,
}

/// The commands of `after` called at least `at_least` times since `before`.
pub(crate) fn redis_commands(
    before: &BTreeMap<String, CommandStats>,
    after: &BTreeMap<String, CommandStats>,
    at_least: u64,
) -> BTreeMap<String, RedisCommand> {
    after
        .iter()
        .filter_map(|(name, now)| {
            let then = before.get(name).copied().unwrap_or(CommandStats { calls: 0, usec: 0 });
            let calls = now.calls.saturating_sub(then.calls);
            let usec = now.usec.saturating_sub(then.usec);
            (calls >= at_least && calls > 0)
                .then(|| (name.clone(), RedisCommand { calls, us_per_call: usec as f64 / calls as f64 }))
        })
        .collect()
}

/// Figures for each phase of `phases`, in `order` (phases not in it after, by name).
fn figures(phases: &BTreeMap<String, Histogram>, order: &[&str]) -> Vec<PhaseFigures> {
    let work_total: f64 =
        phases.iter().filter(|(phase, _)| !NOT_WORK.contains(&phase.as_str())).map(|(_, h)| h.sum).sum();
    let rank = |phase: &str| order.iter().position(|p| *p == phase).unwrap_or(order.len());
    let mut named: Vec<(&String, &Histogram)> = phases.iter().filter(|(_, h)| h.count > 0.0).collect();
    named.sort_by_key(|(phase, _)| rank(phase));
    named
        .into_iter()
        .map(|(phase, h)| PhaseFigures {
            phase: phase.clone(),
            count: h.count.round() as u64,
            mean_us: h.sum / h.count * 1e6,
            p50_us: h.quantile(0.5) * 1e6,
            p99_us: h.quantile(0.99) * 1e6,
            share_pct: if NOT_WORK.contains(&phase.as_str()) || work_total <= 0.0 {
                0.0
            } else {
                h.sum / work_total * 100.0
            },
        })
        .collect()
}

/// The order phases are shown in: the order a job meets them.
const WORKER_ORDER: [&str; 12] = [
    "queued",
    "begin",
    "program",
    "inputs",
    "mounts",
    "run",
    "import",
    "receipt",
    "finish",
    "enqueue_verification",
    "ack",
    "delivery",
];
const GATEWAY_ORDER: [&str; 5] = ["auth", "read_body", "validate", "admit", "store"];

impl Breakdown {
    /// The breakdown of the workers' and the gateway's phase histograms; `dominant` names the
    /// three work phases with the most time in all, with their mean.
    pub fn of(worker: &BTreeMap<String, Histogram>, gateway: &BTreeMap<String, Histogram>) -> Breakdown {
        let worker_figures = figures(worker, &WORKER_ORDER);
        let gateway_figures = figures(gateway, &GATEWAY_ORDER);
        let mut costs: Vec<(String, f64, f64)> = worker
            .iter()
            .filter(|(phase, h)| !NOT_WORK.contains(&phase.as_str()) && h.count > 0.0)
            .map(|(phase, h)| (format!("worker {phase}"), h.sum, h.sum / h.count))
            .chain(
                gateway
                    .iter()
                    .filter(|(_, h)| h.count > 0.0)
                    .map(|(phase, h)| (format!("gateway {phase}"), h.sum, h.sum / h.count)),
            )
            .collect();
        costs.sort_by(|a, b| b.1.total_cmp(&a.1));
        let dominant =
            costs.iter().take(3).map(|(name, _, mean)| format!("{name} ({:.0} µs a job)", mean * 1e6)).collect();
        Breakdown { worker: worker_figures, gateway: gateway_figures, dominant, redis_commands: BTreeMap::new() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# HELP shoal_worker_phase_seconds Time spent in each phase of a delivery, seconds.
# TYPE shoal_worker_phase_seconds histogram
shoal_worker_phase_seconds_sum{phase=\"run\"} 0.03
shoal_worker_phase_seconds_count{phase=\"run\"} 10
shoal_worker_phase_seconds_bucket{le=\"0.001\",phase=\"run\"} 0
shoal_worker_phase_seconds_bucket{le=\"0.002\",phase=\"run\"} 4
shoal_worker_phase_seconds_bucket{le=\"0.004\",phase=\"run\"} 10
shoal_worker_phase_seconds_bucket{le=\"+Inf\",phase=\"run\"} 10
shoal_worker_phase_seconds_sum{phase=\"ack\"} 0.001
shoal_worker_phase_seconds_count{phase=\"ack\"} 10
shoal_worker_phase_seconds_bucket{le=\"0.001\",phase=\"ack\"} 10
shoal_worker_phase_seconds_bucket{le=\"+Inf\",phase=\"ack\"} 10
shoal_gateway_phase_seconds_count{phase=\"store\"} 3
# EOF
";

    #[test]
    fn histograms_are_read_by_phase_and_their_quantiles_interpolated() {
        let phases = parse(TEXT, WORKER_METRIC);
        assert_eq!(phases.len(), 2);
        let run = &phases["run"];
        assert_eq!((run.count, run.sum), (10.0, 0.03));
        assert_eq!(run.buckets.last(), Some(&(f64::INFINITY, 10.0)));
        // Rank 5 of 10: the 5th observation is the first of the 6 in (2 ms, 4 ms].
        assert!((run.quantile(0.5) - (0.002 + 0.002 / 6.0)).abs() < 1e-12);
        assert!((run.quantile(0.99) - (0.002 + 0.002 * 5.9 / 6.0)).abs() < 1e-12);
        // All in the lowest bucket: interpolated from 0.
        assert!((phases["ack"].quantile(0.5) - 0.0005).abs() < 1e-12);
        assert_eq!(parse(TEXT, GATEWAY_METRIC)["store"].count, 3.0);
        let outcomes = "shoal_gateway_submit_duration_seconds_count{outcome=\"memoised\"} 7\n";
        assert_eq!(parse_by(outcomes, "shoal_gateway_submit_duration_seconds", "outcome")["memoised"].count, 7.0);
    }

    #[test]
    fn a_step_is_what_the_processes_added_since_the_warm_up() {
        let one = parse(TEXT, WORKER_METRIC);
        let two = merge(&[one.clone(), one.clone()]);
        assert_eq!(two["run"].count, 20.0);
        assert_eq!(two["run"].buckets[1], (0.002, 8.0));
        let step = since(&two, &one);
        assert_eq!(step["run"], one["run"]);
        assert_eq!(since(&one, &BTreeMap::new()), one);
    }

    #[test]
    fn the_breakdown_names_the_largest_costs_and_their_shares() {
        let worker = parse(TEXT, WORKER_METRIC);
        let breakdown = Breakdown::of(&worker, &BTreeMap::new());
        let phases: Vec<&str> = breakdown.worker.iter().map(|p| p.phase.as_str()).collect();
        assert_eq!(phases, ["run", "ack"]);
        assert!((breakdown.worker[0].mean_us - 3000.0).abs() < 1e-6);
        assert!((breakdown.worker[0].share_pct - 3000.0 / 31.0).abs() < 1e-9);
        assert_eq!(breakdown.dominant, ["worker run (3000 µs a job)", "worker ack (100 µs a job)"]);
    }
}

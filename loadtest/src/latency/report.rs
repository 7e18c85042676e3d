//! The latency report: Shoal's and BullMQ's figures at each offered rate side by side, the
//! ratios, the highest sustainable rates, the machine's load, and where a Shoal job's time went
//! at one rate; the memoised repeats, when measured. Written as `PREFIX.json` and `PREFIX.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::latency::bullmq::Baseline;
use crate::latency::memoised::{MemoisedFigures, Spread, TARGET_P99_MS};
use crate::latency::options::LatencyOptions;
use crate::latency::phases::{Breakdown, PhaseFigures, RedisCommand};
use crate::latency::shoal::WaitMethod;
use crate::latency::step::{max_sustainable, StepFigures, SUSTAINABLE_P99_MS};
use crate::report::RunReport;

/// Shoal against BullMQ at one offered rate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ratio {
    /// Submissions a second offered.
    pub offered_per_s: f64,
    /// Shoal's p50 over BullMQ's.
    pub p50: f64,
    /// Shoal's p99 over BullMQ's.
    pub p99: f64,
    /// Shoal's achieved rate over BullMQ's.
    pub completed_per_s: f64,
}

/// What a latency run found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LatencyReport {
    /// The command line.
    pub command: String,
    /// When the run started, seconds since the Unix epoch.
    pub started_at_unix_s: u64,
    /// CPUs of the machine.
    pub cores: usize,
    /// Seconds of submitting at each rate, and of waiting after.
    pub secs: f64,
    /// Seconds of waiting after the submitting.
    pub drain_secs: f64,
    /// Shoal's worker processes and the jobs each runs at once.
    pub workers: usize,
    /// Jobs each worker runs at once.
    pub worker_concurrency: usize,
    /// How Shoal's clients waited for results (none without rates).
    pub wait: Option<WaitMethod>,
    /// The same, in words.
    pub wait_method: String,
    /// Shoal's figures at each rate.
    pub shoal: Vec<StepFigures>,
    /// The highest offered rate Shoal sustained (p99 under a second, no growing backlog).
    pub shoal_max_sustainable_per_s: Option<f64>,
    /// The BullMQ baseline's run, if it ran.
    pub bullmq: Option<Baseline>,
    /// Why the baseline did not run, if it was asked for and failed.
    pub bullmq_error: Option<String>,
    /// The highest offered rate BullMQ sustained.
    pub bullmq_max_sustainable_per_s: Option<f64>,
    /// Shoal over BullMQ at each rate both ran.
    pub ratios: Vec<Ratio>,
    /// The rate whose breakdown the Markdown shows.
    pub breakdown_at_per_s: Option<f64>,
    /// The memoised repeats, if measured (`--memoised`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memoised: Option<MemoisedFigures>,
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

impl LatencyReport {
    /// The report of Shoal's `steps` (clients waiting as `wait` says), the baseline (`None` if
    /// skipped) and the memoised repeats (`None` if not measured).
    pub fn new(
        options: &LatencyOptions,
        command: String,
        started_at_unix_s: u64,
        wait: Option<WaitMethod>,
        shoal: Vec<StepFigures>,
        baseline: Option<std::result::Result<Baseline, String>>,
        memoised: Option<MemoisedFigures>,
    ) -> LatencyReport {
        let (bullmq, bullmq_error) = match baseline {
            Some(Ok(baseline)) => (Some(baseline), None),
            Some(Err(e)) => (None, Some(e)),
            None => (None, None),
        };
        let ratios = bullmq
            .iter()
            .flat_map(|b| &b.steps)
            .filter_map(|theirs| {
                let ours = shoal.iter().find(|s| s.offered_per_s == theirs.offered_per_s)?;
                Some(Ratio {
                    offered_per_s: ours.offered_per_s,
                    p50: ratio(ours.p50_ms, theirs.p50_ms),
                    p99: ratio(ours.p99_ms, theirs.p99_ms),
                    completed_per_s: ratio(ours.completed_per_s, theirs.completed_per_s),
                })
            })
            .collect();
        let shoal_max_sustainable_per_s = max_sustainable(&shoal);
        let breakdown_at_per_s = options
            .breakdown_at
            .filter(|rate| shoal.iter().any(|s| s.offered_per_s == *rate))
            .or(shoal_max_sustainable_per_s)
            .or_else(|| shoal.first().map(|s| s.offered_per_s));
        LatencyReport {
            command,
            started_at_unix_s,
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            secs: options.secs,
            drain_secs: options.drain_secs,
            workers: options.workers,
            worker_concurrency: options.worker_concurrency,
            wait,
            wait_method: wait.map(WaitMethod::describe).unwrap_or_default().to_string(),
            shoal_max_sustainable_per_s,
            bullmq_max_sustainable_per_s: bullmq.as_ref().and_then(|b| max_sustainable(&b.steps)),
            shoal,
            bullmq,
            bullmq_error,
            ratios,
            breakdown_at_per_s,
            memoised,
        }
    }

    /// The breakdown the Markdown shows, its rate and the jobs it covers.
    fn breakdown(&self) -> Option<(f64, &Breakdown, usize)> {
        let rate = self.breakdown_at_per_s?;
        let step = self.shoal.iter().find(|s| s.offered_per_s == rate)?;
        Some((rate, step.breakdown.as_ref()?, step.completed))
    }
}

fn rate_text(rate: Option<f64>) -> String {
    rate.map_or_else(|| "none of the rates".to_string(), |r| format!("{r}/s"))
}

fn step_row(md: &mut String, system: &str, s: &StepFigures) {
    let bound = if s.lower_bounds { "≥ " } else { "" };
    let _ = writeln!(
        md,
        "| {} | {system} | {:.0} | {} / {} / {} | {bound}{:.1} | {bound}{:.1} | {bound}{:.1} | {bound}{:.0} | {:+.0} | {} | {:.2} | {:.1} | {:.2} → {:.2} |",
        s.offered_per_s,
        s.completed_per_s,
        s.completed,
        s.unfinished,
        s.refused + s.failed + s.wrong,
        s.p50_ms,
        s.p95_ms,
        s.p99_ms,
        s.max_ms,
        s.backlog_slope_per_s,
        if s.sustainable { "yes" } else { "no" },
        s.cpu_ms_per_job,
        s.switches_per_job,
        s.loadavg.0,
        s.loadavg.1,
    );
}

fn spread_row(md: &mut String, what: &str, s: &Spread) {
    let _ = writeln!(
        md,
        "| {what} | {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
        s.count, s.mean_ms, s.p50_ms, s.p95_ms, s.p99_ms, s.max_ms
    );
}

/// `n` with its digits in threes (`1,000,000`). By hand: a formatting crate for one number in a
/// sentence would outweigh these lines.
fn grouped(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// The memoised repeats' section.
fn memoised_section(md: &mut String, m: &MemoisedFigures) {
    let _ = writeln!(
        md,
        "## Memoised repeats\n\nOn a stack with a verifier, one echo-hash job verified `always`, accepted after \
         {:.0} ms; then its identical spec POSTed {} times in a row on one keep-alive connection, without an \
         Idempotency-Key, after {} not counted, the tenant's submissions a second raised to {} (still \
         counted, as every submission is): {} answered `201` from the memo, {} otherwise{}. Server time \
         is each answer's `Server-Timing` (the gateway's submit handler, start to answer: `admit` the tenant's \
         quota checks, `store` creating the job from the memo; authentication, before it, is the `auth` phase \
         below); the round trip is the client's, request sent to answer read. Load average {:.2} → {:.2}.\n",
        m.accepted_after_ms,
        m.repeats,
        m.warm_up,
        grouped(m.submissions_per_sec),
        m.memoised,
        m.other,
        m.first_other.as_ref().map(|first| format!(" (the first: {first})")).unwrap_or_default(),
        m.loadavg.0,
        m.loadavg.1,
    );
    let _ = writeln!(md, "| ms | count | mean | p50 | p95 | p99 | max |\n|---|---|---|---|---|---|---|");
    spread_row(md, "server time", &m.server);
    spread_row(md, "of which admit", &m.admit);
    spread_row(md, "of which store", &m.store);
    spread_row(md, "client round trip", &m.client);
    if m.server.count == 0 {
        let _ = writeln!(
            md,
            "\nThe answers carried no `Server-Timing` (a gateway from before it): the server time is the \
             histogram's below alone."
        );
    }
    let _ = writeln!(
        md,
        "\nServer time p99 {:.3} ms: the target (under {TARGET_P99_MS} ms) is {}. Cross-check, the gateway's \
         `shoal_gateway_submit_duration_seconds{{outcome=\"memoised\"}}` over the timed repeats: {} observed, \
         mean {:.3} ms, p99 ≈ {:.3} ms (interpolated in its bucket).\n",
        m.server.p99_ms,
        if m.meets_target { "met" } else { "not met" },
        m.histogram_count,
        m.histogram_mean_ms,
        m.histogram_p99_ms,
    );
    let _ = writeln!(md, "Gateway phases over the timed repeats:\n");
    phase_table(md, &m.phases);
    let _ = writeln!(
        md,
        "\nRedis commands called at least once a repeat (a script's own commands count too, and its time \
         includes theirs):\n\n| command | calls | µs a call |\n|---|---|---|"
    );
    for (name, command) in &m.redis_commands {
        let _ = writeln!(md, "| {name} | {} | {:.1} |", command.calls, command.us_per_call);
    }
    let cpu: Vec<String> = m.cpu_ms_per_repeat.iter().map(|(p, ms)| format!("{p} {:.3} ms", ms)).collect();
    let _ = writeln!(md, "\nCPU per repeat: {}.", cpu.join(", "));
}

/// Redis's commands over `jobs` timed jobs, the busiest first: what Redis spent on a job (the
/// commands called for fewer than one job in a hundred left out).
fn redis_table(md: &mut String, commands: &BTreeMap<String, RedisCommand>, jobs: usize) {
    if commands.is_empty() || jobs == 0 {
        return;
    }
    let _ = writeln!(
        md,
        "\nRedis, over the timed jobs (`INFO commandstats`; a script's own commands count too, and its time \
         includes theirs; with the harness's own reads):\n\n| command | calls a job | µs a call | µs a job |\n|---|---|---|---|"
    );
    let mut busiest: Vec<(&String, &RedisCommand)> = commands.iter().collect();
    busiest.sort_by(|a, b| (b.1.calls as f64 * b.1.us_per_call).total_cmp(&(a.1.calls as f64 * a.1.us_per_call)));
    for (name, command) in busiest {
        let per_job = command.calls as f64 / jobs as f64;
        if per_job < 0.01 {
            continue;
        }
        let _ = writeln!(
            md,
            "| {name} | {per_job:.2} | {:.1} | {:.1} |",
            command.us_per_call,
            per_job * command.us_per_call
        );
    }
}

fn phase_table(md: &mut String, phases: &[PhaseFigures]) {
    let _ = writeln!(md, "| phase | count | mean µs | p50 µs | p99 µs | share of work |\n|---|---|---|---|---|---|");
    for p in phases {
        let share = if p.share_pct > 0.0 { format!("{:.1} %", p.share_pct) } else { "—".into() };
        let _ = writeln!(
            md,
            "| {} | {} | {:.0} | {:.0} | {:.0} | {share} |",
            p.phase, p.count, p.mean_us, p.p50_us, p.p99_us
        );
    }
}

impl RunReport for LatencyReport {
    fn summary(&self) -> String {
        let mut text = String::new();
        if let Some(m) = &self.memoised {
            let _ = writeln!(
                text,
                "memoised ×{}: {} from the memo; server p50 {:.3} ms p99 {:.3} ms mean {:.3} ms ({}); \
                 round trip p50 {:.3} ms p99 {:.3} ms",
                m.repeats,
                m.memoised,
                m.server.p50_ms,
                m.server.p99_ms,
                m.server.mean_ms,
                if m.meets_target { "target met" } else { "target not met" },
                m.client.p50_ms,
                m.client.p99_ms
            );
            if self.shoal.is_empty() {
                return text;
            }
        }
        for s in &self.shoal {
            let _ = writeln!(
                text,
                "shoal  {:>6}/s: p50 {:.1} ms p99 {:.1} ms, {:.0} done/s, {}",
                s.offered_per_s,
                s.p50_ms,
                s.p99_ms,
                s.completed_per_s,
                if s.sustainable { "sustained" } else { "not sustained" }
            );
        }
        for s in self.bullmq.iter().flat_map(|b| &b.steps) {
            let _ = writeln!(
                text,
                "bullmq {:>6}/s: p50 {:.1} ms p99 {:.1} ms, {:.0} done/s, {}",
                s.offered_per_s,
                s.p50_ms,
                s.p99_ms,
                s.completed_per_s,
                if s.sustainable { "sustained" } else { "not sustained" }
            );
        }
        if let Some(e) = &self.bullmq_error {
            let _ = writeln!(text, "bullmq baseline failed: {e}");
        }
        let _ = writeln!(
            text,
            "max sustainable: shoal {}, bullmq {}; clients waited by {}",
            rate_text(self.shoal_max_sustainable_per_s),
            rate_text(self.bullmq_max_sustainable_per_s),
            match self.wait {
                Some(WaitMethod::OnSubmit) => "submitting and waiting",
                Some(WaitMethod::LongPoll) => "long-poll",
                Some(WaitMethod::Polling) => "polling",
                None => "nothing",
            }
        );
        text
    }

    fn passed(&self) -> bool {
        self.bullmq_error.is_none()
            && self.shoal.iter().all(|s| s.wrong == 0 && s.failed == 0)
            && self.memoised.as_ref().is_none_or(|m| m.other == 0)
    }

    fn documents(&self, _name: &str) -> Vec<(&'static str, String)> {
        let mut md = String::new();
        if self.shoal.is_empty() {
            let _ = writeln!(md, "# Latency: memoised repeats\n");
            let _ = writeln!(md, "`{}`\n", self.command);
            if let Some(m) = &self.memoised {
                memoised_section(&mut md, m);
            }
            return vec![("md", md)];
        }
        let _ = writeln!(md, "# Latency: Shoal against BullMQ\n");
        let _ = writeln!(md, "`{}`\n", self.command);
        let _ = writeln!(
            md,
            "Open-loop submissions at each offered rate for {} s, then up to {} s of waiting; latency is from \
             the moment a submission was due to its result being seen by its client (a client falling behind \
             counts against the system). Shoal: echo-hash over small cached files, verification none, over \
             HTTP to a fresh stack per rate (Redis, gateway, {} workers × {} slots), every output checked; \
             clients waited by {}. BullMQ: no-op jobs, producer and worker in one Node process, concurrency \
             {}, its own redis-server (same build, same append-only settings){}. Everything on this \
             {}-core machine at once, the load generator included.\n",
            self.secs,
            self.drain_secs,
            self.workers,
            self.worker_concurrency,
            self.wait_method,
            self.bullmq.as_ref().map_or(100, |b| b.concurrency),
            self.bullmq.as_ref().map(|b| format!(" ({})", b.versions)).unwrap_or_default(),
            self.cores,
        );
        let _ = writeln!(
            md,
            "Sustainable: p99 under {SUSTAINABLE_P99_MS} ms, the backlog (jobs due and not yet seen finished, \
             submissions not yet answered included) not growing (its slope over the second half of the \
             submitting under 5 % of the rate + 1/s), every job finished, none refused. \
             \"≥\": jobs still unfinished were counted at their wait so far.\n"
        );
        let _ = writeln!(
            md,
            "| offered/s | system | done/s | done / unfinished / refused+failed | p50 ms | p95 ms | p99 ms | max ms | backlog /s | sustainable | CPU ms/job | switches/job | loadavg |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        );
        for s in &self.shoal {
            step_row(&mut md, "Shoal", s);
            if let Some(theirs) = self.bullmq.iter().flat_map(|b| &b.steps).find(|t| t.offered_per_s == s.offered_per_s)
            {
                step_row(&mut md, "BullMQ", theirs);
            }
        }
        let _ = writeln!(
            md,
            "\nMaximum sustainable rate: Shoal {}, BullMQ {}.",
            rate_text(self.shoal_max_sustainable_per_s),
            rate_text(self.bullmq_max_sustainable_per_s)
        );
        if let Some(e) = &self.bullmq_error {
            let _ = writeln!(md, "\nThe BullMQ baseline failed: {e}");
        }
        if !self.ratios.is_empty() {
            let _ = writeln!(md, "\n## Shoal / BullMQ\n\n| offered/s | p50 | p99 | done/s |\n|---|---|---|---|");
            for r in &self.ratios {
                let _ =
                    writeln!(md, "| {} | {:.1}× | {:.1}× | {:.2}× |", r.offered_per_s, r.p50, r.p99, r.completed_per_s);
            }
        }
        let _ = writeln!(
            md,
            "\n## CPU and context switches by process\n\nVoluntary context switches, a thread's each wait \
             (summed over each process's threads, from `/proc/PID/task/*/status`; preemptions left out): \
             per job, the hand-offs a job takes between threads and processes.\n\n\
             | offered/s | system | CPU s | context switches per finished job |\n|---|---|---|---|"
        );
        for (system, steps) in
            [("Shoal", &self.shoal[..]), ("BullMQ", self.bullmq.as_ref().map_or(&[][..], |b| &b.steps[..]))]
        {
            for s in steps {
                let cpu: Vec<String> = s.cpu_s.iter().map(|(p, c)| format!("{p} {c:.2}")).collect();
                let per_job = |n: u64| if s.completed == 0 { 0.0 } else { n as f64 / s.completed as f64 };
                let switches: Vec<String> =
                    s.context_switches.iter().map(|(p, &n)| format!("{p} {:.1}", per_job(n))).collect();
                let _ =
                    writeln!(md, "| {} | {system} | {} | {} |", s.offered_per_s, cpu.join(", "), switches.join(", "));
            }
        }
        if let Some((rate, breakdown, jobs)) = self.breakdown() {
            let _ = writeln!(
                md,
                "\n## Where a Shoal job's time goes, at {rate}/s\n\nFrom the workers' `shoal_worker_phase_seconds` \
                 (served at `shoal worker --metrics-addr`) and the gateway's `shoal_gateway_phase_seconds` \
                 histograms, the warm-up's observations taken off; means are exact, percentiles interpolated \
                 within buckets 25 % wide. `queued` (entry added → a worker starts on it) and `delivery` (start \
                 → the slot given back) are not work of their own; `finish` acknowledges the job's entry too \
                 on one Redis node, and `ack` (entries acknowledged otherwise, a batch at a time) is \
                 counted per batch, not per job; shares are of the other phases' total time.\n"
            );
            let _ = writeln!(md, "Worker:\n");
            phase_table(&mut md, &breakdown.worker);
            let _ = writeln!(md, "\nGateway (`auth` is every request's, the rest a submission's):\n");
            phase_table(&mut md, &breakdown.gateway);
            let _ = writeln!(md, "\nThe largest costs: {}.", breakdown.dominant.join("; "));
            redis_table(&mut md, &breakdown.redis_commands, jobs);
        }
        if let Some(m) = &self.memoised {
            md.push('\n');
            memoised_section(&mut md, m);
        }
        vec![("md", md)]
    }
}

#[cfg(test)]
mod tests {
    use super::grouped;

    #[test]
    fn numbers_are_grouped_in_threes() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1_000), "1,000");
        assert_eq!(grouped(2_000), "2,000");
        assert_eq!(grouped(123_456_789), "123,456,789");
        assert_eq!(grouped(1_000_000), "1,000,000");
    }
}

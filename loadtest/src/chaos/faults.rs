//! The fault schedule of a reliability run: SIGKILL and replace workers and verifiers,
//! SIGSTOP/SIGCONT workers, restart Redis and the gateway, each at its time, every fault recorded.

use std::sync::Arc;
use std::time::Duration;

use indicatif::ProgressBar;
use shoal_testkit::{ProcessStack, Role};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::chaos::options::{Options, Replace};
use crate::chaos::setup::verifier_id;
use crate::figures::FaultRecord;
use crate::workload::SplitMix;

/// Seconds since `t0`.
fn since(t0: Instant) -> f64 {
    t0.elapsed().as_secs_f64()
}

/// Injects the scheduled faults until told the run is done or the deadline passes; resumes any
/// worker still paused at the end. Returns what was done.
pub async fn inject_faults(
    stack: Arc<ProcessStack>,
    options: Options,
    t0: Instant,
    deadline: Instant,
    mut done: watch::Receiver<bool>,
    bar: ProgressBar,
) -> Vec<FaultRecord> {
    let mut records: Vec<FaultRecord> = Vec::new();
    let mut rng = SplitMix::new(options.seed ^ 0xFA_0175);
    let mut next_kill = options.kill_every_secs.filter(|t| *t > 0.0);
    let mut next_pause = options.pause_every_secs.filter(|t| *t > 0.0);
    let mut next_verifier_kill = options.kill_verifier_every_secs.filter(|t| *t > 0.0);
    let mut verifiers_started = options.verifiers;
    let (mut kills, mut pauses) = (0, 0);
    let mut redis_at = options.restart_redis_at.clone();
    let mut gateway_at = options.restart_gateway_at.clone();
    redis_at.sort_by(|a, b| b.total_cmp(a));
    gateway_at.sort_by(|a, b| b.total_cmp(a));
    let mut resumes: Vec<(f64, String)> = Vec::new();
    let record = |records: &mut Vec<FaultRecord>, kind: &str, target: &str, detail: String, ok: bool| {
        records.push(FaultRecord { at_s: since(t0), kind: kind.into(), target: target.into(), detail, ok });
        bar.set_message(format!("faults: {} (last: {kind} {target})", records.len()));
    };
    while !*done.borrow() && Instant::now() < deadline {
        let now = since(t0);
        let (due, later): (Vec<_>, Vec<_>) = resumes.drain(..).partition(|(at, _)| *at <= now);
        resumes = later;
        for (_, id) in due {
            let result = stack.signal_worker(&id, false);
            record(
                &mut records,
                "resume_worker",
                &id,
                result.as_ref().err().map(ToString::to_string).unwrap_or_default(),
                result.is_ok(),
            );
        }
        if let Some(at) = next_kill.filter(|at| *at <= now) {
            let running = stack.running_workers();
            if running.is_empty() {
                record(&mut records, "kill_worker", "-", "no running worker to kill".into(), false);
            } else {
                let victim = running[rng.below(running.len())].clone();
                let (detail, ok) = match stack.kill_worker(&victim) {
                    Err(e) => (e.to_string(), false),
                    Ok(()) => {
                        let replacement = match options.replace {
                            Replace::SameId => Some(victim.clone()),
                            Replace::NewId => Some(stack.new_worker_id()),
                            Replace::None => None,
                        };
                        match replacement {
                            None => ("SIGKILL, not replaced".to_string(), true),
                            Some(id) => match stack.start_worker(&id) {
                                Ok(()) => (format!("SIGKILL, replaced by {id} ({})", options.replace.as_str()), true),
                                Err(e) => (format!("SIGKILL, replacement {id} failed: {e}"), false),
                            },
                        }
                    }
                };
                record(&mut records, "kill_worker", &victim, detail, ok);
            }
            kills += 1;
            next_kill =
                options.max_kills.is_none_or(|max| kills < max).then(|| at + options.kill_every_secs.unwrap_or(1.0));
        }
        if let Some(at) = next_verifier_kill.filter(|at| *at <= now) {
            let running = stack.running(Role::Verifier);
            if let Some(victim) = (!running.is_empty()).then(|| running[rng.below(running.len())].clone()) {
                let replacement = verifier_id(verifiers_started);
                verifiers_started += 1;
                let (detail, ok) = match stack.kill_worker(&victim) {
                    Err(e) => (e.to_string(), false),
                    Ok(()) => match stack.start_verifier(&replacement, options.sample_rate) {
                        Ok(()) => (format!("SIGKILL, replaced by {replacement}"), true),
                        Err(e) => (format!("SIGKILL, replacement {replacement} failed: {e}"), false),
                    },
                };
                record(&mut records, "kill_verifier", &victim, detail, ok);
            }
            next_verifier_kill = Some(at + options.kill_verifier_every_secs.unwrap_or(1.0));
        }
        if let Some(at) = next_pause.filter(|at| *at <= now) {
            let running = stack.running_workers();
            // Keep one worker running: pausing the last one only measures the pause.
            if running.len() > 1 {
                let victim = running[rng.below(running.len())].clone();
                let result = stack.signal_worker(&victim, true);
                if result.is_ok() {
                    resumes.push((now + options.pause_for_secs, victim.clone()));
                }
                let detail = result
                    .as_ref()
                    .map_or_else(ToString::to_string, |_| format!("SIGSTOP for {} s", options.pause_for_secs));
                record(&mut records, "pause_worker", &victim, detail, result.is_ok());
            }
            pauses += 1;
            next_pause =
                options.max_pauses.is_none_or(|max| pauses < max).then(|| at + options.pause_every_secs.unwrap_or(1.0));
        }
        if redis_at.last().is_some_and(|at| *at <= now) {
            redis_at.pop();
            let started = Instant::now();
            let result = stack.restart_redis().await;
            let detail = match &result {
                Ok(()) => format!("SIGKILL, back in {} ms (AOF reloaded)", started.elapsed().as_millis()),
                Err(e) => e.to_string(),
            };
            record(&mut records, "restart_redis", "redis", detail, result.is_ok());
        }
        if gateway_at.last().is_some_and(|at| *at <= now) {
            gateway_at.pop();
            let started = Instant::now();
            let result = stack.restart_gateway().await;
            let detail = match &result {
                Ok(()) => format!("SIGKILL, answering again in {} ms", started.elapsed().as_millis()),
                Err(e) => e.to_string(),
            };
            record(&mut records, "restart_gateway", "gateway", detail, result.is_ok());
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            _ = done.changed() => {}
        }
    }
    for (_, id) in resumes {
        let result = stack.signal_worker(&id, false);
        record(
            &mut records,
            "resume_worker",
            &id,
            result.as_ref().err().map(ToString::to_string).unwrap_or_default(),
            result.is_ok(),
        );
    }
    records
}

//! Pipelines through a whole stack, driven by the workers: the cloud pipeline over tiles of the
//! real Landsat scene (detect each, remove clouds only where the detect stats say so, one
//! summary over all), memoised when submitted again, a threshold no tile passes (a fan-in of
//! nothing), a condition on a field that is not there, a stage that stops the pipeline when it fails
//! (and runs again in the same pipeline submitted again: a failure is not memoised),
//! cancellation, and a pipeline outliving the worker process that drove it and ran its stage.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shoal_jobs::keys::RedisRole;
use shoal_jobs::{
    Job, JobState, PipelineSpec, PipelineState, PipelineStatus, PipelineStore, RedisConnection, Tenant, UnitState,
};
use shoal_testkit::{repo_root, Stack, StackOptions, TEST_TENANT};

use crate::landsat::{cut_tile, SCENE, THRESHOLD, TILES};

const WAIT: Duration = Duration::from_secs(300);

async fn store(stack: &Stack) -> PipelineStore {
    PipelineStore::new(RedisConnection::open(&[stack.redis.url_for(RedisRole::Gateway)]).await.unwrap())
}

async fn submit(stack: &Stack, spec: &Value) -> String {
    let spec = PipelineSpec::from_json(spec.to_string().as_bytes()).unwrap();
    let tenant: Tenant = TEST_TENANT.parse().unwrap();
    store(stack).await.create(&spec, &tenant, None).await.unwrap().pipeline().id.clone()
}

/// Waits until pipeline `id` is no longer running.
async fn ended(stack: &Stack, id: &str) -> PipelineStatus {
    let store = store(stack).await;
    let deadline = Instant::now() + WAIT;
    loop {
        let status = store.status(id).await.unwrap().expect("the pipeline exists");
        if status.state != PipelineState::Running {
            return status;
        }
        assert!(Instant::now() < deadline, "pipeline {id} still running: {status:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The cloud pipeline over `scenes`, removing clouds over `threshold`; no stage verified, so
/// the test needs no verifier.
fn cloud_pipeline(stack_programs: &BTreeMap<&str, String>, scenes: &str, threshold: f64) -> Value {
    let none = json!({"mode": "none"});
    json!({
        "inputs": {"scenes": scenes},
        "stages": [
            {"name": "detect", "program": stack_programs["cloud-detect"], "verification": none,
             "inputs": [{"from": "pipeline.scenes", "path": "/inputs"}], "each": {"input": 0},
             "writes": ["mask.png", "preview.png", "stats.json"]},
            {"name": "remove", "program": stack_programs["cloud-remove"], "verification": none,
             "inputs": [{"from": "pipeline.scenes", "path": "/inputs"}, {"from": "detect", "path": "/mask"}],
             "each": {"input": 0},
             "when": {"stage": "detect", "file": "stats.json", "field": "cloud_fraction", "op": "gt", "value": threshold},
             "writes": ["clear.png"], "on_failure": "continue"},
            {"name": "summary", "program": stack_programs["cloud-summary"], "verification": none,
             "inputs": [{"from": "detect.all", "path": "/detected"}, {"from": "remove.all", "path": "/cleared"}]}
        ]
    })
}

fn stage<'a>(status: &'a PipelineStatus, name: &str) -> &'a shoal_jobs::StageStatus {
    status.stages.iter().find(|stage| stage.name == name).unwrap()
}

fn job_ids(status: &PipelineStatus) -> Vec<String> {
    status.stages.iter().flat_map(|stage| stage.units.iter().filter_map(|unit| unit.job.clone())).collect()
}

async fn shard_of(stack: &Stack, job: &str) -> u32 {
    let job: Job = stack.job(job).await.unwrap();
    job.shard
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cloud_pipeline_removes_clouds_exactly_where_detect_found_them_and_runs_once() {
    let scene = repo_root().join(SCENE);
    assert!(scene.is_dir(), "{} is missing: run scripts/fetch-data.sh (make test does)", scene.display());
    let stack = Stack::start(StackOptions { workers: 2, ..StackOptions::default() }).await.unwrap();
    let mut programs = BTreeMap::new();
    for name in ["cloud-detect", "cloud-remove", "cloud-summary"] {
        programs.insert(name, stack.add_program(name).await.unwrap().to_string());
    }
    let work = tempfile::tempdir().unwrap();
    for (row, col) in TILES {
        cut_tile(&scene, row, col, &work.path().join(format!("LC80200392015216LGN00_r{row:03}_c{col:03}")));
    }
    let scenes = stack.add_path(work.path()).await.unwrap().to_string();

    let id = submit(&stack, &cloud_pipeline(&programs, &scenes, THRESHOLD)).await;
    let nothing_over = submit(&stack, &cloud_pipeline(&programs, &scenes, 2.0)).await;
    let status = ended(&stack, &id).await;
    assert_eq!(status.state, PipelineState::Succeeded, "{status:#?}");

    // detect ran on every tile; remove on exactly those whose own stats say they are cloudy,
    // read here from detect's outputs, each placed where its tile was detected.
    let detect = stage(&status, "detect");
    assert_eq!((detect.counts.succeeded, detect.units.len()), (4, 4), "{detect:#?}");
    let remove = stage(&status, "remove");
    for (detected, removed) in detect.units.iter().zip(&remove.units) {
        assert_eq!(detected.file, removed.file);
        let stats = stack.read(detected.output.as_ref().unwrap().cid(), "stats.json").await.unwrap();
        let fraction = serde_json::from_slice::<Value>(&stats).unwrap()["cloud_fraction"].as_f64().unwrap();
        if fraction > THRESHOLD {
            assert_eq!(removed.state, UnitState::Succeeded, "{removed:?} at {fraction}");
            // Placement is by shard; which worker reads it may change under load (an idle
            // worker steals, a hot shard gets more readers), so the shard is what is asserted.
            let (detected_on, removed_on) = (
                shard_of(&stack, detected.job.as_ref().unwrap()).await,
                shard_of(&stack, removed.job.as_ref().unwrap()).await,
            );
            assert_eq!(detected_on, removed_on, "a tile's stages go to the shard its data went to");
        } else {
            assert_eq!(removed.state, UnitState::Skipped, "{removed:?} at {fraction}");
            assert!(removed.reason.as_ref().unwrap().starts_with("condition false: cloud_fraction"), "{removed:?}");
        }
    }
    assert_eq!((remove.counts.succeeded, remove.counts.skipped), (2, 2), "{remove:#?}");
    let summary = &stage(&status, "summary").units[0];
    let json: Value =
        serde_json::from_slice(&stack.read(summary.output.as_ref().unwrap().cid(), "summary.json").await.unwrap())
            .unwrap();
    assert_eq!(json["counts"], json!({"scenes": 4, "cleared": 2, "not_cleared": 2}));

    // Nothing over the threshold: remove skips every tile, and the summary gathers none.
    let none = ended(&stack, &nothing_over).await;
    assert_eq!(none.state, PipelineState::Succeeded, "{none:#?}");
    assert_eq!(stage(&none, "remove").counts.skipped, 4);
    let summary = &stage(&none, "summary").units[0];
    let json: Value =
        serde_json::from_slice(&stack.read(summary.output.as_ref().unwrap().cid(), "summary.json").await.unwrap())
            .unwrap();
    assert_eq!(json["counts"], json!({"scenes": 4, "cleared": 0, "not_cleared": 4}));
    assert_eq!(job_ids(&none)[..4], job_ids(&status)[..4], "detect is the same invocation in both: run once");

    // A condition on a field detect does not write: every tile skipped, saying why.
    let mut missing = cloud_pipeline(&programs, &scenes, THRESHOLD);
    missing["stages"][1]["when"]["field"] = json!("cloud_percent");
    let missing = ended(&stack, &submit(&stack, &missing).await).await;
    let remove = stage(&missing, "remove");
    assert_eq!(remove.counts.skipped, 4, "{missing:#?}");
    assert!(remove
        .units
        .iter()
        .all(|unit| unit.reason.as_deref() == Some("condition: stats.json has no cloud_percent")));

    // The same pipeline again: every unit is an invocation that ran, so no job is new.
    let again = ended(&stack, &submit(&stack, &cloud_pipeline(&programs, &scenes, THRESHOLD)).await).await;
    assert_eq!(again.state, PipelineState::Succeeded);
    assert_eq!(job_ids(&again), job_ids(&status), "memoised by invocation CID");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_stage_stops_its_pipeline_and_a_cancelled_pipeline_cancels_its_jobs() {
    let stack = Stack::start(StackOptions { workers: 1, ..StackOptions::default() }).await.unwrap();
    let trap = stack.add_program("trap").await.unwrap().to_string();
    let echo = stack.add_program("echo-hash").await.unwrap().to_string();
    let spin = stack.add_program("infinite-loop").await.unwrap().to_string();
    let data = stack.add_bytes(b"one file\n").await.unwrap().to_string();
    let none = json!({"mode": "none"});

    let failing_spec = json!({"inputs": {"data": data}, "stages": [
        {"name": "first", "program": trap, "verification": none,
         "inputs": [{"from": "pipeline.data", "path": "/inputs"}]},
        {"name": "second", "program": echo, "verification": none,
         "inputs": [{"from": "first", "path": "/inputs"}]}
    ]});
    let failing = submit(&stack, &failing_spec).await;
    let status = ended(&stack, &failing).await;
    assert_eq!(status.state, PipelineState::Failed, "{status:#?}");
    assert!(status.message.as_ref().unwrap().starts_with("first failed: trap"), "{status:#?}");
    assert_eq!(stage(&status, "second").units[0].state, UnitState::Skipped, "{status:#?}");

    // The same pipeline again: the identical invocation failed, so it runs again (a failure is
    // never memoised), and fails the same way.
    let again = ended(&stack, &submit(&stack, &failing_spec).await).await;
    assert_eq!(again.state, PipelineState::Failed, "{again:#?}");
    let (before, after) = (job_ids(&status), job_ids(&again));
    assert_eq!((before.len(), after.len()), (1, 1));
    assert_ne!(after[0], before[0], "a failed job is not reused");
    let rerun = stack.job(&after[0]).await.unwrap();
    assert_eq!((rerun.state, rerun.invocation), (JobState::Failed, stack.job(&before[0]).await.unwrap().invocation));

    let spinning = submit(
        &stack,
        &json!({"inputs": {"data": data}, "stages": [
            {"name": "spin", "program": spin, "verification": none, "limits": {"fuel": 1_000_000_000_000u64},
             "inputs": [{"from": "pipeline.data", "path": "/inputs"}]}
        ]}),
    )
    .await;
    let store = store(&stack).await;
    let deadline = Instant::now() + WAIT;
    let job = loop {
        let status = store.status(&spinning).await.unwrap().unwrap();
        if let Some(job) = status.stages[0].units[0].job.clone().filter(|_| status.stages[0].counts.running == 1) {
            break job;
        }
        assert!(Instant::now() < deadline, "the spinning job never ran: {status:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(store.finish(&spinning, PipelineState::Cancelled, "cancelled by the test").await.unwrap());
    let cancelled = stack.wait_terminal(&job, WAIT).await.unwrap();
    assert_eq!(cancelled.state, JobState::Cancelled, "{cancelled:?}");
    assert_eq!(ended(&stack, &spinning).await.state, PipelineState::Cancelled);
    stack.shutdown().await;
}

/// Files the crash test's stage runs over: enough that the doomed worker is killed mid-stage.
const CRASH_FILES: usize = 120;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pipeline_outlives_the_worker_driving_it_and_running_its_stage() {
    let options = StackOptions { workers: 0, visibility_timeout: Duration::from_secs(2), ..StackOptions::default() };
    let mut stack = Stack::start(options).await.unwrap();
    let echo = stack.add_program("echo-hash").await.unwrap().to_string();
    let work = tempfile::tempdir().unwrap();
    for n in 0..CRASH_FILES {
        std::fs::write(work.path().join(format!("file-{n:03}")), format!("file {n}\n")).unwrap();
    }
    let files = stack.add_path(work.path()).await.unwrap().to_string();
    let none = json!({"mode": "none"});
    let spec = json!({"inputs": {"files": files}, "stages": [
        {"name": "hash", "program": echo, "verification": none,
         "inputs": [{"from": "pipeline.files", "path": "/inputs"}], "each": {"input": 0}},
        {"name": "all", "program": echo, "verification": none,
         "inputs": [{"from": "hash.all", "path": "/inputs"}]}
    ]});

    // The only worker drives the pipeline and runs its jobs; it dies partway through the stage.
    let doomed = stack.spawn_worker_process("doomed").unwrap();
    let id = submit(&stack, &spec).await;
    let store = store(&stack).await;
    let deadline = Instant::now() + WAIT;
    let done_at_kill = loop {
        let status = store.status(&id).await.unwrap().unwrap();
        let done = stage(&status, "hash").counts.succeeded;
        if done >= 10 {
            break done;
        }
        assert!(Instant::now() < deadline, "the doomed worker never got going: {status:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    stack.kill_worker_process(doomed).unwrap();
    assert!(done_at_kill < CRASH_FILES as u64, "killed after the stage ended ({done_at_kill} done): not mid-stage");

    stack.start_worker("survivor");
    let status = ended(&stack, &id).await;
    assert_eq!(status.state, PipelineState::Succeeded, "{status:#?}");
    let hash = stage(&status, "hash");
    assert_eq!((hash.counts.succeeded, hash.units.len()), (CRASH_FILES as u64, CRASH_FILES), "{status:#?}");

    // Each file's unit has one job, run to the end once, whoever started it.
    let mut jobs: Vec<&str> = hash.units.iter().map(|unit| unit.job.as_deref().unwrap()).collect();
    jobs.sort_unstable();
    jobs.dedup();
    assert_eq!(jobs.len(), CRASH_FILES, "one job per file");
    let mut by_survivor = 0;
    for job in &jobs {
        let job = stack.job(job).await.unwrap();
        assert_eq!(job.state, JobState::Succeeded, "{job:?}");
        assert_eq!(job.executions.iter().filter(|e| e.outcome.is_some()).count(), 1, "finished once: {job:?}");
        by_survivor += usize::from(job.executions.iter().any(|e| e.worker == "survivor"));
    }
    assert!(by_survivor > 0, "the survivor ran the rest of the stage");

    // The outputs are those of the same work done afresh, without a crash: the fan-in's from a
    // job over the same gathered directory, and a sample of the files' from jobs over each file.
    let all = stage(&status, "all");
    let fan_in = stack.job(all.units[0].job.as_deref().unwrap()).await.unwrap();
    let again =
        stack.submit_ok(&json!({"program": echo, "verification": none, "inputs": fan_in.spec.inputs})).await.unwrap();
    let again = stack.wait_terminal(&again, WAIT).await.unwrap();
    assert_eq!(again.result.unwrap().output, fan_in.result.unwrap().output);
    for unit in hash.units.iter().step_by(40) {
        let job = stack.job(unit.job.as_deref().unwrap()).await.unwrap();
        let fresh =
            stack.submit_ok(&json!({"program": echo, "verification": none, "inputs": job.spec.inputs})).await.unwrap();
        let fresh = stack.wait_terminal(&fresh, WAIT).await.unwrap();
        assert_eq!(fresh.result.unwrap().output, job.result.unwrap().output, "{}", unit.file.as_deref().unwrap());
    }
    stack.shutdown().await;
}

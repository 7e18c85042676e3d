//! Jobs fanned out over a directory on a real stack: one task per entry, placed by the entry's
//! own CID, outputs gathered under the input names, failures reported per file, and a second
//! run over the same directory finding its data where it runs.

use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use shoal_jobs::{ExecutionOutcome, FailureReason, FanOutStore, JobState};
use shoal_tests::{Stack, StackOptions};

const WAIT: Duration = Duration::from_secs(240);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn status(stack: &Stack, id: &str) -> Value {
    stack.http.get(format!("{}/v1/jobs/{id}", stack.gateway)).send().await.unwrap().json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_directory_of_200_scenes_fans_out_gathers_and_runs_where_its_data_is_the_second_time() {
    let options = StackOptions { workers: 4, shards: 64, ..StackOptions::default() };
    let stack = Stack::start(options).await.unwrap();
    let program = stack.add_program("echo-hash").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    for n in 0..200 {
        std::fs::write(dir.path().join(format!("LC08_{n:04}.tif")), format!("scene {n} pixels")).unwrap();
    }
    for n in 0..5 {
        std::fs::write(dir.path().join(format!("notes-{n}.txt")), "not a scene").unwrap();
    }
    let scenes = stack.add_path(dir.path()).await.unwrap();
    let spec = |tag: &str| {
        json!({
            "program": program.to_string(),
            "args": [tag],
            "env": {"ECHO_HASH_INPUT": "/scenes"},
            "inputs": [{"cid": scenes.to_string(), "path": "/scenes"}],
            "fan_out": {"glob": "*.tif"},
        })
    };

    let first = stack.submit_ok(&spec("cold")).await.unwrap();
    let job = stack.wait_terminal(&first, WAIT).await.unwrap();
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    let body = status(&stack, &first).await;
    assert_eq!(body["tasks"]["total"], 200, "the glob leaves the notes out: {}", body["tasks"]);
    assert_eq!(body["tasks"]["succeeded"], 200);
    assert_eq!(body["tasks"]["failed"], 0);
    let output = job.result.clone().unwrap().output;
    assert_eq!(body["tasks"]["output"], json!(output.to_string()));

    // One output entry per scene, named as the scene, holding what the program wrote for it.
    let listing = shoal_content::unixfs::list(stack.store.as_ref(), output.cid()).await.unwrap();
    assert_eq!(listing.len(), 200);
    assert!(listing.iter().all(|entry| entry.name.starts_with("LC08_") && entry.name.ends_with(".tif")));
    let hashed = stack.read(output.cid(), "LC08_0042.tif/LC08_0042.tif.sha256").await.unwrap();
    let expected = format!("{}  LC08_0042.tif\n", hex(&Sha256::digest(b"scene 42 pixels")));
    assert_eq!(String::from_utf8(hashed).unwrap(), expected);

    // Each task ran once, on the worker reading the shard of its own scene's CID; the second
    // run over the same scenes finds them cached where it runs.
    let second = stack.submit_ok(&spec("warm")).await.unwrap();
    assert_eq!(stack.wait_terminal(&second, WAIT).await.unwrap().state, JobState::Succeeded);
    let client = redis::Client::open(stack.redis.url()).unwrap();
    let fanouts = FanOutStore::new(client.get_connection_manager().await.unwrap());
    let tasks = fanouts.tasks(&second).await.unwrap();
    assert_eq!(tasks.len(), 200);
    let mut local = 0;
    for (_, task) in &tasks {
        let task = stack.job(task).await.unwrap();
        let cached = task.executions.iter().find_map(|e| match &e.outcome {
            Some(ExecutionOutcome::Completed(result)) => Some(result.inputs_cached),
            _ => None,
        });
        local += usize::from(cached == Some(1));
    }
    eprintln!("warm run: {local} of {} tasks found their scene cached where they ran", tasks.len());
    assert!(local * 10 >= tasks.len() * 9, "only {local} of {} warm tasks found their scene cached", tasks.len());
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_tasks_are_reported_by_name_and_a_fan_out_over_a_file_fails_clearly() {
    let stack = Stack::start(StackOptions { workers: 2, ..StackOptions::default() }).await.unwrap();
    let trap = stack.add_program("trap").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    for name in ["a", "b", "c"] {
        std::fs::write(dir.path().join(name), name).unwrap();
    }
    let files = stack.add_path(dir.path()).await.unwrap();
    let id = stack
        .submit_ok(&json!({"program": trap.to_string(), "inputs": [{"cid": files.to_string()}], "fan_out": {}}))
        .await
        .unwrap();
    let job = stack.wait_terminal(&id, WAIT).await.unwrap();
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(job.failure.as_ref().unwrap().reason, FailureReason::TasksFailed, "{job:?}");
    let body = status(&stack, &id).await;
    assert_eq!((body["tasks"]["total"].as_u64(), body["tasks"]["failed"].as_u64()), (Some(3), Some(3)));
    let mut names: Vec<&str> =
        body["tasks"]["failures"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["a", "b", "c"]);
    assert!(body["tasks"]["failures"].as_array().unwrap().iter().all(|f| f["reason"] == "trap"), "{body}");

    let file = stack.add_bytes(b"just one file").await.unwrap();
    let id = stack
        .submit_ok(&json!({"program": trap.to_string(), "inputs": [{"cid": file.to_string()}], "fan_out": {}}))
        .await
        .unwrap();
    let job = stack.wait_terminal(&id, WAIT).await.unwrap();
    let failure = job.failure.unwrap();
    assert_eq!(failure.reason, FailureReason::InputUnavailable);
    assert!(failure.message.contains(&file.to_string()), "{}", failure.message);

    // A fan-out naming an input that is not there never gets in.
    let (status, body) = stack
        .submit(&json!({"program": trap.to_string(), "inputs": [{"cid": file.to_string()}], "fan_out": {"input": 1}}))
        .await
        .unwrap();
    assert_eq!(status, reqwest::StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["field"], "fan_out.input");
    stack.shutdown().await;
}

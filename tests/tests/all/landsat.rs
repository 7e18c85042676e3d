//! Cloud detection on the real Landsat scene through the whole system, compared with the same
//! program run directly under the runtime crate.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;
use shoal_content::unixfs::{self, ImportOptions};
use shoal_content::MemoryBlockStore;
use shoal_jobs::JobState;
use shoal_runtime::{Invocation, Limits, Mount, Runtime, RuntimeConfig};
use shoal_testkit::{program_bytes, repo_root, Stack, StackOptions};

const SCENE: &str = "data/landsat/LC80200392015216LGN00";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cloud_detect_gives_the_same_output_cid_through_the_system_and_directly() {
    let scene = repo_root().join(SCENE);
    assert!(scene.is_dir(), "{} is missing: run scripts/fetch-data.sh (make test does)", scene.display());

    let stack = Stack::start(StackOptions::default()).await.unwrap();
    let scene_cid = stack.add_path(&scene).await.unwrap();
    let program = stack.add_program("cloud-detect").await.unwrap();
    let id = stack
        .submit_ok(
            &json!({"program": program.to_string(), "inputs": [{"cid": scene_cid.to_string(), "path": "/inputs"}]}),
        )
        .await
        .unwrap();
    let job = stack.wait_terminal(&id, Duration::from_secs(300)).await.unwrap();
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    let through_system = job.result.unwrap().output;

    // The outputs a person checks by eye, and the statistics, are in the result.
    let mask = stack.read(through_system.cid(), "mask.png").await.unwrap();
    assert_eq!(&mask[..8], b"\x89PNG\r\n\x1a\n");
    let stats: serde_json::Value =
        serde_json::from_slice(&stack.read(through_system.cid(), "stats.json").await.unwrap()).unwrap();
    let fraction = stats["cloud_fraction"].as_f64().unwrap();
    assert!(fraction > 0.01 && fraction < 0.5, "a field of cumulus covers part of the crop: {fraction}");
    stack.shutdown().await;

    // The same program, scene and limits, run directly: argv[0] is the program CID, as the
    // worker passes it. The invocation is spelled out here rather than taken from the worker, so
    // a mistake there would show as a different CID.
    let runtime = Runtime::new(RuntimeConfig::default()).unwrap();
    let compiled = runtime.compile(&program_bytes("cloud-detect")).unwrap();
    let outputs = tempfile::tempdir().unwrap();
    let defaults = shoal_jobs::Limits::default();
    let outcome = runtime
        .run(
            &compiled,
            Invocation {
                entrypoint: "_start".into(),
                args: vec![program.to_string()],
                env: BTreeMap::new(),
                mounts: vec![
                    Mount { host: scene.clone(), guest: "/inputs".into(), writable: false },
                    Mount { host: outputs.path().to_path_buf(), guest: "/outputs".into(), writable: true },
                ],
                limits: Limits {
                    fuel: defaults.fuel,
                    memory_bytes: defaults.memory_bytes,
                    wall_time: Duration::from_millis(defaults.wall_time_ms),
                    stdout_bytes: defaults.log_bytes as usize,
                    stderr_bytes: defaults.log_bytes as usize,
                    output_bytes: defaults.output_bytes,
                    ..Limits::default()
                },
                determinism: Default::default(),
            },
        )
        .await
        .unwrap();
    assert_eq!(outcome.exit_code, 0);
    let options = ImportOptions { include_hidden: true, ..ImportOptions::default() };
    let direct = unixfs::import_path(outputs.path(), &options, &MemoryBlockStore::new()).await.unwrap().root;
    assert_eq!(through_system.to_string(), direct.to_string());
}

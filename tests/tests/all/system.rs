//! The walking skeleton end to end: a real redis-server, the gateway over HTTP, workers running
//! the committed guest programs, results read back by CID.

use std::time::Duration;

use serde_json::json;
use shoal_jobs::{ExecutionOutcome, FailureReason, JobState};
use shoal_testkit::{Stack, StackOptions};

use crate::sha256_hex;

const WAIT: Duration = Duration::from_secs(120);

/// The IPFS 1 MiB test vector (byte i = i % 251) under `ipfs add --cid-version=1`.
const MIB_VECTOR_CID: &str = "bafybeiedpcapwld4tkgtzwahfofgn4wex5ryysf4se6hwpmlrsh4ntnrau";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_runs_to_the_expected_output_cid() {
    let stack = Stack::start(StackOptions::default()).await.unwrap();
    let program = stack.add_program("echo-hash").await.unwrap();
    let input = stack.add_bytes(b"hello world\n").await.unwrap();
    assert_eq!(input.to_string(), "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4");

    let id = stack
        .submit_ok(&json!({
            "program": program.to_string(),
            "args": ["--flag", "x y"],
            "env": {"B": "2", "A": "1"},
            "inputs": [{"cid": input.to_string()}],
        }))
        .await
        .unwrap();
    let job = stack.wait_terminal(&id, WAIT).await.unwrap();
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    let result = job.result.clone().unwrap();
    assert_eq!(result.exit_code, 0);
    assert!(result.fuel_consumed > 0);

    // The expected output, built independently: a single file input appears as
    // /inputs/<cid>, and echo-hash writes `<path>.sha256` holding a sha256sum line.
    let name = input.to_string();
    let digest = sha256_hex(b"hello world\n");
    let expected_dir = tempfile::tempdir().unwrap();
    std::fs::write(expected_dir.path().join(format!("{name}.sha256")), format!("{digest}  {name}\n")).unwrap();
    let expected = stack.add_path(expected_dir.path()).await.unwrap();
    assert_eq!(result.output.to_string(), expected.to_string());

    let stdout = String::from_utf8(stack.read(result.stdout.cid(), "").await.unwrap()).unwrap();
    assert!(stdout.contains("--flag") && stdout.contains("x y"), "arguments are passed: {stdout}");
    let a = stdout.find("A=1").expect("env A is passed");
    let b = stdout.find("B=2").expect("env B is passed");
    assert!(a < b, "environment is sorted: {stdout}");

    // The result endpoint agrees with the job record: with no verifier in this stack, only as an
    // early result, labelled as awaiting the verifier.
    let url = format!("{}/v1/jobs/{id}/result", stack.gateway);
    let waiting = stack.http.get(&url).send().await.unwrap();
    assert_eq!(waiting.status(), reqwest::StatusCode::CONFLICT);
    let body: serde_json::Value = waiting.json().await.unwrap();
    assert_eq!(
        (body["error"]["code"].as_str(), body["error"]["acceptance"].as_str()),
        (Some("not_accepted"), Some("pending"))
    );
    let body: serde_json::Value =
        stack.http.get(format!("{url}?early=true")).send().await.unwrap().json().await.unwrap();
    assert_eq!(body["output"], json!(expected.to_string()));
    assert_eq!((body["acceptance"].as_str(), body["accepted"].as_bool()), (Some("pending"), Some(false)));
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_job_gives_the_same_output_cid_on_two_workers_and_across_runs() {
    let first = Stack::start(StackOptions::default()).await.unwrap();
    let second = Stack::start(StackOptions::default()).await.unwrap();
    let mut outputs = Vec::new();
    let mut workers = Vec::new();
    for (stack, runs) in [(&first, 2), (&second, 1)] {
        let program = stack.add_program("huge-output").await.unwrap();
        for _ in 0..runs {
            let id = stack.submit_ok(&json!({"program": program.to_string(), "args": ["1M", "4K"]})).await.unwrap();
            let job = stack.wait_terminal(&id, WAIT).await.unwrap();
            assert_eq!(job.state, JobState::Succeeded, "{job:?}");
            let result = job.result.unwrap();
            // The file the program wrote is the IPFS 1 MiB test vector.
            let file = shoal_content::unixfs::resolve_path(first.store.as_ref(), result.output.cid(), "big.bin").await;
            let file = match file {
                Ok(cid) => cid,
                Err(_) => shoal_content::unixfs::resolve_path(second.store.as_ref(), result.output.cid(), "big.bin")
                    .await
                    .unwrap(),
            };
            assert_eq!(file.to_string(), MIB_VECTOR_CID);
            outputs.push((result.output.to_string(), result.stdout.to_string(), result.fuel_consumed));
            workers.push(format!("{:p}/{}", stack, job.executions[0].worker));
        }
    }
    assert_eq!(outputs[0], outputs[1], "two runs on one worker");
    assert_eq!(outputs[0], outputs[2], "runs on two workers of two stacks");
    assert_ne!(workers[0], workers[2]);
    first.shutdown().await;
    second.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idempotency_key_returns_the_same_job() {
    let stack = Stack::start(StackOptions::default()).await.unwrap();
    let program = stack.add_program("echo-hash").await.unwrap();
    let spec = json!({"program": program.to_string()});
    let post = || {
        stack.http.post(format!("{}/v1/jobs", stack.gateway)).header("Idempotency-Key", "demo-key-1").json(&spec).send()
    };
    let first = post().await.unwrap();
    assert_eq!(first.status(), 202);
    let first: serde_json::Value = first.json().await.unwrap();
    let second = post().await.unwrap();
    assert_eq!(second.status(), 200);
    let second: serde_json::Value = second.json().await.unwrap();
    assert_eq!(first["id"], second["id"]);
    let id = first["id"].as_str().unwrap();
    let job = stack.wait_terminal(id, WAIT).await.unwrap();
    assert_eq!(job.state, JobState::Succeeded);
    assert_eq!(job.executions.len(), 1, "queued once, run once: {job:?}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_mid_job_leaves_the_job_visible_and_its_entry_pending() {
    let mut stack = Stack::start(StackOptions { workers: 0, ..StackOptions::default() }).await.unwrap();
    let program = stack.add_program("infinite-loop").await.unwrap();
    let pid = stack.spawn_worker_process("doomed").unwrap();
    let id = stack
        .submit_ok(&json!({
            "program": program.to_string(),
            "limits": {"fuel": 1_000_000_000_000u64, "wall_time_ms": 600_000},
        }))
        .await
        .unwrap();
    let running = stack.wait_until(&id, WAIT, |job| job.state == JobState::Running).await.unwrap();
    assert_eq!(running.executions.len(), 1);
    assert_eq!(running.executions[0].worker, "doomed");

    stack.kill_worker_process(pid).unwrap();

    let job = stack.job(&id).await.unwrap();
    assert_eq!(job.state, JobState::Running, "the record survives the worker: {job:?}");
    assert_eq!(job.executions.len(), 1);
    assert!(job.executions[0].outcome.is_none(), "no outcome was invented for the dead worker");
    // The stream entry was never acknowledged: recovery (a later issue) can claim it.
    let client = redis::Client::open(stack.redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let stream = shoal_jobs::keys::shard_stream(job.shard);
    let pending: redis::streams::StreamPendingReply =
        redis::AsyncCommands::xpending(&mut conn, &stream, shoal_jobs::keys::WORKER_GROUP).await.unwrap();
    let redis::streams::StreamPendingReply::Data(pending) = pending else { panic!("the entry stays pending") };
    assert_eq!(pending.count, 1);
    let consumers: Vec<(String, usize)> = pending.consumers.iter().map(|c| (c.name.clone(), c.pending)).collect();
    assert_eq!(consumers, vec![("doomed".to_string(), 1)]);
    stack.shutdown().await;
}

/// Submits `spec` and returns the failed job's reason and message.
async fn failure_of(stack: &Stack, spec: serde_json::Value) -> (FailureReason, String, shoal_jobs::Job) {
    let id = stack.submit_ok(&spec).await.unwrap();
    let job = stack.wait_terminal(&id, WAIT).await.unwrap();
    assert_eq!(job.state, JobState::Failed, "{job:?}");
    let failure = job.failure.clone().expect("a failed job says why");
    match &job.executions.last().unwrap().outcome {
        Some(ExecutionOutcome::Failed(recorded)) => assert_eq!(recorded, &failure),
        other => panic!("the execution records the failure: {other:?}"),
    }
    (failure.reason, failure.message, job)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn guest_failures_are_reported_with_their_reason() {
    let stack = Stack::start(StackOptions { workers: 2, ..StackOptions::default() }).await.unwrap();
    let program = |name: &'static str| {
        let stack = &stack;
        async move { stack.add_program(name).await.unwrap().to_string() }
    };

    let (reason, message, job) = failure_of(&stack, json!({"program": program("trap").await})).await;
    assert_eq!(reason, FailureReason::Trap, "{message}");
    let stderr = job.failure.unwrap().stderr.expect("stderr is kept");
    let stderr = String::from_utf8(stack.read(stderr.cid(), "").await.unwrap()).unwrap();
    assert!(stderr.contains("deliberate trap"), "the guest's panic message is returned: {stderr}");

    let (reason, message, job) =
        failure_of(&stack, json!({"program": program("infinite-loop").await, "limits": {"fuel": 50_000_000}})).await;
    assert_eq!(reason, FailureReason::FuelExhausted, "{message}");
    assert!(job.failure.unwrap().fuel_consumed.unwrap() >= 50_000_000);

    let (reason, message, _) =
        failure_of(&stack, json!({"program": program("memory-bomb").await, "limits": {"memory_bytes": 64u64 << 20}}))
            .await;
    assert_eq!(reason, FailureReason::MemoryLimit, "{message}");

    let (reason, message, _) = failure_of(
        &stack,
        json!({"program": program("huge-output").await, "args": ["64M", "0"], "limits": {"output_bytes": 1u64 << 20}}),
    )
    .await;
    assert_eq!(reason, FailureReason::OutputLimit, "{message}");

    let (reason, message, _) = failure_of(&stack, json!({"program": program("stack-overflow").await})).await;
    assert_eq!(reason, FailureReason::StackOverflow, "{message}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_programs_and_missing_content_fail_with_a_clear_reason() {
    let stack =
        Stack::start(StackOptions { fetch_timeout: Duration::from_secs(2), ..StackOptions::default() }).await.unwrap();

    let not_wasm = stack.add_bytes(b"#!/bin/sh\necho this is not WebAssembly\n").await.unwrap();
    let (reason, message, _) = failure_of(&stack, json!({"program": not_wasm.to_string()})).await;
    assert_eq!(reason, FailureReason::InvalidProgram);
    assert!(message.contains(&not_wasm.to_string()), "{message}");

    let echo = stack.add_program("echo-hash").await.unwrap();
    let (reason, message, _) =
        failure_of(&stack, json!({"program": echo.to_string(), "entrypoint": "no_such_export"})).await;
    assert_eq!(reason, FailureReason::MissingEntrypoint);
    assert!(message.contains("no_such_export"), "{message}");

    // A well-formed CID that no source has: the sha256 of bytes never added.
    let absent =
        shoal_content::Block::encode(shoal_content::Codec::Raw, &b"never added anywhere"[..]).cid().to_string();
    let (reason, message, job) =
        failure_of(&stack, json!({"program": echo.to_string(), "inputs": [{"cid": absent, "path": "/data"}]})).await;
    assert_eq!(reason, FailureReason::InputUnavailable);
    assert!(message.contains(&absent), "the reason names the CID: {message}");
    let execution = &job.executions[0];
    let waited = execution.finished_at_ms.unwrap() - execution.started_at_ms;
    assert!(waited >= 2_000, "the worker waits the configured fetch timeout before giving up ({waited} ms)");
    stack.shutdown().await;
}

/// The Redis passwords: docker-compose.yml's env files under deploy/ hold one each, and `shoal
/// redis-acl` reads them from the environment.
const COMPOSE_PASSWORDS: [(&str, &str); 4] = [
    ("SHOAL_REDIS_ADMIN_PASSWORD", "admin-password-0123456789"),
    ("SHOAL_REDIS_GATEWAY_PASSWORD", "gateway-password-0123456789"),
    ("SHOAL_REDIS_WORKER_PASSWORD", "worker-password-0123456789"),
    ("SHOAL_REDIS_VERIFIER_PASSWORD", "verifier-password-0123456789"),
];

/// `docker-compose` over the copy of docker-compose.yml in `dir`.
fn docker_compose(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut command = std::process::Command::new("docker-compose");
    command.arg("-f").arg(dir.join("docker-compose.yml")).args(args).current_dir(dir);
    command.env_remove("SHOAL_PUBLISH_ADDRESS");
    for (name, _) in COMPOSE_PASSWORDS {
        command.env_remove(name);
    }
    command.output().expect("docker-compose is installed (scripts/install-deps.sh)")
}

/// One service's part of `docker-compose config`'s output.
fn service<'a>(config: &'a str, name: &str) -> &'a str {
    let start = config.find(&format!("\n  {name}:\n")).unwrap_or_else(|| panic!("no service {name}: {config}")) + 1;
    let rest = &config[start..];
    // The next line indented by two spaces, or less, starts what follows.
    let end = rest
        .match_indices('\n')
        .map(|(at, _)| at + 1)
        .find(|&at| rest[at..].len() > 2 && !rest[at..].starts_with("   "))
        .unwrap_or(rest.len());
    &rest[..end]
}

#[test]
fn docker_compose_file_is_valid_publishes_on_loopback_and_gives_each_service_its_own_password() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(shoal_testkit::repo_root().join("docker-compose.yml"), dir.path().join("docker-compose.yml"))
        .unwrap();
    let without = docker_compose(dir.path(), &["config", "-q"]);
    assert!(!without.status.success(), "the env files are needed");
    assert!(String::from_utf8_lossy(&without.stderr).contains("deploy/admin.env"));
    std::fs::create_dir(dir.path().join("deploy")).unwrap();
    for (variable, password) in COMPOSE_PASSWORDS {
        let role = variable.trim_start_matches("SHOAL_REDIS_").trim_end_matches("_PASSWORD").to_lowercase();
        std::fs::write(dir.path().join(format!("deploy/{role}.env")), format!("{variable}={password}\n")).unwrap();
    }
    let output = docker_compose(dir.path(), &["config", "-q"]);
    assert!(output.status.success(), "docker-compose config: {}", String::from_utf8_lossy(&output.stderr));
    let config = String::from_utf8(docker_compose(dir.path(), &["config"]).stdout).unwrap();
    assert!(config.contains("127.0.0.1:8080:8080") && config.contains("127.0.0.1:8081:8081"), "{config}");
    // Each service is handed the passwords it logs in with, and no other.
    let given = |name: &str| -> Vec<&str> {
        let service = service(&config, name);
        COMPOSE_PASSWORDS.iter().filter(|(_, password)| service.contains(password)).map(|(name, _)| *name).collect()
    };
    assert_eq!(given("redis-users").len(), 4);
    for (name, password) in [
        ("redis", "SHOAL_REDIS_ADMIN_PASSWORD"),
        ("tools", "SHOAL_REDIS_ADMIN_PASSWORD"),
        ("gateway", "SHOAL_REDIS_GATEWAY_PASSWORD"),
        ("worker", "SHOAL_REDIS_WORKER_PASSWORD"),
        ("verifier", "SHOAL_REDIS_VERIFIER_PASSWORD"),
        ("content", ""),
    ] {
        assert_eq!(given(name), [password].into_iter().filter(|p| !p.is_empty()).collect::<Vec<_>>(), "{name}");
    }
    for role in ["gateway", "worker", "verifier"] {
        assert!(service(&config, role).contains(&format!("SHOAL_REDIS: redis://{role}@redis:6379/")), "{config}");
    }
    // What others wait for has a health check, and they wait for it to pass.
    for name in ["redis", "gateway", "content"] {
        assert!(service(&config, name).contains("healthcheck:"), "{name}: {config}");
    }
    for name in ["gateway", "worker", "verifier", "tools"] {
        let service = service(&config, name);
        assert!(service.contains("condition: service_healthy") && !service.contains("service_started"), "{service}");
    }
}

#[test]
fn redis_acl_writes_an_owner_only_file_with_a_password_for_every_user() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("users.acl");
    let mut command = std::process::Command::new(shoal_testkit::shoal_binary().unwrap());
    command.arg("redis-acl").arg("--out").arg(&out).envs(COMPOSE_PASSWORDS);
    let status = command.status().unwrap();
    assert!(status.success());
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o077, 0);
    let file = std::fs::read_to_string(&out).unwrap();
    let users: Vec<&str> = file.lines().map(|line| line.split(' ').nth(1).unwrap()).collect();
    assert_eq!(users, ["default", "gateway", "worker", "verifier"]);
    assert!(file.starts_with("user default on >admin-password-0123456789 ~* &* +@all\n"), "{file}");
    assert!(file.contains("user worker on >worker-password-0123456789 "));
    // A weak password is refused.
    let weak = std::process::Command::new(shoal_testkit::shoal_binary().unwrap())
        .arg("redis-acl")
        .envs(COMPOSE_PASSWORDS)
        .env("SHOAL_REDIS_WORKER_PASSWORD", "short")
        .output()
        .unwrap();
    assert!(!weak.status.success());
    assert!(String::from_utf8_lossy(&weak.stderr).contains("worker password"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_gateway_lists_the_live_workers() {
    let stack = Stack::start(StackOptions { workers: 2, ..StackOptions::default() }).await.unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    let ids = loop {
        let body: serde_json::Value =
            stack.http.get(format!("{}/v1/workers", stack.gateway)).send().await.unwrap().json().await.unwrap();
        let mut ids: Vec<String> =
            body["workers"].as_array().unwrap().iter().map(|w| w["id"].as_str().unwrap().to_string()).collect();
        ids.sort();
        if ids.len() == 2 || std::time::Instant::now() > deadline {
            break ids;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(ids, ["worker-0", "worker-1"]);
    stack.shutdown().await;
}

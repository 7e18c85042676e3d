//! Bad input against a whole stack: malformed requests get a clear answer (status, the JSON
//! error's `code` and `field`) and leave nothing behind, odd but valid content works, and a
//! normal job still succeeds afterwards.

use std::time::Duration;

use serde_json::{json, Value};
use shoal_jobs::{FailureReason, JobState};
use shoal_testkit::{Stack, StackOptions};

use crate::sha256_hex;

const WAIT: Duration = Duration::from_secs(120);

/// "hello world" inlined in its CID with the identity hash (`ipfs add --inline --raw-leaves`).
const HELLO_INLINE: &str = "bafkqac3imvwgy3zao5xxe3de";

/// Runs echo-hash over `inputs` and waits for it to finish.
async fn echo_hash(stack: &Stack, inputs: Value) -> shoal_jobs::Job {
    let program = stack.add_program("echo-hash").await.unwrap();
    let id = stack.submit_ok(&json!({"program": program.to_string(), "inputs": inputs})).await.unwrap();
    stack.wait_terminal(&id, WAIT).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_identity_cid_input_is_read_from_the_cid_itself() {
    let stack = Stack::start(StackOptions::default()).await.unwrap();
    let job = echo_hash(&stack, json!([{"cid": HELLO_INLINE, "name": "hello"}])).await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    let output = job.result.unwrap().output;
    let line = String::from_utf8(stack.read(output.cid(), "hello.sha256").await.unwrap()).unwrap();
    assert_eq!(line, format!("{}  hello\n", sha256_hex(b"hello world")));
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fan_out_over_a_file_fails_saying_it_needs_a_directory() {
    let stack = Stack::start(StackOptions::default()).await.unwrap();
    let program = stack.add_program("echo-hash").await.unwrap();
    let file = stack.add_bytes(b"one file, not a directory\n").await.unwrap();
    let spec = json!({"program": program.to_string(), "inputs": [{"cid": file.to_string()}], "fan_out": {}});
    let id = stack.submit_ok(&spec).await.unwrap();
    let job = stack.wait_terminal(&id, WAIT).await.unwrap();
    assert_eq!(job.state, JobState::Failed, "{job:?}");
    let failure = job.failure.unwrap();
    assert_eq!(failure.reason, FailureReason::InvalidInput, "{}", failure.message);
    assert!(failure.message.contains("needs a directory input"), "{}", failure.message);
    assert!(failure.message.contains("inputs[0]") && failure.message.contains("file"), "{}", failure.message);
    stack.shutdown().await;
}

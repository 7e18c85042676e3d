//! Bad input against a whole stack: malformed requests get a clear answer (status, the JSON
//! error's `code` and `field`) and leave nothing behind, odd but valid content works, and a
//! normal job still succeeds afterwards.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use shoal_jobs::{FailureReason, JobState, Role};
use shoal_testkit::{api_key, Stack, StackOptions};

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
async fn a_run_that_does_not_write_a_declared_file_fails_missing_output() {
    let stack = Stack::start(StackOptions::default()).await.unwrap();
    let program = stack.add_program("echo-hash").await.unwrap().to_string();
    let inputs = json!([{"cid": HELLO_INLINE, "name": "hello"}]);
    let written = json!({"program": program, "inputs": inputs, "writes": ["hello.sha256"]});
    let unwritten = json!({"program": program, "inputs": inputs, "writes": ["hello.sha256", "summary.json"]});
    let ok = stack.wait_terminal(&stack.submit_ok(&written).await.unwrap(), WAIT).await.unwrap();
    assert_eq!(ok.state, JobState::Succeeded, "{ok:?}");
    let job = stack.wait_terminal(&stack.submit_ok(&unwritten).await.unwrap(), WAIT).await.unwrap();
    let failure = job.failure.unwrap();
    assert_eq!((job.state, failure.reason), (JobState::Failed, FailureReason::MissingOutput));
    assert!(
        failure.message.contains("without writing 1 of the files it declares: summary.json"),
        "{}",
        failure.message
    );
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

/// One malformed request and the answer it must get.
struct Case {
    what: &'static str,
    method: reqwest::Method,
    path: String,
    content_type: Option<&'static str>,
    headers: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
    status: StatusCode,
    code: &'static str,
    field: Option<&'static str>,
}

impl Case {
    fn submit(what: &'static str, body: impl Into<Vec<u8>>, status: StatusCode, code: &'static str) -> Case {
        Case {
            what,
            method: reqwest::Method::POST,
            path: "/v1/jobs".into(),
            content_type: Some("application/json"),
            headers: Vec::new(),
            body: Some(body.into()),
            status,
            code,
            field: None,
        }
    }

    fn spec(what: &'static str, spec: Value, code: &'static str, field: &'static str) -> Case {
        Case { field: Some(field), ..Case::submit(what, spec.to_string(), StatusCode::BAD_REQUEST, code) }
    }

    fn get(
        what: &'static str,
        path: String,
        status: StatusCode,
        code: &'static str,
        field: Option<&'static str>,
    ) -> Case {
        Case {
            method: reqwest::Method::GET,
            path,
            content_type: None,
            body: None,
            field,
            ..Case::submit(what, "", status, code)
        }
    }
}

/// Every malformed request of the README's error section and the attacks on the dev stack:
/// each gets its status and JSON error (`code`, `field` where one field is at fault, a
/// message), none leaves a job behind, and an ordinary job runs afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_malformed_request_gets_a_clear_answer_and_a_normal_job_still_runs() {
    let stack = Stack::start(StackOptions::default()).await.unwrap();
    let program = stack.add_program("echo-hash").await.unwrap().to_string();
    let input = stack.add_bytes(b"an input\n").await.unwrap().to_string();
    let with = |extra: Value| {
        let mut spec = json!({"program": program, "inputs": [{"cid": input, "path": "/data"}]});
        spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        spec
    };
    let input_at = |path: &str| json!({"inputs": [{"cid": input, "path": path}]});
    let valid = with(json!({})).to_string();
    // A ULID no job has.
    let unknown_id = "01ARZ3NDEKTSV4RRFFQ69G5FAV".to_string();
    let tenant_key = api_key(&stack.redis.url(), "other-tenant", Role::Tenant).await.unwrap();

    let cases = vec![
        Case::submit("not JSON", r#"{"program": "#, StatusCode::BAD_REQUEST, "malformed_json"),
        Case::submit("trailing garbage", format!("{valid} trailing"), StatusCode::BAD_REQUEST, "malformed_json"),
        Case::submit("a second object", format!("{valid}{valid}"), StatusCode::BAD_REQUEST, "malformed_json"),
        Case::submit("a bare array", format!(r#"["{program}"]"#), StatusCode::BAD_REQUEST, "invalid_spec"),
        Case::spec("no program", json!({"args": []}), "invalid_spec", "program"),
        Case::spec("an unknown field", with(json!({"colour": "blue"})), "invalid_spec", "colour"),
        Case::spec(
            "a bad CID",
            json!({"program": program, "inputs": [{"cid": "bafynope"}]}),
            "invalid_spec",
            "inputs[0].cid",
        ),
        Case::spec(
            "no input CID",
            json!({"program": program, "inputs": [{"path": "/data"}]}),
            "invalid_spec",
            "inputs[0].cid",
        ),
        Case::spec("a NUL in args", with(json!({"args": ["ok", "a\u{0}b"]})), "invalid_spec", "args[1]"),
        Case::spec("a NUL in env", with(json!({"env": {"MODE": "a\u{0}"}})), "invalid_spec", "env.MODE"),
        Case::spec("'=' in an env name", with(json!({"env": {"A=B": "x"}})), "invalid_spec", "env.A=B"),
        Case::spec("an input in /outputs", with(input_at("/outputs/x")), "invalid_spec", "inputs[0].path"),
        Case::spec("an input in //outputs", with(input_at("//outputs/x")), "invalid_spec", "inputs[0].path"),
        Case::spec("a trailing slash", with(input_at("/data/")), "invalid_spec", "inputs[0].path"),
        Case::spec("a dot segment", with(input_at("/data/./x")), "invalid_spec", "inputs[0].path"),
        Case::spec("a relative path", with(input_at("data")), "invalid_spec", "inputs[0].path"),
        Case::spec(
            "a path mounted twice",
            json!({"program": program, "inputs": [{"cid": input, "path": "/a"}, {"cid": input, "path": "/a"}]}),
            "invalid_spec",
            "inputs[1].path",
        ),
        Case::spec("no fuel", with(json!({"limits": {"fuel": 0}})), "invalid_spec", "limits.fuel"),
        Case::spec("no attempts", with(json!({"retry": {"max_attempts": 0}})), "invalid_spec", "retry.max_attempts"),
        Case::spec(
            "too many replicas",
            with(json!({"verification": {"mode": "replicated", "replicas": 9}})),
            "invalid_spec",
            "verification.replicas",
        ),
        Case::spec("a fan-out over no input", with(json!({"fan_out": {"input": 3}})), "invalid_spec", "fan_out.input"),
        Case {
            field: Some("env"),
            ..Case::submit(
                "a spec over 256 KiB",
                with(json!({"env": {"BLOB": "x".repeat(300 << 10)}})).to_string(),
                StatusCode::PAYLOAD_TOO_LARGE,
                "spec_too_large",
            )
        },
        Case {
            content_type: Some("text/plain"),
            ..Case::submit(
                "not declared JSON",
                valid.clone(),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
            )
        },
        Case::submit("a body over 1 MiB", vec![b' '; (1 << 20) + 1], StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
        Case {
            headers: vec![("idempotency-key", "k".repeat(256))],
            ..Case::submit("a long Idempotency-Key", valid.clone(), StatusCode::BAD_REQUEST, "invalid_idempotency_key")
        },
        Case::get(
            "a job id that is no ULID",
            "/v1/jobs/not-a-ulid".into(),
            StatusCode::BAD_REQUEST,
            "invalid_job_id",
            Some("id"),
        ),
        Case::get(
            "a job id past 7ZZZ…",
            format!("/v1/jobs/8{}", &unknown_id[1..]),
            StatusCode::BAD_REQUEST,
            "invalid_job_id",
            Some("id"),
        ),
        Case::get("an unknown job", format!("/v1/jobs/{unknown_id}"), StatusCode::NOT_FOUND, "job_not_found", None),
        Case::get(
            "an unknown job's result",
            format!("/v1/jobs/{unknown_id}/result"),
            StatusCode::NOT_FOUND,
            "job_not_found",
            None,
        ),
        Case::get(
            "a page of 0",
            "/v1/jobs?limit=0".into(),
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            Some("limit"),
        ),
        Case::get(
            "an unknown state",
            "/v1/jobs?state=done".into(),
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            Some("state"),
        ),
        Case::get(
            "a made-up cursor",
            "/v1/jobs?cursor=x".into(),
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            Some("cursor"),
        ),
        Case::get(
            "an unknown parameter",
            "/v1/jobs?colour=blue".into(),
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            None,
        ),
        Case::get("no endpoint", "/v2/nothing".into(), StatusCode::NOT_FOUND, "not_found", None),
        Case {
            method: reqwest::Method::DELETE,
            ..Case::get("a wrong method", "/v1/jobs".into(), StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", None)
        },
        Case {
            headers: vec![("authorization", format!("Bearer {tenant_key}"))],
            ..Case::get(
                "a tenant on an operator's endpoint",
                "/v1/workers".into(),
                StatusCode::FORBIDDEN,
                "forbidden",
                None,
            )
        },
        Case {
            headers: vec![("authorization", "Bearer shoal_nope".into())],
            ..Case::get("an unknown key", "/v1/jobs".into(), StatusCode::UNAUTHORIZED, "invalid_api_key", None)
        },
    ];

    for case in &cases {
        let mut request = stack.http.request(case.method.clone(), format!("{}{}", stack.gateway, case.path));
        if let Some(content_type) = case.content_type {
            request = request.header("content-type", content_type);
        }
        for (name, value) in &case.headers {
            request = request.header(*name, value);
        }
        if let Some(body) = &case.body {
            request = request.body(body.clone());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), case.status, "{}", case.what);
        let body: Value = response.json().await.unwrap();
        let error = &body["error"];
        assert_eq!(error["code"], case.code, "{}: {body}", case.what);
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{}: {body}", case.what);
        assert_eq!(error["field"].as_str(), case.field, "{}: {body}", case.what);
    }

    // Without a key at all.
    let response = reqwest::get(format!("{}/v1/jobs", stack.gateway)).await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthenticated", "{body}");

    // Nothing was queued, and an ordinary job runs.
    let page: Value = stack.http.get(format!("{}/v1/jobs", stack.gateway)).send().await.unwrap().json().await.unwrap();
    assert_eq!(page["jobs"], json!([]), "a refused request left a job behind");
    let id = stack.submit_ok(&with(json!({}))).await.unwrap();
    let job = stack.wait_terminal(&id, WAIT).await.unwrap();
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    stack.shutdown().await;
}

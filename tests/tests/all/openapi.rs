//! The gateway's OpenAPI document (`GET /openapi.json`) against the gateway itself: every
//! endpoint is called for each documented answer a test can provoke, the exchanges are
//! recorded, and `tests/js-openapi/check.mjs` (`npm ci --prefix tests/js-openapi`) checks the
//! document with independent OpenAPI 3.1 validators and every answer against its documented
//! status, content type and schema. The documented endpoints must be exactly the ones called,
//! so a new endpoint fails here until it is documented and tested.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, LOCATION};
use reqwest::{Client, RequestBuilder, StatusCode};
use serde_json::{json, Value};
use shoal_jobs::{ApiKeys, JobState, PipelineState, PipelineStore, Quotas, RedisConnection, Role, Tenant};
use shoal_testkit::{api_key, keyed_client, Stack, StackOptions, TEST_TENANT};

const WAIT: Duration = Duration::from_secs(60);

/// One request and its answer, as `check.mjs` reads them.
struct Recorder {
    gateway: String,
    exchanges: Vec<Value>,
}

/// An answer: its status, headers and body (parsed JSON for a JSON answer, else the text).
struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Recorder {
    /// Sends `request` (made with `client` for `path`, the real path) and records it under
    /// `template`, the path as the document spells it.
    async fn send(&mut self, template: &str, request: RequestBuilder) -> Answer {
        let (client, request) = request.build_split();
        let request = request.unwrap();
        let method = request.method().to_string();
        let response = client.execute(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let content_type = headers.get(CONTENT_TYPE).map(|v| v.to_str().unwrap().to_string());
        let text = response.text().await.unwrap();
        let body = match &content_type {
            None if text.is_empty() => Value::Null,
            Some(t) if t.starts_with("application/json") => {
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{method} {template}: not JSON ({e}): {text}"))
            }
            _ => Value::String(text),
        };
        self.exchanges.push(json!({
            "method": method,
            "path_template": template,
            "status": status.as_u16(),
            "content_type": content_type,
            "body": body,
        }));
        Answer { status, headers, body }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.gateway)
    }

    /// Opens the event stream `request` asks for (made with `client` for `path`), checks it
    /// answers 200 and records what it sent up to its first event, under `template`: a stream
    /// that goes on until the client leaves.
    async fn open_stream(&mut self, template: &str, request: RequestBuilder) -> String {
        let (client, request) = request.build_split();
        let request = request.unwrap();
        let method = request.method().to_string();
        let mut response = client.execute(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{template}");
        let mut text = String::new();
        while !text.contains("\n\n") {
            let chunk = tokio::time::timeout(WAIT, response.chunk()).await.unwrap().unwrap().unwrap();
            text.push_str(std::str::from_utf8(&chunk).unwrap());
        }
        self.exchanges.push(json!({
            "method": method,
            "path_template": template,
            "status": 200,
            "content_type": response.headers()[CONTENT_TYPE].to_str().unwrap(),
            "body": text,
        }));
        text
    }

    /// Sends and checks the status and, for an error, its code.
    async fn expect(&mut self, template: &str, request: RequestBuilder, status: u16, code: Option<&str>) -> Answer {
        let answer = self.send(template, request).await;
        assert_eq!(answer.status.as_u16(), status, "{template}: {}", answer.body);
        if let Some(code) = code {
            assert_eq!(answer.body["error"]["code"], code, "{template}: {}", answer.body);
        }
        answer
    }
}

/// The routes the gateway's router declares — each `.route("/path", get(…).post(…))` of its
/// `lib.rs` — spelled as the document spells them (`{*path}` is `{path}`).
fn routes() -> BTreeSet<(String, String)> {
    let source = std::fs::read_to_string(shoal_testkit::repo_root().join("gateway/src/lib.rs")).unwrap();
    let mut routes = BTreeSet::new();
    for call in source.split(".route(").skip(1) {
        let (path, rest) = call.trim_start().strip_prefix('"').and_then(|c| c.split_once('"')).unwrap();
        let path = path.replace("{*", "{");
        // The method router, up to the call's closing parenthesis: `get(a).post(b)`.
        let mut depth = 0;
        let end = rest
            .char_indices()
            .find(|&(_, c)| {
                depth += match c {
                    '(' => 1,
                    ')' => -1,
                    _ => 0,
                };
                depth < 0
            })
            .unwrap()
            .0;
        for piece in rest[..end].split('.') {
            let method = piece.trim_start_matches([',', ' ', '\n']).split('(').next().unwrap();
            if ["get", "post", "put", "delete", "patch"].contains(&method) {
                routes.insert((path.clone(), method.to_uppercase()));
            }
        }
    }
    routes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_openapi_document_is_valid_and_every_endpoint_answers_as_it_says() {
    // No worker at first, so jobs stay queued as long as the test needs.
    let mut stack = Stack::start(StackOptions { workers: 0, ..StackOptions::default() }).await.unwrap();
    let redis_url = stack.redis.url();
    let operator = stack.http.clone();
    let tenant =
        keyed_client(Client::builder(), &api_key(&redis_url, TEST_TENANT, Role::Tenant).await.unwrap()).unwrap();
    let anonymous = Client::new();
    let unknown = keyed_client(Client::builder(), "shoal_0000000000000000000000000000000000000000000").unwrap();
    // A tenant allowed little fuel and no job outstanding: its submissions are refused.
    let keys = ApiKeys::new(RedisConnection::open(std::slice::from_ref(&redis_url)).await.unwrap());
    let limited_tenant: Tenant = "limited".parse().unwrap();
    let quotas = Quotas { max_outstanding: Some(0), max_fuel: Some(1_000_000), ..Quotas::default() };
    keys.set_quotas(&limited_tenant, &quotas).await.unwrap();
    let limited =
        keyed_client(Client::builder(), &api_key(&redis_url, "limited", Role::Tenant).await.unwrap()).unwrap();
    let mut r = Recorder { gateway: stack.gateway.clone(), exchanges: Vec::new() };

    let document = r.expect("/openapi.json", anonymous.get(r.url("/openapi.json")), 200, None).await.body;
    r.expect("/healthz", anonymous.get(r.url("/healthz")), 200, None).await;

    // Submissions.
    let echo = stack.add_program("echo-hash").await.unwrap().to_string();
    let trap = stack.add_program("trap").await.unwrap().to_string();
    let input = stack.add_bytes(b"the input").await.unwrap().to_string();
    // The file routes' names shadow `input` below.
    let pipeline_input = input.clone();
    let tree = tempfile::tempdir().unwrap();
    std::fs::write(tree.path().join("a.txt"), "in a directory").unwrap();
    let directory = stack.add_path(tree.path()).await.unwrap().to_string();
    let spec = |args: &[&str], verification: &str| {
        json!({
            "program": echo,
            "args": args,
            "env": {"MODE": "fast"},
            "inputs": [
                {"cid": input, "path": "/inputs", "name": "data.txt"},
                {"cid": directory, "path": "/inputs", "name": "tree"},
            ],
            "verification": {"mode": verification},
        })
    };
    let jobs = "/v1/jobs";
    let gateway = stack.gateway.clone();
    let submit = |client: &Client, spec: &Value| client.post(format!("{gateway}{jobs}")).json(spec);
    let succeeding = spec(&["succeeds"], "none");
    let answer = r.expect(jobs, submit(&tenant, &succeeding).header("Idempotency-Key", "openapi-1"), 202, None).await;
    let succeeded = answer.body["id"].as_str().unwrap().to_string();
    assert_eq!(answer.headers[LOCATION], format!("/v1/jobs/{succeeded}").as_str());
    let answer = r.expect(jobs, submit(&tenant, &succeeding).header("Idempotency-Key", "openapi-1"), 200, None).await;
    assert_eq!(answer.body["id"].as_str(), Some(succeeded.as_str()));
    assert_eq!(answer.headers["idempotent-replayed"], "true");
    r.expect(
        jobs,
        submit(&tenant, &spec(&["other"], "none")).header("Idempotency-Key", "openapi-1"),
        422,
        Some("idempotency_key_reused"),
    )
    .await;
    r.expect(jobs, submit(&tenant, &succeeding).header("Idempotency-Key", ""), 400, Some("invalid_idempotency_key"))
        .await;
    let raw = |body: &'static str| {
        operator.post(format!("{gateway}{jobs}")).header(CONTENT_TYPE, "application/json").body(body)
    };
    r.expect(jobs, raw("{\"program\": "), 400, Some("malformed_json")).await;
    let answer = r.expect(jobs, raw("{\"program\": \"bafy-not-a-cid\"}"), 400, Some("invalid_spec")).await;
    assert_eq!(answer.body["error"]["field"], "program");
    r.expect(
        jobs,
        operator.post(r.url(jobs)).header(CONTENT_TYPE, "text/plain").body("{}"),
        415,
        Some("unsupported_media_type"),
    )
    .await;
    let huge = "x".repeat(2 << 20);
    r.expect(
        jobs,
        operator.post(r.url(jobs)).header(CONTENT_TYPE, "application/json").body(huge),
        413,
        Some("body_too_large"),
    )
    .await;
    let big_args = vec!["y".repeat(1024); 300];
    let big_args: Vec<&str> = big_args.iter().map(String::as_str).collect();
    r.expect(jobs, submit(&operator, &spec(&big_args, "none")), 413, Some("spec_too_large")).await;
    r.expect(jobs, submit(&anonymous, &succeeding), 401, Some("unauthenticated")).await;
    r.expect(jobs, submit(&unknown, &succeeding), 401, Some("invalid_api_key")).await;
    // The default fuel is more than the limited tenant may ask for.
    r.expect(jobs, submit(&limited, &spec(&["thirsty"], "none")), 403, Some("quota_exceeded")).await;
    let mut modest = spec(&["modest"], "none");
    modest["limits"] = json!({"fuel": 1_000});
    let answer = r.expect(jobs, submit(&limited, &modest), 429, Some("too_many_outstanding")).await;
    assert!(answer.headers.contains_key("retry-after"));

    let cancelled = r.expect(jobs, submit(&operator, &spec(&["cancelled"], "none")), 202, None).await.body["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut failing = spec(&[], "none");
    failing["program"] = json!(trap);
    let failed = r.expect(jobs, submit(&operator, &failing), 202, None).await.body["id"].as_str().unwrap().to_string();
    let unverified = r.expect(jobs, submit(&operator, &spec(&["awaits the verifier"], "always")), 202, None).await.body
        ["id"]
        .as_str()
        .unwrap()
        .to_string();

    // One job, its result and cancelling it, while nothing runs.
    let job = "/v1/jobs/{id}";
    let result = "/v1/jobs/{id}/result";
    let url = |id: &str, tail: &str| format!("{gateway}/v1/jobs/{id}{tail}");
    // Every change of every job the caller may see, as it happens: told to read afresh first.
    let everything = r.open_stream("/v1/events", tenant.get(r.url("/v1/events"))).await;
    assert!(everything.starts_with("event: resync\n"), "{everything}");
    r.expect("/v1/events", anonymous.get(r.url("/v1/events")), 401, None).await;
    r.expect(job, tenant.get(url(&succeeded, "")), 200, None).await;
    r.expect(job, tenant.get(url("not-a-job-id", "")), 400, Some("invalid_job_id")).await;
    let missing = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
    r.expect(job, tenant.get(url(missing, "")), 404, Some("job_not_found")).await;
    r.expect(job, anonymous.get(url(&succeeded, "")), 401, Some("unauthenticated")).await;
    r.expect(result, tenant.get(url(&succeeded, "/result")), 409, Some("not_finished")).await;
    r.expect(result, tenant.get(url(&succeeded, "/result?early=maybe")), 400, Some("invalid_parameter")).await;
    r.expect(result, tenant.get(url("not-a-job-id", "/result")), 400, Some("invalid_job_id")).await;
    r.expect(result, tenant.get(url(missing, "/result")), 404, Some("job_not_found")).await;
    r.expect(result, anonymous.get(url(&succeeded, "/result")), 401, None).await;
    let answer = r.expect(job, operator.delete(url(&cancelled, "")), 200, None).await;
    assert_eq!(answer.body["state"], "cancelled");
    r.expect(job, operator.delete(url(missing, "")), 404, Some("job_not_found")).await;
    r.expect(job, operator.delete(url("not-a-job-id", "")), 400, Some("invalid_job_id")).await;
    r.expect(job, anonymous.delete(url(&cancelled, "")), 401, None).await;
    r.expect(result, operator.get(url(&cancelled, "/result")), 422, Some("job_cancelled")).await;
    let output = "/v1/jobs/{id}/files/output";
    let output_file = "/v1/jobs/{id}/files/output/{path}";
    let input = "/v1/jobs/{id}/files/inputs/{index}";
    let input_file = "/v1/jobs/{id}/files/inputs/{index}/{path}";
    let (stdout, stderr) = ("/v1/jobs/{id}/files/stdout", "/v1/jobs/{id}/files/stderr");
    r.expect(output, tenant.get(url(&succeeded, "/files/output")), 409, Some("not_finished")).await;
    r.expect(output, tenant.get(url(&cancelled, "/files/output")), 404, Some("no_output")).await;
    r.expect(output, tenant.get(url("not-a-job-id", "/files/output")), 400, Some("invalid_job_id")).await;
    r.expect(output, anonymous.get(url(&succeeded, "/files/output")), 401, None).await;
    r.expect(output_file, tenant.get(url(&succeeded, "/files/output/data.txt.sha256")), 409, Some("not_finished"))
        .await;
    r.expect(stdout, tenant.get(url(&succeeded, "/files/stdout")), 409, Some("not_finished")).await;
    r.expect(stderr, tenant.get(url(&cancelled, "/files/stderr")), 404, Some("no_output")).await;
    // Inputs are there before the job runs.
    let answer = r.expect(input, tenant.get(url(&succeeded, "/files/inputs/0")), 200, None).await;
    assert_eq!(answer.body, "the input");
    let etag = answer.headers["etag"].clone();
    r.expect(input, tenant.get(url(&succeeded, "/files/inputs/0")).header("If-None-Match", etag), 304, None).await;
    let answer = r.expect(input, tenant.get(url(&succeeded, "/files/inputs/1")), 200, None).await;
    assert_eq!(answer.body["entries"][0]["name"], "a.txt");
    r.expect(input, tenant.get(url(&succeeded, "/files/inputs/7")), 404, Some("input_not_found")).await;
    r.expect(input, tenant.get(url(&succeeded, "/files/inputs/first")), 400, Some("invalid_parameter")).await;
    let answer = r.expect(input_file, tenant.get(url(&succeeded, "/files/inputs/1/a.txt")), 200, None).await;
    assert_eq!(answer.body, "in a directory");
    r.expect(input_file, tenant.get(url(&succeeded, "/files/inputs/1/b.txt")), 404, Some("path_not_found")).await;
    r.expect(input_file, anonymous.get(url(&succeeded, "/files/inputs/1/a.txt")), 401, None).await;
    r.expect(stdout, anonymous.get(url(&succeeded, "/files/stdout")), 401, None).await;
    r.expect(stderr, anonymous.get(url(&succeeded, "/files/stderr")), 401, None).await;

    // Listings.
    let list = |client: &Client, query: &str| client.get(format!("{gateway}/v1/jobs{query}"));
    r.expect(jobs, list(&operator, ""), 200, None).await;
    let page = r.expect(jobs, list(&tenant, "?state=queued&limit=1"), 200, None).await.body;
    let cursor = page["next_cursor"].as_str().expect("more than one queued job").to_string();
    r.expect(jobs, list(&tenant, &format!("?state=queued&limit=1&cursor={cursor}")), 200, None).await;
    r.expect(jobs, list(&tenant, "?limit=0"), 400, Some("invalid_parameter")).await;
    r.expect(jobs, list(&tenant, "?state=done"), 400, Some("invalid_parameter")).await;
    r.expect(jobs, list(&anonymous, ""), 401, None).await;

    // Pipelines: created, read and cancelled while no driver runs them.
    let pipelines = "/v1/pipelines";
    let pipeline = "/v1/pipelines/{id}";
    let two_stages = |tag: &str| {
        json!({
            "inputs": {"data": pipeline_input},
            "stages": [
                {"name": "hash", "program": echo, "args": [tag], "inputs": [{"from": "pipeline.data", "path": "/inputs"}]},
                {"name": "again", "program": echo, "inputs": [{"from": "hash", "path": "/hashed"}]}
            ]
        })
    };
    let create = |client: &Client, spec: &Value| client.post(format!("{gateway}{pipelines}")).json(spec);
    let answer =
        r.expect(pipelines, create(&tenant, &two_stages("a")).header("Idempotency-Key", "openapi-p"), 202, None).await;
    let running = answer.body["id"].as_str().unwrap().to_string();
    assert_eq!(answer.headers[LOCATION], format!("/v1/pipelines/{running}").as_str());
    let answer =
        r.expect(pipelines, create(&tenant, &two_stages("a")).header("Idempotency-Key", "openapi-p"), 200, None).await;
    assert_eq!(answer.body["id"].as_str(), Some(running.as_str()));
    r.expect(
        pipelines,
        create(&tenant, &two_stages("b")).header("Idempotency-Key", "openapi-p"),
        422,
        Some("idempotency_key_reused"),
    )
    .await;
    let mut cyclic = two_stages("a");
    cyclic["stages"][0]["inputs"][0]["from"] = json!("again");
    let answer = r.expect(pipelines, create(&tenant, &cyclic), 400, Some("invalid_spec")).await;
    assert_eq!(answer.body["error"]["field"], "stages.hash.inputs[0].from");
    r.expect(
        pipelines,
        tenant.post(r.url(pipelines)).header(CONTENT_TYPE, "text/plain").body("{}"),
        415,
        Some("unsupported_media_type"),
    )
    .await;
    r.expect(pipelines, create(&limited, &two_stages("a")), 403, Some("quota_exceeded")).await;
    r.expect(pipelines, create(&anonymous, &two_stages("a")), 401, Some("unauthenticated")).await;
    let failed_pipeline = r.expect(pipelines, create(&operator, &two_stages("c")), 202, None).await.body["id"]
        .as_str()
        .unwrap()
        .to_string();
    let pipeline_url = |id: &str| format!("{gateway}/v1/pipelines/{id}");
    r.expect(pipeline, tenant.get(pipeline_url(&running)), 200, None).await;
    r.expect(pipeline, tenant.get(pipeline_url("not-a-pipeline-id")), 400, Some("invalid_pipeline_id")).await;
    r.expect(pipeline, tenant.get(pipeline_url(missing)), 404, Some("pipeline_not_found")).await;
    // Another tenant's is not found.
    r.expect(pipeline, limited.get(pipeline_url(&running)), 404, Some("pipeline_not_found")).await;
    r.expect(pipeline, anonymous.get(pipeline_url(&running)), 401, None).await;
    let answer = r.expect(pipeline, tenant.delete(pipeline_url(&running)), 200, None).await;
    assert_eq!(answer.body["state"], "cancelled");
    r.expect(pipeline, tenant.delete(pipeline_url(missing)), 404, Some("pipeline_not_found")).await;
    r.expect(pipeline, tenant.delete(pipeline_url("not-a-pipeline-id")), 400, Some("invalid_pipeline_id")).await;
    r.expect(pipeline, anonymous.delete(pipeline_url(&running)), 401, None).await;
    // As the driver ends a pipeline whose stage failed.
    let ended = PipelineStore::new(RedisConnection::open(std::slice::from_ref(&redis_url)).await.unwrap());
    assert!(ended.finish(&failed_pipeline, PipelineState::Failed, "stage hash failed").await.unwrap());
    r.expect(pipeline, operator.delete(pipeline_url(&failed_pipeline)), 409, Some("pipeline_finished")).await;

    // Operators' endpoints, before and after a worker is live.
    let workers = "/v1/workers";
    r.expect(workers, operator.get(r.url(workers)), 200, None).await;
    r.expect(workers, tenant.get(r.url(workers)), 403, Some("forbidden")).await;
    r.expect(workers, anonymous.get(r.url(workers)), 401, None).await;
    r.expect("/metrics", operator.get(r.url("/metrics")), 200, None).await;
    r.expect("/metrics", tenant.get(r.url("/metrics")), 403, Some("forbidden")).await;
    r.expect("/metrics", anonymous.get(r.url("/metrics")), 401, None).await;

    // Now they run.
    stack.start_worker("worker-0");
    for id in [&succeeded, &failed, &unverified] {
        stack.wait_terminal(id, WAIT).await.unwrap();
    }
    assert_eq!(stack.job(&failed).await.unwrap().state, JobState::Failed);
    let answer = r.expect(result, tenant.get(url(&succeeded, "/result")), 200, None).await;
    assert_eq!(answer.body["acceptance"], "unverified");
    let answer = r.expect(result, operator.get(url(&failed, "/result")), 422, Some("job_failed")).await;
    assert_eq!(answer.body["error"]["reason"], "trap");
    let answer = r.expect(result, operator.get(url(&unverified, "/result")), 409, Some("not_accepted")).await;
    assert_eq!(answer.body["error"]["acceptance"], "pending");
    r.expect(result, operator.get(url(&unverified, "/result?early=true")), 200, None).await;
    // Submitting and waiting: the job's end answers its submission.
    let waited = tenant.post(format!("{gateway}{jobs}?wait=30s")).json(&spec(&["submitted, then waited for"], "none"));
    let answer = r.expect(jobs, waited, 201, None).await;
    assert_eq!(answer.body["state"], "succeeded", "{}", answer.body);
    let bad_wait = tenant.post(format!("{gateway}{jobs}?wait=later")).json(&succeeding);
    r.expect(jobs, bad_wait, 400, Some("invalid_parameter")).await;
    // Waiting for them: long-polls, and a finished job's changes to their end.
    let answer = r.expect(job, tenant.get(url(&succeeded, "?wait=1s")), 200, None).await;
    assert_eq!(answer.body["state"], "succeeded");
    r.expect(job, tenant.get(url(&succeeded, "?wait=soon")), 400, Some("invalid_parameter")).await;
    r.expect(result, tenant.get(url(&succeeded, "/result?wait=500ms")), 200, None).await;
    let events = "/v1/jobs/{id}/events";
    let answer = r.expect(events, tenant.get(url(&succeeded, "/events")), 200, None).await;
    assert!(answer.body.as_str().unwrap().contains("id: 3\n"), "{}", answer.body);
    let after_all = tenant.get(url(&succeeded, "/events")).header("last-event-id", "3");
    r.expect(events, after_all, 204, None).await;
    let bad_id = tenant.get(url(&succeeded, "/events")).header("last-event-id", "three");
    r.expect(events, bad_id, 400, Some("invalid_parameter")).await;
    r.expect(events, tenant.get(url("not-a-job-id", "/events")), 400, Some("invalid_job_id")).await;
    r.expect(events, tenant.get(url(missing, "/events")), 404, Some("job_not_found")).await;
    r.expect(events, anonymous.get(url(&succeeded, "/events")), 401, None).await;
    for id in [&succeeded, &failed, &unverified, &cancelled] {
        r.expect(job, operator.get(url(id, "")), 200, None).await;
    }
    r.expect(job, operator.delete(url(&succeeded, "")), 409, Some("job_finished")).await;
    let answer = r.expect(output, tenant.get(url(&succeeded, "/files/output")), 200, None).await;
    let names: Vec<&str> =
        answer.body["entries"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["data.txt.sha256", "tree"]);
    let etag = answer.headers["etag"].clone();
    r.expect(output, tenant.get(url(&succeeded, "/files/output")).header("If-None-Match", etag), 304, None).await;
    let answer = r.expect(output_file, tenant.get(url(&succeeded, "/files/output/data.txt.sha256")), 200, None).await;
    assert_eq!(answer.headers[CONTENT_TYPE], "application/octet-stream");
    r.expect(output_file, tenant.get(url(&succeeded, "/files/output/tree")), 200, None).await;
    r.expect(output_file, tenant.get(url(&succeeded, "/files/output/missing")), 404, Some("path_not_found")).await;
    let answer = r.expect(stdout, tenant.get(url(&succeeded, "/files/stdout")), 200, None).await;
    assert!(answer.body.as_str().unwrap().contains("arg[1]=succeeds"), "{}", answer.body);
    r.expect(stderr, tenant.get(url(&succeeded, "/files/stderr")), 200, None).await;
    r.expect(stderr, tenant.get(url(&failed, "/files/stderr")), 200, None).await;

    // The dashboard's files need no key.
    let answer = r.expect("/ui", anonymous.get(r.url("/ui")), 200, None).await;
    let etag = answer.headers["etag"].clone();
    r.expect("/ui", anonymous.get(r.url("/ui")).header("If-None-Match", etag), 304, None).await;
    r.expect("/ui/", anonymous.get(r.url("/ui/")), 200, None).await;
    for file in ["index.html", "app.js", "style.css", "icon.svg"] {
        r.expect("/ui/{file}", anonymous.get(r.url(&format!("/ui/{file}"))), 200, None).await;
    }
    r.expect("/ui/{file}", anonymous.get(r.url("/ui/secrets.txt")), 404, Some("not_found")).await;
    r.expect(jobs, list(&operator, ""), 200, None).await;
    let answer = r.expect(workers, operator.get(r.url(workers)), 200, None).await;
    assert_eq!(answer.body["workers"][0]["id"], "worker-0");

    // The documented endpoints are the ones called.
    let methods = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];
    let documented: BTreeSet<(String, String)> = document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|m| methods.contains(&m.as_str()))
                .map(|m| (path.clone(), m.to_uppercase()))
        })
        .collect();
    let called: BTreeSet<(String, String)> = r
        .exchanges
        .iter()
        .map(|e| (e["path_template"].as_str().unwrap().to_string(), e["method"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(documented, called, "documented endpoints against those this test calls");
    assert_eq!(documented, routes(), "documented endpoints against the gateway's routes");

    // And the independent check.
    let dir = tempfile::tempdir().unwrap();
    let (document_path, exchanges_path) = (dir.path().join("openapi.json"), dir.path().join("exchanges.json"));
    std::fs::write(&document_path, serde_json::to_vec(&document).unwrap()).unwrap();
    std::fs::write(&exchanges_path, serde_json::to_vec(&r.exchanges).unwrap()).unwrap();
    let output = Command::new("node")
        .arg(shoal_testkit::repo_root().join("tests/js-openapi/check.mjs"))
        .args([&document_path, &exchanges_path])
        .output()
        .expect("node is installed (scripts/install-deps.sh)");
    let printed = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{printed}");
    println!("{printed}");
    stack.shutdown().await;
}

//! Results without polling: long-polls on a job's status and result, Server-Sent Events of one
//! job's changes (resumed with `Last-Event-ID`, also on another gateway after the first one
//! went) and of a tenant's jobs.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use shoal_jobs::keys::RedisRole;
use shoal_jobs::Role;
use shoal_testkit::{api_key, keyed_client, Stack, StackOptions, SHARDS};
use tokio::sync::oneshot;

/// An echo-hash job over a fresh input, under verification `verification`.
async fn spec(stack: &Stack, text: &str, verification: &str) -> Value {
    let program = stack.add_program("echo-hash").await.unwrap();
    let input = stack.add_bytes(text.as_bytes()).await.unwrap();
    json!({
        "program": program.to_string(),
        "inputs": [{"cid": input.to_string()}],
        "verification": {"mode": verification},
    })
}

/// A stack without workers: jobs stay queued until a test starts one.
async fn idle_stack(verifier: Option<f64>) -> Stack {
    Stack::start(StackOptions { workers: 0, verifier, ..StackOptions::default() }).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_long_poll_answers_at_the_settle_or_at_its_timeout() {
    let mut stack = idle_stack(None).await;
    let id = stack.submit_ok(&spec(&stack, "long-poll\n", "none").await).await.unwrap();
    let url = format!("{}/v1/jobs/{id}", stack.gateway);

    // Nobody runs it: the wait runs out and the answer is the job as it is.
    let asked = Instant::now();
    let job: Value = stack.http.get(format!("{url}?wait=500ms")).send().await.unwrap().json().await.unwrap();
    let waited = asked.elapsed();
    assert_eq!(job["state"], "queued");
    assert!(waited >= Duration::from_millis(500) && waited < Duration::from_secs(5), "{waited:?}");

    // A wait of 30 s answers as soon as the job settles, long before.
    let polling = tokio::spawn({
        let (http, url) = (stack.http.clone(), url.clone());
        async move {
            let asked = Instant::now();
            let response = http.get(format!("{url}?wait=30s")).send().await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap(), asked.elapsed())
        }
    });
    let result = tokio::spawn({
        let http = stack.http.clone();
        let url = format!("{url}/result?wait=30s");
        async move { http.get(url).send().await.unwrap().json::<Value>().await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!polling.is_finished(), "the long-poll answered before the job ended");
    stack.start_worker("worker");
    let (status, job, waited) = polling.await.unwrap();
    assert_eq!(status, reqwest::StatusCode::OK);
    assert_eq!(job["state"], "succeeded", "{job}");
    assert!(waited < Duration::from_secs(20), "answered after {waited:?}, not at the settle");
    // The job needs no verdict: the result answers at the settle too.
    assert_eq!(result.await.unwrap()["job"], json!(id));

    // A job already terminal answers at once.
    let asked = Instant::now();
    let job: Value = stack.http.get(format!("{url}?wait=30s")).send().await.unwrap().json().await.unwrap();
    assert_eq!(job["state"], "succeeded");
    assert!(asked.elapsed() < Duration::from_secs(2));
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_submission_that_waits_answers_at_the_settle_or_queued_at_its_timeout() {
    let mut stack = idle_stack(None).await;
    let jobs = format!("{}/v1/jobs", stack.gateway);

    // Nobody runs it: the wait runs out and the answer is the new job, queued: 202.
    let asked = Instant::now();
    let response = stack.http.post(format!("{jobs}?wait=500ms")).json(&spec(&stack, "waits\n", "none").await);
    let response = response.send().await.unwrap();
    let waited = asked.elapsed();
    assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED);
    let timing = response.headers()["server-timing"].to_str().unwrap().to_string();
    assert!(timing.contains(", wait;dur="), "{timing}");
    let queued: Value = response.json().await.unwrap();
    assert_eq!(queued["state"], "queued");
    assert!(waited >= Duration::from_millis(500) && waited < Duration::from_secs(5), "{waited:?}");

    // A wait of 30 s answers as soon as the job settles: 201, the job succeeded, with its result.
    let settled = spec(&stack, "waits until it settles\n", "none").await;
    let submitting = tokio::spawn({
        let (http, jobs, settled) = (stack.http.clone(), jobs.clone(), settled.clone());
        async move {
            let asked = Instant::now();
            let request = http.post(format!("{jobs}?wait=30s")).header("Idempotency-Key", "waits-1").json(&settled);
            let response = request.send().await.unwrap();
            (response.status(), response.json::<Value>().await.unwrap(), asked.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!submitting.is_finished(), "the submission answered before its job ended");
    stack.start_worker("worker");
    let (status, job, waited) = submitting.await.unwrap();
    assert_eq!(status, reqwest::StatusCode::CREATED, "{job}");
    assert_eq!(job["state"], "succeeded", "{job}");
    assert!(job["result"]["output"].is_string(), "{job}");
    assert!(waited < Duration::from_secs(20), "answered after {waited:?}, not at the settle");

    // The same submission again (its key): the job it created, at once, not run again.
    let asked = Instant::now();
    let request = stack.http.post(format!("{jobs}?wait=30s")).header("Idempotency-Key", "waits-1").json(&settled);
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    assert_eq!(response.headers()["idempotent-replayed"], "true");
    let replayed: Value = response.json().await.unwrap();
    assert_eq!((&replayed["id"], &replayed["state"]), (&job["id"], &json!("succeeded")));
    assert_eq!(replayed["executions"].as_array().map(Vec::len), Some(1), "{replayed}");
    assert!(asked.elapsed() < Duration::from_secs(2));

    // A job that fails within the wait answers as it ended too.
    let trap = stack.add_program("trap").await.unwrap();
    let failing = json!({"program": trap.to_string(), "verification": {"mode": "none"}});
    let response = stack.http.post(format!("{jobs}?wait=30s")).json(&failing).send().await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::CREATED);
    let failed: Value = response.json().await.unwrap();
    assert_eq!((&failed["state"], &failed["failure"]["reason"]), (&json!("failed"), &json!("trap")), "{failed}");

    // The first job was left queued by its wait, not lost: the worker runs it too.
    let url = format!("{jobs}/{}?wait=30s", queued["id"].as_str().unwrap());
    let first: Value = stack.http.get(url).send().await.unwrap().json().await.unwrap();
    assert_eq!(first["state"], "succeeded", "{first}");
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bad_wait_is_a_400_naming_the_parameter() {
    let stack = idle_stack(None).await;
    let spec = spec(&stack, "bad wait\n", "none").await;
    let id = stack.submit_ok(&spec).await.unwrap();
    let gateway = &stack.gateway;
    let requests = [
        stack.http.get(format!("{gateway}/v1/jobs/{id}?wait=soon")),
        stack.http.get(format!("{gateway}/v1/jobs/{id}/result?wait=5m")),
        stack.http.post(format!("{gateway}/v1/jobs?wait=later")).header("Idempotency-Key", "bad-wait").json(&spec),
    ];
    for request in requests {
        let response = request.send().await.unwrap();
        let url = response.url().clone();
        assert_eq!(response.status(), reqwest::StatusCode::BAD_REQUEST, "{url}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(
            (body["error"]["code"].as_str(), body["error"]["field"].as_str()),
            (Some("invalid_parameter"), Some("wait")),
            "{url}"
        );
    }
    // The refused submission created nothing: its key is still unused.
    let response = stack.http.post(format!("{gateway}/v1/jobs")).header("Idempotency-Key", "bad-wait").json(&spec);
    assert_eq!(response.send().await.unwrap().status(), reqwest::StatusCode::ACCEPTED);
    stack.shutdown().await;
}

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sse {
    id: Option<String>,
    event: String,
    data: Value,
}

/// Reads Server-Sent Events from a response.
struct Events {
    response: reqwest::Response,
    buffer: String,
}

impl Events {
    async fn open(http: &reqwest::Client, url: &str, last_event_id: Option<u64>) -> Events {
        let mut request = http.get(url);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::OK, "{url}");
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Events { response, buffer: String::new() }
    }

    /// The next event (keep-alive comments skipped), `None` once the stream ended; fails after
    /// `limit`.
    async fn next(&mut self, limit: Duration) -> Option<Sse> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, "message".to_string(), String::new());
                for line in block.lines() {
                    match line.split_once(':').map(|(field, value)| (field, value.trim_start())) {
                        Some(("id", value)) => id = Some(value.to_string()),
                        Some(("event", value)) => event = value.to_string(),
                        Some(("data", value)) => data.push_str(value),
                        _ => {}
                    }
                }
                if !data.is_empty() {
                    let data = serde_json::from_str(&data).unwrap_or(Value::String(data));
                    return Some(Sse { id, event, data });
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk()).await.expect("an event in time");
            match chunk.unwrap() {
                Some(bytes) => self.buffer.push_str(std::str::from_utf8(&bytes).unwrap()),
                None => return None,
            }
        }
    }

    /// Every event until the stream ends.
    async fn until_end(mut self, limit: Duration) -> Vec<Sse> {
        let mut events = Vec::new();
        while let Some(event) = self.next(limit).await {
            events.push(event);
        }
        events
    }
}

/// `(id, event, state, verdict)` of each event, for comparing.
fn summary(events: &[Sse]) -> Vec<(String, String, String, Option<String>)> {
    events
        .iter()
        .map(|e| {
            let verdict = e.data["verdict"].as_str().map(str::to_string);
            (
                e.id.clone().unwrap_or_default(),
                e.event.clone(),
                e.data["state"].as_str().unwrap_or("").to_string(),
                verdict,
            )
        })
        .collect()
}

fn expected(changes: &[(u64, &str, &str, Option<&str>)]) -> Vec<(String, String, String, Option<String>)> {
    changes
        .iter()
        .map(|(id, event, state, verdict)| {
            (id.to_string(), event.to_string(), state.to_string(), verdict.map(str::to_string))
        })
        .collect()
}

/// A second gateway on the stack's Redis; stopped when the sender is dropped or sent to.
async fn another_gateway(stack: &Stack) -> (String, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let config = shoal_gateway::GatewayConfig::new(stack.redis.url_for(RedisRole::Gateway), SHARDS);
    let router = shoal_gateway::router(config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
        shoal_gateway::serve(listener, router, async move {
            stopped.await.ok();
        })
        .await
        .unwrap();
    });
    (url, stop, serving)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_jobs_events_come_once_in_order_and_resume_after_the_last_seen_even_on_another_gateway() {
    let mut stack = idle_stack(Some(1.0)).await;
    let id = stack.submit_ok(&spec(&stack, "events\n", "sampled").await).await.unwrap();

    // Followed on a gateway that goes away after the first change.
    let (first_gateway, stop, serving) = another_gateway(&stack).await;
    let mut first = Events::open(&stack.http, &format!("{first_gateway}/v1/jobs/{id}/events"), None).await;
    let queued = first.next(Duration::from_secs(10)).await.unwrap();
    assert_eq!(summary(&[queued]), expected(&[(1, "state", "queued", None)]));
    stop.send(()).unwrap();
    // Draining ends the stream (its client reconnects), so the gateway stops.
    assert_eq!(first.next(Duration::from_secs(10)).await, None);
    tokio::time::timeout(Duration::from_secs(10), serving).await.unwrap().unwrap();

    // Resumed on the stack's gateway after change 1, while the job runs and is verified.
    let url = format!("{}/v1/jobs/{id}/events", stack.gateway);
    let resumed = Events::open(&stack.http, &url, Some(1)).await;
    // The result, asked for meanwhile, answers once the verifier had its say.
    let result = tokio::spawn({
        let request = stack.http.get(format!("{}/v1/jobs/{id}/result?wait=60s", stack.gateway));
        async move { request.send().await.unwrap().json::<Value>().await.unwrap() }
    });
    stack.start_worker("worker");
    let events = resumed.until_end(Duration::from_secs(60)).await;
    assert_eq!(
        summary(&events),
        expected(&[
            (2, "state", "running", None),
            (3, "state", "succeeded", None),
            (4, "verdict", "succeeded", Some("agreed")),
        ]),
        "{events:?}"
    );
    assert_eq!(events[0].data["job"], json!(id));
    let result = result.await.unwrap();
    assert_eq!(
        (result["acceptance"].as_str(), result["accepted"].as_bool()),
        (Some("verified"), Some(true)),
        "{result}"
    );

    // From the start: every change once, in order; after the last, nothing (204 ends an
    // EventSource's reconnecting).
    let all = Events::open(&stack.http, &url, None).await.until_end(Duration::from_secs(10)).await;
    assert_eq!(summary(&all)[1..], summary(&events)[..]);
    assert_eq!(summary(&all)[0], expected(&[(1, "state", "queued", None)])[0]);
    let after_all = stack.http.get(&url).header("last-event-id", "4").send().await.unwrap();
    assert_eq!(after_all.status(), reqwest::StatusCode::NO_CONTENT);
    let bad = stack.http.get(&url).header("last-event-id", "four").send().await.unwrap();
    assert_eq!(bad.status(), reqwest::StatusCode::BAD_REQUEST);
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_event_stream_of_a_tenant_never_shows_another_tenants_jobs() {
    let mut stack = idle_stack(None).await;
    let mine =
        keyed_client(reqwest::Client::builder(), &api_key(&stack.redis.url(), "mine", Role::Tenant).await.unwrap())
            .unwrap();
    let theirs =
        keyed_client(reqwest::Client::builder(), &api_key(&stack.redis.url(), "theirs", Role::Tenant).await.unwrap())
            .unwrap();
    let url = format!("{}/v1/events", stack.gateway);
    let mut my_events = Events::open(&mine, &url, None).await;
    let mut every_event = Events::open(&stack.http, &url, None).await;
    for events in [&mut my_events, &mut every_event] {
        assert_eq!(
            events.next(Duration::from_secs(5)).await.unwrap().event,
            "resync",
            "told to read the listing first"
        );
    }

    let submit = |client: &reqwest::Client, spec: Value| {
        let request = client.post(format!("{}/v1/jobs", stack.gateway)).json(&spec);
        async move { request.send().await.unwrap().json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string() }
    };
    let their_job = submit(&theirs, spec(&stack, "theirs\n", "none").await).await;
    let my_job = submit(&mine, spec(&stack, "mine\n", "none").await).await;
    stack.start_worker("worker");

    // Mine: queued, running, succeeded, and nothing of theirs in between.
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let event = my_events.next(Duration::from_secs(60)).await.unwrap();
        assert_eq!(event.data["job"], json!(my_job), "{event:?}");
        assert!(event.id.is_none(), "not resumable, so no ids");
        seen.push(event.data["state"].as_str().unwrap().to_string());
    }
    assert_eq!(seen, ["queued", "running", "succeeded"]);
    // An operator sees both.
    let mut jobs = std::collections::BTreeSet::new();
    while jobs.len() < 2 {
        jobs.insert(every_event.next(Duration::from_secs(60)).await.unwrap().data["job"].as_str().unwrap().to_string());
    }
    assert_eq!(jobs, [my_job, their_job].into_iter().collect());
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_that_kept_no_changes_streams_its_state_as_event_zero() {
    let stack = Stack::start(StackOptions::default()).await.unwrap();
    let id = stack.submit_ok(&spec(&stack, "no changes kept\n", "none").await).await.unwrap();
    stack.wait_terminal(&id, Duration::from_secs(60)).await.unwrap();
    // As for a job stored before jobs kept their changes.
    let admin = shoal_jobs::RedisConnection::open(&[stack.redis.url()]).await.unwrap();
    let _: () = redis::cmd("DEL")
        .arg(shoal_jobs::keys::JobKeys::of(&id).changes)
        .query_async(&mut admin.clone())
        .await
        .unwrap();

    let url = format!("{}/v1/jobs/{id}/events", stack.gateway);
    let events = Events::open(&stack.http, &url, None).await.until_end(Duration::from_secs(10)).await;
    assert_eq!(summary(&events), expected(&[(0, "state", "succeeded", None)]));
    let again = stack.http.get(&url).header("last-event-id", "0").send().await.unwrap();
    assert_eq!(again.status(), reqwest::StatusCode::NO_CONTENT, "an EventSource stops reconnecting");
    stack.shutdown().await;
}

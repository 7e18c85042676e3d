//! The gateway's HTTP API end to end: a real `redis-server`, the router served on a loopback
//! port, and a real HTTP client.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use redis::aio::ConnectionManager;
use redis::streams::StreamRangeReply;
use redis::AsyncCommands;
use reqwest::header::{CONTENT_TYPE, LOCATION};
use reqwest::{Response, StatusCode};
use serde_json::{json, Value};
use shoal_gateway::{router, serve, GatewayConfig, GatewayError};
use shoal_jobs::free_port;
use shoal_jobs::keys::shard_stream;
use shoal_jobs::{
    now_ms, redis_urls, ApiKeys, ContentId, Created, Execution, ExecutionOutcome, ExecutionResult, Failure,
    FailureReason, Fsync, Idempotency, JobSpec, JobStore, RedisConnection, RedisServer, Role, ShardQueue, Tenant,
    Verification, VerificationOutcome, VerificationPolicy,
};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const PROGRAM: &str = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4";
const INPUT: &str = "bafybeiczsscdsbs7ffqz55asqdf3smv6klcw3gofszvwlyarci47bgf354";
const OUTPUT: &str = "bafybeiedpcapwld4tkgtzwahfofgn4wex5ryysf4se6hwpmlrsh4ntnrau";
const SHARDS: u32 = 4;
/// Longest any single wait in these tests may take before it counts as a hang.
const DEADLINE: Duration = Duration::from_secs(30);

/// A valid spec with every field given (so it reads back unchanged); `tag` goes into `args`
/// so different tags give different specs.
fn spec(tag: &str) -> Value {
    json!({
        "program": PROGRAM,
        "entrypoint": "_start",
        "args": ["--tag", tag],
        "env": {"MODE": "test"},
        "inputs": [{"cid": INPUT, "path": "/data"}],
        "limits": {"fuel": 1_000_000, "memory_bytes": 67_108_864, "wall_time_ms": 10_000, "output_bytes": 1_048_576, "log_bytes": 65_536},
        "verification": {"mode": "none"},
        "retry": {"max_attempts": 3, "total_timeout_ms": 3_600_000, "backoff_ms": 1_000}
    })
}

/// The tenant of the tests' keys.
fn tenant() -> Tenant {
    "test".parse().unwrap()
}

/// A new key for tenant `tenant` with `role`, made in the Redis at `urls`.
async fn api_key(urls: &str, tenant: &Tenant, role: Role) -> String {
    let keys = ApiKeys::new(RedisConnection::open(&redis_urls(urls)).await.unwrap());
    keys.create(tenant, role).await.unwrap().secret
}

/// A client sending a new key for tenant `tenant` with `role`, made in the Redis at `urls`.
async fn keyed_client(urls: &str, tenant: &Tenant, role: Role) -> reqwest::Client {
    let key = api_key(urls, tenant, role).await;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {key}").parse().unwrap());
    reqwest::Client::builder().default_headers(headers).build().unwrap()
}

/// A gateway on a loopback port over its own Redis; both stop when it is dropped.
struct Gateway {
    base: String,
    http: reqwest::Client,
    redis: RedisServer,
    _shutdown: oneshot::Sender<()>,
    _dir: TempDir,
}

impl Gateway {
    async fn start() -> Gateway {
        Gateway::start_with(|_| {}).await
    }

    async fn start_with(adjust: impl FnOnce(&mut GatewayConfig)) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let redis = RedisServer::start(dir.path(), Fsync::EverySec).unwrap();
        let mut config = GatewayConfig::new(redis.url(), SHARDS);
        adjust(&mut config);
        let app = router(config).await.unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (shutdown, stop) = oneshot::channel::<()>();
        tokio::spawn(serve(listener, app, async move {
            stop.await.ok();
        }));
        let http = keyed_client(&redis.url(), &tenant(), Role::Operator).await;
        Gateway { base, http, redis, _shutdown: shutdown, _dir: dir }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get(&self, path: &str) -> Response {
        self.http.get(self.url(path)).send().await.unwrap()
    }

    async fn submit(&self, spec: &Value, idempotency_key: Option<&str>) -> Response {
        let mut request = self.http.post(self.url("/v1/jobs")).json(spec);
        if let Some(key) = idempotency_key {
            request = request.header("idempotency-key", key);
        }
        request.send().await.unwrap()
    }

    async fn post_raw(&self, content_type: Option<&str>, body: &'static str) -> Response {
        let mut request = self.http.post(self.url("/v1/jobs")).body(body);
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        request.send().await.unwrap()
    }

    /// Submits `spec` and returns the new job's id.
    async fn create(&self, spec: &Value) -> String {
        let response = self.submit(spec, None).await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let job: Value = response.json().await.unwrap();
        job["id"].as_str().unwrap().to_string()
    }

    async fn redis(&self) -> ConnectionManager {
        redis::Client::open(self.redis.url()).unwrap().get_connection_manager().await.unwrap()
    }

    /// How many entries of shard `shard`'s stream carry job `job`.
    async fn entries_for(&self, shard: u32, job: &str) -> usize {
        let reply: StreamRangeReply = self.redis().await.xrange_all(shard_stream(shard)).await.unwrap();
        reply.ids.iter().filter(|entry| entry.get::<String>("job").as_deref() == Some(job)).count()
    }

    async fn total_backlog(&self) -> u64 {
        let queue = ShardQueue::new(self.redis().await);
        let mut total = 0;
        for shard in 0..SHARDS {
            total += queue.len(shard).await.unwrap();
        }
        total
    }
}

/// Asserts an error answer's status and code, and returns its `error` object.
async fn expect_error(response: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(response.status(), status);
    let content_type = response.headers()[CONTENT_TYPE].to_str().unwrap().to_string();
    assert_eq!(content_type, "application/json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    body["error"].clone()
}

fn execution(n: u32) -> Execution {
    Execution {
        id: format!("w1-{n}"),
        worker: "w1".into(),
        started_at_ms: now_ms(),
        finished_at_ms: None,
        outcome: None,
        receipt: None,
    }
}

fn cid(s: &str) -> ContentId {
    s.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submitted_job_is_stored_queued_and_put_on_its_shard_stream() {
    let gateway = Gateway::start().await;
    let response = gateway.submit(&spec("a"), None).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let location = response.headers()[LOCATION].to_str().unwrap().to_string();
    let job: Value = response.json().await.unwrap();
    let id = job["id"].as_str().unwrap();
    assert_eq!(id.len(), 26, "{id} is not a ULID");
    assert_eq!(location, format!("/v1/jobs/{id}"));
    assert_eq!(job["state"], "queued");

    let response = gateway.get(&location).await;
    assert_eq!(response.status(), StatusCode::OK);
    let read: Value = response.json().await.unwrap();
    assert_eq!(read["id"], id);
    assert_eq!(read["state"], "queued");
    assert_eq!(read["spec"], spec("a"), "the stored spec is the submitted one");
    assert_eq!(read["executions"], json!([]));

    let shard = read["shard"].as_u64().unwrap() as u32;
    assert!(shard < SHARDS);
    assert_eq!(gateway.entries_for(shard, id).await, 1);
    assert_eq!(gateway.total_backlog().await, 1);
    // Ids are case-insensitive ULIDs: the lower-case form names the same job.
    let lower = gateway.get(&format!("/v1/jobs/{}", id.to_lowercase())).await;
    assert_eq!(lower.status(), StatusCode::OK);
    assert_eq!(lower.json::<Value>().await.unwrap()["id"], id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_idempotency_key_and_spec_return_the_first_job_without_queueing_it_again() {
    let gateway = Gateway::start().await;
    let first = gateway.submit(&spec("a"), Some("order-17")).await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();

    let again = gateway.submit(&spec("a"), Some("order-17")).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let location = again.headers()[LOCATION].to_str().unwrap().to_string();
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    assert_eq!(location, format!("/v1/jobs/{}", first["id"].as_str().unwrap()));

    let shard = first["shard"].as_u64().unwrap() as u32;
    assert_eq!(gateway.entries_for(shard, first["id"].as_str().unwrap()).await, 1);
    assert_eq!(gateway.total_backlog().await, 1);

    // Another key is another job.
    let other = gateway.submit(&spec("a"), Some("order-18")).await;
    assert_eq!(other.status(), StatusCode::ACCEPTED);
    let other: Value = other.json().await.unwrap();
    assert_ne!(other["id"], first["id"]);
    assert_eq!(gateway.total_backlog().await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_queues_a_job_whose_first_submission_was_stored_but_not_queued() {
    let gateway = Gateway::start().await;
    // The first request stored the job and failed before queueing it (Redis went away).
    let store = JobStore::new(gateway.redis().await);
    let stored = JobSpec::from_json(spec("a").to_string().as_bytes()).unwrap();
    let tenant = tenant();
    let key = Some(Idempotency::Client { tenant: &tenant, key: "order-99" });
    let Created::New(job) = store.create(&stored, 2, &tenant, key).await.unwrap() else { panic!("new") };
    assert_eq!(gateway.total_backlog().await, 0);

    let retry = gateway.submit(&spec("a"), Some("order-99")).await;
    assert_eq!(retry.status(), StatusCode::OK);
    let retry: Value = retry.json().await.unwrap();
    assert_eq!(retry["id"], job.id.as_str());
    assert_eq!(gateway.entries_for(2, &job.id).await, 1, "the retry queued it");
    // And only once.
    gateway.submit(&spec("a"), Some("order-99")).await;
    assert_eq!(gateway.entries_for(2, &job.id).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_reused_for_another_spec_is_422_and_creates_nothing() {
    let gateway = Gateway::start().await;
    let first = gateway.submit(&spec("a"), Some("key-1")).await;
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first: Value = first.json().await.unwrap();

    let error = expect_error(
        gateway.submit(&spec("b"), Some("key-1")).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
    )
    .await;
    assert!(error["message"].as_str().unwrap().contains(first["id"].as_str().unwrap()), "{error}");
    assert_eq!(gateway.total_backlog().await, 1);
    let listed: Value = gateway.get("/v1/jobs").await.json().await.unwrap();
    assert_eq!(listed["jobs"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_idempotency_key_is_400() {
    let gateway = Gateway::start().await;
    let long = "k".repeat(256);
    expect_error(gateway.submit(&spec("a"), Some(&long)).await, StatusCode::BAD_REQUEST, "invalid_idempotency_key")
        .await;
    let response = gateway
        .http
        .post(gateway.url("/v1/jobs"))
        .json(&spec("a"))
        .header("idempotency-key", reqwest::header::HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap())
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::BAD_REQUEST, "invalid_idempotency_key").await;
    assert_eq!(gateway.total_backlog().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_specs_are_400_naming_the_field_and_why() {
    let gateway = Gateway::start().await;
    let json = Some("application/json");

    let error =
        expect_error(gateway.post_raw(json, r#"{"program": "#).await, StatusCode::BAD_REQUEST, "malformed_json").await;
    assert!(error.get("field").is_none(), "{error}");

    let unknown = format!(r#"{{"program":"{PROGRAM}","colour":"blue"}}"#).leak();
    let error = expect_error(gateway.post_raw(json, unknown).await, StatusCode::BAD_REQUEST, "invalid_spec").await;
    assert_eq!(error["field"], "colour");
    assert!(error["message"].as_str().unwrap().contains("unknown field `colour`"), "{error}");

    let mut bad_cid = spec("a");
    bad_cid["inputs"][0]["cid"] = json!("bafynotacid");
    let error = expect_error(gateway.submit(&bad_cid, None).await, StatusCode::BAD_REQUEST, "invalid_spec").await;
    assert_eq!(error["field"], "inputs[0].cid");
    assert!(error["message"].as_str().unwrap().contains("invalid CID"), "{error}");

    let mut zero_fuel = spec("a");
    zero_fuel["limits"]["fuel"] = json!(0);
    let error = expect_error(gateway.submit(&zero_fuel, None).await, StatusCode::BAD_REQUEST, "invalid_spec").await;
    assert_eq!(error["field"], "limits.fuel");

    let error =
        expect_error(gateway.post_raw(json, r#"{"args":[]}"#).await, StatusCode::BAD_REQUEST, "invalid_spec").await;
    assert!(error["message"].as_str().unwrap().contains("missing field `program`"), "{error}");
    assert_eq!(error["field"], "program");

    let mut nul = spec("a");
    nul["args"] = json!(["ok", "a\u{0}b"]);
    let error = expect_error(gateway.submit(&nul, None).await, StatusCode::BAD_REQUEST, "invalid_spec").await;
    assert_eq!(error["field"], "args[1]");

    let mut into_outputs = spec("a");
    into_outputs["inputs"][0]["path"] = json!("//outputs/x");
    let error = expect_error(gateway.submit(&into_outputs, None).await, StatusCode::BAD_REQUEST, "invalid_spec").await;
    assert_eq!(error["field"], "inputs[0].path");

    let trailing = format!(r#"{{"program":"{PROGRAM}"}} {{"program":"{PROGRAM}"}}"#).leak();
    expect_error(gateway.post_raw(json, trailing).await, StatusCode::BAD_REQUEST, "malformed_json").await;
    let array = format!(r#"["{PROGRAM}"]"#).leak();
    let error = expect_error(gateway.post_raw(json, array).await, StatusCode::BAD_REQUEST, "invalid_spec").await;
    assert!(error["message"].as_str().unwrap().contains("JSON object"), "{error}");

    assert_eq!(gateway.total_backlog().await, 0, "no rejected spec is queued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_not_declared_json_is_415() {
    let gateway = Gateway::start().await;
    let body = format!(r#"{{"program":"{PROGRAM}"}}"#).leak();
    expect_error(
        gateway.post_raw(Some("text/plain"), body).await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    expect_error(gateway.post_raw(None, body).await, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
        .await;
    // Parameters and case do not matter.
    let response = gateway.post_raw(Some("Application/JSON; charset=utf-8"), body).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
}

/// What a raw HTTP/1.1 client saw when it sent a 1 GiB body: the answer's head and body, and how
/// many body bytes it had written when the answer arrived.
struct RawAnswer {
    head: String,
    body: String,
    written: u64,
}

/// Sends `POST /v1/jobs` with a 1 GiB body of JSON whitespace (with a declared length, or
/// chunked), writing and reading at once like curl does: a server that answers early and closes
/// makes the writes fail, which must not hide its answer (as it does in clients that only read
/// after writing).
async fn post_one_gibibyte(address: &str, key: &str, declared: bool) -> RawAnswer {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const GIB: u64 = 1 << 30;
    const CHUNK: usize = 64 << 10;
    let stream = tokio::net::TcpStream::connect(address).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let written = Arc::new(AtomicU64::new(0));
    let framing = if declared { format!("Content-Length: {GIB}") } else { "Transfer-Encoding: chunked".to_string() };
    let head =
        format!("POST /v1/jobs HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\n{framing}\r\n\r\n");
    let counter = written.clone();
    let writer = tokio::spawn(async move {
        write.write_all(head.as_bytes()).await?;
        let chunk = vec![b' '; CHUNK];
        let chunk_header = format!("{CHUNK:x}\r\n");
        for _ in 0..GIB / CHUNK as u64 {
            if !declared {
                write.write_all(chunk_header.as_bytes()).await?;
            }
            write.write_all(&chunk).await?;
            if !declared {
                write.write_all(b"\r\n").await?;
            }
            counter.fetch_add(CHUNK as u64, Ordering::Relaxed);
        }
        std::io::Result::Ok(())
    });
    let mut answer = Vec::new();
    let mut buffer = vec![0u8; 16 << 10];
    let head_end = loop {
        let n =
            tokio::time::timeout(DEADLINE, read.read(&mut buffer)).await.expect("no answer to a 1 GiB body").unwrap();
        assert!(n > 0, "the connection closed without an answer");
        answer.extend_from_slice(&buffer[..n]);
        if let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let written = written.load(Ordering::Relaxed);
    let head = String::from_utf8_lossy(&answer[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .map(|v| v.trim().parse().unwrap())
        .expect("the answer has a length");
    while answer.len() < head_end + length {
        let n = tokio::time::timeout(DEADLINE, read.read(&mut buffer)).await.unwrap().unwrap();
        assert!(n > 0, "the answer was cut short");
        answer.extend_from_slice(&buffer[..n]);
    }
    writer.abort();
    RawAnswer { head, body: String::from_utf8_lossy(&answer[head_end..head_end + length]).into_owned(), written }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_gigabyte_body_is_refused_with_413_without_being_read() {
    // Far below 1 GiB, far above what loopback socket buffers can hold.
    const MOST_READ: u64 = 64 << 20;
    let gateway = Gateway::start().await;
    let address = gateway.base.trim_start_matches("http://").to_string();
    let key = api_key(&gateway.redis.url(), &tenant(), Role::Tenant).await;

    for declared in [true, false] {
        let answer = post_one_gibibyte(&address, &key, declared).await;
        assert!(answer.head.starts_with("http/1.1 413"), "{}", answer.head);
        assert!(answer.head.contains("connection: close"), "a connection with a body left unread is not reused");
        let error: Value = serde_json::from_str(&answer.body).unwrap();
        assert_eq!(error["error"]["code"], "body_too_large");
        assert!(
            error["error"]["message"].as_str().unwrap().contains(&GatewayConfig::DEFAULT_MAX_BODY_BYTES.to_string()),
            "{error}"
        );
        assert!(
            answer.written < MOST_READ,
            "the client had sent {} bytes before the answer (declared length: {declared})",
            answer.written
        );
    }
    // The gateway still serves after both.
    assert_eq!(gateway.get("/healthz").await.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_that_stalls_is_answered_504_after_the_request_timeout() {
    let gateway = Gateway::start_with(|config| config.request_timeout = Duration::from_millis(300)).await;
    let opening = futures::stream::once(async { Ok::<_, std::io::Error>(Bytes::from_static(b"{\"program\":")) });
    let stalled = opening.chain(futures::stream::pending());
    let request = gateway
        .http
        .post(gateway.url("/v1/jobs"))
        .header(CONTENT_TYPE, "application/json")
        .body(reqwest::Body::wrap_stream(stalled))
        .send();
    let response = tokio::time::timeout(DEADLINE, request).await.expect("a stalled upload was never answered").unwrap();
    expect_error(response, StatusCode::GATEWAY_TIMEOUT, "timeout").await;
    assert_eq!(gateway.total_backlog().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_returns_once_shutdown_completes() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path(), Fsync::EverySec).unwrap();
    let app = router(GatewayConfig::new(redis.url(), SHARDS)).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (shutdown, stop) = oneshot::channel::<()>();
    let server = tokio::spawn(serve(listener, app, async move {
        stop.await.ok();
    }));
    let health = reqwest::get(format!("http://{address}/healthz")).await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    shutdown.send(()).unwrap();
    tokio::time::timeout(DEADLINE, server).await.expect("serve did not return after shutdown").unwrap().unwrap();
    assert!(reqwest::get(format!("http://{address}/healthz")).await.is_err(), "still serving after shutdown");
}

/// Reads from `stream` until it is closed; the bytes read, or `None` if it stays open `within`.
async fn read_until_closed(stream: &mut tokio::net::TcpStream, within: Duration) -> Option<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut read = Vec::new();
    let closed = tokio::time::timeout(within, async {
        let mut buffer = [0u8; 1024];
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(n) => read.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    closed.is_ok().then_some(read)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_and_those_over_the_limit_refused_at_once() {
    use tokio::io::AsyncWriteExt;
    const LIMIT: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path(), Fsync::EverySec).unwrap();
    let mut config = GatewayConfig::new(redis.url(), SHARDS);
    config.max_connections = LIMIT;
    config.header_read_timeout = Duration::from_secs(1);
    let app = router(config.clone()).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (_shutdown, stop) = oneshot::channel::<()>();
    tokio::spawn(async move {
        shoal_gateway::serve_with(listener, app, &config, async move {
            stop.await.ok();
        })
        .await
    });

    // Connections that never finish their headers: half send nothing, half a request line.
    let mut idle = Vec::new();
    for n in 0..LIMIT {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        if n % 2 == 1 {
            stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        }
        idle.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    // One more is told at once, long before any header timeout.
    let started = Instant::now();
    let mut over = tokio::net::TcpStream::connect(address).await.unwrap();
    let answer = read_until_closed(&mut over, Duration::from_millis(500)).await.expect("refused at once");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("too_many_connections"), "{answer}");
    assert!(started.elapsed() < Duration::from_millis(500));

    // The idle ones are closed after the header timeout, and their places are free again.
    for stream in &mut idle {
        assert!(read_until_closed(stream, Duration::from_secs(5)).await.is_some(), "an idle connection stayed open");
    }
    let health = reqwest::get(format!("http://{address}/healthz")).await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);

    // A client that keeps its connection busy is served throughout.
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let health = client.get(format!("http://{address}/healthz")).send().await.unwrap();
        assert_eq!(health.status(), StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_at_the_configured_limit_is_accepted_and_one_byte_more_is_not() {
    let body = format!(r#"{{"program":"{PROGRAM}"}}"#);
    let gateway = Gateway::start_with(|config| config.max_body_bytes = body.len()).await;
    let send = |body: String| {
        gateway.http.post(gateway.url("/v1/jobs")).header(CONTENT_TYPE, "application/json").body(body).send()
    };
    assert_eq!(send(body.clone()).await.unwrap().status(), StatusCode::ACCEPTED);
    expect_error(send(format!("{body} ")).await.unwrap(), StatusCode::PAYLOAD_TOO_LARGE, "body_too_large").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_invalid_job_ids() {
    let gateway = Gateway::start().await;
    let unknown = ulid::Ulid::new().to_string();
    let error =
        expect_error(gateway.get(&format!("/v1/jobs/{unknown}")).await, StatusCode::NOT_FOUND, "job_not_found").await;
    assert!(error["message"].as_str().unwrap().contains(&unknown), "{error}");
    expect_error(gateway.get(&format!("/v1/jobs/{unknown}/result")).await, StatusCode::NOT_FOUND, "job_not_found")
        .await;

    let error = expect_error(gateway.get("/v1/jobs/not-a-ulid").await, StatusCode::BAD_REQUEST, "invalid_job_id").await;
    assert_eq!(error["field"], "id");
    expect_error(gateway.get("/v1/jobs/not-a-ulid/result").await, StatusCode::BAD_REQUEST, "invalid_job_id").await;

    // 26 base-32 characters hold 130 bits: an id past 7ZZZ… is no ULID, and must not wrap round
    // to the job whose id starts 0.
    let id = gateway.create(&spec("wrap")).await;
    assert!(id.starts_with('0'), "{id}");
    for first in ['8', 'Z', 'z'] {
        let past = format!("{first}{}", &id[1..]);
        let error =
            expect_error(gateway.get(&format!("/v1/jobs/{past}")).await, StatusCode::BAD_REQUEST, "invalid_job_id")
                .await;
        assert_eq!(error["field"], "id");
        assert!(error["message"].as_str().unwrap().contains("0 to 7"), "{error}");
    }
    assert_eq!(gateway.get(&format!("/v1/jobs/{}", id.to_lowercase())).await.status(), StatusCode::OK);

    expect_error(gateway.get("/v2/nothing").await, StatusCode::NOT_FOUND, "not_found").await;
    let delete = gateway.http.delete(gateway.url("/v1/jobs")).send().await.unwrap();
    expect_error(delete, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_result_follows_the_jobs_life() {
    let gateway = Gateway::start().await;
    let store = JobStore::new(gateway.redis().await);

    let mut verified = spec("ok");
    verified["verification"] = json!({"mode": "always"});
    let id = gateway.create(&verified).await;
    let error =
        expect_error(gateway.get(&format!("/v1/jobs/{id}/result")).await, StatusCode::CONFLICT, "not_finished").await;
    assert_eq!(error["state"], "queued");

    store.start_execution(&id, &execution(1)).await.unwrap();
    let error =
        expect_error(gateway.get(&format!("/v1/jobs/{id}/result")).await, StatusCode::CONFLICT, "not_finished").await;
    assert_eq!(error["state"], "running");
    let status: Value = gateway.get(&format!("/v1/jobs/{id}")).await.json().await.unwrap();
    assert_eq!(status["state"], "running");
    assert_eq!(status["executions"][0]["worker"], "w1");

    let result = ExecutionResult {
        exit_code: 0,
        output: cid(OUTPUT),
        stdout: cid(PROGRAM),
        stderr: cid(INPUT),
        fuel_consumed: 12_345,
        fetch_ms: 3,
        run_ms: 7,
        inputs_cached: 0,
    };
    let mut done = execution(1);
    done.finished_at_ms = Some(now_ms());
    done.outcome = Some(ExecutionOutcome::Completed(result));
    store.finish_execution(&id, &done).await.unwrap();
    // Succeeded, but not yet looked at by a verifier: only an early result, labelled so.
    expect_error(gateway.get(&format!("/v1/jobs/{id}/result")).await, StatusCode::CONFLICT, "not_accepted").await;
    let response = gateway.get(&format!("/v1/jobs/{id}/result?early=true")).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"job": id, "state": "succeeded", "acceptance": "pending", "accepted": false, "output": OUTPUT, "stdout": PROGRAM, "stderr": INPUT, "exit_code": 0, "fuel_consumed": 12_345})
    );
    // Once the verifier agreed, the result is accepted.
    let verdict = Verification {
        verifier: "v".into(),
        at_ms: now_ms(),
        outcome: VerificationOutcome::Agreed,
        corrected: None,
        failed: None,
        replicas: Vec::new(),
        compared: Vec::new(),
    };
    store.record_verification(&id, &verdict).await.unwrap();
    let body: Value = gateway.get(&format!("/v1/jobs/{id}/result")).await.json().await.unwrap();
    assert_eq!((body["acceptance"].as_str(), body["accepted"].as_bool()), (Some("verified"), Some(true)));

    let mut trap = spec("trap");
    trap["verification"] = json!({"mode": "sampled"});
    let failed = gateway.create(&trap).await;
    store.start_execution(&failed, &execution(2)).await.unwrap();
    let mut trapped = execution(2);
    trapped.finished_at_ms = Some(now_ms());
    trapped.outcome = Some(ExecutionOutcome::Failed(Failure {
        reason: FailureReason::Trap,
        message: "wasm trap: unreachable".into(),
        stderr: None,
        fuel_consumed: Some(10),
    }));
    store.finish_execution(&failed, &trapped).await.unwrap();
    // A trap is a failure every honest worker would meet, so a worker could make it up: it
    // waits for the verifier's check, as a result does.
    let error =
        expect_error(gateway.get(&format!("/v1/jobs/{failed}/result")).await, StatusCode::CONFLICT, "not_accepted")
            .await;
    assert_eq!(error["state"], "failed");
    expect_error(
        gateway.get(&format!("/v1/jobs/{failed}/result?early=true")).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "job_failed",
    )
    .await;
    store.record_verification(&failed, &verdict).await.unwrap();
    let error = expect_error(
        gateway.get(&format!("/v1/jobs/{failed}/result")).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "job_failed",
    )
    .await;
    assert_eq!(error["state"], "failed");
    assert_eq!(error["reason"], "trap");
    assert!(error["message"].as_str().unwrap().contains("unreachable"), "{error}");
}

/// Follows `next_cursor` from `first` to the last page, returning every listed id in order and
/// the number of pages.
async fn walk_pages(gateway: &Gateway, first: &str) -> (Vec<String>, usize) {
    let (mut ids, mut pages) = (Vec::new(), 0);
    let mut path = first.to_string();
    loop {
        let response = gateway.get(&path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
        let page: Value = response.json().await.unwrap();
        pages += 1;
        assert!(pages <= 100, "pagination does not end");
        ids.extend(page["jobs"].as_array().unwrap().iter().map(|job| job["id"].as_str().unwrap().to_string()));
        match page["next"].as_str() {
            Some(next) => {
                let cursor = page["next_cursor"].as_str().unwrap();
                assert!(next.contains(cursor), "{page}");
                path = next.to_string();
            }
            None => {
                assert!(page["next_cursor"].is_null(), "{page}");
                return (ids, pages);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_filters_by_state_and_pages_without_duplicates_or_misses() {
    let gateway = Gateway::start().await;
    let store = JobStore::new(gateway.redis().await);
    let mut created = Vec::new();
    for n in 0..11 {
        created.push(gateway.create(&spec(&format!("job-{n}"))).await);
    }
    let running: Vec<String> = created.iter().step_by(3).cloned().collect();
    for (n, id) in running.iter().enumerate() {
        store.start_execution(id, &execution(n as u32)).await.unwrap();
    }
    let queued: Vec<String> = created.iter().filter(|id| !running.contains(id)).cloned().collect();
    // Newest first: ULIDs sort by creation time, and these were created one after another.
    let newest_first = |ids: &[String]| {
        let mut ids = ids.to_vec();
        ids.sort_by(|a, b| b.cmp(a));
        ids
    };

    let (ids, pages) = walk_pages(&gateway, "/v1/jobs?state=queued&limit=3").await;
    assert_eq!(ids, newest_first(&queued));
    assert_eq!(pages, 3);

    let (ids, pages) = walk_pages(&gateway, "/v1/jobs?state=running&limit=2").await;
    assert_eq!(ids, newest_first(&running));
    assert_eq!(pages, 2);

    let (ids, _) = walk_pages(&gateway, "/v1/jobs?limit=4").await;
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), ids.len(), "duplicates in {ids:?}");
    assert_eq!(ids, newest_first(&created));

    let (ids, pages) = walk_pages(&gateway, "/v1/jobs?state=succeeded").await;
    assert!(ids.is_empty());
    assert_eq!(pages, 1);

    let page: Value = gateway.get("/v1/jobs?state=running").await.json().await.unwrap();
    assert!(page["jobs"].as_array().unwrap().iter().all(|job| job["state"] == "running"), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_hold_summaries_and_large_specs_are_refused_naming_the_field() {
    // The body limit raised, so that only the spec's own size limit stands in the way.
    let gateway = Gateway::start_with(|config| config.max_body_bytes = 4 << 20).await;
    let env = "e".repeat(200 << 10);
    let mut big = spec("big");
    big["env"] = json!({"BLOB": env});
    let mut ids = Vec::new();
    for n in 0..20 {
        big["args"] = json!([n.to_string()]);
        ids.push(gateway.create(&big).await);
    }
    let response = gateway.get("/v1/jobs?limit=500").await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.bytes().await.unwrap();
    // 20 jobs of 200 KiB of env each: a listing of whole records would be 4 MB.
    assert!(body.len() < 20 * 1024, "a page of 20 summaries is {} bytes", body.len());
    let page: Value = serde_json::from_slice(&body).unwrap();
    let jobs = page["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 20);
    let summary = jobs.iter().find(|job| job["id"] == ids[0].as_str()).unwrap();
    assert_eq!(summary["program"], PROGRAM);
    assert_eq!(summary["tenant"], "test");
    assert_eq!(summary["state"], "queued");
    assert!(summary["created_at_ms"].as_u64().is_some() && summary["updated_at_ms"].as_u64().is_some(), "{summary}");
    assert!(summary.get("spec").is_none() && summary.get("executions").is_none(), "{summary}");
    // The whole job is one request away.
    let job: Value = gateway.get(&format!("/v1/jobs/{}", ids[0])).await.json().await.unwrap();
    assert_eq!(job["spec"]["env"]["BLOB"].as_str().unwrap().len(), 200 << 10);

    // Over JobSpec::MAX_PAYLOAD_BYTES together: 413 naming the largest part.
    big["env"] = json!({"BLOB": "e".repeat(200 << 10), "MORE": "m".repeat(100 << 10)});
    let error = expect_error(gateway.submit(&big, None).await, StatusCode::PAYLOAD_TOO_LARGE, "spec_too_large").await;
    assert_eq!(error["field"], "env");
    assert!(error["message"].as_str().unwrap().contains(&JobSpec::MAX_PAYLOAD_BYTES.to_string()), "{error}");
    big["env"] = json!({});
    big["args"] = json!(["a".repeat(60 << 10)]);
    big["inputs"] = json!((0..1000)
        .map(|n| json!({"cid": INPUT, "path": format!("/in/{n}/{}", "p".repeat(200))}))
        .collect::<Vec<_>>());
    let error = expect_error(gateway.submit(&big, None).await, StatusCode::PAYLOAD_TOO_LARGE, "spec_too_large").await;
    assert_eq!(error["field"], "inputs");
    assert_eq!(gateway.total_backlog().await, 20, "no refused spec is queued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_listing_parameters_are_400_naming_the_parameter() {
    let gateway = Gateway::start().await;
    for (query, field) in [
        ("state=done", "state"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=ten", "limit"),
        ("cursor=nonsense", "cursor"),
        ("cursor=12-notaulid", "cursor"),
    ] {
        let error =
            expect_error(gateway.get(&format!("/v1/jobs?{query}")).await, StatusCode::BAD_REQUEST, "invalid_parameter")
                .await;
        assert_eq!(error["field"], field, "{query}: {error}");
    }
    expect_error(gateway.get("/v1/jobs?colour=blue").await, StatusCode::BAD_REQUEST, "invalid_parameter").await;
}

/// Polls `/healthz` until it answers `want`, failing after [`DEADLINE`].
async fn wait_for_health(gateway: &Gateway, want: StatusCode) -> Response {
    let started = Instant::now();
    loop {
        let response = gateway.get("/healthz").await;
        if response.status() == want {
            return response;
        }
        assert!(started.elapsed() < DEADLINE, "/healthz still answers {} after {DEADLINE:?}", response.status());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_redis_down_and_back_without_restarting_the_gateway() {
    let mut gateway = Gateway::start().await;
    let response = gateway.get("/healthz").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.unwrap(), json!({"status": "ok"}));

    tokio::task::block_in_place(|| gateway.redis.kill());
    // Nothing can answer a PING now, so the very first check after the kill must fail.
    let error = expect_error(gateway.get("/healthz").await, StatusCode::SERVICE_UNAVAILABLE, "redis_unavailable").await;
    assert!(!error["message"].as_str().unwrap().is_empty());
    expect_error(gateway.submit(&spec("down"), None).await, StatusCode::SERVICE_UNAVAILABLE, "redis_unavailable").await;
    let unknown = ulid::Ulid::new().to_string();
    expect_error(
        gateway.get(&format!("/v1/jobs/{unknown}")).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "redis_unavailable",
    )
    .await;

    tokio::task::block_in_place(|| gateway.redis.restart()).unwrap();
    wait_for_health(&gateway, StatusCode::OK).await;
    let response = gateway.submit(&spec("after"), None).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let job: Value = response.json().await.unwrap();
    let id = job["id"].as_str().unwrap();
    assert_eq!(gateway.entries_for(job["shard"].as_u64().unwrap() as u32, id).await, 1);
    assert_eq!(gateway.get(&format!("/v1/jobs/{id}")).await.status(), StatusCode::OK);
}

/// The value of the sample `series` (name and labels exactly as exposed) in a metrics text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_by_route_and_status_and_report_the_backlog() {
    let gateway = Gateway::start().await;
    for n in 0..3 {
        gateway.create(&spec(&format!("m{n}"))).await;
    }
    gateway.post_raw(Some("application/json"), "{").await;
    let id = ulid::Ulid::new().to_string();
    gateway.get(&format!("/v1/jobs/{id}")).await;
    gateway.get(&format!("/v1/jobs/{}", ulid::Ulid::new())).await;
    gateway.get("/no/such/path").await;

    let response = gateway.get("/metrics").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()[CONTENT_TYPE].to_str().unwrap().starts_with("application/openmetrics-text"));
    let text = response.text().await.unwrap();
    let count = |series: &str| sample(&text, series).unwrap_or_else(|| panic!("no sample {series} in:\n{text}"));
    assert_eq!(count(r#"shoal_gateway_http_requests_total{method="POST",route="/v1/jobs",status="202"}"#), 3.0);
    assert_eq!(count(r#"shoal_gateway_http_requests_total{method="POST",route="/v1/jobs",status="400"}"#), 1.0);
    assert_eq!(count(r#"shoal_gateway_http_requests_total{method="GET",route="/v1/jobs/{id}",status="404"}"#), 2.0);
    assert_eq!(count(r#"shoal_gateway_http_requests_total{method="GET",route="unmatched",status="404"}"#), 1.0);
    assert_eq!(count(r#"shoal_gateway_http_request_duration_seconds_count{method="POST",route="/v1/jobs"}"#), 4.0);
    assert_eq!(count("shoal_gateway_jobs_submitted_total"), 3.0);
    assert_eq!(count("shoal_gateway_redis_up"), 1.0);
    let backlog: f64 =
        (0..SHARDS).map(|shard| count(&format!(r#"shoal_gateway_shard_backlog{{shard="{shard}"}}"#))).sum();
    assert_eq!(backlog, 3.0);
    assert!(text.trim_end().ends_with("# EOF"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_report_each_limited_wallets_books_read_as_the_gateways_own_redis_user() {
    use shoal_jobs::keys::RedisRole;
    use shoal_jobs::{SpendingError, SpendingLedger};
    const FIL: u128 = 1_000_000_000_000_000_000;
    const TTL: Duration = Duration::from_secs(60);
    let (wallet, idle) = ("f1abjxfbp274xpdqcpuaykwkfb43omjotacm2p3za", "f1idle");
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path(), Fsync::EverySec).unwrap();
    let ledger = |role| {
        let url = redis.url_for(role);
        async move { SpendingLedger::new(RedisConnection::open(&[url]).await.unwrap()) }
    };
    let admin = ledger(RedisRole::Admin).await;
    admin.set_limit(wallet, 10 * FIL).await.unwrap();
    admin.set_limit(idle, FIL / 2).await.unwrap();
    let worker = ledger(RedisRole::Worker).await;
    worker.reserve(wallet, "open", 3 * FIL, "w1", TTL).await.unwrap();
    worker.reserve(wallet, "paid", 2 * FIL, "w1", TTL).await.unwrap();
    worker.record_voucher(wallet, "paid", "v1", 3 * FIL / 2).await.unwrap();
    assert!(worker.settle(wallet, "paid", 3 * FIL / 2, "v1").await.unwrap());
    let refused = worker.reserve(wallet, "too-much", 6 * FIL, "w1", TTL).await;
    assert!(matches!(refused, Err(SpendingError::BudgetExhausted { .. })));

    // The gateway logs in as its own user, which may only read the books.
    let app = router(GatewayConfig::new(redis.url_for(RedisRole::Gateway), SHARDS)).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (_shutdown, stop) = oneshot::channel::<()>();
    tokio::spawn(serve(listener, app, async move {
        stop.await.ok();
    }));
    let http = keyed_client(&redis.url(), &tenant(), Role::Operator).await;
    let text = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    let value = |name: &str, wallet: &str| {
        let series = format!(r#"shoal_filecoin_{name}{{wallet="{wallet}"}}"#);
        sample(&text, &series).unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
    };
    assert_eq!(value("limit_attofil", wallet), (10 * FIL) as f64);
    assert_eq!(value("spent_attofil", wallet), (3 * FIL / 2) as f64);
    assert_eq!(value("reserved_attofil", wallet), (3 * FIL) as f64);
    assert_eq!(value("refused_attofil", wallet), (6 * FIL) as f64);
    assert_eq!(value("refusals", wallet), 1.0);
    assert_eq!(value("limit_attofil", idle), (FIL / 2) as f64);
    assert_eq!((value("spent_attofil", idle), value("refused_attofil", idle)), (0.0, 0.0));
    assert_eq!(sample(&text, "shoal_gateway_redis_up"), Some(1.0), "{text}");

    // Read at scrape time: what settles after the first scrape shows in the next.
    worker.record_voucher(wallet, "open", "v2", FIL).await.unwrap();
    assert!(worker.settle(wallet, "open", FIL, "v2").await.unwrap());
    let text = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    let series = format!(r#"shoal_filecoin_spent_attofil{{wallet="{wallet}"}}"#);
    assert_eq!(sample(&text, &series), Some((5 * FIL / 2) as f64), "{text}");
    let series = format!(r#"shoal_filecoin_reserved_attofil{{wallet="{wallet}"}}"#);
    assert_eq!(sample(&text, &series), Some(0.0), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_are_echoed_or_generated() {
    let gateway = Gateway::start().await;
    let response =
        gateway.http.get(gateway.url("/healthz")).header("x-request-id", "client-chose-this").send().await.unwrap();
    assert_eq!(response.headers()["x-request-id"], "client-chose-this");

    // Error answers carry it too.
    let response = gateway.http.get(gateway.url("/v1/jobs/bad")).header("x-request-id", "req-2").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.headers()["x-request-id"], "req-2");

    let mut generated = BTreeSet::new();
    for _ in 0..2 {
        let response = gateway.get("/healthz").await;
        let id = response.headers()["x-request-id"].to_str().unwrap().to_string();
        assert_eq!(id.len(), 36, "{id} is not a UUID");
        generated.insert(id);
    }
    assert_eq!(generated.len(), 2, "two requests got the same generated id");
}

#[tokio::test]
async fn a_gateway_does_not_start_without_redis_or_with_a_bad_setting() {
    let nobody = format!("redis://127.0.0.1:{}/", free_port().unwrap());
    match router(GatewayConfig::new(nobody, SHARDS)).await {
        Err(GatewayError::Connect { address, .. }) => assert!(address.starts_with("127.0.0.1:"), "{address}"),
        other => panic!("expected a connection error, got {:?}", other.err()),
    }
    match router(GatewayConfig::new("not a url", SHARDS)).await {
        Err(GatewayError::Connect { .. }) => {}
        other => panic!("expected a connection error, got {:?}", other.err()),
    }
    assert!(matches!(router(GatewayConfig::new("redis://127.0.0.1:1/", 0)).await, Err(GatewayError::InvalidConfig(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submissions_over_the_backlog_limit_get_429_with_retry_after_and_none_is_lost() {
    let gateway = Gateway::start_with(|config| {
        config.max_backlog = Some(3);
        config.backlog_sample_interval = Duration::from_millis(20);
    })
    .await;
    for n in 0..3 {
        gateway.create(&spec(&format!("fill-{n}"))).await;
    }
    // The limit acts on the sampled backlog: wait for a sample that sees the three.
    let deadline = Instant::now() + DEADLINE;
    let refused = loop {
        let response = gateway.submit(&spec("over"), None).await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            break response;
        }
        assert_eq!(response.status(), StatusCode::ACCEPTED, "below the limit a submission is accepted");
        assert!(Instant::now() < deadline, "never refused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let retry_after: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry_after >= 1);
    let error = expect_error(refused, StatusCode::TOO_MANY_REQUESTS, "backlog_full").await;
    assert!(error["message"].as_str().unwrap().contains("limit is 3"), "{error}");
    let queued = gateway.total_backlog().await;
    assert!(queued >= 3, "accepted jobs stay queued");

    // Work drains (here: the entries are acknowledged as a worker would) and submissions are
    // accepted again.
    let mut redis = gateway.redis().await;
    for shard in 0..SHARDS {
        let _: u64 =
            redis::cmd("XTRIM").arg(shard_stream(shard)).arg("MAXLEN").arg(0).query_async(&mut redis).await.unwrap();
    }
    let deadline = Instant::now() + DEADLINE;
    loop {
        let response = gateway.submit(&spec("after"), None).await;
        if response.status() == StatusCode::ACCEPTED {
            break;
        }
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(Instant::now() < deadline, "still refused after the backlog drained");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let metrics = gateway.get("/metrics").await.text().await.unwrap();
    assert!(sample(&metrics, "shoal_gateway_jobs_refused_total").is_some_and(|n| n >= 1.0), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_runs_on_a_three_node_redis_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = tokio::task::spawn_blocking({
        let path = dir.path().to_path_buf();
        move || shoal_jobs::RedisCluster::start(&path)
    })
    .await
    .unwrap()
    .unwrap();
    let mut config = GatewayConfig::new(cluster.urls().join(","), 16);
    config.max_backlog = Some(12);
    config.backlog_sample_interval = Duration::from_millis(20);
    let app = router(config).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (_shutdown, stop) = oneshot::channel::<()>();
    tokio::spawn(serve(listener, app, async move {
        stop.await.ok();
    }));
    let http = keyed_client(&cluster.urls().join(","), &tenant(), Role::Operator).await;

    // Twelve jobs, spread over shards on every node; each reads back; the listing pages over
    // all of them.
    let mut ids = BTreeSet::new();
    for n in 0..12 {
        let mut spec = spec(&format!("cluster-{n}"));
        spec["inputs"][0]["cid"] = json!(if n % 2 == 0 { INPUT } else { OUTPUT });
        let response = http.post(format!("{base}/v1/jobs")).json(&spec).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let job: Value = response.json().await.unwrap();
        let id = job["id"].as_str().unwrap().to_string();
        let read: Value = http.get(format!("{base}/v1/jobs/{id}")).send().await.unwrap().json().await.unwrap();
        assert_eq!(read["state"], "queued");
        ids.insert(id);
    }
    let mut listed = BTreeSet::new();
    let mut next = format!("{base}/v1/jobs?state=queued&limit=5");
    loop {
        let page: Value = http.get(&next).send().await.unwrap().json().await.unwrap();
        listed.extend(page["jobs"].as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap().to_string()));
        match page["next_cursor"].as_str() {
            Some(cursor) => next = format!("{base}/v1/jobs?state=queued&limit=5&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(listed, ids);
    assert_eq!(http.get(format!("{base}/healthz")).send().await.unwrap().status(), StatusCode::OK);
    assert_eq!(http.get(format!("{base}/v1/workers")).send().await.unwrap().status(), StatusCode::OK);
    let metrics = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    assert_eq!(sample(&metrics, "shoal_gateway_redis_up"), Some(1.0), "{metrics}");

    // The backlog, summed over the cluster's nodes, reaches the limit.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let response = http.post(format!("{base}/v1/jobs")).json(&spec("over")).send().await.unwrap();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            break;
        }
        assert!(Instant::now() < deadline, "the cluster's backlog was never seen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(cluster);
}

#[tokio::test]
async fn a_spec_naming_no_verification_gets_the_deployments_default() {
    let gateway = Gateway::start_with(|config| {
        config.default_verification = VerificationPolicy::Always { compare: Default::default() }
    })
    .await;
    let program = "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4";
    let unnamed: Value = gateway.submit(&json!({"program": program}), None).await.json().await.unwrap();
    assert_eq!(unnamed["spec"]["verification"], json!({"mode": "always"}));
    let named: Value = gateway
        .submit(&json!({"program": program, "verification": {"mode": "none"}}), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(named["spec"]["verification"], json!({"mode": "none"}), "a policy the spec names is kept");

    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path(), Fsync::EverySec).unwrap();
    let mut config = GatewayConfig::new(redis.url(), SHARDS);
    config.default_verification =
        VerificationPolicy::Replicated { replicas: 9, quorum: None, compare: Default::default() };
    assert!(matches!(router(config).await, Err(GatewayError::InvalidConfig(_))), "replicas out of range");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_key_everything_but_the_health_check_answers_401() {
    let gateway = Gateway::start().await;
    let id = gateway.create(&spec("mine")).await;
    let anonymous = reqwest::Client::new();
    let bad_key = {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, "Bearer shoal_0000".parse().unwrap());
        reqwest::Client::builder().default_headers(headers).build().unwrap()
    };
    let paths = [
        ("GET", "/v1/jobs".to_string()),
        ("POST", "/v1/jobs".to_string()),
        ("GET", format!("/v1/jobs/{id}")),
        ("DELETE", format!("/v1/jobs/{id}")),
        ("GET", format!("/v1/jobs/{id}/result")),
        ("GET", "/v1/workers".to_string()),
        ("GET", "/metrics".to_string()),
        ("GET", "/v2/nothing".to_string()),
    ];
    for (client, code) in [(&anonymous, "unauthenticated"), (&bad_key, "invalid_api_key")] {
        for (method, path) in &paths {
            let request = client.request(method.parse().unwrap(), gateway.url(path));
            let response = request.json(&spec("theirs")).send().await.unwrap();
            assert_eq!(response.headers()["www-authenticate"], "Bearer realm=\"shoal\"", "{method} {path}");
            expect_error(response, StatusCode::UNAUTHORIZED, code).await;
        }
        assert_eq!(client.get(gateway.url("/healthz")).send().await.unwrap().status(), StatusCode::OK);
    }
    let basic = anonymous.get(gateway.url("/v1/jobs")).header("authorization", "Basic dXNlcjpwYXNz").send().await;
    expect_error(basic.unwrap(), StatusCode::UNAUTHORIZED, "unauthenticated").await;
    // Nothing was submitted without a key.
    assert_eq!(gateway.total_backlog().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_sees_lists_and_cancels_only_its_own_jobs_and_an_operator_all() {
    let gateway = Gateway::start().await;
    let url = gateway.redis.url();
    let (a, b): (Tenant, Tenant) = ("tenant-a".parse().unwrap(), "tenant-b".parse().unwrap());
    let alice = keyed_client(&url, &a, Role::Tenant).await;
    let bob = keyed_client(&url, &b, Role::Tenant).await;
    let submit = |client: &reqwest::Client, tag: &str, key: &str| {
        client.post(gateway.url("/v1/jobs")).header("idempotency-key", key).json(&spec(tag)).send()
    };
    let alices: Value = submit(&alice, "a", "order-1").await.unwrap().json().await.unwrap();
    let alices = alices["id"].as_str().unwrap().to_string();
    assert_eq!(gateway.get(&format!("/v1/jobs/{alices}")).await.json::<Value>().await.unwrap()["tenant"], "tenant-a");
    // The same idempotency key from another tenant is another job.
    let bobs = submit(&bob, "a", "order-1").await.unwrap();
    assert_eq!(bobs.status(), StatusCode::ACCEPTED);
    let bobs: Value = bobs.json().await.unwrap();
    let bobs = bobs["id"].as_str().unwrap().to_string();
    assert_ne!(alices, bobs);

    // Bob cannot see, fetch the result of, or cancel Alice's job: it does not exist for him.
    for path in [format!("/v1/jobs/{alices}"), format!("/v1/jobs/{alices}/result")] {
        expect_error(bob.get(gateway.url(&path)).send().await.unwrap(), StatusCode::NOT_FOUND, "job_not_found").await;
    }
    let cancel = bob.delete(gateway.url(&format!("/v1/jobs/{alices}"))).send().await.unwrap();
    expect_error(cancel, StatusCode::NOT_FOUND, "job_not_found").await;
    let jobs_url = gateway.url("/v1/jobs");
    let listed = |client: reqwest::Client| {
        let url = jobs_url.clone();
        async move {
            let page: Value = client.get(url).send().await.unwrap().json().await.unwrap();
            page["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|job| job["id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(listed(alice.clone()).await, std::slice::from_ref(&alices));
    assert_eq!(listed(bob.clone()).await, std::slice::from_ref(&bobs));
    let mut everyone = listed(gateway.http.clone()).await;
    everyone.sort();
    let mut both = vec![alices.clone(), bobs.clone()];
    both.sort();
    assert_eq!(everyone, both, "an operator lists every tenant's jobs");
    for path in ["/v1/workers", "/metrics"] {
        expect_error(alice.get(gateway.url(path)).send().await.unwrap(), StatusCode::FORBIDDEN, "forbidden").await;
        assert_eq!(gateway.get(path).await.status(), StatusCode::OK);
    }

    // Alice cancels her own: it is never run, and cancelling again is harmless.
    for _ in 0..2 {
        let cancelled = alice.delete(gateway.url(&format!("/v1/jobs/{alices}"))).send().await.unwrap();
        assert_eq!(cancelled.status(), StatusCode::OK);
        let cancelled: Value = cancelled.json().await.unwrap();
        assert_eq!(cancelled["state"], "cancelled");
        assert_eq!(cancelled["failure"]["reason"], "cancelled");
    }
    let result = alice.get(gateway.url(&format!("/v1/jobs/{alices}/result"))).send().await.unwrap();
    expect_error(result, StatusCode::UNPROCESSABLE_ENTITY, "job_cancelled").await;
    let page: Value = alice.get(gateway.url("/v1/jobs?state=cancelled")).send().await.unwrap().json().await.unwrap();
    assert_eq!(page["jobs"][0]["id"], alices.as_str());

    // A job that finished cannot be cancelled.
    let store = JobStore::new(gateway.redis().await);
    store.start_execution(&bobs, &execution(1)).await.unwrap();
    let mut finished = execution(1);
    finished.finished_at_ms = Some(now_ms());
    finished.outcome = Some(ExecutionOutcome::Failed(Failure {
        reason: FailureReason::Trap,
        message: "unreachable".into(),
        stderr: None,
        fuel_consumed: Some(1),
    }));
    store.finish_execution(&bobs, &finished).await.unwrap();
    let late = bob.delete(gateway.url(&format!("/v1/jobs/{bobs}"))).send().await.unwrap();
    assert_eq!(expect_error(late, StatusCode::CONFLICT, "job_finished").await["state"], "failed");

    // A revoked key stops working within the gateway's record lifetime (5 s).
    let keys = ApiKeys::new(RedisConnection::open(&redis_urls(&url)).await.unwrap());
    let carol = keys.create(&a, Role::Tenant).await.unwrap();
    let carols = || reqwest::Client::new().get(gateway.url("/v1/jobs")).bearer_auth(&carol.secret).send();
    assert_eq!(carols().await.unwrap().status(), StatusCode::OK);
    assert!(keys.revoke(&carol.principal.key_id).await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    while carols().await.unwrap().status() == StatusCode::OK {
        assert!(Instant::now() < deadline, "a revoked key still works after 10 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    expect_error(carols().await.unwrap(), StatusCode::UNAUTHORIZED, "invalid_api_key").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quotas_refuse_with_429_and_403_and_other_tenants_go_on() {
    let gateway = Gateway::start_with(|config| config.backlog_sample_interval = Duration::from_millis(50)).await;
    let url = gateway.redis.url();
    let keys = ApiKeys::new(RedisConnection::open(&redis_urls(&url)).await.unwrap());
    let (small, other): (Tenant, Tenant) = ("small".parse().unwrap(), "other".parse().unwrap());
    let quotas = shoal_jobs::Quotas {
        max_outstanding: Some(3),
        submissions_per_sec: Some(1_000),
        max_fan_out: None,
        max_fuel: Some(2_000_000),
    };
    keys.set_quotas(&small, &quotas).await.unwrap();
    let client = keyed_client(&url, &small, Role::Tenant).await;

    let mut greedy = spec("greedy");
    greedy["limits"]["fuel"] = json!(3_000_000);
    let refused = client.post(gateway.url("/v1/jobs")).json(&greedy).send().await.unwrap();
    assert_eq!(expect_error(refused, StatusCode::FORBIDDEN, "quota_exceeded").await["field"], "limits.fuel");

    for n in 0..3 {
        let response = client.post(gateway.url("/v1/jobs")).json(&spec(&format!("s{n}"))).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        // Each submission is counted before the next (the count is at most 50 ms old).
        tokio::time::sleep(Duration::from_millis(80)).await;
    }
    let over = client.post(gateway.url("/v1/jobs")).json(&spec("s3")).send().await.unwrap();
    assert_eq!(over.headers()["retry-after"], "1");
    expect_error(over, StatusCode::TOO_MANY_REQUESTS, "too_many_outstanding").await;
    // Another tenant is not held back by it.
    let others = keyed_client(&url, &other, Role::Tenant).await;
    assert_eq!(
        others.post(gateway.url("/v1/jobs")).json(&spec("o")).send().await.unwrap().status(),
        StatusCode::ACCEPTED
    );

    // One submission per second: the second within a second is refused.
    keys.set_quotas(&other, &shoal_jobs::Quotas { submissions_per_sec: Some(1), ..quotas }).await.unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mut statuses = Vec::new();
    for n in 0..3 {
        let response = others.post(gateway.url("/v1/jobs")).json(&spec(&format!("r{n}"))).send().await.unwrap();
        statuses.push(response.status());
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(response.headers()["retry-after"], "1");
            expect_error(response, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
        }
    }
    assert!(statuses.contains(&StatusCode::TOO_MANY_REQUESTS), "{statuses:?}");
}

/// A pipeline of two stages over one input: `clean` over the input, then `count` over
/// `clean`'s output; `tag` goes into `count`'s `args` so different tags give different specs.
fn pipeline(tag: &str) -> Value {
    json!({
        "inputs": {"scenes": INPUT},
        "stages": [
            {"name": "clean", "program": PROGRAM, "inputs": [{"from": "pipeline.scenes", "path": "/inputs"}]},
            {"name": "count", "program": PROGRAM, "args": [tag], "inputs": [{"from": "clean", "path": "/clean"}]}
        ]
    })
}

impl Gateway {
    async fn create_pipeline(&self, client: &reqwest::Client, spec: &Value, key: Option<&str>) -> Response {
        let mut request = client.post(self.url("/v1/pipelines")).json(spec);
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        request.send().await.unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_created_pipeline_is_running_with_every_unit_waiting_and_a_retry_returns_it() {
    let gateway = Gateway::start().await;
    let response = gateway.create_pipeline(&gateway.http, &pipeline("a"), Some("scenes-1")).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert!(response.headers().get("idempotent-replayed").is_none());
    let location = response.headers()[LOCATION].to_str().unwrap().to_string();
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    assert_eq!(location, format!("/v1/pipelines/{id}"));
    assert_eq!(created["state"], "running");
    assert_eq!(created["tenant"], "test");
    let stages: Vec<&str> = created["stages"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(stages, ["clean", "count"]);
    for stage in created["stages"].as_array().unwrap() {
        assert_eq!(stage["counts"], json!({"waiting": 1, "running": 0, "succeeded": 0, "failed": 0, "skipped": 0}));
        assert_eq!(stage["units"], json!([{"state": "waiting"}]));
    }
    // Nothing is queued by the gateway: the driver submits the stages' jobs.
    assert_eq!(gateway.total_backlog().await, 0);

    let read = gateway.get(&location).await;
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(read.json::<Value>().await.unwrap(), created);

    let again = gateway.create_pipeline(&gateway.http, &pipeline("a"), Some("scenes-1")).await;
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.headers()[LOCATION].to_str().unwrap(), location);
    assert_eq!(again.json::<Value>().await.unwrap()["id"], id);

    let error = expect_error(
        gateway.create_pipeline(&gateway.http, &pipeline("b"), Some("scenes-1")).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
    )
    .await;
    assert!(error["message"].as_str().unwrap().contains(&format!("pipeline {id}")), "{error}");

    // Without a key, or with another, the same spec is another pipeline.
    let other = gateway.create_pipeline(&gateway.http, &pipeline("a"), None).await;
    assert_eq!(other.status(), StatusCode::ACCEPTED);
    assert_ne!(other.json::<Value>().await.unwrap()["id"], id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_pipelines_are_400_naming_the_field() {
    let gateway = Gateway::start().await;
    let mut cyclic = pipeline("a");
    cyclic["stages"][0]["inputs"] = json!([{"from": "count", "path": "/counted"}]);
    let mut unknown = pipeline("a");
    unknown["stages"][1]["inputs"][0]["from"] = json!("clen");
    let mut empty = pipeline("a");
    empty["stages"] = json!([]);
    let cases = [
        (cyclic, "stages.clean.inputs[0].from", "cycle: clean → count → clean"),
        (unknown, "stages.count.inputs[0].from", "there is no stage \"clen\""),
        (empty, "stages", "at least one stage"),
    ];
    for (spec, field, reason) in cases {
        let error = expect_error(
            gateway.create_pipeline(&gateway.http, &spec, None).await,
            StatusCode::BAD_REQUEST,
            "invalid_spec",
        )
        .await;
        assert_eq!(error["field"], field, "{error}");
        assert!(error["message"].as_str().unwrap().contains(reason), "{error}");
    }
    let response = gateway
        .http
        .post(gateway.url("/v1/pipelines"))
        .header(CONTENT_TYPE, "application/json")
        .body("{\"stages\": ")
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::BAD_REQUEST, "malformed_json").await;
    let response = gateway
        .http
        .post(gateway.url("/v1/pipelines"))
        .header(CONTENT_TYPE, "application/yaml")
        .body("stages: []")
        .send()
        .await
        .unwrap();
    expect_error(response, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await;
    let long = "k".repeat(256);
    expect_error(
        gateway.create_pipeline(&gateway.http, &pipeline("a"), Some(&long)).await,
        StatusCode::BAD_REQUEST,
        "invalid_idempotency_key",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stage_over_the_tenants_fuel_quota_is_403_naming_it() {
    let gateway = Gateway::start().await;
    let url = gateway.redis.url();
    let limited: Tenant = "limited".parse().unwrap();
    let keys = ApiKeys::new(RedisConnection::open(&redis_urls(&url)).await.unwrap());
    keys.set_quotas(&limited, &shoal_jobs::Quotas { max_fuel: Some(1_000), ..Default::default() }).await.unwrap();
    let client = keyed_client(&url, &limited, Role::Tenant).await;
    let mut thirsty = pipeline("a");
    thirsty["stages"][0]["limits"] = json!({"fuel": 1_000});
    thirsty["stages"][1]["limits"] = json!({"fuel": 1_001});
    let error =
        expect_error(gateway.create_pipeline(&client, &thirsty, None).await, StatusCode::FORBIDDEN, "quota_exceeded")
            .await;
    assert_eq!(error["field"], "stages.count.limits.fuel");
    thirsty["stages"][1]["limits"] = json!({"fuel": 1_000});
    assert_eq!(gateway.create_pipeline(&client, &thirsty, None).await.status(), StatusCode::ACCEPTED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_are_seen_and_cancelled_by_their_tenant_and_operators_only() {
    let gateway = Gateway::start().await;
    let url = gateway.redis.url();
    let owner = keyed_client(&url, &tenant(), Role::Tenant).await;
    let stranger = keyed_client(&url, &"other".parse().unwrap(), Role::Tenant).await;
    let created: Value = gateway.create_pipeline(&owner, &pipeline("a"), None).await.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    let path = gateway.url(&format!("/v1/pipelines/{id}"));

    let unknown = ulid::Ulid::new().to_string();
    let error = expect_error(
        gateway.get(&format!("/v1/pipelines/{unknown}")).await,
        StatusCode::NOT_FOUND,
        "pipeline_not_found",
    )
    .await;
    assert!(error["message"].as_str().unwrap().contains(&unknown), "{error}");
    let error =
        expect_error(gateway.get("/v1/pipelines/not-a-ulid").await, StatusCode::BAD_REQUEST, "invalid_pipeline_id")
            .await;
    assert_eq!(error["field"], "id");
    // Another tenant's pipeline does not exist for it, to read or to cancel.
    let read = stranger.get(&path).send().await.unwrap();
    expect_error(read, StatusCode::NOT_FOUND, "pipeline_not_found").await;
    let cancel = stranger.delete(&path).send().await.unwrap();
    expect_error(cancel, StatusCode::NOT_FOUND, "pipeline_not_found").await;
    assert_eq!(owner.get(&path).send().await.unwrap().json::<Value>().await.unwrap()["state"], "running");
    // An operator (the gateway's own client) sees every tenant's.
    assert_eq!(gateway.get(&format!("/v1/pipelines/{id}")).await.status(), StatusCode::OK);

    let cancelled = owner.delete(&path).send().await.unwrap();
    assert_eq!(cancelled.status(), StatusCode::OK);
    let cancelled: Value = cancelled.json().await.unwrap();
    assert_eq!(cancelled["state"], "cancelled");
    assert!(cancelled["finished_ms"].as_u64().is_some(), "{cancelled}");
    let message = cancelled["message"].as_str().unwrap();
    assert!(message.starts_with("cancelled by API key") && message.ends_with("of tenant test"), "{message}");
    // Cancelling again answers the same; reading it says so too.
    let again: Value = owner.delete(&path).send().await.unwrap().json().await.unwrap();
    assert_eq!(again, cancelled);
    assert_eq!(owner.get(&path).send().await.unwrap().json::<Value>().await.unwrap(), cancelled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_that_ended_first_is_not_cancelled() {
    let gateway = Gateway::start().await;
    let created: Value = gateway.create_pipeline(&gateway.http, &pipeline("a"), None).await.json().await.unwrap();
    let id = created["id"].as_str().unwrap();
    // As the driver ends one whose stage failed.
    let store = shoal_jobs::PipelineStore::new(gateway.redis().await);
    assert!(store.finish(id, shoal_jobs::PipelineState::Failed, "stage clean failed").await.unwrap());
    let response = gateway.http.delete(gateway.url(&format!("/v1/pipelines/{id}"))).send().await.unwrap();
    let error = expect_error(response, StatusCode::CONFLICT, "pipeline_finished").await;
    assert_eq!(error["state"], "failed");
    let read: Value = gateway.get(&format!("/v1/pipelines/{id}")).await.json().await.unwrap();
    assert_eq!((read["state"].as_str(), read["message"].as_str()), (Some("failed"), Some("stage clean failed")));
}

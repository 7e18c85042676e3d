//! The dashboard in a real browser: a stack runs cloud-detect on the real Landsat scene, then
//! headless Chromium (Debian's `chromium`, driven by npm `playwright-core`, `npm ci --prefix
//! tests/js-dashboard`) signs in, finds the job, opens it and checks what is shown — state,
//! acceptance, executions, verdict, the output's images loaded at their real sizes — then the
//! workers and shards, and a tenant's view. The files endpoint it reads through is checked over
//! HTTP too: types, the headers that keep a job's files from running on the gateway's origin,
//! validators and errors.
//!
//! Screenshots go to `$SHOAL_DASHBOARD_SCREENSHOTS` if set (`docs/images` refreshes the README's),
//! else to a temporary directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::header::{CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, IF_NONE_MATCH, X_CONTENT_TYPE_OPTIONS};
use reqwest::StatusCode;
use serde_json::{json, Value};
use shoal_jobs::{Acceptance, JobState, Role};
use shoal_testkit::{repo_root, Stack, StackOptions};

const SCENE: &str = "data/landsat/LC80200392015216LGN00";
const CHROMIUM: &str = "/usr/bin/chromium";

/// The browser, or a failure saying how to get it.
fn chromium() -> PathBuf {
    let path = std::env::var_os("SHOAL_CHROMIUM").map_or_else(|| PathBuf::from(CHROMIUM), PathBuf::from);
    assert!(
        path.is_file(),
        "the dashboard test needs Chromium at {} (Debian: apt-get install chromium; scripts/install-deps.sh \
         does) or SHOAL_CHROMIUM naming another",
        path.display()
    );
    path
}

/// Runs the browser script with `input`; returns its report.
fn drive(input: &Value) -> Value {
    let peer = repo_root().join("tests/js-dashboard");
    assert!(
        peer.join("node_modules/playwright-core").is_dir(),
        "npm playwright-core is missing: npm ci --prefix tests/js-dashboard (make js-peers does)"
    );
    let mut node = Command::new("node")
        .arg(peer.join("dashboard.mjs"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node is installed (scripts/install-deps.sh)");
    node.stdin.take().unwrap().write_all(input.to_string().as_bytes()).unwrap();
    let output = node.wait_with_output().unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(printed.trim()).unwrap_or_else(|e| {
        panic!("the browser script printed no report ({e}): {printed}\n{}", String::from_utf8_lossy(&output.stderr))
    });
    assert!(output.status.success() && report.get("error").is_none(), "the browser script failed: {report:#}");
    report
}

fn screenshots_dir() -> (PathBuf, Option<tempfile::TempDir>) {
    match std::env::var_os("SHOAL_DASHBOARD_SCREENSHOTS") {
        Some(dir) => {
            let dir = repo_root().join(dir);
            std::fs::create_dir_all(&dir).unwrap();
            (dir, None)
        }
        None => {
            let temp = tempfile::tempdir().unwrap();
            (temp.path().to_path_buf(), Some(temp))
        }
    }
}

/// Width and height of a PNG, from its IHDR.
fn png_size(path: &Path) -> (u32, u32) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{} is a PNG", path.display());
    let word = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (word(16), word(20))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_shows_a_finished_cloud_detect_job_in_a_real_browser() {
    let chromium = chromium();
    let scene = repo_root().join(SCENE);
    assert!(scene.is_dir(), "{} is missing: run scripts/fetch-data.sh (make test does)", scene.display());

    let stack =
        Stack::start(StackOptions { workers: 2, verifier: Some(1.0), ..StackOptions::default() }).await.unwrap();
    let scene_cid = stack.add_path(&scene).await.unwrap();
    let program = stack.add_program("cloud-detect").await.unwrap();
    let spec = json!({"program": program.to_string(), "inputs": [{"cid": scene_cid.to_string(), "path": "/inputs"}]});
    let id = stack.submit_ok(&spec).await.unwrap();
    let job = stack
        .wait_until(&id, Duration::from_secs(600), |job| job.acceptance().is_some_and(|a| a != Acceptance::Pending))
        .await
        .unwrap();
    assert_eq!((job.state, job.acceptance()), (JobState::Succeeded, Some(Acceptance::Verified)), "{job:?}");
    let output = job.result.as_ref().unwrap().output;

    // The files endpoint, over HTTP.
    let files = format!("{}/v1/jobs/{id}/files", stack.gateway);
    let listing: Value = stack.http.get(format!("{files}/output")).send().await.unwrap().json().await.unwrap();
    assert_eq!(listing["cid"], output.to_string());
    let names: Vec<&str> = listing["entries"].as_array().unwrap().iter().map(|e| e["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["mask.png", "preview.png", "stats.json"]);
    let mask = stack.http.get(format!("{files}/output/mask.png")).send().await.unwrap();
    assert_eq!(mask.status(), StatusCode::OK);
    assert_eq!(mask.headers()[CONTENT_TYPE], "image/png");
    assert_eq!(mask.headers()[X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert!(mask.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap().starts_with("sandbox"));
    let etag = mask.headers()[ETAG].clone();
    assert_eq!(mask.bytes().await.unwrap(), stack.read(output.cid(), "mask.png").await.unwrap());
    let again = stack.http.get(format!("{files}/output/mask.png")).header(IF_NONE_MATCH, etag).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    // A TIFF is no type a browser shows: a download.
    let band = stack.http.get(format!("{files}/inputs/0/LC80200392015216LGN00_BQA.TIF")).send().await.unwrap();
    assert_eq!(band.headers()[CONTENT_TYPE], "application/octet-stream");
    assert_eq!(band.headers()["content-disposition"], "attachment");
    let stdout = stack.http.get(format!("{files}/stdout")).send().await.unwrap();
    assert_eq!(stdout.headers()[CONTENT_TYPE], "text/plain; charset=utf-8");
    for (path, status, code) in [
        ("output/nothing.png", 404, "path_not_found"),
        ("output/mask.png/below", 404, "path_not_found"),
        ("output/x%2F..%2Fmask.png", 400, "invalid_path"),
        ("inputs/1", 404, "input_not_found"),
        ("inputs/first", 400, "invalid_parameter"),
    ] {
        let response = stack.http.get(format!("{files}/{path}")).send().await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{path}: {body}");
    }
    let other = shoal_testkit::api_key(&stack.redis.url(), "other", Role::Tenant).await.unwrap();
    let refused =
        reqwest::Client::new().get(format!("{files}/output/mask.png")).bearer_auth(&other).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::NOT_FOUND, "another tenant's job is not found");
    let anonymous = reqwest::Client::new().get(format!("{files}/output")).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    // The page itself needs no key, and allows no inline script.
    let page = reqwest::Client::new().get(format!("{}/ui", stack.gateway)).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.headers()[CONTENT_SECURITY_POLICY].to_str().unwrap().starts_with("default-src 'self'"));

    // The browser; it submits the same job once more, with a variable of its own (not the same
    // invocation, so it runs), to see it listed live.
    let (dir, _temp) = screenshots_dir();
    let mut live_spec = spec.clone();
    live_spec["env"] = json!({"LIVE": "1"});
    let report = tokio::task::spawn_blocking({
        let input = json!({
            "gateway": stack.gateway, "key": stack.api_key, "tenant_key": other, "job": id,
            "live_spec": live_spec,
            "chromium": chromium, "screenshots": dir,
        });
        move || drive(&input)
    })
    .await
    .unwrap();

    assert_eq!(report["console_errors"], json!([]), "no script errors or refused loads: {report:#}");
    assert!(report["wrong_key_message"].as_str().unwrap().contains("not known"), "{report:#}");
    assert_eq!((&report["listed_state"], &report["listed_acceptance"]), (&json!("succeeded"), &json!("verified")));
    assert_eq!(report["failed_filter_shows_job"], false);
    let live = report["live_listed_ms"].as_u64().unwrap();
    assert!(live < 5000, "a new job is listed when the event stream tells of it, not at the next poll: {live} ms");
    assert!(report["title"].as_str().unwrap().contains(&id));
    assert_eq!((&report["state"], &report["acceptance"]), (&json!("succeeded"), &json!("verified")));
    assert_eq!(report["verdict"], "agreed");
    let executions = report["executions"].as_array().unwrap();
    assert_eq!(executions.len(), job.executions.len());
    let worker = &job.executions.last().unwrap().worker;
    let last = executions.last().unwrap().as_array().unwrap();
    assert_eq!(last[1], json!(worker), "{last:?}");
    assert!(last[4].as_str().unwrap().contains("exit 0"), "{last:?}");

    // The images the browser decoded are the ones cloud-detect wrote: the mask is the scene
    // crop, the preview the crop twice side by side (scene | mask).
    let stats: Value = serde_json::from_slice(&stack.read(output.cid(), "stats.json").await.unwrap()).unwrap();
    let (width, height) = (stats["width"].as_u64().unwrap(), stats["height"].as_u64().unwrap());
    assert_eq!((width, height), (627, 603), "the scene crop");
    let image = |name: &str| {
        let image = &report["images"][name];
        assert_eq!(image["src_scheme"], "blob:", "{name} fetched with the key and shown from a blob");
        assert!(image["shown_width"].as_f64().unwrap() > 100.0, "{name} is visible: {image}");
        (image["natural_width"].as_u64().unwrap(), image["natural_height"].as_u64().unwrap())
    };
    assert_eq!(image("mask.png"), (width, height));
    assert_eq!(image("preview.png"), (2 * width, height));
    assert_eq!(report["output_entries"], json!(["mask.png", "preview.png", "stats.json"]));
    assert!(report["stats_preview"].as_str().unwrap().contains("cloud_fraction"), "{report:#}");
    let inputs = report["input_entries"].as_array().unwrap();
    assert_eq!(inputs.len(), std::fs::read_dir(&scene).unwrap().count(), "every file of the scene is listed");

    let workers: Vec<&str> = report["workers"].as_array().unwrap().iter().map(|w| w.as_str().unwrap()).collect();
    assert!(workers.contains(&"worker-0") && workers.contains(&"worker-1"), "{workers:?}");
    assert_eq!(report["shards"], json!(shoal_testkit::SHARDS));
    assert!(report["tenant_workers_message"].as_str().unwrap().contains("operators only"), "{report:#}");
    assert_eq!(report["tenant_sees_job"], false);
    assert_eq!(report["key_forgotten"], true);

    for (name, least_width) in
        [("dashboard-jobs.png", 1440), ("dashboard-job.png", 1440), ("dashboard-workers.png", 1440)]
    {
        let (w, h) = png_size(&dir.join(name));
        assert!(w >= least_width && h >= 600, "{name} is {w}×{h}");
    }
    stack.shutdown().await;
}

//! The `shoal` command as a user runs it: `shoal dev` in the background, then `add`, `run`
//! (also fanned out: `--each`, `--each-input`, `--batch`), `status`, `logs`, `get`, `cat` and
//! `car export|import` as separate processes, `pipeline run|status|cancel`; the gateway and key
//! from flags, the environment or the config file; `--json`.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use shoal_testkit::{repo_root, shoal_binary};

/// A `shoal dev` process, stopped with SIGTERM when dropped.
struct Dev {
    child: Child,
}

impl Dev {
    /// `shoal dev` over `home` on free ports with one worker and `extra` arguments, once it
    /// has written its endpoints.
    fn start(home: &Path, extra: &[&str]) -> Dev {
        let child = command(home)
            .args(["dev", "--port", "0", "--content-port", "0", "--workers", "1"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let dev = Dev { child };
        let endpoints = home.join("dev.json");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !endpoints.exists() {
            assert!(Instant::now() < deadline, "shoal dev did not write its endpoints");
            std::thread::sleep(Duration::from_millis(50));
        }
        dev
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status().ok();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// `shoal --home HOME`, minding no gateway, key or config file of whoever runs the tests.
fn command(home: &Path) -> Command {
    let mut command = Command::new(shoal_binary().unwrap());
    command.arg("--home").arg(home).env("XDG_CONFIG_HOME", home.join("no-config"));
    for variable in ["SHOAL_GATEWAY", "SHOAL_API_KEY", "SHOAL_CONFIG", "SHOAL_PROFILE"] {
        command.env_remove(variable);
    }
    command
}

fn shoal(home: &Path, args: &[&str]) -> Output {
    let output = command(home).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "shoal {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stdout_line(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap().trim().to_string()
}

/// The one JSON document `shoal --json …` printed.
fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not one JSON document ({e}): {}", String::from_utf8_lossy(&output.stdout)))
}

/// The error a failing `shoal` printed, after checking it failed and printed nothing on stdout.
fn failure(output: &Output) -> String {
    assert!(!output.status.success(), "succeeded: {}", String::from_utf8_lossy(&output.stdout));
    assert!(output.stdout.is_empty(), "{}", String::from_utf8_lossy(&output.stdout));
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn the_cli_adds_runs_and_fetches_through_a_dev_stack() {
    let home = tempfile::tempdir().unwrap();
    let dev = Dev::start(home.path(), &[]);
    let endpoints = home.path().join("dev.json");

    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("hello.txt"), b"hello world\n").unwrap();
    let input = stdout_line(&shoal(home.path(), &["add", "--quiet", work.path().join("hello.txt").to_str().unwrap()]));
    assert_eq!(input, "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4");
    let added = json(&shoal(home.path(), &["add", work.path().join("hello.txt").to_str().unwrap(), "--json"]));
    assert_eq!((added["cid"].as_str(), added["size"].as_u64()), (Some(input.as_str()), Some(12)));
    let program_path = repo_root().join("programs/wasm/echo-hash.wasm");
    let program = stdout_line(&shoal(home.path(), &["add", "--quiet", program_path.to_str().unwrap()]));

    let run = shoal(
        home.path(),
        &[
            "run",
            "--program",
            &program,
            "--input",
            &format!("{input}:/data"),
            "--env",
            "ECHO_HASH_INPUT=/data",
            "--arg",
            "hi",
        ],
    );
    let output = stdout_line(&run);
    let stderr = String::from_utf8_lossy(&run.stderr);
    let job = stderr.split_whitespace().nth(1).expect("`job <id> submitted` on stderr").to_string();
    // With --json, the finished job as `status --json` shows it.
    let ran = json(&shoal(home.path(), &["--json", "run", "--program", &program, "--input", &input, "--early"]));
    assert_eq!(ran["state"], "succeeded", "{ran}");
    assert!(ran["result"]["output"].is_string() && ran["executions"].as_array().is_some_and(|e| !e.is_empty()));
    let queued = json(&shoal(home.path(), &["run", "--program", &program, "--no-wait", "--json"]));
    assert!(queued["id"].is_string() && queued["spec"]["program"] == program.as_str(), "{queued}");

    let status = stdout_line(&shoal(home.path(), &["status", &job]));
    assert!(status.contains("succeeded") && status.contains(&output), "{status}");
    // The execution's signed receipt, fetched by its CID from the dev stack's content server,
    // checks against the key that signed it; a tampered copy does not.
    let receipt_line = status.lines().find(|line| line.starts_with("receipt")).expect("a receipt line");
    let words: Vec<&str> = receipt_line.split_whitespace().collect();
    let (receipt, key) = (words[1], words[4]);
    let verified = stdout_line(&shoal(home.path(), &["receipt", "verify", receipt, "--key", key]));
    assert!(verified.contains(&format!("output {output}")) && verified.ends_with(&format!("valid: signed by {key}")));
    // Checked against another worker's key, the same receipt is refused.
    let other_key = shoal_jobs::WorkerKey::generate().public().to_string();
    let wrong_signer = Command::new(shoal_binary().unwrap())
        .arg("--home")
        .arg(home.path())
        .args(["receipt", "verify", receipt, "--key", &other_key])
        .output()
        .unwrap();
    assert!(!wrong_signer.status.success(), "{}", String::from_utf8_lossy(&wrong_signer.stdout));
    assert!(String::from_utf8_lossy(&wrong_signer.stdout).contains(&format!("INVALID: signed by {key}")));
    let bytes = stdout_line(&shoal(home.path(), &["cat", receipt]));
    let tampered = work.path().join("tampered-receipt.json");
    std::fs::write(&tampered, bytes.replace(&output, &input)).unwrap();
    let refused = Command::new(shoal_binary().unwrap())
        .arg("--home")
        .arg(home.path())
        .args(["receipt", "verify", tampered.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stdout).contains("INVALID: the signature does not match the receipt"));
    // No worker is quarantined; readmitting one that is not fails.
    let written: serde_json::Value = serde_json::from_slice(&std::fs::read(&endpoints).unwrap()).unwrap();
    let redis = written["redis"].as_str().unwrap();
    assert_eq!(stdout_line(&shoal(home.path(), &["quarantine", "list", "--redis", redis])), "");
    let readmit = Command::new(shoal_binary().unwrap())
        .args(["quarantine", "readmit", "nobody", "--redis", redis])
        .output()
        .unwrap();
    assert!(
        !readmit.status.success() && String::from_utf8_lossy(&readmit.stderr).contains("nobody is not quarantined")
    );
    let logs = stdout_line(&shoal(home.path(), &["logs", &job]));
    assert!(logs.contains("hi"), "stdout has the argument: {logs}");

    // Every user command's --json is one document with the fields a script wants.
    let logs = json(&shoal(home.path(), &["logs", &job, "--json"]));
    assert!(logs["stdout"].as_str().unwrap().contains("hi") && logs["stdout_cid"].is_string(), "{logs}");
    let verified = json(&shoal(home.path(), &["receipt", "verify", receipt, "--key", key, "--json"]));
    assert_eq!((&verified["valid"], &verified["cid"]), (&serde_json::json!(true), &serde_json::json!(receipt)));
    assert_eq!(verified["receipt"]["key"], key);
    let workers = json(&shoal(home.path(), &["workers", "--json"]));
    assert_eq!(workers["workers"].as_array().unwrap().len(), 1, "{workers}");
    let keys = json(&shoal(home.path(), &["keys", "list", "--redis", redis, "--json"]));
    assert_eq!(keys["keys"][0]["tenant"], "local", "{keys}");
    // The admin's password may be kept apart from the URL, as docker-compose's env files keep it.
    let (user, rest) = redis.strip_prefix("redis://").unwrap().split_once('@').unwrap();
    let (name, password) = user.split_once(':').unwrap();
    let apart = command(home.path())
        .args(["keys", "list", "--json", "--redis", &format!("redis://{name}@{rest}")])
        .env("SHOAL_REDIS_ADMIN_PASSWORD", password)
        .output()
        .unwrap();
    assert_eq!(json(&apart), keys);
    let quotas = json(&shoal(home.path(), &["tenants", "show", "local", "--redis", redis, "--json"]));
    assert!(quotas.is_object(), "{quotas}");
    assert_eq!(
        json(&shoal(home.path(), &["quarantine", "list", "--redis", redis, "--json"])),
        serde_json::json!({"quarantined": []})
    );
    let status = json(&shoal(home.path(), &["status", &job, "--json"]));
    assert_eq!((&status["id"], &status["result"]["output"]), (&serde_json::json!(job), &serde_json::json!(output)));
    // An error is no JSON: a message on stderr and a failing exit.
    let finished = failure(&command(home.path()).args(["cancel", &job, "--json"]).output().unwrap());
    assert!(finished.contains("409") && finished.contains("before it could be cancelled"), "{finished}");
    let bytes = failure(&command(home.path()).args(["--json", "cat", &input]).output().unwrap());
    assert!(bytes.contains("--json does not apply") && bytes.contains("cat"), "{bytes}");

    // The job is listed, as JSON or a line each.
    let listed = json(&shoal(home.path(), &["jobs", "list", "--json"]));
    let ids: Vec<&str> = listed["jobs"].as_array().unwrap().iter().map(|job| job["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&job.as_str()), "{listed}");
    let one = stdout_line(&shoal(home.path(), &["jobs", "list", "--state", "succeeded", "--limit", "1"]));
    assert_eq!(one.lines().count(), 1, "{one}");
    assert!(one.contains("\tsucceeded\t"), "{one}");

    // Against a gateway named and keyed from the environment, from a home that knows no stack.
    let elsewhere = tempfile::tempdir().unwrap();
    let remote = Command::new(shoal_binary().unwrap())
        .arg("--home")
        .arg(elsewhere.path())
        .args(["status", &job, "--json"])
        .env("SHOAL_GATEWAY", written["gateway"].as_str().unwrap())
        .env("SHOAL_API_KEY", written["api_key"].as_str().unwrap())
        .output()
        .unwrap();
    assert!(remote.status.success(), "{}", String::from_utf8_lossy(&remote.stderr));
    let remote: serde_json::Value = serde_json::from_slice(&remote.stdout).unwrap();
    assert_eq!(remote["id"], job.as_str());
    // Its logs come through the gateway (no block of them is here), checked against their CID.
    let remote_logs = Command::new(shoal_binary().unwrap())
        .arg("--home")
        .arg(elsewhere.path())
        .args(["logs", &job, "--json"])
        .env("SHOAL_GATEWAY", written["gateway"].as_str().unwrap())
        .env("SHOAL_API_KEY", written["api_key"].as_str().unwrap())
        .output()
        .unwrap();
    assert!(remote_logs.status.success(), "{}", String::from_utf8_lossy(&remote_logs.stderr));
    assert_eq!(json(&remote_logs), logs, "the same logs as read from the dev stack's store");
    let keyless = Command::new(shoal_binary().unwrap())
        .arg("--home")
        .arg(elsewhere.path())
        .args(["status", &job])
        .env("SHOAL_GATEWAY", written["gateway"].as_str().unwrap())
        .env_remove("SHOAL_API_KEY")
        .output()
        .unwrap();
    assert!(!keyless.status.success());
    assert!(String::from_utf8_lossy(&keyless.stderr).contains("401"), "{}", String::from_utf8_lossy(&keyless.stderr));
    config_file_names_the_gateway_and_key(
        elsewhere.path(),
        &job,
        written["gateway"].as_str().unwrap(),
        written["api_key"].as_str().unwrap(),
    );

    let completions = stdout_line(&shoal(home.path(), &["completions", "bash"]));
    assert!(completions.contains("_shoal") && completions.contains("cancel"), "a bash completion script for shoal");

    let digest_line = stdout_line(&shoal(home.path(), &["cat", &format!("{output}/{input}.sha256")]));
    assert_eq!(digest_line, format!("a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192a447  {input}"));

    let fetched = work.path().join("fetched");
    shoal(home.path(), &["get", &output, "-o", fetched.to_str().unwrap()]);
    assert!(fetched.join(format!("{input}.sha256")).is_file());

    // A CAR export of the output imports into a fresh home under the same root.
    let car = work.path().join("output.car");
    shoal(home.path(), &["car", "export", &output, "-o", car.to_str().unwrap()]);
    let other = tempfile::tempdir().unwrap();
    let roots = stdout_line(&shoal(other.path(), &["car", "import", car.to_str().unwrap()]));
    assert_eq!(roots, output);
    let again = stdout_line(&shoal(
        other.path(),
        &["cat", &format!("{output}/{input}.sha256"), "--from", "http://127.0.0.1:9"],
    ));
    assert_eq!(again, digest_line, "read from the imported blocks alone");
    // `--each` runs once per entry of a directory, shows the tasks, and gathers the outputs
    // under the entries' names.
    for name in ["a.txt", "b.txt", "skip.bin"] {
        std::fs::write(work.path().join("fetched").join(name), name).unwrap();
    }
    let dir = stdout_line(&shoal(home.path(), &["add", "--quiet", work.path().join("fetched").to_str().unwrap()]));
    let each = shoal(home.path(), &["run", "--program", &program, "--input", &dir, "--each", "*.txt"]);
    let gathered = stdout_line(&each);
    let stderr = String::from_utf8_lossy(&each.stderr);
    assert!(stderr.contains("2 of 2 files succeeded, 0 failed (2 tasks)"), "{stderr}");
    let digest = stdout_line(&shoal(home.path(), &["cat", &format!("{gathered}/a.txt/a.txt.sha256")]));
    assert!(digest.ends_with("  a.txt"), "{digest}");
    // `--each-input` runs once per `--input`, gathering under the inputs' names (an unnamed
    // one under its CID); `--batch` gives one run several files, each writing /outputs/<name>.
    let each_input = shoal(
        home.path(),
        &["run", "--program", &program, "--input", &format!("hello={input}"), "--input", &dir, "--each-input"],
    );
    let gathered = stdout_line(&each_input);
    assert!(String::from_utf8_lossy(&each_input.stderr).contains("2 of 2 files succeeded"));
    let digest = stdout_line(&shoal(home.path(), &["cat", &format!("{gathered}/hello/hello.sha256")]));
    assert!(digest.starts_with("a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192a447"), "{digest}");
    let digest = stdout_line(&shoal(home.path(), &["cat", &format!("{gathered}/{dir}/{dir}/a.txt.sha256")]));
    assert!(digest.ends_with(&format!("  {dir}/a.txt")), "{digest}");
    let plates = work.path().join("plates");
    for name in ["p1", "p2", "p3"] {
        std::fs::create_dir_all(plates.join(name)).unwrap();
        std::fs::write(plates.join(name).join("cells.txt"), name).unwrap();
    }
    let plates = stdout_line(&shoal(home.path(), &["add", "--quiet", plates.to_str().unwrap()]));
    let batched = shoal(home.path(), &["run", "--program", &program, "--input", &plates, "--each", "--batch", "3"]);
    let gathered = stdout_line(&batched);
    assert!(String::from_utf8_lossy(&batched.stderr).contains("3 of 3 files succeeded, 0 failed"));
    let digest = stdout_line(&shoal(home.path(), &["cat", &format!("{gathered}/p2/cells.txt.sha256")]));
    assert!(digest.ends_with("  p2/cells.txt"), "{digest}");
    drop(dev);
    assert!(!endpoints.exists(), "shoal dev removes its endpoints when it stops");
}

/// From a home that knows no stack, with `HOME` holding only a config file `shoal config set`
/// wrote: its gateway and key are used; the environment beats it, a flag beats the environment;
/// a profile is chosen by `--profile` or `SHOAL_PROFILE`; a file others may read is refused
/// while it holds a key, a malformed one named with its line.
fn config_file_names_the_gateway_and_key(elsewhere: &Path, job: &str, gateway: &str, key: &str) {
    let user = tempfile::tempdir().unwrap();
    let file = user.path().join(".config/shoal/config.toml");
    let shoal_as_user = |args: &[&str]| {
        let mut command = command(elsewhere);
        command.env("HOME", user.path()).env_remove("XDG_CONFIG_HOME").args(args);
        command
    };
    let ok = |command: &mut Command| {
        let output = command.output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        output
    };
    ok(&mut shoal_as_user(&["config", "set", "gateway", gateway]));
    // The key from standard input, out of the shell's history.
    let mut set_key =
        shoal_as_user(&["config", "set", "api-key"]).stdin(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    std::io::Write::write_all(&mut set_key.stdin.take().unwrap(), format!("{key}\n").as_bytes()).unwrap();
    assert!(set_key.wait().unwrap().success());
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let status = json(&ok(&mut shoal_as_user(&["status", job, "--json"])));
    assert_eq!(status["id"], job);
    let shown = json(&ok(&mut shoal_as_user(&["config", "show", "--json"])));
    assert_eq!(shown["gateway"]["url"], gateway.trim_end_matches('/'));
    assert_eq!(shown["gateway"]["from"], file.display().to_string());
    let prefix = shown["api_key"]["prefix"].as_str().unwrap();
    assert!(prefix.starts_with("shoal_") && prefix.len() < key.len(), "only the key's first characters: {prefix}");
    let text = String::from_utf8(ok(&mut shoal_as_user(&["config", "show"])).stdout).unwrap();
    assert!(!text.contains(key) && text.contains(&prefix[..10]), "{text}");

    // The environment beats the file, a flag the environment.
    let dead = "http://127.0.0.1:9";
    let unreachable = failure(&shoal_as_user(&["status", job]).env("SHOAL_GATEWAY", dead).output().unwrap());
    assert!(unreachable.contains("cannot reach the gateway at http://127.0.0.1:9"), "{unreachable}");
    let bad_key = "shoal_0000000000000000000000000000000000000000000000000000000000000000";
    let refused = failure(&shoal_as_user(&["status", job]).env("SHOAL_API_KEY", bad_key).output().unwrap());
    assert!(refused.contains("401"), "{refused}");
    ok(shoal_as_user(&["status", job, "--gateway", gateway]).env("SHOAL_GATEWAY", dead));
    ok(shoal_as_user(&["status", job, "--api-key", key]).env("SHOAL_API_KEY", bad_key));

    // A profile is a gateway and key of its own: none of the top level's is sent with it.
    ok(&mut shoal_as_user(&["config", "set", "gateway", dead, "--profile", "dead"]));
    let profiled = failure(&shoal_as_user(&["status", job, "--profile", "dead"]).output().unwrap());
    assert!(profiled.contains("cannot reach the gateway at http://127.0.0.1:9"), "{profiled}");
    let shown = json(&ok(shoal_as_user(&["config", "show", "--json"]).env("SHOAL_PROFILE", "dead")));
    assert_eq!((&shown["profile"], &shown["api_key"]), (&serde_json::json!("dead"), &serde_json::Value::Null));
    let unknown = failure(&shoal_as_user(&["status", job, "--profile", "nope"]).output().unwrap());
    assert!(unknown.contains("no profile \"nope\"") && unknown.contains("dead"), "{unknown}");

    // A key others may read is refused, as ssh refuses such keys.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let open = failure(&shoal_as_user(&["status", job]).output().unwrap());
    assert!(open.contains("chmod 600") && open.contains(&file.display().to_string()), "{open}");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, format!("{text}\ngateway http://elsewhere\n")).unwrap();
    let malformed = failure(&shoal_as_user(&["status", job]).output().unwrap());
    let line = text.lines().count() + 2;
    assert!(
        malformed.contains(&file.display().to_string()) && malformed.contains(&format!("line {line}")),
        "{malformed}"
    );
}

#[test]
fn shoal_dev_with_filecoin_buys_what_only_its_provider_holds_within_the_limit() {
    let home = tempfile::tempdir().unwrap();
    let _dev =
        Dev::start(home.path(), &["--filecoin", "--filecoin-price", "0.001 FIL", "--filecoin-limit", "0.0015 FIL"]);
    let endpoints = home.path().join("dev.json");
    let admin = serde_json::from_slice::<serde_json::Value>(&std::fs::read(&endpoints).unwrap()).unwrap()["redis"]
        .as_str()
        .unwrap()
        .to_string();
    let program_path = repo_root().join("programs/wasm/echo-hash.wasm");
    let program = stdout_line(&shoal(home.path(), &["add", "--quiet", program_path.to_str().unwrap()]));
    // Two datasets on the provider's disk only, its home beside the stack's.
    let work = tempfile::tempdir().unwrap();
    let provider_home = home.path().join("filecoin");
    let dataset = |name: &str, seed: u32| {
        let bytes: Vec<u8> = (0..300 * 1024u32).map(|i| (i.wrapping_mul(2654435761) >> 9) as u8 ^ seed as u8).collect();
        let path = work.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        stdout_line(&shoal(&provider_home, &["add", "--quiet", path.to_str().unwrap()]))
    };
    let (first, second) = (dataset("a.bin", 1), dataset("b.bin", 2));
    let run = |cid: &str| {
        let input = format!("data.bin={cid}");
        let args =
            ["--json", "run", "--program", &program, "--input", &input, "--filecoin", "--max-price", "0.002 FIL"];
        json(&command(home.path()).args(args).output().unwrap())
    };

    let bought = run(&first);
    assert_eq!(bought["state"], "succeeded", "{bought}");
    // The limit leaves 0.0005 FIL: the second dataset cannot be paid for.
    let refused = run(&second);
    assert_eq!((&refused["state"], &refused["failure"]["reason"]), (&"failed".into(), &"budget_exhausted".into()));
    let message = refused["failure"]["message"].as_str().unwrap();
    assert!(
        message.contains("costs 1000000000000000 attoFIL") && message.contains("spent 1000000000000000"),
        "{message}"
    );

    let books = json(&shoal(home.path(), &["--json", "filecoin", "spent", "--redis", &admin]));
    let wallet = &books["wallets"][0];
    assert_eq!(wallet["spent_attofil"], "1000000000000000", "{books}");
    assert_eq!((&wallet["reserved_attofil"], &wallet["refusals"]), (&"0".into(), &1.into()), "{books}");
}

/// `shoal pipeline run|status|cancel` against a stack without workers, so a pipeline stays as
/// it was created (every unit waiting) until it is cancelled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelines_are_run_followed_and_cancelled_from_the_cli() {
    use shoal_jobs::Role;
    use shoal_testkit::{api_key, Stack, StackOptions, TEST_TENANT};

    let stack = Stack::start(StackOptions { workers: 0, ..StackOptions::default() }).await.unwrap();
    let key = api_key(&stack.redis.url(), TEST_TENANT, Role::Tenant).await.unwrap();
    let program = stack.add_program("echo-hash").await.unwrap().to_string();
    let data = stack.add_bytes(b"pipeline data").await.unwrap().to_string();
    let home = tempfile::tempdir().unwrap();
    let spec = |first_from: &str| {
        serde_json::json!({
            "inputs": {"data": data},
            "stages": [
                {"name": "hash", "program": program, "inputs": [{"from": first_from, "path": "/inputs"}]},
                {"name": "rehash", "program": program, "inputs": [{"from": "hash", "path": "/hashed"}]}
            ]
        })
    };
    let file = home.path().join("pipeline.json");
    std::fs::write(&file, spec("pipeline.data").to_string()).unwrap();
    let file = file.to_str().unwrap().to_string();
    let target = ["--gateway", stack.gateway.as_str(), "--api-key", key.as_str()];
    let pipeline = |args: &[&str]| {
        let mut all = vec!["pipeline"];
        all.extend_from_slice(args);
        all.extend_from_slice(&target);
        all.into_iter().map(str::to_string).collect::<Vec<String>>()
    };
    let run = |args: Vec<String>| {
        let home = home.path().to_path_buf();
        async move { tokio::task::spawn_blocking(move || command(&home).args(&args).output().unwrap()).await.unwrap() }
    };

    let created = run(pipeline(&["run", &file, "--no-wait", "--idempotency-key", "cli-1"])).await;
    let id = stdout_line(&created);
    assert_eq!(id.len(), 26, "{id}");
    let again = run(pipeline(&["run", &file, "--no-wait", "--idempotency-key", "cli-1"])).await;
    assert_eq!(stdout_line(&again), id, "the same key and spec name the same pipeline");

    let status = run(pipeline(&["status", &id])).await;
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let printed = String::from_utf8(status.stdout).unwrap();
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines[0], format!("pipeline {id}"));
    assert_eq!(lines[1], "state    running");
    assert_eq!(lines[2], "hash   [>                   ] 0/1  waiting 1, running 0, succeeded 0, failed 0, skipped 0");
    assert!(lines[3].starts_with("rehash [>"), "{printed}");
    let mut json_args = vec!["--json".to_string()];
    json_args.extend(pipeline(&["status", &id]));
    let document = json(&run(json_args).await);
    assert_eq!((document["id"].as_str(), document["state"].as_str()), (Some(id.as_str()), Some("running")));
    assert_eq!(document["stages"][1]["counts"]["waiting"], 1);

    // A waiting run ends, non-zero, when its pipeline is cancelled.
    let waiting = {
        let home = home.path().to_path_buf();
        let args = pipeline(&["run", &file, "--idempotency-key", "cli-2"]);
        tokio::task::spawn_blocking(move || command(&home).args(&args).output().unwrap())
    };
    // The same key names the waiting run's pipeline, once it has created it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let waited_on = loop {
        let found = run(pipeline(&["run", &file, "--no-wait", "--idempotency-key", "cli-2"])).await;
        let id = stdout_line(&found);
        let listed = run(pipeline(&["status", &id])).await;
        if String::from_utf8_lossy(&listed.stdout).contains("state    running") {
            break id;
        }
        assert!(Instant::now() < deadline, "the waiting run's pipeline never showed");
    };
    let cancelled = run(pipeline(&["cancel", &waited_on])).await;
    assert_eq!(stdout_line(&cancelled), format!("{waited_on} cancelled"));
    let waiting = tokio::time::timeout(Duration::from_secs(30), waiting).await.unwrap().unwrap();
    assert!(!waiting.status.success(), "a cancelled pipeline's run must fail");
    let printed = String::from_utf8(waiting.stdout).unwrap();
    assert!(printed.contains(&format!("pipeline {waited_on}\nstate    cancelled\n")), "{printed}");
    assert!(printed.contains("message  cancelled by API key"), "{printed}");

    // An invalid spec is refused naming the field.
    std::fs::write(home.path().join("cycle.json"), spec("rehash").to_string()).unwrap();
    let cycle = home.path().join("cycle.json").to_str().unwrap().to_string();
    let refused = failure(&run(pipeline(&["run", &cycle])).await);
    assert!(refused.contains("stages.hash.inputs[0].from: the stages form a cycle"), "{refused}");
    stack.shutdown().await;
}

#[test]
fn a_worker_id_that_would_name_another_directory_is_refused_before_anything_is_touched() {
    let home = tempfile::tempdir().unwrap();
    let runs = home.path().join("runs");
    std::fs::create_dir_all(runs.join("keep")).unwrap();
    // Nothing listens on port 1: the id must be refused before Redis is asked for anything.
    let output = command(home.path())
        .args(["worker", "--redis", "redis://127.0.0.1:1", "--id", "..", "--runs-dir"])
        .arg(runs.join("keep"))
        .output()
        .unwrap();
    let error = failure(&output);
    assert!(error.contains("worker id \"..\" is not usable"), "{error}");
    assert!(runs.join("keep").is_dir(), "the directory the id would have named is left alone");
}

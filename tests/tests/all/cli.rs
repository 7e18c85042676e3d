//! The `shoal` command as a user runs it: `shoal dev` in the background, then `add`, `run`
//! (also fanned out: `--each`, `--each-input`, `--batch`), `status`, `logs`, `get`, `cat` and
//! `car export|import` as separate processes.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use shoal_testkit::{repo_root, shoal_binary};

/// A `shoal dev` process, stopped with SIGTERM when dropped.
struct Dev {
    child: Child,
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

fn shoal(home: &Path, args: &[&str]) -> Output {
    let output = Command::new(shoal_binary().unwrap()).arg("--home").arg(home).args(args).output().unwrap();
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

#[test]
fn the_cli_adds_runs_and_fetches_through_a_dev_stack() {
    let home = tempfile::tempdir().unwrap();
    let dev = Dev {
        child: Command::new(shoal_binary().unwrap())
            .arg("--home")
            .arg(home.path())
            .args(["dev", "--port", "0", "--content-port", "0", "--workers", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    };
    let endpoints = home.path().join("dev.json");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !endpoints.exists() {
        assert!(Instant::now() < deadline, "shoal dev did not write its endpoints");
        std::thread::sleep(Duration::from_millis(50));
    }

    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("hello.txt"), b"hello world\n").unwrap();
    let input = stdout_line(&shoal(home.path(), &["add", "--quiet", work.path().join("hello.txt").to_str().unwrap()]));
    assert_eq!(input, "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4");
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

    // The job is listed, as JSON or a line each.
    let listed = stdout_line(&shoal(home.path(), &["jobs", "list", "--json"]));
    let ids: Vec<String> = listed
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()["id"].as_str().unwrap().to_string())
        .collect();
    assert!(ids.contains(&job), "{listed}");
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

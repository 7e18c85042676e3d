//! `shoal filecoin limit|spent|balance` as an operator runs them: the real binary against a
//! private `redis-server` (logged in as its admin, as `shoal keys` is) and against the Lotus
//! stand-in of `shoal filecoin devnet`, started as a process.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use shoal_jobs::keys::RedisRole;
use shoal_jobs::{Fsync, RedisConnection, RedisServer, SpendingLedger};
use shoal_testkit::shoal_binary;

const FIL: u128 = 1_000_000_000_000_000_000;
const WALLET: &str = "f1abjxfbp274xpdqcpuaykwkfb43omjotacm2p3za";

/// `shoal --home HOME ARGS…`, minding no Redis or Lotus of whoever runs the tests.
fn shoal(home: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(shoal_binary().unwrap());
    command.arg("--home").arg(home).args(args);
    for variable in ["SHOAL_REDIS", "SHOAL_REDIS_ADMIN_PASSWORD", "SHOAL_LOTUS_URL", "SHOAL_LOTUS_TOKEN"] {
        command.env_remove(variable);
    }
    command.output().unwrap()
}

/// What a command that succeeded printed.
fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// The error a command that failed printed.
fn failure(output: &Output) -> String {
    assert!(!output.status.success(), "succeeded: {}", String::from_utf8_lossy(&output.stdout));
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_set_a_wallets_limit_and_read_its_books() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start(dir.path(), Fsync::EverySec).unwrap();
    let url = redis.url();
    let home = dir.path();
    let limit = |args: &[&str]| shoal(home, &[&["filecoin", "limit"], args, &["--redis", &url]].concat());

    assert_eq!(stdout(&limit(&[WALLET])), format!("{WALLET}\tno limit set: it may spend nothing\n"));
    let half = format!("{WALLET}\tlimit 0.5 FIL (500000000000000000 attoFIL)\n");
    assert_eq!(stdout(&limit(&[WALLET, "0.5 FIL"])), half);
    assert_eq!(stdout(&limit(&[WALLET])), half, "read back");
    // Plain numbers are FIL, as everywhere amounts are parsed; attoFIL say so.
    assert_eq!(
        stdout(&limit(&[WALLET, "1500 attoFIL"])),
        format!("{WALLET}\tlimit 0.0000000000000015 FIL (1500 attoFIL)\n")
    );
    assert_eq!(
        stdout(&limit(&[WALLET, "2.000000000000000001"])),
        format!("{WALLET}\tlimit 2.000000000000000001 FIL (2000000000000000001 attoFIL)\n")
    );
    for bad in ["-1 FIL", "0.0000000000000000001", "3000000000 FIL", "lots"] {
        assert!(failure(&limit(&[WALLET, bad])).contains("the limit"), "{bad}");
    }
    assert!(failure(&limit(&["not-a-wallet", "1"])).contains("invalid wallet address"));
    let stays = format!("{WALLET}\tlimit 2.000000000000000001 FIL (2000000000000000001 attoFIL)\n");
    assert_eq!(stdout(&limit(&[WALLET])), stays, "a refused amount changes nothing");

    let spent = stdout(&shoal(home, &["filecoin", "spent", "--redis", &url]));
    assert_eq!(
        spent,
        format!(
            "{WALLET}\n  limit     2.000000000000000001 FIL (2000000000000000001 attoFIL)\n  spent     0 FIL (0 attoFIL)\n  \
             reserved  0 FIL (0 attoFIL)\n  refused   0 FIL (0 attoFIL) in 0 reservations\n"
        )
    );

    // What workers do shows: a reservation held, one settled, one refused — exactly, in attoFIL.
    let worker = SpendingLedger::new(RedisConnection::open(&[redis.url_for(RedisRole::Worker)]).await.unwrap());
    let ttl = Duration::from_secs(60);
    worker.reserve(WALLET, "r1", FIL / 4, "w1", ttl).await.unwrap();
    worker.reserve(WALLET, "r2", FIL / 2, "w1", ttl).await.unwrap();
    worker.record_voucher(WALLET, "r2", "v2", FIL / 2 - 7).await.unwrap();
    worker.settle(WALLET, "r2", FIL / 2 - 7, "v2").await.unwrap();
    assert!(worker.reserve(WALLET, "r3", 2 * FIL, "w1", ttl).await.is_err());
    let other = "f01234";
    stdout(&limit(&[other, "1"]));
    let json = shoal(home, &["--json", "filecoin", "spent", "--redis", &url]);
    let books: serde_json::Value = serde_json::from_slice(stdout(&json).as_bytes()).unwrap();
    assert_eq!(
        books,
        serde_json::json!({"wallets": [
            {"wallet": other, "limit_attofil": "1000000000000000000", "spent_attofil": "0",
             "reserved_attofil": "0", "refused_attofil": "0", "refusals": 0},
            {"wallet": WALLET, "limit_attofil": "2000000000000000001", "spent_attofil": "499999999999999993",
             "reserved_attofil": "250000000000000000", "refused_attofil": "2000000000000000000", "refusals": 1},
        ]}),
        "in the wallets' order"
    );
    let one = stdout(&shoal(home, &["filecoin", "spent", WALLET, "--redis", &url]));
    assert!(one.starts_with(&format!("{WALLET}\n")) && !one.contains(other), "only the wallet named: {one}");
    assert!(one.contains("  spent     0.499999999999999993 FIL (499999999999999993 attoFIL)\n"), "{one}");
    assert!(one.contains("  refused   2 FIL (2000000000000000000 attoFIL) in 1 reservations\n"), "{one}");

    // Operators' commands: another role's user may not set a limit.
    let gateway = redis.url_for(RedisRole::Gateway);
    let refused = failure(&shoal(home, &["filecoin", "limit", WALLET, "5", "--redis", &gateway]));
    assert!(refused.contains("no permissions"), "{refused}");
}

/// A `shoal filecoin devnet` process, killed when dropped.
struct Devnet {
    child: Child,
}

impl Drop for Devnet {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

#[test]
fn balance_asks_lotus_for_the_default_or_a_named_wallet() {
    let home = tempfile::tempdir().unwrap();
    let mut child = Command::new(shoal_binary().unwrap())
        .arg("--home")
        .arg(home.path())
        .args(["filecoin", "devnet", "--balance", "12.000000000000000345", "--token", "secret"])
        .env_remove("SHOAL_LOTUS_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap());
    let devnet = Devnet { child };
    // The payer's line: `payer's Lotus URL token TOKEN wallet ADDRESS (BALANCE)`.
    let (sender, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.lines().map_while(Result::ok) {
            if line.contains("payer's Lotus") {
                sender.send(line).ok();
            }
        }
    });
    let line = received.recv_timeout(Duration::from_secs(60)).expect("devnet printed its payer's node");
    let words: Vec<&str> = line.split_whitespace().collect();
    let after = |word: &str| words[words.iter().position(|w| *w == word).unwrap() + 1].to_string();
    let (url, wallet) = (after("Lotus"), after("wallet"));
    let home = home.path();

    let expected = format!("{wallet}\tbalance 12.000000000000000345 FIL (12000000000000000345 attoFIL)\n");
    let by_default = shoal(home, &["filecoin", "balance", "--lotus-url", &url, "--lotus-token", "secret"]);
    assert_eq!(stdout(&by_default), expected, "the node's default wallet");
    let named = shoal(home, &["filecoin", "balance", &wallet, "--lotus-url", &url, "--lotus-token", "secret"]);
    assert_eq!(stdout(&named), expected);
    let json = shoal(home, &["--json", "filecoin", "balance", &wallet, "--lotus-url", &url, "--lotus-token", "secret"]);
    let json: serde_json::Value = serde_json::from_slice(stdout(&json).as_bytes()).unwrap();
    assert_eq!(json, serde_json::json!({"wallet": wallet, "balance_attofil": "12000000000000000345"}));
    // The URL and token from the environment, as services take them.
    let from_env = Command::new(shoal_binary().unwrap())
        .arg("--home")
        .arg(home)
        .args(["filecoin", "balance"])
        .env("SHOAL_LOTUS_URL", &url)
        .env("SHOAL_LOTUS_TOKEN", "secret")
        .output()
        .unwrap();
    assert_eq!(stdout(&from_env), expected);
    // Without a token Lotus answers reads only: a named wallet's balance, not the default wallet.
    assert_eq!(stdout(&shoal(home, &["filecoin", "balance", &wallet, "--lotus-url", &url])), expected);
    let refused = failure(&shoal(home, &["filecoin", "balance", "--lotus-url", &url]));
    assert!(refused.contains("default wallet"), "{refused}");
    drop(devnet);
}

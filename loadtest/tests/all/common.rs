//! What the tests share: one stack at a time, command lines parsed as `shoal-loadtest` parses
//! them, and reading back the reports they write.

use std::path::Path;

use clap::Parser;
use shoal_loadtest::byzantine::ByzantineOptions;
use shoal_loadtest::chaos::Options;
use shoal_loadtest::latency::LatencyOptions;
use shoal_loadtest::sim::SimOptions;
use shoal_loadtest::verification::VerificationOptions;
use shoal_loadtest::{Cli, Command};

/// Taken by every test that starts a stack, so that they run one after another (as they did
/// in separate test binaries) rather than all at once on a small machine.
static STACK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Waits until no other test runs a stack; the guard lets the next one go.
pub(crate) async fn one_stack_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    STACK.lock().await
}

/// `shoal-loadtest <subcommand> <args…>` as the binary parses it, and the command line to
/// record.
fn parse(subcommand: &str, args: &[&str]) -> (Command, String) {
    let line: Vec<&str> = ["shoal-loadtest", subcommand].into_iter().chain(args.iter().copied()).collect();
    (Cli::parse_from(&line).command, line.join(" "))
}

/// The options of `shoal-loadtest latency <args…>`, and the command line.
pub(crate) fn latency(args: &[&str]) -> (LatencyOptions, String) {
    match parse("latency", args) {
        (Command::Latency(options), line) => (options, line),
        (other, _) => panic!("not latency: {other:?}"),
    }
}

/// The options of `shoal-loadtest chaos <args…>`, and the command line.
pub(crate) fn chaos(args: &[&str]) -> (Options, String) {
    match parse("chaos", args) {
        (Command::Chaos(options), line) => (options, line),
        (other, _) => panic!("not chaos: {other:?}"),
    }
}

/// The options of `shoal-loadtest byzantine <args…>`, and the command line.
pub(crate) fn byzantine(args: &[&str]) -> (ByzantineOptions, String) {
    match parse("byzantine", args) {
        (Command::Byzantine(options), line) => (options, line),
        (other, _) => panic!("not byzantine: {other:?}"),
    }
}

/// The options of `shoal-loadtest sim <args…>`, and the command line.
pub(crate) fn sim(args: &[&str]) -> (SimOptions, String) {
    match parse("sim", args) {
        (Command::Sim(options), line) => (options, line),
        (other, _) => panic!("not sim: {other:?}"),
    }
}

/// The options of `shoal-loadtest verification <args…>`, and the command line.
pub(crate) fn verification(args: &[&str]) -> (VerificationOptions, String) {
    match parse("verification", args) {
        (Command::Verification(options), line) => (options, line),
        (other, _) => panic!("not verification: {other:?}"),
    }
}

/// The JSON file at `path`.
pub(crate) fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Asserts that the JSON report at `path` has every one of `fields` at its top level.
pub(crate) fn assert_fields(path: &Path, fields: &[&str]) -> serde_json::Value {
    let json = read_json(path);
    for field in fields {
        assert!(json.get(field).is_some(), "{} lacks {field}: {json}", path.display());
    }
    json
}

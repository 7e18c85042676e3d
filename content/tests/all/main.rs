//! The content crate's integration tests, in one binary (each `tests/*.rs` file would be a binary
//! of its own, linked separately): one module per area, plus the fixtures they share.
//!
//! The npm peers they cross-check against stay in `tests/js-car` and `tests/js-unixfs`.

mod car_format;
mod car_fuzz;
mod car_interop_js;
mod car_support;
mod dagpb_fuzz;
mod serve_gateway;
mod source_chain;
mod unixfs_malformed;
mod unixfs_peer;
mod unixfs_support;

use proptest::test_runner::{Config, FileFailurePersistence};

/// The configuration of the property tests: `cases` cases, and failing cases kept beside the
/// module that found them (`car_fuzz.rs` → `car_fuzz.proptest-regressions`), where they are
/// committed. proptest's default would look in `tests/proptest-regressions/` instead, since it
/// puts them beside the directory holding a `main.rs`.
fn proptest_config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..Config::default()
    }
}

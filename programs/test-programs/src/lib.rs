//! Shared logic of the test guests (one binary each under `src/bin/`).
//! Kept in a library so `cargo test` exercises it natively.

pub mod echo_hash;
pub mod sizes;

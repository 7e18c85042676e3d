//! The runtime crate's integration tests, in one binary: `Runtime::run` end to end with small
//! WAT guests (`run`), over the helpers in `common`.

mod common;
mod run;

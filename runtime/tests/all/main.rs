//! The runtime crate's integration tests, in one binary: `Runtime::run` end to end with small
//! WAT guests (`run`), guests that sleep or flood their outputs (`limits`), over the helpers in
//! `common`.

mod common;
mod limits;
mod run;

//! In-memory capture of a guest's stdout/stderr with a byte cap.
//!
//! wasmtime-wasi's `MemoryOutputPipe` reports "closed" once full, so a chatty
//! guest would see a failed write (a Rust guest then panics) and the outcome
//! would depend on the cap. This capture instead accepts every write, keeps
//! the first `cap` bytes, discards the rest and remembers that it did: the
//! guest's behaviour never depends on the cap and host memory stays bounded.
//! It also keeps the last [`TAIL_BYTES`] written, because the end of stderr
//! (a panic message) is what explains a trap.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// How many of the most recent bytes are kept regardless of the cap.
pub(crate) const TAIL_BYTES: usize = 4096;

/// Largest write the guest is told it may make at once; any value works since
/// every write is accepted, this only sizes the guest's chunks.
const WRITE_PERMIT_BYTES: usize = 64 * 1024;

#[derive(Debug, Default)]
struct CaptureState {
    head: BytesMut,
    tail: Vec<u8>,
    total: u64,
}

/// A cloneable handle to one captured stream; clones share the buffer.
#[derive(Debug, Clone)]
pub(crate) struct CappedOutput {
    cap: usize,
    state: Arc<Mutex<CaptureState>>,
}

/// What a [`CappedOutput`] captured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Captured {
    /// The first `cap` bytes written.
    pub(crate) head: Bytes,
    /// Whether more than `cap` bytes were written.
    pub(crate) truncated: bool,
    /// The last (up to) [`TAIL_BYTES`] bytes written.
    pub(crate) tail: Vec<u8>,
}

impl CappedOutput {
    pub(crate) fn new(cap: usize) -> Self {
        Self { cap, state: Arc::default() }
    }

    fn lock(&self) -> MutexGuard<'_, CaptureState> {
        // A panic while holding this lock can only come from an allocation
        // failure; the buffer is still consistent, so keep using it.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn append(&self, bytes: &[u8]) {
        let mut state = self.lock();
        let room = self.cap.saturating_sub(state.head.len());
        state.head.extend_from_slice(&bytes[..bytes.len().min(room)]);
        state.total += bytes.len() as u64;

        let recent = &bytes[bytes.len().saturating_sub(TAIL_BYTES)..];
        state.tail.extend_from_slice(recent);
        if state.tail.len() > TAIL_BYTES {
            let excess = state.tail.len() - TAIL_BYTES;
            state.tail.drain(..excess);
        }
    }

    /// What has been captured so far.
    pub(crate) fn captured(&self) -> Captured {
        let state = self.lock();
        Captured {
            head: state.head.clone().freeze(),
            truncated: state.total > state.head.len() as u64,
            tail: state.tail.clone(),
        }
    }
}

impl IsTerminal for CappedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for CappedOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT_BYTES)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedOutput {
    async fn ready(&mut self) {}
}

impl AsyncWrite for CappedOutput {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.append(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_everything_under_the_cap() {
        let out = CappedOutput::new(10);
        out.append(b"hello");
        let captured = out.captured();
        assert_eq!(&captured.head[..], b"hello");
        assert!(!captured.truncated);
        assert_eq!(captured.tail, b"hello");
    }

    #[test]
    fn keeps_the_head_and_marks_truncation_beyond_the_cap() {
        let out = CappedOutput::new(4);
        out.append(b"abc");
        out.append(b"defg");
        let captured = out.captured();
        assert_eq!(&captured.head[..], b"abcd");
        assert!(captured.truncated);
        assert_eq!(captured.tail, b"abcdefg");
    }

    #[test]
    fn tail_holds_only_the_most_recent_bytes() {
        let out = CappedOutput::new(0);
        let first = vec![b'a'; TAIL_BYTES];
        out.append(&first);
        out.append(b"panicked at src/main.rs");
        let captured = out.captured();
        assert!(captured.head.is_empty());
        assert_eq!(captured.tail.len(), TAIL_BYTES);
        assert!(captured.tail.ends_with(b"panicked at src/main.rs"));
    }
}

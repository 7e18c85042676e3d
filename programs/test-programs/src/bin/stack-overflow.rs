//! `stack-overflow [linear-memory]`: recurses without bound until a stack
//! runs out, so the host sees a trap (SIGSEGV natively).
//!
//! A wasm module has two stacks. By default each frame holds only scalars,
//! which live in wasm locals: the engine's own call stack overflows
//! (wasmtime: "call stack exhausted"). With `linear-memory`, each frame keeps
//! a 256-byte array whose address escapes, so it lives on the shadow stack
//! in linear memory; rustc places that stack first in memory, so running off
//! its end is an out-of-bounds access trap rather than silent corruption.

use std::hint::black_box;

/// Scalar recursion. `limit` is opaque to the optimiser and never reached, so
/// the function has a return path (it is not `noreturn`), and the work after
/// the call is not an accumulator LLVM can turn into a loop.
fn dive_locals(depth: u64, limit: u64, salt: u64) -> u64 {
    if depth == limit {
        return salt;
    }
    let below = dive_locals(depth + 1, limit, salt ^ depth.rotate_left(7));
    below.rotate_left((depth & 63) as u32) ^ salt
}

/// Recursion whose frames live in linear memory.
fn dive_linear(depth: u64, limit: u64) -> u64 {
    let frame = black_box([depth; 32]);
    if depth == limit {
        return frame[1];
    }
    dive_linear(frame[0] + 1, limit).wrapping_add(black_box(frame)[31])
}

fn main() {
    let linear = std::env::args()
        .nth(1)
        .is_some_and(|a| a == "linear-memory");
    let limit = black_box(u64::MAX);
    println!(
        "stack-overflow: recursing without bound ({})",
        if linear {
            "linear memory"
        } else {
            "wasm locals"
        }
    );
    let result = if linear {
        dive_linear(0, limit)
    } else {
        dive_locals(0, limit, 0x5eed)
    };
    println!("stack-overflow: unreachable, got {result}");
}

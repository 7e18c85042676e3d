//! `memory-bomb [--graceful] [--limit SIZE]`: allocates 16 MiB blocks and
//! writes to every page until allocation fails, printing the running total.
//!
//! By default a failed allocation aborts like any Rust program that runs out
//! of memory (a trap under WASI). `--graceful` uses fallible allocation and
//! exits with status 1 instead. `--limit SIZE` (e.g. `256M`) stops after SIZE
//! bytes with status 0, so the program can run natively without eating the
//! machine.

use std::process::ExitCode;

use test_programs::sizes::parse_byte_count;

const BLOCK: usize = 16 << 20;
const PAGE: usize = 4096;

fn main() -> ExitCode {
    let mut graceful = false;
    let mut limit = u64::MAX;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--graceful" => graceful = true,
            "--limit" => match args.next().as_deref().map(parse_byte_count) {
                Some(Ok(bytes)) => limit = bytes,
                Some(Err(error)) => {
                    eprintln!("memory-bomb: --limit: {error}");
                    return ExitCode::from(2);
                }
                None => {
                    eprintln!("memory-bomb: --limit needs a size");
                    return ExitCode::from(2);
                }
            },
            other => {
                eprintln!("memory-bomb: unknown argument {other:?}");
                return ExitCode::from(2);
            }
        }
    }

    let mut blocks: Vec<Vec<u8>> = Vec::new();
    let mut total: u64 = 0;
    while total < limit {
        let mut block = Vec::new();
        if graceful {
            if block.try_reserve_exact(BLOCK).is_err() {
                println!("memory-bomb: allocation failed after {} MiB", total >> 20);
                return ExitCode::FAILURE;
            }
        } else {
            block.reserve_exact(BLOCK);
        }
        block.resize(BLOCK, 0);
        // Touch every page so the memory is really committed, not just reserved.
        for page in block.chunks_mut(PAGE) {
            page[0] = 1;
        }
        blocks.push(std::hint::black_box(block));
        total += BLOCK as u64;
        println!("memory-bomb: holding {} MiB", total >> 20);
    }
    println!("memory-bomb: reached the limit of {} MiB", total >> 20);
    ExitCode::SUCCESS
}

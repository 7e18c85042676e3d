//! `huge-output [FILE_SIZE [STDOUT_SIZE]]`: writes FILE_SIZE bytes (default
//! 1G) to `/outputs/big.bin` and STDOUT_SIZE bytes (default 1G) to stdout,
//! interleaved in 1 MiB chunks so whichever host limit is lower trips first.
//!
//! Byte `i` of `big.bin` is `i % 251`, the pattern of the 1 MiB IPFS test
//! vector, so `huge-output 1M 0` has a known CID. Stdout is 64-byte lines.

use std::fs::File;
use std::io::{self, Write};
use std::process::ExitCode;

use test_programs::sizes::parse_byte_count;

const CHUNK: u64 = 1 << 20;
const OUTPUT_PATH: &str = "/outputs/big.bin";

fn main() -> ExitCode {
    let mut sizes = [1u64 << 30; 2];
    for (slot, arg) in sizes.iter_mut().zip(std::env::args().skip(1)) {
        match parse_byte_count(&arg) {
            Ok(bytes) => *slot = bytes,
            Err(error) => {
                eprintln!("huge-output: {error}");
                return ExitCode::from(2);
            }
        }
    }
    match flood(sizes[0], sizes[1]) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("huge-output: {error}");
            ExitCode::FAILURE
        }
    }
}

fn flood(file_size: u64, stdout_size: u64) -> io::Result<()> {
    let mut file = File::create(OUTPUT_PATH)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot create {OUTPUT_PATH}: {e}")))?;
    let stdout = io::stdout();
    let mut stdout = stdout.lock();
    let mut file_written = 0u64;
    let mut stdout_written = 0u64;
    let mut chunk = Vec::with_capacity(CHUNK as usize);
    while file_written < file_size || stdout_written < stdout_size {
        let file_part = CHUNK.min(file_size - file_written);
        chunk.clear();
        chunk.extend((file_written..file_written + file_part).map(|i| (i % 251) as u8));
        file.write_all(&chunk).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("writing {OUTPUT_PATH} at {file_written}: {e}"),
            )
        })?;
        file_written += file_part;

        let stdout_part = CHUNK.min(stdout_size - stdout_written);
        chunk.clear();
        let mut line = stdout_written / 64;
        while (chunk.len() as u64) < stdout_part {
            chunk.extend_from_slice(
                format!("huge-output stdout line {line:020} ..................\n").as_bytes(),
            );
            line += 1;
        }
        chunk.truncate(stdout_part as usize);
        stdout.write_all(&chunk).map_err(|e| {
            io::Error::new(e.kind(), format!("writing stdout at {stdout_written}: {e}"))
        })?;
        stdout_written += stdout_part;
    }
    file.flush()?;
    stdout.flush()
}

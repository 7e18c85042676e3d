//! Throughput and memory benchmark of the content layer, driven by `scripts/bench-content.sh`.
//!
//! ```text
//! content_bench gen PATH BYTES [SEED]         deterministic pseudo-random file
//! content_bench compare PATH [PROFILE [ROUNDS]]  raw SHA-256 vs import (no store) of the same
//!                                             bytes, best of ROUNDS (default 3)
//! content_bench import PATH STORE [PROFILE]   import into an FsBlockStore, print the root
//! content_bench cat STORE CID                 stream a file out of the store, count its bytes
//! content_bench export STORE CID DEST         write a file or tree out of the store
//! content_bench fetch STORE CID DEST_STORE     serve STORE on loopback, fetch the DAG as a
//!                                             verified CAR into DEST_STORE (server and client
//!                                             in this one process)
//! ```
//!
//! Every mode prints one JSON line, so the script can compute ratios. `compare` hashes the file
//! the way a single-threaded `sha256sum` would (read in 256 KiB pieces, one SHA-256 each) and
//! then imports it into a sink that drops blocks, both in the same process on the same bytes
//! from the page cache, so the ratio isolates the importer's own overhead.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use sha2::{Digest, Sha256};
use shoal_content::source::HttpGatewaySource;
use shoal_content::unixfs::{self, ImportOptions, Profile};
use shoal_content::{parse_cid, serve, Block, BlockReader, BlockSink, BlockStore, FsBlockStore};

type AnyResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const MB: f64 = 1e6;

/// A sink that drops blocks: import speed without storage.
struct NullSink;

#[async_trait::async_trait]
impl BlockSink for NullSink {
    async fn put(&self, _block: &Block) -> shoal_content::Result<()> {
        Ok(())
    }
}

/// xorshift64*: the same bytes for a given seed on every run and machine.
fn generate(path: &Path, len: u64, seed: u64) -> AnyResult<()> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        for chunk in buf[..n].chunks_mut(8) {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let word = state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
        out.write_all(&buf[..n])?;
        left -= n as u64;
    }
    out.flush()?;
    Ok(())
}

/// Reads `path` in 256 KiB pieces and SHA-256es each on this thread; returns (bytes, seconds).
fn raw_sha256(path: &Path) -> AnyResult<(u64, f64)> {
    let started = Instant::now();
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    let mut sink = 0u8;
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            let n = file.read(&mut buf[filled..])?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        // Folding one digest byte in keeps the optimiser from dropping the hashing.
        sink ^= Sha256::digest(&buf[..filled])[0];
        total += filled as u64;
    }
    std::hint::black_box(sink);
    Ok((total, started.elapsed().as_secs_f64()))
}

async fn import(path: &Path, profile: Profile, sink: &dyn BlockSink) -> AnyResult<(unixfs::Imported, f64)> {
    let opts = ImportOptions { profile, ..Default::default() };
    let started = Instant::now();
    let imported = unixfs::import_path(path, &opts, sink).await?;
    Ok((imported, started.elapsed().as_secs_f64()))
}

fn profile_arg(arg: Option<&String>) -> AnyResult<Profile> {
    match arg {
        Some(name) => Ok(name.parse::<Profile>()?),
        None => Ok(Profile::default()),
    }
}

fn usage() -> AnyResult<()> {
    Err("usage: content_bench gen PATH BYTES [SEED] | compare PATH [PROFILE [ROUNDS]] | import PATH STORE [PROFILE] \
         | cat STORE CID | export STORE CID DEST | fetch STORE CID DEST_STORE"
        .into())
}

#[tokio::main]
async fn main() -> AnyResult<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).ok_or("missing argument");
    match args.first().map(String::as_str) {
        Some("gen") => {
            let seed = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(1);
            generate(Path::new(arg(1)?), arg(2)?.parse()?, seed)?;
        }
        Some("compare") => {
            let path = PathBuf::from(arg(1)?);
            let profile = profile_arg(args.get(2))?;
            let rounds: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(3);
            // Warm the page cache so neither measurement pays for the disk.
            raw_sha256(&path)?;
            // Best of `rounds`, alternating the two, so a burst of load from elsewhere on the
            // machine does not decide the ratio.
            let (mut sha_secs, mut import_secs, mut bytes, mut root) = (f64::MAX, f64::MAX, 0, None);
            for _ in 0..rounds.max(1) {
                let (n, secs) = raw_sha256(&path)?;
                let (imported, isecs) = import(&path, profile, &NullSink).await?;
                (bytes, sha_secs, import_secs) = (n, sha_secs.min(secs), import_secs.min(isecs));
                root = Some(imported.root);
            }
            let root = root.expect("at least one round");
            let (sha, imp) = (bytes as f64 / MB / sha_secs, bytes as f64 / MB / import_secs);
            println!(
                "{{\"mode\":\"compare\",\"profile\":\"{profile}\",\"bytes\":{bytes},\"root\":\"{}\",\
                 \"sha256_mb_s\":{sha:.1},\"import_mb_s\":{imp:.1},\"import_over_sha256\":{:.3}}}",
                root,
                imp / sha
            );
        }
        Some("import") => {
            let path = PathBuf::from(arg(1)?);
            let store = FsBlockStore::open(arg(2)?)?;
            let profile = profile_arg(args.get(3))?;
            let (imported, secs) = import(&path, profile, &store).await?;
            println!(
                "{{\"mode\":\"import\",\"profile\":\"{profile}\",\"bytes\":{},\"blocks\":{},\"root\":\"{}\",\"mb_s\":{:.1}}}",
                imported.size,
                imported.blocks,
                imported.root,
                imported.size as f64 / MB / secs
            );
        }
        Some("cat") => {
            let store: Arc<dyn BlockReader> = Arc::new(FsBlockStore::open(arg(1)?)?);
            let cid = parse_cid(arg(2)?)?;
            let started = Instant::now();
            let mut bytes = 0u64;
            let mut stream = std::pin::pin!(unixfs::cat(store, cid));
            while let Some(chunk) = stream.next().await {
                bytes += chunk?.len() as u64;
            }
            let secs = started.elapsed().as_secs_f64();
            println!("{{\"mode\":\"cat\",\"bytes\":{bytes},\"mb_s\":{:.1}}}", bytes as f64 / MB / secs);
        }
        Some("export") => {
            let store = FsBlockStore::open(arg(1)?)?;
            let cid = parse_cid(arg(2)?)?;
            let started = Instant::now();
            let exported = unixfs::export_to_path(&store, &cid, Path::new(arg(3)?)).await?;
            let secs = started.elapsed().as_secs_f64();
            println!(
                "{{\"mode\":\"export\",\"bytes\":{},\"files\":{},\"mb_s\":{:.1}}}",
                exported.bytes,
                exported.files,
                exported.bytes as f64 / MB / secs
            );
        }
        Some("fetch") => {
            let served: Arc<dyn BlockStore> = Arc::new(FsBlockStore::open(arg(1)?)?);
            let cid = parse_cid(arg(2)?)?;
            let dest = FsBlockStore::open(arg(3)?)?;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let base = format!("http://{}", listener.local_addr()?);
            tokio::spawn(async move { axum::serve(listener, serve::router(served)).await });
            let started = Instant::now();
            let fetched = HttpGatewaySource::new(&base)?.fetch_dag(&cid, &dest).await?;
            let secs = started.elapsed().as_secs_f64();
            println!(
                "{{\"mode\":\"fetch\",\"car_bytes\":{},\"blocks\":{},\"mb_s\":{:.1}}}",
                fetched.stats.bytes,
                fetched.stats.blocks,
                fetched.stats.bytes as f64 / MB / secs
            );
        }
        _ => usage()?,
    }
    Ok(())
}

//! The job mix and, for every job, the output CID it must produce, computed here without Shoal's
//! runtime: the expected `/outputs` tree is written to a temporary directory and imported.

use std::path::{Path, PathBuf};

use cid::Cid;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use shoal_content::unixfs::{self, ImportOptions};
use shoal_content::{BlockSink, FsBlockStore, MemoryBlockStore};

use crate::error::{LoadtestError, Result};

/// Files per directory input.
const DIRECTORY_FILES: [&str; 3] = ["a.bin", "nested/b.bin", "nested/deeper/c.txt"];
/// Distinct directory inputs.
const DIRECTORIES: usize = 4;
/// Every Nth job (that is not huge-output) hashes a directory input.
const DIRECTORY_EVERY: usize = 7;

/// A small deterministic generator (SplitMix64): the mix must be the same for a seed on every
/// machine, and nothing here needs more.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> SplitMix {
        SplitMix(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// `len` random bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

/// One job to submit.
#[derive(Debug, Clone)]
pub struct PlannedJob {
    /// Which kind of job (`echo-hash-file`, `echo-hash-dir`, `huge-output`), for the report.
    pub kind: &'static str,
    /// The JSON spec to POST.
    pub spec: Value,
    /// The output CID a correct run produces.
    pub expected_output: Cid,
}

/// Every job of a run, in submission order.
#[derive(Debug, Clone)]
pub struct Workload {
    /// The jobs.
    pub jobs: Vec<PlannedJob>,
}

/// The committed guest programs (`programs/wasm` of this repository) unless told otherwise.
pub fn default_programs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../programs/wasm")
}

fn import_options(include_hidden: bool) -> ImportOptions {
    ImportOptions { include_hidden, ..ImportOptions::default() }
}

async fn import_bytes(bytes: &[u8], sink: &dyn BlockSink, what: &str) -> Result<Cid> {
    unixfs::import_reader(bytes, &import_options(false), sink)
        .await
        .map(|imported| imported.root)
        .map_err(|source| LoadtestError::Content { context: format!("importing {what}"), source: Box::new(source) })
}

async fn import_dir(dir: &Path, sink: &dyn BlockSink, include_hidden: bool, what: &str) -> Result<Cid> {
    unixfs::import_path(dir, &import_options(include_hidden), sink).await.map(|imported| imported.root).map_err(
        |source| LoadtestError::Content {
            context: format!("importing {what} from {}", dir.display()),
            source: Box::new(source),
        },
    )
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| LoadtestError::io(format!("creating {}", parent.display()), e))?;
    }
    std::fs::write(path, bytes).map_err(|e| LoadtestError::io(format!("writing {}", path.display()), e))
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The CID of the directory holding `files` (relative path, content), imported into a
/// throw-away store: an expected `/outputs` tree.
async fn expected_tree(files: &[(String, Vec<u8>)]) -> Result<Cid> {
    expected_tree_into(files, &MemoryBlockStore::new()).await
}

async fn expected_tree_into(files: &[(String, Vec<u8>)], sink: &dyn BlockSink) -> Result<Cid> {
    let dir = tempfile::tempdir().map_err(|e| LoadtestError::io("creating a temporary directory", e))?;
    for (path, bytes) in files {
        write_file(&dir.path().join(path), bytes)?;
    }
    // Hidden entries count: a guest's `/outputs/.x` is part of its output.
    import_dir(dir.path(), sink, true, "an expected output").await
}

/// Adds the programs and inputs to `store` (the workers' shared block store) and plans
/// `jobs` jobs from `seed`: mostly `echo-hash` over one of `inputs` random files (arguments
/// differ per job), every 7th `echo-hash` over a directory, every `huge_every`th `huge-output 1M 0`.
pub async fn prepare(
    store: &FsBlockStore,
    programs: &Path,
    jobs: usize,
    inputs: usize,
    huge_every: usize,
    seed: u64,
) -> Result<Workload> {
    let read = |name: &str| {
        let path = programs.join(format!("{name}.wasm"));
        std::fs::read(&path).map_err(|e| LoadtestError::io(format!("reading {}", path.display()), e))
    };
    let echo_hash = import_bytes(&read("echo-hash")?, store, "echo-hash.wasm").await?;
    let huge_output = import_bytes(&read("huge-output")?, store, "huge-output.wasm").await?;
    let mut rng = SplitMix::new(seed);

    // Single files, each mounted as /inputs/<cid>: echo-hash writes `<cid>.sha256`.
    let mut files = Vec::new();
    for n in 0..inputs.max(1) {
        let len = 1 + rng.below(64 * 1024);
        let bytes = rng.bytes(len);
        let cid = import_bytes(&bytes, store, &format!("input file {n}")).await?;
        let name = cid.to_string();
        let expected =
            expected_tree(&[(format!("{name}.sha256"), format!("{}  {name}\n", sha256_hex(&bytes)).into_bytes())])
                .await?;
        files.push((cid, expected));
    }

    // Directories mounted at /inputs: echo-hash writes `<relative path>.sha256` for each file.
    let mut directories = Vec::new();
    for n in 0..DIRECTORIES {
        let dir = tempfile::tempdir().map_err(|e| LoadtestError::io("creating a temporary directory", e))?;
        let mut expected_files = Vec::new();
        for path in DIRECTORY_FILES {
            let len = 1 + rng.below(8 * 1024);
            let bytes = rng.bytes(len);
            write_file(&dir.path().join(path), &bytes)?;
            expected_files.push((format!("{path}.sha256"), format!("{}  {path}\n", sha256_hex(&bytes)).into_bytes()));
        }
        let cid = import_dir(dir.path(), store, false, &format!("input directory {n}")).await?;
        directories.push((cid, expected_tree(&expected_files).await?));
    }

    // `huge-output 1M 0`: /outputs/big.bin with byte i = i % 251, the IPFS 1 MiB vector.
    let big: Vec<u8> = (0..1usize << 20).map(|i| (i % 251) as u8).collect();
    let huge_expected = expected_tree(&[("big.bin".to_string(), big)]).await?;

    let mut planned = Vec::with_capacity(jobs);
    for n in 0..jobs {
        let job = if huge_every > 0 && n % huge_every == huge_every - 1 {
            PlannedJob {
                kind: "huge-output",
                spec: json!({"program": huge_output.to_string(), "args": ["1M", "0"]}),
                expected_output: huge_expected,
            }
        } else if n % DIRECTORY_EVERY == DIRECTORY_EVERY - 1 {
            let (input, expected) = directories[rng.below(directories.len())];
            PlannedJob {
                kind: "echo-hash-dir",
                spec: json!({
                    "program": echo_hash.to_string(),
                    "args": ["--job", n.to_string()],
                    "inputs": [{"cid": input.to_string(), "path": "/inputs"}],
                }),
                expected_output: expected,
            }
        } else {
            let (input, expected) = files[rng.below(files.len())];
            PlannedJob {
                kind: "echo-hash-file",
                spec: json!({
                    "program": echo_hash.to_string(),
                    "args": ["--job", n.to_string(), "x y"],
                    "env": {"LOADTEST_SEED": seed.to_string()},
                    "inputs": [{"cid": input.to_string(), "path": "/inputs"}],
                }),
                expected_output: expected,
            }
        };
        planned.push(job);
    }
    Ok(Workload { jobs: planned })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix_is_the_reference_sequence() {
        // First outputs of SplitMix64 seeded with 0 (Vigna's reference implementation).
        let mut rng = SplitMix::new(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[tokio::test]
    async fn the_expected_huge_output_holds_the_ipfs_mib_vector() {
        let big: Vec<u8> = (0..1usize << 20).map(|i| (i % 251) as u8).collect();
        let store = MemoryBlockStore::new();
        let dir = expected_tree_into(&[("big.bin".into(), big)], &store).await.unwrap();
        let file = unixfs::resolve_path(&store, &dir, "big.bin").await.unwrap();
        assert_eq!(file.to_string(), "bafybeiedpcapwld4tkgtzwahfofgn4wex5ryysf4se6hwpmlrsh4ntnrau");
    }

    #[tokio::test]
    async fn an_echo_hash_expectation_names_the_file_by_its_cid() {
        let store = MemoryBlockStore::new();
        let expected = expected_tree_into(&[("x.sha256".into(), b"y".to_vec())], &store).await.unwrap();
        let file = unixfs::resolve_path(&store, &expected, "x.sha256").await.unwrap();
        assert_eq!(file, import_bytes(b"y", &store, "y").await.unwrap());
    }
}

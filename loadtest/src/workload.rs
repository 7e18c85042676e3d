//! The job mix and, for every job, the output CID it must produce, computed here without Shoal's
//! runtime: the expected `/outputs` tree is written to a temporary directory and imported.

use std::path::Path;

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

/// Items a job of program number `program` reads: 1 or 2 (the second is the next item, a
/// neighbouring tile). The same rule in the simulation and in the real locality workload.
pub fn inputs_per_job(program: usize) -> u64 {
    1 + program as u64 % 2
}

/// The programs user `user` of `users` runs: every `users`-th one, starting at its own index, so
/// users share none and each has at least one (when there are at least as many programs).
pub fn programs_of(user: usize, users: usize, programs: usize) -> Vec<usize> {
    let own: Vec<usize> = (user..programs).step_by(users.max(1)).collect();
    if own.is_empty() {
        vec![user % programs.max(1)]
    } else {
        own
    }
}

/// Zipf (s = 1) popularity over `items` items, by inverting the continuous approximation of its
/// distribution: rank `r` (from 0) has probability about `1 / ((r + 1) ln(items + 1))`. Ranks
/// are spread over the items by a fixed permutation, so hot items land on many shards.
#[derive(Debug, Clone, Copy)]
pub struct Popularity {
    items: u64,
    /// `ln(items + 1)`.
    log_span: f64,
    /// An odd multiplier and an offset: rank `r` is item `(r * stride + offset) mod items`.
    stride: u64,
    offset: u64,
}

impl Popularity {
    /// Popularity over `items` items, its rank-to-item permutation from `seed`.
    pub fn new(items: u64, seed: u64) -> Popularity {
        let items = items.max(1);
        let mut rng = SplitMix::new(seed ^ 0x9091_1A11);
        // A stride coprime with `items` makes rank -> item a permutation.
        let mut stride = (rng.next_u64() % items) | 1;
        while gcd(stride, items) != 1 {
            stride = (stride + 2) % items.max(2);
        }
        Popularity { items, log_span: ((items + 1) as f64).ln(), stride, offset: rng.next_u64() % items }
    }

    /// How many items it spans.
    pub fn items(&self) -> u64 {
        self.items
    }

    /// The popularity rank (0 is the most popular) drawn from `rng`.
    pub fn rank(&self, rng: &mut SplitMix) -> u64 {
        let unit = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        ((unit * self.log_span).exp() as u64).saturating_sub(1).min(self.items - 1)
    }

    /// The item at popularity rank `rank`.
    pub fn item(&self, rank: u64) -> u64 {
        ((rank as u128 * self.stride as u128 + self.offset as u128) % self.items as u128) as u64
    }
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// What a user's next job reads: which of its programs, and which items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draw {
    /// The program (an index over all programs of the run).
    pub program: usize,
    /// The items it reads, in mount order: a popular item and, for two-input programs, the next.
    pub items: Vec<u64>,
}

/// Draws a user's next job: one of its programs `own`, uniformly, over an item drawn from
/// `popularity` (and the next one for two-input programs). The simulation and the real locality
/// workload both draw through here, so a seed gives both the same sequence of items.
pub fn draw(own: &[usize], popularity: &Popularity, rng: &mut SplitMix) -> Draw {
    let program = own[rng.below(own.len())];
    let first = popularity.item(popularity.rank(rng));
    let items = (0..inputs_per_job(program)).map(|i| (first + i) % popularity.items()).collect();
    Draw { program, items }
}

/// The seed of user `user`'s draws in a run seeded `seed`.
pub fn user_seed(seed: u64, user: usize) -> u64 {
    seed ^ (user as u64).wrapping_mul(0x5851_F42D_4C95_7F2D)
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
pub(crate) async fn expected_tree(files: &[(String, Vec<u8>)]) -> Result<Cid> {
    expected_tree_into(files, &MemoryBlockStore::new()).await
}

pub(crate) async fn expected_tree_into(files: &[(String, Vec<u8>)], sink: &dyn BlockSink) -> Result<Cid> {
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

    #[test]
    fn popularity_is_a_permutation_and_heavily_skewed() {
        let popularity = Popularity::new(1000, 3);
        let items: std::collections::HashSet<u64> = (0..1000).map(|r| popularity.item(r)).collect();
        assert_eq!(items.len(), 1000);
        let mut rng = SplitMix::new(1);
        let ranks: Vec<u64> = (0..100_000).map(|_| popularity.rank(&mut rng)).collect();
        assert!(ranks.iter().all(|&r| r < 1000));
        // Zipf(1) over 1000 items: the top 10 take about ln(11)/ln(1001) ≈ 35% of draws.
        let top = ranks.iter().filter(|&&r| r < 10).count() as f64 / ranks.len() as f64;
        assert!((0.30..0.40).contains(&top), "top-10 share {top}");
        assert!(ranks.iter().filter(|&&r| r >= 500).count() > 5000);
    }

    #[test]
    fn users_own_disjoint_programs_that_cover_them_all() {
        let owned: Vec<Vec<usize>> = (0..3).map(|u| programs_of(u, 3, 10)).collect();
        let mut all: Vec<usize> = owned.concat();
        all.sort();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert_eq!(programs_of(4, 5, 2), vec![0]);
    }

    #[test]
    fn a_draw_reads_neighbouring_items_of_its_own_programs() {
        let popularity = Popularity::new(50, 2);
        let mut rng = SplitMix::new(4);
        for _ in 0..200 {
            let draw = draw(&[1, 4], &popularity, &mut rng);
            assert!(draw.program == 1 || draw.program == 4);
            assert_eq!(draw.items.len() as u64, inputs_per_job(draw.program));
            if let [first, second] = draw.items[..] {
                assert_eq!(second, (first + 1) % 50);
            }
            assert!(draw.items.iter().all(|&i| i < 50));
        }
        // The same seed draws the same sequence.
        let (mut a, mut b) = (SplitMix::new(9), SplitMix::new(9));
        let one: Vec<Draw> = (0..20).map(|_| draw(&[0, 1, 2], &popularity, &mut a)).collect();
        let two: Vec<Draw> = (0..20).map(|_| draw(&[0, 1, 2], &popularity, &mut b)).collect();
        assert_eq!(one, two);
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

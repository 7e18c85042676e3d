//! The Filecoin retrieval harness (`shoal-loadtest filecoin`): jobs over datasets only storage
//! providers hold, bought by real `shoal worker` processes through the Lotus and provider
//! stand-ins ([`market`]), under a wallet limit too small for all of them, with the cheapest
//! provider serving wrong bytes and one worker SIGKILLed mid-run; then the same datasets
//! again, warm. It checks that every failure is `budget_exhausted`, that every output hashes
//! the dataset's true bytes, and that the ledger's books match what the providers were paid.
//!
//! - [`options`]: what to run.
//! - [`market`]: the chain, the payer's node, the providers and the datasets.
//! - [`report`]: what was found, and the verdict.

pub mod market;
pub mod options;
pub mod report;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::TryStreamExt;
pub use options::FilecoinOptions;
pub use report::FilecoinReport;
use serde_json::{json, Value};
use shoal_content::unixfs::{self, ImportOptions};
use shoal_content::{BlockReader, FsBlockStore};
use shoal_filecoin::retrieve::DEFAULT_RESERVATION_TTL;
use shoal_jobs::{now_ms, Budget, FailureReason, Fsync, Job, JobState, RedisConnection, SpendingLedger};
use shoal_testkit::{program_bytes, ProcessStack, ProcessStackConfig};

use crate::api::{Api, JobRead, Submitted};
use crate::cli::shoal_binary;
use crate::driver::Mode;
use crate::error::{LoadtestError, Result};
use market::{Market, Seller};
use report::{Books, Kill, PhaseFigures};

/// Shard streams: few, since there are few workers.
const SHARDS: u32 = 16;
/// Workers' heartbeat: short, so the restarted worker owns its shards again soon.
const HEARTBEAT_MS: u64 = 500;
/// How often unfinished jobs are read.
const POLL: Duration = Duration::from_millis(500);
/// Each input's `max_price`: room for the liar and the dearest honest provider.
pub const MAX_PRICE: &str = "0.01 FIL";
/// The name each dataset is mounted under; echo-hash writes `<name>.sha256`.
const INPUT_NAME: &str = "dataset";

/// What both phases share.
struct Run<'a> {
    options: &'a FilecoinOptions,
    market: Market,
    stack: ProcessStack,
    api: Api,
    /// The stack's shared block store, where workers put outputs.
    store: Arc<FsBlockStore>,
    program: cid::Cid,
    ledger: SpendingLedger,
    wallet: String,
    /// Makes idempotency keys unique to this run.
    nonce: u128,
}

impl Mode for FilecoinOptions {
    type Report = FilecoinReport;

    fn report_prefix(&self) -> Option<&Path> {
        self.report.as_deref()
    }

    async fn run(&self, command: String) -> Result<FilecoinReport> {
        if self.datasets == 0 || self.workers == 0 || self.concurrency == 0 || self.dataset_bytes == 0 {
            return Err(LoadtestError::Invalid(
                "--datasets, --dataset-bytes, --workers and --concurrency must not be 0".into(),
            ));
        }
        let started = Instant::now();
        let started_at_unix_s = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let temporary;
        let root = match &self.work_dir {
            Some(dir) => dir.clone(),
            None => {
                temporary = tempfile::tempdir().map_err(|e| LoadtestError::io("creating a temporary home", e))?;
                temporary.path().to_path_buf()
            }
        };
        eprintln!("market: {} datasets of {} bytes", self.datasets, self.dataset_bytes);
        let market = Market::open(self.datasets, self.dataset_bytes).await?;
        let run = Run::start(self, market, &root.join("stack")).await?;
        let cost = retrieval_cost(&run.market.sellers);
        let limit = self.affordable as u128 * cost;
        run.set_limit(limit).await?;
        let flags = run.market.worker_flags();
        for n in 0..self.workers {
            run.stack.start_worker_with(&format!("w{n}"), &flags)?;
        }

        eprintln!("cold: {} jobs, limit {} attoFIL", self.datasets, limit);
        let marks = run.market.marks();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(self.deadline_secs);
        let phase_started = Instant::now();
        let ids = run.submit_all("cold", &[], deadline).await?;
        let mut kill = run.kill_mid_run(&flags, deadline).await?;
        let jobs = run.wait_terminal(&ids, deadline).await;
        if let Some(kill) = kill.as_mut() {
            // Its jobs under way: started on it, then started again (by it, restarted).
            kill.jobs_restarted = jobs
                .iter()
                .flatten()
                .filter(|job| job.executions.len() > 1 && job.executions.iter().any(|e| e.worker == kill.worker))
                .count();
        }
        let cold = run.figures(&jobs, &run.market.accepted_since(&marks), phase_started.elapsed()).await;
        let cold_books = run.close_books(limit, &run.market.accepted_since(&marks)).await?;
        eprintln!("cold: {} succeeded, {} budget_exhausted", cold.succeeded, cold.budget_exhausted);

        // Money is no constraint now: whatever the warm run spends is what locality did not save.
        let warm_limit =
            cold_books.spent + 2 * self.datasets as u128 * run.market.sellers.iter().map(|s| s.price).sum::<u128>();
        run.set_limit(warm_limit).await?;
        eprintln!("warm: {} jobs, limit {} attoFIL", self.datasets, warm_limit);
        let marks = run.market.marks();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(self.deadline_secs);
        let phase_started = Instant::now();
        let ids = run.submit_all("warm", &["warm"], deadline).await?;
        let jobs = run.wait_terminal(&ids, deadline).await;
        let warm = run.figures(&jobs, &run.market.accepted_since(&marks), phase_started.elapsed()).await;
        let all_accepted = run.market.accepted_since(&vec![0; run.market.sellers.len()]);
        let final_books = run.close_books(warm_limit, &all_accepted).await?;
        eprintln!("warm: {} succeeded, spent {} attoFIL", warm.succeeded, warm.spent);
        run.stack.shutdown();

        Ok(FilecoinReport::new(
            self,
            command,
            started_at_unix_s,
            started.elapsed().as_secs_f64(),
            run.market.sellers.clone(),
            kill,
            cold,
            cold_books,
            warm,
            final_books,
        ))
    }
}

/// What one cold retrieval costs at most when every provider is asked cheapest first: the liar
/// (paid, then caught) and the cheapest honest provider. Less once the liar is shunned: that
/// worker's later retrievals pay the honest provider only.
pub fn retrieval_cost(sellers: &[Seller]) -> u128 {
    let liar: u128 = sellers.iter().filter(|s| s.lies).map(|s| s.price).sum();
    liar + sellers.iter().filter(|s| !s.lies).map(|s| s.price).min().unwrap_or(0)
}

impl<'a> Run<'a> {
    /// Starts the stack in `home` with echo-hash in its block store (the datasets stay with
    /// the providers only); no workers yet.
    async fn start(options: &'a FilecoinOptions, market: Market, home: &Path) -> Result<Run<'a>> {
        std::fs::create_dir_all(home).map_err(|e| LoadtestError::io(format!("creating {}", home.display()), e))?;
        let blocks = home.join("blocks");
        let store = Arc::new(
            FsBlockStore::open(&blocks)
                .map_err(|e| LoadtestError::content(format!("opening {}", blocks.display()), e))?,
        );
        let program = unixfs::import_reader(&program_bytes("echo-hash")[..], &ImportOptions::default(), store.as_ref())
            .await
            .map_err(|e| LoadtestError::content("adding echo-hash", e))?
            .root;
        let stack = ProcessStack::start(ProcessStackConfig {
            shoal: shoal_binary(options.shoal.as_deref())?,
            home: home.to_path_buf(),
            shards: SHARDS,
            worker_concurrency: options.concurrency,
            visibility_timeout_secs: None,
            fsync: Fsync::EverySec,
            input_cache_bytes: None,
            heartbeat_ms: Some(HEARTBEAT_MS),
        })
        .await?;
        let api = Api::new(stack.gateway_url(), stack.api_key())?;
        // The admin user: the operator's `shoal filecoin limit` and the sweep's rights.
        let conn = RedisConnection::open(&[stack.redis_url().to_string()])
            .await
            .map_err(|source| LoadtestError::Store { context: "opening the ledger".into(), source })?;
        let wallet = market.wallet.to_string();
        Ok(Run {
            options,
            market,
            stack,
            api,
            store,
            program,
            ledger: SpendingLedger::new(conn),
            wallet,
            nonce: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos()),
        })
    }

    async fn set_limit(&self, limit: u128) -> Result<()> {
        self.ledger.set_limit(&self.wallet, limit).await.map_err(|e| ledger_failed("setting the limit", e))
    }

    async fn budget(&self) -> Result<Budget> {
        self.ledger.status(&self.wallet).await.map_err(|e| ledger_failed("reading the books", e))
    }

    /// Submits one echo-hash job per dataset, bought from Filecoin, with `args` (which make
    /// the phases' jobs differ); their ids, in dataset order.
    async fn submit_all(&self, phase: &str, args: &[&str], deadline: tokio::time::Instant) -> Result<Vec<String>> {
        let mut ids = Vec::with_capacity(self.market.datasets.len());
        for (index, dataset) in self.market.datasets.iter().enumerate() {
            let spec: Value = json!({
                "program": self.program.to_string(),
                "args": args,
                "inputs": [{
                    "cid": dataset.cid.to_string(),
                    "name": INPUT_NAME,
                    "source": "filecoin",
                    "max_price": MAX_PRICE,
                }],
                "verification": {"mode": "none"},
            });
            let key = format!("filecoin-{phase}-{index}-{}", self.nonce);
            match self.api.submit(&spec, &key, deadline).await {
                Submitted::Refused { reason } => {
                    return Err(LoadtestError::Gateway {
                        context: format!("submitting {phase} job {index}"),
                        message: reason,
                    })
                }
                submitted => ids.push(submitted.id().expect("accepted submissions have an id").to_string()),
            }
        }
        Ok(ids)
    }

    /// Once the providers accepted `--kill-after` vouchers, SIGKILLs the last worker and
    /// starts it again a second later under the same id (it resumes its own pending entries).
    /// `None` if the deadline passed first.
    async fn kill_mid_run(&self, flags: &[String], deadline: tokio::time::Instant) -> Result<Option<Kill>> {
        let started = Instant::now();
        while self.market.paid_count() < self.options.kill_after {
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let worker = format!("w{}", self.options.workers - 1);
        let paid = self.market.paid_count();
        self.stack.kill_worker(&worker)?;
        let at_s = started.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs(1)).await;
        self.stack.start_worker_with(&worker, flags)?;
        eprintln!("killed {worker} after {paid} accepted vouchers; started it again");
        Ok(Some(Kill { worker, paid_vouchers_before: paid, at_s, jobs_restarted: 0 }))
    }

    /// Reads each job of `ids` until it is terminal or `deadline` passes; the last read of
    /// each (none for a job never read).
    async fn wait_terminal(&self, ids: &[String], deadline: tokio::time::Instant) -> Vec<Option<Job>> {
        let mut last: BTreeMap<&str, Job> = BTreeMap::new();
        loop {
            for id in ids {
                if last.get(id.as_str()).is_some_and(|job| job.state.is_terminal()) {
                    continue;
                }
                if let JobRead::Found(job) = self.api.job(id).await {
                    last.insert(id, *job);
                }
            }
            let done = ids.iter().all(|id| last.get(id.as_str()).is_some_and(|job| job.state.is_terminal()));
            if done || tokio::time::Instant::now() >= deadline {
                return ids.iter().map(|id| last.remove(id.as_str())).collect();
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// A phase's figures: its jobs (in dataset order) and the vouchers accepted meanwhile;
    /// every succeeded output's digest checked against its dataset's bytes.
    async fn figures(&self, jobs: &[Option<Job>], accepted: &[market::Paid], wall: Duration) -> PhaseFigures {
        let mut figures = PhaseFigures::default();
        for (dataset, job) in self.market.datasets.iter().zip(jobs) {
            let Some(job) = job.as_ref().filter(|job| job.state.is_terminal()) else {
                figures.unfinished += 1;
                continue;
            };
            if job.executions.len() > 1 {
                figures.retried += 1;
            }
            match (job.state, &job.failure, &job.result) {
                (JobState::Succeeded, _, Some(result)) => {
                    figures.succeeded += 1;
                    let expected = format!("{}  {INPUT_NAME}\n", dataset.sha256);
                    figures.used.insert(dataset.cid.to_string());
                    match self.read_digest(result.output.cid()).await {
                        Ok(line) if line == expected => figures.verified_outputs += 1,
                        Ok(line) => figures.problem(format!("{}: output says {line:?}, not {expected:?}", job.id)),
                        Err(e) => figures.problem(format!("{}: reading its output: {e}", job.id)),
                    }
                }
                (JobState::Failed, Some(failure), _) if failure.reason == FailureReason::BudgetExhausted => {
                    figures.budget_exhausted += 1
                }
                (state, failure, _) => {
                    let what = failure.as_ref().map_or(format!("{state:?}"), |f| f.reason.as_str().to_string());
                    *figures.other_endings.entry(what).or_insert(0) += 1;
                    let message = failure.as_ref().map_or(String::new(), |f| f.message.clone());
                    figures.problem(format!("{}: {state:?} {message}", job.id));
                }
            }
        }
        figures.count_payments(accepted, &self.market.sellers);
        figures.wall_s = wall.as_secs_f64();
        figures
    }

    /// echo-hash's `dataset.sha256` line in output `root`, from the stack's store.
    async fn read_digest(&self, root: &cid::Cid) -> Result<String> {
        let path = format!("{INPUT_NAME}.sha256");
        let failed = |e| LoadtestError::content(format!("reading {root}/{path}"), e);
        let cid = unixfs::resolve_path(self.store.as_ref(), root, &path).await.map_err(failed)?;
        let reader: Arc<dyn BlockReader> = self.store.clone();
        let bytes: Vec<_> = unixfs::cat(reader, cid).try_collect().await.map_err(failed)?;
        Ok(String::from_utf8_lossy(&bytes.concat()).into_owned())
    }

    /// The books now, then after closing every reservation a dead worker left (as the
    /// workers' sweep would once their TTL passed), against what the providers accepted.
    async fn close_books(&self, limit: u128, accepted: &[market::Paid]) -> Result<Books> {
        let before = self.budget().await?;
        let past_ttl = now_ms() + DEFAULT_RESERVATION_TTL.as_millis() as u64 + 60_000;
        let expired =
            self.ledger.expire(past_ttl).await.map_err(|e| ledger_failed("closing expired reservations", e))?;
        let after = self.budget().await?;
        Ok(Books::new(limit, &before, expired, &after, accepted.iter().map(|p| p.paid).sum()))
    }
}

fn ledger_failed(context: &str, e: shoal_jobs::SpendingError) -> LoadtestError {
    LoadtestError::Setup(format!("{context}: {e}"))
}

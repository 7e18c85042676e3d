//! What a Filecoin retrieval run found, and its verdict.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use fvm_shared::econ::TokenAmount;
use serde::{Serialize, Serializer};
use shoal_filecoin::amount::format_fil;
use shoal_filecoin::retrieve::DEFAULT_RESERVATION_TTL;
use shoal_jobs::{Budget, Expired};

use super::market::{Paid, Seller};
use super::{retrieval_cost, FilecoinOptions, MAX_PRICE};
use crate::report::{examples_section, figure_table, RunReport};

/// Writes an attoFIL amount as a decimal string: JSON readers lose integers past 2^53.
pub fn atto<S: Serializer>(amount: &u128, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&amount.to_string())
}

/// An attoFIL amount in FIL, for people.
fn fil(amount: u128) -> String {
    format_fil(&TokenAmount::from_atto(amount))
}

/// The worker SIGKILLed mid-run.
#[derive(Debug, Clone, Serialize)]
pub struct Kill {
    /// Its id; it was started again under it a second later.
    pub worker: String,
    /// Vouchers the providers had accepted by then.
    pub paid_vouchers_before: usize,
    /// Seconds after the phase's submissions.
    pub at_s: f64,
    /// Its jobs that were under way: started on it and started again.
    pub jobs_restarted: usize,
}

/// What one seller was paid in a phase.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct SellerPaid {
    /// Vouchers it accepted.
    pub vouchers: usize,
    /// Their sum, attoFIL.
    #[serde(serialize_with = "atto")]
    pub paid: u128,
}

/// One phase's jobs and payments.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PhaseFigures {
    /// Jobs succeeded.
    pub succeeded: usize,
    /// Jobs failed `budget_exhausted`.
    pub budget_exhausted: usize,
    /// Jobs that ended any other way, by failure reason or state (should be none).
    pub other_endings: BTreeMap<String, usize>,
    /// Jobs not terminal by the deadline.
    pub unfinished: usize,
    /// Jobs started more than once (the killed worker's, resumed).
    pub retried: usize,
    /// Succeeded outputs whose digest matched the dataset's true bytes.
    pub verified_outputs: usize,
    /// What each seller was paid.
    pub paid: BTreeMap<String, SellerPaid>,
    /// Sum of every voucher accepted, attoFIL.
    #[serde(serialize_with = "atto")]
    pub spent: u128,
    /// Datasets an honest provider was paid for.
    pub datasets_bought: usize,
    /// Datasets an honest provider was paid for more than once.
    pub datasets_bought_twice: usize,
    /// Seconds from the first submission until every job was terminal.
    pub wall_s: f64,
    /// What went wrong, job by job.
    pub problems: Vec<String>,
    /// Datasets an honest provider was paid for whose job did not succeed: bought by a worker
    /// killed before it had them whole, say.
    pub bought_unused: usize,
    /// Roots of the datasets an honest provider was paid for.
    #[serde(skip)]
    pub bought: BTreeSet<String>,
    /// Roots of the datasets whose job succeeded: the workers' store holds them whole.
    #[serde(skip)]
    pub used: BTreeSet<String>,
}

impl PhaseFigures {
    /// Notes a problem.
    pub fn problem(&mut self, problem: String) {
        self.problems.push(problem);
    }

    /// Counts the vouchers accepted during the phase.
    pub fn count_payments(&mut self, accepted: &[Paid], sellers: &[Seller]) {
        let honest: BTreeSet<&str> = sellers.iter().filter(|s| !s.lies).map(|s| s.name.as_str()).collect();
        let mut honest_vouchers: BTreeMap<String, usize> = BTreeMap::new();
        for paid in accepted {
            let entry = self.paid.entry(paid.seller.clone()).or_default();
            entry.vouchers += 1;
            entry.paid += paid.paid;
            self.spent += paid.paid;
            if honest.contains(paid.seller.as_str()) {
                *honest_vouchers.entry(paid.root.to_string()).or_insert(0) += 1;
            }
        }
        self.datasets_bought = honest_vouchers.len();
        self.datasets_bought_twice = honest_vouchers.values().filter(|&&n| n > 1).count();
        self.bought = honest_vouchers.into_keys().collect();
        self.bought_unused = self.bought.difference(&self.used).count();
    }

    /// Jobs that ended at all.
    fn ended(&self) -> usize {
        self.succeeded + self.budget_exhausted + self.other_endings.values().sum::<usize>()
    }
}

/// The wallet's books in the ledger at the end of a phase, against what the providers accepted.
#[derive(Debug, Clone, Serialize)]
pub struct Books {
    /// The wallet's limit, attoFIL.
    #[serde(serialize_with = "atto")]
    pub limit: u128,
    /// `spent` when every job had ended, attoFIL.
    #[serde(serialize_with = "atto")]
    pub spent_before_expiry: u128,
    /// `reserved` then: reservations the killed worker left open, attoFIL.
    #[serde(serialize_with = "atto")]
    pub reserved_before_expiry: u128,
    /// Reservations [`shoal_jobs::SpendingLedger::expire`] released (no voucher recorded).
    pub expired_released: u64,
    /// Reservations it settled for their recorded voucher.
    pub expired_settled: u64,
    /// `spent` after, attoFIL.
    #[serde(serialize_with = "atto")]
    pub spent: u128,
    /// `reserved` after, attoFIL (must be 0).
    #[serde(serialize_with = "atto")]
    pub reserved: u128,
    /// Every voucher the providers accepted, summed, attoFIL.
    #[serde(serialize_with = "atto")]
    pub accepted: u128,
    /// `spent` − `accepted`: vouchers recorded by a killed worker and never sent (the
    /// conservative side; negative would be money paid off the books).
    pub recorded_not_accepted: String,
    /// What refused reservations asked for, summed, attoFIL.
    #[serde(serialize_with = "atto")]
    pub refused: u128,
    /// Reservations refused for want of budget.
    pub refusals: u64,
}

impl Books {
    /// The books from the status before and after the expiry, and the vouchers accepted.
    pub fn new(limit: u128, before: &Budget, expired: Expired, after: &Budget, accepted: u128) -> Books {
        let difference = if after.spent >= accepted {
            (after.spent - accepted).to_string()
        } else {
            format!("-{}", accepted - after.spent)
        };
        Books {
            limit,
            spent_before_expiry: before.spent,
            reserved_before_expiry: before.reserved,
            expired_released: expired.released,
            expired_settled: expired.settled,
            spent: after.spent,
            reserved: after.reserved,
            accepted,
            recorded_not_accepted: difference,
            refused: after.refused,
            refusals: after.refusals,
        }
    }

    /// Why the books do not balance, if they do not.
    fn problems(&self, phase: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if self.spent_before_expiry + self.reserved_before_expiry > self.limit || self.spent > self.limit {
            problems.push(format!(
                "{phase}: spent {} (reserved {}) past the limit {}",
                self.spent, self.reserved_before_expiry, self.limit
            ));
        }
        if self.reserved != 0 {
            problems.push(format!("{phase}: {} attoFIL still reserved after the expiry", self.reserved));
        }
        if self.spent < self.accepted {
            problems.push(format!(
                "{phase}: providers accepted {} attoFIL, the ledger spent only {}",
                self.accepted, self.spent
            ));
        }
        problems
    }
}

/// The run's report.
#[derive(Debug, Clone, Serialize)]
pub struct FilecoinReport {
    /// The command line.
    pub command: String,
    /// When it started (Unix seconds).
    pub started_at_unix_s: u64,
    /// How long it took, seconds.
    pub wall_s: f64,
    /// Datasets, and jobs per phase.
    pub datasets: usize,
    /// Bytes of each dataset.
    pub dataset_bytes: usize,
    /// Worker processes.
    pub workers: usize,
    /// Jobs each runs at once.
    pub concurrency: usize,
    /// The sellers.
    pub sellers: Vec<Seller>,
    /// Each input's `max_price`.
    pub max_price: String,
    /// One cold retrieval's cost at most: the liar's price and the cheapest honest one's, attoFIL.
    #[serde(serialize_with = "atto")]
    pub retrieval_cost: u128,
    /// Cold retrievals the cold limit pays for.
    pub affordable: usize,
    /// How long a reservation lives before the sweep may close it, seconds.
    pub reservation_ttl_s: u64,
    /// The worker killed mid-run (none if every job ended first).
    pub kill: Option<Kill>,
    /// The cold phase: nothing held by any worker, the limit binding.
    pub cold: PhaseFigures,
    /// The books after it.
    pub cold_books: Books,
    /// The warm phase: the same datasets as new jobs, the limit raised.
    pub warm: PhaseFigures,
    /// The books after both phases.
    pub final_books: Books,
    /// Datasets the warm phase bought that a cold job had used (should be none: the workers
    /// hold them).
    pub warm_rebought_held: usize,
    /// What the warm phase spent against the cold one.
    pub warm_to_cold_spent: f64,
    /// Why the run failed, if it did.
    pub failures: Vec<String>,
}

impl FilecoinReport {
    /// The report of a run, judged.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        options: &FilecoinOptions,
        command: String,
        started_at_unix_s: u64,
        wall_s: f64,
        sellers: Vec<Seller>,
        kill: Option<Kill>,
        cold: PhaseFigures,
        cold_books: Books,
        warm: PhaseFigures,
        final_books: Books,
    ) -> FilecoinReport {
        let warm_rebought_held = warm.bought.intersection(&cold.used).count();
        let mut failures = Vec::new();
        for (name, phase) in [("cold", &cold), ("warm", &warm)] {
            if phase.unfinished > 0 {
                failures.push(format!("{name}: {} jobs unfinished", phase.unfinished));
            }
            if !phase.other_endings.is_empty() {
                failures.push(format!(
                    "{name}: jobs ended otherwise than succeeded or budget_exhausted: {:?}",
                    phase.other_endings
                ));
            }
            if phase.verified_outputs != phase.succeeded {
                failures.push(format!("{name}: {} of {} outputs verified", phase.verified_outputs, phase.succeeded));
            }
        }
        if cold.budget_exhausted == 0 {
            failures.push("cold: the limit refused nothing".into());
        }
        if warm.succeeded != options.datasets {
            failures
                .push(format!("warm: {} of {} succeeded with money no constraint", warm.succeeded, options.datasets));
        }
        if warm_rebought_held > 0 {
            failures.push(format!("warm: {warm_rebought_held} datasets bought again that the workers held"));
        }
        if kill.is_none() {
            failures.push("no worker was killed: every job ended first".into());
        }
        failures.extend(cold_books.problems("cold"));
        failures.extend(final_books.problems("final"));
        FilecoinReport {
            command,
            started_at_unix_s,
            wall_s,
            datasets: options.datasets,
            dataset_bytes: options.dataset_bytes,
            workers: options.workers,
            concurrency: options.concurrency,
            retrieval_cost: retrieval_cost(&sellers),
            sellers,
            max_price: MAX_PRICE.to_string(),
            affordable: options.affordable,
            reservation_ttl_s: DEFAULT_RESERVATION_TTL.as_secs(),
            kill,
            warm_to_cold_spent: if cold.spent == 0 { 0.0 } else { warm.spent as f64 / cold.spent as f64 },
            cold,
            cold_books,
            warm,
            final_books,
            warm_rebought_held,
            failures,
        }
    }

    fn phase_rows(&self) -> Vec<(String, String, String)> {
        let (c, w) = (&self.cold, &self.warm);
        let mut rows = vec![
            ("jobs ended".to_string(), c.ended().to_string(), w.ended().to_string()),
            ("succeeded".into(), c.succeeded.to_string(), w.succeeded.to_string()),
            ("failed budget_exhausted".into(), c.budget_exhausted.to_string(), w.budget_exhausted.to_string()),
            (
                "ended otherwise".into(),
                c.other_endings.values().sum::<usize>().to_string(),
                w.other_endings.values().sum::<usize>().to_string(),
            ),
            ("unfinished".into(), c.unfinished.to_string(), w.unfinished.to_string()),
            (
                "outputs verified against the dataset bytes".into(),
                format!("{} of {}", c.verified_outputs, c.succeeded),
                format!("{} of {}", w.verified_outputs, w.succeeded),
            ),
            ("jobs started more than once".into(), c.retried.to_string(), w.retried.to_string()),
            (
                "datasets bought from an honest provider".into(),
                c.datasets_bought.to_string(),
                w.datasets_bought.to_string(),
            ),
            ("datasets bought twice".into(), c.datasets_bought_twice.to_string(), w.datasets_bought_twice.to_string()),
            (
                "datasets bought but not used (job did not succeed)".into(),
                c.bought_unused.to_string(),
                w.bought_unused.to_string(),
            ),
        ];
        for seller in &self.sellers {
            let cell = |phase: &PhaseFigures| {
                let paid = phase.paid.get(&seller.name).copied().unwrap_or_default();
                format!("{} vouchers, {}", paid.vouchers, fil(paid.paid))
            };
            rows.push((format!("paid to {}", seller.name), cell(c), cell(w)));
        }
        rows.push(("spent (vouchers accepted)".into(), fil(c.spent), fil(w.spent)));
        rows.push(("wall time".into(), format!("{:.1} s", c.wall_s), format!("{:.1} s", w.wall_s)));
        rows
    }
}

fn books_rows(books: &Books) -> Vec<(&'static str, String)> {
    vec![
        ("limit", fil(books.limit)),
        ("spent when every job had ended", fil(books.spent_before_expiry)),
        ("reserved then (left open by the killed worker)", fil(books.reserved_before_expiry)),
        ("expired reservations released / settled", format!("{} / {}", books.expired_released, books.expired_settled)),
        ("spent after the expiry", fil(books.spent)),
        ("reserved after the expiry", fil(books.reserved)),
        ("vouchers the providers accepted", fil(books.accepted)),
        ("recorded but never accepted (attoFIL)", books.recorded_not_accepted.clone()),
        ("refused reservations", format!("{} asking {}", books.refusals, fil(books.refused))),
    ]
}

impl RunReport for FilecoinReport {
    fn summary(&self) -> String {
        format!(
            "filecoin: cold {} succeeded, {} budget_exhausted, spent {} of limit {}; warm {} succeeded, spent {} ({:.2} of cold); books {}; {}\n",
            self.cold.succeeded,
            self.cold.budget_exhausted,
            fil(self.cold_books.spent),
            fil(self.cold_books.limit),
            self.warm.succeeded,
            fil(self.warm.spent),
            self.warm_to_cold_spent,
            if self.cold_books.problems("").is_empty() && self.final_books.problems("").is_empty() { "balance" } else { "DO NOT balance" },
            if self.passed() { "PASSED".to_string() } else { format!("FAILED: {}", self.failures.join("; ")) },
        )
    }

    fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    fn documents(&self, _name: &str) -> Vec<(&'static str, String)> {
        let mut md = String::new();
        let _ = writeln!(md, "# Paid Filecoin retrievals under a spending limit\n");
        let _ = writeln!(
            md,
            "**{}.** {} jobs over datasets only storage providers hold, bought by {} `shoal worker` \
             processes under a wallet limit worth {} cold retrievals, the cheapest provider lying \
             and worker {} SIGKILLed mid-run; then the same datasets again as new jobs. \
             Run in {:.0} s.\n",
            if self.passed() { "Passed" } else { "Failed" },
            self.datasets,
            self.workers,
            self.affordable,
            self.kill.as_ref().map_or("none", |k| k.worker.as_str()),
            self.wall_s
        );
        let _ = writeln!(md, "## Setup\n");
        let _ = writeln!(
            md,
            "- {} datasets of {} KiB each (generated, distinct), imported as UnixFS into the providers' \
             in-memory block store only: no worker, gateway or free source has them.",
            self.datasets,
            self.dataset_bytes / 1024
        );
        let _ =
            writeln!(md, "- Providers, each its own IPNI indexer (one `--ipni` flag per provider on every worker):");
        for seller in &self.sellers {
            let _ = writeln!(
                md,
                "  - `{}`: {} per retrieval{}",
                seller.name,
                fil(seller.price),
                if seller.lies { ", serves wrong bytes once paid (its CAR's last byte flipped)" } else { "" }
            );
        }
        let _ = writeln!(
            md,
            "- {} workers × {} jobs at once, one shared block store (`home/blocks`), flagged \
             `--lotus-url <payer's Lotus stand-in> --lotus-token … --wallet <payer> --ipni <provider>…`.",
            self.workers, self.concurrency
        );
        let _ = writeln!(
            md,
            "- Each job: `echo-hash` over one dataset, input `{{\"source\": \"filecoin\", \"max_price\": \"{}\"}}`, \
             verification `none`. Warm jobs add the argument `warm`, so idempotency does not fold them into the cold ones.",
            self.max_price
        );
        let _ = writeln!(
            md,
            "- A cold retrieval pays the liar first (cheapest), rejects its bytes, then buys from the \
             cheapest honest provider: {} in all at most, since each worker then shuns the liar (its \
             jobs already asking at that moment pay it too). The cold limit is {} × that = {}; the warm \
             limit is raised far above what the warm run could spend.",
            fil(self.retrieval_cost),
            self.affordable,
            fil(self.cold_books.limit)
        );
        if let Some(kill) = &self.kill {
            let _ = writeln!(
                md,
                "- Worker `{}` was SIGKILLed {:.1} s into the cold run, after the providers had accepted \
                 {} vouchers, and started again a second later under the same id; {} of its jobs \
                 were under way and started again.",
                kill.worker, kill.at_s, kill.paid_vouchers_before, kill.jobs_restarted
            );
        }
        let _ = writeln!(md, "\n## Figures\n");
        let _ = writeln!(md, "| figure | cold | warm |\n|---|---|---|");
        for (name, cold, warm) in self.phase_rows() {
            let _ = writeln!(md, "| {name} | {cold} | {warm} |");
        }
        let _ = writeln!(
            md,
            "\nThe warm run spent **{:.2}×** what the cold run did: it bought only datasets no cold job \
             had used ({} bought again that a cold job had used; {} paid for in the cold run but \
             never used, as a worker was killed while importing, were bought again). The workers \
             hold what they bought, so locality saves the money.",
            self.warm_to_cold_spent, self.warm_rebought_held, self.cold.bought_unused
        );
        let _ = writeln!(md, "\n## Books\n");
        let _ = writeln!(
            md,
            "When every job had ended, reservations still open were closed with \
             `SpendingLedger::expire` at a time past their TTL ({} s), as the workers' sweep would \
             once it passed: unpaid ones released, ones with a recorded voucher settled for it. \
             Then the ledger's `spent` is compared with the vouchers the providers accepted.\n",
            self.reservation_ttl_s
        );
        let _ = writeln!(md, "After the cold run:\n");
        figure_table(&mut md, &books_rows(&self.cold_books));
        let _ = writeln!(md, "\nAfter both runs (limit raised):\n");
        figure_table(&mut md, &books_rows(&self.final_books));
        let _ = writeln!(
            md,
            "\nShare of the cold limit spent: {:.3}.",
            if self.cold_books.limit == 0 { 0.0 } else { self.cold_books.spent as f64 / self.cold_books.limit as f64 }
        );
        let _ = writeln!(md, "\n## What is a stand-in\n");
        let _ = writeln!(
            md,
            "Nothing here touches a Filecoin network. The **Lotus stand-in** (`shoal_filecoin::standin`) \
             answers Lotus's JSON-RPC v1 methods Shoal uses over a simulated in-memory chain \
             (balances, payment channels; no consensus, no gas), signing vouchers with an HMAC \
             instead of secp256k1/BLS. Each **provider stand-in** is an IPNI find endpoint, a price \
             quote and a trustless-gateway CAR endpoint that serves only for a voucher its own \
             Lotus stand-in checked and added (`PaychVoucherCheckValid`, `PaychVoucherAdd`). The \
             lying provider is the stand-in's test-only mode (`test-faults`), enabled for this \
             harness only. The workers, gateway and Redis are the real `shoal` processes; the \
             retrieval, voucher, ledger and block-verification code is the production code."
        );
        let _ = writeln!(md, "\n## Reproduce\n");
        let _ = writeln!(md, "```\nmake filecoin\n# or\nscripts/filecoin.sh\n# which runs\n{}\n```", self.command);
        if !self.failures.is_empty() {
            let _ = writeln!(md, "\n## Failures\n");
            for failure in &self.failures {
                let _ = writeln!(md, "- {failure}");
            }
        }
        let mut problems: Vec<String> = self.cold.problems.iter().map(|p| format!("cold: {p}")).collect();
        problems.extend(self.warm.problems.iter().map(|p| format!("warm: {p}")));
        problems.truncate(20);
        examples_section(&mut md, &problems);
        vec![("md", md)]
    }
}

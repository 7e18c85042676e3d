//! `shoal receipt verify`: checks a worker's signed receipt offline.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;
use shoal_content::parse_cid;
use shoal_jobs::{ExecutionOutcome, PublicKey, SignedReceipt};

use crate::content::{read_all, reader, SourceArgs};
use crate::home::Home;

/// `shoal receipt`.
#[derive(Subcommand)]
pub(crate) enum ReceiptCommand {
    /// Check a receipt's signature (and, with `--key`, who signed it) and print what it states.
    Verify(VerifyArgs),
}

/// `shoal receipt verify`.
#[derive(Args)]
pub(crate) struct VerifyArgs {
    /// The receipt: its CID (fetched and verified like any content), or a file holding it.
    receipt: String,
    /// The key the receipt must be signed with (`ed25519:<hex>`): the one registered for the
    /// worker it names (Redis `shoal:{w}:worker-keys`; `shoal status` shows who signed each).
    #[arg(long)]
    key: Option<String>,
    #[command(flatten)]
    sources: SourceArgs,
}

/// `shoal receipt verify`: exit 0 when the receipt is genuine (and by `--key`), 1 when not
/// (with `--json`, either way `{"cid", "valid", "invalid", "receipt"}`).
pub(crate) async fn run(home: &Home, command: ReceiptCommand, json: bool) -> anyhow::Result<ExitCode> {
    let ReceiptCommand::Verify(args) = command;
    let bytes = if Path::new(&args.receipt).is_file() {
        std::fs::read(&args.receipt).with_context(|| format!("reading {}", args.receipt))?
    } else {
        let cid = parse_cid(&args.receipt).with_context(|| format!("{} is neither a file nor a CID", args.receipt))?;
        read_all(reader(home, &args.sources)?, cid).await?
    };
    let signed = SignedReceipt::from_bytes(&bytes)?;
    let receipt = &signed.receipt;
    let expected: Option<PublicKey> = args.key.as_deref().map(str::parse).transpose()?;
    let invalid = match (signed.verify_signature(), expected) {
        (Err(e), _) => Some(e.to_string()),
        (Ok(()), Some(expected)) if expected != receipt.key => {
            Some(format!("signed by {}, not by {expected}", receipt.key))
        }
        (Ok(()), _) => None,
    };
    if json {
        crate::print_json(&json!({
            "cid": signed.cid().to_string(),
            "valid": invalid.is_none(),
            "invalid": invalid,
            "receipt": receipt,
        }))?;
    } else {
        println!("receipt    {}", signed.cid());
        println!("job        {} (invocation {})", receipt.job, receipt.invocation);
        println!("execution  {} by {} ({})", receipt.execution, receipt.worker, receipt.key);
        match &receipt.outcome {
            ExecutionOutcome::Completed(result) => println!(
                "outcome    exit {}, output {}, stdout {}, stderr {}, fuel {}",
                result.exit_code, result.output, result.stdout, result.stderr, result.fuel_consumed
            ),
            ExecutionOutcome::Failed(failure) => println!("outcome    failed: {}: {}", failure.reason, failure.message),
        }
        match &invalid {
            Some(why) => println!("INVALID: {why}"),
            None => println!("valid: signed by {}", receipt.key),
        }
    }
    Ok(if invalid.is_none() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

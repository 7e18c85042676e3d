//! `shoal`: one binary for every role and every user command.
//!
//! Services: `dev` (the whole embedded stack), `gateway`, `worker`, `content` (the trustless
//! gateway over a block store), `verifier`. User commands: `add`, `get`, `cat`, `car`
//! (content), `run`, `status`, `logs`, `cancel`, `jobs list`, `pipeline run|status|cancel`,
//! `workers` (over the gateway's HTTP
//! API, named by a flag, the environment or the config file: `config`); `keys`, `tenants`,
//! `quarantine`, `filecoin limit|spent` (operators, over Redis); `filecoin balance` (Lotus).
//! With `--json` a user command prints one JSON document.

mod api;
mod config;
mod content;
mod dev;
mod filecoin;
mod home;
mod jobs;
mod keys;
mod pipelines;
mod probe;
mod quarantine;
mod receipt;
mod redis_users;
mod services;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Run WebAssembly programs where the data is.
#[derive(Parser)]
#[command(name = "shoal", version, about)]
struct Cli {
    /// Where local state lives: the block store, the dev stack's Redis data and its endpoints.
    #[arg(long, global = true, env = "SHOAL_HOME", default_value = ".shoal")]
    home: PathBuf,
    /// Print the result as one JSON document on standard output (errors stay on standard error
    /// with a non-zero exit). Every user command takes it but `cat`, which prints the file's
    /// bytes; services, `completions` and `redis-acl` refuse it.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the embedded stack: a private redis-server, the gateway, workers and the content server.
    Dev(dev::DevArgs),
    /// Serve the HTTP API.
    Gateway(services::GatewayArgs),
    /// Pull jobs from the shard streams and run them.
    Worker(services::WorkerArgs),
    /// Serve the local block store as an IPFS trustless gateway.
    Content(services::ContentArgs),
    /// Re-run a sample of succeeded jobs and record whether their results agree.
    Verifier(services::VerifierArgs),
    /// Import a file or directory into the local block store and print its CID.
    Add(content::AddArgs),
    /// Write the file or directory named by a CID to disk.
    Get(content::GetArgs),
    /// Print the bytes of a file named by a CID (or CID/path).
    Cat(content::CatArgs),
    /// Move DAGs in and out as CAR files.
    #[command(subcommand)]
    Car(content::CarCommand),
    /// Submit a job and, by default, wait for its result.
    Run(jobs::RunArgs),
    /// Show a job's state and executions.
    Status(jobs::JobArgs),
    /// Print a job's stdout and stderr.
    Logs(jobs::JobArgs),
    /// Cancel a job (and a fanned-out job's tasks).
    Cancel(jobs::JobArgs),
    /// List jobs.
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
    /// Run a pipeline of stages from a spec file, follow it, cancel it.
    #[command(subcommand)]
    Pipeline(pipelines::PipelineCommand),
    /// Set or show the config file's gateway and API key.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Print a shell completion script (`shoal completions bash > /etc/bash_completion.d/shoal`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// List the live workers (operators).
    Workers(jobs::WorkersArgs),
    /// Make, list and revoke API keys (operators, with Redis access).
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Show or set a tenant's quotas (operators, with Redis access).
    #[command(subcommand)]
    Tenants(keys::TenantsCommand),
    /// Check workers' signed receipts.
    #[command(subcommand)]
    Receipt(receipt::ReceiptCommand),
    /// Exit 0 if a URL answers 2xx: a health check for containers (`shoal probe URL`).
    Probe(probe::ProbeArgs),
    /// Write the Redis ACL file of Shoal's users (one per role), for a Redis run elsewhere.
    RedisAcl(redis_users::RedisAclArgs),
    /// List quarantined workers, or readmit one (operators).
    #[command(subcommand)]
    Quarantine(quarantine::QuarantineCommand),
    /// Filecoin retrieval: wallets' spending `limit`s and what they `spent` (operators), a
    /// wallet's `balance` from Lotus; `devnet` starts the Lotus and storage-provider stand-ins.
    #[command(subcommand)]
    Filecoin(filecoin::FilecoinCommand),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

impl Command {
    /// Why the command prints no JSON, if it does not.
    fn without_json(&self) -> Option<&'static str> {
        match self {
            Command::Dev(_)
            | Command::Gateway(_)
            | Command::Worker(_)
            | Command::Content(_)
            | Command::Verifier(_)
            | Command::Filecoin(filecoin::FilecoinCommand::Devnet(_)) => {
                Some("services log to standard error (SHOAL_LOG_FORMAT=json makes those lines JSON)")
            }
            Command::Cat(_) => Some("`shoal cat` prints the file's bytes"),
            Command::Completions { .. } => Some("`shoal completions` prints a shell script"),
            Command::RedisAcl(_) => Some("`shoal redis-acl` writes Redis's ACL file"),
            _ => None,
        }
    }
}

/// Prints `value` as the command's one JSON document on standard output.
pub(crate) fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

async fn dispatch(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    let home = home::Home::new(cli.home);
    let json = cli.json;
    if json {
        if let Some(why) = cli.command.without_json() {
            anyhow::bail!("--json does not apply here: {why}");
        }
    }
    match cli.command {
        Command::Dev(args) => dev::run(&home, args).await,
        Command::Gateway(args) => services::gateway(args).await,
        Command::Worker(args) => services::worker(&home, args).await,
        Command::Content(args) => services::content(&home, args).await,
        Command::Verifier(args) => services::verifier(&home, args).await,
        Command::Add(args) => content::add(&home, args, json).await,
        Command::Get(args) => content::get(&home, args, json).await,
        Command::Cat(args) => content::cat(&home, args).await,
        Command::Car(command) => content::car(&home, command, json).await,
        Command::Run(args) => jobs::run(&home, args, json).await,
        Command::Receipt(command) => receipt::run(&home, command, json).await,
        Command::Quarantine(command) => quarantine::run(command, json).await,
        Command::Filecoin(command) => filecoin::run(&home, command, json).await,
        Command::RedisAcl(args) => redis_users::run(args),
        Command::Probe(args) => probe::run(args, json).await,
        Command::Status(args) => jobs::status(&home, args, json).await,
        Command::Logs(args) => jobs::logs(&home, args, json).await,
        Command::Cancel(args) => jobs::cancel(&home, args, json).await,
        Command::Jobs(command) => jobs::jobs(&home, command, json).await,
        Command::Pipeline(command) => pipelines::run(&home, command, json).await,
        Command::Config(command) => config::run(&home, command, json).await,
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "shoal",
                &mut std::io::stdout(),
            );
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Workers(args) => jobs::workers(&home, args, json).await,
        Command::Keys(command) => keys::keys(command, json).await,
        Command::Tenants(command) => keys::tenants(command, json).await,
    }
}

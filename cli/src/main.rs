//! `shoal`: one binary for every role and every user command.
//!
//! Services: `dev` (the whole embedded stack), `gateway`, `worker`, `content` (the trustless
//! gateway over a block store), `verifier`. User commands: `add`, `get`, `cat`, `car`
//! (content), `run`, `status`, `logs`, `cancel`, `workers` (over the gateway's HTTP API);
//! `keys`, `tenants`, `quarantine` (operators, over Redis).

mod api;
mod content;
mod dev;
mod home;
mod jobs;
mod keys;
mod quarantine;
mod receipt;
mod redis_users;
mod services;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Run WebAssembly programs where the data is.
#[derive(Parser)]
#[command(name = "shoal", version, about)]
struct Cli {
    /// Where local state lives: the block store, the dev stack's Redis data and its endpoints.
    #[arg(long, global = true, env = "SHOAL_HOME", default_value = ".shoal")]
    home: PathBuf,
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
    /// Write the Redis ACL file of Shoal's users (one per role), for a Redis run elsewhere.
    RedisAcl(redis_users::RedisAclArgs),
    /// List quarantined workers, or readmit one (operators).
    #[command(subcommand)]
    Quarantine(quarantine::QuarantineCommand),
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

async fn dispatch(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    let home = home::Home::new(cli.home);
    match cli.command {
        Command::Dev(args) => dev::run(&home, args).await,
        Command::Gateway(args) => services::gateway(args).await,
        Command::Worker(args) => services::worker(&home, args).await,
        Command::Content(args) => services::content(&home, args).await,
        Command::Verifier(args) => services::verifier(&home, args).await,
        Command::Add(args) => content::add(&home, args).await,
        Command::Get(args) => content::get(&home, args).await,
        Command::Cat(args) => content::cat(&home, args).await,
        Command::Car(command) => content::car(&home, command).await,
        Command::Run(args) => jobs::run(&home, args).await,
        Command::Receipt(command) => receipt::run(&home, command).await,
        Command::Quarantine(command) => quarantine::run(command).await,
        Command::RedisAcl(args) => redis_users::run(args),
        Command::Status(args) => jobs::status(&home, args).await,
        Command::Logs(args) => jobs::logs(&home, args).await,
        Command::Cancel(args) => jobs::cancel(&home, args).await,
        Command::Jobs(command) => jobs::jobs(&home, command).await,
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut <Cli as clap::CommandFactory>::command(),
                "shoal",
                &mut std::io::stdout(),
            );
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Workers(args) => jobs::workers(&home, args).await,
        Command::Keys(command) => keys::keys(command).await,
        Command::Tenants(command) => keys::tenants(command).await,
    }
}

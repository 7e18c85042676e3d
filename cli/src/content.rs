//! Content commands: `add`, `get`, `cat`, `car export|import`, all over the local block store,
//! with trustless gateways as further verified sources for reading.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use futures::TryStreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use shoal_content::car::{self, DagScope, WalkOptions};
use shoal_content::source::{HttpGatewaySource, SourceChain};
use shoal_content::unixfs::{self, ImportOptions, Profile};
use shoal_content::{parse_cid, BlockReader, BlockSource, BlockStore, FsBlockStore};
use tokio::io::AsyncWriteExt;

use crate::home::Home;

/// `shoal add`.
#[derive(Args)]
pub(crate) struct AddArgs {
    /// The file or directory to import.
    path: PathBuf,
    /// The CID profile: kubo-v1 (`ipfs add --cid-version=1`), unixfs-v0-2015 (`ipfs add`), unixfs-v1-2025.
    #[arg(long, default_value = "kubo-v1")]
    profile: Profile,
    /// Import entries whose names start with a dot.
    #[arg(long)]
    hidden: bool,
    /// Print only the CID, no progress.
    #[arg(long, short)]
    quiet: bool,
}

/// Where `get` and `cat` read from besides the local store.
#[derive(Args)]
pub(crate) struct SourceArgs {
    /// Trustless gateways to fetch from, in order, after the local store (every block is verified).
    /// When absent, a running `shoal dev`'s content server is used.
    #[arg(long = "from", value_name = "URL")]
    from: Vec<String>,
}

/// `shoal get`.
#[derive(Args)]
pub(crate) struct GetArgs {
    /// The CID, optionally followed by a path inside it (`CID/dir/file`).
    target: String,
    /// Where to write it (default: the CID or the path's last name, in the current directory).
    #[arg(long, short)]
    output: Option<PathBuf>,
    #[command(flatten)]
    sources: SourceArgs,
}

/// `shoal cat` (no `--json`: it prints the file's bytes).
#[derive(Args)]
pub(crate) struct CatArgs {
    /// The CID of a file, optionally followed by a path inside a directory (`CID/dir/file`).
    target: String,
    #[command(flatten)]
    sources: SourceArgs,
}

/// `shoal car`.
#[derive(Subcommand)]
pub(crate) enum CarCommand {
    /// Write the DAG under a CID to a CAR v1 file.
    Export {
        /// The root CID.
        cid: String,
        /// The CAR file to write.
        #[arg(long, short)]
        output: PathBuf,
        #[command(flatten)]
        sources: SourceArgs,
    },
    /// Read a CAR v1 file into the local store, verifying every block and that the DAG is complete.
    Import {
        /// The CAR file.
        file: PathBuf,
    },
}

/// The local store.
fn local_store(home: &Home) -> anyhow::Result<Arc<dyn BlockStore>> {
    let store = FsBlockStore::open(home.blocks())
        .with_context(|| format!("opening the block store in {}", home.blocks().display()))?;
    Ok(Arc::new(store))
}

/// The local store in front of the given (or the dev stack's) trustless gateways.
pub(crate) fn reader(home: &Home, sources: &SourceArgs) -> anyhow::Result<Arc<SourceChain>> {
    let mut urls = sources.from.clone();
    if urls.is_empty() {
        urls.extend(home.endpoints().map(|e| e.content));
    }
    let mut chain: Vec<Arc<dyn BlockSource>> = Vec::new();
    for url in &urls {
        chain.push(Arc::new(HttpGatewaySource::new(url).with_context(|| format!("gateway {url}"))?));
    }
    Ok(Arc::new(SourceChain::new(chain).with_cache(local_store(home)?)))
}

/// The whole content of the file named by `cid`, every block verified.
pub(crate) async fn read_all(reader: Arc<SourceChain>, cid: cid::Cid) -> anyhow::Result<Vec<u8>> {
    let chunks: Vec<bytes::Bytes> =
        unixfs::cat(reader, cid).try_collect().await.with_context(|| format!("reading {cid}"))?;
    Ok(chunks.concat())
}

/// Splits `CID/a/b` into the root CID and the path inside it.
fn parse_target(target: &str) -> anyhow::Result<(cid::Cid, String)> {
    let target = target.strip_prefix("/ipfs/").unwrap_or(target);
    let (root, path) = target.split_once('/').unwrap_or((target, ""));
    Ok((parse_cid(root)?, path.to_string()))
}

async fn resolve(reader: &dyn BlockReader, target: &str) -> anyhow::Result<(cid::Cid, String)> {
    let (root, path) = parse_target(target)?;
    if path.is_empty() {
        return Ok((root, root.to_string()));
    }
    let cid = unixfs::resolve_path(reader, &root, &path).await.with_context(|| format!("resolving {target}"))?;
    let name = path.trim_end_matches('/').rsplit('/').next().unwrap_or(&path).to_string();
    Ok((cid, name))
}

/// Sum of the sizes of the files under `path`, for the progress bar's length.
fn total_bytes(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else { return 0 };
    if meta.is_dir() {
        std::fs::read_dir(path).map(|entries| entries.flatten().map(|e| total_bytes(&e.path())).sum()).unwrap_or(0)
    } else {
        meta.len()
    }
}

/// `shoal add PATH`: prints the root CID (with `--json`, with its size and blocks).
pub(crate) async fn add(home: &Home, args: AddArgs, json: bool) -> anyhow::Result<ExitCode> {
    let store = local_store(home)?;
    let bar = if args.quiet || json {
        ProgressBar::hidden()
    } else {
        let bar = ProgressBar::new(total_bytes(&args.path));
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} adding {bytes}/{total_bytes} {wide_bar} {binary_bytes_per_sec} eta {eta}",
            )
            .expect("a valid template"),
        );
        bar
    };
    let progress_bar = bar.clone();
    let options = ImportOptions {
        profile: args.profile,
        progress: Some(Arc::new(move |done| progress_bar.set_position(done))),
        include_hidden: args.hidden,
    };
    let imported = unixfs::import_path(&args.path, &options, store.as_ref())
        .await
        .with_context(|| format!("adding {}", args.path.display()))?;
    bar.finish_and_clear();
    if json {
        crate::print_json(
            &json!({"cid": imported.root.to_string(), "size": imported.size, "blocks": imported.blocks}),
        )?;
    } else {
        println!("{}", imported.root);
    }
    Ok(ExitCode::SUCCESS)
}

/// `shoal get CID[/path] [-o PATH]`.
pub(crate) async fn get(home: &Home, args: GetArgs, json: bool) -> anyhow::Result<ExitCode> {
    let reader = reader(home, &args.sources)?;
    let (cid, name) = resolve(reader.as_ref(), &args.target).await?;
    let dest = args.output.unwrap_or_else(|| PathBuf::from(name));
    let exported = unixfs::export_to_path(reader.as_ref(), &cid, &dest)
        .await
        .with_context(|| format!("writing {cid} to {}", dest.display()))?;
    if json {
        crate::print_json(&json!({
            "cid": cid.to_string(),
            "path": dest,
            "files": exported.files,
            "directories": exported.directories,
            "symlinks": exported.symlinks,
            "bytes": exported.bytes,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!(
        "wrote {} ({} files, {} directories, {} bytes)",
        dest.display(),
        exported.files,
        exported.directories,
        exported.bytes
    );
    Ok(ExitCode::SUCCESS)
}

/// `shoal cat CID[/path]`.
pub(crate) async fn cat(home: &Home, args: CatArgs) -> anyhow::Result<ExitCode> {
    let reader = reader(home, &args.sources)?;
    let (cid, _) = resolve(reader.as_ref(), &args.target).await?;
    let mut stream = std::pin::pin!(unixfs::cat(reader, cid));
    let mut stdout = tokio::io::stdout();
    while let Some(chunk) = stream.try_next().await.with_context(|| format!("reading {}", args.target))? {
        stdout.write_all(&chunk).await.context("writing to stdout")?;
    }
    stdout.flush().await.context("writing to stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// `shoal car export|import`.
pub(crate) async fn car(home: &Home, command: CarCommand, json: bool) -> anyhow::Result<ExitCode> {
    match command {
        CarCommand::Export { cid, output, sources } => {
            let reader = reader(home, &sources)?;
            let root = parse_cid(&cid)?;
            let file =
                tokio::fs::File::create(&output).await.with_context(|| format!("creating {}", output.display()))?;
            let mut writer = tokio::io::BufWriter::new(file);
            let stats = car::export_car(reader.as_ref(), &root, &mut writer, DagScope::All, WalkOptions::default())
                .await
                .with_context(|| format!("exporting {root}"))?;
            writer.flush().await.with_context(|| format!("writing {}", output.display()))?;
            if json {
                crate::print_json(
                    &json!({"cid": root.to_string(), "file": output, "blocks": stats.blocks, "bytes": stats.bytes}),
                )?;
            } else {
                eprintln!("wrote {} ({} blocks, {} bytes)", output.display(), stats.blocks, stats.bytes);
            }
        }
        CarCommand::Import { file } => {
            let store = local_store(home)?;
            let reader = tokio::fs::File::open(&file).await.with_context(|| format!("opening {}", file.display()))?;
            let imported =
                car::import_car(tokio::io::BufReader::new(reader), store.as_ref(), &file.display().to_string())
                    .await
                    .with_context(|| format!("importing {}", file.display()))?;
            if imported.roots.is_empty() {
                bail!("{} declares no root", file.display());
            }
            if json {
                crate::print_json(&json!({
                    "roots": imported.roots.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "blocks": imported.stats.blocks,
                    "bytes": imported.stats.bytes,
                }))?;
            } else {
                for root in &imported.roots {
                    println!("{root}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

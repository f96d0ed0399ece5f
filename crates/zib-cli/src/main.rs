//! `zib`: one binary for the server, a storage node, the all-in-one dev cluster, and
//! the client verbs.

mod admin_verbs;
mod backup_verbs;
mod bucket_verbs;
mod client_verbs;
mod compute_verbs;
mod config;
mod dev;
mod dev_dir;
mod encode_verbs;
mod keys;
mod run;
mod tenant_api;
mod upload_state;
mod webhook_verbs;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "zib",
    version,
    about = "ZiB: encrypted, erasure-coded storage network"
)]
struct Cli {
    /// Log format on stderr: `text` or `json`.
    #[arg(long, global = true, env = "ZIB_LOG_FORMAT", default_value = "text")]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API/CDN server.
    Server {
        /// TOML config file; every key can be overridden by `ZIB_<KEY>`.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Run a storage node.
    Node {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Run a server and N nodes in one process on one data directory.
    Dev(dev::DevArgs),
    /// Print fresh secrets for a server config (master key, capability key, cluster token).
    Keygen,
    /// Copy the metadata store while the server runs: a consistent snapshot,
    /// checked page by page; prints {"backup", "bytes", "schema_version", "tenants",
    /// "files"}. Keep the master key with it (docs/operations.md).
    Backup(backup_verbs::BackupArgs),
    /// Put a backup in place of the metadata store, the server stopped. Refuses a
    /// damaged or foreign file, a store in use, and (without --replace) a store
    /// already there; a replaced store is moved aside, never deleted.
    Restore(backup_verbs::RestoreArgs),
    /// List the nodes as the server sees them, one JSON line each: online, state
    /// (active, draining, drained) and what each holds. Needs the cluster token.
    Nodes(admin_verbs::AdminArgs),
    /// Drain a node before it leaves: nothing new is placed on it and its shards
    /// and segment copies move to other nodes (`--end` stops the drain).
    Drain(admin_verbs::DrainArgs),
    /// Tenant administration (talks to the metadata store directly).
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Encrypt and upload a file; prints {"file_id", "cdn_url"}.
    ///
    /// An interrupted upload resumes: the registration (it holds the file's key) is
    /// kept in a 0600 file under $ZIB_UPLOAD_STATE_DIR, else $XDG_CACHE_HOME/zib/uploads,
    /// else ~/.cache/zib/uploads, until the upload succeeds. Running the same command
    /// again (same file, bucket and key, file unchanged) asks the node which parts it
    /// already holds and sends only the others. --no-resume starts over and deletes
    /// the interrupted upload on the server.
    ///
    /// Exit status: 0 uploaded; 1 failed; 3 outcome unknown: the bytes reached the
    /// node but the final answer was lost (a crash, a network cut). Then stdout holds
    /// {"file_id", "cdn_url", "outcome": "unknown"}; check `zib pipeline <file_id>`,
    /// or run the same command again to finish or confirm it.
    Upload(client_verbs::UploadArgs),
    /// Download a file (or a byte range) through the CDN.
    Get(client_verbs::GetArgs),
    /// List buckets, or the objects of a bucket.
    Ls(client_verbs::LsArgs),
    /// List buckets with object counts and bytes.
    Buckets {
        #[arg(long)]
        json: bool,
    },
    /// A bucket's overwrite mode (`set-overwrite`) and its deletion (`rm`).
    Bucket(bucket_verbs::BucketArgs),
    /// Delete a file (by id, or by --bucket and --key) from every node.
    Rm(client_verbs::RmArgs),
    /// Show a file's phase and pipeline stages.
    Pipeline(client_verbs::PipelineArgs),
    /// Webhook endpoints, events, deliveries and redelivery.
    Webhooks(webhook_verbs::WebhooksArgs),
    /// Encode an uploaded video to an AES-128 HLS ladder; prints the request's answer
    /// ({"encoding_id", "status", ...}: queued, already_queued or already_encoded).
    ///
    /// --wait follows the job with a progress bar on stderr and prints the final job
    /// as a second JSON line. Exit status: 0 when the stream is playable and complete
    /// (local_complete, replicating or safe; with --wait=safe only at safe); 1 when the
    /// job ends failed_user_action or cancelled, or on any error. A transient `failed`
    /// is retried by the server and waited through. With --wait the stream, poster,
    /// sprite and variant URLs are also printed to stderr, one `name: url` line each;
    /// with --aspect-variant it waits for the variants too. --variants-only adds the
    /// variants to a file already encoded, leaving its main stream as it is.
    Encode(encode_verbs::EncodeArgs),
    /// Transcribe a stored video to SRT and WebVTT (a compute job on a node with the
    /// tier's Whisper model); prints {"job_id", "status", ...}. --wait follows it.
    Transcribe(compute_verbs::TranscribeArgs),
    /// Analyse a stored video into a ZibSidecar JSON (docs/sidecar.md); prints
    /// {"job_id", "status", ...}. --wait follows it.
    Vision(compute_verbs::VisionArgs),
    /// A compute job's status; --wait polls with progress until it is complete (exit
    /// 0, the output URLs on stderr) or failed (exit 1).
    ComputeStatus(compute_verbs::ComputeStatusArgs),
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant and print its access key and secret key (shown once).
    Create {
        name: String,
        /// The server's config file (its `database` key is used).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// A `zib dev` data directory instead of a config file.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

fn main() -> std::process::ExitCode {
    keep_large_buffers_in_the_heap();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(run_cli())
}

async fn run_cli() -> std::process::ExitCode {
    let cli = Cli::parse();
    run::init_logging(&cli.log_format);
    match dispatch(cli.command).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if e.downcast_ref::<client_verbs::OutcomeUnknown>().is_some() => {
            // Already explained on stderr, with the file id on stdout.
            std::process::ExitCode::from(client_verbs::EXIT_OUTCOME_UNKNOWN)
        }
        Err(e) => {
            // The cause chain on one line; no backtrace, whatever RUST_BACKTRACE says.
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Shards, segments and chunks are 256 KiB – 6 MiB buffers allocated and freed at
/// a high rate. glibc serves blocks over 128 KiB with fresh mmaps and unmaps them on
/// free, so every one is page-faulted in again (measured ~7% of a CDN read). Serving
/// them from the heap lets freed ones be reused; a matching trim threshold keeps
/// glibc from handing freed heap tops back to the kernel (and faulting them in again).
fn keep_large_buffers_in_the_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // glibc's default of 8 arenas per core, each keeping up to the trim
        // threshold, would let peak RSS grow with the thread count; one arena per
        // core is enough for a runtime with one worker per core.
        let arenas = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .clamp(2, 64) as libc::c_int;
        // SAFETY: mallopt only changes allocator tuning; it is called before any
        // other thread exists.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 * 1024 * 1024);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 64 * 1024 * 1024);
            libc::mallopt(libc::M_ARENA_MAX, arenas);
        }
    }
}

async fn dispatch(command: Command) -> Result<()> {
    match command {
        Command::Server { config } => run::server(config.as_deref()).await,
        Command::Node { config } => run::node(config.as_deref()).await,
        Command::Dev(args) => dev::run(args).await,
        Command::Keygen => {
            keys::keygen();
            Ok(())
        }
        Command::Tenant {
            command:
                TenantCommand::Create {
                    name,
                    config,
                    data_dir,
                },
        } => run::tenant_create(&name, config.as_deref(), data_dir.as_deref()).await,
        Command::Nodes(args) => admin_verbs::nodes(args).await,
        Command::Drain(args) => admin_verbs::drain(args).await,
        Command::Backup(args) => backup_verbs::backup(args).await,
        Command::Restore(args) => backup_verbs::restore(args).await,
        Command::Upload(args) => client_verbs::run_upload(args).await,
        Command::Get(args) => client_verbs::run_get(args).await,
        Command::Ls(args) => client_verbs::run_ls(args).await,
        Command::Buckets { json } => client_verbs::run_buckets(json).await,
        Command::Bucket(args) => bucket_verbs::run(args).await,
        Command::Rm(args) => client_verbs::run_rm(args).await,
        Command::Pipeline(args) => client_verbs::run_pipeline(args).await,
        Command::Webhooks(args) => webhook_verbs::run(args).await,
        Command::Encode(args) => encode_verbs::run(args).await,
        Command::Transcribe(args) => compute_verbs::run_transcribe(args).await,
        Command::Vision(args) => compute_verbs::run_vision(args).await,
        Command::ComputeStatus(args) => compute_verbs::run_status(args).await,
    }
}

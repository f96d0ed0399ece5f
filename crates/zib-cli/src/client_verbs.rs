//! The client verbs: `zib upload`, `zib get`, `zib ls`. Thin over `zib-client`; what
//! they print on stdout is meant for scripts (one JSON line, or plain columns), while
//! progress goes to stderr and only when a person is watching.

use std::io::IsTerminal;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use zib_client::{download, Client, ClientConfig, Progress, Stage, UploadOptions, DEFAULT_API_URL};
use zib_proto::FileId;

use crate::upload_state;

#[derive(Args, Debug)]
pub struct UploadArgs {
    /// Bucket to store the object in.
    #[arg(long)]
    pub bucket: String,
    /// Object key; defaults to the file's name.
    #[arg(long)]
    pub key: Option<String>,
    /// The file to encrypt and upload.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Content type served by the CDN; guessed from the extension when omitted.
    #[arg(long)]
    pub content_type: Option<String>,
    /// Multipart parts in flight at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Start over with a new registration even if an interrupted upload of this
    /// file to this bucket and key is saved (the saved one is deleted on the server).
    #[arg(long)]
    pub no_resume: bool,
}

/// `zib upload` exits with this when the bytes reached the node but the answer was
/// lost: the file may well complete. Distinct from 1 (failed).
pub const EXIT_OUTCOME_UNKNOWN: u8 = 3;

/// The upload's bytes were committed but its end was not seen (see
/// [`EXIT_OUTCOME_UNKNOWN`]); the message is already printed.
#[derive(Debug, thiserror::Error)]
#[error("file {file_id}: outcome unknown — check `zib pipeline {file_id}`")]
pub struct OutcomeUnknown {
    pub file_id: FileId,
}

#[derive(Args, Debug)]
pub struct GetArgs {
    /// A file id, or a full CDN URL.
    #[arg(value_name = "FILE_ID_OR_CDN_URL")]
    pub target: String,
    /// Where to write the bytes (default: stdout).
    #[arg(short, long, value_name = "PATH")]
    pub output: Option<PathBuf>,
    /// Inclusive byte range `a-b`, as in HTTP (`0-99` is the first 100 bytes).
    #[arg(long, value_name = "A-B", value_parser = parse_range)]
    pub range: Option<Range<u64>>,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// List this bucket's objects; without it, list the buckets.
    #[arg(value_name = "BUCKET")]
    pub bucket: Option<String>,
    /// Only objects whose key starts with this.
    #[arg(long)]
    pub prefix: Option<String>,
    /// Print the API's JSON instead of columns.
    #[arg(long)]
    pub json: bool,
}

pub async fn run_upload(args: UploadArgs) -> Result<()> {
    let config = ClientConfig::from_env()?;
    let access_key = config.access_key.clone();
    let client = Client::new(config)?;
    let key = match args.key {
        Some(key) => key,
        None => args
            .file
            .file_name()
            .and_then(|name| name.to_str())
            .map(str::to_string)
            .with_context(|| {
                format!(
                    "{} has no usable file name: pass --key",
                    args.file.display()
                )
            })?,
    };
    let content_type = args
        .content_type
        .or_else(|| guess_content_type(&args.file).map(str::to_string));

    let bar = std::io::stderr().is_terminal().then(progress_bar);
    let progress = bar.clone().map(|bar| -> zib_client::ProgressFn {
        Arc::new(move |p: Progress| match p.stage {
            Stage::Encrypting => {}
            Stage::Uploading => {
                bar.set_length(p.total);
                bar.set_position(p.done);
            }
            Stage::Completing if p.done < p.total => bar.set_message("storing on the network…"),
            Stage::Completing => bar.set_message("done"),
        })
    });
    let ident = upload_state::Ident::new(
        client.api_url().as_str(),
        &access_key,
        &args.bucket,
        &key,
        &args.file,
    )?;
    let slot = upload_state::state_dir().map(|dir| upload_state::Slot::new(&dir, &ident));
    if slot.is_none() {
        tracing::warn!("no cache directory (HOME unset): an interrupted upload cannot be resumed");
    }
    let found = match &slot {
        Some(slot) => slot.load(&ident)?,
        None => upload_state::Found::Nothing,
    };
    let saved = match found {
        upload_state::Found::Resume(reg) if !args.no_resume && !registration_expired(&reg) => {
            Some(*reg)
        }
        upload_state::Found::Resume(reg) => {
            abandon(&client, Some(reg.file_id)).await;
            None
        }
        upload_state::Found::Stale(file_id) => {
            abandon(&client, file_id).await;
            None
        }
        upload_state::Found::Nothing => None,
    };
    let resume = saved.is_some();
    let registration = match saved {
        Some(reg) => {
            eprintln!(
                "resuming the interrupted upload of {} (file {}, saved in {}): only the parts the node lacks are sent",
                args.file.display(),
                reg.file_id,
                slot.as_ref().map_or_else(String::new, |s| s.path().display().to_string()),
            );
            reg
        }
        None => {
            let size = ident.size;
            let reg = client
                .initiate(&args.bucket, &key, size, content_type.as_deref())
                .await
                .with_context(|| format!("uploading {}", args.file.display()))?;
            if let Some(slot) = &slot {
                slot.save(&ident, &reg)?;
            }
            reg
        }
    };
    let opts = UploadOptions {
        concurrency: args.concurrency.max(1),
        progress,
        resume,
        ..UploadOptions::default()
    };
    let result =
        zib_client::upload_with_registration(client.http(), &registration, &args.file, &opts).await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let forget = || {
        if let Some(slot) = &slot {
            slot.remove();
        }
    };
    match result {
        Ok(result) => {
            forget();
            println!("{}", serde_json::to_string(&result)?);
            Ok(())
        }
        Err(err) if err.outcome_unknown().is_some() => {
            let file_id = registration.file_id;
            // The API may already know how it ended (the lost answer was a success).
            if let Ok(info) = client.file_info(file_id).await {
                if matches!(info.phase.as_str(), "distributed" | "safe") {
                    forget();
                    println!(
                        "{}",
                        serde_json::to_string(&zib_proto::api::UploadResult {
                            file_id,
                            cdn_url: registration.cdn_url.clone(),
                        })?
                    );
                    return Ok(());
                }
            }
            // Kept: running the same command again settles it.
            println!(
                "{}",
                serde_json::json!({
                    "file_id": file_id,
                    "cdn_url": registration.cdn_url,
                    "outcome": "unknown",
                })
            );
            let cause = match &err {
                zib_client::ClientError::OutcomeUnknown { source, .. } => source.to_string(),
                other => other.to_string(),
            };
            eprintln!(
                "file {file_id}: outcome unknown — check `zib pipeline {file_id}` \
                 (the bytes reached the node, then: {cause}). Running the same command \
                 again finishes or confirms it."
            );
            Err(OutcomeUnknown { file_id }.into())
        }
        Err(err) if err.is_resumable() && slot.is_some() => {
            Err(anyhow::Error::new(err).context(format!(
                "uploading {} (file {}; run the same command again to resume it)",
                args.file.display(),
                registration.file_id
            )))
        }
        Err(err) => {
            forget();
            Err(anyhow::Error::new(err).context(format!("uploading {}", args.file.display())))
        }
    }
}

fn registration_expired(reg: &zib_proto::api::Registration) -> bool {
    use time::format_description::well_known::Rfc3339;
    // A minute of margin: a resume needs time to send what is missing.
    time::OffsetDateTime::parse(&reg.expires_at, &Rfc3339).map_or(true, |at| {
        at - time::Duration::minutes(1) <= time::OffsetDateTime::now_utc()
    })
}

/// A saved registration that will not be resumed: its pending file is deleted at once
/// (freeing what the node holds of it) instead of waiting for its expiry.
async fn abandon(client: &Client, file_id: Option<FileId>) {
    let Some(file_id) = file_id else { return };
    match client.delete_file(file_id).await {
        Ok(_) => tracing::info!(%file_id, "abandoned the earlier, interrupted upload"),
        Err(e) => {
            tracing::warn!(%file_id, error = %e, "could not delete the earlier, interrupted upload; it expires on its own")
        }
    }
}

pub async fn run_get(args: GetArgs) -> Result<()> {
    let url = cdn_url_for(&args.target)?;
    // The CDN URL is the read capability: no tenant credential is needed or sent.
    let http = reqwest::Client::new();
    match &args.output {
        None => {
            let mut stdout = tokio::io::stdout();
            download(&http, &url, args.range, &mut stdout).await?;
        }
        Some(path) if path.as_os_str() == "-" => {
            let mut stdout = tokio::io::stdout();
            download(&http, &url, args.range, &mut stdout).await?;
        }
        Some(path) => {
            // Write beside the target and rename, so a failed download leaves no
            // truncated file under the wanted name.
            let partial = partial_path(path);
            let mut file = tokio::fs::File::create(&partial)
                .await
                .with_context(|| format!("creating {}", partial.display()))?;
            let downloaded = download(&http, &url, args.range, &mut file).await;
            drop(file);
            if let Err(err) = downloaded {
                let _ = tokio::fs::remove_file(&partial).await;
                return Err(err.into());
            }
            tokio::fs::rename(&partial, path)
                .await
                .with_context(|| format!("renaming {} to {}", partial.display(), path.display()))?;
        }
    }
    Ok(())
}

pub async fn run_ls(args: LsArgs) -> Result<()> {
    let client = Client::new(ClientConfig::from_env()?)?;
    match &args.bucket {
        None => {
            if args.prefix.is_some() {
                bail!("--prefix needs a BUCKET");
            }
            let list = client.list_buckets().await?;
            if args.json {
                println!("{}", serde_json::to_string(&list)?);
                return Ok(());
            }
            let rows: Vec<[String; 3]> = list
                .buckets
                .iter()
                .map(|b| {
                    [
                        b.name.clone(),
                        b.object_count.to_string(),
                        b.total_bytes.to_string(),
                    ]
                })
                .collect();
            print_table(&["NAME", "OBJECTS", "BYTES"], &rows);
        }
        Some(bucket) => {
            let list = client.list_objects(bucket, args.prefix.as_deref()).await?;
            if args.json {
                println!("{}", serde_json::to_string(&list)?);
                return Ok(());
            }
            let rows: Vec<[String; 4]> = list
                .objects
                .iter()
                .map(|o| {
                    [
                        o.key.clone(),
                        o.size.to_string(),
                        o.file_id.to_string(),
                        o.content_type.clone(),
                    ]
                })
                .collect();
            print_table(&["KEY", "SIZE", "FILE_ID", "CONTENT_TYPE"], &rows);
        }
    }
    Ok(())
}

/// Columns padded to their widest cell; the last column is not padded.
fn print_table<const N: usize>(headers: &[&str; N], rows: &[[String; N]]) {
    let mut widths = headers.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == N {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        println!("{}", out.trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
    ) {
        bar.set_style(style);
    }
    bar
}

/// A full URL is used as is; a bare file id becomes `{base}/objects/{id}`, the base
/// being `ZIB_CDN_URL`, else `ZIB_API_URL` (the server serves the CDN too).
fn cdn_url_for(target: &str) -> Result<String> {
    let target = target.trim();
    if target.starts_with("http://") || target.starts_with("https://") {
        return Ok(target.to_string());
    }
    let file_id: FileId = target.parse().map_err(|_| {
        anyhow::anyhow!("{target:?} is neither a file id (a UUID) nor an http(s) CDN URL")
    })?;
    let base = env_nonempty("ZIB_CDN_URL")
        .or_else(|| env_nonempty("ZIB_API_URL"))
        .unwrap_or_else(|| DEFAULT_API_URL.to_string());
    Ok(format!("{}/objects/{file_id}", base.trim_end_matches('/')))
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    path.with_file_name(name)
}

/// `a-b`, inclusive both ends, into the half-open range the SDK takes.
fn parse_range(s: &str) -> Result<Range<u64>, String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("{s:?} is not a range like 0-99"))?;
    let start: u64 = a
        .trim()
        .parse()
        .map_err(|_| format!("{a:?} is not a byte offset"))?;
    let last: u64 = b
        .trim()
        .parse()
        .map_err(|_| format!("{b:?} is not a byte offset"))?;
    if last < start {
        return Err(format!("range {s:?} ends before it starts"));
    }
    let end = last
        .checked_add(1)
        .ok_or_else(|| format!("range {s:?} is too large"))?;
    Ok(start..end)
}

/// The common types a CDN should serve with the right header; others are left to the
/// server's default.
fn guess_content_type(path: &Path) -> Option<&'static str> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    Some(match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mp3" => "audio/mpeg",
        "json" => "application/json",
        "txt" => "text/plain",
        "html" => "text/html",
        "pdf" => "application/pdf",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_inclusive_like_http() {
        assert_eq!(parse_range("0-99"), Ok(0..100));
        assert_eq!(parse_range("5-5"), Ok(5..6));
        assert!(parse_range("9-3").is_err());
        assert!(parse_range("abc").is_err());
        assert!(parse_range("1-").is_err());
    }

    #[test]
    fn content_types_are_guessed_for_common_extensions() {
        assert_eq!(
            guess_content_type(Path::new("a/cat.JPG")),
            Some("image/jpeg")
        );
        assert_eq!(
            guess_content_type(Path::new("clip.webm")),
            Some("video/webm")
        );
        assert_eq!(guess_content_type(Path::new("notes")), None);
        assert_eq!(guess_content_type(Path::new("data.xyz")), None);
    }

    #[test]
    fn cdn_urls_pass_through_and_ids_are_checked() {
        let url = "https://cdn.example/objects/5f0c2f34-8c1b-4d6e-9a57-0f6f2b1c3d4e";
        assert_eq!(cdn_url_for(url).unwrap(), url);
        assert!(cdn_url_for("not-an-id").is_err());
        let built = cdn_url_for("5f0c2f34-8c1b-4d6e-9a57-0f6f2b1c3d4e").unwrap();
        assert!(
            built.ends_with("/objects/5f0c2f34-8c1b-4d6e-9a57-0f6f2b1c3d4e"),
            "{built}"
        );
    }

    #[test]
    fn partial_downloads_sit_beside_the_target() {
        assert_eq!(
            partial_path(Path::new("/tmp/out.bin")),
            Path::new("/tmp/out.bin.part")
        );
    }
}

#[derive(Args)]
pub struct RmArgs {
    /// The file id to delete; or use --bucket and --key.
    file_id: Option<String>,
    #[arg(long, requires = "key")]
    bucket: Option<String>,
    #[arg(long, requires = "bucket")]
    key: Option<String>,
}

/// `zib rm`: deletes a file everywhere; prints the server's JSON report.
pub async fn run_rm(args: RmArgs) -> Result<()> {
    let client = Client::new(ClientConfig::from_env()?)?;
    let report = match (args.file_id, args.bucket, args.key) {
        (Some(id), None, None) => {
            let id: FileId = id
                .parse()
                .with_context(|| format!("{id:?} is not a file id"))?;
            client.delete_file(id).await?
        }
        (None, Some(bucket), Some(key)) => client.delete_object(&bucket, &key).await?,
        _ => bail!("give either a FILE_ID or --bucket and --key"),
    };
    println!("{report}");
    Ok(())
}

#[derive(Args)]
pub struct PipelineArgs {
    file_id: String,
}

/// `zib pipeline`: the file's phase and stages, as the API returns them.
pub async fn run_pipeline(args: PipelineArgs) -> Result<()> {
    let client = Client::new(ClientConfig::from_env()?)?;
    let id: FileId = args
        .file_id
        .parse()
        .with_context(|| format!("{:?} is not a file id", args.file_id))?;
    println!(
        "{}",
        serde_json::to_string_pretty(&client.pipeline(id).await?)?
    );
    Ok(())
}

/// `zib buckets`: the buckets table (`zib ls` without a bucket).
pub async fn run_buckets(json: bool) -> Result<()> {
    run_ls(LsArgs {
        bucket: None,
        prefix: None,
        json,
    })
    .await
}

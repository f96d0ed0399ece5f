//! `zib encode FILE_ID [--force] [--wait[=safe]]`: asks for an HLS encode of an
//! uploaded video (with its thumbnails and aspect variants) and, when told to, follows
//! the job until it is playable (or safe). stdout is for scripts (the request's answer,
//! then the final job, one JSON line each); progress and the thumbnail and variant URLs
//! go to stderr: a bar for a person, a line per phase for a log.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::Method;
use serde_json::{json, Value};

use crate::tenant_api::{Api, ApiError};

/// The reference's advice for polling is 2–5 s; the job row moves no faster.
const POLL_EVERY: Duration = Duration::from_secs(2);
/// Consecutive failed polls (network, 5xx, a job row not there yet) before giving up:
/// a minute of a server that does not answer is an outage, not a blip.
const POLL_FAILURES_TOLERATED: u32 = 30;

#[derive(Args, Debug)]
pub struct EncodeArgs {
    /// The file id `zib upload` printed.
    #[arg(value_name = "FILE_ID")]
    pub file_id: String,
    /// Encode again even if the file already has an encode (the current stream keeps
    /// playing until the new one is complete).
    #[arg(long)]
    pub force: bool,
    /// Per-request webhook target for this job's `encoding.*` events.
    #[arg(long)]
    pub webhook_url: Option<String>,
    /// Secret that signs the per-request webhook (needs --webhook-url).
    #[arg(long, requires = "webhook_url")]
    pub webhook_secret: Option<String>,
    /// No poster and no sprite sheets (`thumbnails: false`).
    #[arg(long, conflicts_with = "poster_at")]
    pub no_thumbnails: bool,
    /// Where the poster frame is taken: `N%` of the duration or `Ns` from the start
    /// (default 10 %, clamped to 1–10 s).
    #[arg(long, value_name = "10%|5s")]
    pub poster_at: Option<String>,
    /// A vertical rendition beside the main ladder (`9:16`, the only ratio); repeatable.
    #[arg(long = "aspect-variant", value_name = "RATIO")]
    pub aspect_variants: Vec<String>,
    /// Backfill: only the --aspect-variant renditions, on top of the file's finished
    /// encode (the main stream is left as it is).
    #[arg(long, requires = "aspect_variants", conflicts_with = "force")]
    pub variants_only: bool,
    /// Follow the job (polling every 2 s) until it is `playable` (every rung live:
    /// `local_complete`, `replicating` or `safe`; the default) or `safe` (every
    /// segment verified on 3 peers). Exit 0 when reached; exit 1 when the job ends
    /// `failed_user_action` or `cancelled` (a transient `failed` keeps waiting: the
    /// server retries it).
    #[arg(long, value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "playable")]
    pub wait: Option<WaitFor>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WaitFor {
    Playable,
    Safe,
}

/// How long `--wait` keeps polling for the asked aspect variants once the main job is
/// reached: a variant that failed is simply absent, so the wait needs an end.
const VARIANTS_WAIT: Duration = Duration::from_secs(30 * 60);

/// Where a phase stands for someone waiting on it.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Running,
    Reached,
    Ended,
}

fn outcome(phase: &str, wait: WaitFor) -> Outcome {
    match (phase, wait) {
        ("safe", _) => Outcome::Reached,
        ("local_complete" | "replicating", WaitFor::Playable) => Outcome::Reached,
        ("failed_user_action" | "cancelled", _) => Outcome::Ended,
        _ => Outcome::Running,
    }
}

/// The request body: the file, then only the options the flags set (the server's
/// defaults stay the server's).
fn request_body(args: &EncodeArgs) -> Value {
    let mut body = json!({ "object_key": args.file_id });
    if args.force {
        body["force"] = json!(true);
    }
    if let Some(url) = &args.webhook_url {
        body["webhook_url"] = json!(url);
    }
    if let Some(secret) = &args.webhook_secret {
        body["webhook_secret"] = json!(secret);
    }
    if args.no_thumbnails {
        body["thumbnails"] = json!(false);
    } else if let Some(at) = &args.poster_at {
        body["thumbnails"] = json!({ "poster": { "at": at } });
    }
    if !args.aspect_variants.is_empty() {
        let field = if args.variants_only {
            "aspect_variants_only"
        } else {
            "aspect_variants"
        };
        body[field] = json!(args.aspect_variants);
    }
    body
}

pub async fn run(args: EncodeArgs) -> Result<()> {
    let api = Api::from_env()?;
    let answer = api
        .call(
            Method::POST,
            &["v1", "api", "encoding", "request"],
            Some(request_body(&args)),
        )
        .await
        .with_context(|| format!("requesting an encode of {}", args.file_id))?;
    println!("{answer}");
    let Some(wait) = args.wait else {
        return Ok(());
    };
    if args.variants_only {
        return wait_backfill(&api, &answer, wait).await;
    }
    let job_id = answer["encoding_id"]
        .as_str()
        .context("the encoding request's answer has no encoding_id")?
        .to_string();
    let mut job = follow(&api, &job_id, wait).await?;
    let phase = phase_of(&job).to_string();
    if outcome(&phase, wait) != Outcome::Reached {
        println!("{job}");
        bail!("encoding {job_id} ended {phase}: {}", why(&job));
    }
    if !args.aspect_variants.is_empty() {
        job = wait_variants(&api, &job_id, job, &args.aspect_variants).await?;
    }
    println!("{job}");
    print_outputs(&job);
    Ok(())
}

/// Follows each child job of a backfill, then prints the parent job (which names the
/// variants). A child that ends is an error with its reason.
async fn wait_backfill(api: &Api, answer: &Value, wait: WaitFor) -> Result<()> {
    let parent = answer["parent_encoding_job_id"]
        .as_str()
        .context("the backfill's answer has no parent_encoding_job_id")?;
    let children: Vec<&str> = answer["child_encoding_job_ids"]
        .as_array()
        .context("the backfill's answer has no child_encoding_job_ids")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for child in children {
        let job = follow(api, child, wait).await?;
        let phase = phase_of(&job);
        if outcome(phase, wait) != Outcome::Reached {
            println!("{job}");
            bail!("variant encoding {child} ended {phase}: {}", why(&job));
        }
    }
    let job = api
        .call(
            Method::GET,
            &["v1", "api", "encoding", "jobs", parent],
            None,
        )
        .await
        .with_context(|| format!("reading encoding {parent}"))?;
    println!("{job}");
    print_outputs(&job);
    Ok(())
}

/// Polls the reached main job until its `aspect_variants` names every asked ratio.
async fn wait_variants(
    api: &Api,
    job_id: &str,
    mut job: Value,
    ratios: &[String],
) -> Result<Value> {
    let started = tokio::time::Instant::now();
    let has_all = |job: &Value| ratios.iter().all(|r| !job["aspect_variants"][r].is_null());
    let mut told = false;
    while !has_all(&job) {
        // The block is omitted when the job asked for none: an encode that already
        // existed (`already_encoded`) does not grow variants without a backfill.
        if job["aspect_variants"].is_null() {
            bail!(
                "encoding {job_id} was not asked for aspect variants (the file was already \
                 encoded?): add them with --aspect-variant {} --variants-only",
                ratios.join(" --aspect-variant ")
            );
        }
        if started.elapsed() > VARIANTS_WAIT {
            bail!(
                "encoding {job_id} is playable but its aspect variants {} did not appear \
                 within {} min (a failed variant is absent)",
                ratios.join(", "),
                VARIANTS_WAIT.as_secs() / 60
            );
        }
        if !told {
            eprintln!(
                "{job_id}: waiting for aspect variants {}",
                ratios.join(", ")
            );
            told = true;
        }
        tokio::time::sleep(POLL_EVERY).await;
        match api
            .call(
                Method::GET,
                &["v1", "api", "encoding", "jobs", job_id],
                None,
            )
            .await
        {
            Ok(next) if next.is_object() => job = next,
            Ok(_) => {}
            Err(e) => {
                if let Some(api_err) = e.downcast_ref::<ApiError>() {
                    if matches!(api_err.status.as_u16(), 400 | 401 | 403 | 404) {
                        return Err(e.context(format!("polling encoding {job_id}")));
                    }
                }
            }
        }
    }
    Ok(job)
}

/// The job's thumbnail and variant URLs, one `name: url` line each on stderr.
fn print_outputs(job: &Value) {
    for line in output_lines(job) {
        eprintln!("{line}");
    }
}

fn output_lines(job: &Value) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(url) = job["hls_manifest_url"].as_str() {
        lines.push(format!("stream: {url}"));
    }
    for (name, field) in [
        ("poster", "poster_url"),
        ("sprite", "sprite_url"),
        ("sprite vtt", "sprite_vtt_url"),
    ] {
        if let Some(url) = job["thumbnails"][field].as_str() {
            lines.push(format!("{name}: {url}"));
        }
    }
    if let Some(variants) = job["aspect_variants"].as_object() {
        for (ratio, v) in variants {
            if let Some(url) = v["hls_manifest_url"].as_str() {
                lines.push(format!("{ratio} stream: {url}"));
            }
            if let Some(url) = v["poster_url"].as_str() {
                lines.push(format!("{ratio} poster: {url}"));
            }
        }
    }
    lines
}

/// Why a job ended: its error, else the cancel reason.
fn why(job: &Value) -> &str {
    job["error_message"]
        .as_str()
        .or(job["cancelled_reason"].as_str())
        .unwrap_or("no reason given")
}

/// `phase` is canonical; `status` is the back-compat name of the same thing.
fn phase_of(job: &Value) -> &str {
    job["phase"]
        .as_str()
        .or(job["status"].as_str())
        .unwrap_or("")
}

/// Polls `GET /v1/api/encoding/jobs/{id}` until the phase is reached or ends.
async fn follow(api: &Api, job_id: &str, wait: WaitFor) -> Result<Value> {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::with_draw_target(Some(100), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos:>3}% {elapsed} {msg}") {
            bar.set_style(style);
        }
        bar
    });
    let mut failures = 0;
    let mut last_phase = String::new();
    loop {
        match api
            .call(
                Method::GET,
                &["v1", "api", "encoding", "jobs", job_id],
                None,
            )
            .await
        {
            Ok(job) if job.is_object() => {
                failures = 0;
                let phase = phase_of(&job).to_string();
                let progress = job["progress"].as_f64().unwrap_or(0.0).clamp(0.0, 100.0);
                let detail = describe(&job, &phase);
                match &bar {
                    Some(bar) => {
                        bar.set_position(progress as u64);
                        bar.set_message(detail.clone());
                    }
                    None if phase != last_phase => eprintln!("{job_id}: {detail}"),
                    None => {}
                }
                last_phase = phase;
                if outcome(&last_phase, wait) != Outcome::Running {
                    if let Some(bar) = &bar {
                        bar.finish();
                    }
                    return Ok(job);
                }
            }
            Ok(_) => failures += 1,
            Err(e) => {
                // A wrong id or credentials will not fix themselves.
                if let Some(api_err) = e.downcast_ref::<ApiError>() {
                    if matches!(api_err.status.as_u16(), 400 | 401 | 403) {
                        return Err(e.context(format!("polling encoding {job_id}")));
                    }
                }
                failures += 1;
                if failures >= POLL_FAILURES_TOLERATED {
                    return Err(e.context(format!(
                        "polling encoding {job_id}: {failures} polls in a row failed"
                    )));
                }
            }
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// The phase, with what the job says about it (`phase_detail`, a retry's error).
fn describe(job: &Value, phase: &str) -> String {
    let mut text = phase.to_string();
    if let Some(detail) = job["phase_detail"].as_str().filter(|d| !d.is_empty()) {
        text.push_str(&format!(" — {detail}"));
    }
    if phase == "failed" {
        if let Some(err) = job["error_message"].as_str() {
            text.push_str(&format!(" ({err}; retrying)"));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn playable_is_reached_at_local_complete_and_safe_only_at_safe() {
        for phase in ["local_complete", "replicating", "safe"] {
            assert_eq!(outcome(phase, WaitFor::Playable), Outcome::Reached);
        }
        for phase in ["queued", "encoding", "sharding", "failed"] {
            assert_eq!(outcome(phase, WaitFor::Playable), Outcome::Running);
        }
        assert_eq!(outcome("replicating", WaitFor::Safe), Outcome::Running);
        assert_eq!(outcome("safe", WaitFor::Safe), Outcome::Reached);
        for wait in [WaitFor::Playable, WaitFor::Safe] {
            assert_eq!(outcome("failed_user_action", wait), Outcome::Ended);
            assert_eq!(outcome("cancelled", wait), Outcome::Ended);
        }
    }

    fn args(flags: &[&str]) -> EncodeArgs {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            encode: EncodeArgs,
        }
        let mut argv = vec!["zib", "f1"];
        argv.extend_from_slice(flags);
        Cli::try_parse_from(argv)
            .map(|c| c.encode)
            .unwrap_or_else(|e| panic!("{flags:?}: {e}"))
    }

    #[test]
    fn flags_become_the_request_fields() {
        assert_eq!(request_body(&args(&[])), json!({"object_key": "f1"}));
        assert_eq!(
            request_body(&args(&["--no-thumbnails", "--force"])),
            json!({"object_key": "f1", "force": true, "thumbnails": false})
        );
        assert_eq!(
            request_body(&args(&["--poster-at", "5s", "--aspect-variant", "9:16"])),
            json!({"object_key": "f1", "thumbnails": {"poster": {"at": "5s"}},
                   "aspect_variants": ["9:16"]})
        );
        assert_eq!(
            request_body(&args(&["--aspect-variant", "9:16", "--variants-only"])),
            json!({"object_key": "f1", "aspect_variants_only": ["9:16"]})
        );
    }

    #[test]
    fn contradictory_flags_are_refused() {
        use clap::Parser;
        #[derive(Parser, Debug)]
        struct Cli {
            #[command(flatten)]
            encode: EncodeArgs,
        }
        for bad in [
            &["--no-thumbnails", "--poster-at", "5s"][..],
            &["--variants-only"],
            &["--variants-only", "--aspect-variant", "9:16", "--force"],
        ] {
            let mut argv = vec!["zib", "f1"];
            argv.extend_from_slice(bad);
            assert!(Cli::try_parse_from(argv).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn outputs_name_every_url() {
        let job = json!({
            "hls_manifest_url": "http://c/stream/f/master.m3u8",
            "thumbnails": {"poster_url": "http://c/objects/p", "sprite_url": "http://c/objects/s",
                           "sprite_vtt_url": "http://c/objects/v"},
            "aspect_variants": {"9:16": {"hls_manifest_url": "http://c/stream/v/master.m3u8",
                                         "poster_url": null}}
        });
        assert_eq!(
            output_lines(&job),
            [
                "stream: http://c/stream/f/master.m3u8",
                "poster: http://c/objects/p",
                "sprite: http://c/objects/s",
                "sprite vtt: http://c/objects/v",
                "9:16 stream: http://c/stream/v/master.m3u8",
            ]
        );
        assert!(output_lines(&json!({"thumbnails": null})).is_empty());
    }

    #[test]
    fn phase_falls_back_to_status() {
        assert_eq!(phase_of(&json!({"phase": "safe", "status": "x"})), "safe");
        assert_eq!(phase_of(&json!({"status": "queued"})), "queued");
        assert_eq!(phase_of(&json!({})), "");
    }
}

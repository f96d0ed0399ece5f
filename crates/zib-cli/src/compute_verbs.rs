//! `zib transcribe FILE_ID`, `zib vision FILE_ID` and `zib compute-status JOB_ID`: the
//! standalone compute jobs of the API ("Compute / AI"; docs/ai.md). stdout is for
//! scripts (the submission's answer, then with `--wait` the final job, one JSON line
//! each); progress and the output URLs go to stderr: a bar for a person, a line per
//! status for a log.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::Method;
use serde_json::{json, Value};

use crate::tenant_api::{Api, ApiError};

/// The job row moves no faster (a node renews its lease every few seconds).
const POLL_EVERY: Duration = Duration::from_secs(2);
/// Consecutive failed polls before giving up: a minute of no answer is an outage.
const POLL_FAILURES_TOLERATED: u32 = 30;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TranscriptionTier {
    /// Whisper tiny.en.
    Fastest,
    /// Whisper base.
    Recommended,
    /// Whisper small.
    Accurate,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum VisionTier {
    Standard,
    /// Twice the sampled frames; the best loaded Whisper.
    Hq,
}

#[derive(Args, Debug)]
pub struct TranscribeArgs {
    /// The file id `zib upload` printed (a stored video).
    #[arg(value_name = "FILE_ID")]
    pub file_id: String,
    /// Which Whisper model runs (the server's default, `recommended`, when omitted).
    #[arg(long, value_enum)]
    pub tier: Option<TranscriptionTier>,
    /// Follow the job until it is complete (exit 0) or failed (exit 1).
    #[arg(long)]
    pub wait: bool,
}

#[derive(Args, Debug)]
pub struct VisionArgs {
    /// The file id `zib upload` printed (a stored video).
    #[arg(value_name = "FILE_ID")]
    pub file_id: String,
    /// `standard` (the server's default) or `hq`.
    #[arg(long, value_enum)]
    pub tier: Option<VisionTier>,
    /// Follow the job until it is complete (exit 0) or failed (exit 1).
    #[arg(long)]
    pub wait: bool,
}

#[derive(Args, Debug)]
pub struct ComputeStatusArgs {
    /// The job id `zib transcribe` or `zib vision` printed.
    #[arg(value_name = "JOB_ID")]
    pub job_id: String,
    /// Poll every 2 s with progress until the job is complete (exit 0) or failed
    /// (exit 1).
    #[arg(long)]
    pub wait: bool,
}

fn tier_name<T: ValueEnum>(tier: &T) -> Option<String> {
    tier.to_possible_value().map(|v| v.get_name().to_string())
}

pub async fn run_transcribe(args: TranscribeArgs) -> Result<()> {
    let tier = args.tier.as_ref().and_then(tier_name);
    submit("transcription", &args.file_id, tier, args.wait).await
}

pub async fn run_vision(args: VisionArgs) -> Result<()> {
    let tier = args.tier.as_ref().and_then(tier_name);
    submit("vision", &args.file_id, tier, args.wait).await
}

pub async fn run_status(args: ComputeStatusArgs) -> Result<()> {
    let api = Api::from_env()?;
    if !args.wait {
        let job = get_job(&api, &args.job_id).await?;
        println!("{job}");
        return Ok(());
    }
    finish(&api, &args.job_id).await
}

fn submit_body(file_id: &str, tier: Option<String>) -> Value {
    let mut body = json!({ "file_id": file_id });
    if let Some(tier) = tier {
        body["tier"] = json!(tier);
    }
    body
}

async fn submit(kind: &str, file_id: &str, tier: Option<String>, wait: bool) -> Result<()> {
    let api = Api::from_env()?;
    let answer = api
        .call(
            Method::POST,
            &["v1", "api", "compute", kind],
            Some(submit_body(file_id, tier.clone())),
        )
        .await
        .map_err(|e| explain_submit(e, kind, file_id, tier.as_deref()))?;
    println!("{answer}");
    if !wait {
        return Ok(());
    }
    let job_id = answer["job_id"]
        .as_str()
        .context("the submission's answer has no job_id")?
        .to_string();
    finish(&api, &job_id).await
}

/// The refusals a person can act on, said plainly; the server's sentence is kept.
fn explain_submit(
    e: anyhow::Error,
    kind: &str,
    file_id: &str,
    tier: Option<&str>,
) -> anyhow::Error {
    let Some(status) = e.downcast_ref::<ApiError>().map(|a| a.status.as_u16()) else {
        return e.context(format!("submitting {kind} of {file_id}"));
    };
    let tier = tier.unwrap_or("the default tier");
    let why = match status {
        503 => format!(
            "no online node runs {kind} at {tier}: start a node built with `--features ai` \
             whose models include it (scripts/install-models.sh; docs/ai.md)"
        ),
        404 => format!("no file {file_id} (check the id `zib upload` printed)"),
        _ => format!("submitting {kind} of {file_id}"),
    };
    e.context(why)
}

async fn get_job(api: &Api, job_id: &str) -> Result<Value> {
    api.call(Method::GET, &["v1", "api", "compute", "jobs", job_id], None)
        .await
        .map_err(|e| {
            let missing = e
                .downcast_ref::<ApiError>()
                .is_some_and(|a| a.status.as_u16() == 404);
            if missing {
                e.context(format!("no compute job {job_id} (of these credentials)"))
            } else {
                e.context(format!("reading compute job {job_id}"))
            }
        })
}

/// Follows the job, prints it and its output URLs; an error when it failed.
async fn finish(api: &Api, job_id: &str) -> Result<()> {
    let job = follow(api, job_id).await?;
    println!("{job}");
    if job["status"] != "complete" {
        bail!(
            "compute job {job_id} failed: {}",
            job["error_message"].as_str().unwrap_or("no reason given")
        );
    }
    for line in output_lines(&job) {
        eprintln!("{line}");
    }
    Ok(())
}

/// `complete` and `failed` are final (a failed run that will be retried is `queued`).
fn is_final(status: &str) -> bool {
    matches!(status, "complete" | "failed")
}

/// Polls `GET /v1/api/compute/jobs/{id}` until the job is final.
async fn follow(api: &Api, job_id: &str) -> Result<Value> {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::with_draw_target(Some(100), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template("{bar:40} {pos:>3}% {elapsed} {msg}") {
            bar.set_style(style);
        }
        bar
    });
    let mut failures = 0;
    let mut last = String::new();
    loop {
        match get_job(api, job_id).await {
            Ok(job) if job.is_object() => {
                failures = 0;
                let status = job["status"].as_str().unwrap_or("").to_string();
                let progress = job["progress"].as_f64().unwrap_or(0.0).clamp(0.0, 100.0);
                let detail = describe(&job, &status);
                match &bar {
                    Some(bar) => {
                        bar.set_position(progress as u64);
                        bar.set_message(detail.clone());
                    }
                    None if detail != last => eprintln!("{job_id}: {detail}"),
                    None => {}
                }
                last = detail;
                if is_final(&status) {
                    if let Some(bar) = &bar {
                        bar.finish();
                    }
                    return Ok(job);
                }
            }
            Ok(_) => failures += 1,
            Err(e) => {
                // A wrong id or credentials will not fix themselves.
                let status = e.downcast_ref::<ApiError>().map(|a| a.status.as_u16());
                if matches!(status, Some(400 | 401 | 403 | 404)) {
                    return Err(e);
                }
                failures += 1;
                if failures >= POLL_FAILURES_TOLERATED {
                    return Err(e.context(format!(
                        "polling compute job {job_id}: {failures} polls in a row failed"
                    )));
                }
            }
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// The status with the node's detail ("transcribing 01:30 of 04:00"), or a retry's
/// error while queued again.
fn describe(job: &Value, status: &str) -> String {
    let mut text = status.to_string();
    if let Some(detail) = job["detail"].as_str().filter(|d| !d.is_empty()) {
        text.push_str(&format!(" — {detail}"));
    }
    if status == "queued" {
        if let Some(err) = job["error_message"].as_str() {
            text.push_str(&format!(" ({err}; retrying)"));
        }
    }
    text
}

/// The job's output URLs, one `name: url` line each.
fn output_lines(job: &Value) -> Vec<String> {
    [
        ("srt", "srt_url"),
        ("vtt", "vtt_url"),
        ("sidecar", "sidecar_url"),
    ]
    .into_iter()
    .filter_map(|(name, field)| job[field].as_str().map(|url| format!("{name}: {url}")))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Transcribe {
        #[command(flatten)]
        args: TranscribeArgs,
    }

    #[derive(Parser, Debug)]
    struct Vision {
        #[command(flatten)]
        args: VisionArgs,
    }

    #[test]
    fn tiers_are_the_api_words_and_others_are_refused() {
        let t = Transcribe::try_parse_from(["zib", "f1", "--tier", "fastest"]).unwrap();
        let tier = t.args.tier.as_ref().and_then(tier_name);
        assert_eq!(
            submit_body("f1", tier),
            json!({"file_id": "f1", "tier": "fastest"})
        );
        let v = Vision::try_parse_from(["zib", "f1", "--tier", "hq", "--wait"]).unwrap();
        assert!(v.args.wait);
        assert_eq!(
            v.args.tier.as_ref().and_then(tier_name).as_deref(),
            Some("hq")
        );
        assert_eq!(submit_body("f1", None), json!({"file_id": "f1"}));
        let err = Transcribe::try_parse_from(["zib", "f1", "--tier", "ultra"]).unwrap_err();
        assert!(err.to_string().contains("fastest"), "{err}");
        assert!(Vision::try_parse_from(["zib", "f1", "--tier", "fastest"]).is_err());
    }

    #[test]
    fn only_complete_and_failed_end_a_wait() {
        for s in ["complete", "failed"] {
            assert!(is_final(s));
        }
        for s in ["queued", "processing", ""] {
            assert!(!is_final(s));
        }
        let retrying = json!({"status": "queued", "error_message": "ffmpeg died"});
        assert_eq!(
            describe(&retrying, "queued"),
            "queued (ffmpeg died; retrying)"
        );
        let running = json!({"status": "processing", "detail": "transcribing 00:10 of 00:20"});
        assert_eq!(
            describe(&running, "processing"),
            "processing — transcribing 00:10 of 00:20"
        );
    }

    #[test]
    fn outputs_name_every_url() {
        let job = json!({"srt_url": "http://c/objects/s", "vtt_url": "http://c/objects/v",
                         "sidecar_url": null});
        assert_eq!(
            output_lines(&job),
            ["srt: http://c/objects/s", "vtt: http://c/objects/v"]
        );
    }

    #[test]
    fn a_503_says_what_to_do() {
        let e = anyhow::Error::from(ApiError {
            status: reqwest::StatusCode::SERVICE_UNAVAILABLE,
            message: "no node".into(),
        });
        let text = format!(
            "{:#}",
            explain_submit(e, "transcription", "f1", Some("accurate"))
        );
        assert!(text.contains("install-models.sh"), "{text}");
        assert!(text.contains("accurate"), "{text}");
        assert!(text.contains("no node"), "{text}");
    }
}

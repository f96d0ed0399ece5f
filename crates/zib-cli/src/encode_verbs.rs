//! `zib encode FILE_ID [--force] [--wait[=safe]]`: asks for an HLS encode of an
//! uploaded video and, when told to, follows the job until it is playable (or safe).
//! stdout is for scripts (the request's answer, then the final job, one JSON line
//! each); progress goes to stderr: a bar for a person, a line per phase for a log.

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

pub async fn run(args: EncodeArgs) -> Result<()> {
    let api = Api::from_env()?;
    let mut body = json!({ "object_key": args.file_id, "force": args.force });
    if let Some(url) = &args.webhook_url {
        body["webhook_url"] = json!(url);
    }
    if let Some(secret) = &args.webhook_secret {
        body["webhook_secret"] = json!(secret);
    }
    let answer = api
        .call(
            Method::POST,
            &["v1", "api", "encoding", "request"],
            Some(body),
        )
        .await
        .with_context(|| format!("requesting an encode of {}", args.file_id))?;
    println!("{answer}");
    let Some(wait) = args.wait else {
        return Ok(());
    };
    let job_id = answer["encoding_id"]
        .as_str()
        .context("the encoding request's answer has no encoding_id")?
        .to_string();
    let job = follow(&api, &job_id, wait).await?;
    println!("{job}");
    let phase = phase_of(&job);
    match outcome(phase, wait) {
        Outcome::Reached => Ok(()),
        _ => {
            let why = job["error_message"]
                .as_str()
                .or(job["cancelled_reason"].as_str())
                .unwrap_or("no reason given");
            bail!("encoding {job_id} ended {phase}: {why}")
        }
    }
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

    #[test]
    fn phase_falls_back_to_status() {
        assert_eq!(phase_of(&json!({"phase": "safe", "status": "x"})), "safe");
        assert_eq!(phase_of(&json!({"status": "queued"})), "queued");
        assert_eq!(phase_of(&json!({})), "");
    }
}

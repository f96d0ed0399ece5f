//! The compute worker (feature `ai`): a node whose models loaded at start-up
//! advertises `transcription:<tier>` / `vision:<tier>`, claims compute jobs one at a
//! time and runs them in memory (docs/ai.md). The source is read like an encoding
//! job's ([`crate::jobs::source`], [`crate::jobs::loopback`]); ffmpeg hands PCM and
//! raw RGB frames back through a pipe; the outputs go from memory to the server.
//! Nothing decrypted is ever written to disk.
//!
//! - [`rpc`]: the compute-job calls;
//! - [`run`]: one job from claim to `done`/`failed`, with its lease renewals;
//! - [`transcribe`]: Whisper over 30 s windows of the audio, SRT and WebVTT;
//! - [`vision`]: scene cuts, sampled frames (OCR, nudity, quality), the transcript,
//!   the ZibSidecar.

mod rpc;
mod run;
mod transcribe;
mod vision;

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use tokio_util::sync::CancellationToken;
use zib_ai::Models;
use zib_media::Tools;
use zib_util::worker::{Tick, Worker, WorkerHandle};

use crate::rpc::RpcError;
use crate::state::NodeState;

/// How often an idle compute worker asks for a job.
const CLAIM_EVERY: Duration = Duration::from_secs(1);
/// A server without the compute routes (older) is asked again this rarely.
const NO_COMPUTE_ROUTES_PAUSE: Duration = Duration::from_secs(60);

/// Loads the models under `dir` (slow: a blocking thread) and says which tiers
/// loaded. `None` when nothing did.
pub async fn load_models(dir: zib_ai::ModelsDir) -> Option<Arc<Models>> {
    let shown = dir.path().display().to_string();
    let models = match tokio::task::spawn_blocking(move || Models::load(&dir)).await {
        Ok(models) => models,
        Err(e) => {
            tracing::warn!(models_dir = %shown, error = %e, "loading the AI models stopped; this node runs no AI");
            return None;
        }
    };
    let capabilities: Vec<String> = models
        .capabilities()
        .iter()
        .map(ToString::to_string)
        .collect();
    if capabilities.is_empty() {
        tracing::warn!(models_dir = %shown, "no AI model loaded (scripts/install-models.sh installs them); this node runs no AI");
        return None;
    }
    tracing::info!(models_dir = %shown, tiers = %capabilities.join(", "), "AI models loaded");
    Some(Arc::new(models))
}

/// What running compute jobs needs; shared by the compute worker and the encoder
/// (which runs an encode's AI at once after it).
pub struct Compute {
    state: Arc<NodeState>,
    tools: Tools,
    models: Arc<Models>,
    /// One compute job at a time per node, whoever claims it.
    slot: tokio::sync::Mutex<()>,
    stop: CancellationToken,
}

impl Compute {
    /// `stop` ends a running job (its ffmpeg is killed) when the node stops.
    pub fn new(
        state: Arc<NodeState>,
        tools: Tools,
        models: Arc<Models>,
        stop: CancellationToken,
    ) -> Self {
        Self {
            state,
            tools,
            models,
            slot: tokio::sync::Mutex::new(()),
            stop,
        }
    }

    /// Claims one job (only `after_encoding_job`'s AI runs, when named) and runs
    /// it to its end; `false` when none was waiting.
    pub async fn claim_and_run(&self, after_encoding_job: Option<&str>) -> Result<bool, RpcError> {
        let _turn = self.slot.lock().await;
        let claimed = self
            .state
            .server
            .claim_compute(&self.state.node_id, after_encoding_job)
            .await?;
        let Some(job) = claimed else {
            return Ok(false);
        };
        tracing::info!(job = %job.job_id, kind = job.kind.as_str(), tier = %job.tier, "claimed a compute job");
        run::run(self, job).await;
        Ok(true)
    }

    /// The AI runs asked with `encoding_job`, one after another, right after this
    /// node encoded it (other nodes wait a grace period for them).
    pub async fn after_encoding(&self, encoding_job: &str) {
        loop {
            match self.claim_and_run(Some(encoding_job)).await {
                Ok(true) => continue,
                Ok(false) => return,
                Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => return,
                Err(e) => {
                    tracing::warn!(job = %encoding_job, error = %e, "could not ask for the encode's AI runs; the compute worker will pick them up");
                    return;
                }
            }
        }
    }
}

/// Claims compute jobs and runs them, one at a time.
pub struct ComputeWorker {
    compute: Arc<Compute>,
    pause: Duration,
}

impl ComputeWorker {
    pub fn new(compute: Arc<Compute>) -> Self {
        Self {
            compute,
            pause: CLAIM_EVERY,
        }
    }
}

impl Worker for ComputeWorker {
    fn name(&self) -> &str {
        "compute"
    }

    fn interval(&self) -> Duration {
        self.pause
    }

    /// A job cut short lapses its lease on the server, which hands it out again.
    fn interruptible(&self) -> bool {
        true
    }

    async fn tick(&mut self, me: &WorkerHandle) -> Result<Tick, String> {
        if !self.compute.state.is_registered() {
            me.set_status("waiting for registration");
            return Ok(Tick::Idle);
        }
        me.set_status("asking for a compute job");
        match self.compute.claim_and_run(None).await {
            Ok(true) => {
                self.pause = CLAIM_EVERY;
                me.set_status("idle");
                Ok(Tick::Busy)
            }
            Ok(false) => {
                self.pause = CLAIM_EVERY;
                me.set_status("idle: no compute job waiting");
                Ok(Tick::Idle)
            }
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => {
                self.pause = NO_COMPUTE_ROUTES_PAUSE;
                me.set_status("the server hands out no compute jobs");
                Ok(Tick::Idle)
            }
            Err(e) => Err(format!("could not ask for a compute job: {e}")),
        }
    }
}

//! The encoder: a node whose ffmpeg works advertises `encode`, claims encoding jobs
//! from the server one at a time and runs them in memory (docs/video.md).
//!
//! - [`source`]: the source envelope read from the server and decrypted in memory;
//! - [`loopback`]: the 127.0.0.1 server ffmpeg reads the plaintext from and writes
//!   its HLS output to;
//! - [`segments`]: output segments encrypted, stored, reported and replicated;
//! - [`thumbnails`]: the poster, sprite sheets and their VTT, made after the ladder;
//! - [`job`]: what a running job's steps share (keys, lease, progress, errors);
//! - [`run`]: one job's steps, its lease renewals.

mod job;
pub(crate) mod loopback;
pub(crate) mod rpc;
mod run;
mod segments;
pub(crate) mod source;
mod thumbnails;

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use tokio_util::sync::CancellationToken;
use zib_media::Tools;
use zib_util::worker::{Tick, Worker, WorkerHandle};

pub use loopback::Output;

use crate::state::NodeState;

/// The capability a node advertises when it can encode.
pub const ENCODE_CAPABILITY: &str = "encode";
/// How often an idle encoder asks for a job.
const CLAIM_EVERY: Duration = Duration::from_secs(1);
/// A server without the job routes (older) is asked again this rarely.
const NO_JOB_ROUTES_PAUSE: Duration = Duration::from_secs(60);

/// The tools if ffmpeg and ffprobe work here (and encoding is not switched off),
/// else `None`, with the reason logged: the node then does not advertise `encode`.
pub async fn find_tools(enabled: bool, tools: Tools) -> Option<Tools> {
    if !enabled {
        tracing::info!("video encoding is switched off (encode = false)");
        return None;
    }
    match tools.check().await {
        Ok(()) => {
            tracing::info!(ffmpeg = %tools.ffmpeg.display(), ffprobe = %tools.ffprobe.display(), "ffmpeg works: this node encodes video");
            Some(tools)
        }
        Err(e) => {
            tracing::warn!(ffmpeg = %tools.ffmpeg.display(), ffprobe = %tools.ffprobe.display(), error = %e, "ffmpeg/ffprobe unusable: this node will not encode video");
            None
        }
    }
}

/// Claims jobs and runs them, one at a time.
pub struct Encoder {
    state: Arc<NodeState>,
    tools: Tools,
    stop: CancellationToken,
    pause: Duration,
    /// Runs a finished encode's AI at once, on this node.
    #[cfg(feature = "ai")]
    compute: Option<Arc<crate::compute::Compute>>,
}

impl Encoder {
    /// `stop` ends a running job (its ffmpeg is killed) when the node stops.
    pub fn new(state: Arc<NodeState>, tools: Tools, stop: CancellationToken) -> Self {
        Self {
            state,
            tools,
            stop,
            pause: CLAIM_EVERY,
            #[cfg(feature = "ai")]
            compute: None,
        }
    }

    /// After each encode it reports done, the encoder claims that encode's AI runs
    /// (`after_encoding_job`) and runs them before the next encode.
    #[cfg(feature = "ai")]
    pub fn with_compute(mut self, compute: Arc<crate::compute::Compute>) -> Self {
        self.compute = Some(compute);
        self
    }
}

impl Worker for Encoder {
    fn name(&self) -> &str {
        "encoder"
    }

    fn interval(&self) -> Duration {
        self.pause
    }

    /// A job cut short lapses its lease on the server, which hands it out again.
    fn interruptible(&self) -> bool {
        true
    }

    async fn tick(&mut self, me: &WorkerHandle) -> Result<Tick, String> {
        if !self.state.is_registered() {
            me.set_status("waiting for registration");
            return Ok(Tick::Idle);
        }
        let claimed = match self.state.server.claim_job(&self.state.node_id).await {
            Ok(claimed) => claimed,
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => {
                self.pause = NO_JOB_ROUTES_PAUSE;
                me.set_status("the server hands out no encoding jobs");
                return Ok(Tick::Idle);
            }
            Err(e) => return Err(format!("could not ask for an encoding job: {e}")),
        };
        self.pause = CLAIM_EVERY;
        let Some(job) = claimed else {
            me.set_status("idle: no encoding job waiting");
            return Ok(Tick::Idle);
        };
        me.set_status(format!("encoding job {}", job.job_id));
        tracing::info!(job = %job.job_id, "claimed an encoding job");
        let job_id = job.job_id.clone();
        let done = run::run(
            self.state.clone(),
            self.tools.clone(),
            job,
            self.stop.child_token(),
        )
        .await;
        #[cfg(feature = "ai")]
        if let (true, Some(compute)) = (done, &self.compute) {
            me.set_status(format!("running the AI of encoding job {job_id}"));
            compute.after_encoding(&job_id).await;
        }
        #[cfg(not(feature = "ai"))]
        let _ = (done, job_id);
        me.set_status("idle");
        Ok(Tick::Busy)
    }
}

#[cfg(test)]
mod tests;

//! One claimed job from start to end: probe, ladder, one ffmpeg per rung (lowest
//! first, each published once its segments are stored), the thumbnails, lease
//! renewal with progress all along, and the final `done` or `failed`. A variant job
//! (`aspect_ratio`) encodes the centre crop's ladder and makes a poster only.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use zib_media::Tools;
use zib_proto::jobs::{ClaimedJob, JobDone, JobFailure, JobProbed, JobStage, RenditionDone};

use super::job::{Job, JobError, ENCODING_SHARE};
use super::loopback::Loopback;
use super::segments::{self, Rendition};
use super::source::Source;
use super::thumbnails::Thumbnails;
use crate::state::NodeState;

/// HLS segment length; keyframes are forced on it.
const SEGMENT_SECS: u32 = 4;
/// Renewals come this often (or at a third of the lease, if that is shorter).
const RENEW_EVERY: Duration = Duration::from_secs(2);
/// Segments pushed to their replicas at the same time.
const PUSHES_AT_ONCE: usize = 2;
/// The encoding stage's share thumbnails count for, after the rungs, when asked.
const THUMBNAILS_PART: f64 = 0.05;
/// How long after ffmpeg exits its last PUTs may still be arriving.
const OUTPUT_WAIT: Duration = Duration::from_secs(15);
/// How long a job that ended early waits for the replica pushes already under way.
const PUSHES_SETTLE: Duration = Duration::from_secs(30);

/// Runs a claimed job to its end and tells the server how it ended (unless the
/// lease is gone, when nothing more is said); `true` when the server took `done`.
pub async fn run(
    state: Arc<NodeState>,
    tools: Tools,
    claimed: ClaimedJob,
    stop: CancellationToken,
) -> bool {
    let job_id = claimed.job_id.clone();
    let lease = claimed.lease_token.clone();
    let cancel = stop.child_token();
    let result = async {
        let mut key = [0u8; 16];
        hex::decode_to_slice(claimed.hls_key.trim(), &mut key).map_err(|_| {
            JobError::Failed("the job's segment key is not 32 hex characters".into())
        })?;
        let job = Arc::new(Job::new(state.clone(), job_id.clone(), lease.clone(), key));
        // Renewals run beside the work; a `410` cancels it.
        let renewer = tokio::spawn(renew(job.clone(), claimed.lease_secs, cancel.clone()));
        let _renewer = AbortOnDrop(renewer);
        // Replica pushes of published rungs, beside the encode of the next ones.
        let mut replication = JoinSet::new();
        let result = tokio::select! {
            r = encode(&job, &tools, &claimed, &cancel, &mut replication) => r,
            _ = cancel.cancelled() => Err(JobError::Gone),
        };
        if result.is_err() {
            cancel.cancel();
            settle_pushes(&mut replication).await;
        }
        drop_unreported(&job).await;
        result
    }
    .await;
    let failure = match result {
        Ok(()) => {
            match state
                .server
                .job_done(&job_id, &JobDone { lease_token: lease })
                .await
            {
                Ok(()) => {
                    tracing::info!(job = %job_id, "encoding job done");
                    return true;
                }
                Err(e) => {
                    tracing::warn!(job = %job_id, error = %e, "could not report the job done");
                    return false;
                }
            }
        }
        Err(JobError::Gone) => {
            tracing::info!(job = %job_id, "encoding job's lease is gone (lapsed or cancelled); dropped");
            return false;
        }
        Err(JobError::Permanent(sentence)) => (sentence, true),
        Err(JobError::Failed(sentence)) => (sentence, false),
    };
    let (error_message, permanent) = failure;
    tracing::warn!(job = %job_id, %error_message, permanent, "encoding job failed");
    if let Err(e) = state
        .server
        .job_failed(
            &job_id,
            &JobFailure {
                lease_token: lease,
                error_message,
                permanent,
            },
        )
        .await
    {
        tracing::warn!(job = %job_id, error = %e, "could not report the job's failure");
    }
    false
}

async fn encode(
    job: &Arc<Job>,
    tools: &Tools,
    claimed: &ClaimedJob,
    cancel: &CancellationToken,
    replication: &mut JoinSet<Result<(), JobError>>,
) -> Result<(), JobError> {
    let state = &job.state;
    let source = Source::new(
        state.peers.clone(),
        &claimed.source,
        &claimed.lease_token,
        state.server.token(),
    )
    .map_err(JobError::source)?;
    let (outputs, mut received) = mpsc::unbounded_channel();
    let loopback = Loopback::start(Arc::new(source), outputs)
        .await
        .map_err(|e| JobError::Failed(format!("the encoder could not start: {e}")))?;
    let input = loopback.source_url();
    let output_base = loopback.output_base();

    let probe = zib_media::probe(tools, &input)
        .await
        .map_err(JobError::media)?;
    // A variant job encodes the centre crop of its ratio; its poster shows the same.
    let (rungs, crop) = match claimed.aspect_ratio.as_deref() {
        None => (zib_media::plan_ladder(&probe), None),
        Some(ratio) => (
            zib_media::plan_variant_ladder(&probe, ratio).map_err(JobError::media)?,
            Some(zib_media::variant_crop(&probe, ratio).map_err(JobError::media)?),
        ),
    };
    if rungs.is_empty() {
        return Err(JobError::Permanent(
            "the video's dimensions leave no rendition to encode".into(),
        ));
    }
    state
        .server
        .job_probed(
            &job.id,
            &JobProbed {
                lease_token: job.lease.clone(),
                probe: probe.clone(),
                renditions: rungs.iter().map(|r| r.plan.clone()).collect(),
            },
        )
        .await
        .map_err(|e| JobError::rpc("the probed video", e))?;

    let pixels = |r: &zib_media::Rung| f64::from(r.plan.width) * f64::from(r.plan.height);
    // The rungs' share of the encoding stage, thumbnails taking the rest: the total
    // is grown so that the last rung ends there.
    let rungs_part = if claimed.thumbnails.is_some() {
        1.0 - THUMBNAILS_PART
    } else {
        1.0
    };
    let total_pixels: f64 = rungs.iter().map(pixels).sum::<f64>().max(1.0) / rungs_part;
    let mut done_pixels = 0.0;
    // Pushes hold a segment in memory each: a few at a time keep the node's memory
    // flat however many segments a rung has.
    let pushing = Arc::new(tokio::sync::Semaphore::new(PUSHES_AT_ONCE));
    let count = rungs.len();
    for (i, rung) in rungs.iter().enumerate() {
        let name = rung.plan.name.clone();
        let detail = format!("encoding {name} ({} of {count})", i + 1);
        let before = done_pixels;
        let share = pixels(rung);
        job.set(
            JobStage::Encoding,
            ENCODING_SHARE * before / total_pixels,
            100.0 * before / total_pixels,
            detail.clone(),
        );
        let mut rendition = Rendition::new(&name);
        let encoding = zib_media::encode_rung(
            zib_media::RungJob {
                tools,
                input: &input,
                rung,
                probe: &probe,
                segment_secs: SEGMENT_SECS,
                output_base: &output_base,
            },
            |fraction| {
                let f = (before + share * fraction.clamp(0.0, 1.0)) / total_pixels;
                job.set(
                    JobStage::Encoding,
                    ENCODING_SHARE * f,
                    100.0 * f,
                    detail.clone(),
                );
            },
            cancel.child_token(),
        );
        tokio::pin!(encoding);
        // Segments are encrypted and stored as they come, while ffmpeg goes on.
        let ended = loop {
            tokio::select! {
                ended = &mut encoding => break ended,
                Some(output) = received.recv() => rendition.accept(job, output).await?,
                Some(pushed) = replication.join_next(), if !replication.is_empty() => {
                    pushed.map_err(|e| JobError::Failed(format!("a segment push stopped: {e}")))??;
                }
            }
        };
        ended.map_err(JobError::media)?;
        // ffmpeg may exit before its last PUTs (the playlist above all) are read.
        let deadline = tokio::time::Instant::now() + OUTPUT_WAIT;
        while !rendition.complete() {
            match tokio::time::timeout_at(deadline, received.recv()).await {
                Ok(Some(output)) => rendition.accept(job, output).await?,
                Ok(None) | Err(_) => return Err(JobError::Failed(rendition.missing())),
            }
        }
        done_pixels += share;
        let (segment_count, pushes) = rendition.report(job).await?;
        job.segments_reported(segment_count);
        state
            .server
            .rendition_published(
                &job.id,
                &name,
                &RenditionDone {
                    lease_token: job.lease.clone(),
                    segment_count,
                },
            )
            .await
            .map_err(|e| JobError::rpc("a finished rendition", e))?;
        tracing::info!(job = %job.id, rendition = %name, segment_count, "rendition published");
        // Replicas are pushed beside the next rung's encode.
        for push in pushes {
            let job = job.clone();
            let pushing = pushing.clone();
            let cancel = cancel.clone();
            replication.spawn(async move {
                let _turn = pushing.acquire_owned().await;
                if cancel.is_cancelled() {
                    return Ok(());
                }
                let pushed = segments::push(&job, push).await;
                job.segment_pushed();
                pushed
            });
        }
    }
    if let Some(plan) = &claimed.thumbnails {
        let detail = "making thumbnails".to_string();
        let thumbnails = Thumbnails {
            tools,
            input: &input,
            probe: &probe,
            plan,
            crop,
        };
        job.set(
            JobStage::Encoding,
            ENCODING_SHARE * rungs_part,
            100.0 * rungs_part,
            detail.clone(),
        );
        // Said at once: a short clip's thumbnails are made before the next renewal.
        renew_now(job).await?;
        // Replica pushes go on meanwhile; their errors are met below.
        thumbnails
            .make(job, cancel, |fraction| {
                let f = rungs_part + THUMBNAILS_PART * fraction.clamp(0.0, 1.0);
                job.set(
                    JobStage::Encoding,
                    ENCODING_SHARE * f,
                    100.0 * f,
                    detail.clone(),
                );
            })
            .await?;
    }
    drop(loopback);
    let (pushed, reported) = job.pushed_and_reported();
    let f = pushed as f64 / reported.max(1) as f64;
    job.set(
        JobStage::Sharding,
        ENCODING_SHARE + (100.0 - ENCODING_SHARE) * f,
        100.0 * f,
        format!("replicating segments ({pushed} of {reported})"),
    );
    // Said at once, not at the next renewal: a short clip's pushes can all finish
    // before it, and the job would never be seen (nor announced) as sharding.
    renew_now(job).await?;
    while let Some(pushed) = replication.join_next().await {
        pushed.map_err(|e| JobError::Failed(format!("a segment push stopped: {e}")))??;
    }
    job.set(
        JobStage::Sharding,
        100.0,
        100.0,
        "every rendition is stored".into(),
    );
    Ok(())
}

/// Deletes the segments this job stored that the server never recorded.
/// Lets the pushes already under way end (those still queued see the job stopped
/// and do nothing): a copy cut off mid-way may still land on its target, while one
/// that ends is reported, and the server deletes the copies of a cancelled job.
async fn settle_pushes(replication: &mut JoinSet<Result<(), JobError>>) {
    let settled = tokio::time::timeout(PUSHES_SETTLE, async {
        while replication.join_next().await.is_some() {}
    })
    .await;
    if settled.is_err() {
        tracing::warn!(
            left = replication.len(),
            "replica pushes still running after the job ended; stopped"
        );
        replication.abort_all();
    }
}

async fn drop_unreported(job: &Job) {
    let blobs: Vec<zib_proto::BlobId> = job
        .unreported
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .drain()
        .collect();
    for blob in blobs {
        if let Err(e) = job.state.store.delete(blob).await {
            tracing::warn!(job = %job.id, %blob, error = %e, "could not delete an unreported segment; the orphan collector will");
        }
    }
}

/// One renewal now, carrying the job's current stage and progress.
async fn renew_now(job: &Job) -> Result<(), JobError> {
    match job.state.server.renew_lease(&job.id, &job.renewal()).await {
        Ok(_) => Ok(()),
        Err(e) if super::rpc::is_gone(&e) => Err(JobError::Gone),
        Err(e) => {
            // The periodic renewal says it again shortly.
            tracing::warn!(job = %job.id, error = %e, "lease renewal failed; trying again");
            Ok(())
        }
    }
}

/// Renews the lease until the job ends; a `410` (lapsed or cancelled) cancels it.
async fn renew(job: Arc<Job>, lease_secs: u64, cancel: CancellationToken) {
    let every = RENEW_EVERY.min(Duration::from_secs(lease_secs.max(1)) / 3);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = cancel.cancelled() => return,
        }
        match job.state.server.renew_lease(&job.id, &job.renewal()).await {
            Ok(_) => {}
            Err(e) if super::rpc::is_gone(&e) => {
                tracing::info!(job = %job.id, "the server ended this job's lease; stopping it");
                cancel.cancel();
                return;
            }
            Err(e) => {
                tracing::warn!(job = %job.id, error = %e, "lease renewal failed; trying again")
            }
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

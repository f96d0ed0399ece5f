//! One rendition's output: ffmpeg's plaintext TS segments, taken as the rung's
//! playlist lists them, encrypted (AES-128-CBC, IV = media sequence number), stored
//! here as segment blobs, reported to the server and pushed whole to the replica
//! targets it answers.

use std::collections::HashMap;

use bytes::Bytes;
use zib_crypto::hls;
use zib_proto::jobs::{ReplicasStored, SegmentStored};
use zib_proto::BlobId;

use super::run::{Job, JobError};
use super::Output;
use crate::distribute::push_blob;

/// What ffmpeg wrote for one rung and how far storing it got.
pub struct Rendition {
    pub name: String,
    /// Segments received but not yet listed by a playlist, by file name.
    waiting: HashMap<String, Bytes>,
    /// The rung's latest playlist: segment URIs and durations, in order.
    listed: Vec<(String, f64)>,
    /// Segments stored and reported so far (also the next media sequence number).
    pub stored: u32,
}

impl Rendition {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            waiting: HashMap::new(),
            listed: Vec::new(),
            stored: 0,
        }
    }

    /// Segments received and not stored yet.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Takes one file ffmpeg wrote; stores every segment the playlist now lists.
    pub async fn accept(&mut self, job: &Job, output: Output) -> Result<(), JobError> {
        match output {
            Output::Segment { name, bytes } => {
                if name.starts_with(&format!("{}_", self.name)) {
                    self.waiting.insert(name, bytes);
                } else {
                    tracing::warn!(job = %job.id, %name, rendition = %self.name, "ignoring a segment of another rendition");
                }
                Ok(())
            }
            Output::Playlist { name, text } => {
                if name == format!("{}.m3u8", self.name) {
                    self.listed = zib_media::parse_media_playlist(&text);
                    self.store_listed(job, false).await
                } else {
                    Ok(())
                }
            }
        }
    }

    /// After ffmpeg ended: every listed segment must be here; stores the rest.
    /// Returns the rendition's segment count.
    pub async fn finish(&mut self, job: &Job) -> Result<u32, JobError> {
        self.store_listed(job, true).await?;
        if self.stored == 0 {
            return Err(JobError::Failed(format!(
                "the encoder produced no segments for {}",
                self.name
            )));
        }
        if !self.waiting.is_empty() {
            tracing::warn!(job = %job.id, rendition = %self.name, unlisted = self.waiting.len(), "ffmpeg wrote segments its playlist does not list; dropped");
        }
        Ok(self.stored)
    }

    async fn store_listed(&mut self, job: &Job, last: bool) -> Result<(), JobError> {
        while let Some((uri, duration)) = self.listed.get(self.stored as usize).cloned() {
            let file = uri.rsplit('/').next().unwrap_or(&uri).to_string();
            let Some(bytes) = self.waiting.remove(&file) else {
                if last {
                    return Err(JobError::Failed(format!(
                        "the encoder listed segment {file} of {} but never wrote it",
                        self.name
                    )));
                }
                return Ok(());
            };
            store_segment(job, &self.name, self.stored, duration, bytes).await?;
            self.stored += 1;
            job.segment_done();
        }
        Ok(())
    }
}

/// Encrypts, stores, reports and replicates one segment.
async fn store_segment(
    job: &Job,
    rendition: &str,
    seq: u32,
    duration: f64,
    plain: Bytes,
) -> Result<(), JobError> {
    let iv = hls::iv_for_sequence(u64::from(seq));
    let sealed = Bytes::from(hls::encrypt_segment(&job.hls_key, &iv, &plain));
    drop(plain);
    let blob = BlobId::new_random();
    let blake3 = blake3::hash(&sealed).to_hex().to_string();
    let state = &job.state;
    let local = async {
        state.store.mark_segment(blob).await?;
        state.store.put_bytes(blob, &sealed).await
    };
    local.await.map_err(|e| {
        tracing::error!(job = %job.id, %blob, error = %e, "could not store a segment");
        JobError::Failed(format!(
            "the encoding node could not store a segment of {rendition}: {e}"
        ))
    })?;
    let targets = state
        .server
        .segment_stored(
            &job.id,
            &SegmentStored {
                node_id: state.node_id.clone(),
                lease_token: job.lease.clone(),
                rendition: rendition.to_string(),
                seq,
                duration_ms: (duration.max(0.0) * 1000.0).round() as u64,
                size: sealed.len() as u64,
                blake3: blake3.clone(),
                iv: hex::encode(iv),
                blob_id: blob,
            },
        )
        .await
        .map_err(|e| JobError::rpc("a stored segment", e))?;

    let pushes = targets.targets.iter().map(|target| {
        let sealed = sealed.clone();
        async move {
            let answer = push_blob(state, &target.node_url, blob, &target.token, sealed).await;
            (target, answer)
        }
    });
    let mut confirmed = Vec::new();
    for (target, answer) in futures::future::join_all(pushes).await {
        match answer {
            Ok(Some(hash)) if hash == blake3 => confirmed.push(target.node_id.clone()),
            Ok(Some(hash)) => {
                tracing::warn!(job = %job.id, %blob, peer = %target.node_id, %hash, "a replica answered a different hash")
            }
            // Stored by an earlier attempt whose answer was lost: unproven, so left
            // to the server's checks rather than reported.
            Ok(None) => {}
            Err(reason) => {
                tracing::warn!(job = %job.id, %blob, peer = %target.node_id, %reason, "could not push a segment replica")
            }
        }
    }
    if !confirmed.is_empty() {
        state
            .server
            .replicas_stored(
                &job.id,
                &ReplicasStored {
                    lease_token: job.lease.clone(),
                    blob_id: blob,
                    node_ids: confirmed,
                },
            )
            .await
            .map_err(|e| JobError::rpc("the segment's replicas", e))?;
    }
    Ok(())
}

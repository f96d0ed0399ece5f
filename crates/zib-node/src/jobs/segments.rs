//! One rendition's output. Each plaintext TS segment ffmpeg PUTs is encrypted at
//! once (AES-128-CBC, IV = its media sequence number) and stored here as a segment
//! blob, so no plaintext piles up in memory. ffmpeg sends the VOD playlist (with the
//! durations) only when the rung ends; then every segment it lists is reported to
//! the server, and the replica pushes the server answers are returned to run beside
//! the next rung.

use std::collections::HashMap;

use bytes::Bytes;
use zib_crypto::hls;
use zib_proto::jobs::{ReplicaTarget, ReplicasStored, SegmentStored};
use zib_proto::BlobId;

use super::job::{Job, JobError};
use super::Output;
use crate::distribute::push_blob;

/// A segment encrypted and stored on this node.
struct Sealed {
    seq: u32,
    blob: BlobId,
    size: u64,
    blake3: String,
}

/// A reported segment still to be pushed to its replicas.
pub struct Push {
    blob: BlobId,
    blake3: String,
    targets: Vec<ReplicaTarget>,
}

/// What ffmpeg wrote for one rung so far.
pub struct Rendition {
    pub name: String,
    /// Stored segments by file name.
    sealed: HashMap<String, Sealed>,
    /// The final playlist's segments (URI, seconds), once it came.
    listed: Option<Vec<(String, f64)>>,
}

impl Rendition {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            sealed: HashMap::new(),
            listed: None,
        }
    }

    /// Takes one file ffmpeg wrote.
    pub async fn accept(&mut self, job: &Job, output: Output) -> Result<(), JobError> {
        match output {
            Output::Segment { name, bytes } => {
                let Some(seq) = zib_media::segment_seq(&self.name, &name) else {
                    tracing::warn!(job = %job.id, %name, rendition = %self.name, "ignoring a file that is no segment of this rendition");
                    return Ok(());
                };
                let sealed = seal_and_store(job, &self.name, seq, bytes).await?;
                self.sealed.insert(name, sealed);
                Ok(())
            }
            Output::Playlist { name, text } => {
                if name == format!("{}.m3u8", self.name) && text.contains("#EXT-X-ENDLIST") {
                    self.listed = Some(zib_media::parse_media_playlist(&text));
                }
                Ok(())
            }
        }
    }

    /// The final playlist came, and every segment it lists.
    pub fn complete(&self) -> bool {
        self.listed.as_ref().is_some_and(|listed| {
            listed
                .iter()
                .all(|(uri, _)| self.sealed.contains_key(file_of(uri)))
        })
    }

    /// Why the rung is not complete, for the job's error.
    pub fn missing(&self) -> String {
        match &self.listed {
            None => format!("the encoder never sent the playlist of {}", self.name),
            Some(listed) => {
                let missing: Vec<&str> = listed
                    .iter()
                    .map(|(uri, _)| file_of(uri))
                    .filter(|f| !self.sealed.contains_key(*f))
                    .collect();
                format!(
                    "the encoder listed {} segment(s) of {} it never sent ({})",
                    missing.len(),
                    self.name,
                    missing.join(", ")
                )
            }
        }
    }

    /// Reports every listed segment (in order) to the server; returns how many
    /// there are and the replica pushes to make.
    pub async fn report(&mut self, job: &Job) -> Result<(u32, Vec<Push>), JobError> {
        let listed = self.listed.take().unwrap_or_default();
        if listed.is_empty() {
            return Err(JobError::Failed(format!(
                "the encoder produced no segments for {}",
                self.name
            )));
        }
        let mut pushes = Vec::with_capacity(listed.len());
        for (index, (uri, duration)) in listed.iter().enumerate() {
            let sealed = self.sealed.get(file_of(uri)).ok_or_else(|| {
                JobError::Failed(format!("segment {uri} of {} is missing", self.name))
            })?;
            // The playlist starts at sequence 0: position and file number agree, so
            // the IV a player derives is the one the segment was sealed with.
            if sealed.seq as usize != index {
                return Err(JobError::Failed(format!(
                    "the playlist of {} lists segment {} in position {index}",
                    self.name, sealed.seq
                )));
            }
            let targets = job
                .state
                .server
                .segment_stored(
                    &job.id,
                    &SegmentStored {
                        node_id: job.state.node_id.clone(),
                        lease_token: job.lease.clone(),
                        rendition: self.name.clone(),
                        seq: sealed.seq,
                        duration_ms: (duration.max(0.0) * 1000.0).round() as u64,
                        size: sealed.size,
                        blake3: sealed.blake3.clone(),
                        iv: hex::encode(hls::iv_for_sequence(u64::from(sealed.seq))),
                        blob_id: sealed.blob,
                    },
                )
                .await
                .map_err(|e| JobError::rpc("a stored segment", e))?;
            job.unreported
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&sealed.blob);
            pushes.push(Push {
                blob: sealed.blob,
                blake3: sealed.blake3.clone(),
                targets: targets.targets,
            });
        }
        let count = u32::try_from(listed.len())
            .map_err(|_| JobError::Failed(format!("{} has too many segments", self.name)))?;
        let unlisted = self.sealed.len().saturating_sub(listed.len());
        if unlisted > 0 {
            tracing::warn!(job = %job.id, rendition = %self.name, unlisted, "ffmpeg wrote segments its playlist does not list");
        }
        Ok((count, pushes))
    }
}

fn file_of(uri: &str) -> &str {
    uri.rsplit('/').next().unwrap_or(uri)
}

async fn seal_and_store(
    job: &Job,
    rendition: &str,
    seq: u32,
    plain: Bytes,
) -> Result<Sealed, JobError> {
    let iv = hls::iv_for_sequence(u64::from(seq));
    let sealed = hls::encrypt_segment(&job.hls_key, &iv, &plain);
    drop(plain);
    let blob = BlobId::new_random();
    let store = &job.state.store;
    // Counted before a byte is written, so a job stopped mid-write still cleans up.
    job.unreported
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(blob);
    let stored = async {
        // Marked first: a crash in between leaves a marker without a blob (a 404),
        // never a public blob that is not a segment.
        store.mark_segment(blob).await?;
        store.put_bytes(blob, &sealed).await
    };
    stored.await.map_err(|e| {
        tracing::error!(job = %job.id, %blob, error = %e, "could not store a segment");
        JobError::Failed(format!(
            "the encoding node could not store a segment of {rendition}: {e}"
        ))
    })?;
    Ok(Sealed {
        seq,
        blob,
        size: sealed.len() as u64,
        blake3: blake3::hash(&sealed).to_hex().to_string(),
    })
}

/// Pushes one reported segment, read back from this node's store, to its replica
/// targets and reports the peers that answered with its BLAKE3. A peer that fails
/// is left to the server's repair; only the server ending the job stops this.
pub async fn push(job: &Job, push: Push) -> Result<(), JobError> {
    if push.targets.is_empty() {
        return Ok(());
    }
    let path = job.state.store.blob_path(push.blob);
    let bytes = Bytes::from(tokio::fs::read(&path).await.map_err(|e| {
        JobError::Failed(format!(
            "the encoding node could not read back a stored segment: {e}"
        ))
    })?);
    let sends = push.targets.iter().map(|target| {
        let bytes = bytes.clone();
        let state = &job.state;
        async move {
            let answer = push_blob(state, &target.node_url, push.blob, &target.token, bytes).await;
            (target, answer)
        }
    });
    let mut confirmed = Vec::new();
    for (target, answer) in futures::future::join_all(sends).await {
        match answer {
            Ok(Some(hash)) if hash == push.blake3 => confirmed.push(target.node_id.clone()),
            Ok(Some(hash)) => {
                tracing::warn!(job = %job.id, blob = %push.blob, peer = %target.node_id, %hash, "a replica answered a different hash")
            }
            // Stored by an earlier attempt whose answer was lost: unproven, so left
            // to the server's checks rather than reported.
            Ok(None) => {}
            Err(reason) => {
                tracing::warn!(job = %job.id, blob = %push.blob, peer = %target.node_id, %reason, "could not push a segment replica")
            }
        }
    }
    if confirmed.is_empty() {
        return Ok(());
    }
    job.state
        .server
        .replicas_stored(
            &job.id,
            &ReplicasStored {
                lease_token: job.lease.clone(),
                blob_id: push.blob,
                node_ids: confirmed,
            },
        )
        .await
        .map_err(|e| JobError::rpc("the segment's replicas", e))
}

//! A job's thumbnails, made after its ladder: a poster, and for a main job the
//! scrub-bar sprite sheets and their WebVTT track. ffmpeg reads the same loopback
//! source and hands every image back through a pipe; each artefact goes straight from
//! memory to the server, which seals and stores it as a file of the tenant. The VTT
//! names the sheets by the URLs the server answered, so it is sent last; the set is
//! then registered, before `done`, so `encoding.complete` carries it.

use tokio_util::sync::CancellationToken;
use zib_media::{Crop, Tools, VideoProbe};
use zib_proto::jobs::{ArtifactKind, ArtifactStored, ThumbnailPlan, ThumbnailsRegistered};

use super::job::{Job, JobError};

/// Where one job's thumbnails come from.
pub struct Thumbnails<'a> {
    pub tools: &'a Tools,
    /// The loopback source URL.
    pub input: &'a str,
    pub probe: &'a VideoProbe,
    pub plan: &'a ThumbnailPlan,
    /// The variant's centre crop (its poster shows what its stream shows).
    pub crop: Option<Crop>,
}

impl Thumbnails<'_> {
    /// Makes, uploads and registers every artefact of the plan. `step(f)` reports
    /// how far along it is (0–1).
    pub async fn make(
        &self,
        job: &Job,
        cancel: &CancellationToken,
        step: impl Fn(f64),
    ) -> Result<(), JobError> {
        let probe = self.probe;
        let sprites = self.plan.sprite;
        // The poster is quick; the sprites decode the whole video once more.
        let poster_share = if sprites.is_some() { 0.2 } else { 0.9 };
        let at = zib_media::poster_time(
            probe.duration_secs,
            probe.frame_rate,
            self.plan.poster_at.as_deref(),
        )
        .map_err(JobError::media)?;
        let poster = zib_media::poster(
            self.tools,
            self.input,
            probe,
            at,
            self.crop,
            cancel.child_token(),
        )
        .await
        .map_err(JobError::media)?;
        let poster = upload(job, ArtifactKind::Poster, 0, poster).await?;
        step(poster_share);

        let mut sheet_ids = Vec::new();
        let mut vtt_id = None;
        if let Some(sprites) = sprites {
            let made = zib_media::sprite_sheets(
                self.tools,
                self.input,
                probe,
                sprites.interval_secs,
                sprites.width_px,
                cancel.child_token(),
            )
            .await
            .map_err(JobError::media)?;
            step(0.7);
            let mut urls = Vec::with_capacity(made.sheets.len());
            for (seq, sheet) in made.sheets.iter().enumerate() {
                let seq = u32::try_from(seq)
                    .map_err(|_| JobError::Failed("too many sprite sheets".into()))?;
                // One sheet copied at a time (a few hundred KB): the upload owns its body.
                let stored = upload(job, ArtifactKind::SpriteSheet, seq, sheet.clone()).await?;
                sheet_ids.push(stored.file_id);
                urls.push(stored.url);
            }
            let vtt = zib_media::sprite_vtt(&made, &urls, probe.duration_secs);
            drop(made);
            let stored = upload(job, ArtifactKind::SpriteVtt, 0, vtt.into_bytes()).await?;
            vtt_id = Some(stored.file_id);
        }
        job.state
            .server
            .thumbnails_registered(
                &job.id,
                &ThumbnailsRegistered {
                    lease_token: job.lease.clone(),
                    poster_file_id: poster.file_id,
                    sprite_sheet_file_ids: sheet_ids,
                    sprite_vtt_file_id: vtt_id,
                },
            )
            .await
            .map_err(|e| JobError::rpc("the thumbnails", e))?;
        step(1.0);
        tracing::info!(job = %job.id, "thumbnails stored and registered");
        Ok(())
    }
}

async fn upload(
    job: &Job,
    kind: ArtifactKind,
    seq: u32,
    bytes: Vec<u8>,
) -> Result<ArtifactStored, JobError> {
    job.state
        .server
        .upload_artifact(&job.id, &job.lease, kind, seq, bytes)
        .await
        .map_err(|e| JobError::rpc(&format!("the {}", what(kind)), e))
}

fn what(kind: ArtifactKind) -> &'static str {
    match kind {
        ArtifactKind::Poster => "poster",
        ArtifactKind::SpriteSheet => "sprite sheet",
        ArtifactKind::SpriteVtt => "sprite track",
    }
}

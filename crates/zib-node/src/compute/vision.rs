//! A vision run: ffmpeg finds the scene cuts, then hands sampled frames (raw RGB on
//! a pipe, one in memory at a time) to OCR, the nudity detector and the quality
//! measure; the audio is transcribed like a transcription job's (standard: the
//! fastest loaded Whisper, hq: the best; none loaded: no transcript); the
//! ZibSidecar is assembled from it all and goes to the server as JSON.

use zib_ai::sidecar::{FrameFindings, VisionInputs};
use zib_ai::RgbFrame;
use zib_proto::compute::ComputeOutputKind;
use zib_proto::pipeline::VisionTier;
use zib_proto::sidecar::SidecarModels;

use super::run::{clock, ComputeError, Input, Running};
use super::transcribe::transcribe;

/// Scene-change score above which ffmpeg counts a cut.
const CUT_THRESHOLD: f64 = 0.3;

/// How a tier samples frames: every this many seconds, at this width, at most
/// this many (the interval widens for long videos).
struct Sampling {
    every_secs: f64,
    width: u32,
    max_frames: u32,
}

fn sampling(tier: VisionTier) -> Sampling {
    match tier {
        VisionTier::Standard => Sampling {
            every_secs: 2.0,
            width: 640,
            max_frames: 300,
        },
        VisionTier::Hq => Sampling {
            every_secs: 1.0,
            width: 960,
            max_frames: 600,
        },
    }
}

/// The sampling interval that keeps a video of `duration` within the tier's cap.
fn interval(s: &Sampling, duration: f64) -> f64 {
    if duration.is_finite() && duration > 0.0 {
        s.every_secs.max(duration / f64::from(s.max_frames))
    } else {
        s.every_secs
    }
}

/// Progress shares: cuts, frames, transcript; the sidecar and its upload the rest.
const CUTS_SHARE: f64 = 10.0;
const FRAMES_SHARE: f64 = 50.0;
const TRANSCRIPT_SHARE: f64 = 30.0;

/// Runs a vision job; `Ok` is the transcript's language, when there is speech.
pub async fn run(
    input: &Input<'_>,
    job: &Running,
    tier: VisionTier,
) -> Result<Option<String>, ComputeError> {
    let models = input.compute.models.clone();
    let vision = models
        .vision
        .clone()
        .ok_or_else(|| ComputeError::Failed("this node has no vision models loaded".into()))?;
    let tools = &input.compute.tools;
    let probe = zib_media::probe(tools, &input.url)
        .await
        .map_err(ComputeError::media)?;
    let duration = probe.duration_secs;
    let total = clock(duration);

    job.set(0.0, "finding scene cuts".into());
    let cuts = zib_media::scene_cuts(tools, &input.url, CUT_THRESHOLD, input.cancel.child_token())
        .await
        .map_err(ComputeError::media)?;
    let cuts: Vec<(f64, f64)> = cuts.iter().map(|c| (c.time_secs, c.score)).collect();

    let plan = sampling(tier);
    let every = interval(&plan, duration);
    let fraction = |at: f64| {
        if duration > 0.0 {
            (at / duration).clamp(0.0, 1.0)
        } else {
            1.0
        }
    };
    job.set(CUTS_SHARE, format!("reading frames 00:00 of {total}"));
    let mut frames = zib_media::sample_frames(
        tools,
        &input.url,
        every,
        plan.width,
        input.cancel.child_token(),
    );
    let mut findings: Vec<FrameFindings> = Vec::new();
    while let Some(frame) = frames.next().await {
        let frame = frame.map_err(ComputeError::media)?;
        let time_secs = frame.time_secs;
        let rgb = RgbFrame {
            width: frame.width,
            height: frame.height,
            data: frame.rgb,
        };
        let models = vision.clone();
        // The frame moves to the blocking thread and is dropped there.
        let found = tokio::task::spawn_blocking(move || {
            let text = models.ocr.read(&rgb)?;
            let nudity = models.nudity.score(&rgb)?;
            let quality = zib_ai::sidecar::frame_quality(&rgb);
            Ok::<_, zib_ai::AiError>(FrameFindings {
                time_secs,
                text,
                nudity: nudity.exposed,
                quality,
            })
        })
        .await
        .map_err(ComputeError::task)?
        .map_err(ComputeError::model)?;
        findings.push(found);
        job.set(
            CUTS_SHARE + FRAMES_SHARE * fraction(time_secs),
            format!("reading frames {} of {total}", clock(time_secs)),
        );
    }
    drop(frames);

    // standard: the fastest loaded Whisper; hq: the best.
    let whisper = match tier {
        VisionTier::Standard => models.transcribers.first(),
        VisionTier::Hq => models.transcribers.last(),
    }
    .map(|(_, t)| t.clone());
    let base = CUTS_SHARE + FRAMES_SHARE;
    let transcript = match &whisper {
        Some(whisper) if probe.has_audio() => {
            job.set(base, format!("transcribing 00:00 of {total}"));
            Some(
                transcribe(input, whisper.clone(), |done| {
                    job.set(
                        base + TRANSCRIPT_SHARE * fraction(done),
                        format!("transcribing {} of {total}", clock(done.min(duration))),
                    );
                })
                .await?,
            )
        }
        _ => None,
    };
    let language = transcript.as_ref().map(|t| t.language.clone());

    job.set(base + TRANSCRIPT_SHARE, "assembling the sidecar".into());
    let frames_sampled = u32::try_from(findings.len()).unwrap_or(u32::MAX);
    let inputs = VisionInputs {
        file_id: input.claimed.file_id.to_string(),
        tier,
        duration_secs: duration,
        cuts,
        frames: findings,
        transcript,
        models: SidecarModels {
            ocr: vision.ocr.model_name().to_string(),
            nudity: vision.nudity.model_name().to_string(),
            embeddings: vision.embedder.model_name().to_string(),
            transcription: whisper.map(|w| w.model_name().to_string()),
            frames_sampled,
        },
    };
    let generated_at = zib_util::time::rfc3339(zib_util::time::now_ms());
    let models = vision.clone();
    let sidecar = tokio::task::spawn_blocking(move || {
        zib_ai::sidecar::build(&inputs, &models.embedder, generated_at)
    })
    .await
    .map_err(ComputeError::task)?
    .map_err(ComputeError::model)?;
    let json = serde_json::to_vec(&sidecar)
        .map_err(|e| ComputeError::Failed(format!("the sidecar could not be written: {e}")))?;
    job.output(ComputeOutputKind::Sidecar, json).await?;
    job.set(100.0, "sidecar stored".into());
    tracing::info!(job = %job.id, frames = sidecar.models.frames_sampled, scenes = sidecar.scenes.len(), "vision run done");
    Ok(language)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_videos_widen_the_interval_to_the_cap() {
        let s = sampling(VisionTier::Standard);
        assert_eq!(interval(&s, 60.0), 2.0);
        assert_eq!(interval(&s, 3600.0), 12.0);
        assert_eq!(interval(&s, f64::NAN), 2.0);
        let hq = sampling(VisionTier::Hq);
        assert_eq!(interval(&hq, 600.0), 1.0);
        assert_eq!(interval(&hq, 1200.0), 2.0);
    }
}

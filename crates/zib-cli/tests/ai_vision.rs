//! A standalone vision run on a real `zib dev` built with `ai`, on the real models
//! (PP-OCRv4, NudeNet, all-MiniLM-L6-v2, Whisper for the transcript): a generated
//! clip of three shots with hard cuts at known times, a caption burned in with
//! ffmpeg `drawtext`, and espeak-ng talking about cooking. `POST
//! /v1/api/compute/vision` → the job completes → the sidecar, read back through the
//! CDN, parses as a ZibSidecar whose fields come from those signals: the caption is
//! read (character error rate measured), the cuts are found within 0.5 s, a food
//! category ranks above unrelated ones (automotive, sports), the transcript is the
//! speech, and nothing unsafe is flagged on plain colour shots.

#[path = "common/ai.rs"]
mod ai;
mod common;
#[path = "common/video.rs"]
mod video;

use std::time::Duration;

use common::*;
use serde_json::json;
use zib_proto::sidecar::ZibSidecar;

const SPEECH: &str = "Today we are cooking a simple tomato pasta in the kitchen. \
    Boil salted water and cook the spaghetti until tender. Meanwhile, fry garlic in \
    olive oil, add chopped tomatoes and fresh basil, and simmer the sauce. Toss the \
    noodles with the sauce and serve with grated parmesan cheese.";
const CAPTION: &str = "FRESH PASTA";
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
/// Three shots of plain colours far apart in brightness and hue.
const SHOTS: [&str; 3] = ["0x102040", "0xE0D0A0", "0x30A050"];
const CUT_TOLERANCE: f64 = 0.5;
const AI_RUN: Duration = Duration::from_secs(900);

/// The word error rate of the characters (spaces dropped): how far a read caption is
/// from the one drawn.
fn char_error_rate(reference: &str, read: &str) -> f64 {
    let spaced = |s: &str| {
        s.chars()
            .filter(|c| c.is_alphanumeric())
            .flat_map(char::to_uppercase)
            .map(String::from)
            .collect::<Vec<_>>()
            .join(" ")
    };
    zib_ai::wer::word_error_rate(&spaced(reference), &spaced(read))
}

/// The best (lowest) rank of a category whose name contains any of `words`; the list's
/// length when none does (ranked below everything listed).
fn best_rank(sidecar: &ZibSidecar, words: &[&str]) -> usize {
    let cats = &sidecar.content_classification.iab_categories;
    cats.iter()
        .position(|c| {
            let name = c.name.to_lowercase();
            words.iter().any(|w| name.contains(w))
        })
        .unwrap_or(cats.len())
}

#[test]
fn a_standalone_vision_run_reads_text_cuts_and_topic() {
    ai::require_models(&["fastest", "vision"]);
    let work = tempfile::tempdir().unwrap();
    let (wav, speech) = ai::speak(work.path(), "cooking.wav", SPEECH);
    let shot = ((speech + 1.0) / 3.0).ceil();
    let seconds = 3.0 * shot;
    let cuts = [shot, 2.0 * shot];
    let sources: Vec<String> = SHOTS
        .iter()
        .enumerate()
        .map(|(i, c)| format!("color=c={c}:s=640x360:r=10:d={shot}[c{i}]"))
        .collect();
    let video = format!(
        "{};[c0][c1][c2]concat=n=3:v=1:a=0,drawtext=fontfile={FONT}:text='{CAPTION}':\
         fontsize=64:fontcolor=white:box=1:boxcolor=black@0.85:boxborderw=12:\
         x=(w-tw)/2:y=(h-th)/2[v]",
        sources.join(";")
    );
    let clip = ai::clip_with_speech(work.path(), "cooking.mp4", &video, &wav, seconds);
    let duration = ai::duration_of(&clip);

    // One node with the vision models and Whisper tiny.en (the transcript's).
    let models = ai::models_subset(work.path(), &["fastest", "vision"]);
    let cluster = ai::start_cluster(3, 1, &[("ZIB_MODELS_DIR", models.to_str().unwrap())]);
    let tenant = ai::tenant(&cluster);
    let (file_id, _) = cluster.upload(&clip, "ai-clips", "cooking.mp4");

    // An unknown tier is refused, naming the field.
    let (code, body) = tenant.call(
        reqwest::Method::POST,
        "/v1/api/compute/vision",
        Some(json!({"file_id": file_id, "tier": "ultra"})),
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.to_string().contains("tier"), "{body}");

    let (code, submitted) = tenant.call(
        reqwest::Method::POST,
        "/v1/api/compute/vision",
        Some(json!({"file_id": file_id, "tier": "standard"})),
    );
    assert_eq!(code, 202, "{submitted}");
    assert_eq!(submitted["kind"], "vision", "{submitted}");
    assert_eq!(submitted["tier"], "standard", "{submitted}");
    let job_id = submitted["job_id"].as_str().expect("job_id").to_string();
    // Asking again while it runs names the same job.
    let (code, again) = tenant.call(
        reqwest::Method::POST,
        "/v1/api/compute/vision",
        Some(json!({"file_id": file_id, "tier": "standard"})),
    );
    if code == 200 {
        assert_eq!(again["job_id"], job_id.as_str(), "{again}");
    }

    let job = ai::wait_compute(&tenant, &job_id, AI_RUN);
    assert_eq!(job["progress"], 100, "{job}");
    assert!(job["encoding_job_id"].is_null(), "{job}");
    let sidecar_id = job["sidecar_file_id"].as_str().expect("sidecar_file_id");
    assert!(
        job["sidecar_url"]
            .as_str()
            .is_some_and(|u| u.ends_with(&format!("/objects/{sidecar_id}"))),
        "{job}"
    );
    let text = ai::object_text(&cluster, sidecar_id);
    let sidecar: ZibSidecar = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("the sidecar is not a ZibSidecar ({e}): {text}"));
    assert_eq!(sidecar.file_id, file_id);
    assert_eq!(sidecar.tier, "standard");
    assert!(
        (sidecar.duration_secs - duration).abs() < 1.0,
        "duration {} vs {duration}",
        sidecar.duration_secs
    );

    // The caption, read off the frames.
    let best = sidecar
        .on_screen_text
        .iter()
        .map(|t| (char_error_rate(CAPTION, &t.text), t.text.as_str()))
        .min_by(|a, b| a.0.total_cmp(&b.0));
    eprintln!(
        "on-screen text: best {best:?} of {:?}",
        sidecar.on_screen_text
    );
    let (cer, read) = best.unwrap_or_else(|| panic!("no on-screen text: {text}"));
    assert!(cer <= 0.2, "caption read as {read:?} (CER {cer:.2})");

    // The shots: cuts where they were made and nowhere else, covering the clip.
    let found: Vec<f64> = sidecar
        .scenes
        .iter()
        .skip(1)
        .map(|s| s.start_secs)
        .collect();
    eprintln!("cuts at {found:?}, made at {cuts:?}");
    for cut in cuts {
        assert!(
            found.iter().any(|f| (f - cut).abs() <= CUT_TOLERANCE),
            "no cut found within {CUT_TOLERANCE} s of {cut}: {found:?}"
        );
    }
    for f in &found {
        assert!(
            cuts.iter().any(|c| (f - c).abs() <= CUT_TOLERANCE),
            "a cut at {f} s where none was made: {found:?}"
        );
    }
    let first = sidecar.scenes.first().expect("scenes");
    let last = sidecar.scenes.last().expect("scenes");
    assert!(first.start_secs.abs() < 0.2, "{:?}", sidecar.scenes);
    assert!(
        (last.end_secs - duration).abs() < 1.0,
        "{:?}",
        sidecar.scenes
    );

    // The topic: a food category above unrelated ones.
    let names: Vec<(&str, f64)> = sidecar
        .content_classification
        .iab_categories
        .iter()
        .map(|c| (c.name.as_str(), c.score))
        .collect();
    eprintln!("IAB categories: {names:?}");
    let food = best_rank(&sidecar, &["food", "cooking", "recipe"]);
    assert!(food < names.len(), "no food category at all: {names:?}");
    for unrelated in [&["automotive"][..], &["sports"][..]] {
        let rank = best_rank(&sidecar, unrelated);
        assert!(
            food < rank,
            "food ranks {food}, {unrelated:?} {rank}: {names:?}"
        );
    }

    // The transcript is the speech; chapters and safety are filled in.
    let wer = zib_ai::wer::word_error_rate(SPEECH, &sidecar.transcript.full_text);
    eprintln!(
        "sidecar transcript WER {wer:.3}: {:?}",
        sidecar.transcript.full_text
    );
    assert!(wer < 0.5, "transcript WER {wer:.3}");
    // Chapters cover the clip from 0; YouTube's format needs three chapters of 10 s
    // or more, which a clip under 60 s cannot have: it is empty (docs/sidecar.md).
    assert!(
        sidecar
            .chapters
            .first()
            .is_some_and(|c| c.start_secs == 0.0),
        "{:?}",
        sidecar.chapters
    );
    assert_eq!(sidecar.chapters_youtube_format, "", "a clip under 60 s");
    let garm = &sidecar.content_classification.garm;
    assert!(
        garm.brand_safety_score >= 0.8 && garm.flagged_secs.is_empty(),
        "plain colour shots flagged unsafe: {garm:?}"
    );
    assert!(
        !sidecar.scene_understanding.executive_summary.is_empty(),
        "no summary"
    );
}

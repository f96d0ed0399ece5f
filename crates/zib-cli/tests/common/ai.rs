//! AI test support: the installed models (a test that needs one fails loudly, naming
//! `scripts/install-models.sh`, when it is missing), speech spoken by espeak-ng into
//! generated clips, a `zib dev` cluster whose first nodes load the models, compute
//! jobs polled as a backend polls them, and SRT / WebVTT cues read back.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::Cluster;

/// `$ZIB_MODELS_DIR`, else `~/.cache/zib/models` (where `zib dev` looks).
pub fn models_dir() -> PathBuf {
    zib_ai::ModelsDir::from_env().path().to_path_buf()
}

/// The files a tier needs, relative to the models directory.
fn tier_files(tier: &str) -> &'static [&'static str] {
    match tier {
        "fastest" => &["whisper/tiny.en/model.bin", "whisper/tiny.en/config.json"],
        "recommended" => &["whisper/base/model.bin", "whisper/base/config.json"],
        "vision" => &[
            "ocr/det.onnx",
            "ocr/rec.onnx",
            "nudenet/320n.onnx",
            "minilm/model.safetensors",
            "minilm/tokenizer.json",
        ],
        other => panic!("no such model tier {other}"),
    }
}

/// Fails the test, loudly, when a tier's models are not installed: these tests run
/// real models, and the test command installs them first.
pub fn require_models(tiers: &[&str]) {
    let dir = models_dir();
    for tier in tiers {
        for file in tier_files(tier) {
            assert!(
                dir.join(file).is_file(),
                "the {tier} models are not installed ({} is missing): run \
                 `scripts/install-models.sh {tier}` (scripts/test.sh does)",
                dir.join(file).display()
            );
        }
    }
}

/// A models directory holding only `tiers` (symlinks into the installed one), for a
/// cluster that must lack the others.
pub fn models_subset(root: &Path, tiers: &[&str]) -> PathBuf {
    require_models(tiers);
    let src = models_dir();
    let dst = root.join("models");
    for tier in tiers {
        let dirs: &[&str] = match *tier {
            "fastest" => &["whisper/tiny.en"],
            "recommended" => &["whisper/base"],
            "vision" => &["ocr", "nudenet", "minilm"],
            other => panic!("no such model tier {other}"),
        };
        for d in dirs {
            let link = dst.join(d);
            std::fs::create_dir_all(link.parent().expect("a parent")).expect("models dir");
            std::os::unix::fs::symlink(src.join(d), &link).expect("symlink a model");
        }
    }
    dst
}

/// espeak-ng must be there (scripts/install-media-deps.sh installs it).
fn ensure_espeak() {
    crate::video::ensure_media();
    let ok = Command::new("espeak-ng")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "espeak-ng is not installed (scripts/install-media-deps.sh)"
    );
}

/// `text` spoken by espeak-ng (US English, a little slower than its default) into a
/// WAV in `dir`; returns its path and duration in seconds.
pub fn speak(dir: &Path, name: &str, text: &str) -> (PathBuf, f64) {
    ensure_espeak();
    let path = dir.join(name);
    let out = Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "150", "-w"])
        .arg(&path)
        .arg(text)
        .output()
        .expect("run espeak-ng");
    assert!(
        out.status.success(),
        "espeak-ng failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let duration = duration_of(&path);
    (path, duration)
}

/// ffprobe's duration of a media file, in seconds.
pub fn duration_of(path: &Path) -> f64 {
    let p = crate::video::probe(path.to_str().expect("a UTF-8 path"));
    p["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("no duration for {}: {p}", path.display()))
}

/// An H.264/AAC MP4 of `seconds`: `video` (an ffmpeg filtergraph producing `[v]` from
/// no inputs but lavfi sources it names itself) with `wav` as its sound, padded with
/// silence to the end.
pub fn clip_with_speech(dir: &Path, name: &str, video: &str, wav: &Path, seconds: f64) -> PathBuf {
    let path = dir.join(name);
    let out = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(wav)
        .arg("-filter_complex")
        .arg(format!("{video};[0:a]apad,aresample=48000[a]"))
        .args(["-map", "[v]", "-map", "[a]", "-t"])
        .arg(format!("{seconds:.3}"))
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-g",
            "30",
            "-c:a",
            "aac",
            "-b:a",
            "96k",
            "-movflags",
            "+faststart",
        ])
        .arg(&path)
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "generating {name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

/// A `zib dev` cluster of `nodes` whose first `ai_nodes` load the models (from
/// `$ZIB_MODELS_DIR` unless `env` names another), with webhooks to loopback allowed.
pub fn start_cluster(nodes: usize, ai_nodes: usize, env: &[(&str, &str)]) -> Cluster {
    let ai = ai_nodes.to_string();
    let mut all: Vec<(&str, &str)> = vec![
        ("ZIB_AI_NODES", ai.as_str()),
        ("ZIB_ALLOW_PRIVATE_WEBHOOK_TARGETS", "true"),
        ("ZIB_WEBHOOK_POLL_INTERVAL_MS", "100"),
    ];
    all.extend_from_slice(env);
    // Models load before a node registers, and `zib dev` writes its credentials
    // after every node registered: the capabilities are there once it is up.
    Cluster::start_with_env(nodes, &all)
}

/// The tenant API of a `zib dev` cluster.
pub fn tenant(cluster: &Cluster) -> crate::video::Tenant {
    crate::video::Tenant {
        api_url: cluster.creds.api_url.clone(),
        bearer: cluster.bearer(),
    }
}

/// `GET /v1/api/compute/jobs/{id}` until `complete`; panics on `failed` or timeout.
pub fn wait_compute(tenant: &crate::video::Tenant, job_id: &str, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let (code, job) = tenant.call(
            reqwest::Method::GET,
            &format!("/v1/api/compute/jobs/{job_id}"),
            None,
        );
        assert_eq!(code, 200, "compute job {job_id}: {job}");
        match job["status"].as_str() {
            Some("complete") => return job,
            Some("failed") => panic!("compute job {job_id} failed: {job}"),
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "compute job {job_id} not complete within {timeout:?}; last: {job}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// A subtitle cue.
#[derive(Clone, Debug, PartialEq)]
pub struct Cue {
    pub start: f64,
    pub end: f64,
    pub text: String,
}

/// `HH:MM:SS,mmm` (SRT) or `[HH:]MM:SS.mmm` (WebVTT) in seconds.
fn cue_time(t: &str) -> Option<f64> {
    crate::video::vtt_time(&t.trim().replace(',', "."))
}

/// The cues of an SRT or WebVTT file: every `start --> end` line and the text lines
/// under it up to a blank line. Panics on a timing line that does not parse.
pub fn cues(text: &str) -> Vec<Cue> {
    let mut out = Vec::new();
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        let Some((a, b)) = line.split_once("-->") else {
            continue;
        };
        let end = b.split_whitespace().next().unwrap_or("");
        let (Some(start), Some(end)) = (cue_time(a), cue_time(end)) else {
            panic!("bad cue timing {line:?} in:\n{text}");
        };
        let mut body = Vec::new();
        for l in lines.by_ref() {
            if l.is_empty() {
                break;
            }
            body.push(l);
        }
        out.push(Cue {
            start,
            end,
            text: body.join(" "),
        });
    }
    out
}

/// The cues' text, in order, as one string.
pub fn cue_text(cues: &[Cue]) -> String {
    cues.iter()
        .map(|c| c.text.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Cues are in order, each starts before it ends, none overlaps the one before it,
/// and all lie inside the clip (a few ms of rounding allowed).
pub fn assert_timings(cues: &[Cue], clip_secs: f64, what: &str) {
    assert!(!cues.is_empty(), "{what}: no cues");
    let mut previous_end = 0.0;
    for c in cues {
        assert!(c.start >= 0.0 && c.start < c.end, "{what}: cue {c:?}");
        assert!(
            c.start + 0.001 >= previous_end,
            "{what}: cue {c:?} starts before the previous one ends ({previous_end})"
        );
        assert!(
            c.end <= clip_secs + 0.05,
            "{what}: cue {c:?} ends after the clip ({clip_secs} s)"
        );
        previous_end = c.end;
    }
}

/// GET a CDN object as text, asserting a 200.
pub fn object_text(cluster: &Cluster, file_id: &str) -> String {
    let url = format!("{}/{file_id}", cluster.creds.cdn_url.trim_end_matches('/'));
    let (status, body) = crate::video::fetch_text(&url);
    assert_eq!(status, 200, "GET {url}: {body}");
    body
}

/// Words of at least `min` letters in `text`, as written, deduplicated.
pub fn long_words(text: &str, min: usize) -> Vec<String> {
    let mut words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= min)
        .map(str::to_string)
        .collect();
    words.sort();
    words.dedup();
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srt_and_vtt_cues_parse() {
        let srt = "1\n00:00:00,500 --> 00:00:02,000\nHello there\nfriend\n\n\
                   2\n00:00:02,000 --> 00:00:03,250\nAgain\n";
        let c = cues(srt);
        assert_eq!(c.len(), 2);
        assert_eq!((c[0].start, c[0].end), (0.5, 2.0));
        assert_eq!(c[0].text, "Hello there friend");
        assert_eq!(cue_text(&c), "Hello there friend Again");
        assert_timings(&c, 3.3, "srt");
        let vtt = "WEBVTT\n\n00:01.000 --> 00:00:02.500 align:start\nHi\n";
        assert_eq!(cues(vtt)[0].end, 2.5);
        assert_eq!(long_words("boil, the WATER boil", 4), ["WATER", "boil"]);
    }
}

//! 9:16 vertical renditions on a real cluster (one `zib server`, six `zib node`
//! processes, real ffmpeg), as a tenant and a player meet them: declared at initiate,
//! a 1920×1080 clip gets a centre-cropped vertical ladder (exact 9:16 rungs, none
//! taller than the source) on its own stream URL with its own AES-128 key and a
//! portrait poster, named the same way on the job, the pipeline and the webhook; a
//! wrong key decodes nothing; a backfill (`zib encode --aspect-variant 9:16
//! --variants-only`) on a file already encoded adds the rendition without touching the
//! main stream's key or segments; deleting the source takes the vertical stream, its
//! segments and the posters with it. One cluster (two cores).

mod common;
#[path = "common/webhook_receiver.rs"]
mod receiver;
#[path = "common/video.rs"]
mod video;

use std::collections::BTreeMap;
use std::time::Duration;

use common::procs::ProcCluster;
use common::*;
use receiver::Receiver;
use serde_json::{json, Value};
use video::*;

const ENCODE: Duration = Duration::from_secs(600);
const SECRET: &str = "e2e-variants-webhook-secret-0123456789";

fn cluster() -> ProcCluster {
    ProcCluster::start(
        6,
        &[
            ("ZIB_ALLOW_PRIVATE_WEBHOOK_TARGETS", "true"),
            ("ZIB_WEBHOOK_POLL_INTERVAL_MS", "100"),
            ("ZIB_WEBHOOK_RETRY_SCHEDULE", "1s,1s,2s,2s,2s"),
        ],
    )
}

/// The path of a URL, or "" when it is not one.
fn path_of(url: &str) -> String {
    reqwest::Url::parse(url)
        .map(|u| u.path().to_string())
        .unwrap_or_default()
}

/// `/stream/{id}/master.m3u8` → `id`.
fn stream_file_id(url: &str) -> String {
    let path = path_of(url);
    let id = path
        .strip_prefix("/stream/")
        .and_then(|p| p.strip_suffix("/master.m3u8"))
        .unwrap_or_else(|| panic!("not a /stream/<id>/master.m3u8 URL: {url}"));
    id.to_string()
}

/// The last path component of a segment URL (its blob id), so a playlist pointing at
/// another holder of the same blob compares equal.
fn blob_of(url: &str) -> String {
    path_of(url)
        .rsplit('/')
        .next()
        .unwrap_or("")
        .trim_end_matches(".ts")
        .to_string()
}

/// Everything a player of the stream at `master_url` reads, by value: the key, each
/// rung's attributes, key line and segment blob ids, and every segment's bytes.
#[derive(Debug, PartialEq)]
struct StreamSnapshot {
    key: Vec<u8>,
    rungs: Vec<(BTreeMap<String, String>, String, Vec<String>)>,
    segments: BTreeMap<String, Vec<u8>>,
}

fn snapshot(api_url: &str, file_id: &str) -> StreamSnapshot {
    let master_url = format!("{api_url}/stream/{file_id}/master.m3u8");
    let (status, master) = fetch_text(&master_url);
    assert_eq!(status, 200, "{master_url}: {master}");
    let (status, _, key) = fetch(&format!("{api_url}/stream/{file_id}/key"));
    assert_eq!((status, key.len()), (200, 16), "the key of {file_id}");
    let mut rungs = Vec::new();
    let mut segments = BTreeMap::new();
    for v in variants(&master, &master_url) {
        let (status, text) = fetch_text(&v.url);
        assert_eq!(status, 200, "{}: {text}", v.url);
        let m = media(&text, &v.url);
        let mut key_line: Vec<(String, String)> = m.key.clone().into_iter().collect();
        key_line.sort();
        let blobs = m.segments.iter().map(|s| blob_of(s)).collect();
        for seg in &m.segments {
            let (status, _, bytes) = fetch(seg);
            assert_eq!(status, 200, "{seg}");
            segments.insert(blob_of(seg), bytes);
        }
        rungs.push((
            v.attrs.clone().into_iter().collect(),
            format!("{key_line:?}"),
            blobs,
        ));
    }
    rungs.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    StreamSnapshot {
        key,
        rungs,
        segments,
    }
}

/// The vertical ladder at `master_url`: every rung exact 9:16 and at most 1080 tall
/// (by its RESOLUTION and by ffprobe), decoding to every frame of the clip; the
/// segment URLs of all rungs.
fn check_vertical_ladder(master_url: &str, frames: u64) -> Vec<String> {
    let (status, master) = fetch_text(master_url);
    assert_eq!(status, 200, "{master_url}: {master}");
    let rungs = variants(&master, master_url);
    assert!(!rungs.is_empty(), "{master}");
    let mut sizes = Vec::new();
    let mut segments = Vec::new();
    for rung in &rungs {
        let (w, h) = rung.resolution();
        assert!(
            w * 16 == h * 9 && h <= 1080 && h > 0,
            "rung {w}x{h} is not an exact 9:16 no taller than the source: {master}"
        );
        let p = probe(&rung.url);
        let v = &streams_of(&p, "video")[0];
        assert_eq!(
            (v["width"].as_u64(), v["height"].as_u64()),
            (Some(w.into()), Some(h.into())),
            "{}",
            rung.url
        );
        let sar = v["sample_aspect_ratio"].as_str().unwrap_or("1:1");
        assert!(sar == "1:1" || sar == "0:1", "square pixels: {v}");
        if let Some(dar) = v["display_aspect_ratio"].as_str() {
            assert_eq!(dar, "9:16", "{v}");
        }
        assert_eq!(count_frames(&rung.url), Ok(frames), "{}", rung.url);
        let (_, text) = fetch_text(&rung.url);
        let m = media(&text, &rung.url);
        assert_eq!(m.key["METHOD"], "AES-128", "{text}");
        segments.extend(m.segments);
        sizes.push((w, h));
    }
    sizes.sort();
    assert_eq!(sizes[0], (360, 640), "the floor rung: {sizes:?}");
    segments
}

/// The job's `aspect_variants["9:16"]` once it appears (polling), checked the same on
/// the pipeline's `stages.encoding`.
fn wait_vertical(tenant: &Tenant, file_id: &str, job_id: &str) -> Value {
    let mut entry = Value::Null;
    wait_for("aspect_variants[\"9:16\"]", ENCODE, || {
        let (_, job) = tenant.job(job_id);
        assert!(
            job["aspect_variants"].is_object(),
            "a job with a variant asked always has the block: {job}"
        );
        entry = job["aspect_variants"]["9:16"].clone();
        !entry.is_null()
    });
    let (_, job) = tenant.job(job_id);
    let stage = &tenant.pipeline(file_id)["stages"]["encoding"];
    assert_eq!(
        stage["aspect_variants"], job["aspect_variants"],
        "pipeline: {stage}"
    );
    let keys: Vec<&String> = job["aspect_variants"].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["9:16"], "{job}");
    entry
}

/// The portrait poster at `url` shows the centre 9:16 crop of the source's frame at
/// `at` (1920×1080 → 608×1080 from x = 656), and not the one at `other`.
fn check_vertical_poster(work: &std::path::Path, source: &str, url: &str, at: f64, other: f64) {
    let (status, headers, bytes) = fetch(url);
    assert_eq!(status, 200, "{url}");
    assert!(
        headers
            .get("content-type")
            .is_some_and(|c| c.starts_with("image/jpeg")),
        "{headers:?}"
    );
    assert!(path_of(url).starts_with("/objects/"), "{url}");
    let file = work.join("vertical-poster.jpg");
    std::fs::write(&file, &bytes).unwrap();
    let file = file.to_str().unwrap();
    let (w, h, codec) = picture(file);
    assert_eq!(codec, "mjpeg");
    assert!(
        h > w && ((w as f64 / h as f64) - 9.0 / 16.0).abs() < 0.01,
        "the vertical poster is {w}x{h}"
    );
    let (cw, ch) = (36, 64);
    let poster = gray_frame(file, None, None, cw, ch);
    let crop = Some((656, 0, 608, 1080));
    let same = mean_abs_diff(&poster, &gray_frame(source, Some(at), crop, cw, ch));
    let different = mean_abs_diff(&poster, &gray_frame(source, Some(other), crop, cw, ch));
    assert!(
        same < 6.0 && different > same + 8.0,
        "the vertical poster should be the centre crop at {at} s: {same:.1} from it, \
         {different:.1} from the one at {other} s"
    );
}

#[test]
fn a_vertical_rendition_inline_and_backfilled_with_its_own_key_poster_and_deletion() {
    ensure_media();
    let work = tempfile::tempdir().unwrap();
    let clip = Clip::new(1920, 1080, 5).drifting(10);
    let path = make_clip(work.path(), "wide.mp4", &clip);
    let source = path.to_str().unwrap();

    let cluster = cluster();
    let tenant = Tenant {
        api_url: cluster.api_url.clone(),
        bearer: cluster.bearer(),
    };
    let hook = Receiver::start();

    // Two uploads of the clip: one declares the variant at initiate, one is encoded
    // plain and backfilled.
    let inline_id = upload_declared(
        &cluster,
        &path,
        "vertical",
        "inline.mp4",
        json!({"encode": true, "aspect_variants": ["9:16"],
               "webhook_url": hook.url("/hook"), "webhook_secret": SECRET}),
    );
    let plain_id = upload_video(&cluster, &path, "vertical", "plain.mp4");
    let (status, plain) = tenant.request_encode(&plain_id, json!({}));
    assert_eq!(
        (status, plain["status"].as_str()),
        (200, Some("queued")),
        "{plain}"
    );
    let plain_job = plain["encoding_id"].as_str().unwrap().to_string();
    // Only 9:16, and never together with force or aspect_variants.
    for (body, field) in [
        (json!({"aspect_variants": ["4:3"]}), "aspect_variants"),
        (
            json!({"aspect_variants_only": ["1:1"]}),
            "aspect_variants_only",
        ),
        (
            json!({"aspect_variants_only": ["9:16"], "force": true}),
            "aspect_variants_only",
        ),
        (
            json!({"aspect_variants_only": ["9:16"], "aspect_variants": ["9:16"]}),
            "aspect_variants_only",
        ),
    ] {
        let (status, answer) = tenant.request_encode(&plain_id, body.clone());
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(
            answer["error"]
                .as_str()
                .is_some_and(|e| e.starts_with(&format!("{field}:"))),
            "{body}: {answer}"
        );
    }

    // Inline: the declared encode starts on its own once the upload is distributed.
    let mut inline_job = String::new();
    wait_for("the declared encode's job", Duration::from_secs(60), || {
        let stage = &tenant.pipeline(&inline_id)["stages"]["encoding"];
        inline_job = stage["encoding_id"].as_str().unwrap_or("").to_string();
        !inline_job.is_empty()
    });
    let job = tenant.wait_job(&inline_job, ENCODE, playable_complete);
    assert!(
        job["aspect_variants"].is_object(),
        "asked-for variants are an object (maybe empty) once the job is complete: {job}"
    );
    let parent_complete = hook
        .wait_until("the parent's encoding.complete", ENCODE, |all| {
            all.iter()
                .any(|r| r.event() == "encoding.complete" && r.json()["job_id"] == inline_job)
        })
        .into_iter()
        .find(|r| r.event() == "encoding.complete" && r.json()["job_id"] == inline_job)
        .unwrap()
        .json();
    assert!(
        parent_complete["aspect_variants"].is_object(),
        "{parent_complete}"
    );
    let main_thumbs = job["thumbnails"].clone();
    assert!(main_thumbs.is_object(), "{job}");

    let vertical = wait_vertical(&tenant, &inline_id, &inline_job);
    let vertical_url = vertical["hls_manifest_url"]
        .as_str()
        .expect("hls_manifest_url");
    let vertical_id = stream_file_id(vertical_url);
    assert_ne!(vertical_id, inline_id);
    let vertical_poster = vertical["poster_url"].as_str().expect("poster_url");
    assert_ne!(Some(vertical_poster), main_thumbs["poster_url"].as_str());

    // The child's own encoding.complete: the uploaded file, its parent, the vertical
    // stream, and the block; the child sends no other encoding.* event.
    let child_events: Vec<Value> = hook
        .wait_until("the variant's encoding.complete", ENCODE, |all| {
            all.iter().any(|r| {
                let b = r.json();
                r.event() == "encoding.complete"
                    && b["file_id"] == inline_id.as_str()
                    && b["job_id"] != inline_job.as_str()
            })
        })
        .into_iter()
        .map(|r| r.json())
        .filter(|b| {
            b["file_id"] == inline_id.as_str()
                && b["job_id"] != inline_job.as_str()
                && b["event"]
                    .as_str()
                    .is_some_and(|e| e.starts_with("encoding."))
        })
        .collect();
    assert_eq!(child_events.len(), 1, "{child_events:?}");
    let child = &child_events[0];
    assert_eq!(child["event"], "encoding.complete", "{child}");
    assert_eq!(
        child["parent_encoding_job_id"],
        inline_job.as_str(),
        "{child}"
    );
    assert_eq!(child["file_id"], inline_id.as_str(), "{child}");
    assert_eq!(child["hls_manifest_url"], vertical_url, "{child}");
    assert_eq!(child["aspect_variants"]["9:16"], vertical, "{child}");
    let child_job = child["job_id"].as_str().unwrap().to_string();
    let (_, child_status) = tenant.job(&child_job);
    assert_eq!(child_status["parent_encoding_job_id"], inline_job.as_str());
    assert_eq!(child_status["aspect_ratio"], "9:16", "{child_status}");

    // The ladder, the stream through the master, the poster.
    let vertical_segments = check_vertical_ladder(vertical_url, clip.frames());
    assert_eq!(count_frames(vertical_url), Ok(clip.frames()));
    check_vertical_poster(work.path(), source, vertical_poster, 1.0, 3.0);

    // Its own key, and a wrong one decodes nothing.
    let api = &cluster.api_url;
    let (status, _, vertical_key) = fetch(&format!("{api}/stream/{vertical_id}/key"));
    assert_eq!((status, vertical_key.len()), (200, 16));
    let (_, _, main_key) = fetch(&format!("{api}/stream/{inline_id}/key"));
    assert_eq!(main_key.len(), 16);
    assert_ne!(
        vertical_key, main_key,
        "the vertical stream has its own key"
    );
    let (_, master) = fetch_text(vertical_url);
    let lowest = variants(&master, vertical_url)
        .into_iter()
        .min_by_key(|v| v.resolution().1)
        .unwrap();
    let local = StaticServer::start();
    assert_eq!(
        decode_with_key(&local, &lowest.url, &vertical_key),
        Ok(clip.frames()),
        "the doctoring itself is harmless"
    );
    for wrong in [main_key.clone(), {
        let mut k = vertical_key.clone();
        k[0] ^= 0xff;
        k
    }] {
        let decoded = decode_with_key(&local, &lowest.url, &wrong);
        assert!(
            !matches!(decoded, Ok(n) if n > 0),
            "a wrong key decoded {decoded:?} frames"
        );
    }

    // Backfill through the CLI: the main stream is untouched, the variant appears.
    tenant.wait_job(&plain_job, ENCODE, playable_complete);
    let (_, plain_status) = tenant.job(&plain_job);
    assert!(
        plain_status
            .get("aspect_variants")
            .is_none_or(Value::is_null),
        "no variant asked, no block: {plain_status}"
    );
    let before = snapshot(api, &plain_id);
    let out = zib_as_tenant(
        &cluster,
        &[
            "encode",
            &plain_id,
            "--aspect-variant",
            "9:16",
            "--variants-only",
            "--wait",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "zib encode --variants-only: {stdout}\n{stderr}"
    );
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON lines"))
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let answer = &lines[0];
    assert_eq!(answer["status"], "queued", "{answer}");
    assert_eq!(answer["mode"], "aspect_variants_only", "{answer}");
    assert_eq!(
        answer["parent_encoding_job_id"],
        plain_job.as_str(),
        "{answer}"
    );
    let children = answer["child_encoding_job_ids"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(children.len(), 1, "{answer}");
    assert_ne!(children[0], plain_job.as_str());
    let backfilled = &lines[1]["aspect_variants"]["9:16"];
    let backfilled_url = backfilled["hls_manifest_url"]
        .as_str()
        .expect("the variant");
    assert!(
        stderr
            .lines()
            .any(|l| l == format!("9:16 stream: {backfilled_url}")),
        "{stderr}"
    );
    assert_eq!(wait_vertical(&tenant, &plain_id, &plain_job), *backfilled);
    let (_, parent_after) = tenant.job(&plain_job);
    assert_eq!(parent_after["encoding_id"], plain_job.as_str());
    assert_eq!(
        parent_after["hls_manifest_url"],
        plain_status["hls_manifest_url"]
    );
    check_vertical_ladder(backfilled_url, clip.frames());
    let after = snapshot(api, &plain_id);
    assert_eq!(before.key, after.key, "the backfill changed the main key");
    assert_eq!(
        before.rungs, after.rungs,
        "the backfill changed the main playlists"
    );
    assert!(
        before.segments == after.segments,
        "the backfill changed main segment bytes"
    );
    // Asking again answers the same child rather than a second one.
    let (status, again) =
        tenant.request_encode(&plain_id, json!({"aspect_variants_only": ["9:16"]}));
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["child_encoding_job_ids"], json!(children), "{again}");

    // Deleting the source takes the vertical stream, its segments and the posters.
    let (status, answer) = tenant.delete_file(&inline_id);
    assert!(status < 300, "delete: {answer}");
    let (status, _) = fetch_text(vertical_url);
    assert_eq!(status, 404, "the vertical master after the delete");
    let gone = [
        vertical_poster.to_string(),
        main_thumbs["poster_url"].as_str().unwrap().to_string(),
        main_thumbs["sprite_vtt_url"].as_str().unwrap().to_string(),
        format!("{api}/stream/{vertical_id}/key"),
    ];
    for url in &gone {
        let status = fetch(url).0;
        assert_eq!(status, 404, "{url} after the source was deleted");
    }
    wait_for(
        "the vertical segments to leave the nodes",
        Duration::from_secs(60),
        || vertical_segments.iter().all(|s| fetch(s).0 == 404),
    );
    // The backfilled file is untouched by the other's deletion.
    assert_eq!(count_frames(backfilled_url), Ok(clip.frames()));
}

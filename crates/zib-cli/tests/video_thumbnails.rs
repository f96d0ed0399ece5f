//! Thumbnails as a tenant and a player meet them, on a real cluster (one `zib server`,
//! six `zib node` processes, real ffmpeg): every encode makes a poster and a sprite
//! storyboard by default; the poster is the frame at 10 % of the duration clamped to
//! 1–10 s (a 5 s and a 200 s clip), compared with ffmpeg's own frame of the source; the
//! sprite VTT covers the whole clip, its tiles lie inside their sheets and show the frame
//! at their cue's start; the block is the same in `encoding.complete`, the job and the
//! pipeline; overrides are honoured and bad ones refused naming the field; `false`
//! stays null; a re-request reuses, a forced one regenerates; `zib encode` drives one
//! encode and prints the URLs; no artefact is left in the clear on a node's disk.
//!
//! Clips are 320×180 at 10 fps whose brightness swings slowly (`Clip::drift`), so a
//! frame a second away is clearly another frame and a wrong time fails.

mod common;
#[path = "common/webhook_receiver.rs"]
mod receiver;
#[path = "common/video.rs"]
mod video;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::procs::ProcCluster;
use common::*;
use receiver::Receiver;
use serde_json::{json, Value};
use video::*;

const ENCODE: Duration = Duration::from_secs(600);
const SECRET: &str = "e2e-thumbnails-webhook-secret-0123456789";
/// Gray images are compared at this width (height by the aspect ratio).
const CMP_WIDTH: u32 = 64;
/// Mean absolute difference (0–255) under which two gray images are the same frame
/// (JPEG and H.264 noise); another frame a second away is well above it.
const SAME_FRAME: f64 = 6.0;
const SAME_TILE: f64 = 8.0;
/// How much further another frame must be than the matching one.
const OTHER_FRAME_MARGIN: f64 = 8.0;

fn cluster() -> ProcCluster {
    ProcCluster::start(
        6,
        &[
            ("ZIB_ALLOW_PRIVATE_WEBHOOK_TARGETS", "true"),
            ("ZIB_WEBHOOK_POLL_INTERVAL_MS", "100"),
            ("ZIB_WEBHOOK_RETRY_SCHEDULE", "1s,1s,2s,2s,2s"),
            // The forced re-encode's old job (and its artefacts) goes soon.
            ("ZIB_ENCODING_EVICTION_GRACE_SECS", "5"),
        ],
    )
}

/// A source clip on the local disk and what ffprobe says of it.
struct Source {
    path: PathBuf,
    width: u32,
    height: u32,
    duration: f64,
}

impl Source {
    fn make(work: &Path, name: &str, clip: &Clip) -> Source {
        let path = make_clip(work, name, clip);
        let p = probe(path.to_str().unwrap());
        let duration = p["format"]["duration"]
            .as_str()
            .and_then(|d| d.parse().ok())
            .expect("the clip's duration");
        Source {
            path,
            width: clip.width,
            height: clip.height,
            duration,
        }
    }
    fn input(&self) -> &str {
        self.path.to_str().unwrap()
    }
    /// The comparison size for a picture of this source's aspect ratio.
    fn cmp_size(&self) -> (u32, u32) {
        (CMP_WIDTH, CMP_WIDTH * self.height / self.width)
    }
    /// The source's own frame at `at`, gray at the comparison size.
    fn frame(&self, at: f64) -> Vec<u8> {
        let (w, h) = self.cmp_size();
        gray_frame(self.input(), Some(at), None, w, h)
    }
}

/// GETs `url`: status 200, a Content-Type starting with `kind`; the body.
fn fetch_as(url: &str, kind: &str) -> Vec<u8> {
    let (status, headers, body) = fetch(url);
    assert_eq!(status, 200, "GET {url}: {}", String::from_utf8_lossy(&body));
    let ct = headers.get("content-type").cloned().unwrap_or_default();
    assert!(
        ct.starts_with(kind),
        "{url}: Content-Type {ct:?}, not {kind}"
    );
    body
}

fn save(work: &Path, name: &str, bytes: &[u8]) -> String {
    let path = work.join(name);
    std::fs::write(&path, bytes).expect("write a download");
    path.to_str().unwrap().to_string()
}

/// The `thumbnails` block of `job_id`, checked to be the same on the job, the
/// pipeline's `stages.encoding` and the job's `encoding.complete` delivery; the
/// three URLs are distinct `/objects/…` URLs.
fn thumbnails_everywhere(tenant: &Tenant, hook: &Receiver, file_id: &str, job_id: &str) -> Value {
    let (code, job) = tenant.job(job_id);
    assert_eq!(code, 200, "{job}");
    let thumbs = job["thumbnails"].clone();
    assert!(
        thumbs.is_object(),
        "a job at {} has no thumbnails: {job}",
        job["phase"]
    );
    let urls: Vec<&str> = ["poster_url", "sprite_url", "sprite_vtt_url"]
        .iter()
        .map(|f| {
            thumbs[f]
                .as_str()
                .unwrap_or_else(|| panic!("thumbnails.{f}: {thumbs}"))
        })
        .collect();
    for url in &urls {
        let path = reqwest::Url::parse(url)
            .unwrap_or_else(|e| panic!("{url}: {e}"))
            .path()
            .to_string();
        assert!(path.starts_with("/objects/"), "{url}");
    }
    assert!(
        urls[0] != urls[1] && urls[1] != urls[2] && urls[0] != urls[2],
        "{thumbs}"
    );
    let stage = &tenant.pipeline(file_id)["stages"]["encoding"];
    assert_eq!(stage["encoding_id"], job_id, "{stage}");
    assert_eq!(stage["thumbnails"], thumbs, "pipeline: {stage}");
    let complete = complete_event(hook, job_id);
    assert_eq!(
        complete["thumbnails"], thumbs,
        "encoding.complete: {complete}"
    );
    thumbs
}

/// The body of the `encoding.complete` delivery of `job_id`.
fn complete_event(hook: &Receiver, job_id: &str) -> Value {
    let is_it = |r: &receiver::Received| {
        r.answered < 300 && r.event() == "encoding.complete" && r.json()["job_id"] == job_id
    };
    let got = hook.wait_until(
        &format!("encoding.complete of {job_id}"),
        Duration::from_secs(60),
        |all| all.iter().any(is_it),
    );
    let mine: Vec<&receiver::Received> = got.iter().filter(|r| is_it(r)).collect();
    assert_eq!(mine.len(), 1, "one encoding.complete per job");
    mine[0].json()
}

/// The poster at `url` is a JPEG of the source's aspect ratio showing the frame at
/// `at`, and clearly not the frame at `other`. Returns its bytes.
fn check_poster(work: &Path, src: &Source, url: &str, at: f64, other: f64) -> Vec<u8> {
    let bytes = fetch_as(url, "image/jpeg");
    let name = format!("poster-{}.jpg", url.rsplit('/').next().unwrap_or("x"));
    let file = save(work, &name, &bytes);
    let (w, h, codec) = picture(&file);
    assert_eq!(codec, "mjpeg", "{url}");
    let (aspect, src_aspect) = (w as f64 / h as f64, src.width as f64 / src.height as f64);
    assert!(
        (aspect - src_aspect).abs() < 0.03 * src_aspect,
        "poster {w}x{h} for a {}x{} source",
        src.width,
        src.height
    );
    let (cw, ch) = src.cmp_size();
    let poster = gray_frame(&file, None, None, cw, ch);
    let same = mean_abs_diff(&poster, &src.frame(at));
    let different = mean_abs_diff(&poster, &src.frame(other));
    assert!(
        same < SAME_FRAME && different > same + OTHER_FRAME_MARGIN,
        "the poster should be the frame at {at} s: differs by {same:.1} from it and by \
         {different:.1} from the frame at {other} s"
    );
    bytes
}

/// The sprite VTT at `url`: cues of `interval` s covering [0, duration] without gaps,
/// tiles `width` px wide inside their sheets (JPEGs at `/objects/…`), packed at most
/// 10×10 per sheet, and a few tiles showing the frame at their cue's start. Returns
/// the VTT's text.
fn check_sprites(
    work: &Path,
    src: &Source,
    url: &str,
    sprite_url: &str,
    interval: f64,
    width: u32,
) -> String {
    let text = String::from_utf8(fetch_as(url, "text/vtt")).expect("the VTT is UTF-8");
    let cues = sprite_cues(&text, url);
    let expected = (src.duration / interval).ceil() as usize;
    assert_eq!(
        cues.len(),
        expected,
        "{expected} cues for {:.2} s at {interval} s: {text}",
        src.duration
    );
    assert!(cues[0].start.abs() < 0.001, "starts at 0: {text}");
    for pair in cues.windows(2) {
        assert!(
            (pair[1].start - pair[0].end).abs() < 0.002,
            "a gap or overlap between {pair:?}"
        );
    }
    for (i, cue) in cues.iter().enumerate() {
        let len = cue.end - cue.start;
        assert!(len > 0.0, "{cue:?}");
        if i + 1 < cues.len() {
            assert!(
                (len - interval).abs() < 0.01,
                "cue {i} lasts {len}: {cue:?}"
            );
        } else {
            assert!(len <= interval + 0.01, "{cue:?}");
        }
    }
    let last = cues.last().unwrap().end;
    assert!(
        (last - src.duration).abs() < 0.25,
        "the cues end at {last}, the clip at {}",
        src.duration
    );
    assert_eq!(cues[0].sheet, sprite_url, "sprite_url is the first sheet");

    // Every sheet: a JPEG served by the CDN; every region inside it, ≤ 10×10 tiles.
    let mut sheets: Vec<(String, String, (u32, u32))> = Vec::new();
    for cue in &cues {
        if sheets.iter().any(|(u, _, _)| *u == cue.sheet) {
            continue;
        }
        let path = reqwest::Url::parse(&cue.sheet)
            .map(|u| u.path().to_string())
            .unwrap_or_default();
        assert!(path.starts_with("/objects/"), "{}", cue.sheet);
        let bytes = fetch_as(&cue.sheet, "image/jpeg");
        let file = save(work, &format!("sheet-{}.jpg", sheets.len()), &bytes);
        let (w, h, codec) = picture(&file);
        assert_eq!(codec, "mjpeg", "{}", cue.sheet);
        sheets.push((cue.sheet.clone(), file, (w, h)));
    }
    let tile_h = width as f64 * src.height as f64 / src.width as f64;
    for cue in &cues {
        let (x, y, w, h) = cue.xywh;
        let (_, _, (sw, sh)) = sheets.iter().find(|(u, _, _)| *u == cue.sheet).unwrap();
        assert!(
            x + w <= *sw && y + h <= *sh,
            "{cue:?} outside its {sw}x{sh} sheet"
        );
        assert_eq!(w, width, "tile width: {cue:?}");
        assert!((h as f64 - tile_h).abs() <= 2.0, "tile height: {cue:?}");
        assert!(x / w < 10 && y / h < 10, "more than 10×10 tiles: {cue:?}");
    }
    let per_sheet = cues.iter().filter(|c| c.sheet == cues[0].sheet).count();
    assert_eq!(per_sheet, cues.len().min(100), "sheets hold 100 tiles");

    // Tiles show the frame at their cue's start: the first, one inside, the last.
    let (cw, ch) = src.cmp_size();
    let mut picked = vec![0, cues.len() / 2, cues.len() - 1];
    picked.dedup();
    for i in picked {
        let cue = &cues[i];
        let (_, file, _) = sheets.iter().find(|(u, _, _)| *u == cue.sheet).unwrap();
        let tile = gray_frame(file, None, Some(cue.xywh), cw, ch);
        let same = mean_abs_diff(&tile, &src.frame(cue.start));
        assert!(
            same < SAME_TILE,
            "tile {i} differs by {same:.1} from the frame at its start {}",
            cue.start
        );
        for other in [cue.start + 1.0, cue.start - 1.0] {
            if other < 0.0 || other > src.duration - 0.2 {
                continue;
            }
            let different = mean_abs_diff(&tile, &src.frame(other));
            assert!(
                different > same + OTHER_FRAME_MARGIN,
                "tile {i} (cue at {}) is as close to the frame at {other} s: {same:.1} vs \
                 {different:.1}",
                cue.start
            );
        }
    }
    text
}

/// The request is refused with 400 and an error naming `field`.
fn refused(tenant: &Tenant, file_id: &str, body: Value, field: &str) {
    let (status, answer) = tenant.request_encode(file_id, body.clone());
    assert_eq!(status, 400, "{body} → {answer}");
    let error = answer["error"].as_str().unwrap_or("");
    assert!(
        error.starts_with(&format!("{field}:")),
        "{body}: the error should name {field}: {answer}"
    );
}

#[test]
fn posters_and_sprite_storyboards_by_default_overridden_opted_out_and_regenerated() {
    ensure_media();
    let work = tempfile::tempdir().unwrap();
    let short = Source::make(
        work.path(),
        "short.mp4",
        &Clip {
            audio: false,
            ..Clip::new(320, 180, 5).drifting(10)
        },
    );
    let long = Source::make(
        work.path(),
        "long.mp4",
        &Clip {
            audio: false,
            ..Clip::new(320, 180, 200).drifting(10)
        },
    );

    // The nodes (and ffmpeg under them) get their own $TMPDIR, scanned at the end.
    let node_tmp = tempfile::tempdir().unwrap().keep();
    std::env::set_var("TMPDIR", &node_tmp);
    let cluster = cluster();
    let tenant = Tenant {
        api_url: cluster.api_url.clone(),
        bearer: cluster.bearer(),
    };
    let hook = Receiver::start();
    let with_hook = |mut extra: Value| {
        extra["webhook_url"] = json!(hook.url("/hook"));
        extra["webhook_secret"] = json!(SECRET);
        extra
    };

    let short_id = upload_video(&cluster, &short.path, "thumbs", "short.mp4");
    let optout_id = upload_video(&cluster, &short.path, "thumbs", "short-optout.mp4");
    let long_id = upload_video(&cluster, &long.path, "thumbs", "long.mp4");

    // Bad overrides: 400 naming the field, and no job.
    for (body, field) in [
        (
            json!({"thumbnails": {"sprite": {"width": 4}}}),
            "thumbnails.sprite.width",
        ),
        (
            json!({"thumbnails": {"sprite": {"width": "wide"}}}),
            "thumbnails.sprite.width",
        ),
        (
            json!({"thumbnails": {"sprite": {"interval": 0}}}),
            "thumbnails.sprite.interval",
        ),
        (
            json!({"thumbnails": {"poster": {"at": "later"}}}),
            "thumbnails.poster.at",
        ),
        (
            json!({"thumbnails": {"poster": {"at": "150%"}}}),
            "thumbnails.poster.at",
        ),
        (json!({"thumbnails": {"cover": {}}}), "thumbnails"),
        (json!({"thumbnails": "yes"}), "thumbnails"),
    ] {
        refused(&tenant, &short_id, body, field);
    }
    let (status, answer) = tenant.call(
        reqwest::Method::POST,
        "/v1/api/upload/initiate",
        Some(json!({"bucket": "thumbs", "key": "x.mp4", "file_size": 1000, "content_type": "video/mp4",
                    "pipeline": {"encode": true, "thumbnails": {"sprite": {"interval": -5}}}})),
    );
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .is_some_and(|e| e.starts_with("pipeline.thumbnails.sprite.interval:")),
        "{answer}"
    );

    // Defaults on the short clip (the first request after the refusals is new) and
    // an opt-out, both with a per-request webhook.
    let (status, first) = tenant.request_encode(&short_id, with_hook(json!({})));
    assert_eq!(
        (status, first["status"].as_str()),
        (200, Some("queued")),
        "{first}"
    );
    let short_job = first["encoding_id"].as_str().unwrap().to_string();
    let (status, optout) =
        tenant.request_encode(&optout_id, with_hook(json!({"thumbnails": false})));
    assert_eq!(
        (status, optout["status"].as_str()),
        (200, Some("queued")),
        "{optout}"
    );
    let optout_job = optout["encoding_id"].as_str().unwrap().to_string();

    // The 200 s clip through the CLI (defaults), which prints the URLs.
    let out = zib_as_tenant(
        &cluster,
        &[
            "encode",
            &long_id,
            "--wait",
            "--webhook-url",
            &hook.url("/hook"),
            "--webhook-secret",
            SECRET,
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success(),
        "zib encode --wait: {stdout}\n{stderr}"
    );
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON lines on stdout"))
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let long_job = lines[0]["encoding_id"].as_str().unwrap().to_string();
    assert_eq!(lines[1]["encoding_id"], long_job.as_str());
    assert!(
        playable_complete(lines[1]["phase"].as_str().unwrap_or("")),
        "{stdout}"
    );
    let long_thumbs = thumbnails_everywhere(&tenant, &hook, &long_id, &long_job);
    assert_eq!(lines[1]["thumbnails"], long_thumbs, "{stdout}");
    for (name, field) in [
        ("poster", "poster_url"),
        ("sprite", "sprite_url"),
        ("sprite vtt", "sprite_vtt_url"),
    ] {
        let line = format!("{name}: {}", long_thumbs[field].as_str().unwrap());
        assert!(
            stderr.lines().any(|l| l == line),
            "no {line:?} in: {stderr}"
        );
    }
    // 10 % of 200 s is 20 s, clamped to 10 s.
    let long_poster = check_poster(
        work.path(),
        &long,
        long_thumbs["poster_url"].as_str().unwrap(),
        10.0,
        13.0,
    );
    let long_vtt = check_sprites(
        work.path(),
        &long,
        long_thumbs["sprite_vtt_url"].as_str().unwrap(),
        long_thumbs["sprite_url"].as_str().unwrap(),
        5.0,
        160,
    );

    // The short clip: 10 % of 5 s is 0.5 s, clamped to 1 s; one 5 s cue.
    tenant.wait_job(&short_job, ENCODE, playable_complete);
    let short_thumbs = thumbnails_everywhere(&tenant, &hook, &short_id, &short_job);
    let short_poster = check_poster(
        work.path(),
        &short,
        short_thumbs["poster_url"].as_str().unwrap(),
        1.0,
        3.0,
    );
    let short_vtt = check_sprites(
        work.path(),
        &short,
        short_thumbs["sprite_vtt_url"].as_str().unwrap(),
        short_thumbs["sprite_url"].as_str().unwrap(),
        5.0,
        160,
    );

    // Opted out: null on the three surfaces once complete, and it stays null.
    tenant.wait_job(&optout_job, ENCODE, playable_complete);
    assert!(
        complete_event(&hook, &optout_job)["thumbnails"].is_null(),
        "encoding.complete of an opt-out"
    );
    for round in 0..2 {
        let (_, job) = tenant.job(&optout_job);
        assert!(job["thumbnails"].is_null(), "round {round}: {job}");
        let stage = &tenant.pipeline(&optout_id)["stages"]["encoding"];
        assert!(stage["thumbnails"].is_null(), "round {round}: {stage}");
        if round == 0 {
            std::thread::sleep(Duration::from_secs(8));
        }
    }

    // A re-request reuses the encode, whatever thumbnails it asks for.
    for extra in [json!({}), json!({"thumbnails": {"poster": {"at": "3s"}}})] {
        let (status, again) = tenant.request_encode(&short_id, extra);
        assert_eq!(status, 200, "{again}");
        assert_eq!(again["status"], "already_encoded", "{again}");
        assert_eq!(again["encoding_id"], short_job.as_str());
    }
    let (_, job) = tenant.job(&short_job);
    assert_eq!(job["thumbnails"], short_thumbs, "a re-request regenerated");

    // Forced with overrides: a new job, new files, the asked poster time, 2 s cues of
    // 120 px tiles ([0,2], [2,4], [4,5]).
    let (status, forced) = tenant.request_encode(
        &short_id,
        with_hook(json!({"force": true,
            "thumbnails": {"poster": {"at": "3s"}, "sprite": {"interval": 2, "width": 120}}})),
    );
    assert_eq!(
        (status, forced["status"].as_str()),
        (200, Some("queued")),
        "{forced}"
    );
    let forced_job = forced["encoding_id"].as_str().unwrap().to_string();
    assert_ne!(forced_job, short_job);
    tenant.wait_job(&forced_job, ENCODE, playable_complete);
    let forced_thumbs = thumbnails_everywhere(&tenant, &hook, &short_id, &forced_job);
    for f in ["poster_url", "sprite_url", "sprite_vtt_url"] {
        assert_ne!(forced_thumbs[f], short_thumbs[f], "{f} was not regenerated");
    }
    let forced_poster = check_poster(
        work.path(),
        &short,
        forced_thumbs["poster_url"].as_str().unwrap(),
        3.0,
        1.0,
    );
    let forced_vtt = check_sprites(
        work.path(),
        &short,
        forced_thumbs["sprite_vtt_url"].as_str().unwrap(),
        forced_thumbs["sprite_url"].as_str().unwrap(),
        2.0,
        120,
    );
    // The replaced job's artefacts go with it once its grace is over.
    wait_for(
        "the replaced job's poster to be deleted",
        Duration::from_secs(120),
        || fetch(short_thumbs["poster_url"].as_str().unwrap()).0 == 404,
    );

    // No artefact in the clear on any node's disk or in their temp directory: a
    // slice of each poster's JPEG data, and each VTT's first cue.
    let mut needles: Vec<Vec<u8>> = Vec::new();
    for jpeg in [&long_poster, &short_poster, &forced_poster] {
        let mid = jpeg.len() / 2;
        needles.push(jpeg[mid.saturating_sub(128)..(mid + 128).min(jpeg.len())].to_vec());
    }
    for vtt in [&long_vtt, &short_vtt, &forced_vtt] {
        let cue: Vec<&str> = vtt
            .lines()
            .skip_while(|l| !l.contains("-->"))
            .take(2)
            .collect();
        needles.push(cue.join("\n").into_bytes());
    }
    let mut roots: Vec<PathBuf> = cluster.nodes.iter().map(|n| n.dir.clone()).collect();
    roots.extend(
        std::fs::read_dir(&node_tmp)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.as_path() != cluster.dir.path()),
    );
    let needles: Vec<&[u8]> = needles.iter().map(Vec::as_slice).collect();
    let hits = files_containing(&roots, &needles);
    assert!(hits.is_empty(), "artefacts in the clear on disk: {hits:?}");
    drop(cluster);
    let _ = std::fs::remove_dir_all(&node_tmp);
}

//! Video as a tenant and a viewer meet it, on a real cluster (one `zib server`, six
//! `zib node` processes, real ffmpeg): a 1080p clip is encoded to an AES-128 HLS
//! ladder that ffprobe and ffmpeg read through the CDN's URLs; a wrong key does not
//! decode; the request is idempotent; a forced re-encode keeps a player going; a
//! holder lost after `safe` is repaired while playback continues; every `encoding.*`
//! event arrives signed and in order; no plaintext or key is left on a node's disk.
//!
//! One story on one cluster (two cores): a second cluster would double the encodes.

mod common;
#[path = "common/webhook_receiver.rs"]
mod receiver;
#[path = "common/video.rs"]
mod video;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::procs::ProcCluster;
use common::*;
use receiver::{verify_standard, zib_primary_signature_ok, Receiver};
use serde_json::json;
use video::*;

const ENCODE: Duration = Duration::from_secs(600);
const SECRET: &str = "e2e-video-webhook-secret-0123456789";

fn cluster() -> ProcCluster {
    ProcCluster::start(
        6,
        &[
            ("ZIB_ALLOW_PRIVATE_WEBHOOK_TARGETS", "true"),
            ("ZIB_WEBHOOK_POLL_INTERVAL_MS", "100"),
            ("ZIB_WEBHOOK_RETRY_SCHEDULE", "1s,1s,2s,2s,2s"),
            // Players mid-stream keep the replaced job's segments this long.
            ("ZIB_ENCODING_EVICTION_GRACE_SECS", "120"),
        ],
    )
}

/// The node (index) a segment URL points at, by its port.
fn node_of(cluster: &ProcCluster, url: &str) -> Option<usize> {
    let port = reqwest::Url::parse(url).ok()?.port()?;
    cluster.nodes.iter().position(|n| n.port == port)
}

/// `/v1/segments/{blob_id}` or `/segments/{blob_id}.ts`: the blob id in a segment URL.
fn blob_of(url: &str) -> String {
    let path = reqwest::Url::parse(url)
        .map(|u| u.path().to_string())
        .unwrap_or_default();
    path.rsplit('/')
        .next()
        .unwrap_or("")
        .trim_end_matches(".ts")
        .to_string()
}

/// Every segment URL of every rung of the master now served.
fn all_segments(master_url: &str) -> Vec<String> {
    let (status, master) = fetch_text(master_url);
    assert_eq!(status, 200, "{master_url}: {master}");
    let mut out = Vec::new();
    for v in variants(&master, master_url) {
        let (status, text) = fetch_text(&v.url);
        assert_eq!(status, 200, "{}: {text}", v.url);
        out.extend(media(&text, &v.url).segments);
    }
    out
}

#[test]
fn a_1080p_clip_becomes_a_ladder_that_plays_from_the_cdn_through_a_reencode_and_a_lost_holder() {
    ensure_media();
    let work = tempfile::tempdir().unwrap();
    let marker = format!("ZIBMARKER{:016x}", rand_u64());
    let clip = Clip {
        marker: Some(marker.clone()),
        ..Clip::new(1920, 1080, 6)
    };
    let path = make_clip(work.path(), "landscape.mp4", &clip);

    // The nodes (and ffmpeg under them) get their own $TMPDIR, scanned at the end.
    // Kept if the test fails (the cluster's logs are inside it).
    let node_tmp = tempfile::tempdir().unwrap().keep();
    std::env::set_var("TMPDIR", &node_tmp);
    let mut cluster = cluster();
    let tenant = Tenant {
        api_url: cluster.api_url.clone(),
        bearer: cluster.bearer(),
    };
    let hook = Receiver::start();

    let file_id = rt()
        .block_on(cluster.client().upload_path(
            &path,
            "videos",
            "landscape.mp4",
            Some("video/mp4"),
            &zib_client::UploadOptions::default(),
        ))
        .expect("upload")
        .file_id
        .to_string();
    let master_url = tenant.master_url(&file_id);

    // Idempotent requests, per-request webhook (Pattern 1).
    let (status, first) = tenant.request_encode(
        &file_id,
        json!({"webhook_url": hook.url("/hook"), "webhook_secret": SECRET}),
    );
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["status"], "queued", "{first}");
    let job_id = first["encoding_id"]
        .as_str()
        .expect("encoding_id")
        .to_string();
    let (status, again) = tenant.request_encode(&file_id, json!({}));
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["status"], "already_queued", "{again}");
    assert_eq!(again["encoding_id"], job_id.as_str());
    // Nothing to play before a first rung exists.
    let (status, _) = fetch_text(&master_url);
    assert_eq!(
        status, 404,
        "the master is served before any rung is published"
    );

    // Another tenant sees none of it.
    let other = Tenant {
        api_url: cluster.api_url.clone(),
        bearer: cluster.create_tenant("other"),
    };
    assert_eq!(other.job(&job_id).0, 404);
    assert_eq!(other.request_encode(&file_id, json!({})).0, 404);

    // The lowest rung is playable before the top rungs are done, and rungs join.
    let mut first_seen: Option<(usize, String)> = None;
    let deadline = Instant::now() + ENCODE;
    let job = loop {
        let (code, job) = tenant.job(&job_id);
        assert_eq!(code, 200, "{job}");
        let phase = job["phase"].as_str().unwrap_or("").to_string();
        assert!(
            !matches!(phase.as_str(), "failed_user_action" | "cancelled"),
            "{job}"
        );
        if first_seen.is_none() {
            let (status, master) = fetch_text(&master_url);
            if status == 200 {
                first_seen = Some((variants(&master, &master_url).len(), phase.clone()));
            }
        }
        if playable_complete(&phase) {
            break job;
        }
        assert!(Instant::now() < deadline, "encode never completed: {job}");
        std::thread::sleep(Duration::from_millis(300));
    };
    let (rungs_at_first_sight, phase_at_first_sight) =
        first_seen.expect("the master was never seen before local_complete");
    assert!(
        rungs_at_first_sight < 4 && !playable_complete(&phase_at_first_sight),
        "first playable with {rungs_at_first_sight} rungs in {phase_at_first_sight}: \
         the stream should be playable before the top rungs finish"
    );
    assert_eq!(job["hls_manifest_url"], master_url.as_str(), "{job}");
    assert_eq!(job["encoding_id"], job_id.as_str());
    assert!(job["progress"].as_f64().unwrap_or(0.0) >= 90.0, "{job}");

    // The ladder: every rung up to the source, none above, right attributes.
    let (status, headers, body) = fetch(&master_url);
    assert_eq!(status, 200);
    assert!(headers["content-type"].contains("mpegurl"), "{headers:?}");
    assert!(headers["cache-control"].contains("no-cache"), "{headers:?}");
    assert_eq!(
        headers
            .get("access-control-allow-origin")
            .map(String::as_str),
        Some("*")
    );
    let master = String::from_utf8(body).unwrap();
    let rungs = variants(&master, &master_url);
    let resolutions: Vec<(u32, u32)> = rungs.iter().map(Variant::resolution).collect();
    let mut sorted = resolutions.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [(640, 360), (854, 480), (1280, 720), (1920, 1080)],
        "{master}"
    );
    for rung in &rungs {
        let (w, h) = rung.resolution();
        assert!(rung.attr("CODECS").contains("avc1"), "{master}");
        assert!(rung.attr("CODECS").contains("mp4a"), "{master}");
        assert!((rung.number("FRAME-RATE") - 30.0).abs() < 0.1, "{master}");
        let peak = rung.number("BANDWIDTH");
        let average = rung.number("AVERAGE-BANDWIDTH");
        assert!(average > 0.0 && average <= peak, "{master}");

        let (status, headers, body) = fetch(&rung.url);
        assert_eq!(status, 200, "{}", rung.url);
        assert!(headers["cache-control"].contains("no-cache"), "{headers:?}");
        let text = String::from_utf8(body).unwrap();
        let playlist = media(&text, &rung.url);
        assert!(playlist.ended, "{text}");
        assert_eq!(playlist.key["METHOD"], "AES-128", "{text}");
        assert!(
            !playlist.key.contains_key("IV"),
            "IV is the sequence number: {text}"
        );
        assert!(
            playlist.key["URI"].contains(&format!("job={job_id}")),
            "the key names its job: {text}"
        );
        // Keyframes forced every 4 s: 6 s of video is two segments.
        assert_eq!(playlist.segments.len(), 2, "{text}");
        assert!(playlist.target_duration <= 5.0, "{text}");

        // BANDWIDTH is the measured peak: within 10 % of what the segments weigh.
        let mut real_peak: f64 = 0.0;
        for (seg, dur) in playlist.segments.iter().zip(&playlist.durations) {
            let (status, headers, bytes) = fetch(seg);
            assert_eq!(status, 200, "{seg}");
            assert_eq!(
                headers
                    .get("access-control-allow-origin")
                    .map(String::as_str),
                Some("*"),
                "{seg}"
            );
            assert!(
                headers
                    .get("cache-control")
                    .is_some_and(|c| c.contains("max-age")),
                "segments are long-cached: {headers:?}"
            );
            real_peak = real_peak.max(bytes.len() as f64 * 8.0 / dur);
        }
        assert!(
            (peak - real_peak).abs() <= real_peak * 0.10,
            "{w}x{h}: BANDWIDTH {peak} vs measured peak {real_peak}"
        );

        // ffprobe through the CDN: the rung's dimensions and codecs.
        let p = probe(&rung.url);
        let v = &streams_of(&p, "video")[0];
        assert_eq!(
            (v["width"].as_u64(), v["height"].as_u64()),
            (Some(w.into()), Some(h.into()))
        );
        assert_eq!(v["codec_name"], "h264");
        assert_eq!(streams_of(&p, "audio")[0]["codec_name"], "aac");
        // Every frame of the source, decrypted and decoded.
        assert_eq!(count_frames(&rung.url), Ok(clip.frames()), "{}", rung.url);
    }
    // The whole stream through the master URL.
    assert_eq!(count_frames(&master_url), Ok(clip.frames()));

    // A wrong key: the same playlist, served locally with another key, decodes nothing.
    let lowest = &rungs[resolutions.iter().position(|r| *r == (640, 360)).unwrap()];
    let (_, text) = fetch_text(&lowest.url);
    let playlist = media(&text, &lowest.url);
    let key_url = resolve(&lowest.url, &playlist.key["URI"]);
    let (status, _, key) = fetch(&key_url);
    assert_eq!((status, key.len()), (200, 16), "the key is 16 raw bytes");
    let local = StaticServer::start();
    let doctor = |key_uri: &str| -> String {
        let mut out = String::new();
        for line in text.lines() {
            if line.starts_with("#EXT-X-KEY:") {
                out.push_str(&format!("#EXT-X-KEY:METHOD=AES-128,URI=\"{key_uri}\"\n"));
            } else if !line.starts_with('#') && !line.trim().is_empty() {
                out.push_str(&resolve(&lowest.url, line.trim()));
                out.push('\n');
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    };
    let right = local.put("/right.key", key.clone());
    let mut wrong_key = key.clone();
    wrong_key[0] ^= 0xff;
    let wrong = local.put("/wrong.key", wrong_key);
    let right_url = local.put("/right.m3u8", doctor(&right));
    let wrong_url = local.put("/wrong.m3u8", doctor(&wrong));
    assert_eq!(
        count_frames(&right_url),
        Ok(clip.frames()),
        "the doctoring itself is harmless"
    );
    let decoded = count_frames(&wrong_url);
    assert!(
        !matches!(decoded, Ok(n) if n > 0),
        "a wrong key decoded {decoded:?} frames"
    );

    // Done is done: the same request now answers already_encoded.
    let (status, done) = tenant.request_encode(&file_id, json!({}));
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["status"], "already_encoded", "{done}");
    assert_eq!(done["encoding_id"], job_id.as_str());
    assert_eq!(done["cdn_url"], master_url.as_str());

    let job = tenant.wait_job(&job_id, ENCODE, |p| p == "safe");
    assert!(job["error_message"].is_null(), "{job}");
    let listed = tenant.my_jobs("all");
    let row = listed
        .iter()
        .find(|j| j["file_id"] == file_id.as_str())
        .expect("my-jobs lists the job");
    assert_eq!(row["phase"], "safe", "{row}");
    assert!(
        row["replication_peer_count"].as_u64().unwrap_or(0) >= 3,
        "{row}"
    );
    assert_eq!(row["replication_target_count"], 3, "{row}");
    assert!(!row["replication_safe_at"].is_null(), "{row}");
    assert!(tenant
        .my_jobs("active")
        .iter()
        .all(|j| j["file_id"] != file_id.as_str()));

    // Events of the first job: signed, in order, the reference's fields.
    let events = hook.wait_until("encoding.complete", Duration::from_secs(60), |all| {
        all.iter().any(|r| r.event() == "encoding.complete")
    });
    check_events(&events, &job_id, &file_id, &master_url);

    // A forced re-encode while a player keeps playing.
    let (_, old_playlist_text) = fetch_text(&lowest.url);
    let playing = Arc::new(AtomicBool::new(true));
    let plays: Arc<Mutex<Vec<Result<u64, String>>>> = Arc::default();
    let player = {
        let (playing, plays, master_url) = (playing.clone(), plays.clone(), master_url.clone());
        std::thread::spawn(move || {
            while playing.load(Ordering::SeqCst) {
                // Like a player: the master, then the lowest rung, decoded to the end.
                let (status, master) = fetch_text(&master_url);
                let result = if status != 200 {
                    Err(format!("master answered {status}"))
                } else {
                    let rungs = variants(&master, &master_url);
                    match rungs.iter().min_by_key(|v| v.resolution().1) {
                        Some(v) => count_frames(&v.url),
                        None => Err("no rung in the master".into()),
                    }
                };
                plays.lock().unwrap().push(result);
            }
        })
    };
    let (status, forced) = tenant.request_encode(&file_id, json!({"force": true}));
    assert_eq!(status, 200, "{forced}");
    assert_eq!(forced["status"], "queued", "{forced}");
    let new_job = forced["encoding_id"].as_str().unwrap().to_string();
    assert_ne!(new_job, job_id);
    tenant.wait_job(&new_job, ENCODE, playable_complete);
    // A few more plays on the new encode.
    let seen = plays.lock().unwrap().len();
    wait_for("two plays of the new encode", ENCODE, || {
        plays.lock().unwrap().len() >= seen + 2
    });
    playing.store(false, Ordering::SeqCst);
    player.join().unwrap();
    let plays = plays.lock().unwrap().clone();
    assert!(plays.len() >= 3, "{plays:?}");
    for (i, play) in plays.iter().enumerate() {
        assert_eq!(
            play,
            &Ok(clip.frames()),
            "play {i} of {} during the re-encode",
            plays.len()
        );
    }
    let (_, master_now) = fetch_text(&master_url);
    let low_now = variants(&master_now, &master_url)
        .into_iter()
        .find(|v| v.resolution() == (640, 360))
        .unwrap();
    let (_, now_text) = fetch_text(&low_now.url);
    assert!(
        media(&now_text, &low_now.url).key["URI"].contains(&format!("job={new_job}")),
        "the master serves the new job: {now_text}"
    );
    // A player that loaded the old playlist before the switch still gets the old
    // job's key for the old segments.
    let old_url = local.put(
        "/old.m3u8",
        old_playlist_text
            .lines()
            .map(|l| {
                if let Some(attrs) = l.strip_prefix("#EXT-X-KEY:") {
                    let a = parse_attrs(attrs);
                    format!(
                        "#EXT-X-KEY:METHOD=AES-128,URI=\"{}\"",
                        resolve(&lowest.url, &a["URI"])
                    )
                } else if !l.starts_with('#') && !l.trim().is_empty() {
                    resolve(&lowest.url, l.trim())
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n"),
    );
    assert_eq!(
        count_frames(&old_url),
        Ok(clip.frames()),
        "the old playlist in its grace"
    );

    // A holder lost after safe: repaired, and playback continues.
    tenant.wait_job(&new_job, ENCODE, |p| p == "safe");
    let segments = all_segments(&master_url);
    let blobs: HashSet<String> = segments.iter().map(|s| blob_of(s)).collect();
    let victim = segments
        .iter()
        .find_map(|s| node_of(&cluster, s))
        .expect("segment URLs point at nodes while they are online");
    let holders = |cluster: &ProcCluster, dead: usize| -> HashMap<String, usize> {
        let mut count: HashMap<String, usize> = HashMap::new();
        for (i, n) in cluster.nodes.iter().enumerate() {
            if i == dead {
                continue;
            }
            for f in files_under(&n.dir) {
                if let Some(name) = f.file_name().and_then(|n| n.to_str()) {
                    if blobs.contains(name) {
                        *count.entry(name.to_string()).or_default() += 1;
                    }
                }
            }
        }
        count
    };
    cluster.kill_node(victim);
    // Once the node is seen offline, playlists route around it (other holders, or
    // the CDN proxy) and playback goes on before any repair.
    wait_for(
        "playlists to stop naming the lost node",
        Duration::from_secs(30),
        || {
            all_segments(&master_url)
                .iter()
                .all(|s| node_of(&cluster, s) != Some(victim))
        },
    );
    assert_eq!(
        count_frames(&master_url),
        Ok(clip.frames()),
        "after losing node {victim}"
    );
    wait_for(
        "every segment back on 3 live holders",
        Duration::from_secs(180),
        || {
            let h = holders(&cluster, victim);
            blobs.iter().all(|b| h.get(b).copied().unwrap_or(0) >= 3)
        },
    );
    assert_eq!(
        count_frames(&master_url),
        Ok(clip.frames()),
        "after the repair"
    );
    let (_, job) = tenant.job(&new_job);
    assert_eq!(job["phase"], "safe", "{job}");

    // No plaintext and no key on any node's disk or in their temp directory.
    let (_, _, new_key) = fetch(&format!("{}/stream/{file_id}/key", cluster.api_url));
    assert_eq!(new_key.len(), 16);
    let key_hex = hex::encode(&key);
    let new_key_hex = hex::encode(&new_key);
    let mut roots: Vec<std::path::PathBuf> = cluster.nodes.iter().map(|n| n.dir.clone()).collect();
    roots.extend(
        std::fs::read_dir(&node_tmp)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.as_path() != cluster.dir.path()),
    );
    let needles: [&[u8]; 5] = [
        marker.as_bytes(),
        &key,
        key_hex.as_bytes(),
        &new_key,
        new_key_hex.as_bytes(),
    ];
    let hits = files_containing(&roots, &needles);
    assert!(
        hits.is_empty(),
        "plaintext or key material on disk: {hits:?}"
    );
    drop(cluster);
    let _ = std::fs::remove_dir_all(&node_tmp);
}

/// The per-request hook's deliveries for `job_id`: signed with our secret (both
/// schemes), in lifecycle order, with the contract's fields.
fn check_events(all: &[receiver::Received], job_id: &str, file_id: &str, master_url: &str) {
    let mine: Vec<&receiver::Received> = all
        .iter()
        .filter(|r| r.answered < 300 && r.json()["job_id"] == job_id)
        .collect();
    let names: Vec<String> = mine.iter().map(|r| r.event()).collect();
    let rank = |r: &receiver::Received| match r.event().as_str() {
        "encoding.queued" => 0,
        "encoding.started" => 1,
        "encoding.progress" if r.json()["stage"] == "encoding" => 2,
        "encoding.sharding" => 3,
        "encoding.progress" => 4,
        "encoding.complete" => 5,
        other => panic!("unexpected event {other} for the job: {names:?}"),
    };
    let ranks: Vec<u8> = mine.iter().map(|r| rank(r)).collect();
    assert!(
        ranks.windows(2).all(|w| w[0] <= w[1]),
        "out of order: {names:?}"
    );
    for needed in [
        "encoding.queued",
        "encoding.started",
        "encoding.sharding",
        "encoding.complete",
    ] {
        assert_eq!(
            names.iter().filter(|n| *n == needed).count(),
            1,
            "{needed} exactly once: {names:?}"
        );
    }
    let mut last_progress = -1i64;
    for r in &mine {
        let body = r.json();
        assert!(
            zib_primary_signature_ok(SECRET, r),
            "unsigned {}",
            r.event()
        );
        assert_eq!(r.header("x-zib-event"), r.event());
        assert_eq!(r.header("x-zib-job-id"), job_id, "{}", r.event());
        assert_eq!(body["file_id"], file_id);
        assert!(body["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')));
        if r.event() == "encoding.progress" {
            let p = body["progress"].as_i64().expect("integer progress");
            assert!((0..=100).contains(&p) && p >= last_progress, "{names:?}");
            last_progress = p;
        } else {
            for field in [
                "status",
                "customer_id",
                "hls_manifest_url",
                "error_message",
                "transcription_model",
                "vision_model",
                "thumbnails",
            ] {
                assert!(
                    body.get(field).is_some(),
                    "{} lacks {field}: {body}",
                    r.event()
                );
            }
            let complete = r.event() == "encoding.complete";
            assert_eq!(body["hls_manifest_url"].is_null(), !complete, "{body}");
            if complete {
                assert_eq!(body["hls_manifest_url"], master_url);
                assert_eq!(body["status"], "complete");
            }
        }
    }
    let items: Vec<(&str, &receiver::Received)> = mine.iter().map(|r| (SECRET, *r)).collect();
    for (r, result) in mine.iter().zip(verify_standard(&items)) {
        assert!(
            result.is_ok(),
            "standardwebhooks refuses {}: {result:?}",
            r.event()
        );
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish()
}

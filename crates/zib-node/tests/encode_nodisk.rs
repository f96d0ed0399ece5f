//! A whole encode on a real node with real ffmpeg, driven by a fake server: the
//! ladder is produced lowest rung first, every segment is AES-128 encrypted with the
//! job's key (IV = sequence number), stored, reported and replicated to the other
//! nodes, its thumbnails sent to the server — and afterwards neither the source's
//! plaintext, nor any key, nor any thumbnail byte is anywhere on the nodes' disks or
//! in the temporary directory ffmpeg could use.
//!
//! Its own test binary: it points `TMPDIR` at a fresh directory for the whole
//! process, so the scan covers every temporary file ffmpeg or the node made.

mod encode_support;

use std::path::Path;
use std::time::Duration;

use encode_support::*;
use zib_proto::jobs::{JobStage, SpritePlan, ThumbnailPlan};

const LIMIT: Duration = Duration::from_secs(300);

/// Every file under `dir` (recursively) that contains one of `needles`.
fn files_containing(dir: &Path, needles: &[(String, Vec<u8>)]) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_containing(&path, needles));
        } else if let Ok(bytes) = std::fs::read(&path) {
            for (what, needle) in needles {
                if bytes.windows(needle.len()).any(|w| w == needle.as_slice()) {
                    found.push(format!("{} holds {what}", path.display()));
                }
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encode_leaves_no_plaintext_and_no_key_on_disk() {
    ensure_ffmpeg();
    let tmp = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    // Before any thread of ours could read it: only this test runs in this binary.
    std::env::set_var("TMPDIR", tmp.path());

    let marker = format!("ZIB-PLAINTEXT-MARKER-{}", uuid::Uuid::new_v4().simple());
    let clip = make_clip(854, 480, 6, &marker);
    assert!(clip.windows(marker.len()).any(|w| w == marker.as_bytes()));
    let (url, fake) = start_fake().await;
    let plan = ThumbnailPlan {
        poster_at: None,
        sprite: Some(SpritePlan {
            interval_secs: 2,
            width_px: 160,
        }),
    };
    let keys = offer_job_with(&fake, &url, &clip, 64 * 1024, Some(plan), None);

    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut nodes = Vec::new();
    for (i, dir) in dirs.iter().enumerate() {
        let mut config = node_config(&url, dir);
        // One encoder; the others hold replicas.
        config.encode = i == 0;
        nodes.push(start_node(config).await);
    }
    let encoder = nodes[0].node_id.clone();
    wait_for("the job to end", LIMIT, || {
        let seen = fake.seen.lock().unwrap();
        seen.done.is_some() || seen.failed.is_some()
    })
    .await;

    let seen = fake.seen();
    assert!(seen.failed.is_none(), "job failed: {:?}", seen.failed);
    assert!(seen.stray_calls.is_empty(), "{:?}", seen.stray_calls);
    let probed = seen.probed.clone().unwrap();
    assert_eq!((probed.probe.width, probed.probe.height), (854, 480));
    let names: Vec<&str> = probed.renditions.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        ["360p", "480p"],
        "lowest first, none above the source"
    );
    let published: Vec<&str> = seen.published.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(published, ["360p", "480p"]);
    // Progress is reported, and never goes back.
    assert!(!seen.renewals.is_empty());
    let mut last = 0.0;
    for r in &seen.renewals {
        assert!(
            r.progress + 1e-9 >= last,
            "progress went back: {:?}",
            seen.renewals
        );
        assert!((0.0..=100.0).contains(&r.progress));
        last = r.progress;
        if r.stage == JobStage::Encoding {
            assert!(r.progress <= 90.0);
        }
    }

    let http = reqwest::Client::new();
    for (name, done) in &seen.published {
        let segments: Vec<_> = seen
            .segments
            .iter()
            .filter(|s| &s.rendition == name)
            .collect();
        assert_eq!(segments.len() as u32, done.segment_count, "{name}");
        let total: u64 = segments.iter().map(|s| s.duration_ms).sum();
        assert!((5000..=7000).contains(&total), "{name}: {total} ms of 6 s");
        for (seq, s) in segments.iter().enumerate() {
            assert_eq!(s.seq as usize, seq);
            assert_eq!(s.node_id, encoder);
            let iv = zib_crypto::hls::iv_for_sequence(seq as u64);
            assert_eq!(s.iv, hex::encode(iv));
            // Served publicly by the encoder and by every replica, same bytes.
            let replicas = seen
                .replicas
                .iter()
                .find(|r| r.blob_id == s.blob_id)
                .expect("replicas reported");
            assert_eq!(replicas.node_ids.len(), 2, "both other nodes hold it");
            for node in &nodes {
                let got = http
                    .get(format!("http://{}/v1/segments/{}", node.addr, s.blob_id))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(got.status(), 200);
                let bytes = got.bytes().await.unwrap();
                assert_eq!(blake3::hash(&bytes).to_hex().as_str(), s.blake3);
                let plain = zib_crypto::hls::decrypt_segment(&keys.hls_key, &iv, &bytes)
                    .expect("decrypts with the job's key");
                assert_eq!(plain.first(), Some(&0x47), "an MPEG-TS packet");
                assert_eq!(plain.len() % 188, 0);
            }
        }
    }
    for node in nodes {
        node.stop().await;
    }

    // The proof: no plaintext, no key, in the nodes' directories or the temp dir.
    let mut needles = vec![
        ("the marker".to_string(), marker.into_bytes()),
        ("the data key".to_string(), keys.data_key.to_vec()),
        (
            "the data key (hex)".to_string(),
            hex::encode(keys.data_key).into_bytes(),
        ),
        ("the segment key".to_string(), keys.hls_key.to_vec()),
        (
            "the segment key (hex)".to_string(),
            hex::encode(keys.hls_key).into_bytes(),
        ),
    ];
    for at in [0, clip.len() / 3, clip.len() / 2, clip.len() - 64] {
        needles.push((format!("source bytes at {at}"), clip[at..at + 64].to_vec()));
    }
    // Each artefact by a run of its own bytes (past the JPEG headers, which repeat).
    let uploaded: Vec<(String, Vec<u8>)> = seen
        .artifacts
        .iter()
        .map(|a| {
            let middle = a.bytes.len() / 2;
            let run = &a.bytes[middle.saturating_sub(32)..(middle + 32).min(a.bytes.len())];
            (format!("{} {}", a.kind.as_str(), a.seq), run.to_vec())
        })
        .collect();
    assert_eq!(uploaded.len(), 3, "a poster, one sheet and the track");
    let base = needles.len();
    needles.extend(uploaded.iter().cloned());
    let mut found = files_containing(tmp.path(), &needles);
    for dir in &dirs {
        found.extend(files_containing(dir.path(), &needles));
    }
    assert!(found.is_empty(), "found on disk: {found:#?}");
    // And the scan does find what is there.
    let control = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    std::fs::create_dir(control.path().join("sub")).unwrap();
    std::fs::write(control.path().join("sub").join("x"), &clip).unwrap();
    for (i, a) in seen.artifacts.iter().enumerate() {
        std::fs::write(control.path().join(format!("a{i}")), &a.bytes).unwrap();
    }
    assert_eq!(
        files_containing(control.path(), &needles).len(),
        base - 4 + uploaded.len()
    );
}

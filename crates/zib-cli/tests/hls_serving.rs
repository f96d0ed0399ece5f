//! The CDN's HLS surface and segment durability on a cluster of separate processes:
//! an encoding job's output is laid down as the job protocol leaves it (job,
//! rendition, segment and replica rows in the server's SQLite; real segment blobs
//! pushed to real nodes with `Segment` capabilities), then everything a player and
//! the durability workers do is real: 404 before a rung is published, the master and
//! variant playlists, the key, segment URLs on online holders with CORS, the proxy
//! (verifying, falling back), a deleted copy found by its audit and replaced, and
//! `safe` once every segment is verified on three peers.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use common::procs::ProcCluster;
use common::*;
use zib_crypto::{CapabilitySigner, DataKey, MasterKey};
use zib_proto::node_rpc::{CapabilityClaims, CapabilityOp};
use zib_proto::{BlobId, FileId, NodeId};

const MASTER_KEY: &str = "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e";
const CAPABILITY_KEY: &str = "0a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20212223242526272829";

fn sql(cluster: &ProcCluster, script: &str) {
    let out = Command::new("sqlite3")
        .arg(cluster.database())
        .arg(format!("PRAGMA busy_timeout = 5000; {script}"))
        .output()
        .expect("sqlite3");
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

struct Node {
    index: usize,
    id: NodeId,
    url: String,
}

/// The cluster's nodes by id, with their process index.
fn nodes(cluster: &ProcCluster) -> Vec<Node> {
    let store = store(cluster);
    let rows = rt().block_on(store.list_nodes()).unwrap();
    rows.into_iter()
        .map(|n| Node {
            index: cluster
                .nodes
                .iter()
                .position(|p| n.public_url.ends_with(&format!(":{}", p.port)))
                .expect("node process"),
            id: n.node_id,
            url: n.public_url,
        })
        .collect()
}

/// Pushes a copy; returns the BLAKE3 the node computed over what it stored.
fn push_segment(
    http: &reqwest::blocking::Client,
    node: &Node,
    blob: BlobId,
    bytes: &[u8],
) -> String {
    let signer = CapabilitySigner::from_seed_hex(CAPABILITY_KEY).unwrap();
    let token = signer.sign(&CapabilityClaims {
        op: CapabilityOp::Segment,
        node_id: node.id.clone(),
        blob_id: blob,
        size: bytes.len() as u64,
        part: None,
        offset: None,
        parts: None,
        envelope: None,
        expires_at: (now_ms() / 1000) as u64 + 600,
        jti: format!("{blob}-{}", node.id),
    });
    let resp = http
        .put(format!("{}/v1/shards/{blob}?token={token}", node.url))
        .body(bytes.to_vec())
        .send()
        .unwrap();
    assert!(
        resp.status().is_success(),
        "push to {}: {}",
        node.id,
        resp.status()
    );
    resp.json::<zib_proto::node_rpc::ShardStored>()
        .unwrap()
        .blake3
}

struct Segment {
    blob: BlobId,
    bytes: Vec<u8>,
}

/// Stores a rendition's segments on the origin and `peers`, with their rows.
fn lay_down(
    cluster: &ProcCluster,
    job: &str,
    rendition: &str,
    count: u32,
    origin: &Node,
    peers: &[&Node],
) -> Vec<Segment> {
    let http = reqwest::blocking::Client::new();
    let mut out = Vec::new();
    let mut script = String::new();
    for seq in 0..count {
        let blob = BlobId::new_random();
        let bytes = pattern(20_000 + u64::from(seq) * 1000, u64::from(seq) + 7);
        let hash = push_segment(&http, origin, blob, &bytes);
        for p in peers {
            assert_eq!(push_segment(&http, p, blob, &bytes), hash);
        }
        // The last segment is shorter, as a clip's last one is.
        let duration = if seq + 1 == count { 2500 } else { 4000 };
        script.push_str(&format!(
            "INSERT INTO hls_segments (job_id, rendition, seq, duration_ms, size, blake3, iv, blob_id, created_at) \
             VALUES ('{job}', '{rendition}', {seq}, {duration}, {}, X'{hash}', zeroblob(16), '{blob}', {});",
            bytes.len(),
            now_ms()
        ));
        script.push_str(&format!(
            "INSERT INTO segment_replicas (blob_id, node_id, is_origin, created_at) VALUES ('{blob}', '{}', 1, {});",
            origin.id,
            now_ms()
        ));
        for p in peers {
            script.push_str(&format!(
                "INSERT INTO segment_replicas (blob_id, node_id, is_origin, created_at) VALUES ('{blob}', '{}', 0, {});",
                p.id,
                now_ms()
            ));
        }
        out.push(Segment { blob, bytes });
    }
    sql(cluster, &script);
    out
}

fn fetch(url: &str) -> reqwest::blocking::Response {
    reqwest::blocking::Client::new()
        .get(url)
        .header("Origin", "https://player.example")
        .send()
        .unwrap()
}

fn header(resp: &reqwest::blocking::Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// A media playlist's segment URLs, with the tags that precede them.
fn media_entries(body: &str) -> (BTreeMap<String, String>, Vec<(f64, String)>) {
    let mut tags = BTreeMap::new();
    let mut entries = Vec::new();
    let mut pending = None;
    for line in body.lines() {
        if let Some(d) = line.strip_prefix("#EXTINF:") {
            pending = Some(d.trim_end_matches(',').parse::<f64>().unwrap());
        } else if let Some(tag) = line.strip_prefix("#EXT-X-") {
            let (k, v) = tag.split_once(':').unwrap_or((tag, ""));
            tags.insert(k.to_string(), v.to_string());
        } else if !line.starts_with('#') && !line.is_empty() {
            entries.push((pending.take().expect("EXTINF before URI"), line.to_string()));
        }
    }
    (tags, entries)
}

#[test]
fn hls_output_is_served_verified_repaired_and_made_safe() {
    let mut cluster = ProcCluster::start(
        5,
        &[
            ("ZIB_MASTER_KEY", MASTER_KEY),
            ("ZIB_CAPABILITY_KEY", CAPABILITY_KEY),
            ("ZIB_AUDIT_INTERVAL_SECS", "2"),
        ],
    );
    let work = tempfile::tempdir().unwrap();
    let path = write_file(work.path(), "clip.mp4", &pattern(50_000, 1));
    let file_id: FileId = rt()
        .block_on(cluster.client().upload_path(
            &path,
            "videos",
            "clip.mp4",
            None,
            &zib_client::UploadOptions::default(),
        ))
        .unwrap()
        .file_id;
    let cdn = cluster.api_url.clone();
    let stream = format!("{cdn}/stream/{file_id}");

    // Nothing encoded: 404 JSON naming the problem, with CORS.
    let resp = fetch(&format!("{stream}/master.m3u8"));
    assert_eq!(resp.status(), 404);
    assert_eq!(header(&resp, "access-control-allow-origin"), "*");
    let err: serde_json::Value = resp.json().unwrap();
    assert!(
        err["error"].as_str().unwrap().contains("not encoded"),
        "{err}"
    );

    // A job encoding on node 0: its key wrapped as the server wraps it.
    let all = nodes(&cluster);
    let origin = &all[0];
    let peers: Vec<&Node> = all[1..4].iter().collect();
    let spare = &all[4];
    let tenant = rt()
        .block_on(store(&cluster).file(file_id))
        .unwrap()
        .unwrap()
        .tenant_id;
    let job = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f0";
    let key_bytes: [u8; 32] = std::array::from_fn(|i| i as u8 * 3 + 1);
    let wrapped = MasterKey::from_hex(MASTER_KEY)
        .unwrap()
        .wrap(&DataKey::from_bytes(key_bytes), job.as_bytes());
    sql(
        &cluster,
        &format!(
            "INSERT INTO encoding_jobs (id, file_id, tenant_id, phase, progress, phase_updated_at, \
                 wrapped_hls_key, node_id, created_at) \
             VALUES ('{job}', '{file_id}', '{tenant}', 'encoding', 40, {now}, X'{}', '{}', {now}); \
             INSERT INTO hls_renditions (job_id, name, width, height, codecs, frame_rate, segment_count) \
             VALUES ('{job}', '360p', 640, 360, 'avc1.64001e,mp4a.40.2', 30.0, 3), \
                    ('{job}', '720p', 1280, 720, 'avc1.64001f,mp4a.40.2', 29.97, 2);",
            hex::encode(&wrapped),
            origin.id,
            now = now_ms()
        ),
    );
    let low = lay_down(&cluster, job, "360p", 3, origin, &peers);
    let high = lay_down(&cluster, job, "720p", 2, origin, &peers);

    // Segments stored but no rung published and nothing live: still 404.
    assert_eq!(fetch(&format!("{stream}/master.m3u8")).status(), 404);
    sql(
        &cluster,
        &format!(
            "UPDATE hls_renditions SET published_at = {now} WHERE job_id = '{job}' AND name = '360p'; \
             INSERT INTO live_encodings (file_id, job_id, updated_at) VALUES ('{file_id}', '{job}', {now});",
            now = now_ms()
        ),
    );

    // The master lists the published rung only, with measured bandwidths.
    let resp = fetch(&format!("{stream}/master.m3u8"));
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "content-type"),
        "application/vnd.apple.mpegurl"
    );
    assert_eq!(header(&resp, "cache-control"), "no-cache");
    assert_eq!(header(&resp, "access-control-allow-origin"), "*");
    let master = resp.text().unwrap();
    let lines: Vec<&str> = master.lines().collect();
    assert_eq!(
        &lines[..3],
        ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-INDEPENDENT-SEGMENTS"]
    );
    let peak = low
        .iter()
        .zip([4.0, 4.0, 2.5])
        .map(|(s, d)| (s.bytes.len() as f64 * 8.0 / d) as u64)
        .max()
        .unwrap();
    assert_eq!(
        lines[3],
        format!(
            "#EXT-X-STREAM-INF:BANDWIDTH={peak},AVERAGE-BANDWIDTH={},RESOLUTION=640x360,\
             CODECS=\"avc1.64001e,mp4a.40.2\",FRAME-RATE=30.000",
            low.iter().map(|s| s.bytes.len() as u64 * 8).sum::<u64>() * 1000 / 10_500
        )
    );
    assert_eq!(lines[4], format!("360p.m3u8?job={job}"));
    assert_eq!(lines.len(), 5, "{master}");
    // An unpublished rung is not served.
    assert_eq!(
        fetch(&format!("{stream}/720p.m3u8?job={job}")).status(),
        404
    );

    // The variant playlist: VOD, the job's key, each segment on an online holder.
    let resp = fetch(&format!("{stream}/360p.m3u8?job={job}"));
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "cache-control"), "no-cache");
    let (tags, entries) = media_entries(&resp.text().unwrap());
    assert_eq!(tags["TARGETDURATION"], "4");
    assert_eq!(tags["MEDIA-SEQUENCE"], "0");
    assert_eq!(tags["PLAYLIST-TYPE"], "VOD");
    assert!(tags.contains_key("ENDLIST"));
    assert_eq!(
        tags["KEY"],
        format!("METHOD=AES-128,URI=\"{cdn}/stream/{file_id}/key?job={job}\"")
    );
    assert_eq!(entries.len(), 3);
    for ((duration, url), (segment, want)) in entries.iter().zip(low.iter().zip([4.0, 4.0, 2.5])) {
        assert_eq!(*duration, want);
        let on_holder = format!("/v1/segments/{}.ts?node=", segment.blob);
        assert!(url.contains(&on_holder), "{url}");
        let resp = fetch(url);
        assert_eq!(resp.status(), 200, "{url}");
        assert_eq!(header(&resp, "access-control-allow-origin"), "*");
        assert_eq!(header(&resp, "content-type"), "video/mp2t");
        assert_eq!(resp.bytes().unwrap().as_ref(), segment.bytes.as_slice());
    }

    // The key: 16 raw bytes, the named job's and (no `job`) the live job's.
    for url in [format!("{stream}/key?job={job}"), format!("{stream}/key")] {
        let resp = fetch(&url);
        assert_eq!(resp.status(), 200);
        assert_eq!(header(&resp, "content-type"), "application/octet-stream");
        assert_eq!(header(&resp, "cache-control"), "no-cache");
        assert_eq!(resp.bytes().unwrap().as_ref(), &key_bytes[..16]);
    }
    // Another file's id does not reach this job, nor does a made-up job.
    let other = FileId::new_random();
    assert_eq!(
        fetch(&format!("{cdn}/stream/{other}/key?job={job}")).status(),
        404
    );
    assert_eq!(
        fetch(&format!(
            "{stream}/key?job=11111111-2222-4333-8444-555555555555"
        ))
        .status(),
        404
    );

    // The proxy: the bytes, checked, long-cached.
    let resp = fetch(&format!("{stream}/segments/{}.ts", low[1].blob));
    assert_eq!(resp.status(), 200);
    assert_eq!(header(&resp, "content-type"), "video/mp2t");
    assert!(header(&resp, "cache-control").contains("immutable"));
    assert_eq!(header(&resp, "access-control-allow-origin"), "*");
    assert_eq!(resp.bytes().unwrap().as_ref(), low[1].bytes.as_slice());

    // The second rung joins; the job is done encoding. The verifier reads every copy
    // and the job goes replicating → safe (three verified peers per segment).
    sql(
        &cluster,
        &format!(
            "UPDATE hls_renditions SET published_at = {now} WHERE job_id = '{job}' AND name = '720p'; \
             UPDATE encoding_jobs SET phase = 'local_complete', progress = 100, completed_at = {now} \
             WHERE id = '{job}';",
            now = now_ms()
        ),
    );
    let master = fetch(&format!("{stream}/master.m3u8")).text().unwrap();
    assert!(master.contains("RESOLUTION=1280x720") && master.contains("FRAME-RATE=29.970"));
    assert!(master.find("640x360").unwrap() < master.find("1280x720").unwrap());
    let store = store(&cluster);
    wait_for("the job to become safe", Duration::from_secs(30), || {
        rt().block_on(store.encoding_job(job))
            .unwrap()
            .is_some_and(|j| j.phase == zib_meta::JobPhase::Safe)
    });
    let safe = rt().block_on(store.encoding_job(job)).unwrap().unwrap();
    assert!(safe.replication_safe_at.is_some());
    assert_eq!(safe.progress, 100);
    assert!(safe.phase_detail.unwrap_or_default().contains("verified"));

    // Verified peers now serve the segments, not the origin.
    let (_, entries) = media_entries(
        &fetch(&format!("{stream}/720p.m3u8?job={job}"))
            .text()
            .unwrap(),
    );
    for (_, url) in &entries {
        assert!(!url.contains(&format!("node={}", origin.id)), "{url}");
        assert!(peers.iter().any(|p| url.starts_with(&p.url)), "{url}");
    }

    // A copy deleted on its holder's disk is found by its audit and copied to the
    // node that had none.
    let victim = peers[0];
    let lost = &high[0];
    let blob_name = lost.blob.to_string();
    let file = files_under(&cluster.node_dir(victim.index).join("blobs"))
        .into_iter()
        .find(|p| p.file_name().and_then(|n| n.to_str()) == Some(blob_name.as_str()))
        .expect("the copy on the victim's disk");
    std::fs::remove_file(&file).unwrap();
    wait_for(
        "the lost copy to be replaced",
        Duration::from_secs(40),
        || {
            let holders = rt()
                .block_on(store.segment_holders(lost.blob))
                .unwrap()
                .unwrap();
            let ids: Vec<&NodeId> = holders.replicas.iter().map(|r| &r.node_id).collect();
            !ids.contains(&&victim.id)
                && holders
                    .replicas
                    .iter()
                    .any(|r| r.node_id == spare.id && r.verified_at.is_some())
        },
    );
    let on_spare = fetch(&format!("{}/v1/segments/{}", spare.url, lost.blob));
    assert_eq!(on_spare.bytes().unwrap().as_ref(), lost.bytes.as_slice());

    // A corrupt copy on the proxy's first choice is skipped and queued for repair.
    let (_, entries) = media_entries(
        &fetch(&format!("{stream}/360p.m3u8?job={job}"))
            .text()
            .unwrap(),
    );
    let first_holder = all
        .iter()
        .find(|n| entries[2].1.starts_with(&n.url))
        .unwrap();
    let target = &low[2];
    let name = target.blob.to_string();
    let copy = files_under(&cluster.node_dir(first_holder.index).join("blobs"))
        .into_iter()
        .find(|p| p.file_name().and_then(|n| n.to_str()) == Some(name.as_str()))
        .unwrap();
    let mut bad = std::fs::read(&copy).unwrap();
    bad[100] ^= 0xff;
    std::fs::write(&copy, &bad).unwrap();
    let resp = fetch(&format!("{stream}/segments/{}.ts", target.blob));
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().unwrap().as_ref(), target.bytes.as_slice());
    wait_for(
        "the corrupt copy to be replaced",
        Duration::from_secs(40),
        || {
            let holders = rt()
                .block_on(store.segment_holders(target.blob))
                .unwrap()
                .unwrap();
            !holders
                .replicas
                .iter()
                .any(|r| r.node_id == first_holder.id)
        },
    );

    // Every holder of a segment down: the playlist falls back to the CDN proxy.
    let holders = rt()
        .block_on(store.segment_holders(low[0].blob))
        .unwrap()
        .unwrap();
    let mut down: Vec<usize> = holders
        .replicas
        .iter()
        .map(|r| all.iter().find(|n| n.id == r.node_id).unwrap().index)
        .collect();
    down.push(origin.index);
    down.sort();
    down.dedup();
    for i in &down {
        cluster.kill_node(*i);
    }
    let proxy = format!("{cdn}/stream/{file_id}/segments/{}.ts", low[0].blob);
    wait_for(
        "the playlist to name the proxy",
        Duration::from_secs(20),
        || {
            let (_, entries) = media_entries(
                &fetch(&format!("{stream}/360p.m3u8?job={job}"))
                    .text()
                    .unwrap(),
            );
            entries[0].1 == proxy
        },
    );
    // With no holder reachable the proxy says so (a player retries), not a panic.
    let resp = fetch(&proxy);
    assert_eq!(resp.status(), 502);
    assert_eq!(header(&resp, "access-control-allow-origin"), "*");
}

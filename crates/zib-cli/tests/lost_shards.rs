//! Shards lost on nodes that keep heartbeating, and placements that would put two
//! shards of a segment on one node, on a cluster of separate processes: each loss
//! is noticed (by a CDN read, the inventory sweep or an audit), rebuilt at once, and
//! shown in the file's status and `/metrics` until it is.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use common::procs::ProcCluster;
use common::*;
use zib_meta::ShardRow;

fn phase(cluster: &ProcCluster, file_id: &str) -> String {
    pipeline(cluster, file_id)["stages"]["upload"]["phase"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn shards(store: &zib_meta::Store, file_id: &str) -> Vec<ShardRow> {
    rt().block_on(store.shards_for_file(file_id.parse().unwrap()))
        .unwrap()
}

/// The file of a shard on its holder's disk.
fn shard_path(cluster: &ProcCluster, shard: &ShardRow) -> PathBuf {
    let blob = shard.blob_id.to_string();
    let node = cluster.blob_locations()[&blob];
    files_under(&cluster.node_dir(node).join("blobs"))
        .into_iter()
        .find(|p| p.file_name().and_then(|n| n.to_str()) == Some(blob.as_str()))
        .unwrap()
}

/// Waits until shard `index` of segment 0 is stored under a new blob id.
fn wait_rebuilt(store: &zib_meta::Store, file_id: &str, victim: &ShardRow, why: &str) {
    wait_for(why, Duration::from_secs(30), || {
        shards(store, file_id).iter().any(|s| {
            s.segment == victim.segment && s.index == victim.index && s.blob_id != victim.blob_id
        })
    });
}

/// Segments (of every file) with two shards on one node.
fn doubled(store: &zib_meta::Store, file_id: &str) -> Vec<(u32, String)> {
    let mut holders: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for s in shards(store, file_id) {
        holders
            .entry(s.segment)
            .or_default()
            .push(s.node_id.to_string());
    }
    holders
        .into_iter()
        .flat_map(|(segment, nodes)| {
            let mut seen = HashSet::new();
            nodes
                .into_iter()
                .filter(|n| !seen.insert(n.clone()))
                .map(move |n| (segment, n))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn below_full_gauge(cluster: &ProcCluster) -> u64 {
    let text = reqwest::blocking::get(format!("{}/metrics", cluster.api_url))
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("zib_files_below_full_redundancy "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no zib_files_below_full_redundancy gauge in:\n{text}"))
}

fn node_ids(cluster: &ProcCluster) -> Vec<String> {
    (0..cluster.nodes.len())
        .map(|i| {
            let v: serde_json::Value = reqwest::blocking::get(format!(
                "http://127.0.0.1:{}/healthz",
                cluster.nodes[i].port
            ))
            .unwrap()
            .json()
            .unwrap();
            v["node_id"].as_str().unwrap().to_string()
        })
        .collect()
}

#[test]
fn a_missing_or_short_data_shard_seen_by_a_cdn_read_is_rebuilt_at_once() {
    // Audits and inventory sweeps stay at their hour-scale defaults: only the read
    // can notice, and the repairer must be woken, not wait for its interval.
    let cluster = ProcCluster::storage(6, &[("ZIB_REPAIR_AFTER_SECS", "600")]);
    let work = tempfile::tempdir().unwrap();
    let data = pattern(3 * MIB + 5, 31);
    let id = upload_to(&cluster, work.path(), "lost", "read.bin", &data);
    let store = store(&cluster);
    wait_for("safe", Duration::from_secs(30), || {
        fully_safe(&cluster, &id)
    });
    let http = reqwest::blocking::Client::new();
    let cdn = format!("{}/objects/{id}", cluster.api_url);

    // Deleted.
    let all = shards(&store, &id);
    let gone = all.iter().find(|s| s.index == 0).unwrap().clone();
    std::fs::remove_file(shard_path(&cluster, &gone)).unwrap();
    let (status, body) = get(&http, &cdn, None);
    assert_eq!(status, 200);
    assert!(body == data, "served bytes must be right");
    wait_rebuilt(&store, &id, &gone, "the deleted shard rebuilt");

    // Truncated.
    let short = all.iter().find(|s| s.index == 1).unwrap().clone();
    let path = shard_path(&cluster, &short);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let (status, body) = get(&http, &cdn, None);
    assert_eq!(status, 200);
    assert!(body == data, "served bytes must be right");
    wait_rebuilt(&store, &id, &short, "the truncated shard rebuilt");

    wait_for(
        "safe at full redundancy again",
        Duration::from_secs(20),
        || fully_safe(&cluster, &id),
    );
    assert!(doubled(&store, &id).is_empty());
    assert!(get(&http, &cdn, None).1 == data);
}

#[test]
fn rotted_and_missing_parity_shards_are_found_by_audit_and_inventory() {
    let cluster = ProcCluster::storage(
        6,
        &[
            ("ZIB_AUDIT_INTERVAL_SECS", "1"),
            ("ZIB_INVENTORY_INTERVAL_SECS", "1"),
            ("ZIB_REPAIR_AFTER_SECS", "600"),
        ],
    );
    let work = tempfile::tempdir().unwrap();
    let data = pattern(MIB + 77, 32);
    let id = upload_to(&cluster, work.path(), "lost", "parity.bin", &data);
    let store = store(&cluster);
    wait_for("safe", Duration::from_secs(30), || {
        fully_safe(&cluster, &id)
    });
    let all = shards(&store, &id);

    // One flipped bit in a parity shard, which no read touches while the data
    // shards are intact: the audit's challenges cover every byte.
    let rotted = all.iter().find(|s| s.index == 4).unwrap().clone();
    let path = shard_path(&cluster, &rotted);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() * 2 / 3;
    bytes[at] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    // A deleted parity shard: listed by no inventory any more.
    let gone = all.iter().find(|s| s.index == 5).unwrap().clone();
    std::fs::remove_file(shard_path(&cluster, &gone)).unwrap();

    wait_rebuilt(&store, &id, &gone, "the deleted parity shard rebuilt");
    wait_rebuilt(&store, &id, &rotted, "the rotted parity shard rebuilt");
    wait_for(
        "safe at full redundancy again",
        Duration::from_secs(20),
        || fully_safe(&cluster, &id),
    );
    assert_reads_back(&cluster, &id, &data);
}

#[test]
fn with_a_node_down_distribution_waits_rather_than_doubling_up() {
    let mut cluster = ProcCluster::storage(6, &[]);
    let work = tempfile::tempdir().unwrap();
    cluster.kill_node(5);
    std::thread::sleep(Duration::from_secs(4)); // past node_offline_after
    let data = pattern(5 * MIB + 3, 33); // two segments
    let client = cluster.client();
    let reg = rt()
        .block_on(client.initiate("lost", "waits.bin", data.len() as u64, None))
        .unwrap();
    let id = reg.file_id.to_string();
    let path = write_file(work.path(), "waits", &data);
    let uploader = std::thread::spawn(move || {
        rt().block_on(zib_client::upload_with_registration(
            &reqwest::Client::new(),
            &reg,
            &path,
            &Default::default(),
        ))
    });

    // Five nodes for six shards a segment: nothing is placed, nothing fails.
    wait_for(
        "the upload to reach its node",
        Duration::from_secs(15),
        || phase(&cluster, &id) == "uploading",
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(phase(&cluster, &id), "uploading");
    let store = store(&cluster);
    assert!(shards(&store, &id).is_empty());

    cluster.start_node(5);
    let uploaded = uploader.join().unwrap();
    assert!(
        uploaded.is_ok(),
        "the upload completes once the sixth node is back: {uploaded:?}"
    );
    wait_for("safe", Duration::from_secs(30), || {
        fully_safe(&cluster, &id)
    });
    let placed = shards(&store, &id);
    assert_eq!(placed.len(), 12);
    assert!(doubled(&store, &id).is_empty(), "two shards on one node");
    assert_reads_back(&cluster, &id, &data);
}

#[test]
fn a_file_below_full_redundancy_says_so_until_it_is_back() {
    let mut cluster = ProcCluster::storage(6, &[]);
    let work = tempfile::tempdir().unwrap();
    let data = pattern(2 * MIB + 9, 34);
    let id = upload_to(&cluster, work.path(), "lost", "degraded.bin", &data);
    let store = store(&cluster);
    wait_for("safe", Duration::from_secs(30), || {
        fully_safe(&cluster, &id)
    });
    assert_eq!(below_full_gauge(&cluster), 0);

    // Every node holds one shard of the segment; one goes away.
    cluster.kill_node(2);
    wait_for("degraded", Duration::from_secs(15), || {
        phase(&cluster, &id) == "degraded"
    });
    let p = pipeline(&cluster, &id);
    let upload = &p["stages"]["upload"];
    assert_eq!(upload["redundancy"]["live_shards"], 5, "{p}");
    assert_eq!(upload["redundancy"]["target"], 6);
    assert_eq!(upload["redundancy"]["weakest_segment"], 0);
    assert_eq!(p["status"], "complete", "still readable: {p}");
    assert_eq!(below_full_gauge(&cluster), 1);

    // Past repair_after (4 s) the node is lost, but the five others each hold a
    // shard already: the repairer waits rather than double up.
    std::thread::sleep(Duration::from_secs(7));
    assert!(doubled(&store, &id).is_empty(), "repair doubled up");
    assert_eq!(phase(&cluster, &id), "degraded");
    assert_reads_back(&cluster, &id, &data);

    cluster.start_node(2);
    wait_for("safe again", Duration::from_secs(20), || {
        fully_safe(&cluster, &id)
    });
    assert_eq!(below_full_gauge(&cluster), 0);
}

#[test]
fn a_doubled_placement_of_older_data_is_moved_to_a_free_node() {
    let cluster = ProcCluster::storage(7, &[("ZIB_INVENTORY_INTERVAL_SECS", "1")]);
    let work = tempfile::tempdir().unwrap();
    let data = pattern(MIB + 11, 35);
    let id = upload_to(&cluster, work.path(), "lost", "doubled.bin", &data);
    let store = store(&cluster);
    wait_for("safe", Duration::from_secs(30), || {
        fully_safe(&cluster, &id)
    });

    // What placement did before: shard 1 stored on the node of shard 0.
    let ids = node_ids(&cluster);
    let all = shards(&store, &id);
    let (first, second) = (&all[0], &all[1]);
    let host = ids
        .iter()
        .position(|n| *n == first.node_id.to_string())
        .unwrap();
    let bytes = std::fs::read(shard_path(&cluster, second)).unwrap();
    let copy = zib_proto::BlobId::new_random();
    let path = zib_node::blob_path(cluster.node_dir(host), copy);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &bytes).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(rt()
        .block_on(store.replace_shard(second, &first.node_id, copy, now))
        .unwrap());
    assert_eq!(doubled(&store, &id).len(), 1);

    wait_for("the doubled shard moved", Duration::from_secs(30), || {
        doubled(&store, &id).is_empty()
    });
    wait_for("safe at full redundancy", Duration::from_secs(20), || {
        fully_safe(&cluster, &id)
    });
    assert_reads_back(&cluster, &id, &data);
}

#[test]
fn a_one_node_dev_cluster_still_takes_uploads_but_never_calls_them_safe() {
    // 1+1 on one node can never be placed without doubles: it is, and said so.
    let cluster = Cluster::start(1);
    let work = tempfile::tempdir().unwrap();
    let data = pattern(300_000, 36);
    let path = write_file(work.path(), "tiny.bin", &data);
    let (id, cdn) = cluster.upload(&path, "lost", "tiny.bin");
    let http = cluster.http();
    let (status, body) = get(&http, &cdn, None);
    assert_eq!(status, 200);
    assert!(body == data);
    std::thread::sleep(Duration::from_secs(3)); // several verifier sweeps
    let p: serde_json::Value = http
        .get(format!("{}/v1/api/pipeline/{id}", cluster.creds.api_url))
        .header("Authorization", cluster.bearer())
        .send()
        .unwrap()
        .json()
        .unwrap();
    let upload = &p["stages"]["upload"];
    assert_eq!(upload["phase"], "distributed", "{p}");
    assert_eq!(upload["redundancy"]["live_shards"], 1, "{p}");
    assert_eq!(upload["redundancy"]["target"], 2, "{p}");
}

/// The CDN serves the file's bytes, exactly.
fn assert_reads_back(cluster: &ProcCluster, file_id: &str, data: &[u8]) {
    let (status, body) = get(
        &reqwest::blocking::Client::new(),
        &format!("{}/objects/{file_id}", cluster.api_url),
        None,
    );
    assert_eq!(status, 200);
    assert!(body == data);
}

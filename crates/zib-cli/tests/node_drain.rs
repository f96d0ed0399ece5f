//! Draining a node before it leaves (`zib drain`, `zib nodes`), on a cluster of
//! separate processes: nothing new goes to it, everything it held moves to other
//! nodes, and once it is stopped every file is still fully redundant.

mod common;

use std::time::Duration;

use common::procs::ProcCluster;
use common::*;

fn json_lines(out: &std::process::Output) -> Vec<serde_json::Value> {
    assert!(
        out.status.success(),
        "zib failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// `zib nodes`, as {node_id: status}.
fn nodes(cluster: &ProcCluster) -> Vec<serde_json::Value> {
    json_lines(&cluster.admin(&["nodes"]))
}

fn status_of(cluster: &ProcCluster, node_id: &str) -> serde_json::Value {
    nodes(cluster)
        .into_iter()
        .find(|n| n["node_id"] == node_id)
        .expect("the node is listed")
}

#[test]
fn a_drained_node_holds_nothing_and_can_leave_without_loss() {
    let mut cluster = ProcCluster::storage(7, &[]);
    let work = tempfile::tempdir().unwrap();
    let files: Vec<(String, Vec<u8>)> = (0..4u64)
        .map(|i| {
            let data = pattern(600_000 + i * 1000, i + 1);
            (
                upload_to(&cluster, work.path(), "drain", &format!("f{i}"), &data),
                data,
            )
        })
        .collect();
    for (id, _) in &files {
        wait_for("uploads safe", Duration::from_secs(60), || {
            fully_safe(&cluster, id)
        });
    }

    // The node holding the most shards leaves.
    let listed = nodes(&cluster);
    assert_eq!(listed.len(), 7);
    assert!(listed
        .iter()
        .all(|n| n["state"] == "active" && n["online"] == true));
    let leaving = listed
        .iter()
        .max_by_key(|n| n["shards"].as_u64().unwrap())
        .unwrap()
        .clone();
    let leaving_id = leaving["node_id"].as_str().unwrap().to_string();
    assert!(leaving["shards"].as_u64().unwrap() > 0);
    let index = (0..7)
        .find(|&i| {
            leaving["url"]
                .as_str()
                .unwrap()
                .ends_with(&format!(":{}", cluster.nodes[i].port))
        })
        .expect("the leaving node's process");

    let started = json_lines(&cluster.admin(&["drain", &leaving_id]));
    assert_eq!(started[0]["state"], "draining");
    assert!(started[0]["draining_since"].is_string());
    // An unknown node is named as such.
    let unknown = cluster.admin(&["drain", "ZB-ZZZZZZ"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("404"));

    // Nothing new is placed on it.
    let newcomer = pattern(500_000, 9);
    let new_id = upload_to(&cluster, work.path(), "drain", "after", &newcomer);
    let placed = rt()
        .block_on(store(&cluster).shards_for_file(new_id.parse().unwrap()))
        .unwrap();
    assert_eq!(placed.len(), 6);
    assert!(placed.iter().all(|s| s.node_id.as_str() != leaving_id));

    wait_for("the node drained", Duration::from_secs(90), || {
        let s = status_of(&cluster, &leaving_id);
        s["state"] == "drained" && s["shards"] == 0
    });
    // Its copies are dropped from its disk (delete commands ride its heartbeats).
    wait_for("its disk emptied", Duration::from_secs(60), || {
        files_under(&cluster.node_dir(index).join("blobs")).is_empty()
    });

    // What it held now lives on the others, six distinct holders per file.
    let meta = store(&cluster);
    for (id, _) in &files {
        let shards = rt()
            .block_on(meta.shards_for_file(id.parse().unwrap()))
            .unwrap();
        let holders: std::collections::HashSet<&str> =
            shards.iter().map(|s| s.node_id.as_str()).collect();
        assert_eq!((shards.len(), holders.len()), (6, 6), "{id}");
        assert!(
            !holders.contains(leaving_id.as_str()),
            "{id} still on the drained node"
        );
    }

    // Gone for good: every file is still whole and fully redundant without it.
    cluster.kill_node(index);
    let http = reqwest::blocking::Client::new();
    for (id, data) in files
        .iter()
        .chain([(new_id.clone(), newcomer.clone())].iter())
    {
        wait_for(
            "full redundancy without the node",
            Duration::from_secs(30),
            || fully_safe(&cluster, id),
        );
        let url = cluster.client().cdn_url(id.parse().unwrap());
        let (status, body) = get(&http, &url, None);
        assert_eq!(status, 200);
        assert!(body == *data, "{id} reads back different bytes");
    }

    // Ending a drain makes a node take data again.
    let other = nodes(&cluster)
        .into_iter()
        .find(|n| n["node_id"] != leaving_id.as_str())
        .unwrap();
    let other_id = other["node_id"].as_str().unwrap();
    assert_eq!(
        json_lines(&cluster.admin(&["drain", other_id]))[0]["state"],
        "draining"
    );
    assert_eq!(
        json_lines(&cluster.admin(&["drain", other_id, "--end"]))[0]["state"],
        "active"
    );
}

//! The metadata store's backup and restore drill on `zib dev`: a backup taken while
//! it serves, the store wiped, the backup put back, and every file in it reads.

mod common;

use std::process::{Command, Output};

use common::*;

fn zib(args: &[&str]) -> Output {
    Command::new(zib_bin())
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run zib")
}

fn json_of(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "zib failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object on stdout")
}

fn refused(out: &Output, why: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected a refusal ({why})");
    assert!(
        stderr.contains(why),
        "stderr does not say {why:?}: {stderr}"
    );
}

#[test]
fn a_backup_taken_while_serving_restores_every_file_after_the_store_is_wiped() {
    let mut cluster = Cluster::start(6);
    let work = tempfile::tempdir().unwrap();
    let data_dir = cluster.data_dir().to_str().unwrap().to_string();
    // One sharded on the nodes, one kept inline in the store itself.
    let sharded = pattern(700_000, 1);
    let small = pattern(3_000, 2);
    let (sharded_id, _) = cluster.upload(
        &write_file(work.path(), "sharded", &sharded),
        "drill",
        "sharded.bin",
    );
    let (small_id, _) = cluster.upload(
        &write_file(work.path(), "small", &small),
        "drill",
        "small.txt",
    );

    let backup = work.path().join("meta-backup.db");
    let backup_arg = backup.to_str().unwrap();
    let made = json_of(&zib(&["backup", backup_arg, "--data-dir", &data_dir]));
    assert_eq!(made["files"], 2);
    assert!(made["bytes"].as_u64().unwrap() > 0);
    refused(
        &zib(&["backup", backup_arg, "--data-dir", &data_dir]),
        "never overwrites",
    );

    // Stored after the backup: the restored store will not know it.
    let later = pattern(2_000, 3);
    let (later_id, later_url) = cluster.upload(
        &write_file(work.path(), "later", &later),
        "drill",
        "later.txt",
    );

    // zib dev has the store open: refused, and nothing changes under it.
    refused(
        &zib(&["restore", backup_arg, "--replace", "--data-dir", &data_dir]),
        "in use",
    );
    let (status, body) = get(&cluster.http(), &later_url, None);
    assert_eq!((status, body == later), (200, true));

    cluster.stop();
    for name in ["meta.db", "meta.db-wal", "meta.db-shm"] {
        let path = cluster.data_dir().join(name);
        if path.exists() {
            std::fs::remove_file(path).unwrap();
        }
    }
    let put_back = json_of(&zib(&["restore", backup_arg, "--data-dir", &data_dir]));
    assert!(put_back["replaced"].is_null());
    assert_eq!(put_back["files"], 2);
    // Restoring again over the store now there needs --replace.
    refused(
        &zib(&["restore", backup_arg, "--data-dir", &data_dir]),
        "--replace",
    );

    cluster.restart();
    let client = cluster.client();
    let http = cluster.http();
    for (id, want) in [(&sharded_id, &sharded), (&small_id, &small)] {
        let url = client.cdn_url(id.parse().unwrap());
        let (status, body) = get(&http, &url, None);
        assert_eq!(status, 200, "{id} after the restore");
        assert!(body == *want, "{id} reads back different bytes");
    }
    let (status, _) = get(&http, &client.cdn_url(later_id.parse().unwrap()), None);
    assert_eq!(status, 404, "a file stored after the backup is unknown");
}

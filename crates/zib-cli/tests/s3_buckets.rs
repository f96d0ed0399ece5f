//! Bucket-level S3 operations against a real `zib dev`: DeleteBucket and the tenant
//! API's bucket delete, DeleteObjects, the versioning answers of an unversioned
//! bucket, the `supersede` overwrite mode, and every operation ZiB does not offer
//! answering 501 NotImplemented. boto3 does most of it
//! (tests/support/s3_buckets.py, which asserts as it goes); the AWS CLI removes
//! buckets with `aws s3 rb` and `aws s3 rb --force`.

mod common;
#[path = "common/webhook_receiver.rs"]
mod receiver;

use std::time::Duration;

use common::s3_clients::{aws, aws_output, endpoint, install_clients, python};
use common::{write_file, Cluster};
use receiver::Receiver;
use serde_json::{json, Value};

fn bucket_names(cluster: &Cluster) -> Vec<String> {
    let listed: Value = serde_json::from_str(&aws(cluster, &["s3api", "list-buckets"]))
        .expect("JSON from list-buckets");
    listed["Buckets"]
        .as_array()
        .map(|b| {
            b.iter()
                .filter_map(|b| b["Name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn buckets_batches_versions_supersede_and_refusals_through_real_clients() {
    install_clients();
    let cluster = Cluster::start(6);
    let s3 = endpoint(&cluster);
    let other = cluster.create_tenant("someone-else");

    // The tenant's secret is sealed for SigV4 on its first Bearer request.
    let first = cluster
        .http()
        .get(format!("{s3}/"))
        .header("Authorization", cluster.bearer())
        .send()
        .unwrap();
    assert_eq!(first.status(), 200);
    // The tenant's webhook, to see the superseded file's `file.failed`.
    let hook = Receiver::start();
    let set = cluster
        .http()
        .patch(format!(
            "{}/v1/api/customers/me/webhook",
            cluster.creds.api_url
        ))
        .header("Authorization", cluster.bearer())
        .json(&json!({"webhook_url": hook.url("/s3")}))
        .send()
        .unwrap();
    assert_eq!(set.status(), 200);

    let out = python(
        &cluster,
        "s3_buckets.py",
        &[&s3, &cluster.creds.api_url, &other],
    );
    let seen: Value = serde_json::from_str(out.trim()).expect("JSON from s3_buckets.py");
    let refused = seen["refused"].as_array().expect("refused list");
    assert!(refused.len() >= 30, "{refused:?}");
    for name in [
        "PostObject",
        "SigV2",
        "PutBucketPolicy",
        "PutBucketVersioning",
    ] {
        assert!(refused.contains(&Value::from(name)), "{name} not checked");
    }
    let ids = &seen["supersede"];
    assert_ne!(ids["old"], ids["new"]);
    // Superseded by an S3 PUT exactly as by an SDK re-upload: `file.failed`.
    for replaced in [&ids["old"], &ids["new"]] {
        let failed = hook.wait_event(
            "file.failed",
            replaced.as_str().unwrap(),
            Duration::from_secs(60),
        );
        let reason = failed.json()["cancelled_reason"].clone();
        assert!(
            reason.as_str().is_some_and(|r| r.contains("superseded")),
            "{reason}"
        );
    }

    // `aws s3 rb`: an empty bucket goes, a full one stays (BucketNotEmpty) until
    // `--force` empties it (DeleteObjects in batches) and removes it.
    let work = tempfile::tempdir().unwrap();
    aws(&cluster, &["s3", "mb", "s3://cli-empty"]);
    aws(&cluster, &["s3", "rb", "s3://cli-empty"]);
    assert!(!bucket_names(&cluster).contains(&"cli-empty".to_string()));

    let dir = work.path().join("tree");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    for i in 0..5 {
        write_file(&dir, &format!("f{i}.txt"), format!("file {i}").as_bytes());
        write_file(
            &dir.join("sub"),
            &format!("g{i}.txt"),
            format!("sub {i}").as_bytes(),
        );
    }
    aws(
        &cluster,
        &[
            "s3",
            "cp",
            "--recursive",
            dir.to_str().unwrap(),
            "s3://cli-full/",
        ],
    );
    let refused = aws_output(&cluster, &["s3", "rb", "s3://cli-full"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("BucketNotEmpty"), "{stderr}");
    assert!(bucket_names(&cluster).contains(&"cli-full".to_string()));

    aws(&cluster, &["s3", "rb", "--force", "s3://cli-full"]);
    assert!(!bucket_names(&cluster).contains(&"cli-full".to_string()));
    let listing = aws_output(
        &cluster,
        &["s3api", "list-objects-v2", "--bucket", "cli-full"],
    );
    assert!(String::from_utf8_lossy(&listing.stderr).contains("NoSuchBucket"));

    // delete-objects from the CLI, as scripts call it.
    aws(
        &cluster,
        &[
            "s3",
            "cp",
            "--recursive",
            dir.to_str().unwrap(),
            "s3://cli-batch/",
        ],
    );
    let deleted: Value = serde_json::from_str(&aws(
        &cluster,
        &[
            "s3api",
            "delete-objects",
            "--bucket",
            "cli-batch",
            "--delete",
            r#"{"Objects":[{"Key":"f0.txt"},{"Key":"sub/g1.txt"},{"Key":"absent"}]}"#,
        ],
    ))
    .expect("JSON from delete-objects");
    let mut keys: Vec<&str> = deleted["Deleted"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d["Key"].as_str())
        .collect();
    keys.sort();
    assert_eq!(keys, ["absent", "f0.txt", "sub/g1.txt"]);
    let left: Value = serde_json::from_str(&aws(
        &cluster,
        &["s3api", "list-objects-v2", "--bucket", "cli-batch"],
    ))
    .unwrap();
    assert_eq!(left["Contents"].as_array().map(Vec::len), Some(8), "{left}");

    // `aws s3 sync` of a changed file: 409 in a default bucket, a replace once
    // `zib bucket set-overwrite` made the bucket `supersede`.
    let synced = work.path().join("synced");
    std::fs::create_dir_all(&synced).unwrap();
    write_file(&synced, "notes.txt", b"first draft");
    let target = "s3://cli-sync/";
    aws(&cluster, &["s3", "mb", target]);
    aws(&cluster, &["s3", "sync", synced.to_str().unwrap(), target]);
    write_file(&synced, "notes.txt", b"second draft, longer");
    let refused = aws_output(&cluster, &["s3", "sync", synced.to_str().unwrap(), target]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("KeyAlreadyExists"));
    let set = cluster.cli(&["bucket", "set-overwrite", "cli-sync", "supersede"]);
    assert!(
        set.status.success(),
        "{}",
        String::from_utf8_lossy(&set.stderr)
    );
    let info: Value = serde_json::from_slice(&set.stdout).expect("JSON from zib bucket");
    assert_eq!(info["overwrite"], "supersede");
    aws(&cluster, &["s3", "sync", synced.to_str().unwrap(), target]);
    let got = work.path().join("got.txt");
    aws(
        &cluster,
        &["s3", "cp", "s3://cli-sync/notes.txt", got.to_str().unwrap()],
    );
    assert_eq!(std::fs::read(&got).unwrap(), b"second draft, longer");

    // `zib bucket rm`: refused while the bucket holds the object, then done.
    let full = cluster.cli(&["bucket", "rm", "cli-sync"]);
    assert!(!full.status.success());
    assert!(String::from_utf8_lossy(&full.stderr).contains("not empty"));
    aws(&cluster, &["s3", "rm", "s3://cli-sync/notes.txt"]);
    let gone = cluster.cli(&["bucket", "rm", "cli-sync"]);
    assert!(
        gone.status.success(),
        "{}",
        String::from_utf8_lossy(&gone.stderr)
    );
    assert!(!bucket_names(&cluster).contains(&"cli-sync".to_string()));
}

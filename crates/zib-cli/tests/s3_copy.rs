//! Server-side copies (CopyObject, UploadPartCopy) and repeated
//! CompleteMultipartUpload on the S3 surface, against a real `zib dev`, driven by
//! boto3 (tests/support/s3_copy.py), the AWS CLI and plain HTTP with the Bearer header.

mod common;

use common::s3_clients::{aws, endpoint, install_clients, python};
use common::{contains, files_under, pattern, rt, Cluster, MIB};
use serde_json::Value;
use zib_meta::{ObjectHeaders, Store};
use zib_proto::FileId;

fn store(cluster: &Cluster) -> Store {
    rt().block_on(Store::open_sqlite(&cluster.data_dir().join("meta.db")))
        .expect("open the cluster's metadata store")
}

fn file_id(v: &Value) -> FileId {
    v["file_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a file id in {v}"))
}

/// PUT with the Bearer header (which also enables SigV4 for the tenant).
fn put(cluster: &Cluster, key: &str, content_type: &str, body: Vec<u8>) {
    let resp = cluster
        .http()
        .put(format!("{}/copytest/{key}", endpoint(cluster)))
        .header("Authorization", cluster.bearer())
        .header("Content-Type", content_type)
        .body(body)
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200, "{}", resp.text().unwrap_or_default());
}

fn complete_with_bearer(
    cluster: &Cluster,
    bearer: &str,
    key: &str,
    upload_id: &str,
    parts_xml: &str,
) -> (u16, String) {
    let resp = cluster
        .http()
        .post(format!(
            "{}/copytest/{key}?uploadId={upload_id}",
            endpoint(cluster)
        ))
        .header("Authorization", bearer)
        .body(format!(
            "<CompleteMultipartUpload>{parts_xml}</CompleteMultipartUpload>"
        ))
        .send()
        .unwrap();
    (resp.status().as_u16(), resp.text().unwrap())
}

#[test]
fn copies_are_new_objects_sealed_on_the_server_and_a_repeated_complete_answers_the_same() {
    install_clients();
    let mut cluster = Cluster::start(3);
    let marker = "ZIB-S3-COPY-PLAINTEXT-MARKER-51c2e8";
    put(
        &cluster,
        "src/a.txt",
        "text/plain",
        format!("copy me {marker}\n").into_bytes(),
    );
    put(
        &cluster,
        "src/%C3%BCn%C3%AF%20c%C3%B6d%C3%A9.txt",
        "text/plain",
        b"unicode source".to_vec(),
    );
    let big = pattern(3 * MIB + 12345, 7);
    put(&cluster, "src/big.bin", "application/octet-stream", big);

    // The source's headers and tags, set in the store (the copy is checked against them).
    let meta = store(&cluster);
    let source = rt()
        .block_on(meta.object(&tenant_id(&cluster), "copytest", "src/a.txt"))
        .unwrap()
        .expect("the source object");
    let source_headers = ObjectHeaders {
        content_disposition: Some("attachment; filename=\"a.txt\"".into()),
        metadata: [("color".to_string(), "blue".to_string())].into(),
        ..Default::default()
    };
    let source_tags = vec![("team".to_string(), "zib".to_string())];
    // The gateway computed the source's checksums as it stored it (CRC64NVME at least).
    let source_sums = rt()
        .block_on(meta.object_checksums(source.file_id))
        .unwrap();
    assert!(!source_sums.is_empty(), "the source has checksums");
    rt().block_on(async {
        meta.set_object_headers(source.file_id, &source_headers)
            .await
            .unwrap();
        meta.set_object_tags(source.file_id, &source_tags)
            .await
            .unwrap();
    });

    let out = python(&cluster, "s3_copy.py", &[&endpoint(&cluster), "copytest"]);
    let seen: Value = serde_json::from_str(&out).expect("JSON from s3_copy.py");

    // CopyObject (COPY): same bytes and ETag, a file of its own, the source's attributes.
    let src_head = &seen["src_head"];
    assert_eq!(seen["copy"]["etag"], src_head["etag"], "{seen:#}");
    assert_eq!(seen["copy"]["has_last_modified"], true);
    assert_eq!(seen["copy_same"], true);
    assert_eq!(seen["copy_head"]["content_type"], "text/plain");
    let copy_id = file_id(&seen["copy_head"]);
    assert_ne!(copy_id, source.file_id, "a copy is a new file");
    let (copy_row, headers, tags, sums) = rt().block_on(async {
        (
            meta.file(copy_id).await.unwrap().expect("the copy's row"),
            meta.object_headers(copy_id).await.unwrap(),
            meta.object_tags(copy_id).await.unwrap(),
            meta.object_checksums(copy_id).await.unwrap(),
        )
    });
    assert_ne!(
        copy_row.wrapped_dek, source.wrapped_dek,
        "a copy is sealed under a data key of its own"
    );
    assert_eq!(headers, source_headers);
    assert_eq!(tags, source_tags);
    assert_eq!(sums, source_sums);

    // REPLACE: content type, headers, metadata and tags from the request.
    let replaced = &seen["replaced_head"];
    assert_eq!(replaced["content_type"], "application/x-replaced");
    let replaced_id = file_id(replaced);
    let (headers, tags) = rt().block_on(async {
        (
            meta.object_headers(replaced_id).await.unwrap(),
            meta.object_tags(replaced_id).await.unwrap(),
        )
    });
    assert_eq!(
        headers,
        ObjectHeaders {
            cache_control: Some("max-age=60".into()),
            metadata: [("shade".to_string(), "green".to_string())].into(),
            ..Default::default()
        }
    );
    assert_eq!(
        tags,
        [("k", "v w"), ("team", "copy")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .to_vec()
    );
    assert_eq!(
        seen["cross_same"], true,
        "into another bucket, unicode source key"
    );

    // Onto itself: 400 InvalidRequest, or in place with REPLACE (same file, same bytes).
    assert_eq!(
        seen["self_copy"],
        serde_json::json!({"code": "InvalidRequest", "status": 400})
    );
    assert_eq!(seen["self_head"]["content_type"], "text/x-self");
    assert_eq!(file_id(&seen["self_head"]), source.file_id);
    assert_eq!(seen["self_head"]["etag"], src_head["etag"]);
    assert_eq!(seen["self_same"], true);
    let headers = rt().block_on(meta.object_headers(source.file_id)).unwrap();
    assert_eq!(
        headers.metadata.get("edited").map(String::as_str),
        Some("yes")
    );
    assert!(
        headers.content_disposition.is_none(),
        "REPLACE replaces all"
    );

    for (name, failed) in seen["conditions"].as_object().unwrap() {
        assert_eq!(
            *failed,
            serde_json::json!({"code": "PreconditionFailed", "status": 412}),
            "{name}"
        );
    }
    assert_eq!(seen["conditional_copy_same"], true);
    for (name, refused) in seen["refused"].as_object().unwrap() {
        assert_eq!(
            *refused,
            serde_json::json!({"code": "NotImplemented", "status": 501}),
            "{name}: never ignored"
        );
    }
    assert_eq!(seen["refused_absent"]["status"], 404, "nothing stored");
    assert_eq!(seen["missing_key"]["code"], "NoSuchKey");
    assert_eq!(seen["missing_bucket"]["code"], "NoSuchBucket");
    assert_eq!(seen["other_version"]["code"], "NoSuchVersion");
    assert_eq!(
        seen["taken"],
        serde_json::json!({"code": "KeyAlreadyExists", "status": 409})
    );
    assert_eq!(seen["taken_kept"], true);

    // UploadPartCopy: each part's ETag is the MD5 of its range; the object is whole.
    assert_eq!(seen["part_copy_etags"], seen["part_copy_md5s"]);
    assert_eq!(seen["range_outside"]["code"], "InvalidArgument");
    assert_eq!(seen["assembled_same"], true);

    // CompleteMultipartUpload twice: the same answer, the object stored once.
    let answers = seen["retry_answers"].as_array().unwrap();
    assert_eq!(answers[0], answers[1], "the same result twice");
    assert_eq!(
        answers[0]["ETag"],
        format!("\"{}\"", seen["retry_md5"].as_str().unwrap())
    );
    assert_eq!(answers[0]["Key"], "retry.bin");
    assert!(
        answers[0]["Location"]
            .as_str()
            .is_some_and(|l| l.ends_with("/s3/copytest/retry.bin")),
        "{answers:?}"
    );
    assert_eq!(seen["retry_same"], true);
    assert_eq!(
        seen["duplicate_part"],
        serde_json::json!({"code": "InvalidPartOrder", "status": 400})
    );
    // A retry sent while the first Complete runs: one store, one ETag.
    let race_md5 = seen["race_md5"].as_str().unwrap();
    assert_eq!(
        seen["race"],
        serde_json::json!({"first": race_md5, "retry": race_md5})
    );
    let log = common::plain(&std::fs::read_to_string(cluster.data_dir().join("dev.log")).unwrap());
    let race_id = seen["race_upload_id"].as_str().unwrap();
    let stored = log
        .lines()
        .filter(|l| l.contains("s3 multipart upload completed") && l.contains(race_id))
        .count();
    // Complete writes rows only, so the retry may come after the first one is done:
    // it then answers from the completion's record. Either way, one store.
    assert_eq!(stored, 1, "the race upload was stored once");

    // Another tenant: the completed upload is not theirs, nor is the copy source.
    let other = cluster.create_tenant("copy-other-tenant");
    let retry_id = seen["retry_upload_id"].as_str().unwrap().to_string();
    let parts_xml = seen["retry_parts_xml"].as_str().unwrap().to_string();
    let (status, text) = complete_with_bearer(&cluster, &other, "retry.bin", &retry_id, &parts_xml);
    assert_eq!(status, 404, "{text}");
    assert!(text.contains("<Code>NoSuchUpload</Code>"), "{text}");
    let stolen = cluster
        .http()
        .put(format!("{}/theirs/stolen.txt", endpoint(&cluster)))
        .header("Authorization", &other)
        .header("x-amz-copy-source", "copytest/src/a.txt")
        .send()
        .unwrap();
    assert_eq!(stolen.status(), 404);
    assert!(stolen.text().unwrap().contains("<Code>NoSuchBucket</Code>"));

    // The AWS CLI's copy-object.
    let out = aws(
        &cluster,
        &[
            "s3api",
            "copy-object",
            "--bucket",
            "copytest",
            "--key",
            "cli/copy.txt",
            "--copy-source",
            "copytest/src/a.txt",
        ],
    );
    let cli: Value = serde_json::from_str(&out).expect("JSON from the AWS CLI");
    assert_eq!(
        cli["CopyObjectResult"]["ETag"],
        format!("\"{}\"", src_head["etag"].as_str().unwrap())
    );

    // No node disk holds the plaintext of the sources or the copies.
    let on_disk = cluster
        .node_dirs()
        .iter()
        .flat_map(|dir| files_under(dir))
        .any(|f| std::fs::read(&f).is_ok_and(|bytes| contains(&bytes, marker.as_bytes())));
    assert!(!on_disk, "a node disk holds the plaintext");

    // After a restart the repeated Complete still answers the same.
    drop(meta);
    cluster.restart();
    let (status, text) = complete_with_bearer(
        &cluster,
        &cluster.bearer(),
        "retry.bin",
        &retry_id,
        &parts_xml,
    );
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains(&format!(
            "<ETag>\"{}\"</ETag>",
            seen["retry_md5"].as_str().unwrap()
        )),
        "{text}"
    );
}

fn tenant_id(cluster: &Cluster) -> String {
    let meta = store(cluster);
    rt().block_on(meta.tenant_by_access_key(&cluster.creds.access_key))
        .unwrap()
        .expect("the cluster's tenant")
        .id
}

/// With `s3_complete_wait` at 0 every first Complete is answered at once and kept
/// alive until its result: a retry racing it, and one after it, answer the same.
#[test]
fn a_repeated_complete_answers_the_same_past_the_wait_too() {
    let cluster = Cluster::start_with_env(3, &[("ZIB_S3_COMPLETE_WAIT_MS", "0")]);
    let http = cluster.http();
    let bearer = cluster.bearer();
    let url = format!("{}/copytest/kept.bin", endpoint(&cluster));
    let created = http
        .post(format!("{url}?uploads"))
        .header("Authorization", &bearer)
        .send()
        .unwrap()
        .text()
        .unwrap();
    let upload_id = created
        .split("<UploadId>")
        .nth(1)
        .and_then(|rest| rest.split("</UploadId>").next())
        .expect("an UploadId")
        .to_string();
    let part = http
        .put(format!("{url}?partNumber=1&uploadId={upload_id}"))
        .header("Authorization", &bearer)
        .body(pattern(48 * MIB, 3))
        .send()
        .unwrap();
    assert_eq!(part.status(), 200);
    let etag = part.headers()["etag"].to_str().unwrap().to_string();
    let parts_xml = format!("<Part><PartNumber>1</PartNumber><ETag>{etag}</ETag></Part>");

    let racing = std::thread::scope(|s| {
        let first =
            s.spawn(|| complete_with_bearer(&cluster, &bearer, "kept.bin", &upload_id, &parts_xml));
        std::thread::sleep(std::time::Duration::from_millis(200));
        let retry = complete_with_bearer(&cluster, &bearer, "kept.bin", &upload_id, &parts_xml);
        [first.join().unwrap(), retry]
    });
    let after = complete_with_bearer(&cluster, &bearer, "kept.bin", &upload_id, &parts_xml);
    let result = |(status, text): &(u16, String)| {
        assert_eq!(*status, 200, "{text}");
        let start = text.find("<CompleteMultipartUploadResult").expect(text);
        text[start..].to_string()
    };
    let first = result(&racing[0]);
    assert!(first.contains("<ETag>"), "{first}");
    assert_eq!(result(&racing[1]), first);
    assert_eq!(result(&after), first);
    let log = common::plain(&std::fs::read_to_string(cluster.data_dir().join("dev.log")).unwrap());
    let stored = log
        .lines()
        .filter(|l| l.contains("s3 multipart upload completed") && l.contains(&upload_id))
        .count();
    assert_eq!(stored, 1, "stored once");
}

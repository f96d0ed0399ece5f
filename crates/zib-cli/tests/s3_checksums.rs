//! The checksums current AWS SDKs send with every upload (`x-amz-checksum-*`, in a
//! header or as the trailer of an aws-chunked body) against a real `zib dev`: boto3
//! (tests/support/s3_checksums.py) for every algorithm, both ways, wrong values, the
//! signed trailer other SDKs send, multipart (COMPOSITE and FULL_OBJECT) and its
//! managed transfer; the AWS CLI's `cp` with its defaults.

mod common;

use common::s3_clients::{aws, endpoint, install_clients, python};
use common::{pattern, write_file, Cluster, MIB};
use serde_json::Value;

/// CRC-32 (IEEE, reflected), the bitwise textbook form: an independent check of the
/// value the server stores for the AWS CLI's default checksum.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `{"want": …, <field>: …}` agrees for every field named.
fn assert_wanted(seen: &Value, case: &str, fields: &[&str]) {
    let case_seen = &seen[case];
    let want = &case_seen["want"];
    assert!(want.is_string(), "{case}: no expected value in {case_seen}");
    for field in fields {
        assert_eq!(&case_seen[field], want, "{case}.{field}: {case_seen}");
    }
}

#[test]
fn sdk_checksums_are_verified_stored_and_returned() {
    install_clients();
    let cluster = Cluster::start(6);
    // The first Bearer request seals the tenant's secret for SigV4 (docs/s3.md).
    let sealed = cluster
        .http()
        .get(format!("{}/s3/", cluster.creds.api_url))
        .header("Authorization", cluster.bearer())
        .send()
        .expect("bearer request");
    assert_eq!(sealed.status(), 200);

    let out = python(&cluster, "s3_checksums.py", &[&endpoint(&cluster), "sums"]);
    let seen: Value = serde_json::from_str(&out).expect("JSON from s3_checksums.py");

    for algo in ["CRC32", "CRC32C", "SHA1", "SHA256", "CRC64NVME"] {
        // In a header: returned by PUT, HEAD and a full GET in checksum mode.
        let case = format!("header_{algo}");
        assert_wanted(&seen, &case, &["put", "head", "get"]);
        let header = &seen[&case];
        assert_eq!(header["head_type"], "FULL_OBJECT", "{header}");
        assert_eq!(header["get_bytes_ok"], true);
        assert!(
            header["ranged"].is_null(),
            "a range has no checksum: {header}"
        );
        assert!(header["plain_head"].is_null(), "only when asked: {header}");
        assert_eq!(header["crc64nvme"], header["want_crc64nvme"], "{header}");
        // As the trailer of an aws-chunked body.
        assert_wanted(&seen, &format!("trailer_{algo}"), &["put", "head"]);
        // A wrong value: BadDigest naming the algorithm, and nothing stored.
        let wrong = &seen["wrong"][algo];
        assert_eq!(wrong["error"]["code"], "BadDigest", "{wrong}");
        assert_eq!(wrong["error"]["status"], 400);
        let message = wrong["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(algo), "{message}");
        assert_eq!(
            wrong["absent"], true,
            "{algo}: a refused PUT stored the key"
        );
    }
    // Plain HTTP: botocore puts the checksum in a header with a signed payload; the
    // "TLS" client really sent aws-chunked bodies with trailing checksums.
    let headers = seen["header_seen"].as_array().unwrap();
    assert!(!headers.is_empty() && headers.iter().all(|h| h["trailer"].is_null()));
    let trailers = seen["trailer_seen"].as_array().unwrap();
    // boto3's default PUT, one for each algorithm, then a part.
    assert_eq!(trailers.len(), 7, "{trailers:?}");
    assert_eq!(trailers[6]["trailer"], "x-amz-checksum-crc32c");
    let part = &seen["trailer_part"];
    assert_wanted(&seen, "trailer_part", &["part"]);
    assert_eq!(part["complete"], part["want_complete"], "{part}");
    assert!(trailers
        .iter()
        .all(|h| h["content_sha256"] == "STREAMING-UNSIGNED-PAYLOAD-TRAILER"));
    assert_eq!(trailers[0]["trailer"], "x-amz-checksum-crc32");
    assert_eq!(trailers[5]["trailer"], "x-amz-checksum-crc64nvme");
    // boto3's own default (no ChecksumAlgorithm given): CRC32, trailing, verified.
    assert_eq!(seen["default_calculation"], "when_supported");
    assert_wanted(&seen, "trailer_default", &["head"]);
    assert_eq!(seen["trailer_default"]["bytes_ok"], true);
    assert_eq!(seen["trailer_wrong"]["code"], "BadDigest", "{seen}");
    assert_eq!(seen["trailer_wrong_absent"], true);
    assert_eq!(seen["malformed"]["code"], "InvalidRequest", "{seen}");
    // The signed trailer (STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER): verified the same
    // way, and a payload changed after signing is refused by its chunk signature.
    let signed = &seen["signed_trailer"];
    assert_eq!(signed["put"]["status"], 200, "{signed}");
    assert_eq!(signed["put"]["checksum"], signed["want"], "{signed}");
    assert_wanted(&seen, "signed_trailer", &["head"]);
    assert_eq!(signed["bytes_ok"], true);
    assert_eq!(signed["wrong"]["code"], "BadDigest", "{signed}");
    assert_eq!(signed["wrong_absent"], true);
    assert_eq!(
        signed["tampered"]["code"], "SignatureDoesNotMatch",
        "{signed}"
    );
    assert_eq!(signed["tampered"]["status"], 403);
    assert_eq!(signed["tampered_absent"], true);
    // Nothing sent: S3's default CRC64NVME all the same.
    assert_eq!(seen["bare"]["crc64nvme"], seen["bare"]["want"]);
    assert!(seen["bare"]["crc32"].is_null());

    let composite = &seen["composite"];
    assert_eq!(composite["create_algorithm"], "SHA256");
    assert_eq!(composite["create_type"], "COMPOSITE");
    assert_eq!(composite["parts"], composite["want_parts"], "{composite}");
    assert_eq!(composite["listed"], composite["want_parts"], "{composite}");
    assert_eq!(composite["listed_algorithm"], "SHA256");
    assert_eq!(composite["listed_type"], "COMPOSITE");
    assert_eq!(composite["bad_part"]["code"], "BadDigest", "{composite}");
    assert_eq!(
        composite["wrong_listed"]["code"], "InvalidPart",
        "{composite}"
    );
    assert_wanted(&seen, "composite", &["complete", "head"]);
    assert_eq!(composite["complete_type"], "COMPOSITE");
    assert_eq!(composite["head_type"], "COMPOSITE");
    assert_eq!(composite["get_bytes_ok"], true);

    let full = &seen["full"];
    assert_eq!(full["parts"], full["want_parts"], "{full}");
    assert_eq!(full["wrong"]["code"], "BadDigest", "{full}");
    assert_eq!(full["wrong_absent"], true);
    assert_wanted(&seen, "full", &["complete", "head"]);
    assert_eq!(full["complete_type"], "FULL_OBJECT");
    assert_eq!(full["head_type"], "FULL_OBJECT");
    assert_wanted(&seen, "full_crc32", &["complete"]);
    assert_eq!(seen["full_crc32"]["complete_type"], "FULL_OBJECT");

    // boto3's managed transfer: CRC32 per part (composite), the object's CRC64NVME.
    let transfer = &seen["transfer"];
    assert_eq!(transfer["bytes_ok"], true);
    let sums = &transfer["checksums"];
    assert!(
        sums["ChecksumCRC32"]
            .as_str()
            .is_some_and(|v| v.ends_with("-3")),
        "{transfer}"
    );
    assert_eq!(sums["ChecksumCRC64NVME"], transfer["want_crc64nvme"]);

    // The AWS CLI with its defaults: CRC32 on a single PUT and on each part.
    let work = tempfile::tempdir().unwrap();
    let small = b"checksummed by the AWS CLI\n".to_vec();
    let small_path = write_file(work.path(), "small.txt", &small);
    let big = pattern(9 * MIB + 3, 7);
    let big_path = write_file(work.path(), "big.bin", &big);
    aws(
        &cluster,
        &[
            "s3",
            "cp",
            small_path.to_str().unwrap(),
            "s3://sums/cli/small.txt",
        ],
    );
    aws(
        &cluster,
        &[
            "s3",
            "cp",
            big_path.to_str().unwrap(),
            "s3://sums/cli/big.bin",
        ],
    );
    let head = |key: &str| -> Value {
        let args = [
            "s3api",
            "head-object",
            "--bucket",
            "sums",
            "--key",
            key,
            "--checksum-mode",
            "ENABLED",
        ];
        serde_json::from_str(&aws(&cluster, &args)).expect("JSON from head-object")
    };
    let small_head = head("cli/small.txt");
    assert_eq!(
        small_head["ChecksumCRC32"],
        b64(&crc32(&small).to_be_bytes()),
        "{small_head}"
    );
    let big_head = head("cli/big.bin");
    assert!(
        big_head["ChecksumCRC32"]
            .as_str()
            .is_some_and(|v| v.ends_with("-2")),
        "{big_head}"
    );
    assert_eq!(big_head["ChecksumType"], "COMPOSITE");
    let back = work.path().join("small.back");
    aws(
        &cluster,
        &[
            "s3",
            "cp",
            "s3://sums/cli/small.txt",
            back.to_str().unwrap(),
        ],
    );
    assert_eq!(std::fs::read(&back).unwrap(), small);
}

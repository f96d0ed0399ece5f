//! What an S3 object carries besides its bytes, against a real `zib dev` driven by
//! boto3 (tests/support/s3_metadata.py) and the AWS CLI: user metadata and the
//! standard headers (S3 GET/HEAD and the CDN), conditional reads and writes, SSE
//! (AES256 reported; KMS and SSE-C refused, nothing stored) and object tagging.

mod common;

use common::s3_clients::{aws, endpoint, install_clients, python};
use common::Cluster;
use serde_json::{json, Value};

#[test]
fn metadata_conditions_encryption_and_tags_through_boto3_the_aws_cli_and_the_cdn() {
    install_clients();
    let cluster = Cluster::start(4);
    let endpoint = endpoint(&cluster);
    // A Bearer request seals the tenant's S3 secret, so SigV4 works (docs/s3.md).
    let listed = cluster
        .http()
        .get(format!("{endpoint}/"))
        .header("Authorization", cluster.bearer())
        .send()
        .unwrap();
    assert_eq!(listed.status(), 200);

    let out = python(
        &cluster,
        "s3_metadata.py",
        &[&endpoint, "meta", &cluster.creds.cdn_url],
    );
    let seen: Value = serde_json::from_str(&out).expect("JSON from s3_metadata.py");

    // Metadata and the standard headers round-trip through HEAD and GET.
    let stored = json!({
        "metadata": {"project": "zib", "note": "café crème"},
        "cache_control": "no-cache, max-age=0",
        "content_disposition": "attachment; filename=\"report.txt\"",
        "content_encoding": "gzip",
        "content_language": "fr-CH",
        "expires": "Tue, 01 Jan 2030 00:00:00 GMT",
        "content_type": "text/plain",
        "sse": "AES256",
    });
    for read in ["head", "get"] {
        for (field, want) in stored.as_object().unwrap() {
            assert_eq!(&seen[read][field], want, "{read} {field}: {seen:#}");
        }
    }
    assert_eq!(seen["put_sse"], "AES256", "PUT reports AES256");
    assert_eq!(seen["get"]["same_bytes"], true);
    assert_eq!(seen["get"]["tag_count"], 2, "x-amz-tagging-count on GET");
    assert_eq!(
        seen["head"]["tag_count"], "2",
        "x-amz-tagging-count on HEAD"
    );
    assert_eq!(
        seen["overridden"],
        json!({"content_disposition": "inline", "cache_control": "max-age=5", "content_type": "application/x-zib"}),
        "response-* overrides, for that answer only"
    );
    assert_eq!(
        seen["metadata_too_large"],
        json!({"code": "MetadataTooLarge", "status": 400})
    );
    assert_eq!(seen["too_large_stored"]["status"], 404);

    // The CDN serves the stored headers (its own Cache-Control only without one).
    let cdn = &seen["cdn"];
    assert_eq!(cdn["status"], 200);
    assert_eq!(
        cdn["content-disposition"],
        "attachment; filename=\"report.txt\""
    );
    assert_eq!(cdn["cache-control"], "no-cache, max-age=0");
    assert_eq!(cdn["content-encoding"], "gzip");
    assert_eq!(cdn["content-language"], "fr-CH");
    assert_eq!(cdn["expires"], "Tue, 01 Jan 2030 00:00:00 GMT");
    assert_eq!(cdn["x-amz-meta-project"], "zib");
    assert_eq!(cdn["x-amz-meta-note"], "=?UTF-8?B?Y2Fmw6kgY3LDqG1l?=");
    assert_eq!(cdn["same_bytes"], true);
    assert_eq!(cdn["head_status"], 200);
    assert_eq!(
        cdn["head_disposition"],
        "attachment; filename=\"report.txt\""
    );
    assert_eq!(
        seen["cdn_plain"]["cache-control"], "public, max-age=3600",
        "an object stored without Cache-Control keeps the CDN's default"
    );
    assert_eq!(seen["cdn_plain"]["content-disposition"], Value::Null);

    // Multipart: headers and tags given at Create are the object's at Complete.
    assert_eq!(seen["mp_head"]["metadata"], json!({"kind": "multi"}));
    assert_eq!(
        seen["mp_head"]["content_disposition"],
        "attachment; filename=\"parts.bin\""
    );
    assert_eq!(seen["mp_tags"], json!([{"Key": "m", "Value": "1"}]));
    assert_eq!(seen["mp_same"], true);

    // Conditional reads: S3 (ETag = MD5) and the CDN (ETag = file id).
    let conditional = json!({
        "if_none_match_same": 304,
        "if_none_match_other": 200,
        "if_match_same": 200,
        "if_match_other": 412,
        "if_modified_since_now": 304,
        "if_modified_since_before": 200,
        "if_unmodified_since_before": 412,
        "if_unmodified_since_now": 200,
        "if_match_wins_over_unmodified_since": 200,
        "if_none_match_other_wins_over_modified_since": 200,
    });
    for read in ["get_conditional", "head_conditional", "cdn_conditional"] {
        assert_eq!(seen[read], conditional, "{read}");
    }
    assert_eq!(seen["not_modified_etag"], seen["doc_etag"]);
    assert_eq!(
        seen["cdn_s3_etag"],
        json!({"if_none_match": 304, "if_match": 200}),
        "the CDN also knows the object by S3's ETag"
    );
    assert_eq!(
        seen["presigned_conditional"],
        json!({"if_none_match_same": 304, "if_match_other": 412, "if_match_same": 200}),
        "a presigned GET is checked with S3's ETag, then follows the redirect"
    );

    // Conditional writes.
    assert_eq!(
        seen["put_if_none_match_existing"],
        json!({"code": "PreconditionFailed", "status": 412})
    );
    assert_eq!(seen["put_if_none_match_new"], Value::Null);
    assert_eq!(seen["put_if_none_match_new_stored"], true);
    assert_eq!(seen["put_if_match_same"], Value::Null);
    assert_eq!(
        seen["put_if_match_other"],
        json!({"code": "PreconditionFailed", "status": 412})
    );
    assert_eq!(
        seen["put_if_match_missing"],
        json!({"code": "PreconditionFailed", "status": 412})
    );
    assert_eq!(
        seen["put_if_match_other_bytes"],
        json!({"code": "KeyAlreadyExists", "status": 409}),
        "a matching If-Match still meets the 409 rule"
    );
    assert_eq!(
        seen["complete_if_none_match_existing"],
        json!({"code": "PreconditionFailed", "status": 412})
    );
    assert_eq!(seen["complete_if_none_match_new"], Value::Null);

    // SSE: only AES256, which every object already is.
    for refused in [
        "put_sse_c",
        "put_kms",
        "put_kms_dsse",
        "create_mp_kms",
        "create_mp_sse_c",
        "get_sse_c",
    ] {
        assert_eq!(
            seen[refused],
            json!({"code": "NotImplemented", "status": 501}),
            "{refused}: {seen:#}"
        );
    }
    // A HEAD answer has no body to carry the code.
    assert_eq!(seen["head_sse_c"]["status"], 501);
    for absent in ["after_sse_c", "after_kms", "after_kms_dsse"] {
        assert_eq!(seen[absent]["status"], 404, "{absent}: nothing stored");
    }
    assert_eq!(seen["sse_c_message"], true, "the refusal says why");

    // Tagging.
    assert_eq!(
        seen["tags_at_put"],
        json!([{"Key": "team", "Value": "storage"}, {"Key": "note", "Value": "two words"}])
    );
    assert_eq!(
        seen["tags_replaced"],
        json!([{"Key": "stage", "Value": "final"}])
    );
    assert_eq!(seen["tags_deleted"], json!([]));
    for refused in [
        "tags_eleven",
        "tags_long_key",
        "tags_long_value",
        "tags_header_eleven",
    ] {
        assert_eq!(
            seen[refused],
            json!({"code": "InvalidTag", "status": 400}),
            "{refused}"
        );
    }
    assert_eq!(seen["tags_header_eleven_stored"]["status"], 404);
    assert_eq!(seen["tags_ten_ok"], 10);
    assert_eq!(seen["tagging_missing_key"]["code"], "NoSuchKey");

    // The AWS CLI shows the metadata.
    let out = aws(
        &cluster,
        &[
            "s3api",
            "head-object",
            "--bucket",
            "meta",
            "--key",
            "docs/report.txt",
        ],
    );
    let head: Value = serde_json::from_str(&out).expect("JSON from aws");
    // Non-ASCII values travel RFC 2047-encoded, as S3 sends them.
    assert_eq!(
        head["Metadata"],
        json!({"project": "zib", "note": "=?UTF-8?B?Y2Fmw6kgY3LDqG1l?="})
    );
    assert_eq!(
        head["ContentDisposition"],
        "attachment; filename=\"report.txt\""
    );
    assert_eq!(head["CacheControl"], "no-cache, max-age=0");
    assert_eq!(head["ServerSideEncryption"], "AES256");
}

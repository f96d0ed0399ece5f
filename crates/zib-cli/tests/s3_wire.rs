//! The S3 surface's wire details against a real `zib dev`, driven by boto3
//! (tests/support/s3_wire.py) and plain HTTP: keys round-trip byte for byte whatever
//! they hold, listings encode as asked, every answer carries the request id the
//! server logs, presigned expiry and bucket names follow S3's rules.

mod common;

use common::s3_clients::{endpoint, install_clients, python};
use common::Cluster;
use serde_json::{json, Value};

fn sorted(v: &Value) -> Vec<String> {
    let mut keys: Vec<String> = v
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect();
    keys.sort();
    keys
}

fn xml_of(v: &Value) -> &str {
    v["xml"].as_str().unwrap_or_else(|| panic!("no xml in {v}"))
}

/// The one request line `zib dev` logged with this id.
fn logged(cluster: &Cluster, id: &str) -> bool {
    std::fs::read_to_string(cluster.data_dir().join("dev.log"))
        .unwrap_or_default()
        .lines()
        .any(|l| l.contains(id) && l.contains("request"))
}

#[test]
fn keys_listings_request_ids_and_limits_on_the_wire() {
    install_clients();
    let cluster = Cluster::start(3);
    // Bearer once, so SigV4 works for the tenant (docs/s3.md).
    let http = cluster.http();
    let s3 = endpoint(&cluster);
    let first = http
        .get(format!("{s3}/"))
        .header("Authorization", cluster.bearer())
        .send()
        .unwrap();
    assert_eq!(first.status(), 200);

    let out = python(&cluster, "s3_wire.py", &[&s3, "wire", &cluster.bearer()]);
    let seen: Value = serde_json::from_str(&out).expect("JSON from s3_wire.py");
    let keys = sorted(&seen["keys"]);

    // Item 2: every key is its own object, through every path.
    for path in ["head", "get", "presigned", "bearer_get"] {
        for key in &keys {
            assert_eq!(seen[path][key], true, "{path} of {key:?}: {}", seen[path]);
        }
    }
    for listing in ["v1", "v2", "v1_raw", "v2_raw"] {
        assert_eq!(
            sorted(&seen[listing]),
            keys,
            "{listing} lists every key as put"
        );
    }
    assert_eq!(
        seen["multipart"],
        json!({
            "pending": ["mp/a b"],
            "pending_encoded": ["mp/a%20b"],
            "mp/a b": true,
            "mp/a+b %2B\u{e9}?#": true,
        })
    );
    assert_eq!(sorted(&seen["left_after_delete"]), Vec::<String>::new());

    // Item 4: EncodingType=url encodes, and botocore decodes it back.
    assert_eq!(
        seen["v2_plus_prefix"],
        json!({"prefixes": ["dir/plus+ "], "prefix": "dir/plus+", "delimiter": " "})
    );
    let after_plus: Vec<String> = keys
        .iter()
        .filter(|k| *k > &"a+b".to_string())
        .cloned()
        .collect();
    assert_eq!(sorted(&seen["v2_after_plus"]), after_plus);
    assert_eq!(
        seen["v1_after_space"],
        json!([
            "a%2Bb",
            "a+b",
            "caf\u{e9}/",
            "dir/",
            "hash#tag",
            "k=v&w=z",
            "what?x=1"
        ])
    );
    let v2 = xml_of(&seen["encoded_v2_xml"]);
    assert!(v2.contains("<Prefix>a%2B</Prefix>"), "{v2}");
    assert!(v2.contains("<StartAfter>a%20</StartAfter>"), "{v2}");
    assert!(v2.contains("<Key>a%2Bb</Key>"), "{v2}");
    assert!(v2.contains("<EncodingType>url</EncodingType>"), "{v2}");
    let v1 = xml_of(&seen["encoded_v1_xml"]);
    for part in [
        "<Delimiter>%20</Delimiter>",
        "<Marker>%25</Marker>",
        "<Key>100%25</Key>",
        "<Prefix>a%20</Prefix>",
        "<NextMarker>a%20</NextMarker>",
    ] {
        assert!(v1.contains(part), "{part} in {v1}");
    }
    let empty_delimiter = xml_of(&seen["empty_delimiter"]);
    assert_eq!(seen["empty_delimiter"]["status"], 200);
    assert!(!empty_delimiter.contains("<Delimiter"), "{empty_delimiter}");
    assert_eq!(
        seen["empty_token"]["status"], 200,
        "{}",
        seen["empty_token"]
    );
    assert!(xml_of(&seen["empty_token"]).contains("<Key>a b</Key>"));
    assert_eq!(sorted(&seen["empty_token_boto3"]), ["a b", "a%2Bb", "a+b"]);
    assert_eq!(
        seen["bucket_pages"],
        json!([["wire-b1", "wire-b2"], ["wire-b3"]])
    );
    assert_eq!(
        sorted(&seen["all_buckets"]),
        ["wire", "wire-b1", "wire-b2", "wire-b3"]
    );

    // Item 5: request ids on every answer, the same the server logs.
    for err in ["missing_head", "missing_get"] {
        let e = &seen[err];
        let id = e["request_id"]
            .as_str()
            .unwrap_or_else(|| panic!("{err}: {e}"));
        assert!(id.starts_with("req_"), "{err}: {e}");
        assert_eq!(e["header_request_id"], id, "{err}: {e}");
        assert!(logged(&cluster, id), "{err}: {id} is not in the log");
    }
    let ok = &seen["ok_ids"];
    assert!(
        ok["request_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("req_")),
        "{ok}"
    );
    assert_eq!(ok["request_id"], ok["zib_id"]);
    assert_eq!(ok["id_2"], ok["zib_id"]);
    for doc in ["missing_bearer", "anonymous"] {
        let d = &seen[doc];
        let id = d["x-request-id"].as_str().unwrap();
        assert_eq!(d["x-amz-request-id"], id, "{doc}: {d}");
        assert!(
            xml_of(d).contains(&format!("<RequestId>{id}</RequestId>")),
            "{doc}: {d}"
        );
    }

    // Item 6: presigned expiry as S3 bounds it.
    assert_eq!(
        seen["presign_week"]["status"], 307,
        "{}",
        seen["presign_week"]
    );
    for over in ["presign_over_week", "presign_negative"] {
        assert_eq!(seen[over]["status"], 403, "{over}: {}", seen[over]);
        assert!(
            xml_of(&seen[over]).contains("<Code>AuthorizationQueryParametersError</Code>"),
            "{over}: {}",
            seen[over]
        );
    }
    let names = &seen["bucket_names"];
    for good in ["ok-name.with.dots", &"a".repeat(63), "abc"] {
        assert_eq!(names[good], Value::Null, "{good} is a valid bucket name");
    }
    for bad in [
        "foo-.bar",
        "foo.-bar",
        "foo..bar",
        "-foo",
        "foo-",
        "Foo",
        "ab",
        &"a".repeat(64),
        "192.168.1.1",
        "xn--foo",
        "foo-s3alias",
        "foo--ol-s3",
        "foo_bar",
        "sthree-foo",
    ] {
        assert_eq!(
            names[bad]["code"], "InvalidBucketName",
            "{bad:?}: {}",
            names[bad]
        );
        assert_eq!(names[bad]["status"], 400, "{bad:?}");
    }

    // The JSON API uses the same rule.
    let refused = http
        .post(format!("{}/v1/api/upload/initiate", cluster.creds.api_url))
        .header("Authorization", cluster.bearer())
        .json(&json!({"bucket": "foo-.bar", "key": "k", "file_size": 1, "content_type": "text/plain"}))
        .send()
        .unwrap();
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().unwrap();
    assert!(body.to_string().contains("bucket"), "{body}");
}

//! What a clumsy uploader can store and what a reader then sees, on real clusters:
//! a body that is not the envelope the server issued is refused by the node before
//! anything is kept, and a well-formed envelope sealed under another key is
//! answered `502 unreadable` as JSON, never a dropped connection.

mod common;
#[path = "common/webhook_receiver.rs"]
mod receiver;

use std::path::Path;
use std::time::{Duration, Instant};

use common::procs::ProcCluster;
use common::*;
use receiver::Receiver;
use serde_json::{json, Value};
use zib_crypto::envelope::{encrypt, Header};
use zib_crypto::DataKey;
use zib_proto::api::Registration;

const WAIT: Duration = Duration::from_secs(60);

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn initiate(api_url: &str, bearer: &str, bucket: &str, key: &str, size: u64) -> Registration {
    let resp = reqwest::blocking::Client::new()
        .post(format!("{api_url}/v1/api/upload/initiate"))
        .header("Authorization", bearer)
        .json(&json!({"bucket": bucket, "key": key, "file_size": size}))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    resp.json().unwrap()
}

/// `PUT url` with `body`; returns the status and the JSON answer.
fn put(url: &str, body: Vec<u8>) -> (u16, Value) {
    let resp = reqwest::blocking::Client::new()
        .put(url)
        .body(body)
        .send()
        .expect("the node answers");
    let status = resp.status().as_u16();
    (status, resp.json().unwrap_or(Value::Null))
}

/// Files under `root` whose path names `blob`.
fn kept(root: &Path, blob: &str) -> Vec<std::path::PathBuf> {
    files_under(root)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(blob))
        .collect()
}

/// The blob id of an upload URL (`{node}/v1/upload/{blob_id}[/...]?token=`).
fn blob_of(url: &str) -> String {
    let path = url.split('?').next().unwrap();
    let rest = path.split("/v1/upload/").nth(1).unwrap();
    rest.split('/').next().unwrap().to_string()
}

fn upload_phase(api_url: &str, bearer: &str, file_id: &str) -> String {
    let v: Value = reqwest::blocking::Client::new()
        .get(format!("{api_url}/v1/api/pipeline/{file_id}"))
        .header("Authorization", bearer)
        .send()
        .unwrap()
        .json()
        .unwrap();
    v["stages"]["upload"]["phase"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn assert_envelope_refusal(status: u16, body: &Value, names: &str) {
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "invalid_envelope", "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(error.contains(names), "the error names {names:?}: {error}");
}

/// Item 4 of issue 11: the node checks the header the server issued.
#[test]
fn a_body_that_is_not_the_issued_envelope_is_refused_and_nothing_is_kept() {
    let cluster = ProcCluster::storage(
        6,
        &[
            ("ZIB_ALLOW_PRIVATE_WEBHOOK_TARGETS", "true"),
            ("ZIB_WEBHOOK_POLL_INTERVAL_MS", "100"),
            ("ZIB_MULTIPART_THRESHOLD", "1048576"),
            ("ZIB_PART_SIZE", "262144"),
        ],
    );
    let bearer = cluster.bearer();
    let hook = Receiver::start();
    let resp = reqwest::blocking::Client::new()
        .patch(format!("{}/v1/api/customers/me/webhook", cluster.api_url))
        .header("Authorization", &bearer)
        .json(&json!({"webhook_url": hook.url("/zib")}))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let work = tempfile::tempdir().unwrap();

    // A single upload: random bytes of exactly the registered length.
    let data = pattern(300_000, 1);
    let single = initiate(&cluster.api_url, &bearer, "intake", "single", 300_000);
    let url = single.upload_url.clone().expect("a single upload");
    let blob = blob_of(&url);
    let (status, body) = put(&url, pattern(single.ciphertext_size, 2));
    assert_envelope_refusal(status, &body, "magic");

    // A real envelope under the file's key, but with a nonce prefix or a chunk size
    // of the client's own choosing.
    let key = DataKey::from_base64(&single.encryption_key).unwrap();
    let issued = Header::from_params(&single.envelope).unwrap();
    let own_prefix = Header {
        nonce_prefix: [0x5a; 7],
        ..issued
    };
    let (status, body) = put(&url, encrypt(&key, own_prefix, &data));
    assert_envelope_refusal(status, &body, "nonce prefix");
    let mut other_chunks = encrypt(
        &key,
        Header {
            chunk_size: 128 * 1024,
            ..issued
        },
        &data,
    );
    other_chunks.resize(single.ciphertext_size as usize, 0);
    let (status, body) = put(&url, other_chunks);
    assert_envelope_refusal(status, &body, "chunk size");

    // Multipart: part 1 carries the header, and is checked before it is written.
    let multi = initiate(&cluster.api_url, &bearer, "intake", "multi", 1_200_000);
    assert!(multi.parts.len() >= 2, "multipart at 1 MiB");
    let part1 = &multi.parts[0];
    assert_eq!(part1.ciphertext_offset, 0);
    let multi_blob = blob_of(&part1.upload_url);
    let (status, body) = put(&part1.upload_url, pattern(part1.ciphertext_size, 3));
    assert_envelope_refusal(status, &body, "magic");
    let multi_key = DataKey::from_base64(&multi.encryption_key).unwrap();
    let multi_header = Header::from_params(&multi.envelope).unwrap();
    let wrong = Header {
        nonce_prefix: [0x11; 7],
        ..multi_header
    };
    let sealed = encrypt(&multi_key, wrong, &pattern(1_200_000, 4));
    let (status, body) = put(
        &part1.upload_url,
        sealed[..part1.ciphertext_size as usize].to_vec(),
    );
    assert_envelope_refusal(status, &body, "nonce prefix");

    // A good upload alongside, so its file.ready proves the receiver hears events.
    let control = initiate(&cluster.api_url, &bearer, "intake", "control", 5_000);
    let path = write_file(work.path(), "control", &pattern(5_000, 5));
    rt().block_on(zib_client::upload_with_registration(
        cluster.client().http(),
        &control,
        &path,
        &zib_client::UploadOptions::default(),
    ))
    .unwrap();
    hook.wait_event("file.ready", &control.file_id.to_string(), WAIT);

    // Nothing of the refused bodies is kept anywhere, and neither file moved on.
    for node in &cluster.nodes {
        assert_eq!(kept(&node.dir, &blob), Vec::<std::path::PathBuf>::new());
        assert_eq!(
            kept(&node.dir, &multi_blob),
            Vec::<std::path::PathBuf>::new()
        );
    }
    for reg in [&single, &multi] {
        let id = reg.file_id.to_string();
        assert_eq!(upload_phase(&cluster.api_url, &bearer, &id), "pending");
        assert!(
            !hook
                .received()
                .iter()
                .any(|r| r.json()["file_id"] == id.as_str()),
            "no event for a refused upload"
        );
    }

    // The refusals spent nothing: the same registrations still take the right bytes.
    for (reg, bytes) in [(&single, data), (&multi, pattern(1_200_000, 6))] {
        let path = write_file(work.path(), &reg.key, &bytes);
        rt().block_on(zib_client::upload_with_registration(
            cluster.client().http(),
            reg,
            &path,
            &zib_client::UploadOptions::default(),
        ))
        .unwrap();
        let id = reg.file_id.to_string();
        hook.wait_event("file.ready", &id, WAIT);
        let (status, got) = get(&reqwest::blocking::Client::new(), &reg.cdn_url, None);
        assert_eq!(status, 200);
        assert!(got == bytes, "the file reads back");
    }
}

/// Uploads `envelope` (sealed by the test) under `reg` and waits until the CDN
/// serves the file (its phase is readable).
fn upload_sealed(cluster: &Cluster, reg: &Registration, envelope: Vec<u8>) {
    let (status, body) = put(reg.upload_url.as_deref().unwrap(), envelope);
    assert_eq!(status, 200, "the node takes a well-formed envelope: {body}");
    let deadline = Instant::now() + WAIT;
    let id = reg.file_id.to_string();
    while !matches!(
        upload_phase(&cluster.creds.api_url, &cluster.bearer(), &id).as_str(),
        "distributed" | "safe"
    ) {
        assert!(Instant::now() < deadline, "file {id} never became readable");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `GET` (optionally a range) with a real HTTP client: status and JSON error body.
fn get_error(http: &reqwest::blocking::Client, url: &str, range: Option<&str>) -> (u16, Value) {
    let mut req = http.get(url);
    if let Some(r) = range {
        req = req.header("Range", r);
    }
    let resp = req
        .send()
        .expect("an HTTP answer, not a dropped connection");
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    (status, resp.json().expect("a JSON error body"))
}

fn unreadable_reads(cluster: &Cluster) -> u64 {
    let text = cluster
        .http()
        .get(format!("{}/metrics", cluster.creds.api_url))
        .send()
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("zib_unreadable_reads_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no zib_unreadable_reads_total in /metrics:\n{text}"))
}

/// boto3 reads of `bucket/key` (without retries): for `whole` and `range`, the S3
/// error code and HTTP status; for `presigned` (a GET of a presigned URL, redirected
/// to the CDN), the status and the JSON code.
fn s3_reads(cluster: &Cluster, bucket: &str, key: &str) -> Value {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let installed = std::process::Command::new("bash")
        .arg(root.join("scripts/install-s3-test-deps.sh"))
        .status()
        .expect("run install-s3-test-deps.sh");
    assert!(installed.success(), "installing boto3 failed");
    let script = r#"
import json, sys, urllib.request, urllib.error
import boto3
from botocore.config import Config
endpoint, bucket, key = sys.argv[1:4]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                                retries={"total_max_attempts": 1}))
out = {}
for name, extra in (("whole", {}), ("range", {"Range": "bytes=100-199"})):
    try:
        s3.get_object(Bucket=bucket, Key=key, **extra)["Body"].read()
        out[name] = "read"
    except s3.exceptions.ClientError as e:
        out[name] = [e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]]
url = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key})
try:
    urllib.request.urlopen(url).read()
    out["presigned"] = "read"
except urllib.error.HTTPError as e:
    out["presigned"] = [e.code, json.loads(e.read())["code"]]
print(json.dumps(out))
"#;
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            script,
            &format!("{}/s3", cluster.creds.api_url),
            bucket,
            key,
        ])
        .env("AWS_ACCESS_KEY_ID", &cluster.creds.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &cluster.creds.secret_key)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "boto3 reads failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON from python3")
}

/// Item 3 of issue 11: every shard matches its hash, the first chunk does not
/// decrypt.
#[test]
fn an_envelope_sealed_under_another_key_answers_502_unreadable_not_an_empty_reply() {
    let cluster = Cluster::start(6);
    let api = cluster.creds.api_url.clone();
    let bearer = cluster.bearer();
    let http = cluster.http();
    let before = unreadable_reads(&cluster);

    // Sealed with the issued header (so the node takes it) under a key of its own.
    let size = 3 * CHUNK + 1000;
    let data = pattern(size, 7);
    let reg = initiate(&api, &bearer, "garbage", "other-key", size);
    let header = Header::from_params(&reg.envelope).unwrap();
    upload_sealed(&cluster, &reg, encrypt(&DataKey::generate(), header, &data));

    for range in [
        None,
        Some("bytes=0-99"),
        Some("bytes=600000-"),
        Some("bytes=-10"),
    ] {
        let (status, body) = get_error(&http, &reg.cdn_url, range);
        assert_eq!(status, 502, "range {range:?}: {body}");
        assert_eq!(body["code"], "unreadable", "{body}");
        assert!(body["request_id"].is_string(), "{body}");
        assert!(
            body["error"].as_str().unwrap().contains("does not decrypt"),
            "{body}"
        );
    }
    // HEAD reads no bytes: its headers are still right.
    let head = http.head(&reg.cdn_url).send().unwrap();
    assert_eq!(head.status().as_u16(), 200);
    assert_eq!(unreadable_reads(&cluster), before + 4);

    // The same through S3: boto3's header-signed GetObject (whole and a range) gets
    // S3's form of it, and a presigned GET is sent to the CDN's JSON answer.
    let s3 = s3_reads(&cluster, "garbage", "other-key");
    assert_eq!(s3["whole"], json!(["Unreadable", 502]), "{s3}");
    assert_eq!(s3["range"], json!(["Unreadable", 502]), "{s3}");
    assert_eq!(s3["presigned"], json!([502, "unreadable"]), "{s3}");
    assert_eq!(unreadable_reads(&cluster), before + 7);

    // Only chunk 2 sealed under another key: reads before it are whole, a read that
    // starts in it is refused, and a read through it stops short after a 200.
    let reg = initiate(&api, &bearer, "garbage", "bad-middle", size);
    let key = DataKey::from_base64(&reg.encryption_key).unwrap();
    let header = Header::from_params(&reg.envelope).unwrap();
    let mut envelope = encrypt(&key, header, &data);
    let other = encrypt(&DataKey::generate(), header, &data);
    let layout = header.layout();
    let bad = layout.chunk_offset(2) as usize..layout.chunk_offset(3) as usize;
    envelope[bad.clone()].copy_from_slice(&other[bad]);
    upload_sealed(&cluster, &reg, envelope);

    let (status, body) = get(&http, &reg.cdn_url, Some((10, 2 * CHUNK - 1)));
    assert_eq!(status, 206);
    assert!(body == data[10..2 * CHUNK as usize], "chunks 0-1 read back");
    let (status, body) = get_error(&http, &reg.cdn_url, Some("bytes=524288-524300"));
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["code"], "unreadable");

    let resp = http.get(&reg.cdn_url).send().unwrap();
    assert_eq!(resp.status().as_u16(), 200, "the first chunk decrypts");
    let mut got = Vec::new();
    let mut resp = resp;
    let ended = std::io::copy(&mut resp, &mut got);
    assert!(ended.is_err(), "the body ends early, as an error");
    assert!(
        got.len() <= 2 * CHUNK as usize,
        "nothing past chunk 1: {}",
        got.len()
    );
    assert!(got == data[..got.len()], "what was sent is right");
    let deadline = Instant::now() + Duration::from_secs(5);
    // Counted as the body breaks off, which the client may see first.
    while unreadable_reads(&cluster) < before + 9 {
        assert!(Instant::now() < deadline, "the cut-short read is counted");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(unreadable_reads(&cluster), before + 9);

    // A file uploaded the normal way whose wrapped data key is then overwritten in
    // the metadata store (as a bad restore or a hand edit would).
    let work = tempfile::tempdir().unwrap();
    let path = write_file(work.path(), "f", &pattern(10_000, 8));
    let (file_id, url) = cluster.upload(&path, "garbage", "wrong-key");
    let edit = format!(
        "import sqlite3, sys\n\
         db = sqlite3.connect(sys.argv[1])\n\
         n = db.execute(\"UPDATE files SET wrapped_dek = randomblob(length(wrapped_dek)) \
         WHERE file_id = ?\", ({file_id:?},)).rowcount\n\
         db.commit()\n\
         assert n == 1, n\n"
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &edit])
        .arg(cluster.data_dir().join("meta.db"))
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for range in [None, Some("bytes=5-9")] {
        let (status, body) = get_error(&http, &url, range);
        assert_eq!(status, 502, "{body}");
        assert_eq!(body["code"], "unreadable", "{body}");
        assert!(
            body["error"].as_str().unwrap().contains("data key"),
            "{body}"
        );
    }
    assert_eq!(unreadable_reads(&cluster), before + 11);
}

/// A client that reads the answer only after sending the whole body (Python's
/// urllib) still gets the 400 for a large non-envelope body, not a reset.
#[test]
fn a_refusal_reaches_a_client_that_sends_everything_first() {
    let cluster = Cluster::start(3);
    let size = 30 * MIB;
    let reg = initiate(
        &cluster.creds.api_url,
        &cluster.bearer(),
        "intake",
        "big",
        size,
    );
    let url = reg
        .upload_url
        .clone()
        .expect("a single upload below 64 MiB");
    let script = r#"
import json, os, sys, urllib.request, urllib.error
url, n = sys.argv[1], int(sys.argv[2])
try:
    urllib.request.urlopen(urllib.request.Request(url, data=os.urandom(n), method="PUT"))
    print(json.dumps({"status": 200}))
except urllib.error.HTTPError as e:
    print(json.dumps({"status": e.code, "body": json.loads(e.read())}))
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, &url, &reg.ciphertext_size.to_string()])
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "urllib saw no answer: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(seen["status"], 400, "{seen}");
    assert_eq!(seen["body"]["code"], "invalid_envelope", "{seen}");
    for node in cluster.node_dirs() {
        assert_eq!(
            kept(&node, &blob_of(&url)),
            Vec::<std::path::PathBuf>::new()
        );
    }
}

//! The everyday S3 clients against one real `zib dev`: rclone (Debian's package) and
//! the AWS CLI doing what their users do — copy a folder and check it, copy again
//! with nothing changed, sync a changed file, purge; cp, sync twice, copy-object,
//! delete-objects, metadata, rb. Every step runs even when an earlier one failed, and
//! the test fails listing each step that did not behave.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::s3_clients::{aws_env, endpoint, install_clients};
use common::{pattern, write_file, Cluster, MIB};
use serde_json::{json, Value};

/// The steps that did not behave, reported together at the end.
#[derive(Default)]
struct Steps(Vec<String>);

impl Steps {
    fn check(&mut self, step: &str, ok: bool, detail: impl std::fmt::Display) -> bool {
        if !ok {
            eprintln!("FAILED {step}: {detail}");
            self.0.push(format!("{step}: {detail}"));
        }
        ok
    }

    /// A command that must exit 0.
    fn ran(&mut self, step: &str, out: &Output) -> bool {
        self.check(
            step,
            out.status.success(),
            format_args!(
                "{} (stderr: {})",
                out.status,
                tail(&String::from_utf8_lossy(&out.stderr))
            ),
        )
    }
}

fn tail(text: &str) -> &str {
    let start = text.len().saturating_sub(2000);
    let start = (start..=text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    &text[start..]
}

/// Runs a client under `timeout` (a client that hangs is a failed step, not a hung test).
fn run(secs: u32, cmd: Command) -> Output {
    let program = cmd.get_program().to_owned();
    let mut timed = Command::new("timeout");
    timed
        .arg(secs.to_string())
        .arg(program)
        .args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    timed.output().expect("run timeout")
}

struct Clients<'a> {
    cluster: &'a Cluster,
    work: PathBuf,
}

impl Clients<'_> {
    fn endpoint(&self) -> String {
        endpoint(self.cluster)
    }

    /// rclone with the remote `zib:` from environment variables only.
    fn rclone(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("rclone");
        cmd.args(args)
            .args([
                "--retries",
                "1",
                "--low-level-retries",
                "2",
                "--contimeout",
                "10s",
                "--timeout",
                "120s",
            ])
            .env("RCLONE_CONFIG", self.work.join("rclone.conf"))
            .env("RCLONE_CONFIG_ZIB_TYPE", "s3")
            .env("RCLONE_CONFIG_ZIB_PROVIDER", "Other")
            .env("RCLONE_CONFIG_ZIB_ENDPOINT", self.endpoint())
            .env(
                "RCLONE_CONFIG_ZIB_ACCESS_KEY_ID",
                &self.cluster.creds.access_key,
            )
            .env(
                "RCLONE_CONFIG_ZIB_SECRET_ACCESS_KEY",
                &self.cluster.creds.secret_key,
            )
            .env("RCLONE_CONFIG_ZIB_REGION", "us-east-1")
            .env("RCLONE_CONFIG_ZIB_FORCE_PATH_STYLE", "true")
            // An AWS_CA_BUNDLE in the environment stops rclone at start-up.
            .env_remove("AWS_CA_BUNDLE")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_SESSION_TOKEN");
        run(600, cmd)
    }

    fn aws(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("aws");
        cmd.args(["--endpoint-url", &self.endpoint()]).args(args);
        aws_env(self.cluster, &mut cmd);
        cmd.env("AWS_MAX_ATTEMPTS", "1");
        run(600, cmd)
    }

    /// Whether the tenant has this bucket, asked with the contract's Bearer header.
    fn bucket_exists(&self, bucket: &str) -> Option<bool> {
        let r = self
            .cluster
            .http()
            .head(format!("{}/{bucket}", self.endpoint()))
            .header("Authorization", self.cluster.bearer())
            .send()
            .ok()?;
        match r.status().as_u16() {
            200 => Some(true),
            404 => Some(false),
            _ => None,
        }
    }

    /// An object's bytes through the S3 surface (Bearer GET, CDN redirect followed).
    fn object(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let encoded: String = key
            .split('/')
            .map(|seg| {
                seg.bytes()
                    .map(|b| match b {
                        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                            (b as char).to_string()
                        }
                        _ => format!("%{b:02X}"),
                    })
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("/");
        let r = self
            .cluster
            .http()
            .get(format!("{}/{bucket}/{encoded}", self.endpoint()))
            .header("Authorization", self.cluster.bearer())
            .send()
            .ok()?;
        r.status()
            .is_success()
            .then(|| r.bytes().ok().map(|b| b.to_vec()))
            .flatten()
    }
}

/// The numbers in rclone's final stats line (`--use-json-log`).
fn rclone_stats(out: &Output) -> Option<Value> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|v| v.get("stats").cloned())
}

/// The folder rclone copies: an empty file, 100 MiB, and keys URLs treat specially.
fn folder(root: &Path) -> Vec<(String, Vec<u8>)> {
    let files = vec![
        ("empty.txt".to_string(), Vec::new()),
        ("big.bin".to_string(), pattern(100 * MIB, 12)),
        ("a+b.txt".to_string(), b"plus".to_vec()),
        ("a b.txt".to_string(), b"space".to_vec()),
        ("100%.txt".to_string(), b"percent".to_vec()),
        ("a%2Bb.txt".to_string(), b"percent two b".to_vec()),
        (
            "\u{fc}n\u{ef}c\u{f6}d\u{e9}/\u{65e5}\u{672c}.txt".to_string(),
            b"unicode".to_vec(),
        ),
        ("sub/dir/file.txt".to_string(), b"nested".to_vec()),
    ];
    for (name, bytes) in &files {
        let path = root.join(name);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, bytes).expect("write");
    }
    files
}

fn rclone_suite(c: &Clients, steps: &mut Steps) {
    let src = c.work.join("rclone-src");
    let files = folder(&src);
    let src_s = src.to_str().expect("utf-8 path");
    let remote = "zib:clients-rclone";

    // The 100 MiB file goes up in parts (cut-off lowered from rclone's 200 MiB).
    let out = c.rclone(&["copy", src_s, remote, "--s3-upload-cutoff", "64M"]);
    steps.ran("rclone copy", &out);
    for (name, bytes) in &files {
        let got = c.object("clients-rclone", name);
        steps.check(
            "rclone copy: object reads back",
            got.as_deref() == Some(bytes.as_slice()),
            format_args!("{name:?}: {:?} bytes", got.map(|g| g.len())),
        );
    }
    let out = c.rclone(&["check", src_s, remote]);
    steps.ran("rclone check", &out);
    // `rclone cat` of the empty object (it used to hang) and of a key with `+`.
    for (name, want) in [("empty.txt", &b""[..]), ("a+b.txt", &b"plus"[..])] {
        let out = c.rclone(&["cat", &format!("{remote}/{name}")]);
        if steps.ran("rclone cat", &out) {
            steps.check(
                "rclone cat prints the object",
                out.stdout == want,
                format_args!("{name:?}: {:?}", String::from_utf8_lossy(&out.stdout)),
            );
        }
    }

    // Nothing changed: nothing sent.
    let out = c.rclone(&[
        "copy",
        src_s,
        remote,
        "-v",
        "--use-json-log",
        "--stats",
        "1h",
    ]);
    if steps.ran("rclone copy again", &out) {
        let stats = rclone_stats(&out);
        steps.check(
            "rclone copy again sends nothing",
            stats.as_ref().is_some_and(|s| {
                s["transfers"] == 0 && s["errors"] == 0 && s["checks"] == files.len()
            }),
            format_args!("stats {stats:?}"),
        );
    }

    // A supersede bucket: sync a changed file over an existing key.
    let sync_src = c.work.join("rclone-sync");
    std::fs::create_dir_all(&sync_src).expect("mkdir");
    write_file(&sync_src, "notes.txt", b"first version");
    write_file(&sync_src, "same.txt", b"unchanged");
    let sync_s = sync_src.to_str().expect("utf-8 path");
    let out = c.rclone(&["mkdir", "zib:clients-sync"]);
    steps.ran("rclone mkdir", &out);
    let patched = c
        .cluster
        .http()
        .patch(format!(
            "{}/v1/api/me/buckets/clients-sync",
            c.cluster.creds.api_url
        ))
        .header("Authorization", c.cluster.bearer())
        .json(&json!({"overwrite": "supersede"}))
        .send()
        .map(|r| r.status().as_u16());
    steps.check(
        "PATCH /v1/api/me/buckets/clients-sync supersede",
        patched.as_ref().is_ok_and(|s| *s == 200),
        format_args!("{patched:?}"),
    );
    let out = c.rclone(&["sync", sync_s, "zib:clients-sync"]);
    steps.ran("rclone sync (first)", &out);
    write_file(&sync_src, "notes.txt", b"second version, longer");
    let out = c.rclone(&["sync", sync_s, "zib:clients-sync"]);
    steps.ran("rclone sync of a changed file (supersede)", &out);
    let got = c.object("clients-sync", "notes.txt");
    steps.check(
        "rclone sync: the changed file reads back",
        got.as_deref() == Some(b"second version, longer".as_slice()),
        format_args!(
            "{:?}",
            got.map(|g| String::from_utf8_lossy(&g).into_owned())
        ),
    );
    let out = c.rclone(&["check", sync_s, "zib:clients-sync"]);
    steps.ran("rclone check after sync", &out);

    // Purge: every object, then the bucket.
    let out = c.rclone(&["purge", remote]);
    steps.ran("rclone purge", &out);
    let exists = c.bucket_exists("clients-rclone");
    steps.check(
        "rclone purge: bucket gone",
        exists == Some(false),
        format_args!("HEAD bucket: {exists:?}"),
    );
}

fn aws_suite(c: &Clients, steps: &mut Steps) {
    let dir = c.work.join("aws-src");
    std::fs::create_dir_all(dir.join("deep")).expect("mkdir");
    let one = write_file(&dir, "one.txt", b"one from the aws cli");
    write_file(&dir, "deep/two.txt", b"two");
    write_file(&dir, "a+b c.txt", b"plus and space");
    let bucket = "clients-aws";
    let s3_uri = |key: &str| format!("s3://{bucket}/{key}");

    let out = c.aws(&["s3", "mb", &format!("s3://{bucket}")]);
    steps.ran("aws s3 mb", &out);
    let out = c.aws(&[
        "s3",
        "cp",
        one.to_str().expect("utf-8"),
        &s3_uri("cp/one.txt"),
    ]);
    steps.ran("aws s3 cp up", &out);
    let down = c.work.join("one.down");
    let out = c.aws(&[
        "s3",
        "cp",
        &s3_uri("cp/one.txt"),
        down.to_str().expect("utf-8"),
    ]);
    if steps.ran("aws s3 cp down", &out) {
        let got = std::fs::read(&down).unwrap_or_default();
        steps.check(
            "aws s3 cp round trip",
            got == b"one from the aws cli",
            format_args!("{got:?}"),
        );
    }

    // sync twice: the second run has nothing to send (no "upload:" line).
    let dir_s = dir.to_str().expect("utf-8");
    let out = c.aws(&["s3", "sync", dir_s, &s3_uri("sync/")]);
    steps.ran("aws s3 sync", &out);
    let uploaded = String::from_utf8_lossy(&out.stdout)
        .matches("upload:")
        .count();
    steps.check(
        "aws s3 sync sends 3 files",
        uploaded == 3,
        format_args!("{uploaded}"),
    );
    let out = c.aws(&["s3", "sync", dir_s, &s3_uri("sync/")]);
    if steps.ran("aws s3 sync again", &out) {
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        steps.check(
            "aws s3 sync again sends nothing",
            !stdout.contains("upload:"),
            &stdout,
        );
    }
    let got = c.object(bucket, "sync/a+b c.txt");
    steps.check(
        "aws s3 sync: key with + and space",
        got.as_deref() == Some(b"plus and space".as_slice()),
        format_args!("{got:?}"),
    );

    // copy-object: server side, the copy reads back.
    let out = c.aws(&[
        "s3api",
        "copy-object",
        "--bucket",
        bucket,
        "--key",
        "copied/one.txt",
        "--copy-source",
        &format!("{bucket}/cp/one.txt"),
    ]);
    if steps.ran("aws s3api copy-object", &out) {
        let got = c.object(bucket, "copied/one.txt");
        steps.check(
            "copy-object: the copy reads back",
            got.as_deref() == Some(b"one from the aws cli".as_slice()),
            format_args!("{got:?}"),
        );
    }

    // Metadata: put with --metadata, head returns it.
    let out = c.aws(&[
        "s3api",
        "put-object",
        "--bucket",
        bucket,
        "--key",
        "meta/one.txt",
        "--body",
        one.to_str().expect("utf-8"),
        "--metadata",
        "colour=blue,owner=zib",
        "--content-type",
        "text/plain",
    ]);
    steps.ran("aws s3api put-object --metadata", &out);
    let out = c.aws(&[
        "s3api",
        "head-object",
        "--bucket",
        bucket,
        "--key",
        "meta/one.txt",
    ]);
    if steps.ran("aws s3api head-object", &out) {
        let head: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        steps.check(
            "head-object returns the metadata",
            head["Metadata"] == json!({"colour": "blue", "owner": "zib"}),
            &head,
        );
        steps.check(
            "head-object returns the content type",
            head["ContentType"] == "text/plain",
            &head,
        );
    }

    // delete-objects: a batch, one key missing (deleted as S3 says: idempotent).
    let batch = json!({"Objects": [
        {"Key": "sync/one.txt"}, {"Key": "sync/deep/two.txt"}, {"Key": "never/was.txt"}
    ]});
    let out = c.aws(&[
        "s3api",
        "delete-objects",
        "--bucket",
        bucket,
        "--delete",
        &batch.to_string(),
    ]);
    if steps.ran("aws s3api delete-objects", &out) {
        let answer: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        let mut deleted: Vec<&str> = answer["Deleted"]
            .as_array()
            .map(|d| d.iter().filter_map(|o| o["Key"].as_str()).collect())
            .unwrap_or_default();
        deleted.sort();
        steps.check(
            "delete-objects deletes the batch",
            deleted == ["never/was.txt", "sync/deep/two.txt", "sync/one.txt"]
                && answer.get("Errors").is_none(),
            &answer,
        );
        steps.check(
            "delete-objects: gone",
            c.object(bucket, "sync/one.txt").is_none(),
            "sync/one.txt still reads",
        );
    }

    // rb --force: every object, then the bucket.
    let out = c.aws(&["s3", "rb", &format!("s3://{bucket}"), "--force"]);
    steps.ran("aws s3 rb --force", &out);
    let exists = c.bucket_exists(bucket);
    steps.check(
        "aws s3 rb: bucket gone",
        exists == Some(false),
        format_args!("HEAD bucket: {exists:?}"),
    );
}

#[test]
fn rclone_and_the_aws_cli_do_their_everyday_work() {
    install_clients();
    let cluster = Cluster::start(6);
    // Bearer once, so SigV4 works for the tenant (docs/s3.md).
    let first = cluster
        .http()
        .get(format!("{}/s3/", cluster.creds.api_url))
        .header("Authorization", cluster.bearer())
        .send()
        .expect("GET /s3/");
    assert_eq!(first.status(), 200);
    let work = tempfile::tempdir().expect("tempdir");
    let clients = Clients {
        cluster: &cluster,
        work: work.path().to_path_buf(),
    };
    let mut steps = Steps::default();
    rclone_suite(&clients, &mut steps);
    aws_suite(&clients, &mut steps);
    assert!(
        steps.0.is_empty(),
        "{} step(s) failed:\n{}",
        steps.0.len(),
        steps.0.join("\n")
    );
}

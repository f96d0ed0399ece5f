//! The real S3 clients the S3 tests drive: boto3 and the AWS CLI, installed from
//! PyPI by scripts/install-s3-test-deps.sh when missing, pointed at a cluster's
//! `/s3` with the tenant's keys and no user configuration.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::Cluster;

pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .expect("repo root")
}

/// A script under crates/zib-cli/tests/support.
pub fn support_script(name: &str) -> PathBuf {
    repo_root().join("crates/zib-cli/tests/support").join(name)
}

pub fn install_clients() {
    let script = repo_root().join("scripts/install-s3-test-deps.sh");
    let status = Command::new("bash")
        .arg(&script)
        .status()
        .expect("run install-s3-test-deps.sh");
    assert!(status.success(), "installing boto3 and awscli failed");
}

/// The cluster tenant's keys for boto3 and the AWS CLI, and nothing from `~/.aws`.
pub fn aws_env(cluster: &Cluster, cmd: &mut Command) {
    cmd.env("AWS_ACCESS_KEY_ID", &cluster.creds.access_key)
        .env("AWS_SECRET_ACCESS_KEY", &cluster.creds.secret_key)
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN");
}

pub fn endpoint(cluster: &Cluster) -> String {
    format!("{}/s3", cluster.creds.api_url)
}

/// `aws --endpoint-url {api}/s3 <args>`; returns stdout, panics with stderr on failure.
pub fn aws(cluster: &Cluster, args: &[&str]) -> String {
    let out = aws_output(cluster, args);
    assert!(
        out.status.success(),
        "aws {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `aws --endpoint-url {api}/s3 <args>`, whatever its outcome.
pub fn aws_output(cluster: &Cluster, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new("aws");
    cmd.args(["--endpoint-url", &endpoint(cluster)]).args(args);
    aws_env(cluster, &mut cmd);
    cmd.output().expect("run aws")
}

/// Runs a support script with python3 and the tenant's keys; returns its stdout,
/// panics with its stderr (the failed assertion) when it fails.
pub fn python(cluster: &Cluster, script: &str, args: &[&str]) -> String {
    let mut cmd = Command::new("python3");
    cmd.arg(support_script(script)).args(args);
    aws_env(cluster, &mut cmd);
    let out = cmd.output().expect("run python3");
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

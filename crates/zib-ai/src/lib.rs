//! The models a compute node runs (docs/ai.md), in pure Rust on the CPU:
//!
//! - hearing: [`ct2`] reads CTranslate2 `model.bin` files, [`whisper`] runs Whisper
//!   with candle-transformers over 16 kHz mono windows ([`audio`] makes its log-mel
//!   input), [`subtitles`] writes SRT and WebVTT, [`wer`] measures a transcript;
//! - seeing: [`ocr`] reads on-screen text with PP-OCR (tract-onnx), [`nudity`] scores
//!   frames with NudeNet (tract-onnx);
//! - understanding: [`embed`] embeds text with all-MiniLM-L6-v2 (candle), [`iab`] ranks
//!   IAB 3.0 categories by similarity, [`sidecar`] assembles the ZibSidecar;
//! - [`models`]: where an operator's models live and which tiers they make available.
//!
//! Everything works on buffers in memory; nothing here touches the network, and
//! nothing is written to disk.

pub mod audio;
pub mod ct2;
pub mod embed;
pub mod frame;
pub mod iab;
pub mod models;
pub mod nudity;
pub mod ocr;
pub mod sidecar;
pub mod subtitles;
pub mod wer;
pub mod whisper;

mod error;
mod onnx;

pub use error::AiError;
pub use frame::RgbFrame;
pub use models::{Models, ModelsDir};
pub use whisper::{Segment, Transcriber, Transcript, WindowResult};

//! ffmpeg and ffprobe, driven for ZiB's video encoder (docs/video.md, "The encoder:
//! ffmpeg"): probe a source, plan its HLS ladder, encode one rung to plain MPEG-TS
//! segments that ffmpeg PUTs to a URL the caller serves; make a poster and scrub-bar
//! sprite sheets in memory (JPEGs on ffmpeg's stdout); plan an aspect variant's
//! cropped ladder; read scene cuts, raw RGB frames and 16 kHz PCM for the AI stages.
//! Processes only: no HTTP server, no metadata store, no key material
//! (the node encrypts segments and seals artefacts itself).

mod analysis;
mod encode;
mod error;
mod images;
mod ladder;
mod playlist;
mod probe;
mod sprites;
mod thumbnails;
mod tools;

pub use analysis::{
    audio_pcm, sample_frames, scene_cuts, Frame, FrameStream, PcmStream, SceneCut,
    PCM_CHUNK_SAMPLES, PCM_SAMPLE_RATE,
};
pub use encode::{encode_rung, RungJob, SEGMENT_SECS};
pub use error::MediaError;
pub use ladder::{plan_ladder, plan_variant_ladder, rfc6381_codecs, variant_crop, Crop, Rung};
pub use playlist::{parse_media_playlist, segment_file_name, segment_seq};
pub use probe::probe;
pub use sprites::{sprite_sheets, sprite_vtt, tile_size, SpriteSheets, SPRITE_GRID};
pub use thumbnails::{poster, poster_time};
pub use tools::Tools;
pub use zib_proto::jobs::{RenditionPlan, VideoProbe};

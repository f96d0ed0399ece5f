//! ffmpeg and ffprobe, driven for ZiB's video encoder (docs/video.md, "The encoder:
//! ffmpeg"): probe a source, plan its HLS ladder, encode one rung to plain MPEG-TS
//! segments that ffmpeg PUTs to a URL the caller serves. Processes only: no HTTP
//! server, no metadata store, no key material (the node encrypts segments itself).

mod encode;
mod error;
mod ladder;
mod playlist;
mod probe;
mod tools;

pub use encode::{encode_rung, RungJob, SEGMENT_SECS};
pub use error::MediaError;
pub use ladder::{plan_ladder, rfc6381_codecs, Rung};
pub use playlist::{parse_media_playlist, segment_file_name, segment_seq};
pub use probe::probe;
pub use tools::Tools;
pub use zib_proto::jobs::{RenditionPlan, VideoProbe};

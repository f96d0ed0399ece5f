//! Video encoding (docs/video.md): requests and their idempotency, the job lifecycle
//! driven by the encoding node (claim, lease, segments, completion, failure), cancel
//! and eviction, and the `encoding.*` events every step sends.

pub mod cancel;
pub mod events;
pub mod evict;
pub mod hls_key;
pub mod lifecycle;
pub mod outputs;
pub mod replication;
pub mod request;
pub mod source;
pub mod stream;
pub mod variants;

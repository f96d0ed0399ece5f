//! Video encoding state (migration 0006, docs/video.md): jobs and their leases
//! (`jobs`), and the HLS renditions, segments and segment replicas they produce
//! (`hls`), read by the CDN and kept durable by the workers.

mod hls;
mod jobs;

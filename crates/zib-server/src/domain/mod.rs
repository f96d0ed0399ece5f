//! The domain layer: what ZiB does, whichever surface asked. The surfaces (`api`,
//! `s3`, `cdn`, `node_rpc`, `webhooks`) and the `workers` call down into these
//! modules and never into each other.
//!
//! - `directory`: which nodes exist and which are online (one answer for everyone).
//! - `node_client`: the only code that builds node URLs or attaches node credentials.
//! - `placement`: which node takes an upload, which nodes hold a segment's shards.
//! - `registration`: validating and registering an upload, its capabilities and parts.
//! - `distribution`: the originator's shard plan and the record of a finished upload.
//! - `encoding`: video encoding jobs, from request to safe, and their events.
//! - `compute`: AI transcription and vision jobs, alone or after an encode.
//! - `uploaded`: a tenant's upload named by id, ready for a stage (or why not).
//! - `deletion`: deleting a file, evicting a superseded one.
//! - `derived`: files the video pipeline makes from an upload (posters, sprites).
//! - `blob_removal`: dropping blobs on their holders now, queued for the offline.
//! - `multipart_spool`: where S3 multipart parts wait, and collecting abandoned ones.
//! - `s3_secret`: tenants' S3 secrets, sealed under the master key.
//! - `read`: reading a file's plaintext back from its shards.
//! - `conditional`: RFC 9110 preconditions of a read (S3 GET/HEAD and the CDN).
//! - `webhook_targets`, `ssrf`: checking the webhook URLs and secrets tenants hand us.

pub mod blob_removal;
pub mod compute;
pub mod conditional;
pub mod deletion;
pub mod derived;
pub mod directory;
pub mod distribution;
pub mod encoding;
pub mod layout;
pub mod multipart_spool;
pub mod node_client;
pub mod part_coding;
pub mod placement;
pub mod read;
pub mod registration;
pub mod s3_secret;
pub mod ssrf;
pub mod uploaded;
pub mod webhook_targets;

/// The worker that rebuilds shards queued for repair: whoever queues one wakes it by
/// this name, so a corrupt shard is rebuilt now, not at the next interval.
pub const REPAIRER_WORKER: &str = "repairer";

//! Server configuration. Every key is documented in `docs/operations.md`; the `zib`
//! binary fills this from TOML plus `ZIB_*` environment overrides.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use zib_crypto::{CapabilitySigner, MasterKey};
use zib_proto::{BlobId, ErasureParams, NodeId};

/// Where an in-process node keeps a blob on disk.
pub type LocalBlobPath = Arc<dyn Fn(BlobId) -> PathBuf + Send + Sync>;
pub type LocalNodes = HashMap<NodeId, LocalBlobPath>;

pub struct ServerConfig {
    /// SQLite database file of the metadata store.
    pub database_path: PathBuf,
    /// Where parts of S3 multipart uploads wait, sealed, for CompleteMultipartUpload.
    pub s3_spool_dir: PathBuf,
    /// An S3 multipart upload neither completed nor aborted is removed this long after
    /// its last part arrived.
    pub s3_multipart_expiry: Duration,
    /// CompleteMultipartUpload answers plainly if the object is stored within this;
    /// past it, the answer starts and is kept alive until the result follows.
    pub s3_complete_wait: Duration,
    /// Base URL of the tenant API as clients reach it (used in logs and listings).
    pub public_url: String,
    /// Base URL of the CDN; `cdn_url` of a file is `{cdn_base_url}/objects/{file_id}`.
    pub cdn_base_url: String,
    /// Wraps every per-file data key. Losing it loses every file.
    pub master_key: MasterKey,
    /// Signs the capability tokens nodes accept. Persist it: nodes learn its public
    /// half at registration.
    pub capability_signer: CapabilitySigner,
    /// Shared secret nodes present on `/v1/node/*` and the server on shard reads.
    pub cluster_token: String,
    pub erasure: ErasureParams,
    /// Plaintext bytes per envelope chunk.
    pub chunk_size: u32,
    /// Files at least this large upload in parts.
    pub multipart_threshold: u64,
    /// Plaintext bytes per part (rounded down to whole chunks).
    pub part_size: u64,
    pub max_file_size: u64,
    /// How long a registration (and its tokens) stays valid.
    pub upload_expiry: Duration,
    /// A node silent for longer is offline: no new uploads, not read from.
    pub node_offline_after: Duration,
    /// Interval nodes are told to heartbeat at.
    pub heartbeat_interval: Duration,
    /// How long the CDN waits for one shard before reading around it.
    pub shard_fetch_timeout: Duration,
    /// A node silent this long is lost: its shards are rebuilt on other nodes.
    pub repair_after: Duration,
    /// After a busy repair tick that took T, the repairer rests T × this, so a large
    /// repair backlog leaves room for foreground traffic (0: only a 20 ms pause).
    pub repair_pace: f64,
    /// Pause between verification sweeps of newly stored shards.
    pub verify_interval: Duration,
    /// Pause between audit sweeps; each shard is challenged about once per this.
    pub audit_interval: Duration,
    /// Distinct non-originator nodes that must hold a file's shards before `safe`.
    pub safe_min_peers: u32,
    /// Blobs no metadata points to are collected once older than this, and expired
    /// registrations are failed this long after their expiry.
    pub garbage_grace: Duration,
    /// Pause between garbage sweeps (expired uploads, orphan blobs).
    pub collect_interval: Duration,
    /// Delays before each retry of a webhook delivery; a delivery is attempted
    /// `len + 1` times, then left `failed` for a manual redelivery. Each delay gets
    /// up to 20% random extra so receivers that failed together are not retried
    /// together.
    pub webhook_retry_schedule: Vec<Duration>,
    /// How long one webhook request (connect, send, response) may take.
    pub webhook_timeout: Duration,
    /// Webhook events (with their deliveries and attempts) are deleted this long after
    /// they were emitted, once none of their deliveries is still pending.
    pub webhook_retention: Duration,
    /// Pause between dispatcher polls when no delivery is due.
    pub webhook_poll_interval: Duration,
    /// After a tenant's secret is rotated, the previous one keeps signing (a second
    /// signature) this long, so receivers can switch without dropping events.
    pub webhook_secret_overlap: Duration,
    /// Allow webhook targets on loopback, private and link-local addresses. Off in
    /// production (SSRF); `zib dev` turns it on so local receivers work.
    pub allow_private_webhook_targets: bool,
    /// Nodes running in this process (`zib dev`): the CDN reads their shards from
    /// their disks instead of over loopback HTTP (they still serve everyone else).
    pub local_nodes: Arc<LocalNodes>,
}

/// Repair takes at most about half the time while a backlog lasts.
pub const DEFAULT_REPAIR_PACE: f64 = 1.0;

/// The default retry delays: exponential-ish, about 1 h 13 min before giving up,
/// long enough to ride out a receiver's deploy or a short outage.
pub const DEFAULT_WEBHOOK_RETRY_SCHEDULE: [Duration; 5] = [
    Duration::from_secs(5),
    Duration::from_secs(30),
    Duration::from_secs(120),
    Duration::from_secs(600),
    Duration::from_secs(3600),
];

impl ServerConfig {
    /// Defaults for everything but the paths, URLs and secrets.
    pub fn with_secrets(
        database_path: PathBuf,
        public_url: String,
        master_key: MasterKey,
        capability_signer: CapabilitySigner,
        cluster_token: String,
    ) -> Self {
        let s3_spool_dir = database_path
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join("s3-multipart");
        Self {
            database_path,
            s3_spool_dir,
            s3_multipart_expiry: Duration::from_secs(7 * 24 * 3600),
            s3_complete_wait: Duration::from_secs(10),
            cdn_base_url: public_url.clone(),
            public_url,
            master_key,
            capability_signer,
            cluster_token,
            erasure: ErasureParams {
                data_shards: 4,
                parity_shards: 2,
                shard_size: 1024 * 1024,
            },
            chunk_size: zib_crypto::envelope::DEFAULT_CHUNK_SIZE,
            multipart_threshold: 64 * 1024 * 1024,
            part_size: 16 * 1024 * 1024,
            max_file_size: 5 * 1024 * 1024 * 1024 * 1024,
            upload_expiry: Duration::from_secs(3600),
            node_offline_after: Duration::from_secs(30),
            heartbeat_interval: Duration::from_secs(5),
            shard_fetch_timeout: Duration::from_secs(10),
            repair_after: Duration::from_secs(300),
            repair_pace: DEFAULT_REPAIR_PACE,
            verify_interval: Duration::from_secs(2),
            audit_interval: Duration::from_secs(3600),
            safe_min_peers: 3,
            garbage_grace: Duration::from_secs(3600),
            collect_interval: Duration::from_secs(60),
            webhook_retry_schedule: DEFAULT_WEBHOOK_RETRY_SCHEDULE.to_vec(),
            webhook_timeout: Duration::from_secs(10),
            webhook_retention: Duration::from_secs(30 * 24 * 3600),
            webhook_poll_interval: Duration::from_secs(1),
            webhook_secret_overlap: Duration::from_secs(24 * 3600),
            allow_private_webhook_targets: false,
            local_nodes: Arc::default(),
        }
    }
}

//! Server configuration in two layers: [`ServerSettings`] has one field per key of
//! `zib server`'s TOML file (each also `ZIB_<KEY>`), with its default and a doc line;
//! [`ServerConfig`] is what the server runs with: the settings, checked, plus what is
//! derived from them (parsed secrets, resolved URLs, the erasure code, local nodes).
//! `ServerConfig` dereferences to its settings, so `config.upload_expiry` reads a key.
//!
//! Adding a key: a field here with a `///` line, its default in `Default`, a row in
//! `docs/operations.md` (a zib-cli test checks the tables against this struct).
#![deny(missing_docs)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use zib_crypto::{CapabilitySigner, MasterKey};
use zib_proto::{BlobId, ErasureParams, NodeId};

/// Where an in-process node keeps a blob on disk.
pub type LocalBlobPath = Arc<dyn Fn(BlobId) -> PathBuf + Send + Sync>;
/// The in-process nodes, by id.
pub type LocalNodes = HashMap<NodeId, LocalBlobPath>;

/// Every `zib server` key. Durations are named after their unit in the file
/// (`upload_expiry_secs`) and are [`Duration`]s here.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerSettings {
    /// Address the API, CDN and node RPC listen on (`zib server` binds it).
    pub listen: String,
    /// Base URL of the tenant API as clients reach it; `None`: `http://{bound addr}`.
    /// Resolved into [`ServerConfig::public_url`].
    #[serde(rename = "public_url")]
    pub public_url_setting: Option<String>,
    /// Base URL of the CDN; `None`: the public URL. Resolved into
    /// [`ServerConfig::cdn_base_url`].
    pub cdn_url: Option<String>,
    /// SQLite database file of the metadata store.
    #[serde(rename = "database")]
    pub database_path: PathBuf,
    /// Hex of the key that wraps every per-file data key (required). Parsed into
    /// [`ServerConfig::master_key`].
    #[serde(rename = "master_key")]
    pub master_key_hex: Option<String>,
    /// Hex Ed25519 seed signing capability tokens (required). Parsed into
    /// [`ServerConfig::capability_signer`].
    pub capability_key: Option<String>,
    /// Shared secret nodes present on `/v1/node/*` and the server on shard reads
    /// (required, at least 16 characters).
    pub cluster_token: String,
    /// Data shards per segment (see [`ServerConfig::erasure`]).
    pub data_shards: u8,
    /// Parity shards per segment: this many losses per segment are survivable.
    pub parity_shards: u8,
    /// Bytes per shard of a full segment.
    pub shard_size: u32,
    /// Plaintext bytes per envelope chunk.
    pub chunk_size: u32,
    /// Objects of at most this many bytes are kept sealed in the metadata store
    /// instead of as shards on nodes (0: never; at most 1 MiB).
    pub inline_threshold: u64,
    /// Files at least this large upload in parts.
    pub multipart_threshold: u64,
    /// Plaintext bytes per part (rounded down to whole chunks).
    pub part_size: u64,
    /// A larger `file_size` at initiate is refused.
    pub max_file_size: u64,
    /// How long a registration (and its tokens) stays valid.
    #[serde(rename = "upload_expiry_secs", with = "zib_util::duration_serde::secs")]
    pub upload_expiry: Duration,
    /// A node silent for longer is offline: no new uploads, not read from.
    #[serde(
        rename = "node_offline_after_secs",
        with = "zib_util::duration_serde::secs"
    )]
    pub node_offline_after: Duration,
    /// Interval nodes are told to heartbeat at.
    #[serde(
        rename = "heartbeat_interval_secs",
        with = "zib_util::duration_serde::secs"
    )]
    pub heartbeat_interval: Duration,
    /// How long the CDN waits for one shard before reading around it.
    #[serde(
        rename = "shard_fetch_timeout_secs",
        with = "zib_util::duration_serde::secs"
    )]
    pub shard_fetch_timeout: Duration,
    /// A node silent this long is lost: its shards are rebuilt on other nodes.
    #[serde(rename = "repair_after_secs", with = "zib_util::duration_serde::secs")]
    pub repair_after: Duration,
    /// After a busy repair tick that took T, the repairer rests T × this, so a large
    /// repair backlog leaves room for foreground traffic (0: only a 20 ms pause).
    pub repair_pace: f64,
    /// Pause between verification sweeps of newly stored shards (at least 1 s).
    #[serde(
        rename = "verify_interval_secs",
        with = "zib_util::duration_serde::secs"
    )]
    pub verify_interval: Duration,
    /// Pause between audit sweeps; each shard is challenged about once per this
    /// (at least 1 s).
    #[serde(
        rename = "audit_interval_secs",
        with = "zib_util::duration_serde::secs"
    )]
    pub audit_interval: Duration,
    /// Most shards (data and parity alike) the auditor challenges per second, at
    /// least 1: bounds the audit traffic nodes see; a full round over N shards takes
    /// at least N / this seconds, whatever `audit_interval` says.
    pub audit_pace: u32,
    /// Longest pause between inventory sweeps, which list every node's blobs to
    /// collect orphans and to find shards a live node lost (at least 1 s; sweeps
    /// also run every `garbage_grace` / 4 when that is sooner).
    #[serde(
        rename = "inventory_interval_secs",
        with = "zib_util::duration_serde::secs"
    )]
    pub inventory_interval: Duration,
    /// Distinct non-originator nodes that must hold a file's shards before `safe`.
    pub safe_min_peers: u32,
    /// Blobs no metadata points to are collected once older than this, and expired
    /// registrations are failed this long after their expiry.
    #[serde(rename = "garbage_grace_secs", with = "zib_util::duration_serde::secs")]
    pub garbage_grace: Duration,
    /// Pause between garbage sweeps (expired uploads, orphan blobs; at least 1 s).
    #[serde(
        rename = "collect_interval_secs",
        with = "zib_util::duration_serde::secs"
    )]
    pub collect_interval: Duration,
    /// Delays before each retry of a webhook delivery; a delivery is attempted
    /// `len + 1` times, then left `failed` for a manual redelivery. Each delay gets
    /// up to 20% random extra so receivers that failed together are not retried
    /// together. Written `"5s,30s,2m,10m,1h"` (units ms, s, m, h).
    #[serde(with = "retry_schedule")]
    pub webhook_retry_schedule: Vec<Duration>,
    /// How long one webhook request (connect, send, response) may take (at least 1 s).
    #[serde(
        rename = "webhook_timeout_secs",
        with = "zib_util::duration_serde::secs"
    )]
    pub webhook_timeout: Duration,
    /// Pause between dispatcher polls when no delivery is due (at least 10 ms).
    #[serde(
        rename = "webhook_poll_interval_ms",
        with = "zib_util::duration_serde::millis"
    )]
    pub webhook_poll_interval: Duration,
    /// After a tenant's secret is rotated, the previous one keeps signing (a second
    /// signature) this long, so receivers can switch without dropping events.
    #[serde(
        rename = "webhook_secret_overlap_secs",
        with = "zib_util::duration_serde::secs"
    )]
    pub webhook_secret_overlap: Duration,
    /// Webhook events (with their deliveries and attempts) are deleted this long after
    /// they were emitted, once none of their deliveries is still pending (at least a day).
    #[serde(
        rename = "webhook_retention_days",
        with = "zib_util::duration_serde::days"
    )]
    pub webhook_retention: Duration,
    /// Allow webhook targets on loopback, private and link-local addresses. Off in
    /// production (SSRF); `zib dev` turns it on so local receivers work.
    pub allow_private_webhook_targets: bool,
    /// An S3 multipart upload neither completed nor aborted is removed this long after
    /// its last part arrived (at least a day); a completed one is remembered this long
    /// for a repeated Complete.
    #[serde(
        rename = "s3_multipart_expiry_days",
        with = "zib_util::duration_serde::days"
    )]
    pub s3_multipart_expiry: Duration,
    /// CompleteMultipartUpload answers plainly if the object is stored within this;
    /// past it, the answer starts and is kept alive until the result follows.
    #[serde(
        rename = "s3_complete_wait_ms",
        with = "zib_util::duration_serde::millis"
    )]
    pub s3_complete_wait: Duration,
    /// An encoding node's lease on a job lapses this long after its last renewal
    /// (nodes renew every few seconds); the job is then retried elsewhere (at least 5 s).
    #[serde(
        rename = "encoding_lease_secs",
        with = "zib_util::duration_serde::secs"
    )]
    pub encoding_lease: Duration,
    /// Transient encoding failures (a lapsed lease, a node error) retried before the
    /// job waits for the tenant (`failed_user_action`).
    pub encoding_retry_budget: u32,
    /// The first retry of a failed encoding waits this long, each later one twice the
    /// previous, up to `encoding_retry_backoff_max_secs`.
    #[serde(
        rename = "encoding_retry_backoff_secs",
        with = "zib_util::duration_serde::secs"
    )]
    pub encoding_retry_backoff: Duration,
    /// Longest wait before an encoding retry.
    #[serde(
        rename = "encoding_retry_backoff_max_secs",
        with = "zib_util::duration_serde::secs"
    )]
    pub encoding_retry_backoff_max: Duration,
    /// A forced re-encode's predecessor keeps its segments this long after the new
    /// encode goes live, so players mid-stream finish on the old playlist.
    #[serde(
        rename = "encoding_eviction_grace_secs",
        with = "zib_util::duration_serde::secs"
    )]
    pub encoding_eviction_grace: Duration,
}

/// Objects up to this size skip the nodes: chosen by `bench/s3_small.sh`
/// (docs/architecture.md, "Small objects inline").
pub const DEFAULT_INLINE_THRESHOLD: u64 = 16 * 1024;

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

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:7070".into(),
            public_url_setting: None,
            cdn_url: None,
            database_path: PathBuf::from("zib-meta.db"),
            master_key_hex: None,
            capability_key: None,
            cluster_token: String::new(),
            data_shards: 4,
            parity_shards: 2,
            shard_size: 1024 * 1024,
            chunk_size: zib_crypto::envelope::DEFAULT_CHUNK_SIZE,
            inline_threshold: DEFAULT_INLINE_THRESHOLD,
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
            audit_pace: 20,
            inventory_interval: Duration::from_secs(900),
            safe_min_peers: 3,
            garbage_grace: Duration::from_secs(3600),
            collect_interval: Duration::from_secs(60),
            webhook_retry_schedule: DEFAULT_WEBHOOK_RETRY_SCHEDULE.to_vec(),
            webhook_timeout: Duration::from_secs(10),
            webhook_poll_interval: Duration::from_secs(1),
            webhook_secret_overlap: Duration::from_secs(24 * 3600),
            webhook_retention: Duration::from_secs(30 * 24 * 3600),
            allow_private_webhook_targets: false,
            s3_multipart_expiry: Duration::from_secs(7 * 24 * 3600),
            s3_complete_wait: Duration::from_secs(10),
            encoding_lease: Duration::from_secs(30),
            encoding_retry_budget: 3,
            encoding_retry_backoff: Duration::from_secs(5),
            encoding_retry_backoff_max: Duration::from_secs(300),
            encoding_eviction_grace: Duration::from_secs(600),
        }
    }
}

/// A setting that cannot be used; the message names the key and what is expected.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

/// What the server runs with: the checked settings (read through `Deref`) and the
/// values derived from them.
pub struct ServerConfig {
    settings: ServerSettings,
    /// Where parts of S3 multipart uploads wait, sealed, for CompleteMultipartUpload
    /// (`s3-multipart/` next to the database).
    pub s3_spool_dir: PathBuf,
    /// Base URL of the tenant API as clients reach it (used in logs and listings).
    pub public_url: String,
    /// Base URL of the CDN; `cdn_url` of a file is `{cdn_base_url}/objects/{file_id}`.
    pub cdn_base_url: String,
    /// Wraps every per-file data key. Losing it loses every file.
    pub master_key: MasterKey,
    /// Signs the capability tokens nodes accept. Persist it: nodes learn its public
    /// half at registration.
    pub capability_signer: CapabilitySigner,
    /// The Reed-Solomon code of new files, from `data_shards`, `parity_shards`,
    /// `shard_size`.
    pub erasure: ErasureParams,
    /// Nodes running in this process (`zib dev`): the CDN reads their shards from
    /// their disks instead of over loopback HTTP (they still serve everyone else).
    pub local_nodes: Arc<LocalNodes>,
}

impl Deref for ServerConfig {
    type Target = ServerSettings;

    fn deref(&self) -> &ServerSettings {
        &self.settings
    }
}

/// Tests and `zib dev` adjust settings after construction. The derived fields are
/// not recomputed: set `erasure` itself, not `data_shards`.
impl DerefMut for ServerConfig {
    fn deref_mut(&mut self) -> &mut ServerSettings {
        &mut self.settings
    }
}

impl ServerConfig {
    /// Checks `settings` and derives the rest; `bound` (the listener's address) is
    /// the public URL when none is set.
    pub fn new(mut settings: ServerSettings, bound: SocketAddr) -> Result<Self, ConfigError> {
        let master_key =
            MasterKey::from_hex(settings.master_key_hex.as_deref().ok_or_else(|| {
                ConfigError(
                    "master_key is required (ZIB_MASTER_KEY); `zib keygen` prints one".into(),
                )
            })?)
            .map_err(|e| ConfigError(format!("master_key must be 64 hex characters: {e}")))?;
        let capability_signer = CapabilitySigner::from_seed_hex(
            settings.capability_key.as_deref().ok_or_else(|| {
                ConfigError(
                    "capability_key is required (ZIB_CAPABILITY_KEY); `zib keygen` prints one"
                        .into(),
                )
            })?,
        )
        .map_err(|e| ConfigError(format!("capability_key: {e}")))?;
        if settings.cluster_token.len() < 16 {
            return Err(ConfigError(
                "cluster_token is required, at least 16 characters (ZIB_CLUSTER_TOKEN)".into(),
            ));
        }
        zib_erasure::Codec::new(erasure_of(&settings))
            .map_err(|e| ConfigError(format!("invalid erasure parameters: {e}")))?;
        let max_chunk = zib_crypto::envelope::MAX_CHUNK_SIZE;
        if !(1..=max_chunk).contains(&settings.chunk_size) {
            return Err(ConfigError(format!(
                "chunk_size must be between 1 and {max_chunk} bytes"
            )));
        }
        let inline_max = zib_proto::node_rpc::INLINE_MAX_BYTES;
        if settings.inline_threshold > inline_max {
            return Err(ConfigError(format!(
                "inline_threshold must be at most {inline_max} bytes (0 keeps every object on nodes)"
            )));
        }
        if settings.part_size < u64::from(settings.chunk_size) {
            return Err(ConfigError(format!(
                "part_size must be at least one chunk ({} bytes)",
                settings.chunk_size
            )));
        }
        if settings.webhook_retention.is_zero() {
            return Err(ConfigError(
                "webhook_retention_days must be at least 1".into(),
            ));
        }
        if settings.encoding_lease < Duration::from_secs(5) {
            return Err(ConfigError("encoding_lease_secs must be at least 5".into()));
        }
        if settings.s3_multipart_expiry.is_zero() {
            return Err(ConfigError(
                "s3_multipart_expiry_days must be at least 1".into(),
            ));
        }
        // Sweeps and polls of zero would spin.
        let s = &mut settings;
        for pause in [
            &mut s.verify_interval,
            &mut s.audit_interval,
            &mut s.inventory_interval,
            &mut s.collect_interval,
            &mut s.webhook_timeout,
        ] {
            *pause = (*pause).max(Duration::from_secs(1));
        }
        s.webhook_poll_interval = s.webhook_poll_interval.max(Duration::from_millis(10));
        s.audit_pace = s.audit_pace.max(1);
        let public_url = settings
            .public_url_setting
            .clone()
            .unwrap_or_else(|| format!("http://{bound}"));
        let cdn_base_url = settings
            .cdn_url
            .clone()
            .unwrap_or_else(|| public_url.clone());
        Ok(Self::derived(
            settings,
            public_url,
            cdn_base_url,
            master_key,
            capability_signer,
        ))
    }

    /// Whether an object of `size` plaintext bytes is kept in the metadata store
    /// rather than sharded on nodes (`inline_threshold`; 0 turns it off).
    pub fn keeps_inline(&self, size: u64) -> bool {
        self.settings.inline_threshold > 0 && size <= self.settings.inline_threshold
    }

    /// Default settings but for the paths, URLs and secrets (for tests).
    pub fn with_secrets(
        database_path: PathBuf,
        public_url: String,
        master_key: MasterKey,
        capability_signer: CapabilitySigner,
        cluster_token: String,
    ) -> Self {
        let settings = ServerSettings {
            database_path,
            cluster_token,
            ..ServerSettings::default()
        };
        Self::derived(
            settings,
            public_url.clone(),
            public_url,
            master_key,
            capability_signer,
        )
    }

    fn derived(
        settings: ServerSettings,
        public_url: String,
        cdn_base_url: String,
        master_key: MasterKey,
        capability_signer: CapabilitySigner,
    ) -> Self {
        let s3_spool_dir = settings
            .database_path
            .parent()
            .unwrap_or(Path::new("."))
            .join("s3-multipart");
        let erasure = erasure_of(&settings);
        Self {
            settings,
            s3_spool_dir,
            public_url,
            cdn_base_url,
            master_key,
            capability_signer,
            erasure,
            local_nodes: Arc::default(),
        }
    }
}

/// The code the three erasure keys describe.
fn erasure_of(settings: &ServerSettings) -> ErasureParams {
    ErasureParams {
        data_shards: settings.data_shards,
        parity_shards: settings.parity_shards,
        shard_size: settings.shard_size,
    }
}

/// `webhook_retry_schedule` as text: comma-separated delays with a unit (`500ms`,
/// `5s`, `2m`, `1h`; a bare number is seconds), at least two, so every delivery gets
/// the three attempts the contract promises.
pub mod retry_schedule {
    use std::time::Duration;

    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    /// Parses the text form; the error names the key and the bad item.
    pub fn parse(text: &str) -> Result<Vec<Duration>, String> {
        let mut out = Vec::new();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (digits, unit) = item.split_at(
                item.find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(item.len()),
            );
            let n: u64 = digits
                .parse()
                .map_err(|_| format!("webhook_retry_schedule: {item:?} is not a delay like 30s"))?;
            let ms = match unit {
                "ms" => n,
                "" | "s" => n.saturating_mul(1000),
                "m" => n.saturating_mul(60_000),
                "h" => n.saturating_mul(3_600_000),
                other => {
                    return Err(format!(
                        "webhook_retry_schedule: unknown unit {other:?} in {item:?} (use ms, s, m or h)"
                    ))
                }
            };
            out.push(Duration::from_millis(ms));
        }
        if out.len() < 2 {
            return Err(format!(
                "webhook_retry_schedule needs at least two delays (three attempts), got {text:?}"
            ));
        }
        Ok(out)
    }

    /// Each delay in the largest unit that divides it: `5s,30s,2m,10m,1h`.
    pub fn format(delays: &[Duration]) -> String {
        let item = |d: &Duration| {
            let ms = d.as_millis();
            [(3_600_000, "h"), (60_000, "m"), (1000, "s")]
                .into_iter()
                .find(|(unit, _)| ms > 0 && ms.is_multiple_of(*unit))
                .map_or_else(
                    || format!("{ms}ms"),
                    |(unit, name)| format!("{}{name}", ms / unit),
                )
        };
        delays.iter().map(item).collect::<Vec<_>>().join(",")
    }

    /// Serde: writes [`format`].
    pub fn serialize<S: Serializer>(delays: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(delays))
    }

    /// Serde: reads [`parse`].
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        parse(&String::deserialize(d)?).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_schedules_parse_with_units() {
        use retry_schedule::parse as parse_retry_schedule;
        assert_eq!(
            parse_retry_schedule("500ms, 5s,2m,1h,7").unwrap(),
            vec![
                Duration::from_millis(500),
                Duration::from_secs(5),
                Duration::from_secs(120),
                Duration::from_secs(3600),
                Duration::from_secs(7),
            ]
        );
        assert!(parse_retry_schedule("5s").is_err());
        assert!(parse_retry_schedule("5x,1s").is_err());
        let default = retry_schedule::format(&ServerSettings::default().webhook_retry_schedule);
        assert_eq!(default, "5s,30s,2m,10m,1h");
        assert!(parse_retry_schedule(&default).is_ok());
        assert_eq!(
            retry_schedule::format(&parse_retry_schedule("500ms,90s,0").unwrap()),
            "500ms,90s,0ms"
        );
    }

    fn secrets() -> ServerSettings {
        ServerSettings {
            master_key_hex: Some(MasterKey::generate().to_hex()),
            capability_key: Some(CapabilitySigner::generate().seed_hex()),
            cluster_token: "0123456789abcdef".into(),
            ..ServerSettings::default()
        }
    }

    #[test]
    fn settings_are_checked_and_derived() {
        let bound: SocketAddr = "127.0.0.1:7070".parse().unwrap();
        let mut s = secrets();
        s.verify_interval = Duration::ZERO;
        s.database_path = PathBuf::from("/var/zib/meta.db");
        let c = ServerConfig::new(s, bound).unwrap();
        assert_eq!(c.public_url, "http://127.0.0.1:7070");
        assert_eq!(c.cdn_base_url, c.public_url);
        assert_eq!(c.verify_interval, Duration::from_secs(1));
        assert_eq!(c.s3_spool_dir, PathBuf::from("/var/zib/s3-multipart"));
        assert_eq!(c.erasure.total_shards(), 6);

        let short_token = ServerSettings {
            cluster_token: "short".into(),
            ..secrets()
        };
        let err = ServerConfig::new(short_token, bound).err().unwrap();
        assert!(err.to_string().starts_with("cluster_token is required"));
        let no_key = ServerSettings {
            master_key_hex: None,
            ..secrets()
        };
        assert!(ServerConfig::new(no_key, bound).is_err());
    }
}

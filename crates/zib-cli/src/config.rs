//! `zib server` / `zib node` configuration: a TOML file, then `ZIB_<KEY>` environment
//! overrides for every key. Keys are documented in `docs/operations.md`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerFileConfig {
    pub listen: String,
    pub public_url: Option<String>,
    pub cdn_url: Option<String>,
    pub database: PathBuf,
    pub master_key: Option<String>,
    pub capability_key: Option<String>,
    pub cluster_token: Option<String>,
    pub data_shards: u8,
    pub parity_shards: u8,
    pub shard_size: u32,
    pub chunk_size: u32,
    pub multipart_threshold: u64,
    pub part_size: u64,
    pub max_file_size: u64,
    pub upload_expiry_secs: u64,
    pub node_offline_after_secs: u64,
    pub heartbeat_interval_secs: u64,
    pub shard_fetch_timeout_secs: u64,
    pub repair_after_secs: u64,
    /// Rest after a busy repair tick, as a multiple of the tick's time.
    pub repair_pace: f64,
    pub verify_interval_secs: u64,
    pub audit_interval_secs: u64,
    pub safe_min_peers: u32,
    pub garbage_grace_secs: u64,
    pub collect_interval_secs: u64,
    /// Delays before webhook retries, e.g. `"5s,30s,2m,10m,1h"` (units ms, s, m, h).
    pub webhook_retry_schedule: String,
    pub webhook_timeout_secs: u64,
    pub webhook_poll_interval_ms: u64,
    pub webhook_secret_overlap_secs: u64,
    pub webhook_retention_days: u64,
    pub allow_private_webhook_targets: bool,
    /// S3 multipart uploads left this long without a new part are removed.
    pub s3_multipart_expiry_days: u64,
    pub s3_complete_wait_ms: u64,
}

impl Default for ServerFileConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:7070".into(),
            public_url: None,
            cdn_url: None,
            database: PathBuf::from("zib-meta.db"),
            master_key: None,
            capability_key: None,
            cluster_token: None,
            data_shards: 4,
            parity_shards: 2,
            shard_size: 1024 * 1024,
            chunk_size: 256 * 1024,
            multipart_threshold: 64 * 1024 * 1024,
            part_size: 16 * 1024 * 1024,
            max_file_size: 5 * 1024 * 1024 * 1024 * 1024,
            upload_expiry_secs: 3600,
            node_offline_after_secs: 30,
            heartbeat_interval_secs: 5,
            shard_fetch_timeout_secs: 10,
            repair_after_secs: 300,
            repair_pace: zib_server::config::DEFAULT_REPAIR_PACE,
            verify_interval_secs: 2,
            audit_interval_secs: 3600,
            safe_min_peers: 3,
            garbage_grace_secs: 3600,
            collect_interval_secs: 60,
            webhook_retry_schedule: "5s,30s,2m,10m,1h".into(),
            webhook_timeout_secs: 10,
            webhook_poll_interval_ms: 1000,
            webhook_secret_overlap_secs: 24 * 3600,
            webhook_retention_days: 30,
            allow_private_webhook_targets: false,
            s3_multipart_expiry_days: 7,
            s3_complete_wait_ms: 10_000,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeFileConfig {
    pub listen: String,
    pub public_url: Option<String>,
    pub server_url: String,
    pub cluster_token: Option<String>,
    pub data_dir: PathBuf,
    pub node_id: Option<String>,
    pub capacity_bytes: u64,
    pub zone: Option<String>,
    pub heartbeat_interval_secs: u64,
}

impl Default for NodeFileConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:7080".into(),
            public_url: None,
            server_url: "http://127.0.0.1:7070".into(),
            cluster_token: None,
            data_dir: PathBuf::from("zib-node-data"),
            node_id: None,
            capacity_bytes: 100 * 1024 * 1024 * 1024,
            zone: None,
            heartbeat_interval_secs: 5,
        }
    }
}

/// Reads `path` (if given) over the defaults, then applies `ZIB_<KEY>` variables.
pub fn load<T: DeserializeOwned + Serialize + Default>(path: Option<&Path>) -> Result<T> {
    let defaults = serde_json::to_value(T::default()).context("serialising defaults")?;
    let Value::Object(defaults) = defaults else {
        bail!("configuration defaults are not a table");
    };
    let mut merged: Map<String, Value> = defaults.clone();
    if let Some(path) = path {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        let table: toml::Table = toml::from_str(&text)
            .with_context(|| format!("parsing config file {}", path.display()))?;
        let value = serde_json::to_value(table).context("converting TOML")?;
        if let Value::Object(map) = value {
            merged.extend(map);
        }
    }
    for (key, default) in &defaults {
        let var = format!("ZIB_{}", key.to_ascii_uppercase());
        if let Ok(raw) = std::env::var(&var) {
            let value = match default {
                Value::Number(_) => Value::Number(
                    raw.trim()
                        .parse::<u64>()
                        .with_context(|| format!("{var} must be a whole number, got {raw:?}"))?
                        .into(),
                ),
                Value::Bool(_) => Value::Bool(
                    raw.trim()
                        .parse()
                        .with_context(|| format!("{var} must be true or false"))?,
                ),
                _ => Value::String(raw),
            };
            merged.insert(key.clone(), value);
        }
    }
    serde_json::from_value(Value::Object(merged)).context("invalid configuration")
}

/// Parses a retry schedule: comma-separated delays with a unit (`500ms`, `5s`,
/// `2m`, `1h`; a bare number is seconds). At least two, so every delivery gets the
/// three attempts the contract promises.
pub fn parse_retry_schedule(text: &str) -> Result<Vec<std::time::Duration>> {
    let mut out = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (digits, unit) = item.split_at(
            item.find(|c: char| !c.is_ascii_digit())
                .unwrap_or(item.len()),
        );
        let n: u64 = digits
            .parse()
            .with_context(|| format!("webhook_retry_schedule: {item:?} is not a delay like 30s"))?;
        let ms = match unit {
            "ms" => n,
            "" | "s" => n.saturating_mul(1000),
            "m" => n.saturating_mul(60_000),
            "h" => n.saturating_mul(3_600_000),
            other => bail!(
                "webhook_retry_schedule: unknown unit {other:?} in {item:?} (use ms, s, m or h)"
            ),
        };
        out.push(std::time::Duration::from_millis(ms));
    }
    if out.len() < 2 {
        bail!("webhook_retry_schedule needs at least two delays (three attempts), got {text:?}");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_schedules_parse_with_units() {
        use std::time::Duration;
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
        assert!(parse_retry_schedule(&ServerFileConfig::default().webhook_retry_schedule).is_ok());
    }

    #[test]
    fn file_then_environment() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, "zone = \"eu-1\"\ncapacity_bytes = 1000\n").unwrap();
        // A key no other test reads, so the process-wide environment is safe to touch.
        std::env::set_var("ZIB_HEARTBEAT_INTERVAL_SECS", "2");
        let c: NodeFileConfig = load(Some(&path)).unwrap();
        std::env::remove_var("ZIB_HEARTBEAT_INTERVAL_SECS");
        assert_eq!(c.zone.as_deref(), Some("eu-1"));
        assert_eq!(c.capacity_bytes, 1000);
        assert_eq!(c.heartbeat_interval_secs, 2);
        assert_eq!(c.server_url, "http://127.0.0.1:7070");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        std::fs::write(&path, "lisen = \"x\"\n").unwrap();
        assert!(load::<ServerFileConfig>(Some(&path)).is_err());
    }
}

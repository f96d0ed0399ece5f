//! Shared state handed to every handler.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use zib_meta::Store;

use crate::config::ServerConfig;

#[derive(Clone)]
pub struct AppState(pub Arc<Inner>);

pub struct Inner {
    pub config: ServerConfig,
    pub store: Store,
    /// For calls that are not to nodes (the S3 gateway's uploads through capability
    /// URLs); node calls go through `nodes`.
    pub http: reqwest::Client,
    /// Every call the server makes to a storage node.
    pub nodes: crate::domain::node_client::NodeClient,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

pub fn now_ms() -> i64 {
    unix_ms(SystemTime::now())
}

/// Unix milliseconds of `t` (0 before 1970).
pub fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// RFC 3339 UTC for a unix-millisecond time.
pub fn rfc3339(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Inner {
    pub fn cdn_url(&self, file_id: zib_proto::FileId) -> String {
        format!(
            "{}/objects/{}",
            self.config.cdn_base_url.trim_end_matches('/'),
            file_id
        )
    }
}

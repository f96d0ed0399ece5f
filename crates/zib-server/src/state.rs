//! Shared state handed to every handler.

use std::sync::Arc;

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
    /// Every background worker by name: wake one when work appears, read statuses.
    pub workers: zib_util::worker::Registry,
    /// Time this process stood still, forgiven in node liveness.
    pub stalls: std::sync::Arc<zib_util::stall::StallWatch>,
    /// Parts the server codes at once (`domain::part_coding`): each holds about two
    /// segments and their shards, so memory is bounded however many clients send
    /// parts; the others wait, their bodies unread.
    pub part_coding: tokio::sync::Semaphore,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// Kept here so `crate::state::{now_ms, unix_ms, rfc3339}` stays the server's path.
pub use zib_util::time::{now_ms, rfc3339, unix_ms};

impl Inner {
    pub fn cdn_url(&self, file_id: zib_proto::FileId) -> String {
        format!(
            "{}/objects/{}",
            self.config.cdn_base_url.trim_end_matches('/'),
            file_id
        )
    }
}

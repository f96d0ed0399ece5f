//! Operator views of the nodes: `GET /v1/admin/nodes` lists them, and
//! `POST`/`DELETE /v1/admin/nodes/{node_id}/drain` start and end a node's drain
//! (docs/operations.md, "Draining a node"). Cluster-token authenticated.

use serde::{Deserialize, Serialize};

use crate::NodeId;

/// One node as the server sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub node_id: NodeId,
    pub url: String,
    pub zone: Option<String>,
    /// A heartbeat within `node_offline_after`.
    pub online: bool,
    /// `active`; `draining` while it still holds data the store knows of; `drained`
    /// once it holds none (it may then be stopped for good).
    pub state: String,
    /// RFC 3339 start of the drain, if one is under way or done.
    pub draining_since: Option<String>,
    /// Shards of files it holds.
    pub shards: u64,
    /// Copies of HLS segments it holds.
    pub segment_copies: u64,
    pub free_bytes: u64,
    pub used_bytes: u64,
}

/// `GET /v1/admin/nodes`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeList {
    pub nodes: Vec<NodeStatus>,
}

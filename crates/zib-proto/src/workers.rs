//! Background-worker status as the server and the nodes report it: a node answers
//! `GET /v1/workers` with a [`WorkerList`], the server's `GET /v1/admin/workers`
//! gathers its own and every node's into a [`ClusterWorkers`].

use serde::{Deserialize, Serialize};

use crate::NodeId;

/// What a worker is doing right now.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerState {
    /// Waiting for its interval (or a wake-up).
    Idle,
    /// In a tick, or pausing briefly between ticks of a backlog.
    Busy,
    /// Its last tick failed; waiting before the retry.
    Backoff,
    /// Ended (shutdown).
    Stopped,
}

/// One worker's status.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerStatus {
    pub name: String,
    pub state: WorkerState,
    /// Free text the worker sets about its progress; empty when it set none.
    #[serde(default)]
    pub status: String,
    /// Ticks finished, successful or not.
    pub runs: u64,
    /// Ticks that failed.
    pub errors: u64,
    /// Failures since the last success (0 while healthy).
    pub consecutive_errors: u64,
    /// RFC 3339 end time of the last tick.
    pub last_run_at: Option<String>,
    pub last_error: Option<String>,
    /// RFC 3339 time of the last failure.
    pub last_error_at: Option<String>,
    /// After a busy tick that took T the worker rests T × pace (0: only a short pause).
    pub pace: f64,
}

/// A process's workers, in name order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerList {
    pub workers: Vec<WorkerStatus>,
}

/// One node's workers, or why they could not be read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeWorkers {
    pub node_id: NodeId,
    pub url: String,
    pub online: bool,
    #[serde(default)]
    pub workers: Vec<WorkerStatus>,
    /// Set when the node could not be asked (offline, timeout, error answer).
    pub error: Option<String>,
}

/// `GET /v1/admin/workers`: the server's workers and each node's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterWorkers {
    pub server: Vec<WorkerStatus>,
    pub nodes: Vec<NodeWorkers>,
}

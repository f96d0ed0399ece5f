//! Registration and heartbeats: the node's only link to the server's commands.
//! Commands ride on heartbeat answers; each is acknowledged on the next beat once
//! carried out, so a node that was offline simply catches up.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use zib_crypto::CapabilityVerifier;
use zib_proto::node_rpc::{HeartbeatRequest, NodeAction, NodeCommand, RegisterRequest};
use zib_util::worker::{Backoff, Tick, Worker, WorkerHandle};

use crate::rpc::RpcError;
use crate::state::NodeState;

/// First retry soon (the server is often just starting next to us), then back off
/// to a pace that costs nothing while a remote server is down for longer.
const REGISTER_BACKOFF_START: Duration = Duration::from_millis(250);
const REGISTER_BACKOFF_MAX: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error(transparent)]
    Rpc(#[from] RpcError),
    #[error("server sent an unusable capability public key: {0}")]
    BadKey(String),
}

/// A refusal will not fix itself by retrying (wrong cluster token, bad request).
pub fn is_refusal(e: &RegisterError) -> bool {
    match e {
        RegisterError::Rpc(rpc) => matches!(
            rpc.status(),
            Some(StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN | StatusCode::BAD_REQUEST)
        ),
        RegisterError::BadKey(_) => true,
    }
}

pub async fn register(state: &NodeState) -> Result<(), RegisterError> {
    let request = RegisterRequest {
        node_id: state.node_id.clone(),
        public_url: state.public_url.clone(),
        capacity_bytes: state.capacity_bytes,
        free_bytes: state.free_bytes(),
        zone: state.zone.clone(),
        capabilities: state.capabilities.clone(),
    };
    let response = state.server.register(&request).await?;
    let verifier = CapabilityVerifier::from_public_key_hex(&response.capability_public_key)
        .map_err(|e| RegisterError::BadKey(e.to_string()))?;
    state.set_verifier(verifier);
    tracing::info!(node_id = %state.node_id, server = state.server.base_url(), "registered with the server");
    Ok(())
}

/// Registers (until it succeeds), then heartbeats every `interval`, carrying out
/// the commands the answers bring.
pub struct Heartbeat {
    state: Arc<NodeState>,
    interval: Duration,
    registered: bool,
    /// Set until the first tick: a node `start` registered beats one interval later.
    wait_first: bool,
    /// Commands carried out but not yet acknowledged to the server.
    done: Vec<i64>,
}

impl Heartbeat {
    /// `registered`: whether `start` already registered the node.
    pub fn new(state: Arc<NodeState>, interval: Duration, registered: bool) -> Self {
        Heartbeat {
            state,
            interval,
            registered,
            wait_first: registered,
            done: Vec::new(),
        }
    }

    async fn beat(&mut self, me: &WorkerHandle) -> Result<Tick, String> {
        let state = &self.state;
        let request = HeartbeatRequest {
            node_id: state.node_id.clone(),
            free_bytes: state.free_bytes(),
            used_bytes: state.store.used_bytes(),
            acked_commands: self.done.clone(),
        };
        match state.server.heartbeat(&request).await {
            Ok(response) => {
                self.done.retain(|id| !request.acked_commands.contains(id));
                for command in response.commands {
                    if execute(state, &command).await && !self.done.contains(&command.id) {
                        self.done.push(command.id);
                    }
                }
                me.set_status(format!(
                    "heartbeating; {} command(s) awaiting acknowledgement",
                    self.done.len()
                ));
                Ok(Tick::Idle)
            }
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => {
                // The server forgot us (fresh metadata store): introduce ourselves again.
                tracing::warn!(error = %e, "server does not know this node; registering again");
                self.registered = false;
                me.set_status("registering again: the server forgot this node");
                Ok(Tick::Busy)
            }
            Err(e) => Err(format!("heartbeat failed: {e}")),
        }
    }
}

impl Worker for Heartbeat {
    fn name(&self) -> &str {
        "heartbeat"
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    /// Registration retries soon, then slower; a failed heartbeat simply waits for
    /// the next beat.
    fn backoff(&self) -> Backoff {
        if self.registered {
            Backoff {
                first: self.interval,
                max: self.interval,
            }
        } else {
            Backoff {
                first: REGISTER_BACKOFF_START,
                max: REGISTER_BACKOFF_MAX,
            }
        }
    }

    /// Shutdown need not wait for a slow server: an unacknowledged command comes
    /// again with the next answer.
    fn interruptible(&self) -> bool {
        true
    }

    async fn tick(&mut self, me: &WorkerHandle) -> Result<Tick, String> {
        if std::mem::take(&mut self.wait_first) {
            me.set_status("registered");
            return Ok(Tick::Idle);
        }
        if self.registered {
            return self.beat(me).await;
        }
        match register(&self.state).await {
            Ok(()) => {
                self.registered = true;
                me.set_status("registered");
                // The first beat follows after one interval, as every later one.
                Ok(Tick::Idle)
            }
            Err(e) => {
                me.set_status("not registered");
                Err(format!("registration failed: {e}"))
            }
        }
    }
}

/// `true` once the command is carried out and may be acknowledged.
async fn execute(state: &NodeState, command: &NodeCommand) -> bool {
    match &command.action {
        NodeAction::DeleteBlobs { blob_ids } => {
            let mut all_done = true;
            for blob in blob_ids {
                if let Err(e) = state.store.delete(*blob).await {
                    tracing::error!(command = command.id, %blob, error = %e, "could not delete blob; will retry when the command comes again");
                    all_done = false;
                }
            }
            tracing::info!(
                command = command.id,
                blobs = blob_ids.len(),
                "deleted blobs on the server's request"
            );
            all_done
        }
    }
}

//! Registration and heartbeats: the node's only link to the server's commands.
//! Commands ride on heartbeat answers; each is acknowledged on the next beat once
//! carried out, so a node that was offline simply catches up.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use tokio_util::sync::CancellationToken;
use zib_crypto::CapabilityVerifier;
use zib_proto::node_rpc::{HeartbeatRequest, NodeAction, NodeCommand, RegisterRequest};

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
        capabilities: Vec::new(),
    };
    let response = state.server.register(&request).await?;
    let verifier = CapabilityVerifier::from_public_key_hex(&response.capability_public_key)
        .map_err(|e| RegisterError::BadKey(e.to_string()))?;
    state.set_verifier(verifier);
    tracing::info!(node_id = %state.node_id, server = state.server.base_url(), "registered with the server");
    Ok(())
}

pub async fn run(
    state: Arc<NodeState>,
    interval: Duration,
    mut registered: bool,
    cancel: CancellationToken,
) {
    let mut backoff = REGISTER_BACKOFF_START;
    // Commands carried out but not yet acknowledged to the server.
    let mut done: Vec<i64> = Vec::new();
    loop {
        if !registered {
            let attempt = tokio::select! {
                _ = cancel.cancelled() => return,
                attempt = register(&state) => attempt,
            };
            match attempt {
                Ok(()) => {
                    registered = true;
                    backoff = REGISTER_BACKOFF_START;
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "registration failed");
                    if sleep_or_cancel(backoff, &cancel).await {
                        return;
                    }
                    backoff = (backoff * 2).min(REGISTER_BACKOFF_MAX);
                    continue;
                }
            }
        }
        if sleep_or_cancel(interval, &cancel).await {
            return;
        }
        let request = HeartbeatRequest {
            node_id: state.node_id.clone(),
            free_bytes: state.free_bytes(),
            used_bytes: state.store.used_bytes(),
            acked_commands: done.clone(),
        };
        let answer = tokio::select! {
            _ = cancel.cancelled() => return,
            answer = state.server.heartbeat(&request) => answer,
        };
        match answer {
            Ok(response) => {
                done.retain(|id| !request.acked_commands.contains(id));
                for command in response.commands {
                    if execute(&state, &command).await && !done.contains(&command.id) {
                        done.push(command.id);
                    }
                }
            }
            Err(e) if e.status() == Some(StatusCode::NOT_FOUND) => {
                // The server forgot us (fresh metadata store): introduce ourselves again.
                tracing::warn!(error = %e, "server does not know this node; registering again");
                registered = false;
            }
            Err(e) => tracing::warn!(error = %e, "heartbeat failed"),
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

/// `true` when cancelled.
async fn sleep_or_cancel(duration: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => true,
        _ = tokio::time::sleep(duration) => false,
    }
}

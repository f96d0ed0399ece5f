//! What every request handler and background task of one node shares.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::http::StatusCode;
use zib_crypto::{CapabilityVerifier, TokenError};
use zib_proto::error_codes as codes;
use zib_proto::node_rpc::{CapabilityClaims, CapabilityOp};
use zib_proto::{BlobId, NodeId};

use crate::budget::BufferBudget;
use crate::error::{NodeApiError, NodeError};
use crate::rpc::ServerClient;
use crate::store::BlobStore;
use crate::NodeConfig;

/// Peers are on the same network as us; a shard push that takes longer than this is
/// better retried or reported than waited on.
const PEER_TIMEOUT: Duration = Duration::from_secs(120);
const PEER_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct NodeState {
    pub node_id: NodeId,
    pub public_url: String,
    pub store: BlobStore,
    pub server: ServerClient,
    /// For pushing shards to peers.
    pub peers: reqwest::Client,
    pub cluster_token: String,
    pub capacity_bytes: u64,
    pub zone: Option<String>,
    /// Every segment buffer held while distributing comes out of this.
    pub buffers: Arc<BufferBudget>,
    /// Set once the server told us its public key; `None` means uploads wait (503).
    verifier: RwLock<Option<CapabilityVerifier>>,
    /// Blobs (and parts) being written right now, so a racing duplicate is refused
    /// instead of interleaving with the first.
    in_flight: Mutex<HashSet<String>>,
    /// Wakes the resume task early after a client-triggered distribution failed.
    pub resume_wakeup: tokio::sync::Notify,
    /// What the node advertises at registration beyond storage (`encode`).
    pub capabilities: Vec<String>,
}

impl NodeState {
    pub fn new(
        node_id: NodeId,
        public_url: String,
        store: BlobStore,
        config: &NodeConfig,
    ) -> Result<Self, NodeError> {
        let server = ServerClient::new(&config.server_url, config.cluster_token.clone())
            .map_err(|e| NodeError::Config(format!("cannot build the HTTP client: {e}")))?;
        let peers = reqwest::Client::builder()
            .timeout(PEER_TIMEOUT)
            .connect_timeout(PEER_CONNECT_TIMEOUT)
            .build()
            .map_err(|e| NodeError::Config(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            node_id,
            public_url,
            store,
            server,
            peers,
            cluster_token: config.cluster_token.clone(),
            capacity_bytes: config.capacity_bytes,
            zone: config.zone.clone(),
            buffers: BufferBudget::new(config.upload_buffer_bytes),
            verifier: RwLock::new(None),
            in_flight: Mutex::new(HashSet::new()),
            resume_wakeup: tokio::sync::Notify::new(),
            capabilities: Vec::new(),
        })
    }

    pub fn free_bytes(&self) -> u64 {
        self.capacity_bytes.saturating_sub(self.store.used_bytes())
    }

    pub fn set_verifier(&self, verifier: CapabilityVerifier) {
        *self.verifier.write().unwrap_or_else(|p| p.into_inner()) = Some(verifier);
    }

    pub fn is_registered(&self) -> bool {
        self.verifier
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_some()
    }

    /// Signature, expiry and scope (operation, node, blob). Single use is checked by
    /// the caller, because the order of the conflict checks differs per endpoint.
    pub fn verify_token(
        &self,
        token: Option<&str>,
        op: CapabilityOp,
        blob: BlobId,
    ) -> Result<CapabilityClaims, NodeApiError> {
        self.verify_token_for(token, &[op], blob)
    }

    /// [`NodeState::verify_token`] for a route that takes any of `ops` (a pushed
    /// shard or a pushed HLS segment land on the same route).
    pub fn verify_token_for(
        &self,
        token: Option<&str>,
        ops: &[CapabilityOp],
        blob: BlobId,
    ) -> Result<CapabilityClaims, NodeApiError> {
        let token = token.filter(|t| !t.is_empty()).ok_or_else(|| {
            NodeApiError::unauthorized(
                "this endpoint needs a capability token in the `token` query parameter",
            )
        })?;
        let verifier = self
            .verifier
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| {
                NodeApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    codes::NODE_NOT_REGISTERED,
                    "this node has not registered with the server yet; retry shortly",
                )
            })?;
        let claims = verifier
            .verify(token, crate::unix_now())
            .map_err(|e| match e {
                TokenError::Expired => {
                    NodeApiError::forbidden(codes::TOKEN_EXPIRED, "capability token expired")
                }
                other => NodeApiError::forbidden(codes::INVALID_TOKEN, other.to_string()),
            })?;
        if !ops.contains(&claims.op) {
            let wanted: Vec<&str> = ops.iter().map(|op| op_name(*op)).collect();
            return Err(NodeApiError::forbidden(
                codes::WRONG_OPERATION,
                format!(
                    "token authorises the {} operation, not {}",
                    op_name(claims.op),
                    wanted.join(" or ")
                ),
            ));
        }
        if claims.node_id != self.node_id {
            return Err(NodeApiError::forbidden(
                codes::WRONG_NODE,
                format!(
                    "token was issued for node {}, not this node ({})",
                    claims.node_id, self.node_id
                ),
            ));
        }
        if claims.blob_id != blob {
            return Err(NodeApiError::forbidden(
                codes::WRONG_BLOB,
                format!(
                    "token was issued for blob {}, not blob {blob}",
                    claims.blob_id
                ),
            ));
        }
        Ok(claims)
    }

    /// A failure seen by an uploading client is often brief (a peer restarting, the
    /// server busy): try again well before the next periodic pass.
    pub fn retry_distribution_soon(&self) {
        self.resume_wakeup.notify_one();
    }

    /// Claims `key` for the lifetime of the returned guard.
    pub fn begin(&self, key: String) -> Option<InFlight<'_>> {
        let mut set = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        if set.insert(key.clone()) {
            Some(InFlight { state: self, key })
        } else {
            None
        }
    }
}

pub struct InFlight<'a> {
    state: &'a NodeState,
    key: String,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.state
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

pub fn op_name(op: CapabilityOp) -> &'static str {
    match op {
        CapabilityOp::Upload => "upload",
        CapabilityOp::Part => "part",
        CapabilityOp::Complete => "complete",
        CapabilityOp::Shard => "shard",
        CapabilityOp::Segment => "segment",
    }
}

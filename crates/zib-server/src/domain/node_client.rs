//! The one client for the server's calls to storage nodes. Only this module knows
//! the nodes' URL paths and attaches the cluster credential, so a change to either
//! is made here once. That also makes it the network seam of the deterministic
//! cluster simulation: with the `sim` feature a [`SimTransport`] can stand in for
//! HTTP (see tests/simulation.rs and docs/architecture.md "Simulation").

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use reqwest::StatusCode;
use zib_proto::node_rpc::{BlobInventory, ChallengeRequest, ChallengeResponse};
use zib_proto::workers::WorkerList;
use zib_proto::BlobId;

/// Why a call to a node did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum NodeCallError {
    #[error("node unreachable: {0}")]
    Unreachable(#[source] reqwest::Error),
    #[error("node answered HTTP {0}")]
    Status(StatusCode),
    #[error("node's answer is unreadable: {0}")]
    Body(#[source] reqwest::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Length(String),
}

impl NodeCallError {
    /// The node answered, and refused: the blob is gone or the request is wrong.
    /// Anything else (unreachable, 5xx) is not evidence about the blob.
    pub fn is_refusal(&self) -> bool {
        matches!(self, NodeCallError::Status(s) if s.is_client_error())
    }
}

/// Capability URLs a client or node presents to a node: the token in the query is
/// the credential, so these carry no cluster token.
pub mod urls {
    use zib_proto::BlobId;

    pub fn upload(node_url: &str, blob: BlobId, token: &str) -> String {
        format!("{node_url}/v1/upload/{blob}?token={token}")
    }

    pub fn upload_part(node_url: &str, blob: BlobId, part: u32, token: &str) -> String {
        format!("{node_url}/v1/upload/{blob}/parts/{part}?token={token}")
    }

    pub fn upload_complete(node_url: &str, blob: BlobId, token: &str) -> String {
        format!("{node_url}/v1/upload/{blob}/complete?token={token}")
    }

    pub fn shard_put(node_url: &str, blob: BlobId, token: &str) -> String {
        format!("{node_url}/v1/shards/{blob}?token={token}")
    }
}

/// The simulation's stand-in for the network and the nodes behind it: one call per
/// [`NodeClient`] method, with the same meaning of each answer (`Ok(None)` for a
/// blob the node does not have, [`NodeCallError::Timeout`] for a node that does not
/// answer, [`NodeCallError::Status`] for a refusal).
#[cfg(feature = "sim")]
#[async_trait::async_trait]
pub trait SimTransport: Send + Sync + 'static {
    async fn fetch_blob(
        &self,
        node_url: &str,
        blob: BlobId,
        timeout: Duration,
    ) -> Result<Option<Bytes>, NodeCallError>;
    async fn delete_blob(
        &self,
        node_url: &str,
        blob: BlobId,
        timeout: Duration,
    ) -> Result<(), NodeCallError>;
    async fn challenge(
        &self,
        node_url: &str,
        blob: BlobId,
        challenge: &ChallengeRequest,
        timeout: Duration,
    ) -> Result<ChallengeResponse, NodeCallError>;
    async fn inventory(
        &self,
        node_url: &str,
        timeout: Duration,
    ) -> Result<BlobInventory, NodeCallError>;
    async fn workers(&self, node_url: &str, timeout: Duration)
        -> Result<WorkerList, NodeCallError>;
    async fn put_shard(
        &self,
        node_url: &str,
        blob: BlobId,
        capability: &str,
        bytes: Vec<u8>,
        timeout: Duration,
    ) -> Result<(), NodeCallError>;
}

/// Calls nodes with the cluster token. Cheap to clone.
#[derive(Clone)]
pub struct NodeClient {
    http: reqwest::Client,
    cluster_token: Arc<str>,
    /// Set only by the simulation: every call goes here instead of over HTTP.
    #[cfg(feature = "sim")]
    sim: Option<Arc<dyn SimTransport>>,
}

impl NodeClient {
    pub fn new(http: reqwest::Client, cluster_token: &str) -> Self {
        Self {
            http,
            cluster_token: Arc::from(cluster_token),
            #[cfg(feature = "sim")]
            sim: None,
        }
    }

    /// A client whose every call goes to `transport` (the simulated cluster).
    #[cfg(feature = "sim")]
    pub fn simulated(transport: Arc<dyn SimTransport>) -> Self {
        Self {
            http: reqwest::Client::new(),
            cluster_token: Arc::from("simulated"),
            sim: Some(transport),
        }
    }

    fn get(&self, url: String) -> reqwest::RequestBuilder {
        self.http.get(url).bearer_auth(&*self.cluster_token)
    }

    async fn send(request: reqwest::RequestBuilder) -> Result<reqwest::Response, NodeCallError> {
        let response = request.send().await.map_err(NodeCallError::Unreachable)?;
        if !response.status().is_success() {
            return Err(NodeCallError::Status(response.status()));
        }
        Ok(response)
    }

    /// Sends, then reads the successful answer's JSON body.
    async fn send_json<T: serde::de::DeserializeOwned>(
        request: reqwest::RequestBuilder,
    ) -> Result<T, NodeCallError> {
        Self::send(request)
            .await?
            .json()
            .await
            .map_err(NodeCallError::Body)
    }

    /// A whole blob; `None` when the node does not have it.
    pub async fn fetch_blob(
        &self,
        node_url: &str,
        blob: BlobId,
        timeout: Duration,
    ) -> Result<Option<Bytes>, NodeCallError> {
        #[cfg(feature = "sim")]
        if let Some(sim) = &self.sim {
            return sim.fetch_blob(node_url, blob, timeout).await;
        }
        let request = self
            .get(format!("{node_url}/v1/shards/{blob}"))
            .timeout(timeout);
        match Self::send(request).await {
            Ok(r) => r.bytes().await.map(Some).map_err(NodeCallError::Body),
            Err(NodeCallError::Status(StatusCode::NOT_FOUND)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Streams one blob's body into `buf`, refusing a body of any other length than
    /// `expected_len` (which also keeps `buf` from reallocating out of its region).
    pub async fn read_blob_into(
        &self,
        node_url: &str,
        blob: BlobId,
        buf: &mut BytesMut,
        expected_len: usize,
        timeout: Duration,
    ) -> Result<(), NodeCallError> {
        #[cfg(feature = "sim")]
        if let Some(sim) = &self.sim {
            let bytes = sim
                .fetch_blob(node_url, blob, timeout)
                .await?
                .ok_or(NodeCallError::Status(StatusCode::NOT_FOUND))?;
            if bytes.len() != expected_len {
                return Err(NodeCallError::Length(format!(
                    "shard has {} of its {expected_len} bytes",
                    bytes.len()
                )));
            }
            buf.extend_from_slice(&bytes);
            return Ok(());
        }
        let fetch = async {
            let mut response = Self::send(self.get(format!("{node_url}/v1/shards/{blob}"))).await?;
            let mut got = 0usize;
            while let Some(frame) = response.chunk().await.map_err(NodeCallError::Body)? {
                got += frame.len();
                if got > expected_len {
                    return Err(NodeCallError::Length(format!(
                        "shard is longer than its {expected_len} bytes"
                    )));
                }
                buf.extend_from_slice(&frame);
            }
            if got != expected_len {
                return Err(NodeCallError::Length(format!(
                    "shard has {got} of its {expected_len} bytes"
                )));
            }
            Ok(())
        };
        tokio::time::timeout(timeout, fetch)
            .await
            .map_err(|_| NodeCallError::Timeout(timeout))?
    }

    /// Asks the node to drop a blob. A blob it does not have counts as dropped.
    pub async fn delete_blob(
        &self,
        node_url: &str,
        blob: BlobId,
        timeout: Duration,
    ) -> Result<(), NodeCallError> {
        #[cfg(feature = "sim")]
        if let Some(sim) = &self.sim {
            return sim.delete_blob(node_url, blob, timeout).await;
        }
        let request = self
            .http
            .delete(format!("{node_url}/v1/shards/{blob}"))
            .bearer_auth(&*self.cluster_token)
            .timeout(timeout);
        Self::send(request).await.map(|_| ())
    }

    /// Asks the holder of `blob` to prove it still has the bytes of a range.
    pub async fn challenge(
        &self,
        node_url: &str,
        blob: BlobId,
        challenge: &ChallengeRequest,
        timeout: Duration,
    ) -> Result<ChallengeResponse, NodeCallError> {
        #[cfg(feature = "sim")]
        if let Some(sim) = &self.sim {
            return sim.challenge(node_url, blob, challenge, timeout).await;
        }
        let request = self
            .http
            .post(format!("{node_url}/v1/shards/{blob}/challenge"))
            .bearer_auth(&*self.cluster_token)
            .timeout(timeout)
            .json(challenge);
        Self::send_json(request).await
    }

    /// Every blob the node stores.
    pub async fn inventory(
        &self,
        node_url: &str,
        timeout: Duration,
    ) -> Result<BlobInventory, NodeCallError> {
        #[cfg(feature = "sim")]
        if let Some(sim) = &self.sim {
            return sim.inventory(node_url, timeout).await;
        }
        let request = self.get(format!("{node_url}/v1/blobs")).timeout(timeout);
        Self::send_json(request).await
    }

    /// The node's background workers and their status.
    pub async fn workers(
        &self,
        node_url: &str,
        timeout: Duration,
    ) -> Result<WorkerList, NodeCallError> {
        #[cfg(feature = "sim")]
        if let Some(sim) = &self.sim {
            return sim.workers(node_url, timeout).await;
        }
        let request = self.get(format!("{node_url}/v1/workers")).timeout(timeout);
        Self::send(request)
            .await?
            .json()
            .await
            .map_err(NodeCallError::Body)
    }

    /// Stores a rebuilt shard under a fresh blob id, with a capability for it.
    pub async fn put_shard(
        &self,
        node_url: &str,
        blob: BlobId,
        capability: &str,
        bytes: Vec<u8>,
        timeout: Duration,
    ) -> Result<(), NodeCallError> {
        #[cfg(feature = "sim")]
        if let Some(sim) = &self.sim {
            return sim
                .put_shard(node_url, blob, capability, bytes, timeout)
                .await;
        }
        let request = self
            .http
            .put(urls::shard_put(node_url, blob, capability))
            .body(bytes)
            .timeout(timeout);
        Self::send(request).await.map(|_| ())
    }
}

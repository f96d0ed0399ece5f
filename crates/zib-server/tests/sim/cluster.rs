//! The simulated storage nodes and the network to them: in-memory disks behind the
//! server's `NodeClient` seam, answering each call the way a real `zib node` does
//! (404 for a blob it lacks, 416 for a challenge past a blob's end, a capability
//! checked on every shard push) — and failing the ways a real one fails.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use zib_crypto::capability::CapabilityVerifier;
use zib_proto::node_rpc::{
    BlobInventory, CapabilityOp, ChallengeRequest, ChallengeResponse, InventoryEntry,
};
use zib_proto::workers::WorkerList;
use zib_proto::{BlobId, NodeId};
use zib_server::domain::node_client::{NodeCallError, SimTransport};
use zib_util::time::now_ms;

/// One stored blob and when it was last written (simulated time).
#[derive(Clone, Debug)]
pub struct Blob {
    pub bytes: Vec<u8>,
    pub modified_ms: i64,
}

/// A simulated node: its process state and its disk.
#[derive(Debug)]
pub struct SimNode {
    pub id: NodeId,
    pub url: String,
    /// The process runs: it answers calls and heartbeats.
    pub up: bool,
    /// Gone for good (its disk with it).
    pub left: bool,
    /// Answers audit challenges with made-up hashes.
    pub liar: bool,
    /// When the node last heartbeated (what the server judges it online by).
    pub last_heartbeat_ms: i64,
    pub disk: BTreeMap<BlobId, Blob>,
}

impl SimNode {
    pub fn new(n: u32) -> Self {
        // Node ids are ZB- and six of A-Z/2-9: spell the ordinal in that alphabet so
        // runs name (and order) nodes the same way.
        const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
        let mut tail = [b'A'; 6];
        let mut v = n as usize;
        for c in tail.iter_mut().rev() {
            *c = ALPHABET[v % ALPHABET.len()];
            v /= ALPHABET.len();
        }
        let id = format!("ZB-{}", String::from_utf8_lossy(&tail));
        Self {
            id: NodeId::try_from(id).expect("a well-formed simulated node id"),
            url: format!("http://sim-node-{n}.invalid"),
            up: true,
            left: false,
            liar: false,
            last_heartbeat_ms: now_ms(),
            disk: BTreeMap::new(),
        }
    }

    pub fn used_bytes(&self) -> u64 {
        self.disk.values().map(|b| b.bytes.len() as u64).sum()
    }
}

/// Everything the simulated network reaches, and a log of what the server removed.
pub struct World {
    pub nodes: Vec<SimNode>,
    /// Blobs the server deleted on a node (its calls and heartbeat commands), since
    /// the driver last drained it: checked against what metadata still references.
    pub server_deletes: Vec<(NodeId, BlobId)>,
    pub capabilities: CapabilityVerifier,
}

impl World {
    pub fn node(&self, id: &NodeId) -> Option<&SimNode> {
        self.nodes.iter().find(|n| &n.id == id)
    }

    pub fn node_mut(&mut self, id: &NodeId) -> Option<&mut SimNode> {
        self.nodes.iter_mut().find(|n| &n.id == id)
    }
}

/// The transport handed to `NodeClient::simulated`. Every answer depends only on
/// the world's state, never on chance: faults are the driver's, applied between
/// calls, so a seed replays exactly.
#[derive(Clone)]
pub struct Net(pub Arc<Mutex<World>>);

impl Net {
    pub fn world(&self) -> MutexGuard<'_, World> {
        // A panic while holding the lock already failed the run.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs `f` on the running node behind `url`; a stopped, departed or unknown
    /// node does not answer (the caller's timeout passes).
    fn on_node<T>(
        &self,
        url: &str,
        timeout: Duration,
        f: impl FnOnce(
            &mut SimNode,
            &mut Vec<(NodeId, BlobId)>,
            &CapabilityVerifier,
        ) -> Result<T, NodeCallError>,
    ) -> Result<T, NodeCallError> {
        let mut world = self.world();
        let World {
            nodes,
            server_deletes,
            capabilities,
        } = &mut *world;
        match nodes.iter_mut().find(|n| n.url == url) {
            Some(node) if node.up && !node.left => f(node, server_deletes, capabilities),
            _ => Err(NodeCallError::Timeout(timeout)),
        }
    }
}

#[async_trait::async_trait]
impl SimTransport for Net {
    async fn fetch_blob(
        &self,
        node_url: &str,
        blob: BlobId,
        timeout: Duration,
    ) -> Result<Option<Bytes>, NodeCallError> {
        self.on_node(node_url, timeout, |node, _, _| {
            Ok(node.disk.get(&blob).map(|b| Bytes::from(b.bytes.clone())))
        })
    }

    async fn delete_blob(
        &self,
        node_url: &str,
        blob: BlobId,
        timeout: Duration,
    ) -> Result<(), NodeCallError> {
        self.on_node(node_url, timeout, |node, log, _| {
            node.disk.remove(&blob);
            log.push((node.id.clone(), blob));
            Ok(())
        })
    }

    async fn challenge(
        &self,
        node_url: &str,
        blob: BlobId,
        challenge: &ChallengeRequest,
        timeout: Duration,
    ) -> Result<ChallengeResponse, NodeCallError> {
        self.on_node(node_url, timeout, |node, _, _| {
            if node.liar {
                return Ok(ChallengeResponse {
                    blake3: "00".repeat(32),
                });
            }
            let stored = node
                .disk
                .get(&blob)
                .ok_or(NodeCallError::Status(StatusCode::NOT_FOUND))?;
            let nonce: [u8; 32] = hex::decode(&challenge.nonce)
                .ok()
                .and_then(|n| n.try_into().ok())
                .ok_or(NodeCallError::Status(StatusCode::BAD_REQUEST))?;
            let end = challenge.offset.checked_add(challenge.len);
            let range = match end {
                Some(end) if end <= stored.bytes.len() as u64 => {
                    &stored.bytes[challenge.offset as usize..end as usize]
                }
                _ => return Err(NodeCallError::Status(StatusCode::RANGE_NOT_SATISFIABLE)),
            };
            Ok(ChallengeResponse {
                blake3: zib_crypto::challenge::challenge_answer(&nonce, range),
            })
        })
    }

    async fn inventory(
        &self,
        node_url: &str,
        timeout: Duration,
    ) -> Result<BlobInventory, NodeCallError> {
        self.on_node(node_url, timeout, |node, _, _| {
            Ok(BlobInventory {
                blobs: node
                    .disk
                    .iter()
                    .map(|(id, b)| InventoryEntry {
                        blob_id: *id,
                        size: b.bytes.len() as u64,
                        modified_at_ms: b.modified_ms,
                    })
                    .collect(),
            })
        })
    }

    async fn workers(
        &self,
        node_url: &str,
        timeout: Duration,
    ) -> Result<WorkerList, NodeCallError> {
        self.on_node(node_url, timeout, |_, _, _| {
            Ok(WorkerList {
                workers: Vec::new(),
            })
        })
    }

    async fn put_shard(
        &self,
        node_url: &str,
        blob: BlobId,
        capability: &str,
        bytes: Vec<u8>,
        timeout: Duration,
    ) -> Result<(), NodeCallError> {
        self.on_node(node_url, timeout, |node, _, verifier| {
            // The node's own check: a server-signed shard capability naming this
            // node, this blob and exactly this many bytes.
            let now_secs = u64::try_from(now_ms() / 1000).unwrap_or(0);
            let claims = verifier
                .verify(capability, now_secs)
                .map_err(|_| NodeCallError::Status(StatusCode::UNAUTHORIZED))?;
            if claims.op != CapabilityOp::Shard
                || claims.node_id != node.id
                || claims.blob_id != blob
                || claims.size != bytes.len() as u64
            {
                return Err(NodeCallError::Status(StatusCode::FORBIDDEN));
            }
            node.disk.insert(
                blob,
                Blob {
                    bytes,
                    modified_ms: now_ms(),
                },
            );
            Ok(())
        })
    }
}

//! The node directory: every registered node, and the one rule for calling a node
//! online (a heartbeat within `node_offline_after`, not counting time this process
//! itself stood still).

use std::collections::BTreeMap;

use zib_meta::{MetaError, NodeRow};
use zib_proto::NodeId;

use crate::state::{now_ms, Inner};

/// A snapshot of the nodes table, taken once per request or worker tick.
pub struct NodeDirectory {
    /// Ordered, so every listing comes out the same way (replayable simulation).
    nodes: BTreeMap<NodeId, NodeRow>,
    /// The oldest heartbeat that counts a node online (see [`online_since`]).
    online_since: i64,
}

impl NodeDirectory {
    pub async fn load(state: &Inner) -> Result<Self, MetaError> {
        let nodes = state.store.list_nodes().await?;
        Ok(Self {
            nodes: nodes.into_iter().map(|n| (n.node_id.clone(), n)).collect(),
            online_since: online_since(state),
        })
    }

    /// Whether a node's last heartbeat is recent enough to count it online.
    pub fn is_online(&self, node: &NodeRow) -> bool {
        node.last_heartbeat_at >= self.online_since
    }

    /// Every online node, in no particular order.
    pub fn online(&self) -> Vec<NodeRow> {
        self.nodes
            .values()
            .filter(|n| self.is_online(n))
            .cloned()
            .collect()
    }

    /// Online nodes that take new data: every online node but those being drained.
    /// What placement chooses among (originators, shard and segment-copy targets).
    pub fn placeable(&self) -> Vec<NodeRow> {
        self.nodes
            .values()
            .filter(|n| self.is_online(n) && n.draining_since.is_none())
            .cloned()
            .collect()
    }

    /// Nodes being drained: the repairers move what they hold elsewhere.
    pub fn draining(&self) -> impl Iterator<Item = &NodeId> {
        self.nodes
            .values()
            .filter(|n| n.draining_since.is_some())
            .map(|n| &n.node_id)
    }

    /// A registered node, online or not.
    pub fn get(&self, id: &NodeId) -> Option<&NodeRow> {
        self.nodes.get(id)
    }

    /// A node that is registered and online.
    pub fn online_node(&self, id: &NodeId) -> Option<&NodeRow> {
        self.nodes.get(id).filter(|n| self.is_online(n))
    }

    /// Every registered node, online or not.
    pub fn all(&self) -> impl Iterator<Item = &NodeRow> {
        self.nodes.values()
    }
}

/// The oldest heartbeat that still counts a node online now.
pub fn online_since(state: &Inner) -> i64 {
    let now = now_ms();
    let window = state.config.node_offline_after.as_millis() as i64;
    now - window - state.stalls.credit_ms(now, window)
}

//! Where a segment's whole copies go, and the capability that lets a node store one
//! (`CapabilityOp::Segment`): used by the job protocol (the encoding node's pushes)
//! and the segment repairer alike.

use zib_meta::NodeRow;
use zib_proto::node_rpc::CapabilityOp;
use zib_proto::{BlobId, NodeId};

use crate::domain::directory::NodeDirectory;
use crate::domain::placement;
use crate::domain::registration::blob_capability;
use crate::state::Inner;

/// Copies of every segment on nodes other than the encoding node before a job is
/// `safe` (DESIGN.md §5).
pub const SEGMENT_REPLICAS: u32 = 3;

/// A capability for `PUT /v1/shards/{blob_id}` of a whole segment copy on `node`,
/// for exactly `size` bytes.
pub fn segment_capability(
    state: &Inner,
    node: &NodeId,
    blob_id: BlobId,
    size: u64,
    expires_at: u64,
) -> String {
    blob_capability(
        state,
        CapabilityOp::Segment,
        node,
        blob_id,
        size,
        expires_at,
    )
}

/// Up to `n` online nodes with room for `size` bytes that hold none of `taken`
/// (the segment's current holders, origin included), spread over zones.
pub fn replica_targets(
    nodes: &NodeDirectory,
    taken: &[NodeId],
    size: u64,
    n: usize,
) -> Vec<NodeRow> {
    let candidates: Vec<NodeRow> = nodes
        .placeable()
        .into_iter()
        .filter(|c| c.free_bytes >= size && !taken.contains(&c.node_id))
        .collect();
    placement::zone_interleaved(&candidates)
        .into_iter()
        .take(n)
        .collect()
}

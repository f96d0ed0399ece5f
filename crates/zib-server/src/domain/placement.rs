//! Which node takes an upload, and which nodes hold each segment's shards.

use rand::seq::SliceRandom;
use zib_meta::NodeRow;

/// Online nodes with room for `bytes` that advertise every `required` capability.
pub fn eligible_originators<'a>(
    nodes: &'a [NodeRow],
    bytes: u64,
    required: &[String],
) -> Vec<&'a NodeRow> {
    nodes
        .iter()
        .filter(|n| n.free_bytes >= bytes)
        .filter(|n| required.iter().all(|c| n.capabilities.contains(c)))
        .collect()
}

/// Orders candidates so that consecutive picks alternate zones (nodes without a zone
/// count as their own zone each), shuffled within a zone so load spreads.
pub fn zone_interleaved(nodes: &[NodeRow]) -> Vec<NodeRow> {
    // Seedable, so the cluster simulation replays a placement exactly.
    let mut rng = zib_util::rng::rng();
    let mut by_zone: Vec<(Option<String>, Vec<NodeRow>)> = Vec::new();
    for n in nodes {
        match &n.zone {
            Some(z) => match by_zone.iter_mut().find(|(k, _)| k.as_deref() == Some(z)) {
                Some((_, v)) => v.push(n.clone()),
                None => by_zone.push((Some(z.clone()), vec![n.clone()])),
            },
            None => by_zone.push((None, vec![n.clone()])),
        }
    }
    by_zone.shuffle(&mut rng);
    for (_, v) in by_zone.iter_mut() {
        v.shuffle(&mut rng);
    }
    let mut out = Vec::with_capacity(nodes.len());
    let mut round = 0;
    while out.len() < nodes.len() {
        for (_, v) in &by_zone {
            if let Some(n) = v.get(round) {
                out.push(n.clone());
            }
        }
        round += 1;
    }
    out
}

/// Too few distinct nodes to give every shard of a segment its own node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{online} storage nodes online, {width} needed: every shard of a segment goes to its own node"
)]
pub struct TooFewNodes {
    pub online: usize,
    pub width: usize,
}

/// Groups nodes without a zone each as their own zone.
fn zone_key(n: &NodeRow) -> (bool, &str) {
    match &n.zone {
        Some(z) => (true, z.as_str()),
        None => (false, n.node_id.as_str()),
    }
}

/// The first of `candidates` not already `taken`, from the zone `taken` uses least:
/// a new zone while there is one, else spread as evenly as the zones allow.
fn pick<'a>(candidates: &[&'a NodeRow], taken: &[&NodeRow]) -> Option<&'a NodeRow> {
    let used = |n: &NodeRow| taken.iter().filter(|t| zone_key(t) == zone_key(n)).count();
    candidates
        .iter()
        .filter(|c| taken.iter().all(|t| t.node_id != c.node_id))
        .min_by_key(|c| used(c))
        .copied()
}

/// The holders of segment `segment`'s `width` shards: `width` distinct nodes, in
/// as many zones as there are (up to `width`), rotated per segment so every node
/// takes a fair share. Never two shards of a segment on one node: with fewer
/// than `width` candidates, none.
pub fn segment_holders(
    ordered: &[NodeRow],
    segment: u32,
    width: usize,
) -> Result<Vec<&NodeRow>, TooFewNodes> {
    if ordered.len() < width {
        return Err(TooFewNodes {
            online: ordered.len(),
            width,
        });
    }
    let start = (segment as usize * width) % ordered.len().max(1);
    let rotated: Vec<&NodeRow> = (0..ordered.len())
        .map(|i| &ordered[(start + i) % ordered.len()])
        .collect();
    let mut holders: Vec<&NodeRow> = Vec::with_capacity(width);
    while holders.len() < width {
        match pick(&rotated, &holders) {
            Some(n) => holders.push(n),
            None => break,
        }
    }
    Ok(holders)
}

/// Holders for a cluster that has fewer nodes in all than `width`: each node in
/// turn, as evenly as that allows (some take several shards of the segment). Only
/// for clusters that could never do better, such as a one-node `zib dev`.
pub fn crowded_holders(ordered: &[NodeRow], segment: u32, width: usize) -> Vec<&NodeRow> {
    if ordered.is_empty() {
        return Vec::new();
    }
    let start = (segment as usize * width) % ordered.len();
    (0..width)
        .map(|i| &ordered[(start + i) % ordered.len()])
        .collect()
}

/// Where a rebuilt (or moved) shard goes: a candidate that holds nothing of its
/// segment (`holders`: the nodes of the segment's other shards), in the zone they
/// use least. `None` when every candidate already holds a shard of it: the shard
/// waits for a free node rather than doubling up.
pub fn repair_target<'a>(candidates: &'a [NodeRow], holders: &[&NodeRow]) -> Option<&'a NodeRow> {
    let candidates: Vec<&NodeRow> = candidates.iter().collect();
    pick(&candidates, holders)
}

#[cfg(test)]
mod tests {
    use super::*;
    use zib_proto::NodeId;

    fn node(zone: Option<&str>) -> NodeRow {
        NodeRow {
            node_id: NodeId::new_random(),
            public_url: "http://127.0.0.1:1".into(),
            capacity_bytes: 100,
            free_bytes: 100,
            used_bytes: 0,
            zone: zone.map(str::to_owned),
            capabilities: vec![],
            last_heartbeat_at: 0,
            registered_at: 0,
            draining_since: None,
        }
    }

    fn distinct(holders: &[&NodeRow]) -> usize {
        let mut ids: Vec<_> = holders.iter().map(|n| n.node_id.clone()).collect();
        ids.sort();
        ids.dedup();
        ids.len()
    }

    fn zones(holders: &[&NodeRow]) -> usize {
        let mut z: Vec<_> = holders.iter().map(|n| n.zone.clone()).collect();
        z.sort();
        z.dedup();
        z.len()
    }

    #[test]
    fn too_few_nodes_is_refused_not_doubled() {
        let nodes: Vec<_> = (0..5).map(|_| node(None)).collect();
        assert_eq!(
            segment_holders(&nodes, 0, 6).err(),
            Some(TooFewNodes {
                online: 5,
                width: 6
            })
        );
        assert!(segment_holders(&[], 0, 1).is_err());
        let six: Vec<_> = (0..6).map(|_| node(None)).collect();
        for s in 0..10 {
            assert_eq!(distinct(&segment_holders(&six, s, 6).unwrap()), 6);
        }
    }

    #[test]
    fn every_zone_is_used_before_any_is_used_twice() {
        // Unbalanced zones: a plain rotation of the interleaved order would put two
        // shards in zone "a" while "c" has a free node.
        let nodes = vec![
            node(Some("a")),
            node(Some("a")),
            node(Some("a")),
            node(Some("a")),
            node(Some("b")),
            node(Some("b")),
            node(Some("c")),
        ];
        for _ in 0..20 {
            let ordered = zone_interleaved(&nodes);
            for s in 0..20 {
                let h = segment_holders(&ordered, s, 3).unwrap();
                assert_eq!(distinct(&h), 3);
                assert_eq!(zones(&h), 3, "segment {s}: three zones for three shards");
                let h = segment_holders(&ordered, s, 6).unwrap();
                assert_eq!(distinct(&h), 6);
                assert_eq!(zones(&h), 3);
            }
        }
    }

    #[test]
    fn a_repair_goes_to_a_free_node_in_a_new_zone_or_waits() {
        let nodes = vec![
            node(Some("a")),
            node(Some("a")),
            node(Some("b")),
            node(Some("c")),
        ];
        // Holders in a and b: the free node in c is preferred over the free one in a.
        let holders = [&nodes[0], &nodes[2]];
        let t = repair_target(&nodes, &holders).unwrap();
        assert_eq!(t.zone.as_deref(), Some("c"));
        // Every node holds a shard of the segment: nothing, not a double.
        let all: Vec<&NodeRow> = nodes.iter().collect();
        assert!(repair_target(&nodes, &all).is_none());
    }

    #[test]
    fn holders_are_distinct_when_enough_nodes() {
        let nodes: Vec<_> = (0..7).map(|_| node(None)).collect();
        for s in 0..20 {
            let h = segment_holders(&nodes, s, 6).unwrap();
            let mut ids: Vec<_> = h.iter().map(|n| n.node_id.clone()).collect();
            ids.sort();
            ids.dedup();
            assert_eq!(ids.len(), 6);
        }
    }

    #[test]
    fn zones_alternate() {
        let nodes = vec![
            node(Some("a")),
            node(Some("a")),
            node(Some("a")),
            node(Some("b")),
            node(Some("b")),
            node(Some("c")),
        ];
        let ordered = zone_interleaved(&nodes);
        let first3: Vec<_> = ordered[..3].iter().map(|n| n.zone.clone()).collect();
        let mut z = first3.clone();
        z.sort();
        z.dedup();
        assert_eq!(z.len(), 3, "first three picks span three zones: {first3:?}");
    }
}

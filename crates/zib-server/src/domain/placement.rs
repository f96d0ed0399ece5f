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

/// The holders of segment `segment`'s `width` shards: distinct nodes while there are
/// enough, rotated per segment so every node takes a fair share.
pub fn segment_holders(ordered: &[NodeRow], segment: u32, width: usize) -> Vec<&NodeRow> {
    if ordered.is_empty() {
        return Vec::new();
    }
    let start = (segment as usize * width) % ordered.len();
    (0..width)
        .map(|i| &ordered[(start + i) % ordered.len()])
        .collect()
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
        }
    }

    #[test]
    fn holders_are_distinct_when_enough_nodes() {
        let nodes: Vec<_> = (0..7).map(|_| node(None)).collect();
        for s in 0..20 {
            let h = segment_holders(&nodes, s, 6);
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

//! The node directory: every registered node, and the one rule for calling a node
//! online (a heartbeat within `node_offline_after`, not counting time this process
//! itself stood still).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use zib_meta::{MetaError, NodeRow};
use zib_proto::NodeId;

use crate::state::{now_ms, Inner};

/// A snapshot of the nodes table, taken once per request or worker tick.
pub struct NodeDirectory {
    /// Ordered, so every listing comes out the same way (replayable simulation).
    nodes: BTreeMap<NodeId, NodeRow>,
    now_ms: i64,
    offline_after_ms: i64,
}

impl NodeDirectory {
    pub async fn load(state: &Inner) -> Result<Self, MetaError> {
        let nodes = state.store.list_nodes().await?;
        let now = now_ms();
        Ok(Self {
            nodes: nodes.into_iter().map(|n| (n.node_id.clone(), n)).collect(),
            now_ms: now,
            offline_after_ms: now - online_since_at(state, now),
        })
    }

    /// Whether a node's last heartbeat is recent enough to count it online.
    pub fn is_online(&self, node: &NodeRow) -> bool {
        self.now_ms - node.last_heartbeat_at <= self.offline_after_ms
    }

    /// Every online node, in no particular order.
    pub fn online(&self) -> Vec<NodeRow> {
        self.nodes
            .values()
            .filter(|n| self.is_online(n))
            .cloned()
            .collect()
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
    online_since_at(state, now_ms())
}

fn online_since_at(state: &Inner, now: i64) -> i64 {
    let window = state.config.node_offline_after.as_millis() as i64;
    now - window - state.stalls.credit_ms(now, window)
}

/// How often the watch expects to run...
const STALL_TICK: Duration = Duration::from_millis(500);
/// ...and how late it may be before this process counts as having stood still.
const STALL_MIN_MS: i64 = 2_000;

/// Time this process (or its whole machine: a paused VM, a clock stepped forward)
/// stood still. No heartbeat could arrive meanwhile, so without this every node
/// looks offline right after, and uploads are refused until each beats again.
/// The stall is forgiven for one offline window after it ends.
#[derive(Default)]
pub struct StallWatch {
    /// Last tick (unix ms); 0: not watching (the simulation moves its own clock).
    last_tick: AtomicI64,
    stall_end: AtomicI64,
    stall_len: AtomicI64,
}

impl StallWatch {
    /// Watches from now until the returned handle is dropped.
    pub fn start(self: &Arc<Self>) -> tokio_util::task::AbortOnDropHandle<()> {
        self.last_tick.store(now_ms(), Ordering::Relaxed);
        let watch = self.clone();
        tokio_util::task::AbortOnDropHandle::new(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(STALL_TICK);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                watch.tick(now_ms());
            }
        }))
    }

    fn tick(&self, now: i64) {
        let last = self.last_tick.swap(now, Ordering::Relaxed);
        let late = now - last - STALL_TICK.as_millis() as i64;
        if last > 0 && late >= STALL_MIN_MS {
            tracing::warn!(
                stalled_ms = late,
                "this process stood still (a paused machine or a stepped clock): node heartbeats missed meanwhile are forgiven"
            );
            self.stall_len.store(late, Ordering::Relaxed);
            self.stall_end.store(now, Ordering::Relaxed);
        }
    }

    /// Extra offline window, in ms: the last stall if it ended within `window`, or
    /// the one going on now (the watch itself is overdue: the first request after a
    /// resume may come before its tick).
    pub fn credit_ms(&self, now: i64, window: i64) -> i64 {
        let last = self.last_tick.load(Ordering::Relaxed);
        if last == 0 {
            return 0;
        }
        let ongoing = now - last - STALL_TICK.as_millis() as i64;
        let ongoing = if ongoing >= STALL_MIN_MS { ongoing } else { 0 };
        let past = if now - self.stall_end.load(Ordering::Relaxed) <= window {
            self.stall_len.load(Ordering::Relaxed)
        } else {
            0
        };
        ongoing.max(past).max(0)
    }
}

#[cfg(test)]
mod stall_tests {
    use super::*;

    #[test]
    fn a_stall_is_forgiven_for_one_window_after_it_ends() {
        let watch = StallWatch::default();
        watch.last_tick.store(10_000, Ordering::Relaxed);
        watch.tick(10_500);
        assert_eq!(watch.credit_ms(10_600, 6_000), 0, "on time: no credit");
        // Paused for a minute: overdue before the tick runs, recorded once it does.
        assert_eq!(watch.credit_ms(70_500, 6_000), 59_500);
        watch.tick(70_500);
        assert_eq!(watch.credit_ms(71_000, 6_000), 59_500);
        for t in (71_000..=76_500).step_by(500) {
            watch.tick(t);
        }
        assert_eq!(watch.credit_ms(76_400, 6_000), 59_500);
        assert_eq!(watch.credit_ms(76_600, 6_000), 0, "the window has passed");
    }

    #[test]
    fn a_watch_never_started_gives_no_credit() {
        assert_eq!(StallWatch::default().credit_ms(1_000_000, 6_000), 0);
    }
}

//! Noticing that this process stood still: a paused VM, a machine starved for
//! seconds, a wall clock stepped forward. Whatever arrives on a schedule (node
//! heartbeats) looks missed afterwards, though nothing was wrong with its sender.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::time::now_ms;

/// How often the watch expects to run...
const STALL_TICK: Duration = Duration::from_millis(500);
/// ...and how late it may be before this process counts as having stood still.
const STALL_MIN_MS: i64 = 2_000;

/// Time this process (or its whole machine) stood still. The server forgives it in
/// node liveness for one offline window after it ends: no heartbeat could arrive
/// meanwhile, and without it every node looked offline right after a resume, and
/// uploads were refused until each beat again.
#[derive(Default)]
pub struct StallWatch {
    /// Last tick (unix ms); 0: not watching (the simulation moves its own clock).
    last_tick: AtomicI64,
    stall_end: AtomicI64,
    stall_len: AtomicI64,
}

impl StallWatch {
    /// Watches from now on, in a task the caller stops.
    pub fn start(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        self.last_tick.store(now_ms(), Ordering::Relaxed);
        let watch = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(STALL_TICK);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                watch.tick(now_ms());
            }
        })
    }

    fn tick(&self, now: i64) {
        let last = self.last_tick.swap(now, Ordering::Relaxed);
        let late = late_ms(last, now);
        if last > 0 && late > 0 {
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
        let ongoing = late_ms(last, now);
        let past = if now - self.stall_end.load(Ordering::Relaxed) <= window {
            self.stall_len.load(Ordering::Relaxed)
        } else {
            0
        };
        ongoing.max(past).max(0)
    }
}

/// How late a tick due after `last` is at `now`, if late enough to be a stall; else 0.
fn late_ms(last: i64, now: i64) -> i64 {
    let late = now - last - STALL_TICK.as_millis() as i64;
    if late >= STALL_MIN_MS {
        late
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
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

//! One memory budget for every segment buffer the node holds while distributing
//! uploads, whoever asked: without it each concurrent upload brought its own set of
//! buffers, and memory grew with the number of clients. Past the budget a segment
//! waits for another to be pushed, so a client's body is read more slowly (TCP
//! back-pressure) instead of the node running out of memory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The semaphore counts in units of this many bytes (its permits are `u32`-sized).
const UNIT: u64 = 64 * 1024;
/// One client body reading at once per this much budget (48 MiB: 48 bodies)...
const BYTES_PER_BODY: u64 = 1024 * 1024;
/// ...and never fewer than this.
const MIN_BODIES: usize = 4;

pub struct BufferBudget {
    units: Arc<Semaphore>,
    /// Client bodies (uploads and parts) read at once: each brings its connection's
    /// read buffer and a write buffer, so they are counted too.
    bodies: Arc<Semaphore>,
    total_units: u32,
    in_use: AtomicU64,
    high_water: AtomicU64,
}

/// Bytes held against the budget; given back when dropped.
pub struct BufferPermit {
    /// `None` only if the semaphore were closed (it never is): nothing held back.
    _units: Option<OwnedSemaphorePermit>,
    bytes: u64,
    budget: Arc<BufferBudget>,
}

impl BufferBudget {
    /// A budget of `bytes` (at least one unit).
    pub fn new(bytes: u64) -> Arc<Self> {
        let total_units = u32::try_from(bytes.div_ceil(UNIT).max(1)).unwrap_or(u32::MAX >> 3);
        let bodies = (bytes / BYTES_PER_BODY).max(MIN_BODIES as u64) as usize;
        Arc::new(Self {
            units: Arc::new(Semaphore::new(total_units as usize)),
            bodies: Arc::new(Semaphore::new(bodies)),
            total_units,
            in_use: AtomicU64::new(0),
            high_water: AtomicU64::new(0),
        })
    }

    /// Waits until `bytes` fit in the budget. A request larger than the whole budget
    /// waits for all of it, so it still runs, alone.
    pub async fn acquire(self: &Arc<Self>, bytes: u64) -> BufferPermit {
        let wanted = u32::try_from(bytes.div_ceil(UNIT))
            .unwrap_or(u32::MAX)
            .clamp(1, self.total_units);
        let units = self.units.clone().acquire_many_owned(wanted).await.ok();
        let now = self.in_use.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.high_water.fetch_max(now, Ordering::Relaxed);
        BufferPermit {
            _units: units,
            bytes,
            budget: self.clone(),
        }
    }

    /// Waits for a turn to read a client's body. The permit never waits on another
    /// one: segment permits are given back by pushes, which need nothing from here,
    /// so the two pools cannot deadlock.
    pub async fn body(&self) -> Option<OwnedSemaphorePermit> {
        self.bodies.clone().acquire_owned().await.ok()
    }

    /// The budget, in bytes.
    pub fn limit(&self) -> u64 {
        u64::from(self.total_units) * UNIT
    }

    /// Bytes held right now.
    pub fn in_use(&self) -> u64 {
        self.in_use.load(Ordering::Relaxed)
    }

    /// The most bytes ever held at once.
    pub fn high_water(&self) -> u64 {
        self.high_water.load(Ordering::Relaxed)
    }
}

impl Drop for BufferPermit {
    fn drop(&mut self) {
        self.budget.in_use.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn holders_past_the_budget_wait_for_a_release() {
        let budget = BufferBudget::new(4 * UNIT);
        let first = budget.acquire(3 * UNIT).await;
        let second = budget.clone();
        let waiting = tokio::spawn(async move { second.acquire(2 * UNIT).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "5 units granted out of 4");
        assert_eq!(budget.in_use(), 3 * UNIT);
        drop(first);
        let second = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(budget.in_use(), 2 * UNIT);
        assert_eq!(budget.high_water(), 3 * UNIT);
        drop(second);
        assert_eq!(budget.in_use(), 0);
    }

    #[tokio::test]
    async fn a_request_larger_than_the_budget_runs_alone() {
        let budget = BufferBudget::new(2 * UNIT);
        let big = budget.acquire(10 * UNIT).await;
        assert_eq!(budget.in_use(), 10 * UNIT);
        let other = budget.clone();
        let waiting = tokio::spawn(async move { other.acquire(1).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        drop(big);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .unwrap()
            .unwrap();
    }
}

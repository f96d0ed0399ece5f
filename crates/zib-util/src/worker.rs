//! One runner for every background loop of the server and the nodes.
//!
//! A [`Worker`] does one unit of work per [`Worker::tick`] and says whether more is
//! waiting. The [`Runner`] owns everything around it: the wait between ticks,
//! doubling backoff after a failure, a short pause between busy ticks scaled by the
//! worker's pace (so repair-type work never starves foreground requests), wake-ups
//! when work appears, and shutdown. Each worker's state is kept in a shared
//! [`Registry`] that status endpoints read and that code elsewhere uses to wake a
//! worker by name or change its pace.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use zib_proto::workers::{WorkerState, WorkerStatus};

use crate::time::{now_ms, rfc3339};

/// A failing worker retries after this, doubling up to [`MAX_BACKOFF`]: a broken
/// store or network should not be hammered.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Least pause between busy ticks, so a large backlog never starves foreground
/// requests even at pace 0.
pub const BUSY_PAUSE: Duration = Duration::from_millis(20);
/// Paces above this are taken as this: a typo must not park a worker for days.
pub const MAX_PACE: f64 = 100.0;

/// What a tick found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tick {
    /// Did work and more may be waiting: tick again soon (after the pace pause).
    Busy,
    /// Nothing to do: wait for the interval or a wake-up.
    Idle,
}

/// Retry delays after consecutive failures: `first`, doubling up to `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Backoff {
    pub const DEFAULT: Backoff = Backoff {
        first: FIRST_BACKOFF,
        max: MAX_BACKOFF,
    };

    /// The wait after the `failures`-th failure in a row (1-based).
    pub fn delay(&self, failures: u64) -> Duration {
        let doublings = failures.saturating_sub(1).min(32) as u32;
        self.first
            .checked_mul(2u32.saturating_pow(doublings))
            .unwrap_or(self.max)
            .min(self.max)
    }
}

pub trait Worker: Send + 'static {
    /// Unique within a process: the registry and the status endpoints key on it.
    fn name(&self) -> &str;
    /// Wait after an idle tick.
    fn interval(&self) -> Duration;
    /// Asked after each failure, so it may depend on what the worker is doing.
    fn backoff(&self) -> Backoff {
        Backoff::DEFAULT
    }
    /// Whether shutdown may drop a tick half-way (only for ticks whose every step
    /// is safe to cut short); otherwise shutdown waits for the tick to end.
    fn interruptible(&self) -> bool {
        false
    }
    /// A wake-up source of the worker's own, besides [`WorkerHandle::wake`]: an idle
    /// worker ticks as soon as it resolves.
    fn woken(&self) -> impl Future<Output = ()> + Send {
        std::future::pending()
    }
    /// One unit of work. `me` lets the worker set its status line.
    fn tick(&mut self, me: &WorkerHandle) -> impl Future<Output = Result<Tick, String>> + Send;
}

/// Everything the registry knows about one worker.
struct Slot {
    name: String,
    wake: Notify,
    /// `f64` bits.
    pace: AtomicU64,
    record: Mutex<Record>,
}

#[derive(Default)]
struct Record {
    /// Slots are made on first mention (a waker may be handed out before the
    /// worker starts); only started ones are listed.
    started: bool,
    state: Option<WorkerState>,
    status: String,
    runs: u64,
    errors: u64,
    consecutive_errors: u64,
    last_run_ms: Option<i64>,
    last_error: Option<String>,
    last_error_ms: Option<i64>,
}

impl Slot {
    fn new(name: &str) -> Self {
        Slot {
            name: name.to_string(),
            wake: Notify::new(),
            pace: AtomicU64::new(0f64.to_bits()),
            record: Mutex::new(Record::default()),
        }
    }

    fn record(&self) -> MutexGuard<'_, Record> {
        // A panic while holding this lock leaves plain counters: still usable.
        self.record.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_state(&self, state: WorkerState) {
        self.record().state = Some(state);
    }

    fn status(&self) -> WorkerStatus {
        let r = self.record();
        WorkerStatus {
            name: self.name.clone(),
            state: r.state.unwrap_or(WorkerState::Idle),
            status: r.status.clone(),
            runs: r.runs,
            errors: r.errors,
            consecutive_errors: r.consecutive_errors,
            last_run_at: r.last_run_ms.map(rfc3339),
            last_error: r.last_error.clone(),
            last_error_at: r.last_error_ms.map(rfc3339),
            pace: f64::from_bits(self.pace.load(Ordering::Relaxed)),
        }
    }
}

/// A cheap, cloneable reference to one worker's slot: wake it, pace it, set or
/// read its status.
#[derive(Clone)]
pub struct WorkerHandle(Arc<Slot>);

impl Default for WorkerHandle {
    /// Attached to no registry: waking it does nothing anyone sees (for tests and
    /// code paths that run without workers).
    fn default() -> Self {
        WorkerHandle(Arc::new(Slot::new("detached")))
    }
}

impl WorkerHandle {
    pub fn name(&self) -> &str {
        &self.0.name
    }

    /// An idle worker ticks now instead of at the end of its interval; a busy or
    /// backing-off one ticks as soon as it would next have gone idle.
    pub fn wake(&self) {
        self.0.wake.notify_one();
    }

    /// The free-text status line shown by the status endpoints.
    pub fn set_status(&self, status: impl Into<String>) {
        self.0.record().status = status.into();
    }

    pub fn pace(&self) -> f64 {
        f64::from_bits(self.0.pace.load(Ordering::Relaxed))
    }

    /// After a busy tick that took T, rest T × `pace` (at least [`BUSY_PAUSE`]).
    /// Negative or non-finite values mean 0; values above [`MAX_PACE`] are capped.
    pub fn set_pace(&self, pace: f64) {
        let pace = if pace.is_finite() {
            pace.clamp(0.0, MAX_PACE)
        } else {
            0.0
        };
        self.0.pace.store(pace.to_bits(), Ordering::Relaxed);
    }

    pub fn status(&self) -> WorkerStatus {
        self.0.status()
    }
}

/// Every worker of a process by name. Cloning shares it.
#[derive(Clone, Default)]
pub struct Registry {
    slots: Arc<Mutex<BTreeMap<String, Arc<Slot>>>>,
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    fn slots(&self) -> MutexGuard<'_, BTreeMap<String, Arc<Slot>>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The handle of the worker called `name`, whether or not it has started yet:
    /// a wake-up sent before it starts makes its first idle wait end at once.
    pub fn handle(&self, name: &str) -> WorkerHandle {
        let slot = self
            .slots()
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(Slot::new(name)))
            .clone();
        WorkerHandle(slot)
    }

    /// Wakes a started worker; `false` when none has that name.
    pub fn wake(&self, name: &str) -> bool {
        match self.started(name) {
            Some(h) => {
                h.wake();
                true
            }
            None => false,
        }
    }

    /// Sets a started worker's pace; `false` when none has that name.
    pub fn set_pace(&self, name: &str, pace: f64) -> bool {
        match self.started(name) {
            Some(h) => {
                h.set_pace(pace);
                true
            }
            None => false,
        }
    }

    fn started(&self, name: &str) -> Option<WorkerHandle> {
        let slot = self.slots().get(name).cloned()?;
        let started = slot.record().started;
        started.then_some(WorkerHandle(slot))
    }

    /// Every started worker's status, in name order.
    pub fn statuses(&self) -> Vec<WorkerStatus> {
        let slots: Vec<Arc<Slot>> = self.slots().values().cloned().collect();
        slots
            .iter()
            .filter(|s| s.record().started)
            .map(|s| s.status())
            .collect()
    }
}

/// Runs workers on their own tasks until [`Runner::stop`].
pub struct Runner {
    registry: Registry,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Runner {
    pub fn new(registry: Registry) -> Self {
        Runner {
            registry,
            stop: watch::channel(false).0,
            tasks: Vec::new(),
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Starts `worker` at `pace` and returns its handle. Its first tick is now.
    pub fn spawn<W: Worker>(&mut self, worker: W, pace: f64) -> WorkerHandle {
        let handle = self.registry.handle(worker.name());
        handle.set_pace(pace);
        {
            let mut r = handle.0.record();
            r.started = true;
            r.state = Some(WorkerState::Idle);
        }
        let stop = self.stop.subscribe();
        self.tasks
            .push(tokio::spawn(run(worker, handle.clone(), stop)));
        handle
    }

    /// Asks every worker to stop without waiting (see [`Runner::stop`]).
    pub fn signal_stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Signals every worker and waits for each to end (a tick in progress
    /// finishes first unless its worker is interruptible).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }

    /// Ends every worker at once, like a crash.
    pub fn abort(self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Resolves once the runner asks to stop (or is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn run<W: Worker>(mut worker: W, me: WorkerHandle, mut stop: watch::Receiver<bool>) {
    let slot = me.0.clone();
    let interruptible = worker.interruptible();
    while !*stop.borrow() {
        slot.set_state(WorkerState::Busy);
        let started = Instant::now();
        let result = if interruptible {
            tokio::select! {
                r = worker.tick(&me) => r,
                _ = stopped(&mut stop) => break,
            }
        } else {
            worker.tick(&me).await
        };
        let took = started.elapsed();
        let (pause, state) = {
            let mut r = slot.record();
            r.runs += 1;
            r.last_run_ms = Some(now_ms());
            match result {
                Ok(tick) => {
                    r.consecutive_errors = 0;
                    match tick {
                        Tick::Busy => {
                            let rest = Duration::try_from_secs_f64(took.as_secs_f64() * me.pace())
                                .unwrap_or(Duration::MAX);
                            (rest.max(BUSY_PAUSE), WorkerState::Busy)
                        }
                        Tick::Idle => (worker.interval(), WorkerState::Idle),
                    }
                }
                Err(e) => {
                    r.errors += 1;
                    r.consecutive_errors += 1;
                    r.last_error_ms = r.last_run_ms;
                    let retry_in = worker.backoff().delay(r.consecutive_errors);
                    tracing::warn!(worker = %slot.name, error = %e, ?retry_in, "worker tick failed");
                    r.last_error = Some(e);
                    (retry_in, WorkerState::Backoff)
                }
            }
        };
        slot.set_state(state);
        if state == WorkerState::Idle {
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = slot.wake.notified() => {}
                _ = worker.woken() => {}
                _ = stopped(&mut stop) => break,
            }
        } else {
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stopped(&mut stop) => break,
            }
        }
    }
    slot.set_state(WorkerState::Stopped);
}

#[cfg(test)]
mod tests;

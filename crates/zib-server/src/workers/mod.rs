//! Background workers: each does one unit of work per tick and says whether more is
//! waiting. One runner owns pacing, error backoff and shutdown for all of them.

mod auditor;
mod collector;
mod job_reaper;
mod repairer;
mod verifier;
mod webhook_dispatcher;

use std::time::Duration;

use zib_util::worker::{Runner, WorkerHandle};

use crate::state::AppState;

pub use auditor::Auditor;
pub use collector::Collector;
pub use job_reaper::JobReaper;
pub use repairer::Repairer;
pub use verifier::Verifier;
pub use webhook_dispatcher::Dispatcher;
/// What a tick found (the shared runner's).
pub use zib_util::worker::Tick;

/// A server worker: the shared runner's [`zib_util::worker::Worker`] with the
/// state every tick needs handed in. Pacing, backoff (1 s doubling to 60 s), wake-ups
/// and shutdown are the runner's.
pub trait Worker: Send + 'static {
    fn name(&self) -> &'static str;
    fn interval(&self, state: &AppState) -> Duration;
    /// One unit of work; `me` sets the status line `/v1/admin/workers` shows.
    fn tick(
        &mut self,
        state: &AppState,
        me: &WorkerHandle,
    ) -> impl std::future::Future<Output = Result<Tick, String>> + Send;
}

/// A server worker bound to the state it runs against.
struct Bound<W> {
    worker: W,
    state: AppState,
}

impl<W: Worker> zib_util::worker::Worker for Bound<W> {
    fn name(&self) -> &str {
        self.worker.name()
    }

    fn interval(&self) -> Duration {
        self.worker.interval(&self.state)
    }

    fn tick(
        &mut self,
        me: &WorkerHandle,
    ) -> impl std::future::Future<Output = Result<Tick, String>> + Send {
        self.worker.tick(&self.state, me)
    }
}

/// Starts `worker` on `runner` at `pace` (0 for all but repair-type work).
pub fn spawn<W: Worker>(
    runner: &mut Runner,
    worker: W,
    state: &AppState,
    pace: f64,
) -> WorkerHandle {
    let state = state.clone();
    runner.spawn(Bound { worker, state }, pace)
}

/// Starts every background worker: durability, then webhook delivery.
pub fn spawn_all(state: &AppState, runner: &mut Runner) {
    spawn(runner, Verifier, state, 0.0);
    spawn(runner, Auditor, state, 0.0);
    spawn(runner, Repairer::default(), state, state.config.repair_pace);
    spawn(runner, Collector::default(), state, 0.0);
    spawn(runner, JobReaper, state, 0.0);
    match Dispatcher::new(state) {
        Ok(d) => {
            spawn(runner, d, state, 0.0);
        }
        Err(e) => tracing::error!(error = %e, "webhook dispatcher not started"),
    }
}

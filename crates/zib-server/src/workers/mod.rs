//! Background workers: each does one unit of work per tick and says whether more is
//! waiting. One runner owns pacing, error backoff and shutdown for all of them.

mod auditor;
mod collector;
mod repairer;
mod verifier;

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::state::AppState;

pub use auditor::Auditor;
pub use collector::Collector;
pub use repairer::Repairer;
pub use verifier::Verifier;

/// What a tick found.
pub enum Tick {
    /// Did work and more may be waiting: tick again soon.
    Busy,
    /// Nothing to do: wait for the interval.
    Idle,
}

pub trait Worker: Send + 'static {
    fn name(&self) -> &'static str;
    fn interval(&self, state: &AppState) -> Duration;
    fn tick(
        &mut self,
        state: &AppState,
    ) -> impl std::future::Future<Output = Result<Tick, String>> + Send;
}

/// A failing worker retries after this, doubling up to [`MAX_BACKOFF`]: a broken
/// store or network should not be hammered.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Pause between busy ticks, so a large backlog never starves foreground requests.
const BUSY_PAUSE: Duration = Duration::from_millis(20);

pub fn spawn<W: Worker>(
    mut worker: W,
    state: AppState,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let pause = match worker.tick(&state).await {
                Ok(Tick::Busy) => {
                    backoff = FIRST_BACKOFF;
                    BUSY_PAUSE
                }
                Ok(Tick::Idle) => {
                    backoff = FIRST_BACKOFF;
                    worker.interval(&state)
                }
                Err(e) => {
                    tracing::warn!(worker = worker.name(), error = %e, retry_in = ?backoff, "worker tick failed");
                    let b = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    b
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(pause) => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
        }
    })
}

/// Starts every background worker: durability, then webhook delivery.
pub fn spawn_all(state: &AppState, stop: &watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    let mut handles = vec![
        spawn(Verifier, state.clone(), stop.clone()),
        spawn(Auditor, state.clone(), stop.clone()),
        spawn(Repairer, state.clone(), stop.clone()),
        spawn(Collector::default(), state.clone(), stop.clone()),
    ];
    match crate::webhooks::Dispatcher::new(state) {
        Ok(d) => handles.push(spawn(d, state.clone(), stop.clone())),
        Err(e) => tracing::error!(error = %e, "webhook dispatcher not started"),
    }
    handles
}

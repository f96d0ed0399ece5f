//! The runner on tokio's paused clock: waits are measured in virtual time, so
//! these run instantly and exactly.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use super::*;

/// Reports each tick's start and answers from a script (the last answer repeats).
struct Scripted {
    name: &'static str,
    interval: Duration,
    /// How long each tick takes.
    work: Duration,
    answers: Vec<Result<Tick, String>>,
    ticks: mpsc::UnboundedSender<Instant>,
}

impl Worker for Scripted {
    fn name(&self) -> &str {
        self.name
    }
    fn interval(&self) -> Duration {
        self.interval
    }
    async fn tick(&mut self, me: &WorkerHandle) -> Result<Tick, String> {
        let _ = self.ticks.send(Instant::now());
        tokio::time::sleep(self.work).await;
        me.set_status("ticked");
        if self.answers.len() > 1 {
            self.answers.remove(0)
        } else {
            self.answers[0].clone()
        }
    }
}

fn scripted(
    answers: Vec<Result<Tick, String>>,
    work: Duration,
) -> (Scripted, mpsc::UnboundedReceiver<Instant>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let worker = Scripted {
        name: "test",
        interval: Duration::from_secs(3600),
        work,
        answers,
        ticks: tx,
    };
    (worker, rx)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Instant>) -> Instant {
    rx.recv().await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn an_idle_worker_waits_its_interval_unless_woken() {
    let (worker, mut ticks) = scripted(vec![Ok(Tick::Idle)], Duration::ZERO);
    let mut runner = Runner::new(Registry::new());
    runner.spawn(worker, 0.0);
    let first = next(&mut ticks).await;
    let second = next(&mut ticks).await;
    assert_eq!(second - first, Duration::from_secs(3600));

    assert!(runner.registry().wake("test"));
    let third = next(&mut ticks).await;
    assert!(third - second < Duration::from_millis(1), "woken at once");
    assert!(!runner.registry().wake("nobody"));

    let status = &runner.registry().statuses()[0];
    assert_eq!(status.name, "test");
    assert_eq!(status.status, "ticked");
    assert!(status.runs >= 2, "{status:?}");
    assert_eq!(status.errors, 0);
    assert!(status.last_run_at.is_some());
    runner.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_wake_sent_before_the_start_is_kept() {
    let registry = Registry::new();
    registry.handle("test").wake();
    assert!(registry.statuses().is_empty(), "not started: not listed");
    let (worker, mut ticks) = scripted(vec![Ok(Tick::Idle)], Duration::ZERO);
    let mut runner = Runner::new(registry);
    runner.spawn(worker, 0.0);
    let first = next(&mut ticks).await;
    let second = next(&mut ticks).await;
    assert!(second - first < Duration::from_millis(1));
    runner.stop().await;
}

#[tokio::test(start_paused = true)]
async fn failures_are_counted_and_back_off_doubling_then_reset() {
    let answers = vec![
        Err("disk on fire".to_string()),
        Err("disk on fire".to_string()),
        Err("disk still on fire".to_string()),
        Ok(Tick::Busy),
        Err("again".to_string()),
        Ok(Tick::Idle),
    ];
    let (worker, mut ticks) = scripted(answers, Duration::ZERO);
    let mut runner = Runner::new(Registry::new());
    let handle = runner.spawn(worker, 0.0);
    let mut at = vec![];
    for _ in 0..6 {
        at.push(next(&mut ticks).await);
    }
    let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(
        gaps,
        vec![
            Duration::from_secs(1),
            Duration::from_secs(2),
            Duration::from_secs(4),
            BUSY_PAUSE,
            // The success in between reset the backoff.
            Duration::from_secs(1),
        ]
    );
    // Let the sixth tick's outcome be recorded.
    tokio::time::sleep(Duration::from_millis(1)).await;
    let status = handle.status();
    assert_eq!(status.errors, 4);
    assert_eq!(status.consecutive_errors, 0);
    assert_eq!(status.last_error.as_deref(), Some("again"));
    assert!(status.last_error_at.is_some());
    assert_eq!(status.state, WorkerState::Idle);
    runner.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_backing_off_worker_shows_it() {
    let (worker, mut ticks) = scripted(vec![Err("down".into())], Duration::ZERO);
    let mut runner = Runner::new(Registry::new());
    let handle = runner.spawn(worker, 0.0);
    next(&mut ticks).await;
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert_eq!(handle.status().state, WorkerState::Backoff);
    runner.stop().await;
    assert_eq!(handle.status().state, WorkerState::Stopped);
}

#[tokio::test(start_paused = true)]
async fn pace_rests_a_multiple_of_the_busy_tick_and_can_change_at_run_time() {
    let work = Duration::from_millis(100);
    let (worker, mut ticks) = scripted(vec![Ok(Tick::Busy)], work);
    let mut runner = Runner::new(Registry::new());
    runner.spawn(worker, 2.0);
    let a = next(&mut ticks).await;
    let b = next(&mut ticks).await;
    assert_eq!(b - a, work + work * 2);

    assert!(runner.registry().set_pace("test", 0.0));
    // The pace is read as each busy tick ends, so the tick under way already rests
    // at the new one.
    let c = next(&mut ticks).await;
    assert_eq!(c - b, work + BUSY_PAUSE);
    assert_eq!(runner.registry().statuses()[0].pace, 0.0);
    runner.stop().await;
}

#[tokio::test(start_paused = true)]
async fn stop_ends_an_idle_worker_at_once() {
    let (worker, mut ticks) = scripted(vec![Ok(Tick::Idle)], Duration::ZERO);
    let mut runner = Runner::new(Registry::new());
    let handle = runner.spawn(worker, 0.0);
    next(&mut ticks).await;
    let before = Instant::now();
    runner.stop().await;
    assert!(before.elapsed() < Duration::from_millis(1));
    assert_eq!(handle.status().state, WorkerState::Stopped);
}

/// Its tick never ends on its own.
struct Stuck {
    interruptible: bool,
}

impl Worker for Stuck {
    fn name(&self) -> &str {
        "stuck"
    }
    fn interval(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn interruptible(&self) -> bool {
        self.interruptible
    }
    async fn tick(&mut self, _: &WorkerHandle) -> Result<Tick, String> {
        tokio::time::sleep(Duration::from_secs(86_400)).await;
        Ok(Tick::Idle)
    }
}

#[tokio::test(start_paused = true)]
async fn stop_cuts_an_interruptible_tick_short_and_waits_for_others() {
    let mut runner = Runner::new(Registry::new());
    runner.spawn(
        Stuck {
            interruptible: true,
        },
        0.0,
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    let before = Instant::now();
    runner.stop().await;
    assert!(before.elapsed() < Duration::from_millis(1));

    let mut runner = Runner::new(Registry::new());
    runner.spawn(
        Stuck {
            interruptible: false,
        },
        0.0,
    );
    tokio::time::sleep(Duration::from_millis(5)).await;
    let before = Instant::now();
    runner.stop().await;
    assert!(before.elapsed() >= Duration::from_secs(86_000));
}

#[test]
fn pace_is_sanitised_and_backoff_caps() {
    let h = WorkerHandle::default();
    h.set_pace(f64::NAN);
    assert_eq!(h.pace(), 0.0);
    h.set_pace(-3.0);
    assert_eq!(h.pace(), 0.0);
    h.set_pace(1e9);
    assert_eq!(h.pace(), MAX_PACE);
    let b = Backoff::DEFAULT;
    assert_eq!(b.delay(1), FIRST_BACKOFF);
    assert_eq!(b.delay(3), Duration::from_secs(4));
    assert_eq!(b.delay(1000), MAX_BACKOFF);
}

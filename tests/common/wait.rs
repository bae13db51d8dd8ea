//! The one way a test waits for something it cannot be told about: poll a condition until it holds
//! or a deadline passes. Every wait has a deadline; the pause between two looks starts short and
//! grows, so a quick condition is seen at once and a slow one does not load a shared machine.
//!
//! `wait_for`/`wait_for_async` return the last observation on timeout (for the failure message);
//! `wait_until`/`wait_until_async` are their yes/no forms. Use the async forms inside async tests:
//! the sync ones block the runtime's thread.

use std::future::Future;
use std::process::{Child, ExitStatus, Output};
use std::time::{Duration, Instant};

/// The first pause between two looks, and the longest.
const FIRST_PAUSE: Duration = Duration::from_millis(5);
const MAX_PAUSE: Duration = Duration::from_millis(50);

/// The schedule of one wait: when to look next, and when to stop.
struct Schedule {
    deadline: Instant,
    pause: Duration,
}

impl Schedule {
    fn new(timeout: Duration) -> Self {
        Schedule {
            deadline: Instant::now() + timeout,
            pause: FIRST_PAUSE,
        }
    }

    /// How long to pause before the next look; `None` once the deadline has passed (the look just
    /// made was the last one).
    fn next_pause(&mut self) -> Option<Duration> {
        let left = self.deadline.checked_duration_since(Instant::now())?;
        if left.is_zero() {
            return None;
        }
        let pause = self.pause.min(left);
        self.pause = (self.pause * 2).min(MAX_PAUSE);
        Some(pause)
    }
}

/// Calls `f` until it returns `Ok` (returned) or `timeout` passes (its last `Err` is returned).
pub fn wait_for<T, E>(timeout: Duration, mut f: impl FnMut() -> Result<T, E>) -> Result<T, E> {
    let mut schedule = Schedule::new(timeout);
    loop {
        let seen = f();
        if seen.is_ok() {
            return seen;
        }
        match schedule.next_pause() {
            Some(pause) => std::thread::sleep(pause),
            None => return seen,
        }
    }
}

/// [`wait_for`] for an async `f`, pausing without blocking the runtime.
pub async fn wait_for_async<T, E, F, Fut>(timeout: Duration, mut f: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut schedule = Schedule::new(timeout);
    loop {
        let seen = f().await;
        if seen.is_ok() {
            return seen;
        }
        match schedule.next_pause() {
            Some(pause) => tokio::time::sleep(pause).await,
            None => return seen,
        }
    }
}

/// Whether `f` returned true before `timeout` passed.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    wait_for(timeout, || if f() { Ok(()) } else { Err(()) }).is_ok()
}

/// Whether the async `f` returned true before `timeout` passed.
pub async fn wait_until_async<F, Fut>(timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for_async(timeout, || {
        let fut = f();
        async move { if fut.await { Ok(()) } else { Err(()) } }
    })
    .await
    .is_ok()
}

/// The child's exit status once it has exited, or `None` after `timeout`.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    wait_for(timeout, || match child.try_wait() {
        Ok(Some(status)) => Ok(status),
        _ => Err(()),
    })
    .ok()
}

/// The child's output once it exits; killed (and the test failed with its stderr) after `limit`.
pub fn output_within(mut child: Child, limit: Duration) -> Output {
    if wait_child(&mut child, limit).is_none() {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!(
            "did not finish within {limit:?}; stderr:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    child.wait_with_output().unwrap()
}

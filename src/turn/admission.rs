//! Admission control: the in-flight guard in front of the Lingma pool.
//!
//! At most `max_in_flight` chats run at once. A request beyond that waits, in FIFO order (tokio's
//! semaphore is fair), for at most `queue_timeout`, then gets 429 with a `Retry-After` estimated
//! from recent turn durations. A queue timeout of zero rejects at once when full; so does a full
//! queue (`max_queue` waiters).
//!
//! Waiting requests also hold their bodies, so their number alone does not bound memory: every
//! request body that has not been admitted yet (still being read, or parsed and waiting) holds a
//! [`BodyReservation`] against one byte budget, and a body that does not fit is refused with 429
//! before it is read.
//!
//! Slots are RAII: dropping an [`AdmissionPermit`] frees its slot immediately, and dropping a
//! request's future while it waits (client disconnected) leaves neither a slot nor a waiter count
//! behind. The state is a few atomics and the semaphore: no lock on the request path.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use crate::error::GatewayError;

/// Weight of the newest turn in the moving average of turn durations.
const EWMA_ALPHA: f64 = 0.2;
/// Assumed turn duration before any turn was recorded.
const DEFAULT_TURN_SECS: f64 = 2.0;
/// Bounds of the `Retry-After` estimate.
pub const MIN_RETRY_AFTER_SECS: u64 = 1;
pub const MAX_RETRY_AFTER_SECS: u64 = 60;

#[derive(Debug)]
pub struct Admission {
    semaphore: Arc<Semaphore>,
    capacity: usize,
    queue_timeout: Duration,
    max_queue: usize,
    bodies: Arc<BodyBudget>,
    waiting: AtomicUsize,
    rejected: AtomicU64,
    /// EWMA of turn durations in seconds, as `f64` bits; `u64::MAX` (a NaN) while unset.
    turn_ewma_bits: AtomicU64,
}

/// One admitted chat. Dropping it frees the slot.
#[derive(Debug)]
pub struct AdmissionPermit {
    _permit: OwnedSemaphorePermit,
    admitted_at: Instant,
    waited: Duration,
}

impl AdmissionPermit {
    /// Time spent queued before admission.
    pub fn waited(&self) -> Duration {
        self.waited
    }

    /// Time since admission (pass it to [`Admission::record_turn`] when the turn ends).
    pub fn elapsed(&self) -> Duration {
        self.admitted_at.elapsed()
    }
}

/// Counts a waiter for as long as it lives, so cancellation cannot leak the count.
struct WaitingGuard<'a>(&'a AtomicUsize);

impl<'a> WaitingGuard<'a> {
    /// Joins the queue unless it already holds `max` waiters.
    fn join(counter: &'a AtomicUsize, max: usize) -> Option<Self> {
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| {
                (w < max).then_some(w + 1)
            })
            .ok()
            .map(|_| Self(counter))
    }
}

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The bytes of request bodies not admitted yet, against one budget.
#[derive(Debug)]
struct BodyBudget {
    limit: u64,
    used: AtomicU64,
}

impl BodyBudget {
    fn take(&self, bytes: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|&n| n <= self.limit)
            })
            .is_ok()
    }
}

/// Bytes of one request body counted against the queue's memory budget, until dropped (when the
/// request is admitted, or fails).
#[derive(Debug)]
pub struct BodyReservation {
    budget: Arc<BodyBudget>,
    bytes: u64,
}

impl BodyReservation {
    /// Counts `more` bytes; false (and nothing counted) when they do not fit.
    pub fn grow(&mut self, more: u64) -> bool {
        let ok = self.budget.take(more);
        if ok {
            self.bytes += more;
        }
        ok
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

impl Drop for BodyReservation {
    fn drop(&mut self) {
        self.budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

impl Admission {
    /// `max_in_flight` is clamped to at least 1 (0 would reject everything) and to tokio's
    /// semaphore maximum. The queue and the body budget are unbounded; see [`Admission::bounded`].
    pub fn new(max_in_flight: usize, queue_timeout: Duration) -> Self {
        Self::bounded(max_in_flight, queue_timeout, usize::MAX, u64::MAX)
    }

    /// At most `max_queue` waiters, and `body_budget` bytes of bodies not admitted yet.
    pub fn bounded(
        max_in_flight: usize,
        queue_timeout: Duration,
        max_queue: usize,
        body_budget: u64,
    ) -> Self {
        let capacity = max_in_flight.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            semaphore: Arc::new(Semaphore::new(capacity)),
            capacity,
            queue_timeout,
            max_queue,
            bodies: Arc::new(BodyBudget {
                limit: body_budget,
                used: AtomicU64::new(0),
            }),
            waiting: AtomicUsize::new(0),
            rejected: AtomicU64::new(0),
            turn_ewma_bits: AtomicU64::new(u64::MAX),
        }
    }

    /// Waits for a slot for at most the queue timeout. Errors: [`GatewayError::RateLimited`] when
    /// the wait times out (or the queue timeout is zero and no slot is free),
    /// [`GatewayError::ShuttingDown`] after [`Admission::close`].
    pub async fn acquire(&self) -> Result<AdmissionPermit, GatewayError> {
        let start = Instant::now();
        match self.semaphore.clone().try_acquire_owned() {
            Ok(permit) => return Ok(self.permit(permit, start)),
            Err(TryAcquireError::Closed) => return Err(GatewayError::ShuttingDown),
            Err(TryAcquireError::NoPermits) => {}
        }
        if self.queue_timeout.is_zero() {
            return Err(self.reject());
        }
        let Some(_waiting) = WaitingGuard::join(&self.waiting, self.max_queue) else {
            return Err(self.reject());
        };
        match tokio::time::timeout(self.queue_timeout, self.semaphore.clone().acquire_owned()).await
        {
            Ok(Ok(permit)) => Ok(self.permit(permit, start)),
            Ok(Err(_closed)) => Err(GatewayError::ShuttingDown),
            Err(_elapsed) => Err(self.reject()),
        }
    }

    fn permit(&self, permit: OwnedSemaphorePermit, start: Instant) -> AdmissionPermit {
        let admitted_at = Instant::now();
        AdmissionPermit {
            _permit: permit,
            admitted_at,
            waited: admitted_at.saturating_duration_since(start),
        }
    }

    fn reject(&self) -> GatewayError {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        GatewayError::RateLimited {
            retry_after_secs: self.retry_after_secs(),
        }
    }

    /// Counts `bytes` of a request body against the budget; 429 when they do not fit.
    pub fn reserve_body(&self, bytes: u64) -> Result<BodyReservation, GatewayError> {
        let mut r = BodyReservation {
            budget: self.bodies.clone(),
            bytes: 0,
        };
        if r.grow(bytes) {
            Ok(r)
        } else {
            Err(self.reject())
        }
    }

    /// A rejection as [`Admission::acquire`] gives it (429 with `Retry-After`), for callers that
    /// run out of body budget midway.
    pub fn rejection(&self) -> GatewayError {
        self.reject()
    }

    /// Bytes of request bodies read or waiting, not yet admitted.
    pub fn queued_body_bytes(&self) -> u64 {
        self.bodies.used.load(Ordering::Acquire)
    }

    pub fn max_queue(&self) -> usize {
        self.max_queue
    }

    /// Feeds the moving average of turn durations used for `Retry-After`.
    pub fn record_turn(&self, duration: Duration) {
        let sample = duration.as_secs_f64();
        if !sample.is_finite() {
            return;
        }
        // fetch_update only fails when the closure returns None, which it never does.
        let _ = self
            .turn_ewma_bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                let old = f64::from_bits(bits);
                let new = if old.is_nan() {
                    sample
                } else {
                    old + EWMA_ALPHA * (sample - old)
                };
                Some(new.to_bits())
            });
    }

    /// Average turn duration observed so far, if any turn was recorded.
    pub fn average_turn(&self) -> Option<Duration> {
        let v = f64::from_bits(self.turn_ewma_bits.load(Ordering::Relaxed));
        (!v.is_nan()).then(|| Duration::from_secs_f64(v.max(0.0)))
    }

    /// Estimated wait before a slot frees for a new request: the average turn duration times the
    /// number of turns queued ahead (waiters + this one) over the capacity, clamped to
    /// [`MIN_RETRY_AFTER_SECS`, `MAX_RETRY_AFTER_SECS`].
    pub fn retry_after_secs(&self) -> u64 {
        let turn = self
            .average_turn()
            .map_or(DEFAULT_TURN_SECS, |d| d.as_secs_f64());
        let depth = self.waiting() as f64 + 1.0;
        let secs = (turn * depth / self.capacity as f64).ceil();
        // A float-to-int `as` saturates (NaN becomes 0), so this cannot overflow.
        (secs as u64).clamp(MIN_RETRY_AFTER_SECS, MAX_RETRY_AFTER_SECS)
    }

    /// Stops admitting: every waiting and later `acquire` fails with `ShuttingDown`. Admitted
    /// chats keep their slots until they finish.
    pub fn close(&self) {
        self.semaphore.close();
    }

    pub fn in_flight(&self) -> usize {
        self.capacity
            .saturating_sub(self.semaphore.available_permits())
    }

    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn queue_timeout(&self) -> Duration {
        self.queue_timeout
    }

    /// Requests rejected with 429 since start.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(30);

    /// Polls until `cond` holds (tasks run on other threads), failing after a few seconds.
    async fn eventually(mut cond: impl FnMut() -> bool) {
        for _ in 0..500 {
            if cond() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("condition not reached");
    }

    #[tokio::test]
    async fn admits_up_to_capacity_then_rejects_at_once_with_zero_timeout() {
        let a = Admission::new(2, Duration::ZERO);
        assert_eq!(a.capacity(), 2);
        let p1 = a.acquire().await.unwrap();
        let p2 = a.acquire().await.unwrap();
        assert_eq!(a.in_flight(), 2);
        let started = Instant::now();
        let err = a.acquire().await.unwrap_err();
        assert!(started.elapsed() < Duration::from_millis(100));
        assert!(matches!(err, GatewayError::RateLimited { .. }), "{err:?}");
        assert_eq!(err.status_code(), 429);
        assert_eq!(a.rejected_total(), 1);
        drop(p1);
        assert_eq!(a.in_flight(), 1);
        let _p3 = a.acquire().await.unwrap();
        drop(p2);
        assert_eq!(a.in_flight(), 1);
    }

    #[tokio::test]
    async fn waits_then_times_out_with_retry_after() {
        let a = Admission::new(1, Duration::from_millis(50));
        let _held = a.acquire().await.unwrap();
        let started = Instant::now();
        let err = a.acquire().await.unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(50));
        let GatewayError::RateLimited { retry_after_secs } = err else {
            panic!("{err:?}")
        };
        assert!((MIN_RETRY_AFTER_SECS..=MAX_RETRY_AFTER_SECS).contains(&retry_after_secs));
        assert_eq!(a.waiting(), 0, "the timed-out waiter is no longer counted");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn waiter_is_admitted_when_a_slot_frees() {
        let a = Arc::new(Admission::new(1, LONG));
        let held = a.acquire().await.unwrap();
        let a2 = a.clone();
        let waiter = tokio::spawn(async move { a2.acquire().await.map(|p| p.waited()) });
        eventually(|| a.waiting() == 1).await;
        tokio::time::sleep(Duration::from_millis(30)).await;
        drop(held);
        let waited = waiter.await.unwrap().unwrap();
        assert!(waited >= Duration::from_millis(30), "{waited:?}");
        assert_eq!(a.waiting(), 0);
        assert_eq!(
            a.in_flight(),
            0,
            "the waiter's permit was dropped with its task"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cancelled_waiter_leaks_nothing() {
        let a = Arc::new(Admission::new(1, LONG));
        let held = a.acquire().await.unwrap();
        let a2 = a.clone();
        let waiter = tokio::spawn(async move {
            let _p = a2.acquire().await;
            std::future::pending::<()>().await;
        });
        eventually(|| a.waiting() == 1).await;
        waiter.abort();
        assert!(waiter.await.unwrap_err().is_cancelled());
        assert_eq!(a.waiting(), 0);
        drop(held);
        assert_eq!(a.in_flight(), 0);
        // The slot is really free: an immediate acquire succeeds even with a zero-wait admission.
        let p = tokio::time::timeout(Duration::from_millis(100), a.acquire())
            .await
            .expect("slot was leaked")
            .unwrap();
        assert_eq!(a.in_flight(), 1);
        drop(p);
    }

    #[tokio::test]
    async fn dropping_the_future_mid_wait_releases_the_waiter() {
        let a = Admission::new(1, LONG);
        let held = a.acquire().await.unwrap();
        {
            let fut = a.acquire();
            let r = tokio::time::timeout(Duration::from_millis(20), fut).await;
            assert!(r.is_err(), "still waiting");
        }
        assert_eq!(a.waiting(), 0);
        drop(held);
        assert_eq!(a.in_flight(), 0);
        assert!(a.acquire().await.is_ok());
    }

    #[tokio::test]
    async fn dropping_an_admitted_permit_mid_turn_frees_the_slot() {
        let a = Admission::new(1, Duration::ZERO);
        let turn = async {
            let _p = a.acquire().await.unwrap();
            std::future::pending::<()>().await;
        };
        let r = tokio::time::timeout(Duration::from_millis(20), turn).await;
        assert!(r.is_err());
        assert_eq!(a.in_flight(), 0);
        assert!(a.acquire().await.is_ok());
    }

    #[test]
    fn retry_after_follows_turn_durations_and_depth() {
        let a = Admission::new(2, Duration::ZERO);
        assert_eq!(a.average_turn(), None);
        // Default 2 s turn, 1 turn ahead, capacity 2 -> 1 s.
        assert_eq!(a.retry_after_secs(), 1);
        a.record_turn(Duration::from_secs(10));
        assert_eq!(a.average_turn(), Some(Duration::from_secs(10)));
        assert_eq!(a.retry_after_secs(), 5);
        a.record_turn(Duration::from_secs(20));
        // 10 + 0.2 * (20 - 10) = 12
        let avg = a.average_turn().unwrap().as_secs_f64();
        assert!((avg - 12.0).abs() < 1e-9, "{avg}");
        assert_eq!(a.retry_after_secs(), 6);
        // Depth: simulate 3 waiters.
        a.waiting.store(3, Ordering::Relaxed);
        assert_eq!(a.retry_after_secs(), 24);
        a.record_turn(Duration::from_secs(1000));
        assert_eq!(a.retry_after_secs(), MAX_RETRY_AFTER_SECS);
        let fast = Admission::new(100, Duration::ZERO);
        fast.record_turn(Duration::from_millis(1));
        assert_eq!(fast.retry_after_secs(), MIN_RETRY_AFTER_SECS);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_rejects_at_once() {
        let a = Arc::new(Admission::bounded(1, LONG, 2, u64::MAX));
        let held = a.acquire().await.unwrap();
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let a = a.clone();
                tokio::spawn(async move { a.acquire().await.map(|_| ()) })
            })
            .collect();
        eventually(|| a.waiting() == 2).await;
        let started = Instant::now();
        let err = a.acquire().await.unwrap_err();
        assert!(matches!(err, GatewayError::RateLimited { .. }), "{err:?}");
        assert!(
            started.elapsed() < LONG / 2,
            "rejected at once, not after the queue timeout"
        );
        assert_eq!(a.waiting(), 2, "the refused request never joined the queue");
        drop(held);
        for w in waiters {
            assert!(w.await.unwrap().is_ok());
        }
    }

    #[test]
    fn body_reservations_share_one_budget_and_give_it_back() {
        let a = Admission::bounded(1, LONG, 10, 100);
        let mut r1 = a.reserve_body(60).unwrap();
        assert_eq!(a.queued_body_bytes(), 60);
        assert!(matches!(
            a.reserve_body(41),
            Err(GatewayError::RateLimited { .. })
        ));
        let r2 = a.reserve_body(40).unwrap();
        assert!(!r1.grow(1), "the budget is full");
        assert_eq!(r1.bytes(), 60);
        drop(r2);
        assert!(r1.grow(40));
        assert_eq!(a.queued_body_bytes(), 100);
        drop(r1);
        assert_eq!(a.queued_body_bytes(), 0);
        assert!(a.reserve_body(100).is_ok());
    }

    #[tokio::test]
    async fn zero_capacity_is_clamped_to_one() {
        let a = Admission::new(0, Duration::ZERO);
        assert_eq!(a.capacity(), 1);
        assert!(a.acquire().await.is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn close_fails_waiters_and_new_requests() {
        let a = Arc::new(Admission::new(1, LONG));
        let held = a.acquire().await.unwrap();
        let a2 = a.clone();
        let waiter = tokio::spawn(async move { a2.acquire().await.map(|_| ()) });
        eventually(|| a.waiting() == 1).await;
        a.close();
        assert_eq!(waiter.await.unwrap(), Err(GatewayError::ShuttingDown));
        assert_eq!(a.acquire().await.unwrap_err(), GatewayError::ShuttingDown);
        assert_eq!(a.in_flight(), 1, "admitted chats keep running");
        drop(held);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn never_more_than_capacity_in_flight() {
        let a = Arc::new(Admission::new(3, LONG));
        let peak = Arc::new(AtomicUsize::new(0));
        let current = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (a, peak, current) = (a.clone(), peak.clone(), current.clone());
            tasks.push(tokio::spawn(async move {
                let p = a.acquire().await.unwrap();
                let now = current.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
                current.fetch_sub(1, Ordering::SeqCst);
                a.record_turn(p.elapsed());
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert!(peak.load(Ordering::SeqCst) <= 3);
        assert_eq!(a.in_flight(), 0);
        assert_eq!(a.waiting(), 0);
        assert!(a.average_turn().is_some());
    }
}

//! Admission control: token-bucket rate limits (429) and bounded in-flight budgets (503), both answered at
//! once, before the body is read. Nothing here queues: a request either gets a permit now or an answer now.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A token bucket: `rate` tokens per second, holding at most `burst`.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: f64) -> Self {
        TokenBucket { rate, burst, state: Mutex::new((burst, Instant::now())) }
    }

    /// Takes one token, or says how long until one is available.
    pub fn try_take(&self) -> Result<(), Duration> {
        self.try_take_at(Instant::now())
    }

    fn try_take_at(&self, now: Instant) -> Result<(), Duration> {
        let Ok(mut state) = self.state.lock() else { return Ok(()) };
        let (tokens, last) = *state;
        let refilled = (tokens + now.saturating_duration_since(last).as_secs_f64() * self.rate).min(self.burst);
        if refilled >= 1.0 {
            *state = (refilled - 1.0, now);
            Ok(())
        } else {
            *state = (refilled, now);
            Err(Duration::from_secs_f64((1.0 - refilled) / self.rate))
        }
    }
}

/// A bound on concurrent requests.
#[derive(Debug, Clone)]
pub struct Budget(Arc<Semaphore>);

impl Budget {
    /// Up to `n` at once.
    pub fn new(n: usize) -> Self {
        Budget(Arc::new(Semaphore::new(n)))
    }

    /// A permit now, or `None` when the budget is spent.
    pub fn try_acquire(&self) -> Option<OwnedSemaphorePermit> {
        self.0.clone().try_acquire_owned().ok()
    }

    /// A permit, waiting for one to be free (used for connections, where waiting is what the listen
    /// backlog does anyway).
    pub async fn acquire(&self) -> OwnedSemaphorePermit {
        match self.0.clone().acquire_owned().await {
            Ok(p) => p,
            // The semaphore is never closed.
            Err(_) => std::future::pending().await,
        }
    }

    /// Permits in use.
    pub fn in_use(&self, capacity: usize) -> usize {
        capacity.saturating_sub(self.0.available_permits())
    }
}

/// `Retry-After` in whole seconds, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0 || wait.is_zero())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let b = TokenBucket::new(10.0, 3.0);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(b.try_take_at(t0).is_ok());
        }
        let wait = b.try_take_at(t0).unwrap_err();
        assert!(wait <= Duration::from_millis(100) && wait > Duration::ZERO, "{wait:?}");
        assert!(b.try_take_at(t0 + Duration::from_millis(100)).is_ok(), "one token per 100 ms");
        assert!(b.try_take_at(t0 + Duration::from_millis(110)).is_err());
        // Refill never exceeds the burst.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(b.try_take_at(later).is_ok());
        }
        assert!(b.try_take_at(later).is_err());
    }

    #[test]
    fn budgets_refuse_beyond_their_size_and_free_on_drop() {
        let budget = Budget::new(2);
        let a = budget.try_acquire().unwrap();
        let _b = budget.try_acquire().unwrap();
        assert!(budget.try_acquire().is_none());
        assert_eq!(budget.in_use(2), 2);
        drop(a);
        assert!(budget.try_acquire().is_some());
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}

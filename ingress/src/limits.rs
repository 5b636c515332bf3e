//! Admission control: token-bucket rate limits (429), bounded budgets for requests receiving their bodies
//! (overall and per client address) and for requests being stored (503), all answered at once. Nothing
//! here queues: a request either gets a permit now or an answer now.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A token bucket: `rate` tokens per second, holding at most `burst`.
///
/// Written here rather than taken from `governor`: these few lines give a fractional rate (`0.5` a second),
/// the exact wait for `Retry-After`, and tests at chosen instants, which governor's GCRA offers only through
/// its own clock types.
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

    /// Whether no permit is left now (a look, nothing taken).
    pub fn is_spent(&self) -> bool {
        self.0.available_permits() == 0
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
}

/// A bound on concurrent requests per client address: one client cannot hold more than `max` at once.
#[derive(Debug)]
pub struct PerClient {
    max: usize,
    held: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl PerClient {
    /// Up to `max` at once per address.
    pub fn new(max: usize) -> Self {
        PerClient { max, held: Arc::new(Mutex::new(HashMap::new())) }
    }

    /// A permit for `client` now, or `None` when it holds `max` already. An IPv6 client counts by its /64, the
    /// block one host usually has to itself; an IPv4 client seen on a dual-stack socket (`::ffff:a.b.c.d`) by
    /// its IPv4 address.
    pub fn try_acquire(&self, client: IpAddr) -> Option<ClientPermit> {
        let client = match client {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
            },
            v4 => v4,
        };
        let mut held = self.held.lock().ok()?;
        let n = held.entry(client).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(ClientPermit { client, held: self.held.clone() })
    }

    #[cfg(test)]
    fn clients(&self) -> usize {
        self.held.lock().map(|h| h.len()).unwrap_or_default()
    }
}

/// One of a client's [`PerClient`] places, given back when dropped (an address holding none is forgotten).
#[derive(Debug)]
pub struct ClientPermit {
    client: IpAddr,
    held: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for ClientPermit {
    fn drop(&mut self) {
        if let Ok(mut held) = self.held.lock() {
            if let Some(n) = held.get_mut(&self.client) {
                *n -= 1;
                if *n == 0 {
                    held.remove(&self.client);
                }
            }
        }
    }
}

/// An adaptive bound on requests waiting for Kafka: it shrinks when acknowledgements get slower than a
/// target and grows back while they are fast, so under overload the excess is answered 503 at once instead
/// of queueing until every answer is late (additive increase, multiplicative decrease, every 100 ms).
#[derive(Debug)]
pub struct AdaptiveLimit {
    min: usize,
    max: usize,
    target: Duration,
    limit: AtomicUsize,
    in_flight: Arc<AtomicUsize>,
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    samples: u32,
    slow: u32,
    saturated: bool,
}

/// A request counted against an [`AdaptiveLimit`] until dropped.
#[derive(Debug)]
pub struct LimitPermit(Arc<AtomicUsize>);

impl Drop for LimitPermit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl AdaptiveLimit {
    /// A limit between `min` and `max`, starting at `max`, aiming at acknowledgements within `target`.
    pub fn new(min: usize, max: usize, target: Duration) -> Self {
        AdaptiveLimit {
            min: min.max(1),
            max: max.max(1),
            target,
            limit: AtomicUsize::new(max.max(1)),
            in_flight: Arc::new(AtomicUsize::new(0)),
            window: Mutex::new(Window { started: Instant::now(), samples: 0, slow: 0, saturated: false }),
        }
    }

    /// Whether a permit could be had now (a look, nothing taken; a full limit counts as reached, as in
    /// [`AdaptiveLimit::try_acquire`]).
    pub fn has_room(&self) -> bool {
        let room = self.in_flight.load(Ordering::Acquire) < self.limit.load(Ordering::Acquire);
        if !room {
            if let Ok(mut w) = self.window.lock() {
                w.saturated = true;
            }
        }
        room
    }

    /// A permit now, or `None` when the current limit is reached.
    pub fn try_acquire(&self) -> Option<LimitPermit> {
        let limit = self.limit.load(Ordering::Acquire);
        let mut current = self.in_flight.load(Ordering::Acquire);
        loop {
            if current >= limit {
                if let Ok(mut w) = self.window.lock() {
                    w.saturated = true;
                }
                return None;
            }
            match self.in_flight.compare_exchange_weak(current, current + 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Some(LimitPermit(self.in_flight.clone())),
                Err(now) => current = now,
            }
        }
    }

    /// Records one acknowledgement's latency (or a failure, as `None`: counted as slow).
    pub fn record(&self, latency: Option<Duration>) {
        self.record_at(latency, Instant::now());
    }

    fn record_at(&self, latency: Option<Duration>, now: Instant) {
        let Ok(mut w) = self.window.lock() else { return };
        w.samples += 1;
        if latency.is_none_or(|l| l > self.target) {
            w.slow += 1;
        }
        if now.saturating_duration_since(w.started) < Duration::from_millis(100) {
            return;
        }
        let limit = self.limit.load(Ordering::Acquire);
        let next = if w.slow * 10 > w.samples {
            // More than a tenth of the window was slow: back off.
            (limit * 4 / 5).max(self.min)
        } else if w.saturated {
            // Fast and requests were turned away: grow.
            (limit + (limit / 20).max(1)).min(self.max)
        } else {
            limit
        };
        self.limit.store(next, Ordering::Release);
        *w = Window { started: now, samples: 0, slow: 0, saturated: false };
    }

    /// The current limit.
    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Acquire)
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
    fn a_client_holds_at_most_its_share_and_gives_it_back() {
        let per = PerClient::new(2);
        let (a, b): (IpAddr, IpAddr) = ("203.0.113.1".parse().unwrap(), "198.51.100.7".parse().unwrap());
        let first = per.try_acquire(a).unwrap();
        let second = per.try_acquire(a).unwrap();
        assert!(per.try_acquire(a).is_none(), "a third at once is refused");
        assert!(per.try_acquire(b).is_some(), "another client is not affected");
        drop(first);
        let third = per.try_acquire(a).unwrap();
        drop((second, third));
        assert_eq!(per.clients(), 0, "an address holding nothing is forgotten");
        let (one, other): (IpAddr, IpAddr) = ("2001:db8::1".parse().unwrap(), "2001:db8::ffff:2".parse().unwrap());
        let _held = (per.try_acquire(one).unwrap(), per.try_acquire(other).unwrap());
        assert!(per.try_acquire("2001:db8::3".parse().unwrap()).is_none(), "one /64 is one client");
        assert!(per.try_acquire("2001:db8:0:1::1".parse().unwrap()).is_some(), "another /64 is another");
        let mapped: Vec<ClientPermit> = ["::ffff:203.0.113.7", "::ffff:203.0.113.7"]
            .iter()
            .map(|a| per.try_acquire(a.parse().unwrap()).unwrap())
            .collect();
        assert!(per.try_acquire("203.0.113.7".parse().unwrap()).is_none(), "a mapped IPv4 client is that client");
        assert!(per.try_acquire("::ffff:198.51.100.1".parse().unwrap()).is_some(), "not every IPv4 client at once");
        drop(mapped);
    }

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
        drop(a);
        assert!(budget.try_acquire().is_some());
    }

    #[test]
    fn the_adaptive_limit_backs_off_when_slow_and_grows_back_when_fast() {
        let l = AdaptiveLimit::new(4, 100, Duration::from_millis(100));
        let t0 = Instant::now();
        let mut now = t0;
        let mut step = |l: &AdaptiveLimit, latency_ms: u64| {
            now += Duration::from_millis(101);
            l.record_at(Some(Duration::from_millis(latency_ms)), now);
        };
        assert_eq!(l.limit(), 100);
        step(&l, 500);
        assert_eq!(l.limit(), 80, "slow acks shrink the limit by a fifth");
        for _ in 0..30 {
            step(&l, 500);
        }
        assert_eq!(l.limit(), 4, "never below the minimum");
        step(&l, 10);
        assert_eq!(l.limit(), 4, "fast but not saturated: unchanged");
        let permits: Vec<_> = (0..4).map(|_| l.try_acquire().unwrap()).collect();
        assert!(l.try_acquire().is_none(), "the limit holds");
        step(&l, 10);
        assert_eq!(l.limit(), 5, "fast and saturated: grows");
        drop(permits);
        assert!(l.try_acquire().is_some());
        for _ in 0..200 {
            assert!(l.try_acquire().is_some() || l.limit() == 100);
            l.window.lock().unwrap().saturated = true;
            step(&l, 10);
        }
        assert_eq!(l.limit(), 100, "never above the maximum");
        l.record_at(None, now + Duration::from_millis(500));
        assert_eq!(l.limit(), 80, "failures count as slow");
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}

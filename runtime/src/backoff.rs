//! Retrying with exponential backoff, for every loop in hookline that waits for something to come back (the
//! cluster, a topic, the disk): each wait doubles up to a maximum, and is jittered so that many processes
//! retrying after the same outage do not arrive together.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// The waits between attempts: `first`, doubling up to `max`, each ±25%.
#[derive(Debug, Clone)]
pub struct Backoff {
    delay: Duration,
    max: Duration,
}

impl Backoff {
    /// Waits starting at `first` and doubling up to `max`.
    pub fn new(first: Duration, max: Duration) -> Backoff {
        Backoff { delay: first.min(max), max }
    }

    /// The wait before the next attempt.
    pub fn next_wait(&mut self) -> Duration {
        let wait = jittered(self.delay);
        self.delay = (self.delay * 2).min(self.max);
        wait
    }
}

/// `base` ± 25%.
fn jittered(base: Duration) -> Duration {
    base.mul_f64(0.75 + fastrand::f64() * 0.5)
}

/// Sleeps for `wait` unless `stop` is cancelled first; whether it slept the whole time.
pub async fn sleep(wait: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        () = tokio::time::sleep(wait) => true,
        () = stop.cancelled() => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_maximum_within_a_quarter_either_way() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        for expected in [100, 200, 350, 350] {
            let wait = b.next_wait().as_secs_f64() * 1000.0;
            let expected = f64::from(expected);
            assert!(wait >= expected * 0.75 && wait <= expected * 1.25, "{wait} ms, expected about {expected}");
        }
    }

    #[tokio::test]
    async fn a_cancelled_stop_ends_the_sleep_at_once() {
        let stop = CancellationToken::new();
        stop.cancel();
        assert!(!sleep(Duration::from_secs(60), &stop).await);
        assert!(sleep(Duration::from_millis(1), &CancellationToken::new()).await);
    }
}

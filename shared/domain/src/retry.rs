//! Bounded waiting on a remote API: throttling, "request in progress" and transient server
//! errors are retried with jittered exponential backoff until a deadline, then surfaced as typed errors.

use std::time::{Duration, Instant};

/// Jittered exponential backoff up to a deadline: how adapters wait out throttling.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// The first wait.
    pub first: Duration,
    /// The longest single wait.
    pub max: Duration,
    /// Total time allowed for one operation including its retries.
    pub deadline: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            first: Duration::from_millis(200),
            max: Duration::from_secs(5),
            deadline: Duration::from_secs(60),
        }
    }
}

/// Iterator over sleep durations ("full jitter": uniform in [0, cap]) until the deadline.
pub struct Attempts {
    policy: Backoff,
    started: Instant,
    attempt: u32,
}

impl Backoff {
    /// The attempts of one operation, starting now.
    pub fn start(self) -> Attempts {
        Attempts {
            policy: self,
            started: Instant::now(),
            attempt: 0,
        }
    }
}

impl Attempts {
    /// The pause before the next try, or `None` once the deadline would be passed.
    pub fn next_pause(&mut self) -> Option<Duration> {
        self.attempt += 1;
        let exp = self
            .policy
            .first
            .saturating_mul(1u32 << self.attempt.min(16));
        let cap = exp.min(self.policy.max);
        let pause = cap
            .mul_f64(rand::random::<f64>())
            .max(Duration::from_millis(10));
        (self.started.elapsed() + pause <= self.policy.deadline).then_some(pause)
    }

    /// How many attempts were made.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// How long since the first.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_are_bounded_and_stop_at_the_deadline() {
        let policy = Backoff {
            first: Duration::from_millis(10),
            max: Duration::from_millis(40),
            deadline: Duration::from_millis(0),
        };
        let mut a = policy.start();
        assert_eq!(a.next_pause(), None, "a zero deadline allows no retry");
        let policy = Backoff {
            deadline: Duration::from_secs(3600),
            ..policy
        };
        let mut a = policy.start();
        for _ in 0..50 {
            let p = a.next_pause().unwrap();
            assert!(
                p <= Duration::from_millis(40) && p >= Duration::from_millis(10),
                "{p:?}"
            );
        }
    }
}

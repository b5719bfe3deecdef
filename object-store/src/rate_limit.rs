//! Keeps background work (auditor reads, replicator pushes) at or below a
//! configured bytes per second, so that it never starves client traffic.
//!
//! The limiter only computes how long to wait; the caller sleeps (a thread
//! in the auditor, a task in the replicator).

use std::time::{Duration, Instant};

/// Average-rate limiter over the lifetime of one pass: after `n` bytes in
/// total, at least `n / rate` seconds must have passed since it started.
#[derive(Debug)]
pub struct RateLimiter {
    bytes_per_sec: u64,
    started: Instant,
    consumed: u64,
}

impl RateLimiter {
    /// `bytes_per_sec` 0 means unlimited.
    pub fn new(bytes_per_sec: u64) -> RateLimiter {
        RateLimiter {
            bytes_per_sec,
            started: Instant::now(),
            consumed: 0,
        }
    }

    /// Records `bytes` done; returns how long to pause before going on.
    pub fn consume(&mut self, bytes: u64) -> Duration {
        self.consumed += bytes;
        wait_needed(self.bytes_per_sec, self.consumed, self.started.elapsed())
    }
}

/// The pure rule: the pause that brings `consumed` bytes over `elapsed`
/// down to `bytes_per_sec` (0: unlimited).
pub fn wait_needed(bytes_per_sec: u64, consumed: u64, elapsed: Duration) -> Duration {
    if bytes_per_sec == 0 {
        return Duration::ZERO;
    }
    let due = Duration::from_secs_f64(consumed as f64 / bytes_per_sec as f64);
    due.saturating_sub(elapsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_never_waits() {
        assert_eq!(wait_needed(0, u64::MAX, Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn waits_until_the_average_rate_is_met() {
        // 10 MB at 5 MB/s takes 2 s; 0.5 s have passed.
        assert_eq!(
            wait_needed(5_000_000, 10_000_000, Duration::from_millis(500)),
            Duration::from_millis(1500)
        );
        // Already slower than the limit: no pause.
        assert_eq!(
            wait_needed(5_000_000, 10_000_000, Duration::from_secs(3)),
            Duration::ZERO
        );
    }

    #[test]
    fn a_limiter_accumulates_what_it_is_given() {
        let mut l = RateLimiter::new(1_000_000);
        let first = l.consume(500_000);
        assert!(first > Duration::from_millis(400) && first <= Duration::from_millis(500));
        let second = l.consume(500_000);
        assert!(second > Duration::from_millis(900) && second <= Duration::from_secs(1));
    }
}

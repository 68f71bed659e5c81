//! One peer's inbound budget: bytes and envelopes per second, enforced by backpressure.
//!
//! The handler reads a frame, charges it here, and reads the next one only once the budget is
//! back in credit: a peer over its budget is read more slowly (its bytes wait in the
//! transport, whose flow control then stops the sender); nothing is buffered for it. A burst
//! of one full frame is always allowed, so an honest peer's catch-up frame never waits.

use std::time::{Duration, Instant};

/// A token bucket that may go into debt by one charge.
#[derive(Debug, Clone)]
struct TokenBucket {
    per_sec: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(per_sec: usize, burst: usize, now: Instant) -> Self {
        let burst = burst.max(per_sec) as f64;
        TokenBucket {
            per_sec: per_sec.max(1) as f64,
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.burst);
        self.last = now;
    }

    fn charge(&mut self, amount: usize, now: Instant) {
        self.refill(now);
        self.tokens -= amount as f64;
    }

    /// How long until the bucket is out of debt.
    fn wait(&mut self, now: Instant) -> Option<Duration> {
        self.refill(now);
        (self.tokens < 0.0).then(|| Duration::from_secs_f64(-self.tokens / self.per_sec))
    }
}

/// Bytes and envelopes per second read from one peer.
#[derive(Debug, Clone)]
pub(crate) struct InboundBudget {
    bytes: TokenBucket,
    messages: TokenBucket,
}

impl InboundBudget {
    /// A budget of `bytes_per_sec` and `messages_per_sec`, with bursts of one full frame
    /// (`max_frame_size` bytes, `max_messages` envelopes).
    pub(crate) fn new(
        (bytes_per_sec, messages_per_sec): (usize, usize),
        (max_frame_size, max_messages): (usize, usize),
        now: Instant,
    ) -> Self {
        InboundBudget {
            bytes: TokenBucket::new(bytes_per_sec, max_frame_size, now),
            messages: TokenBucket::new(messages_per_sec, max_messages, now),
        }
    }

    /// Charges one frame read.
    pub(crate) fn charge(&mut self, bytes: usize, messages: usize, now: Instant) {
        self.bytes.charge(bytes, now);
        self.messages.charge(messages, now);
    }

    /// How long to wait before reading the next frame, if at all.
    pub(crate) fn wait(&mut self, now: Instant) -> Option<Duration> {
        match (self.bytes.wait(now), self.messages.wait(now)) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_over_budget_waits_in_proportion_to_its_debt() {
        let t0 = Instant::now();
        let mut budget = InboundBudget::new((1000, 10), (1000, 10), t0);
        budget.charge(1000, 1, t0);
        assert_eq!(budget.wait(t0), None, "a full burst is free");
        budget.charge(500, 1, t0);
        let wait = budget.wait(t0).unwrap();
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6, "{wait:?}");
        assert_eq!(budget.wait(t0 + Duration::from_millis(500)), None);
        // Envelopes have their own budget.
        let mut budget = InboundBudget::new((1_000_000, 10), (1000, 10), t0);
        budget.charge(100, 30, t0);
        let wait = budget.wait(t0).unwrap();
        assert!((wait.as_secs_f64() - 2.0).abs() < 1e-6, "{wait:?}");
    }
}

//! The one retry policy: capped exponential backoff with "full jitter" (AWS's recommendation:
//! a wait drawn uniformly from zero to the capped exponential, so that many clients throttled
//! together do not retry together). The store's batch calls, the queue's and the bus's partial
//! failures and the senders' in-place store retries all wait through it; what they retry is
//! theirs to say (a [`RetryPolicy::run`] predicate, or the entries a batch call left undone).

use std::future::Future;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Calls in all, the first included.
    pub max_attempts: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// DynamoDB batch calls' unprocessed items: up to 10 calls, waits up to 2 s.
    pub const STORE_BATCH: RetryPolicy = RetryPolicy {
        max_attempts: 10,
        base_delay: Duration::from_millis(25),
        max_delay: Duration::from_secs(2),
    };
    /// SQS SendMessageBatch entries that failed: up to 8 calls, waits up to 3.2 s.
    pub const QUEUE: RetryPolicy = RetryPolicy {
        max_attempts: 8,
        base_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(3200),
    };
    /// EventBridge PutEvents entries that failed: up to 5 calls, waits up to 1.6 s.
    pub const BUS: RetryPolicy = RetryPolicy {
        max_attempts: 5,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(1600),
    };
    /// A sender's store calls within one job: 5 calls, waits up to 200 ms, 400 ms, 800 ms, 1 s.
    pub const SENDER_STORE: RetryPolicy = RetryPolicy {
        max_attempts: 5,
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(1),
    };

    /// The wait before retry number `attempt` (1 for the first retry): uniform in
    /// `[0, min(max_delay, base_delay · 2^attempt)]`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self.base_delay.saturating_mul(1u32 << attempt.min(16));
        exp.min(self.max_delay).mul_f64(rand::random::<f64>())
    }

    /// Sleeps before retry number `attempt`.
    pub async fn wait(&self, attempt: u32) {
        tokio::time::sleep(self.delay(attempt)).await;
    }

    /// Runs `call` until it succeeds, fails with an error `retryable` refuses, or has been made
    /// `max_attempts` times; the last error is returned.
    pub async fn run<T, E, F, Fut>(&self, retryable: impl Fn(&E) -> bool, mut call: F) -> Result<T, E>
    where
        E: std::fmt::Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let mut attempt = 1;
        loop {
            match call().await {
                Ok(value) => return Ok(value),
                Err(e) if attempt < self.max_attempts && retryable(&e) => {
                    tracing::debug!(error = %e, attempt, "call failed; retrying");
                    self.wait(attempt).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    const FAST: RetryPolicy = RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(2),
    };

    #[test]
    fn delays_are_jittered_below_the_capped_exponential() {
        for attempt in 0..40 {
            let cap = Duration::from_millis(100 << attempt.min(4)).min(Duration::from_millis(1600));
            assert!(RetryPolicy::BUS.delay(attempt) <= cap, "{attempt}");
        }
        let draws: std::collections::HashSet<_> = (0..20).map(|_| RetryPolicy::BUS.delay(3)).collect();
        assert!(draws.len() > 1, "full jitter draws differ");
    }

    /// How many calls `FAST.run` makes of a call failing `failures` times with `error`, and its result.
    async fn calls(failures: u32, error: &str, retryable: fn(&String) -> bool) -> (Result<u32, String>, u32) {
        let made = AtomicU32::new(0);
        let result = FAST
            .run(retryable, || async {
                match made.fetch_add(1, Ordering::Relaxed) {
                    n if n < failures => Err(error.to_owned()),
                    n => Ok(n),
                }
            })
            .await;
        (result, made.load(Ordering::Relaxed))
    }

    #[tokio::test]
    async fn retries_what_the_predicate_allows_up_to_the_budget() {
        assert_eq!(calls(9, "throttled", |_| true).await, (Err("throttled".into()), 4));
        assert_eq!(calls(9, "bad request", |e| e != "bad request").await, (Err("bad request".into()), 1));
        assert_eq!(calls(1, "throttled", |_| true).await, (Ok(1), 2));
    }
}

//! The one retry policy: capped exponential backoff with "full jitter" (AWS's recommendation:
//! a wait drawn uniformly from zero to the capped exponential, so that many clients throttled
//! together do not retry together). The store's batch calls, the queue's and the bus's partial
//! failures and the senders' in-place store retries all wait through it; what they retry is
//! theirs to say (a [`RetryPolicy::run`] predicate, or the entries a batch call left undone).
//!
//! The senders' recipients that failed transiently wait through it too, but across SQS
//! messages rather than in place ([`RetryPolicy::SEND`], [`RetryPolicy::redelivery_delay`]):
//! there a wait must never be short, so it is drawn from the upper half of the step ("equal
//! jitter") and is never shorter than the provider's `Retry-After`.

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

    /// A sender's recipients that failed transiently (429, 5xx, timeouts), each retry a delayed
    /// SQS message: 10 attempts in all, waits of 1.5–3 s, 3–6 s, 6–12 s … doubling up to
    /// 900 s (SQS's longest `DelaySeconds`), so the last attempt comes 13 to 26 minutes after
    /// the first (the contract: at least 5 attempts over at least 10 minutes).
    pub const SEND: RetryPolicy = RetryPolicy {
        max_attempts: 10,
        base_delay: Duration::from_millis(1500),
        max_delay: Duration::from_secs(900),
    };

    /// The wait before retry number `attempt` (1 for the first retry): uniform in
    /// `[0, min(max_delay, base_delay · 2^attempt)]`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let exp = self.base_delay.saturating_mul(1u32 << attempt.min(16));
        exp.min(self.max_delay).mul_f64(rand::random::<f64>())
    }

    /// The wait before retry number `attempt` (1 for the first) of what failed in another
    /// process's hands (a delayed SQS message): in the upper half of the step
    /// `min(max_delay, base_delay · 2^attempt)`, where `jitter` (uniform in 0..1, drawn once for
    /// all that wait together) places it; and never shorter than the provider's `retry_after`,
    /// itself capped at `max_delay` (a longer wait is one more attempt, which may be given a
    /// new `Retry-After`).
    pub fn redelivery_delay(&self, attempt: u32, jitter: f64, retry_after: Option<Duration>) -> Duration {
        let step = self.base_delay.saturating_mul(1u32 << attempt.min(16)).min(self.max_delay);
        let backoff = step.mul_f64(0.5 + jitter.clamp(0.0, 1.0) / 2.0);
        backoff.max(retry_after.unwrap_or_default().min(self.max_delay))
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

    #[test]
    fn the_send_budget_is_at_least_five_attempts_over_ten_minutes_capped_at_sqs_longest_delay() {
        let send = RetryPolicy::SEND;
        assert!(send.max_attempts >= 5);
        assert_eq!(send.max_delay, Duration::from_secs(900), "SQS's longest DelaySeconds");
        // The waits between the attempts, all at their shortest and all at their longest.
        let waits = |jitter| {
            (1..send.max_attempts).map(|a| send.redelivery_delay(a, jitter, None)).collect::<Vec<_>>()
        };
        let (shortest, longest) = (waits(0.0), waits(1.0));
        let secs = |waits: &[Duration]| waits.iter().map(Duration::as_secs_f64).collect::<Vec<_>>();
        println!("waits from {:?} to {:?}", secs(&shortest), secs(&longest));
        let first = Duration::from_secs(1)..=Duration::from_secs(5);
        assert!(first.contains(&shortest[0]) && first.contains(&longest[0]), "{shortest:?} {longest:?}");
        assert!(shortest.iter().sum::<Duration>() >= Duration::from_secs(600), "{shortest:?}");
        assert!(shortest.windows(2).all(|w| w[0] < w[1] || w[1] == send.max_delay), "grows: {shortest:?}");
        assert!(longest.iter().all(|w| *w <= send.max_delay), "{longest:?}");
        assert_eq!(send.redelivery_delay(40, 1.0, None), send.max_delay);
        for attempt in 1..send.max_attempts {
            let jittered = send.redelivery_delay(attempt, rand::random(), None);
            let (low, high) = (shortest[attempt as usize - 1], longest[attempt as usize - 1]);
            assert!(low <= jittered && jittered <= high && low * 2 >= high, "{attempt}: {jittered:?}");
        }
    }

    #[test]
    fn a_retry_after_is_honoured_and_capped() {
        let send = RetryPolicy::SEND;
        let hint = |secs| Some(Duration::from_secs(secs));
        for jitter in [0.0, 0.5, 1.0] {
            // Never earlier than the provider asked…
            assert!(send.redelivery_delay(1, jitter, hint(1)) >= Duration::from_secs(1));
            assert_eq!(send.redelivery_delay(1, jitter, hint(20)), Duration::from_secs(20));
            assert_eq!(send.redelivery_delay(2, jitter, hint(120)), Duration::from_secs(120));
            // …nor past SQS's longest delay…
            assert_eq!(send.redelivery_delay(1, jitter, hint(3600)), send.max_delay);
            // …and a recipient rate-limited once is tried again within 30 s.
            assert!(send.redelivery_delay(1, jitter, hint(1)) <= Duration::from_secs(30));
            assert!(send.redelivery_delay(1, jitter, hint(0)) >= Duration::from_secs(1));
        }
    }

    #[tokio::test]
    async fn retries_what_the_predicate_allows_up_to_the_budget() {
        assert_eq!(calls(9, "throttled", |_| true).await, (Err("throttled".into()), 4));
        assert_eq!(calls(9, "bad request", |e| e != "bad request").await, (Err("bad request".into()), 1));
        assert_eq!(calls(1, "throttled", |_| true).await, (Ok(1), 2));
    }
}

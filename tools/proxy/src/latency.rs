//! A model of what a request costs in time on AWS, in-region: the proxy holds each answer until
//! the modelled latency has passed since the request arrived, so request counts, sequential
//! round trips and parallelism cost what they would there.
//!
//! The emulator's own time is hidden under the model wherever it is shorter (the usual case:
//! DynamoDB Local answers a small request in well under a millisecond). Where it is longer (its
//! Query slows down with the table's size), nothing is added and the excess is counted
//! ([`LatencyCounts`]): a run reports how many requests were emulator-bound and by how much, so
//! a reader sees how much of a figure is the emulator's rather than the model's.
//!
//! Defaults, per operation (the median; each draw is that times a log-normal factor of median
//! 1, σ = [`LatencyModel::sigma`]):
//! - single-item reads and writes (`GetItem`, `PutItem`, `UpdateItem`, `DeleteItem`): 4 ms.
//!   AWS: "For most atomic operations, such as GetItem and PutItem, an average latency is in
//!   single-digit milliseconds" (re:Post knowledge center, "How can I troubleshoot high latency
//!   on an Amazon DynamoDB table?"); the database blog's "Understanding Amazon DynamoDB
//!   latency" separates service-side from client-side time, both counted here.
//! - `BatchGetItem`, `BatchWriteItem`, `TransactWriteItems`, `TransactGetItems`: 7 ms, and
//!   `Query`/`Scan` pages: 6 ms. AWS says these "depend on … the size of the result set": hence
//!   the size term below on top of a base somewhat above a single item's.
//! - per KiB of request and response body: 0.01 ms (a 1 MB Query page adds 10 ms: ~100 MB/s
//!   of transfer and deserialisation on the service's side).
//! - SQS, any call: 15 ms. No published figure could be retrieved here; SQS is known to be
//!   slower than DynamoDB per call, and the fan-out makes few, batched calls, so the choice
//!   moves its figures little. Stated as an assumption.
//!
//! Every default can be set (`retarget-proxy --help`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::Rng;
use serde_json::{Value, json};

/// Medians in milliseconds, and the spread.
#[derive(Debug, Clone, Copy)]
pub struct LatencyModel {
    pub item_ms: f64,
    pub batch_ms: f64,
    pub query_ms: f64,
    pub per_kib_ms: f64,
    pub sqs_ms: f64,
    /// σ of the log-normal factor (0: every request takes exactly its median).
    pub sigma: f64,
}

impl Default for LatencyModel {
    fn default() -> Self {
        Self { item_ms: 4.0, batch_ms: 7.0, query_ms: 6.0, per_kib_ms: 0.01, sqs_ms: 15.0, sigma: 0.3 }
    }
}

/// What kind of call a request is, for the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Item,
    Batch,
    Query,
    Sqs,
}

impl Call {
    /// A DynamoDB operation (the `X-Amz-Target`'s last part).
    pub fn dynamodb(operation: &str) -> Self {
        match operation {
            "BatchGetItem" | "BatchWriteItem" | "TransactWriteItems" | "TransactGetItems" => Call::Batch,
            "Query" | "Scan" => Call::Query,
            _ => Call::Item,
        }
    }
}

impl LatencyModel {
    /// The median latency of a call moving `bytes` (request and response bodies).
    pub fn median(&self, call: Call, bytes: usize) -> Duration {
        let base = match call {
            Call::Item => self.item_ms,
            Call::Batch => self.batch_ms,
            Call::Query => self.query_ms,
            Call::Sqs => self.sqs_ms,
        };
        let ms = base + self.per_kib_ms * bytes as f64 / 1024.0;
        Duration::from_secs_f64(ms.max(0.0) / 1000.0)
    }

    /// One draw: the median times a log-normal factor.
    pub fn draw(&self, call: Call, bytes: usize, rng: &mut impl Rng) -> Duration {
        let median = self.median(call, bytes);
        if self.sigma <= 0.0 {
            return median;
        }
        // Box–Muller: a standard normal from two uniforms in (0, 1].
        let (u1, u2): (f64, f64) = (1.0 - rng.random::<f64>(), rng.random::<f64>());
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        median.mul_f64((self.sigma * z).exp().clamp(0.05, 20.0))
    }
}

/// What the model did, over a run.
#[derive(Debug, Default)]
pub struct LatencyCounts {
    pub requests: AtomicU64,
    /// Modelled latency, summed over requests (µs).
    pub modelled_us: AtomicU64,
    /// Time the proxy held answers back to meet the model, summed (µs).
    pub held_us: AtomicU64,
    /// Requests the emulator answered more slowly than the model: nothing held.
    pub emulator_bound: AtomicU64,
    /// By how much those exceeded the model, summed (µs).
    pub emulator_excess_us: AtomicU64,
}

impl LatencyCounts {
    /// Accounts one request: its modelled latency and how long the emulator took.
    pub fn record(&self, modelled: Duration, upstream: Duration) {
        let us = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.modelled_us.fetch_add(us(modelled), Ordering::Relaxed);
        if upstream > modelled {
            self.emulator_bound.fetch_add(1, Ordering::Relaxed);
            self.emulator_excess_us.fetch_add(us(upstream - modelled), Ordering::Relaxed);
        } else {
            self.held_us.fetch_add(us(modelled - upstream), Ordering::Relaxed);
        }
    }

    pub fn reset(&self) {
        for counter in
            [&self.requests, &self.modelled_us, &self.held_us, &self.emulator_bound, &self.emulator_excess_us]
        {
            counter.store(0, Ordering::Relaxed);
        }
    }

    pub fn json(&self) -> Value {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let ms = |a: &AtomicU64| get(a) as f64 / 1000.0;
        json!({
            "requests": get(&self.requests),
            "modelled_ms": ms(&self.modelled_us),
            "held_ms": ms(&self.held_us),
            "emulator_bound": get(&self.emulator_bound),
            "emulator_excess_ms": ms(&self.emulator_excess_us),
        })
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn medians_grow_with_the_bytes_moved_and_the_kind_of_call() {
        let m = LatencyModel::default();
        assert_eq!(m.median(Call::Item, 0), Duration::from_millis(4));
        assert_eq!(m.median(Call::Query, 1000 * 1024), Duration::from_millis(16));
        assert!(m.median(Call::Batch, 0) > m.median(Call::Item, 0));
        assert_eq!(Call::dynamodb("BatchGetItem"), Call::Batch);
        assert_eq!(Call::dynamodb("Query"), Call::Query);
        assert_eq!(Call::dynamodb("GetItem"), Call::Item);
    }

    #[test]
    fn draws_have_the_median_they_are_given() {
        let m = LatencyModel::default();
        let mut rng = StdRng::seed_from_u64(1);
        let mut draws: Vec<Duration> = (0..10_001).map(|_| m.draw(Call::Item, 0, &mut rng)).collect();
        draws.sort();
        let median = draws[5_000].as_secs_f64() * 1000.0;
        assert!((3.8..4.2).contains(&median), "{median}");
        let flat = LatencyModel { sigma: 0.0, ..m };
        assert_eq!(flat.draw(Call::Sqs, 0, &mut rng), Duration::from_millis(15));
    }

    #[test]
    fn the_emulators_excess_is_counted_not_held() {
        let c = LatencyCounts::default();
        c.record(Duration::from_millis(4), Duration::from_millis(1));
        c.record(Duration::from_millis(4), Duration::from_millis(10));
        let j = c.json();
        assert_eq!(j["requests"], 2);
        assert_eq!(j["held_ms"], 3.0);
        assert_eq!(j["emulator_bound"], 1);
        assert_eq!(j["emulator_excess_ms"], 6.0);
    }
}

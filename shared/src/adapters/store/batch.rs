//! Batch writes and reads that finish what DynamoDB leaves undone: `UnprocessedItems` and
//! `UnprocessedKeys` are retried with capped, jittered exponential backoff and are never
//! dropped — after the last attempt the caller gets an error (and SQS/HTTP retries the whole).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes, PutRequest, WriteRequest};
use futures::{StreamExt, TryStreamExt, stream};

use super::{Store, StoreError};

pub type Item = HashMap<String, AttributeValue>;

/// DynamoDB's own per-request limits.
pub const BATCH_WRITE_MAX: usize = 25;
pub const BATCH_GET_MAX: usize = 100;
/// Batch requests in flight at once for one call.
const BATCHES_IN_FLIGHT: usize = 8;

/// One item of a BatchWriteItem.
pub(crate) fn put_request(item: Item) -> Result<WriteRequest, StoreError> {
    let put = StoreError::request(PutRequest::builder().set_item(Some(item)).build())?;
    Ok(WriteRequest::builder().put_request(put).build())
}

/// Counts of requests sent, for benchmarks and tests (relaxed atomics: figures, not locks).
#[derive(Debug, Default)]
pub struct BatchStats {
    pub write_requests: AtomicU64,
    pub items_written: AtomicU64,
    pub get_requests: AtomicU64,
    pub unprocessed_retries: AtomicU64,
    /// Single-item conditional puts (interactions, event ids).
    pub put_requests: AtomicU64,
}

impl BatchStats {
    pub fn snapshot(&self) -> [u64; 4] {
        [
            self.write_requests.load(Ordering::Relaxed),
            self.items_written.load(Ordering::Relaxed),
            self.get_requests.load(Ordering::Relaxed),
            self.unprocessed_retries.load(Ordering::Relaxed),
        ]
    }
}

impl Store {
    /// Writes every request, 25 per BatchWriteItem, several batches in flight.
    pub async fn batch_write(&self, requests: Vec<WriteRequest>) -> Result<(), StoreError> {
        let chunks: Vec<Vec<WriteRequest>> =
            requests.chunks(BATCH_WRITE_MAX).map(<[WriteRequest]>::to_vec).collect();
        stream::iter(chunks)
            .map(|chunk| self.write_chunk(chunk))
            .buffer_unordered(BATCHES_IN_FLIGHT)
            .try_collect::<()>()
            .await
    }

    async fn write_chunk(&self, mut pending: Vec<WriteRequest>) -> Result<(), StoreError> {
        let policy = self.inner.retry;
        let stats = &self.inner.stats;
        for attempt in 0..policy.max_attempts {
            if attempt > 0 {
                stats.unprocessed_retries.fetch_add(1, Ordering::Relaxed);
                policy.wait(attempt).await;
            }
            let sent = pending.len();
            stats.write_requests.fetch_add(1, Ordering::Relaxed);
            let output = self
                .client()
                .batch_write_item()
                .request_items(self.table(), pending.clone())
                .send()
                .await
                .map_err(StoreError::dynamo("BatchWriteItem"))?;
            pending = output.unprocessed_items.and_then(|mut m| m.remove(self.table())).unwrap_or_default();
            stats.items_written.fetch_add((sent - pending.len()) as u64, Ordering::Relaxed);
            if pending.is_empty() {
                return Ok(());
            }
            tracing::debug!(unprocessed = pending.len(), attempt, "BatchWriteItem left items unprocessed");
        }
        Err(StoreError::Unprocessed {
            operation: "BatchWriteItem",
            count: pending.len(),
            attempts: policy.max_attempts,
        })
    }

    /// Reads every key (100 per BatchGetItem), returning the items that exist, in no order.
    /// `consistent` reads see every write acknowledged before them, at twice the read cost.
    pub async fn batch_get(
        &self,
        keys: Vec<Item>,
        projection: Option<&str>,
        consistent: bool,
    ) -> Result<Vec<Item>, StoreError> {
        let chunks: Vec<Vec<Item>> = keys.chunks(BATCH_GET_MAX).map(<[Item]>::to_vec).collect();
        let pages: Vec<Vec<Item>> = stream::iter(chunks)
            .map(|chunk| self.get_chunk(chunk, projection, consistent))
            .buffer_unordered(BATCHES_IN_FLIGHT)
            .try_collect()
            .await?;
        Ok(pages.into_iter().flatten().collect())
    }

    async fn get_chunk(
        &self,
        keys: Vec<Item>,
        projection: Option<&str>,
        consistent: bool,
    ) -> Result<Vec<Item>, StoreError> {
        let policy = self.inner.retry;
        let stats = &self.inner.stats;
        let mut found = Vec::new();
        let mut pending = keys;
        for attempt in 0..policy.max_attempts {
            if attempt > 0 {
                stats.unprocessed_retries.fetch_add(1, Ordering::Relaxed);
                policy.wait(attempt).await;
            }
            let request = KeysAndAttributes::builder()
                .set_keys(Some(pending))
                .set_projection_expression(projection.map(str::to_owned))
                .consistent_read(consistent)
                .build()
                .map_err(|e| StoreError::Request(e.to_string()))?;
            stats.get_requests.fetch_add(1, Ordering::Relaxed);
            let mut output = self
                .client()
                .batch_get_item()
                .request_items(self.table(), request)
                .send()
                .await
                .map_err(StoreError::dynamo("BatchGetItem"))?;
            found.extend(output.responses.as_mut().and_then(|m| m.remove(self.table())).unwrap_or_default());
            pending = output
                .unprocessed_keys
                .and_then(|mut m| m.remove(self.table()))
                .map(|k| k.keys)
                .unwrap_or_default();
            if pending.is_empty() {
                return Ok(found);
            }
        }
        Err(StoreError::Unprocessed {
            operation: "BatchGetItem",
            count: pending.len(),
            attempts: policy.max_attempts,
        })
    }
}

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub(crate) fn key(pk: impl Into<String>, sk: impl Into<String>) -> Item {
    HashMap::from([(crate::keys::PK.to_owned(), s(pk)), (crate::keys::SK.to_owned(), s(sk))])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::TestClock;
    use crate::retry::RetryPolicy;
    use aws_sdk_dynamodb::Client;
    use aws_sdk_dynamodb::operation::batch_write_item::BatchWriteItemOutput;
    use aws_sdk_dynamodb::types::PutRequest;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use std::sync::Arc;
    use std::time::Duration;

    fn put(i: usize) -> WriteRequest {
        let item = key(format!("p{i}"), "s");
        WriteRequest::builder()
            .put_request(PutRequest::builder().set_item(Some(item)).build().unwrap())
            .build()
    }

    fn fast() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        }
    }

    fn store(client: Client) -> Store {
        Store::with_retry(client, "t", Arc::new(TestClock::following_wall_clock()), fast())
    }

    #[tokio::test]
    async fn unprocessed_items_are_retried_until_written() {
        let leave_two = mock!(Client::batch_write_item).then_output(|| {
            BatchWriteItemOutput::builder().unprocessed_items("t", vec![put(1), put(2)]).build()
        });
        let leave_one = mock!(Client::batch_write_item)
            .match_requests(|r| r.request_items().and_then(|m| m.get("t")).is_some_and(|v| v.len() == 2))
            .then_output(|| BatchWriteItemOutput::builder().unprocessed_items("t", vec![put(2)]).build());
        let all_done = mock!(Client::batch_write_item)
            .match_requests(|r| r.request_items().and_then(|m| m.get("t")).is_some_and(|v| v.len() == 1))
            .then_output(|| BatchWriteItemOutput::builder().build());
        let client =
            mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&leave_two, &leave_one, &all_done]);
        let store = store(client);

        store.batch_write((0..5).map(put).collect()).await.unwrap();

        assert_eq!(leave_two.num_calls() + leave_one.num_calls() + all_done.num_calls(), 3);
        assert_eq!(store.stats().snapshot(), [3, 5, 0, 2]);
    }

    #[tokio::test]
    async fn items_still_unprocessed_after_the_last_attempt_are_an_error_not_a_loss() {
        let never = mock!(Client::batch_write_item)
            .then_output(|| BatchWriteItemOutput::builder().unprocessed_items("t", vec![put(7)]).build());
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&never]);
        let err = store(client).batch_write(vec![put(7)]).await.unwrap_err();
        assert!(matches!(err, StoreError::Unprocessed { count: 1, attempts: 4, .. }), "{err}");
        assert_eq!(never.num_calls(), 4);
    }
}

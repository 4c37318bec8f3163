//! The DynamoDB adapter. Key shapes come from [`crate::keys`]; this module only says how each
//! access pattern is read and written.

mod apps;
mod batch;
mod caps;
mod deferrals;
mod interactions;
mod links;
mod messages;
mod people;
mod retargets;
mod scheduled;
mod sends;
mod sharded;
mod stats;
mod subscriptions;
mod tracking;

use std::sync::Arc;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::{Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem};

use crate::clock::SharedClock;
use crate::domain::RetargetStatus;
use crate::keys;
use crate::retry::RetryPolicy;

pub use batch::BatchStats;
pub use interactions::{Interaction, InteractionRow, InteractionStream, RecordOutcome, Start};
pub use people::{MigrationReport, Person, Replica, ReplicaStream};
pub use sends::SendClaim;
pub use stats::{Applied, CountedInsert, by_message};
pub use subscriptions::Upserted;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("DynamoDB {operation} failed: {source}")]
    Dynamo {
        operation: &'static str,
        #[source]
        source: Box<aws_sdk_dynamodb::Error>,
    },
    #[error("DynamoDB {operation}: {count} items still unprocessed after {attempts} attempts")]
    Unprocessed { operation: &'static str, count: usize, attempts: u32 },
    #[error("stored item does not decode: {0}")]
    Corrupt(String),
    /// A request could not be built (a missing required field: a bug, never the data).
    #[error("DynamoDB request not built: {0}")]
    Request(String),
    #[error("not found")]
    NotFound,
    #[error("already exists")]
    AlreadyExists,
    /// A retarget can no longer change: the scheduler has taken it (it is in this status).
    #[error("the retarget is already {}", .0.as_str())]
    AlreadyDispatched(RetargetStatus),
}

impl StoreError {
    pub(crate) fn dynamo<E, R>(operation: &'static str) -> impl FnOnce(SdkError<E, R>) -> Self
    where
        aws_sdk_dynamodb::Error: From<SdkError<E, R>>,
    {
        move |e| StoreError::Dynamo { operation, source: Box::new(e.into()) }
    }

    /// A request builder's result, its failure as [`StoreError::Request`].
    pub(crate) fn request<T, E: std::fmt::Display>(built: Result<T, E>) -> Result<T, Self> {
        built.map_err(|e| StoreError::Request(e.to_string()))
    }

    /// Whether retrying the same call may succeed: throttling, 5xx, network errors and
    /// unprocessed batch items may; a failed condition, a bad item or a missing one never will.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Dynamo { source, .. } => !matches!(
                **source,
                aws_sdk_dynamodb::Error::ConditionalCheckFailedException(_)
                    | aws_sdk_dynamodb::Error::TransactionCanceledException(_)
                    | aws_sdk_dynamodb::Error::ResourceNotFoundException(_)
            ),
            StoreError::Unprocessed { .. } => true,
            StoreError::Corrupt(_)
            | StoreError::Request(_)
            | StoreError::NotFound
            | StoreError::AlreadyExists
            | StoreError::AlreadyDispatched(_) => false,
        }
    }

    /// True when the request failed a condition expression (an expected race, not a fault).
    pub fn is_condition_failed(&self) -> bool {
        matches!(self, StoreError::Dynamo { source, .. }
            if matches!(**source, aws_sdk_dynamodb::Error::ConditionalCheckFailedException(_)))
    }

    /// A transaction cancelled because one of its conditions failed (what it was computed from
    /// changed) or another transaction held one of its items: nothing was written; read again
    /// and retry.
    pub fn is_transaction_race(&self) -> bool {
        matches!(self, StoreError::Dynamo { source, .. }
            if condition_failed_anywhere(source) || transaction_conflict(source))
    }
}

/// Whether a cancelled transaction's `index`th item is one whose condition failed (what tells
/// "already there" from "the other item is gone" when a transaction writes two).
pub(crate) fn condition_failed_at(e: &aws_sdk_dynamodb::Error, index: usize) -> bool {
    matches!(e, aws_sdk_dynamodb::Error::TransactionCanceledException(t)
        if t.cancellation_reasons().get(index).and_then(|r| r.code()) == Some("ConditionalCheckFailed"))
}

/// Whether any item of a cancelled transaction failed its condition.
pub(crate) fn condition_failed_anywhere(e: &aws_sdk_dynamodb::Error) -> bool {
    matches!(e, aws_sdk_dynamodb::Error::TransactionCanceledException(t)
        if t.cancellation_reasons().iter().any(|r| r.code() == Some("ConditionalCheckFailed")))
}

/// Whether a transaction was cancelled because another one was writing one of its items at the
/// same moment (`TransactionConflict`): nothing was written, and trying again is right.
pub(crate) fn transaction_conflict(e: &aws_sdk_dynamodb::Error) -> bool {
    matches!(e, aws_sdk_dynamodb::Error::TransactionCanceledException(t)
        if t.cancellation_reasons().iter().any(|r| r.code() == Some("TransactionConflict")))
}

/// A conditional write's result: `None` when its condition failed (an expected race, not a
/// fault), the other errors as they are.
pub(crate) fn unless_condition_failed<T>(result: Result<T, StoreError>) -> Result<Option<T>, StoreError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.is_condition_failed() => Ok(None),
        Err(e) => Err(e),
    }
}

impl From<serde_dynamo::Error> for StoreError {
    fn from(e: serde_dynamo::Error) -> Self {
        StoreError::Corrupt(e.to_string())
    }
}

/// The table, its client and the clock every read filters expiry by. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: Client,
    table: String,
    clock: SharedClock,
    retry: RetryPolicy,
    stats: BatchStats,
}

impl Store {
    pub fn new(client: Client, table: impl Into<String>, clock: SharedClock) -> Self {
        Self::with_retry(client, table, clock, RetryPolicy::STORE_BATCH)
    }

    pub fn with_retry(
        client: Client,
        table: impl Into<String>,
        clock: SharedClock,
        retry: RetryPolicy,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                client,
                table: table.into(),
                clock,
                retry,
                stats: BatchStats::default(),
            }),
        }
    }

    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    pub fn table(&self) -> &str {
        &self.inner.table
    }

    pub fn clock(&self) -> &SharedClock {
        &self.inner.clock
    }

    /// Puts an item that must not exist yet (a conditional PutItem on `pk`); a condition failure
    /// ([`StoreError::is_condition_failed`]) when it does.
    ///
    /// A write that was applied but whose answer was lost is retried by the SDK with the same
    /// request, and the retry fails its condition on the item the first attempt wrote. So on a
    /// condition failure the stored item is compared with this one: equal means it is this
    /// writer's own item, and the put succeeded. Items that two writers could both write
    /// identically (interactions) carry a per-write token ([`new_write_token`]) so only the
    /// writer that put it recognises it.
    pub(crate) async fn put_new(&self, item: batch::Item, operation: &'static str) -> Result<(), StoreError> {
        let result = self
            .client()
            .put_item()
            .table_name(self.table())
            .set_item(Some(item.clone()))
            .condition_expression("attribute_not_exists(pk)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await
            .map_err(StoreError::dynamo(operation));
        let Err(error) = result else { return Ok(()) };
        if !error.is_condition_failed() {
            return Err(error);
        }
        let stored = match &error {
            StoreError::Dynamo { source, .. } => match &**source {
                aws_sdk_dynamodb::Error::ConditionalCheckFailedException(c) => c.item().cloned(),
                _ => None,
            },
            _ => None,
        };
        let stored = match stored {
            Some(stored) => Some(stored),
            None => self.get_consistent(&item, operation).await?,
        };
        if stored.as_ref() == Some(&item) { Ok(()) } else { Err(error) }
    }

    /// The item stored under `item`'s key, read consistently.
    async fn get_consistent(
        &self,
        item: &batch::Item,
        operation: &'static str,
    ) -> Result<Option<batch::Item>, StoreError> {
        let key: batch::Item = item
            .iter()
            .filter(|(name, _)| *name == keys::PK || *name == keys::SK)
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        let output = self
            .client()
            .get_item()
            .table_name(self.table())
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::dynamo(operation))?;
        Ok(output.item)
    }

    /// A transaction's Put of an item that must not exist yet.
    pub(crate) fn transact_put_new(&self, item: batch::Item) -> Result<TransactWriteItem, StoreError> {
        let put = StoreError::request(
            Put::builder()
                .table_name(self.table())
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .build(),
        )?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// Request counters (for benchmarks and the retry tests).
    pub fn stats(&self) -> &BatchStats {
        &self.inner.stats
    }
}

/// A token unique to one write, stored with an item that another writer could write
/// identically, so that [`Store::put_new`] tells its own lost-answer retry from a rival's item.
pub(crate) fn new_write_token() -> String {
    ulid::Ulid::new().to_string()
}

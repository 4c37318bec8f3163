//! The DynamoDB adapter. Key shapes come from [`crate::keys`]; this module only says how each
//! access pattern is read and written.

mod apps;
mod batch;
mod interactions;
mod messages;
mod retargets;
mod scheduled;
mod sends;
mod subscriptions;

use std::sync::Arc;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;

use crate::clock::SharedClock;

pub use apps::{ApnsConfig, App, FcmConfig, NewApp, TwilioConfig};
pub use batch::{BatchStats, RetryPolicy};
pub use interactions::{Interaction, InteractionRow, InteractionStream, MessageScope, RecordOutcome, Start};
pub use messages::{Contents, Message, MessageStatus};
pub use retargets::{DISPATCH_LEASE_SECONDS, DispatchProgress, Retarget, RetargetStatus};
pub use sends::SendClaim;
pub use subscriptions::{Address, Subscription, SubscriptionStatus, Upserted};

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

    /// True when the request failed a condition expression (an expected race, not a fault).
    pub fn is_condition_failed(&self) -> bool {
        matches!(self, StoreError::Dynamo { source, .. }
            if matches!(**source, aws_sdk_dynamodb::Error::ConditionalCheckFailedException(_)))
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
        Self::with_retry(client, table, clock, RetryPolicy::default())
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

    /// Request counters (for benchmarks and the retry tests).
    pub fn stats(&self) -> &BatchStats {
        &self.inner.stats
    }
}

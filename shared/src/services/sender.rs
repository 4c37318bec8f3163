//! The channel senders' pipeline: an SQS consumer with `ReportBatchItemFailures`, provider-
//! agnostic. For each send job (one SQS message, many recipients):
//!
//! 1. claim each recipient's idempotency record (in progress, with a lease);
//! 2. call the provider for the ones claimed;
//! 3. complete the record and record the outcome (`sent` / `failed`) as an interaction;
//!    a dead token or a STOP unsubscribes the subscription;
//! 4. a transient failure releases its record and fails the job, so SQS redelivers it and the
//!    recipients already done are skipped.
//!
//! A panic or a bad record fails only its own SQS message.

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::{FutureExt, StreamExt, stream};

use crate::Store;
use crate::adapters::store::{Interaction, SendClaim, StoreError};
use crate::domain::{App, Channel, EventKind, Message, SendJob, Subscription, SubscriptionId};
use crate::retry::RetryPolicy;
use crate::services::provider::{Provider, SendError};

/// SQS messages handled at once, and provider calls in flight per message.
const RECORDS_IN_FLIGHT: usize = 4;
const SENDS_IN_FLIGHT: usize = 16;
/// Stop starting provider calls this long before the Lambda deadline.
const DEADLINE_MARGIN: Duration = Duration::from_secs(5);
/// How long an in-progress claim holds when no deadline is known.
const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// What a sender needs; built once per cold start.
pub struct SenderDeps<P> {
    pub store: Store,
    pub provider: P,
    pub channel: Channel,
}

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("not a send job: {0}")]
    Malformed(String),
    #[error("job for channel {got} reached the {expected} sender")]
    WrongChannel { got: Channel, expected: Channel },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0} recipients must be retried")]
    Retry(usize),
    #[error("handler panicked")]
    Panicked,
}

/// What one job did, for logs and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct JobReport {
    pub sent: usize,
    pub failed: usize,
    pub skipped: usize,
    pub retry: usize,
}

/// Handles one SQS batch; each failed record is reported for redelivery, the rest deleted.
pub async fn handle_batch<P: Provider>(
    deps: &SenderDeps<P>,
    event: SqsEvent,
    deadline: Option<Instant>,
) -> SqsBatchResponse {
    let failures: Vec<BatchItemFailure> = stream::iter(event.records)
        .map(|record| async move {
            let id = record.message_id.clone().unwrap_or_default();
            let outcome = AssertUnwindSafe(process_record(deps, &record, deadline)).catch_unwind().await;
            match outcome {
                Ok(Ok(report)) => {
                    tracing::info!(sqs_message_id = %id, ?report, "send job done");
                    None
                }
                Ok(Err(e)) => {
                    tracing::warn!(sqs_message_id = %id, error = %e, "send job will be retried");
                    Some(id)
                }
                Err(_) => {
                    tracing::error!(sqs_message_id = %id, error = %JobError::Panicked, "send job panicked");
                    Some(id)
                }
            }
        })
        .buffer_unordered(RECORDS_IN_FLIGHT)
        .filter_map(|failed| async move { failed })
        .map(|item_identifier| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = item_identifier;
            failure
        })
        .collect()
        .await;
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures;
    response
}

pub async fn process_record<P: Provider>(
    deps: &SenderDeps<P>,
    record: &SqsMessage,
    deadline: Option<Instant>,
) -> Result<JobReport, JobError> {
    let body = record.body.as_deref().unwrap_or_default();
    let job: SendJob = serde_json::from_str(body).map_err(|e| JobError::Malformed(e.to_string()))?;
    if job.channel != deps.channel {
        return Err(JobError::WrongChannel { got: job.channel, expected: deps.channel });
    }
    process_job(deps, &job, deadline).await
}

/// Sends one job. `Ok` when every recipient is done (sent, failed for good, or skipped).
pub async fn process_job<P: Provider>(
    deps: &SenderDeps<P>,
    job: &SendJob,
    deadline: Option<Instant>,
) -> Result<JobReport, JobError> {
    let store = &deps.store;
    let (app, message) =
        tokio::try_join!(store.get_app(job.app_id), store.get_message(job.app_id, job.message_id))?;
    let (Some(app), Some(message)) = (app, message) else {
        // The app or message is gone: nothing can or should be sent.
        tracing::warn!(message_id = %job.message_id, "send job for a missing app or message dropped");
        return Ok(JobReport { skipped: job.subscription_ids.len(), ..JobReport::default() });
    };
    let subscriptions =
        retried(|| store.get_subscriptions(app.app_id, job.subscription_ids.iter().copied())).await?;

    let outcomes: Vec<(SubscriptionId, Result<Outcome, StoreError>)> =
        stream::iter(job.subscription_ids.iter().copied())
            .map(|sub| {
                let subscription = subscriptions.get(&sub);
                let (app, message) = (&app, &message);
                async move { (sub, send_one(deps, app, message, subscription, deadline).await) }
            })
            .buffer_unordered(SENDS_IN_FLIGHT)
            .collect()
            .await;

    let mut report = JobReport::default();
    let mut events = Vec::new();
    let mut first_error = None;
    for (sub, outcome) in outcomes {
        match outcome {
            Ok(Outcome::Recorded(kind)) => {
                match kind {
                    EventKind::Failed => report.failed += 1,
                    _ => report.sent += 1,
                }
                let subscription = subscriptions.get(&sub);
                events.push(Interaction {
                    subscription_id: sub,
                    kind,
                    external_user_id: subscription.and_then(|s| s.external_user_id.clone()),
                    event_id: None,
                    occurred_at: store.clock().now(),
                });
            }
            Ok(Outcome::Skipped) => report.skipped += 1,
            Ok(Outcome::Retry) => report.retry += 1,
            Err(e) => {
                report.retry += 1;
                first_error.get_or_insert(e);
            }
        }
    }
    // Outcomes are recorded as interactions (plan gating as for every event source). Done
    // sends are re-recorded on redelivery, so a crash between the provider call and this write
    // still ends with the event stored — recording is idempotent.
    if message.retargetable && !events.is_empty() {
        let scope = message.scope();
        retried(|| store.record_interactions(&scope, &events)).await?;
    }
    if let Some(e) = first_error {
        return Err(e.into());
    }
    if report.retry > 0 {
        return Err(JobError::Retry(report.retry));
    }
    Ok(report)
}

enum Outcome {
    /// Sent or failed for good, to record as this kind.
    Recorded(EventKind),
    /// Nothing to do: unsubscribed, gone, or on the wrong channel.
    Skipped,
    /// Try again later.
    Retry,
}

async fn send_one<P: Provider>(
    deps: &SenderDeps<P>,
    app: &App,
    message: &Message,
    subscription: Option<&Subscription>,
    deadline: Option<Instant>,
) -> Result<Outcome, StoreError> {
    let Some(subscription) = subscription.filter(|s| s.is_active() && s.channel == deps.channel) else {
        return Ok(Outcome::Skipped);
    };
    let now = Instant::now();
    let lease = match deadline {
        Some(deadline) if deadline <= now + DEADLINE_MARGIN => return Ok(Outcome::Retry),
        Some(deadline) => deadline - now,
        None => DEFAULT_LEASE,
    };
    let store = &deps.store;
    let scope = message.scope();
    let lease_until =
        store.clock().now() + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::minutes(1));
    match retried(|| store.claim_send(&scope, subscription.subscription_id, lease_until)).await? {
        SendClaim::Done(kind) => return Ok(Outcome::Recorded(kind)),
        SendClaim::InFlight => return Ok(Outcome::Retry),
        SendClaim::Go => {}
    }
    let result = AssertUnwindSafe(deps.provider.send(app, subscription, message)).catch_unwind().await;
    let result = result.unwrap_or_else(|_| {
        Err(SendError::Transient { detail: "provider call panicked".into(), retry_after: None })
    });
    match result {
        Ok(_accepted) => {
            retried(|| store.complete_send(&scope, subscription.subscription_id, EventKind::Sent)).await?;
            Ok(Outcome::Recorded(EventKind::Sent))
        }
        Err(SendError::Transient { detail, .. }) => {
            tracing::info!(subscription_id = %subscription.subscription_id, %detail, "transient provider error");
            retried(|| store.release_send(&scope, subscription.subscription_id)).await?;
            Ok(Outcome::Retry)
        }
        Err(e) => {
            let dead = matches!(e, SendError::Permanent { dead_address: true, .. });
            tracing::warn!(subscription_id = %subscription.subscription_id, error = %e, dead, "permanent provider error");
            retried(|| store.complete_send(&scope, subscription.subscription_id, EventKind::Failed)).await?;
            if dead {
                store.unsubscribe(app.app_id, subscription.subscription_id).await?;
            }
            Ok(Outcome::Recorded(EventKind::Failed))
        }
    }
}

/// Runs an idempotent store call, retrying it in place on error (jittered waits), so that one
/// throttled write among a job's thousand does not fail the whole job — a job failing on every
/// delivery ends in the DLQ however much it sent — and so that a completion after the provider
/// accepted is not lost to a passing error (which would send that recipient again).
async fn retried<T, F, Fut>(call: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    RetryPolicy::SENDER_STORE.run(StoreError::is_retryable, call).await
}

//! The channel senders' pipeline: an SQS consumer with `ReportBatchItemFailures`, provider-
//! agnostic. For each send job (one SQS message, many recipients):
//!
//! 0. recipients whose quiet hours are on (the app's delivery policy, their local time) wait:
//!    grouped by the instant those hours end, stored as deferrals the scheduler puts back on
//!    the queue then ([`Deferral`]); no Lambda waits;
//! 1. claim each recipient's idempotency record (in progress, with a lease);
//!    then the frequency cap (one ledger per person across the capped channels, taken
//!    conditionally): a recipient over it is marked capped, counted once, sent nothing;
//! 2. call the provider for the ones claimed;
//! 3. complete the record and record the outcome (`sent` / `failed`) as an interaction;
//!    a dead token or a STOP unsubscribes the subscription;
//! 4. a transient failure (429, 5xx, timeout, a claim held elsewhere, the deadline near)
//!    releases its record, and the recipients that failed so — only they — go back on the
//!    sender's own queue as a new small job, delayed by the provider's `Retry-After` or a
//!    growing backoff ([`RetryPolicy::SEND`]); once the budget is spent, what is left goes to
//!    the channel's dead-letter queue as such a job. Either way the SQS message is done.
//!
//! Why not simply fail the message: SQS would redeliver all of it, and only after the queue's
//! visibility timeout (6 minutes), however soon the provider asked to be called again. The
//! cost: the retry is ours to enqueue. When it cannot be (or a store call failed), the job
//! falls back to exactly that — the whole message redelivered, the recipients done skipped.
//!
//! A panic or a bad record fails only its own SQS message.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use futures::{FutureExt, StreamExt, stream};

use crate::Store;
use crate::adapters::queue::{Queue, QueueError};
use crate::adapters::store::{Interaction, SendClaim, StoreError};
use std::collections::HashMap;

use crate::domain::{
    App, Channel, Deferral, EventKind, Message, SendJob, Subscription, SubscriptionId, UnsubscribeReason,
};
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
    /// Where the recipients that failed transiently go. `None`: nowhere — a job with such
    /// recipients fails and SQS redelivers it whole after the visibility timeout (the fallback
    /// of every sender; the only way of a sender built without queues, as in benchmarks).
    pub retries: Option<Retries>,
    /// At most this many provider calls per second from this process (SES's account rate,
    /// shared by the sender's instances); `None`: as fast as the calls in flight allow.
    pub pace: Option<Pacer>,
}

/// Spaces provider calls evenly: each call takes the next free slot, `interval` after the
/// previous one. A slot past the invocation's deadline is not taken: the recipient is left for
/// a continuation job instead (see [`process_job`]), so no call starts while Lambda may
/// already be stopping the process.
#[derive(Debug)]
pub struct Pacer {
    interval: Duration,
    next: tokio::sync::Mutex<tokio::time::Instant>,
}

impl Pacer {
    /// `per_second` calls per second (more than 0).
    pub fn per_second(per_second: f64) -> Option<Self> {
        (per_second.is_finite() && per_second > 0.0).then(|| Self {
            interval: Duration::from_secs_f64(1.0 / per_second),
            next: tokio::sync::Mutex::new(tokio::time::Instant::now()),
        })
    }

    /// Waits for the next slot; `false` (and no wait) when it would start after `latest`.
    async fn wait(&self, latest: Option<Instant>) -> bool {
        let slot = {
            let mut next = self.next.lock().await;
            let slot = (*next).max(tokio::time::Instant::now());
            if latest.is_some_and(|latest| slot.into_std() > latest) {
                return false;
            }
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
        true
    }
}

/// A sender's retry route: its own queue, its dead-letter queue and the budget.
pub struct Retries {
    /// The queue the sender consumes: a retry is a delayed job on it.
    pub queue: Arc<Queue>,
    /// The channel's dead-letter queue: the recipients left once the budget is spent.
    pub dead_letters: Arc<Queue>,
    /// The attempts and waits ([`RetryPolicy::SEND`]; tests make it short).
    pub policy: RetryPolicy,
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
    #[error("the recipients to retry could not be enqueued: {0}")]
    Enqueue(#[from] QueueError),
    #[error("handler panicked")]
    Panicked,
}

/// What one job did, for logs and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct JobReport {
    pub sent: usize,
    pub failed: usize,
    pub skipped: usize,
    /// Recipients put back on the queue for later (in `retry_jobs` jobs), or, the budget spent,
    /// on the dead-letter queue (`dead_lettered`).
    pub retry: usize,
    pub retry_jobs: usize,
    pub dead_lettered: usize,
    /// Recipients whose quiet hours were on: stored to be sent when they end.
    pub deferred: usize,
    /// Recipients not sent: their frequency cap was reached.
    pub capped: usize,
    /// Recipients not tried before the invocation's deadline (a paced sender's job outlasts
    /// one invocation): put back on the queue at once, their retry count unchanged.
    pub continued: usize,
    /// Recipients not sent because the provider refuses the whole account
    /// ([`SendError::Halt`]): put on the dead-letter queue as one job, recorded nothing.
    pub halted: usize,
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

/// Sends one job. `Ok` when every recipient is done (sent, failed for good, or skipped) or
/// enqueued again for later (or, the budget spent, dead-lettered).
pub async fn process_job<P: Provider>(
    deps: &SenderDeps<P>,
    job: &SendJob,
    deadline: Option<Instant>,
) -> Result<JobReport, JobError> {
    let store = &deps.store;
    let (app, secret, message) = tokio::try_join!(
        store.get_app(job.app_id),
        P::load_secret(store, job.app_id),
        store.get_message(job.app_id, job.message_id)
    )?;
    let (Some(app), Some(message)) = (app, message) else {
        // The app or message is gone: nothing can or should be sent.
        tracing::warn!(message_id = %job.message_id, "send job for a missing app or message dropped");
        return Ok(JobReport { skipped: job.subscription_ids.len(), ..JobReport::default() });
    };
    let subscriptions =
        retried(|| store.get_subscriptions(app.app_id, job.subscription_ids.iter().copied())).await?;
    let credentials = P::credentials(&app, &secret);
    let (now_ids, deferred) = defer_quiet(deps, &app, &message, job, &subscriptions).await?;

    let halted = AtomicBool::new(false);
    let outcomes: Vec<(SubscriptionId, Result<Outcome, StoreError>)> = stream::iter(now_ids)
        .map(|sub| {
            let subscription = subscriptions.get(&sub);
            let (app, credentials, message, halted) = (&app, &credentials, &message, &halted);
            async move {
                let outcome =
                    send_one(deps, (app, credentials), message, subscription, deadline, halted).await;
                (sub, outcome)
            }
        })
        .buffer_unordered(SENDS_IN_FLIGHT)
        .collect()
        .await;

    let mut report = JobReport { deferred, ..JobReport::default() };
    let mut events = Vec::new();
    let mut to_retry = Vec::new();
    let mut to_continue = Vec::new();
    let mut to_halt = Vec::new();
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
            Ok(Outcome::Capped) => report.capped += 1,
            Ok(Outcome::Retry { after }) => {
                report.retry += 1;
                to_retry.push((sub, after));
            }
            Ok(Outcome::Later) => {
                report.continued += 1;
                to_continue.push(sub);
            }
            Ok(Outcome::Halted) => {
                report.halted += 1;
                to_halt.push(sub);
            }
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
    // A store error fails the whole job (its redelivery retries every recipient not done):
    // retrying some recipients on the side as well would only do the work twice.
    if let Some(e) = first_error {
        return Err(e.into());
    }
    if !to_retry.is_empty() {
        let (jobs, dead) = retry_later(deps, job, &to_retry).await?;
        (report.retry_jobs, report.dead_lettered) = (jobs, dead);
    }
    if !to_continue.is_empty() || !to_halt.is_empty() {
        let Some(retries) = &deps.retries else {
            return Err(JobError::Retry(to_continue.len() + to_halt.len()));
        };
        if !to_continue.is_empty() {
            // Not a failure: the same attempt, carried on by the next invocation.
            let rest = job.retry_of(to_continue, job.retry);
            retries.queue.send_delayed(&[(rest, Duration::ZERO)]).await?;
            tracing::info!(message_id = %job.message_id, recipients = report.continued, "deadline near: the rest of the job continues in a new one");
        }
        if !to_halt.is_empty() {
            let left = job.retry_of(to_halt, job.retry);
            retries.dead_letters.send_jobs(std::slice::from_ref(&left)).await?;
            tracing::error!(message_id = %job.message_id, recipients = report.halted, "the provider refuses every send of this account: recipients dead-lettered, to redrive once it is fixed");
            report.dead_lettered += 1;
        }
    }
    Ok(report)
}

/// Splits a job's recipients into those to send now and those whose quiet hours are on (the
/// app's policy on this channel, each recipient's local time): these are stored as deferrals,
/// one per instant their hours end, and counted `deferred` on the retarget unless the job is
/// itself a release (counted when first deferred). A transactional message never waits.
/// Recipients that will be skipped (gone, unsubscribed) are left to the send path as before.
/// Deferrals are written before the job is done: a crash repeats them, idempotently.
async fn defer_quiet<P>(
    deps: &SenderDeps<P>,
    app: &App,
    message: &Message,
    job: &SendJob,
    subscriptions: &HashMap<SubscriptionId, Subscription>,
) -> Result<(Vec<SubscriptionId>, usize), StoreError> {
    let policy = &app.delivery_policy;
    let quiet = policy.quiet_hours_for(deps.channel).filter(|_| !message.transactional);
    let Some(quiet) = quiet else { return Ok((job.subscription_ids.clone(), 0)) };
    let now = deps.store.clock().now();
    let mut send_now = Vec::with_capacity(job.subscription_ids.len());
    let mut waits = Vec::new();
    for id in &job.subscription_ids {
        let sendable = subscriptions.get(id).filter(|s| s.is_active() && s.channel == deps.channel);
        match sendable.and_then(|sub| quiet.release(now, sub.local_zone(policy.default_timezone))) {
            Some(release) => waits.push((*id, release)),
            None => send_now.push(*id),
        }
    }
    let deferred = waits.len();
    let groups = Deferral::group(
        app.app_id,
        message.message_id,
        deps.channel,
        message.retarget_id,
        message.expires_at,
        waits,
    );
    for deferral in &groups {
        let stored = retried(|| deps.store.defer(deferral, !job.released)).await?;
        tracing::info!(
            message_id = %message.message_id,
            recipients = deferral.subscription_ids.len(),
            release = %deferral.release,
            new = stored,
            "recipients deferred to the end of their quiet hours"
        );
    }
    Ok((send_now, deferred))
}

/// Puts the recipients that failed transiently back on the sender's queue, delayed, or, the
/// budget spent, on the dead-letter queue; how many jobs went to each. An error (no route,
/// or SQS refused) fails the job, so SQS redelivers it whole: the fallback.
///
/// The new jobs are enqueued before the job is reported done. A crash in between leaves the
/// job to be redelivered as well: its recipients are then tried by two jobs, which is
/// harmless — each recipient's idempotency record (`claim_send`) lets one of them reach the
/// provider and skips it in the other.
async fn retry_later<P>(
    deps: &SenderDeps<P>,
    job: &SendJob,
    failed: &[(SubscriptionId, Option<Duration>)],
) -> Result<(usize, usize), JobError> {
    let Some(retries) = &deps.retries else {
        return Err(JobError::Retry(failed.len()));
    };
    let retry = job.retry + 1;
    if retry >= retries.policy.max_attempts {
        // The job as last tried, with only the recipients left: a redrive tries them again.
        let left = job.retry_of(failed.iter().map(|(sub, _)| *sub).collect(), job.retry);
        retries.dead_letters.send_jobs(std::slice::from_ref(&left)).await?;
        tracing::warn!(
            message_id = %job.message_id,
            recipients = failed.len(),
            attempts = retry,
            "retry budget spent: recipients dead-lettered"
        );
        return Ok((0, 1));
    }
    let jobs = retry_jobs(job, failed, &retries.policy, rand::random());
    retries.queue.send_delayed(&jobs).await?;
    let delays: Vec<u64> = jobs.iter().map(|(_, delay)| delay.as_secs()).collect();
    tracing::info!(message_id = %job.message_id, recipients = failed.len(), retry, ?delays, "recipients to retry enqueued");
    Ok((jobs.len(), 0))
}

/// The jobs retrying a job's failed recipients (with their `Retry-After`s), each with its
/// delay. Each recipient waits [`RetryPolicy::redelivery_delay`] with one jitter for the job;
/// recipients whose waits are within a factor of two share a job, which waits for the longest
/// of them — so a job makes a few retries (one when the provider gave no hint), never one
/// per recipient, and none before the provider asked.
fn retry_jobs(
    job: &SendJob,
    failed: &[(SubscriptionId, Option<Duration>)],
    policy: &RetryPolicy,
    jitter: f64,
) -> Vec<(SendJob, Duration)> {
    let retry = job.retry + 1;
    let mut waits: Vec<(Duration, SubscriptionId)> =
        failed.iter().map(|(sub, after)| (policy.redelivery_delay(retry, jitter, *after), *sub)).collect();
    waits.sort_by_key(|(wait, _)| *wait);
    let mut jobs: Vec<(SendJob, Duration)> = Vec::new();
    let mut shortest = Duration::ZERO;
    for (wait, sub) in waits {
        match jobs.last_mut() {
            Some((group, delay)) if wait <= shortest * 2 => {
                group.subscription_ids.push(sub);
                *delay = wait;
            }
            _ => {
                shortest = wait;
                jobs.push((job.retry_of(vec![sub], retry), wait));
            }
        }
    }
    jobs
}

enum Outcome {
    /// Sent or failed for good, to record as this kind.
    Recorded(EventKind),
    /// Nothing to do: unsubscribed, gone, or on the wrong channel.
    Skipped,
    /// Not sent: the person's frequency cap is reached (nothing recorded).
    Capped,
    /// Try again later, not before the provider's `Retry-After` if it gave one.
    Retry { after: Option<Duration> },
    /// Not tried: the invocation's deadline is near. Continued at once by a new job.
    Later,
    /// Not tried, or refused with [`SendError::Halt`]: the account cannot send now.
    Halted,
}

async fn send_one<P: Provider>(
    deps: &SenderDeps<P>,
    (app, credentials): (&App, &P::Credentials),
    message: &Message,
    subscription: Option<&Subscription>,
    deadline: Option<Instant>,
    halted: &AtomicBool,
) -> Result<Outcome, StoreError> {
    let Some(subscription) = subscription.filter(|s| s.is_active() && s.channel == deps.channel) else {
        return Ok(Outcome::Skipped);
    };
    if halted.load(Ordering::Relaxed) {
        return Ok(Outcome::Halted);
    }
    let latest_start = deadline.map(|deadline| deadline.checked_sub(DEADLINE_MARGIN).unwrap_or(deadline));
    if let Some(pace) = &deps.pace
        && !pace.wait(latest_start).await
    {
        return Ok(Outcome::Later);
    }
    let now = Instant::now();
    let lease = match deadline {
        Some(deadline) if deadline <= now + DEADLINE_MARGIN => return Ok(Outcome::Later),
        Some(deadline) => deadline - now,
        None => DEFAULT_LEASE,
    };
    let store = &deps.store;
    let scope = message.scope();
    let lease_until =
        store.clock().now() + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::minutes(1));
    match retried(|| store.claim_send(&scope, subscription.subscription_id, lease_until)).await? {
        SendClaim::Done(kind) => return Ok(Outcome::Recorded(kind)),
        SendClaim::InFlight => return Ok(Outcome::Retry { after: None }),
        SendClaim::Capped => return Ok(Outcome::Capped),
        SendClaim::Go => {}
    }
    // The frequency cap, decided once the send is ours: a redelivery finds it decided.
    if let Some(cap) = app.delivery_policy.cap_for(deps.channel).filter(|_| !message.transactional) {
        let person = match &subscription.external_user_id {
            Some(user) => format!("u:{}", user.as_str()),
            None => format!("s:{}", subscription.subscription_id),
        };
        let message_key = message.message_id.to_string();
        let admitted = retried(|| store.take_cap_slot(app.app_id, &person, &message_key, cap)).await?;
        if !admitted {
            let retarget = message.retarget_id.map(|rt| (app.app_id, rt));
            retried(|| store.complete_send_capped(&scope, subscription.subscription_id, retarget)).await?;
            tracing::info!(subscription_id = %subscription.subscription_id, "frequency cap reached: not sent");
            return Ok(Outcome::Capped);
        }
    }
    let result =
        AssertUnwindSafe(deps.provider.send(app, credentials, subscription, message)).catch_unwind().await;
    let result = result.unwrap_or_else(|_| {
        Err(SendError::Transient { detail: "provider call panicked".into(), retry_after: None })
    });
    match result {
        Ok(_accepted) => {
            retried(|| store.complete_send(&scope, subscription.subscription_id, EventKind::Sent)).await?;
            Ok(Outcome::Recorded(EventKind::Sent))
        }
        Err(SendError::Transient { detail, retry_after }) => {
            tracing::info!(subscription_id = %subscription.subscription_id, %detail, ?retry_after, "transient provider error");
            retried(|| store.release_send(&scope, subscription.subscription_id)).await?;
            Ok(Outcome::Retry { after: retry_after })
        }
        Err(e @ SendError::Halt { .. }) => {
            if !halted.swap(true, Ordering::Relaxed) {
                tracing::error!(app_id = %app.app_id, error = %e, "the provider refuses every send of this account: the job stops");
            }
            retried(|| store.release_send(&scope, subscription.subscription_id)).await?;
            Ok(Outcome::Halted)
        }
        Err(e) => {
            let dead = matches!(e, SendError::Permanent { dead_address: true, .. });
            tracing::warn!(subscription_id = %subscription.subscription_id, error = %e, dead, "permanent provider error");
            retried(|| store.complete_send(&scope, subscription.subscription_id, EventKind::Failed)).await?;
            if dead {
                let reason = UnsubscribeReason::dead_address(subscription.channel);
                store.unsubscribe(app.app_id, subscription.subscription_id, reason).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AppId, MessageId};

    fn job(retry: u32) -> SendJob {
        SendJob {
            app_id: AppId::new(),
            message_id: MessageId::new(),
            channel: Channel::Sms,
            subscription_ids: vec![],
            retry,
            released: false,
        }
    }

    #[test]
    fn recipients_without_a_hint_are_retried_together_after_the_backoff() {
        let failed: Vec<_> = (0..300).map(|_| (SubscriptionId::new(), None)).collect();
        for (retry, jitter) in [(0, 0.0), (0, 1.0), (4, 0.3)] {
            let jobs = retry_jobs(&job(retry), &failed, &RetryPolicy::SEND, jitter);
            assert_eq!(jobs.len(), 1);
            let (again, delay) = &jobs[0];
            assert_eq!(again.retry, retry + 1);
            assert_eq!(again.subscription_ids.len(), 300);
            assert_eq!(*delay, RetryPolicy::SEND.redelivery_delay(retry + 1, jitter, None));
        }
        let (first, _) = &retry_jobs(&job(0), &failed, &RetryPolicy::SEND, 0.5)[0];
        assert_eq!(first.subscription_ids, failed.iter().map(|(s, _)| *s).collect::<Vec<_>>());
    }

    #[test]
    fn recipients_are_grouped_by_wait_and_none_is_retried_before_its_retry_after() {
        let secs = |s| Some(Duration::from_secs(s));
        let hints = [secs(1), None, secs(30), secs(45), secs(60), secs(400), None, secs(3600)];
        let failed: Vec<_> = hints.iter().map(|h| (SubscriptionId::new(), *h)).collect();
        let jobs = retry_jobs(&job(0), &failed, &RetryPolicy::SEND, 0.0);
        let delays: Vec<f64> = jobs.iter().map(|(_, d)| d.as_secs_f64()).collect();
        let sizes: Vec<usize> = jobs.iter().map(|(j, _)| j.subscription_ids.len()).collect();
        // 1 s and none wait the 1.5 s backoff; 30 to 60 s together; 400 s; 3600 s capped to 900 s.
        assert_eq!((delays, sizes), (vec![1.5, 60.0, 400.0, 900.0], vec![3, 3, 1, 1]));
        for (sub, hint) in &failed {
            let (_, delay) = jobs.iter().find(|(j, _)| j.subscription_ids.contains(sub)).unwrap();
            assert!(*delay >= hint.unwrap_or_default().min(RetryPolicy::SEND.max_delay), "{hint:?}");
        }
        let all: usize = jobs.iter().map(|(j, _)| j.subscription_ids.len()).sum();
        assert_eq!(all, failed.len(), "each recipient in exactly one job");
    }
}

//! The scheduler's work: queue scheduled original messages whose time has come, put deferred
//! sends back on their queue once their recipients' quiet hours are over, and claim due
//! retargets and put their audience on the target channel's
//! queue, computed now (not at creation), packed 500 recipients per SQS message and 10
//! messages per SendMessageBatch.
//!
//! Crash safety: after every flush the retarget records a checkpoint (the last source
//! subscription whose targets are all on the queue, and the running totals) and renews its
//! lease. A run that dies leaves the lease to expire; the retarget then comes due again and the
//! next tick resumes after the checkpoint. At most the last unflushed-but-sent batch is queued
//! twice, and the senders' idempotency records make that harmless; the totals count it once.
//! A run near its deadline checkpoints and hands the lease back at once.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::{StreamExt, stream};
use serde::Serialize;

use crate::Store;
use crate::adapters::bus::{BusError, EventBus, RetargetDispatched};
use crate::adapters::queue::{ChannelQueues, QueueError};
use crate::adapters::store::{Start, StoreError};
use crate::domain::{
    Deferral, DispatchOutcome, DispatchProgress, Message, RECIPIENTS_PER_JOB, Retarget, SendJob,
    SubscriptionId, check_source,
};
use crate::keys;
use crate::services::audience::{AudienceSpec, AudienceStream};

/// Recipients per flush: ten full SQS messages, one SendMessageBatch.
const FLUSH_RECIPIENTS: usize = 10 * RECIPIENTS_PER_JOB;
/// Due retargets looked at per tick.
const DUE_PER_TICK: usize = 50;
/// Due deferrals read per page of the due index; a tick reads pages until none is left.
const DEFERRALS_PER_PAGE: usize = 500;
/// Deferrals released at once (each a claim, an enqueue and a delete, one after the other).
const RELEASES_IN_FLIGHT: usize = 16;
/// Stop dispatching this long before the invocation's deadline.
const DEADLINE_MARGIN: Duration = Duration::from_secs(30);

pub struct DispatchDeps {
    pub store: Store,
    pub queues: ChannelQueues,
    pub bus: EventBus,
}

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Bus(#[from] BusError),
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TickReport {
    pub claimed: usize,
    pub dispatched: usize,
    pub failed: usize,
    /// Stopped at the deadline or lost the lease; resumed by a later tick.
    pub paused: usize,
    /// Scheduled original messages put on their queue.
    pub messages_sent: usize,
    /// Deferred sends put back on their queue, their recipients' quiet hours over.
    pub deferrals_released: usize,
    pub errors: usize,
}

enum Ended {
    Dispatched,
    Failed,
    Paused,
}

/// One scheduler invocation.
pub async fn tick(deps: &DispatchDeps, deadline: Option<Instant>) -> Result<TickReport, StoreError> {
    let now = deps.store.clock().now();
    let mut report = TickReport::default();
    for (app_id, retarget_id) in deps.store.due_retargets(now, DUE_PER_TICK).await? {
        if near(deadline) {
            break;
        }
        let Some(claimed) = deps.store.claim_retarget(app_id, retarget_id, now).await? else { continue };
        report.claimed += 1;
        match dispatch(deps, &claimed, deadline).await {
            Ok(Ended::Dispatched) => report.dispatched += 1,
            Ok(Ended::Failed) => report.failed += 1,
            Ok(Ended::Paused) => report.paused += 1,
            Err(e) => {
                // The lease runs out and a later tick resumes from the checkpoint.
                tracing::error!(%retarget_id, error = %e, "dispatch interrupted");
                report.errors += 1;
            }
        }
    }
    for (app_id, message_id) in deps.store.due_messages(now, DUE_PER_TICK).await? {
        if near(deadline) {
            break;
        }
        let Some(message) = deps.store.claim_message(app_id, message_id, now).await? else { continue };
        match send_scheduled(deps, &message).await {
            Ok(()) => report.messages_sent += 1,
            Err(e) => {
                // Its lease runs out and a later tick queues it again (senders deduplicate).
                tracing::error!(%message_id, error = %e, "scheduled message not queued");
                report.errors += 1;
            }
        }
    }
    release_due(deps, now, deadline, &mut report).await?;
    if report.claimed > 0 || report.messages_sent > 0 || report.deferrals_released > 0 {
        tracing::info!(?report, "scheduler tick");
    }
    Ok(report)
}

/// Puts a scheduled original message's stored recipients on its channel's queue.
async fn send_scheduled(deps: &DispatchDeps, message: &Message) -> Result<(), DispatchError> {
    let recipients = deps.store.scheduled_recipients(message.app_id, message.message_id).await?;
    let jobs = SendJob::split(message.app_id, message.message_id, message.channel, &recipients);
    deps.queues.of(message.channel).send_jobs(&jobs).await?;
    deps.store.finish_scheduled_message(message.app_id, message.message_id).await?;
    tracing::info!(message_id = %message.message_id, recipients = recipients.len(), "scheduled message queued");
    Ok(())
}

/// Releases every deferral due at `now`, page after page of the due index, several at once:
/// a zone's morning can hold thousands (a million recipients over ten zones: about two
/// thousand per zone), and all of them are due now, not at the next ticks. A page in which
/// nothing could be claimed ends it (what is listed but held elsewhere, or not yet gone from
/// the eventually consistent index, is not read again and again).
async fn release_due(
    deps: &DispatchDeps,
    now: DateTime<Utc>,
    deadline: Option<Instant>,
    report: &mut TickReport,
) -> Result<(), StoreError> {
    enum Released {
        Done,
        NotClaimed,
        Failed,
    }
    loop {
        if near(deadline) {
            return Ok(());
        }
        let due = deps.store.due_deferrals(now, DEFERRALS_PER_PAGE).await?;
        let full = due.len() == DEFERRALS_PER_PAGE;
        let results: Vec<Result<Released, StoreError>> = stream::iter(due)
            .map(|(app_id, deferral_id)| async move {
                if near(deadline) {
                    return Ok(Released::NotClaimed);
                }
                let Some(deferral) = deps.store.claim_deferral(app_id, &deferral_id, now).await? else {
                    return Ok(Released::NotClaimed);
                };
                Ok(match release(deps, &deferral).await {
                    Ok(()) => Released::Done,
                    Err(e) => {
                        // Its lease runs out and a later tick releases it again (senders deduplicate).
                        tracing::error!(%deferral_id, error = %e, "deferred send not released");
                        Released::Failed
                    }
                })
            })
            .buffer_unordered(RELEASES_IN_FLIGHT)
            .collect()
            .await;
        let mut claimed = 0;
        for result in results {
            match result? {
                Released::Done => report.deferrals_released += 1,
                Released::Failed => report.errors += 1,
                Released::NotClaimed => continue,
            }
            claimed += 1;
        }
        if !full || claimed == 0 {
            return Ok(());
        }
    }
}

/// Puts a deferral's recipients back on their channel's queue, marked released (counted
/// `deferred` already), then forgets the deferral.
async fn release(deps: &DispatchDeps, deferral: &Deferral) -> Result<(), DispatchError> {
    let mut jobs =
        SendJob::split(deferral.app_id, deferral.message_id, deferral.channel, &deferral.subscription_ids);
    for job in &mut jobs {
        job.released = true;
    }
    deps.queues.of(deferral.channel).send_jobs(&jobs).await?;
    deps.store.finish_deferral(deferral.app_id, &deferral.deferral_id).await?;
    tracing::info!(message_id = %deferral.message_id, recipients = deferral.subscription_ids.len(), "deferred send released");
    Ok(())
}

fn near(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| Instant::now() + DEADLINE_MARGIN >= d)
}

async fn fail(deps: &DispatchDeps, rt: &Retarget, reason: String) -> Result<Ended, DispatchError> {
    tracing::warn!(retarget_id = %rt.retarget_id, %reason, "retarget failed");
    deps.store.finish_retarget(rt.app_id, rt.retarget_id, &DispatchOutcome::Failed(reason)).await?;
    Ok(Ended::Failed)
}

async fn dispatch(
    deps: &DispatchDeps,
    rt: &Retarget,
    deadline: Option<Instant>,
) -> Result<Ended, DispatchError> {
    let store = &deps.store;
    let Some(app) = store.get_app(rt.app_id).await? else {
        return fail(deps, rt, "the app no longer exists".into()).await;
    };
    let Some(source) = store.get_message(rt.app_id, rt.source_message_id).await? else {
        return fail(deps, rt, "the source message no longer exists".into()).await;
    };
    // The source is judged at dispatch time: it may have expired since the retarget was made.
    if let Err(e) = check_source(&app, &source, store.clock().now()) {
        return fail(deps, rt, format!("{}: {e}", e.code())).await;
    }

    let mut progress = rt.progress.unwrap_or_default();
    let start = progress.after.map_or(Start::Beginning, Start::After);
    let spec = AudienceSpec { source, predicate: rt.predicate.clone(), target: rt.channel };
    let mut audience = AudienceStream::new(store, spec, start);
    let mut batch = Batch::default();
    while let Some(resolved) = audience.next().await {
        let resolved = resolved?;
        batch.recipients.extend(resolved.targets.iter().map(|m| m.subscription_id));
        batch.unreachable += u64::from(resolved.unreachable);
        batch.last_source = Some(resolved.source);
        if batch.recipients.len() >= FLUSH_RECIPIENTS {
            if !flush(deps, rt, &mut progress, &mut batch).await? {
                return Ok(Ended::Paused);
            }
            if near(deadline) {
                // Hand the lease back now so the next tick resumes without waiting for it.
                store.checkpoint_retarget(rt, &progress, store.clock().now()).await?;
                return Ok(Ended::Paused);
            }
        }
    }
    if !flush(deps, rt, &mut progress, &mut batch).await? {
        return Ok(Ended::Paused);
    }

    store.mark_message_sending(rt.app_id, rt.message_id, progress.audience_size).await?;
    // Announce before finishing: a crash in between repeats the event (consumers dedupe by
    // retarget_id) rather than losing it.
    deps.bus
        .retarget_dispatched(&RetargetDispatched {
            app_id: rt.app_id,
            retarget_id: rt.retarget_id,
            message_id: rt.message_id,
            audience_size: progress.audience_size,
            enqueued: progress.enqueued,
            unreachable: progress.unreachable,
        })
        .await?;
    store.finish_retarget(rt.app_id, rt.retarget_id, &DispatchOutcome::Dispatched(progress)).await?;
    tracing::info!(retarget_id = %rt.retarget_id, audience_size = progress.audience_size, unreachable = progress.unreachable, "retarget dispatched");
    Ok(Ended::Dispatched)
}

#[derive(Default)]
struct Batch {
    recipients: Vec<SubscriptionId>,
    unreachable: u64,
    last_source: Option<SubscriptionId>,
}

/// Queues the batch and checkpoints after it. `false` when the lease was lost.
async fn flush(
    deps: &DispatchDeps,
    rt: &Retarget,
    progress: &mut DispatchProgress,
    batch: &mut Batch,
) -> Result<bool, DispatchError> {
    if batch.last_source.is_none() {
        return Ok(true);
    }
    let jobs = SendJob::split(rt.app_id, rt.message_id, rt.channel, &batch.recipients);
    deps.queues.of(rt.channel).send_jobs(&jobs).await?;
    let count = batch.recipients.len() as u64;
    progress.audience_size += count;
    progress.enqueued += count;
    progress.unreachable += batch.unreachable;
    progress.after = batch.last_source;
    *batch = Batch::default();
    let lease_until = deps.store.clock().now() + chrono::Duration::seconds(keys::DUE_LEASE_SECONDS);
    let held = deps.store.checkpoint_retarget(rt, progress, lease_until).await?;
    if !held {
        tracing::warn!(retarget_id = %rt.retarget_id, "dispatch lease lost to another run; stopping");
    }
    Ok(held)
}

//! Retargets: a follow-up message to the audience of a source message, scheduled for
//! `send_at` and dispatched exactly once by the scheduler.
//!
//! Life cycle: `scheduled` → `dispatching` (claimed by one scheduler run) → `dispatched` or
//! `failed`; `scheduled` → `cancelled`. Only a scheduled retarget sits in the due index
//! (GSI2); every transition out of `scheduled` removes it from there in the same conditional
//! update, so a cancelled or claimed retarget is never listed as due nor claimed twice.

use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnValue, TransactWriteItem};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::batch::{Item, key, n, s};
use super::messages::{Message, message_item};
use super::{Store, StoreError};
use crate::domain::{AppId, Channel, MessageId, RetargetId};
use crate::keys;
use crate::services::audience::Predicate;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetargetStatus {
    /// Waiting for `send_at`; listed in the due index.
    Scheduled,
    /// Claimed by a scheduler run; its audience is being computed and enqueued.
    Dispatching,
    /// Its recipients are on the target channel's queue.
    Dispatched,
    Cancelled,
    /// Dispatch gave up (e.g. the source had expired by then); see `failure`.
    Failed,
}

impl RetargetStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RetargetStatus::Scheduled => "scheduled",
            RetargetStatus::Dispatching => "dispatching",
            RetargetStatus::Dispatched => "dispatched",
            RetargetStatus::Cancelled => "cancelled",
            RetargetStatus::Failed => "failed",
        }
    }

    /// Whether the scheduler has taken it (it can no longer be cancelled).
    pub fn is_dispatch_started(self) -> bool {
        matches!(self, RetargetStatus::Dispatching | RetargetStatus::Dispatched | RetargetStatus::Failed)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retarget {
    pub retarget_id: RetargetId,
    pub app_id: AppId,
    /// The retarget's own message (what is sent; it gets its own events).
    pub message_id: MessageId,
    pub source_message_id: MessageId,
    pub predicate: Predicate,
    /// The target channel.
    pub channel: Channel,
    pub send_at: DateTime<Utc>,
    pub status: RetargetStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enqueued: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreachable: Option<u64>,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// How far a dispatch got (resumed from here after a crash or a timeout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<DispatchProgress>,
    /// Who holds the dispatch lease: only that run may checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_owner: Option<String>,
}

/// A dispatch checkpoint: everything up to and including source subscription `after` is on
/// the queue, with these totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispatchProgress {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<crate::domain::SubscriptionId>,
    pub audience_size: u64,
    pub enqueued: u64,
    pub unreachable: u64,
}

/// How long a claimed dispatch is held before another run may take it over (the scheduler's
/// timeout is shorter, so a live run never loses its lease).
pub const DISPATCH_LEASE_SECONDS: i64 = 6 * 60;

#[derive(Serialize, Deserialize)]
struct RetargetItem {
    pk: String,
    sk: String,
    gsi1pk: String,
    gsi1sk: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gsi2pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gsi2sk: Option<String>,
    #[serde(flatten)]
    retarget: Retarget,
}

impl RetargetItem {
    fn new(retarget: Retarget) -> Self {
        let scheduled = retarget.status == RetargetStatus::Scheduled;
        Self {
            pk: keys::retarget(retarget.app_id, retarget.retarget_id),
            sk: keys::SK_RT.into(),
            gsi1pk: keys::retargets_of(retarget.app_id, retarget.source_message_id),
            gsi1sk: retarget.retarget_id.to_string(),
            gsi2pk: scheduled.then(|| keys::DUE.to_owned()),
            gsi2sk: scheduled
                .then(|| keys::due_sort(due_epoch(retarget.send_at), retarget.app_id, retarget.retarget_id)),
            retarget,
        }
    }
}

fn decode(item: Item) -> Result<Retarget, StoreError> {
    Ok(serde_dynamo::from_item::<_, RetargetItem>(item)?.retarget)
}

/// The first whole second at or after `send_at`: a retarget is due once the clock's whole
/// seconds reach it, so it is never claimed before its `send_at`.
fn due_epoch(send_at: DateTime<Utc>) -> i64 {
    send_at.timestamp() + i64::from(send_at.timestamp_subsec_nanos() > 0)
}

/// The upper bound of the due index at `now`: every sort key of a send_at up to `now`.
fn due_bound(now: DateTime<Utc>) -> String {
    // `~` sorts after every ULID character and `#`, so the bound includes the whole second.
    format!("{:010}#~", now.timestamp())
}

fn parse_due_sort(sk: &str) -> Option<(AppId, RetargetId)> {
    let mut parts = sk.split('#');
    let (_epoch, app, rt) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    Some((AppId::parse(app).ok()?, RetargetId::parse(rt).ok()?))
}

fn build<T, E: std::fmt::Display>(r: Result<T, E>) -> Result<T, StoreError> {
    r.map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl Store {
    /// Stores a scheduled retarget and its own message in one transaction (both or neither).
    pub async fn create_retarget(&self, retarget: &Retarget, message: &Message) -> Result<(), StoreError> {
        if message.message_id != retarget.message_id || message.app_id != retarget.app_id {
            return Err(StoreError::Corrupt("a retarget's message must be its own".into()));
        }
        let put_retarget = build(
            Put::builder()
                .table_name(self.table())
                .set_item(Some(serde_dynamo::to_item(RetargetItem::new(retarget.clone()))?))
                .condition_expression("attribute_not_exists(pk)")
                .build(),
        )?;
        let put_message = build(
            Put::builder()
                .table_name(self.table())
                .set_item(Some(message_item(message)?))
                .condition_expression("attribute_not_exists(pk)")
                .build(),
        )?;
        self.client()
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put_retarget).build())
            .transact_items(TransactWriteItem::builder().put(put_message).build())
            .send()
            .await
            .map_err(StoreError::dynamo("TransactWriteItems retarget"))?;
        Ok(())
    }

    pub async fn get_retarget(&self, app_id: AppId, id: RetargetId) -> Result<Option<Retarget>, StoreError> {
        self.read_retarget(app_id, id, false).await
    }

    async fn read_retarget(
        &self,
        app_id: AppId,
        id: RetargetId,
        consistent: bool,
    ) -> Result<Option<Retarget>, StoreError> {
        let output = self
            .client()
            .get_item()
            .table_name(self.table())
            .set_key(Some(key(keys::retarget(app_id, id), keys::SK_RT)))
            .consistent_read(consistent)
            .send()
            .await
            .map_err(StoreError::dynamo("GetItem retarget"))?;
        output.item.map(decode).transpose()
    }

    /// The retargets of one source message, in id (creation) order, through GSI1.
    pub async fn retargets_of_message(
        &self,
        app_id: AppId,
        source: MessageId,
    ) -> Result<Vec<Retarget>, StoreError> {
        let mut pages = self
            .client()
            .query()
            .table_name(self.table())
            .index_name(keys::GSI1)
            .key_condition_expression("gsi1pk = :source")
            .expression_attribute_values(":source", s(keys::retargets_of(app_id, source)))
            .scan_index_forward(true)
            .into_paginator()
            .send();
        let mut found = Vec::new();
        while let Some(page) = pages.next().await {
            for item in
                page.map_err(StoreError::dynamo("Query retargets of message"))?.items.unwrap_or_default()
            {
                found.push(decode(item)?);
            }
        }
        Ok(found)
    }

    /// Cancels a scheduled retarget (and takes it out of the due index). A cancelled one is
    /// returned unchanged; `None` when the app has no such retarget;
    /// [`StoreError::AlreadyDispatched`] once the scheduler has claimed it.
    pub async fn cancel_retarget(
        &self,
        app_id: AppId,
        id: RetargetId,
    ) -> Result<Option<Retarget>, StoreError> {
        let result = self
            .client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(key(keys::retarget(app_id, id), keys::SK_RT)))
            .condition_expression("attribute_exists(pk) AND #status = :scheduled")
            .update_expression("SET #status = :cancelled REMOVE gsi2pk, gsi2sk")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":scheduled", s(RetargetStatus::Scheduled.as_str()))
            .expression_attribute_values(":cancelled", s(RetargetStatus::Cancelled.as_str()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(StoreError::dynamo("UpdateItem cancel retarget"));
        match result {
            Ok(output) => output.attributes.map(decode).transpose(),
            Err(e) if e.is_condition_failed() => {
                // Not scheduled (or missing): a status never returns to scheduled, so one
                // consistent read tells which.
                match self.read_retarget(app_id, id, true).await? {
                    None => Ok(None),
                    Some(r) if r.status == RetargetStatus::Cancelled => Ok(Some(r)),
                    Some(r) if r.status.is_dispatch_started() => Err(StoreError::AlreadyDispatched(r.status)),
                    Some(r) => Err(StoreError::Corrupt(format!(
                        "retarget {id} failed the cancel condition while {}",
                        r.status.as_str()
                    ))),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Up to `limit` retargets due at `now` (send_at ≤ now, still scheduled), earliest first.
    /// GSI2 is eventually consistent: [`Store::claim_retarget`] is what decides.
    pub async fn due_retargets(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(AppId, RetargetId)>, StoreError> {
        let mut due = Vec::new();
        let mut start: Option<Item> = None;
        while due.len() < limit {
            let page_size = i32::try_from(limit - due.len()).unwrap_or(i32::MAX).min(1000);
            let output = self
                .client()
                .query()
                .table_name(self.table())
                .index_name(keys::GSI2)
                .key_condition_expression("gsi2pk = :due AND gsi2sk <= :now")
                .expression_attribute_values(":due", s(keys::DUE))
                .expression_attribute_values(":now", s(due_bound(now)))
                .limit(page_size)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(StoreError::dynamo("Query due retargets"))?;
            for item in output.items.unwrap_or_default() {
                match item.get(keys::GSI2_SK) {
                    Some(AttributeValue::S(sk)) => due.push(
                        parse_due_sort(sk)
                            .ok_or_else(|| StoreError::Corrupt(format!("due sort key `{sk}`")))?,
                    ),
                    _ => return Err(StoreError::Corrupt("due index entry without gsi2sk".into())),
                }
            }
            match output.last_evaluated_key {
                Some(last) if !last.is_empty() => start = Some(last),
                _ => break,
            }
        }
        due.truncate(limit);
        Ok(due)
    }

    /// Takes a retarget for dispatch: a scheduled one whose send_at has come, or a dispatching
    /// one whose run's lease expired (it crashed or timed out; the new run resumes from the
    /// checkpoint). It stays in the due index keyed by its lease expiry, so an abandoned
    /// dispatch comes due again by itself. `None` when another run holds it, it was cancelled
    /// or finished, or it is missing.
    pub async fn claim_retarget(
        &self,
        app_id: AppId,
        id: RetargetId,
        now: DateTime<Utc>,
    ) -> Result<Option<Retarget>, StoreError> {
        let lease_until = now + chrono::Duration::seconds(DISPATCH_LEASE_SECONDS);
        let result = self
            .client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(key(keys::retarget(app_id, id), keys::SK_RT)))
            .condition_expression("gsi2sk <= :now AND (#status = :scheduled OR #status = :dispatching)")
            .update_expression("SET #status = :dispatching, gsi2sk = :lease, lease_owner = :owner")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":scheduled", s(RetargetStatus::Scheduled.as_str()))
            .expression_attribute_values(":dispatching", s(RetargetStatus::Dispatching.as_str()))
            .expression_attribute_values(":now", s(due_bound(now)))
            .expression_attribute_values(":lease", s(keys::due_sort(due_epoch(lease_until), app_id, id)))
            .expression_attribute_values(":owner", s(ulid::Ulid::new().to_string()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(StoreError::dynamo("UpdateItem claim retarget"));
        match result {
            Ok(output) => output.attributes.map(decode).transpose(),
            Err(e) if e.is_condition_failed() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Saves a dispatch's progress and moves its lease to `lease_until`. `false` when this run
    /// no longer holds the lease (another run took over): it must stop at once.
    pub async fn checkpoint_retarget(
        &self,
        claimed: &Retarget,
        progress: &DispatchProgress,
        lease_until: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let owner = claimed.lease_owner.clone().unwrap_or_default();
        let result = self
            .client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(key(keys::retarget(claimed.app_id, claimed.retarget_id), keys::SK_RT)))
            .condition_expression("#status = :dispatching AND lease_owner = :owner")
            .update_expression("SET progress = :progress, gsi2sk = :lease")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":dispatching", s(RetargetStatus::Dispatching.as_str()))
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":progress", AttributeValue::M(serde_dynamo::to_item(progress)?))
            .expression_attribute_values(
                ":lease",
                s(keys::due_sort(due_epoch(lease_until), claimed.app_id, claimed.retarget_id)),
            )
            .send()
            .await
            .map_err(StoreError::dynamo("UpdateItem checkpoint retarget"));
        match result {
            Ok(_) => Ok(true),
            Err(e) if e.is_condition_failed() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Records how a claimed retarget's dispatch ended (`dispatched` or `failed`). `None` when
    /// it is not dispatching (missing, or already finished).
    #[allow(clippy::too_many_arguments)]
    pub async fn finish_retarget(
        &self,
        app_id: AppId,
        id: RetargetId,
        status: RetargetStatus,
        audience_size: Option<u64>,
        enqueued: Option<u64>,
        unreachable: Option<u64>,
        failure: Option<String>,
    ) -> Result<Option<Retarget>, StoreError> {
        if !matches!(status, RetargetStatus::Dispatched | RetargetStatus::Failed) {
            return Err(StoreError::Corrupt(format!(
                "a dispatch ends dispatched or failed, not {}",
                status.as_str()
            )));
        }
        let mut sets = vec!["#status = :status".to_owned()];
        let mut update = self
            .client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(key(keys::retarget(app_id, id), keys::SK_RT)))
            .condition_expression("#status = :dispatching")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":dispatching", s(RetargetStatus::Dispatching.as_str()))
            .expression_attribute_values(":status", s(status.as_str()))
            .return_values(ReturnValue::AllNew);
        for (name, value) in
            [("audience_size", audience_size), ("enqueued", enqueued), ("unreachable", unreachable)]
        {
            if let Some(v) = value {
                sets.push(format!("#{name} = :{name}"));
                update = update
                    .expression_attribute_names(format!("#{name}"), name)
                    .expression_attribute_values(format!(":{name}"), n(v));
            }
        }
        if let Some(failure) = failure {
            sets.push("#failure = :failure".into());
            update = update
                .expression_attribute_names("#failure", "failure")
                .expression_attribute_values(":failure", s(failure));
        }
        let result = update
            .update_expression(format!("SET {} REMOVE gsi2pk, gsi2sk, lease_owner", sets.join(", ")))
            .send()
            .await
            .map_err(StoreError::dynamo("UpdateItem finish retarget"));
        match result {
            Ok(output) => output.attributes.map(decode).transpose(),
            Err(e) if e.is_condition_failed() => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_keys_round_trip_and_bound_whole_seconds() {
        let app = AppId::new();
        let rt = RetargetId::new();
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let sk = keys::due_sort(due_epoch(at), app, rt);
        assert_eq!(parse_due_sort(&sk), Some((app, rt)));
        assert!(sk.as_str() <= due_bound(at).as_str());
        assert!(sk.as_str() > due_bound(at - chrono::Duration::seconds(1)).as_str());
        // A send_at inside a second is due only from the next whole second on.
        let later = at + chrono::Duration::milliseconds(300);
        let sk = keys::due_sort(due_epoch(later), app, rt);
        assert!(sk.as_str() > due_bound(later).as_str());
        assert!(sk.as_str() <= due_bound(at + chrono::Duration::seconds(1)).as_str());
        assert_eq!(parse_due_sort("nope"), None);
    }
}

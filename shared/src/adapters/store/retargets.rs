//! Retargets: a follow-up message to the audience of a source message, scheduled for
//! `send_at` and dispatched exactly once by the scheduler.
//!
//! Life cycle: `scheduled` → `dispatching` (claimed by one scheduler run) → `dispatched` or
//! `failed`; `scheduled` → `cancelled`. Only a scheduled retarget sits in the due index
//! (GSI2); every transition out of `scheduled` removes it from there in the same conditional
//! update, so a cancelled or claimed retarget is never listed as due nor claimed twice.

use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::batch::{Item, key, n, s};
use super::messages::message_item;
use super::{Store, StoreError, unless_condition_failed};
use crate::domain::{
    AppId, DispatchOutcome, DispatchProgress, Message, MessageId, Retarget, RetargetId, RetargetStatus,
    SubscriptionId,
};
use crate::keys;

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
                .then(|| keys::due_sort(retarget.send_at, retarget.app_id, retarget.retarget_id)),
            retarget,
        }
    }
}

fn decode(item: Item) -> Result<Retarget, StoreError> {
    Ok(serde_dynamo::from_item::<_, RetargetItem>(item)?.retarget)
}

impl Store {
    /// An UpdateItem of one retarget's item.
    fn update_retarget(&self, app_id: AppId, id: RetargetId) -> UpdateItemFluentBuilder {
        self.client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(key(keys::retarget(app_id, id), keys::SK_RT)))
    }

    /// Stores a scheduled retarget and its own message in one transaction (both or neither).
    pub async fn create_retarget(&self, retarget: &Retarget, message: &Message) -> Result<(), StoreError> {
        if message.message_id != retarget.message_id || message.app_id != retarget.app_id {
            return Err(StoreError::Corrupt("a retarget's message must be its own".into()));
        }
        let put_retarget =
            self.transact_put_new(serde_dynamo::to_item(RetargetItem::new(retarget.clone()))?)?;
        let put_message = self.transact_put_new(message_item(message)?)?;
        self.client()
            .transact_write_items()
            .transact_items(put_retarget)
            .transact_items(put_message)
            .send()
            .await
            .map_err(StoreError::dynamo("TransactWriteItems retarget"))?;
        Ok(())
    }

    /// A new message and the retargets declared with it (its follow-ups, each with its own
    /// message), all in one transaction: either all exist or none. A scheduled message
    /// (`recipients` given) has its recipients written first, as [`Store::create_scheduled_message`]
    /// does; a direct one is the caller's to enqueue once this returns.
    pub async fn create_message_with_follow_ups(
        &self,
        message: &Message,
        scheduled_recipients: Option<&[SubscriptionId]>,
        follow_ups: &[(Retarget, Message)],
    ) -> Result<(), StoreError> {
        let item = match scheduled_recipients {
            Some(recipients) => {
                self.put_recipient_chunks(message, recipients).await?;
                super::scheduled::scheduled_message_item(message)?
            }
            None => message_item(message)?,
        };
        let mut items = vec![self.transact_put_new(item)?];
        for (retarget, retarget_message) in follow_ups {
            if retarget.source_message_id != message.message_id
                || retarget_message.message_id != retarget.message_id
            {
                return Err(StoreError::Corrupt(
                    "a follow-up must be its own message's, of this message".into(),
                ));
            }
            items.push(self.transact_put_new(serde_dynamo::to_item(RetargetItem::new(retarget.clone()))?)?);
            items.push(self.transact_put_new(message_item(retarget_message)?)?);
        }
        self.client()
            .transact_write_items()
            .set_transact_items(Some(items))
            .client_request_token(super::new_write_token())
            .send()
            .await
            .map_err(StoreError::dynamo("TransactWriteItems message with follow-ups"))?;
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
            .update_retarget(app_id, id)
            .condition_expression("attribute_exists(pk) AND #status = :scheduled")
            .update_expression("SET #status = :cancelled REMOVE gsi2pk, gsi2sk")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":scheduled", s(RetargetStatus::Scheduled.as_str()))
            .expression_attribute_values(":cancelled", s(RetargetStatus::Cancelled.as_str()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(StoreError::dynamo("UpdateItem cancel retarget"));
        match unless_condition_failed(result)? {
            Some(output) => output.attributes.map(decode).transpose(),
            None => {
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
        }
    }

    /// Up to `limit` retargets due at `now` (send_at ≤ now, still scheduled), earliest first.
    /// GSI2 is eventually consistent: [`Store::claim_retarget`] is what decides.
    pub async fn due_retargets(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(AppId, RetargetId)>, StoreError> {
        self.due_entries(keys::DUE, now, limit).await
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
        let result = self
            .update_retarget(app_id, id)
            .condition_expression("gsi2sk <= :now AND (#status = :scheduled OR #status = :dispatching)")
            .update_expression("SET #status = :dispatching, gsi2sk = :lease, lease_owner = :owner")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":scheduled", s(RetargetStatus::Scheduled.as_str()))
            .expression_attribute_values(":dispatching", s(RetargetStatus::Dispatching.as_str()))
            .expression_attribute_values(":now", s(keys::due_bound(now)))
            .expression_attribute_values(":lease", s(keys::due_lease(now, app_id, id)))
            .expression_attribute_values(":owner", s(ulid::Ulid::new().to_string()))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(StoreError::dynamo("UpdateItem claim retarget"));
        unless_condition_failed(result)?.and_then(|output| output.attributes).map(decode).transpose()
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
            .update_retarget(claimed.app_id, claimed.retarget_id)
            .condition_expression("#status = :dispatching AND lease_owner = :owner")
            .update_expression("SET progress = :progress, gsi2sk = :lease")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":dispatching", s(RetargetStatus::Dispatching.as_str()))
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":progress", AttributeValue::M(serde_dynamo::to_item(progress)?))
            .expression_attribute_values(
                ":lease",
                s(keys::due_sort(lease_until, claimed.app_id, claimed.retarget_id)),
            )
            .send()
            .await
            .map_err(StoreError::dynamo("UpdateItem checkpoint retarget"));
        Ok(unless_condition_failed(result)?.is_some())
    }

    /// Records how a claimed retarget's dispatch ended. `None` when it is not dispatching
    /// (missing, or already finished).
    pub async fn finish_retarget(
        &self,
        app_id: AppId,
        id: RetargetId,
        outcome: &DispatchOutcome,
    ) -> Result<Option<Retarget>, StoreError> {
        let update = self
            .update_retarget(app_id, id)
            .condition_expression("#status = :dispatching")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":dispatching", s(RetargetStatus::Dispatching.as_str()))
            .expression_attribute_values(":status", s(outcome.status().as_str()))
            .return_values(ReturnValue::AllNew);
        let update = match outcome {
            DispatchOutcome::Dispatched(totals) => update
                .update_expression(
                    "SET #status = :status, #audience_size = :audience_size, #enqueued = :enqueued, \
                     #unreachable = :unreachable REMOVE gsi2pk, gsi2sk, lease_owner",
                )
                .expression_attribute_names("#audience_size", "audience_size")
                .expression_attribute_names("#enqueued", "enqueued")
                .expression_attribute_names("#unreachable", "unreachable")
                .expression_attribute_values(":audience_size", n(totals.audience_size))
                .expression_attribute_values(":enqueued", n(totals.enqueued))
                .expression_attribute_values(":unreachable", n(totals.unreachable)),
            DispatchOutcome::Failed(reason) => update
                .update_expression(
                    "SET #status = :status, #failure = :failure REMOVE gsi2pk, gsi2sk, lease_owner",
                )
                .expression_attribute_names("#failure", "failure")
                .expression_attribute_values(":failure", s(reason)),
        };
        let updated = unless_condition_failed(
            update.send().await.map_err(StoreError::dynamo("UpdateItem finish retarget")),
        )?;
        updated.and_then(|output| output.attributes).map(decode).transpose()
    }
}

//! Original messages scheduled for later (`POST /v1/messages` with a future `send_at`). Their
//! recipients are resolved at creation and kept in chunk items beside the message; the message
//! sits in the due index until the scheduler puts the chunks on the queue.
//!
//! Like retargets, a claim leaves the message in the due index keyed by a lease expiry: a run
//! that dies before finishing lets it come due again, and the senders' idempotency records make
//! a repeated enqueue harmless.

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use std::str::FromStr;

use chrono::{DateTime, Utc};

use super::batch::{Item, key, n, put_request, s};
use super::messages::message_item;
use super::{Store, StoreError, unless_condition_failed};
use crate::domain::{AppId, Message, MessageId, MessageStatus, RECIPIENTS_PER_JOB, SubscriptionId};
use crate::keys;

impl Store {
    /// Stores a scheduled message and its recipients. Chunks first: the message only becomes
    /// due once all of its recipients are stored.
    pub async fn create_scheduled_message(
        &self,
        message: &Message,
        recipients: &[SubscriptionId],
    ) -> Result<(), StoreError> {
        self.put_recipient_chunks(message, recipients).await?;
        self.put_new(scheduled_message_item(message)?, "PutItem scheduled message").await
    }

    /// A scheduled message's recipients, [`RECIPIENTS_PER_JOB`] per item: written before the
    /// message item, so a message the scheduler can see always has its recipients.
    pub(crate) async fn put_recipient_chunks(
        &self,
        message: &Message,
        recipients: &[SubscriptionId],
    ) -> Result<(), StoreError> {
        let pk = keys::message(message.app_id, message.message_id);
        let mut writes = Vec::new();
        for (i, chunk) in recipients.chunks(RECIPIENTS_PER_JOB).enumerate() {
            let mut item = key(pk.clone(), keys::recipients_chunk(i));
            let ids: Vec<String> = chunk.iter().map(ToString::to_string).collect();
            item.insert("subscription_ids".into(), s(ids.join(",")));
            item.insert(keys::EXPIRES_AT.into(), n(message.expires_at.timestamp()));
            writes.push(put_request(item)?);
        }
        self.batch_write(writes).await
    }

    /// Up to `limit` scheduled messages whose time has come (or whose dispatch lease ran out),
    /// earliest first. GSI2 is eventually consistent: [`Store::claim_message`] decides.
    pub async fn due_messages(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(AppId, MessageId)>, StoreError> {
        self.due_entries(keys::DUE_MESSAGES, now, limit).await
    }

    /// Up to `limit` entries of a due index partition (`DUE` or `DUE#MSG`) due at `now`.
    pub(super) async fn due_entries<I: FromStr>(
        &self,
        partition: &str,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(AppId, I)>, StoreError> {
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
                .expression_attribute_values(":due", s(partition))
                .expression_attribute_values(":now", s(keys::due_bound(now)))
                .limit(page_size)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(StoreError::dynamo("Query due index"))?;
            for item in output.items.unwrap_or_default() {
                let entry = match item.get(keys::GSI2_SK) {
                    Some(AttributeValue::S(sk)) => keys::parse_due_sort(sk)
                        .ok_or_else(|| StoreError::Corrupt(format!("due sort key `{sk}`")))?,
                    _ => return Err(StoreError::Corrupt("due index entry without gsi2sk".into())),
                };
                due.push(entry);
            }
            match output.last_evaluated_key {
                Some(last) if !last.is_empty() => start = Some(last),
                _ => break,
            }
        }
        due.truncate(limit);
        Ok(due)
    }

    /// Takes a due scheduled message: it becomes `sending` and its due entry moves to the
    /// lease expiry. `None` when another run holds it or it is not due.
    pub async fn claim_message(
        &self,
        app_id: AppId,
        id: MessageId,
        now: DateTime<Utc>,
    ) -> Result<Option<Message>, StoreError> {
        let result = self
            .client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(key(keys::message(app_id, id), keys::SK_MSG)))
            .condition_expression("gsi2pk = :due AND gsi2sk <= :now")
            .update_expression("SET #status = :sending, gsi2sk = :lease")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":due", s(keys::DUE_MESSAGES))
            .expression_attribute_values(":now", s(keys::due_bound(now)))
            .expression_attribute_values(":sending", s(MessageStatus::Sending.as_str()))
            .expression_attribute_values(":lease", s(keys::due_lease(now, app_id, id)))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(StoreError::dynamo("UpdateItem claim message"));
        unless_condition_failed(result)?
            .and_then(|output| output.attributes)
            .map(|item| Ok(serde_dynamo::from_item::<_, super::messages::MessageItem>(item)?.message))
            .transpose()
    }

    /// The recipients stored with a scheduled message, in chunk order.
    pub async fn scheduled_recipients(
        &self,
        app_id: AppId,
        id: MessageId,
    ) -> Result<Vec<SubscriptionId>, StoreError> {
        let mut pages = self
            .client()
            .query()
            .table_name(self.table())
            .key_condition_expression("pk = :pk AND begins_with(sk, :chunk)")
            .expression_attribute_values(":pk", s(keys::message(app_id, id)))
            .expression_attribute_values(":chunk", s(keys::SK_RECIPIENTS_PREFIX))
            .into_paginator()
            .send();
        let mut recipients = Vec::new();
        while let Some(page) = pages.next().await {
            for item in page.map_err(StoreError::dynamo("Query recipients"))?.items.unwrap_or_default() {
                if let Some(AttributeValue::S(ids)) = item.get("subscription_ids") {
                    recipients.extend(ids.split(',').filter_map(|id| SubscriptionId::parse(id).ok()));
                }
            }
        }
        Ok(recipients)
    }

    /// A scheduled message is on the queue: it leaves the due index.
    pub async fn finish_scheduled_message(&self, app_id: AppId, id: MessageId) -> Result<(), StoreError> {
        self.client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(key(keys::message(app_id, id), keys::SK_MSG)))
            .condition_expression("attribute_exists(pk)")
            .update_expression("REMOVE gsi2pk, gsi2sk")
            .send()
            .await
            .map_err(StoreError::dynamo("UpdateItem finish message"))?;
        Ok(())
    }
}

/// A scheduled original message's item: in the due index until the scheduler sends it.
pub(crate) fn scheduled_message_item(message: &Message) -> Result<Item, StoreError> {
    let mut item: Item = message_item(message)?;
    item.insert(keys::GSI2_PK.into(), s(keys::DUE_MESSAGES));
    item.insert(keys::GSI2_SK.into(), s(keys::due_sort(message.send_at, message.app_id, message.message_id)));
    Ok(item)
}

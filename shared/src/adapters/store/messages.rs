//! Messages: one send (original or retarget) to many subscriptions of one channel.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Duration;
use serde::{Deserialize, Serialize};

use super::batch::{Item, key, s};
use super::{Store, StoreError};
use crate::domain::{AppId, KindCounts, Message, MessageId, MessageStatus};
use crate::keys;

#[derive(Serialize, Deserialize)]
pub(crate) struct MessageItem {
    pk: String,
    sk: String,
    /// The app's messages, newest first (`GET /v1/messages`): `APP#{app}#MSGS` / `{msg}`.
    /// Absent on items written before the listing existed (they are not listed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gsi1pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gsi1sk: Option<String>,
    /// TTL of the message item: its data's expiry plus the tombstone period.
    expires_at: i64,
    #[serde(flatten)]
    pub(crate) message: Message,
}

/// The stored item of a message (also written by the retarget transaction).
pub(crate) fn message_item(message: &Message) -> Result<Item, StoreError> {
    Ok(serde_dynamo::to_item(MessageItem {
        pk: keys::message(message.app_id, message.message_id),
        sk: keys::SK_MSG.into(),
        gsi1pk: Some(keys::message_list(message.app_id)),
        gsi1sk: Some(message.message_id.to_string()),
        expires_at: (message.expires_at + Duration::days(keys::MESSAGE_TOMBSTONE_DAYS)).timestamp(),
        message: message.clone(),
    })?)
}

/// The message of an item whose own TTL has not passed: DynamoDB deletes expired items only
/// eventually, so reads treat them as gone themselves.
fn live(item: MessageItem, now: i64) -> Option<Message> {
    (item.expires_at > now).then_some(item.message)
}

impl Store {
    pub async fn create_message(&self, message: &Message) -> Result<(), StoreError> {
        self.put_new(message_item(message)?, "PutItem message").await
    }

    pub async fn get_message(&self, app_id: AppId, id: MessageId) -> Result<Option<Message>, StoreError> {
        let output = self
            .client()
            .get_item()
            .table_name(self.table())
            .set_key(Some(key(keys::message(app_id, id), keys::SK_MSG)))
            .send()
            .await
            .map_err(StoreError::dynamo("GetItem message"))?;
        let now = self.clock().now_epoch();
        match output.item {
            Some(item) => Ok(live(serde_dynamo::from_item::<_, MessageItem>(item)?, now)),
            None => Ok(None),
        }
    }

    /// A message and its per-kind stats (the message item and its counters are read in
    /// parallel). Stats are zero once the data has expired.
    pub async fn get_message_with_stats(
        &self,
        app_id: AppId,
        id: MessageId,
    ) -> Result<Option<(Message, KindCounts)>, StoreError> {
        let (message, mut stats) = tokio::try_join!(self.get_message(app_id, id), self.read_stats(id))?;
        let Some(message) = message else { return Ok(None) };
        if message.is_expired_at(self.clock().now()) {
            stats = KindCounts::default();
        }
        Ok(Some((message, stats)))
    }

    /// Up to `limit` of the app's messages, newest first, older than `before` when given (the
    /// last one of the previous page): one Query of the app's list in GSI1. The next page's
    /// `before` when there may be more.
    pub async fn list_messages(
        &self,
        app_id: AppId,
        limit: usize,
        before: Option<MessageId>,
    ) -> Result<(Vec<Message>, Option<MessageId>), StoreError> {
        let mut query = self
            .client()
            .query()
            .table_name(self.table())
            .index_name(keys::GSI1)
            .key_condition_expression(if before.is_some() {
                "gsi1pk = :pk AND gsi1sk < :before"
            } else {
                "gsi1pk = :pk"
            })
            .expression_attribute_values(":pk", s(keys::message_list(app_id)))
            .scan_index_forward(false)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX));
        if let Some(before) = before {
            query = query.expression_attribute_values(":before", s(before.to_string()));
        }
        let output = query.send().await.map_err(StoreError::dynamo("Query message list"))?;
        let now = self.clock().now_epoch();
        let mut messages = Vec::new();
        let mut last = None;
        for item in output.items.unwrap_or_default() {
            let item: MessageItem = serde_dynamo::from_item(item)?;
            last = Some(item.message.message_id);
            messages.extend(live(item, now));
        }
        let next = output.last_evaluated_key.is_some().then_some(last).flatten();
        Ok((messages, next))
    }

    /// A listed message's per-kind stats (zero once its data has expired).
    pub async fn stats_of(&self, message: &Message) -> Result<KindCounts, StoreError> {
        if message.is_expired_at(self.clock().now()) {
            return Ok(KindCounts::default());
        }
        self.read_stats(message.message_id).await
    }

    /// This app's messages among `ids`; others' and missing ones are absent.
    pub async fn get_messages(
        &self,
        app_id: AppId,
        ids: impl IntoIterator<Item = MessageId>,
    ) -> Result<HashMap<MessageId, Message>, StoreError> {
        let mut unique: Vec<MessageId> = ids.into_iter().collect();
        unique.sort();
        unique.dedup();
        let keys = unique.iter().map(|id| key(keys::message(app_id, *id), keys::SK_MSG)).collect();
        let now = self.clock().now_epoch();
        let mut found = HashMap::new();
        for item in self.batch_get(keys, None, false).await? {
            if let Some(message) = live(serde_dynamo::from_item::<_, MessageItem>(item)?, now) {
                found.insert(message.message_id, message);
            }
        }
        Ok(found)
    }

    /// A scheduled message goes out: it is now sending, to this many recipients.
    pub async fn mark_message_sending(
        &self,
        app_id: AppId,
        id: MessageId,
        recipients: u64,
    ) -> Result<(), StoreError> {
        self.client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(key(keys::message(app_id, id), keys::SK_MSG)))
            .condition_expression("attribute_exists(pk)")
            .update_expression("SET #status = :sending, recipients = :n")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":sending", s(MessageStatus::Sending.as_str()))
            .expression_attribute_values(":n", AttributeValue::N(recipients.to_string()))
            .send()
            .await
            .map_err(StoreError::dynamo("UpdateItem message sending"))?;
        Ok(())
    }
}

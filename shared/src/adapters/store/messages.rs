//! Messages: one send (original or retarget) to many subscriptions of one channel.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::batch::{Item, key, s};
use super::interactions::MessageScope;
use super::{Store, StoreError};
use crate::domain::{AppId, Channel, EventKind, MessageId};
use crate::keys;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contents {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub body: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    /// Waiting for its `send_at`.
    Scheduled,
    /// Its recipients are on the channel's queue.
    Sending,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub message_id: MessageId,
    pub app_id: AppId,
    pub channel: Channel,
    pub contents: Contents,
    pub created_at: DateTime<Utc>,
    /// When the message's interaction data expires (`created_at + 30 days`). Stored under
    /// another name: `expires_at` on the item is the TTL of the message item itself.
    #[serde(rename = "data_expires_at")]
    pub expires_at: DateTime<Utc>,
    pub retargetable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retarget_of: Option<MessageId>,
    pub recipients: u64,
    pub send_at: DateTime<Utc>,
    pub status: MessageStatus,
    pub shards: u8,
}

impl Message {
    /// A new message created at `now`, its data expiring 30 days later.
    pub fn new(app_id: AppId, channel: Channel, contents: Contents, now: DateTime<Utc>) -> Self {
        Self {
            message_id: MessageId::at(now),
            app_id,
            channel,
            contents,
            created_at: now,
            expires_at: now + Duration::days(keys::RETENTION_DAYS),
            retargetable: false,
            retarget_of: None,
            recipients: 0,
            send_at: now,
            status: MessageStatus::Sending,
            shards: keys::DEFAULT_SHARDS,
        }
    }

    pub fn scope(&self) -> MessageScope {
        MessageScope {
            app_id: self.app_id,
            message_id: self.message_id,
            expires_at: self.expires_at.timestamp(),
            shards: self.shards,
        }
    }

    pub fn is_expired_at(&self, now: DateTime<Utc>) -> bool {
        now >= self.expires_at
    }
}

#[derive(Serialize, Deserialize)]
pub(crate) struct MessageItem {
    pk: String,
    sk: String,
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
        self.client()
            .put_item()
            .table_name(self.table())
            .set_item(Some(message_item(message)?))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(StoreError::dynamo("PutItem message"))?;
        Ok(())
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

    /// A message and its per-kind stats, read in one Query (the message item and its stats
    /// shards share a partition). Stats are zero once the data has expired.
    pub async fn get_message_with_stats(
        &self,
        app_id: AppId,
        id: MessageId,
    ) -> Result<Option<(Message, HashMap<EventKind, u64>)>, StoreError> {
        let mut pages = self
            .client()
            .query()
            .table_name(self.table())
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(keys::message(app_id, id)))
            .into_paginator()
            .send();
        let mut message = None;
        let mut stats: HashMap<EventKind, u64> = EventKind::ALL.into_iter().map(|k| (k, 0)).collect();
        while let Some(page) = pages.next().await {
            for item in page.map_err(StoreError::dynamo("Query message"))?.items.unwrap_or_default() {
                match item.get(keys::SK) {
                    Some(AttributeValue::S(sk)) if sk == keys::SK_MSG => {
                        message =
                            live(serde_dynamo::from_item::<_, MessageItem>(item)?, self.clock().now_epoch());
                    }
                    Some(AttributeValue::S(sk)) if sk.starts_with(keys::SK_STATS_PREFIX) => {
                        for kind in EventKind::ALL {
                            if let Some(AttributeValue::N(v)) = item.get(kind.as_str()) {
                                *stats.entry(kind).or_default() += v.parse::<u64>().unwrap_or(0);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        let Some(message) = message else { return Ok(None) };
        if message.is_expired_at(self.clock().now()) {
            stats.values_mut().for_each(|v| *v = 0);
        }
        Ok(Some((message, stats)))
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
            .expression_attribute_values(":sending", s("sending"))
            .expression_attribute_values(":n", AttributeValue::N(recipients.to_string()))
            .send()
            .await
            .map_err(StoreError::dynamo("UpdateItem message sending"))?;
        Ok(())
    }
}

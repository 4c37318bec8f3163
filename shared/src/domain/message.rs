//! Messages: one send (original or retarget) to many subscriptions of one channel, and the
//! rules for a message as the source of an audience.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{App, AppId, Channel, Contents, MessageId, Plan, RetargetId};
use crate::keys;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageStatus {
    /// Waiting for its `send_at`.
    Scheduled,
    /// Its recipients are on the channel's queue.
    Sending,
}

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Scheduled => "scheduled",
            MessageStatus::Sending => "sending",
        }
    }
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
    /// The retarget this message is the send of (what its senders count `deferred` and
    /// `capped` on); `None` for originals.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retarget_id: Option<RetargetId>,
    /// Exempt from the delivery policy: neither waits for quiet hours nor counts toward (or is
    /// stopped by) the frequency cap.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub transactional: bool,
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
            expires_at: keys::data_expires_at(now),
            retargetable: false,
            retarget_of: None,
            retarget_id: None,
            transactional: false,
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

/// What the store needs to know of a message to read or write its interactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageScope {
    pub app_id: AppId,
    pub message_id: MessageId,
    /// Epoch seconds: `created_at + 30 days`; also the TTL of every interaction item.
    pub expires_at: i64,
    pub shards: u8,
}

/// Why a message cannot be the source of an audience or a retarget (checked in this order).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error("the {0} plan does not include retargeting")]
    PlanRequired(Plan),
    #[error("the message's data expired at {}", crate::clock::rfc3339(*.0))]
    Expired(DateTime<Utc>),
    #[error("the message was created before the app's plan included retargeting")]
    NotRetargetable,
}

impl SourceError {
    /// The stable name of the reason (the contract's error code, also a failed retarget's reason).
    pub fn code(&self) -> &'static str {
        match self {
            SourceError::PlanRequired(_) => "plan_required",
            SourceError::Expired(_) => "source_expired",
            SourceError::NotRetargetable => "source_not_retargetable",
        }
    }
}

/// Whether `message` can be the source of an audience at `now` (the scheduler repeats this at
/// dispatch time: a source may expire after its retarget was made).
pub fn check_source(app: &App, message: &Message, now: DateTime<Utc>) -> Result<(), SourceError> {
    if !app.plan.allows_retargeting() {
        return Err(SourceError::PlanRequired(app.plan));
    }
    if message.is_expired_at(now) {
        return Err(SourceError::Expired(message.expires_at));
    }
    if !message.retargetable {
        return Err(SourceError::NotRetargetable);
    }
    Ok(())
}

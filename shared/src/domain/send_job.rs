//! A send job: what one SQS message of a channel queue asks its sender to do.

use serde::{Deserialize, Serialize};

use super::{AppId, Channel, MessageId, SubscriptionId};

/// Recipients per SQS message: small enough that a sender finishes one message well inside
/// its timeout, large enough that a million recipients take 200 SendMessageBatch calls.
pub const RECIPIENTS_PER_JOB: usize = 500;

/// One SQS message: send `message_id` to these subscriptions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendJob {
    pub app_id: AppId,
    pub message_id: MessageId,
    pub channel: Channel,
    pub subscription_ids: Vec<SubscriptionId>,
}

impl SendJob {
    /// Splits recipients into jobs of at most [`RECIPIENTS_PER_JOB`].
    pub fn split(
        app_id: AppId,
        message_id: MessageId,
        channel: Channel,
        recipients: &[SubscriptionId],
    ) -> Vec<SendJob> {
        recipients
            .chunks(RECIPIENTS_PER_JOB)
            .map(|chunk| SendJob { app_id, message_id, channel, subscription_ids: chunk.to_vec() })
            .collect()
    }
}

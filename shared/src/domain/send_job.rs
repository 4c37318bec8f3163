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
    /// 0 for a job from dispatch; `n` for the `n`-th retry of these recipients, which the
    /// sender put back on its queue (delayed) after they failed transiently. Absent in jobs
    /// from before retries were counted, and left out of first tries.
    #[serde(default, skip_serializing_if = "is_first_try")]
    pub retry: u32,
    /// Put back on the queue by the scheduler once the recipients' quiet hours ended: already
    /// counted `deferred`, so a further wait (the policy changed since) is not counted again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub released: bool,
}

fn is_first_try(retry: &u32) -> bool {
    *retry == 0
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
            .map(|chunk| SendJob {
                app_id,
                message_id,
                channel,
                subscription_ids: chunk.to_vec(),
                retry: 0,
                released: false,
            })
            .collect()
    }

    /// The job that tries `recipients` of this one again, as retry number `retry`.
    pub fn retry_of(&self, recipients: Vec<SubscriptionId>, retry: u32) -> SendJob {
        SendJob { subscription_ids: recipients, retry, ..*self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_without_a_retry_count_are_first_tries_and_first_tries_do_not_carry_one() {
        let (app, message, sub) = (AppId::new(), MessageId::new(), SubscriptionId::new());
        let old = serde_json::json!({"app_id": app, "message_id": message, "channel": "sms", "subscription_ids": [sub]});
        let job: SendJob = serde_json::from_value(old.clone()).unwrap();
        assert_eq!(job.retry, 0);
        assert_eq!(serde_json::to_value(&job).unwrap(), old, "a first try is written as before");

        let again = job.retry_of(vec![sub], 3);
        let text = serde_json::to_string(&again).unwrap();
        assert!(text.ends_with(r#","retry":3}"#), "{text}");
        assert_eq!(serde_json::from_str::<SendJob>(&text).unwrap(), again);
    }
}

//! SES's email events, as the EventBridge rule on `source: aws.ses` delivers them (SES publishes
//! a configuration set's events to the account's default bus only).
//!
//! | detail-type | kind |
//! |---|---|
//! | `Email Sent` | sent |
//! | `Email Delivered` | delivered |
//! | `Email Opened` | opened |
//! | `Email Clicked` | clicked |
//! | `Email Bounced` | bounced (a `Permanent` bounce also unsubscribes: `bounce`) |
//! | `Email Complaint Received` | complained (and unsubscribes: `complaint`) |
//! | `Email Rejected`, `Email Rendering Failed` | failed |
//! | any other (`Email Delivery Delayed`, `Email Subscription`, …) | nothing |
//!
//! The recipient is named by the tags the email sender set (`detail.mail.tags`: `app_id`,
//! `message_id`, `subscription_id`, each a one-value list). An event without them (mail sent by
//! something else through the same account), of an app or message this deployment does not
//! hold, or otherwise unusable is logged and dropped — answered with success, so EventBridge does
//! not retry it for a day. Only a store failure fails the invocation: EventBridge retries it
//! (the rule target's retry policy), then puts it on the rule's dead-letter queue.
//!
//! Idempotent and order-free: a kind is recorded once per (message, subscription) however often
//! SES (or a replay of the archive) delivers it, and the unsubscribe reason does not depend on the
//! order of a bounce and a complaint — a complaint wins.

use std::time::Instant;

use aws_lambda_events::eventbridge::EventBridgeEvent;
use chrono::{DateTime, Utc};
use retarget_shared::bootstrap::{Error, FromEnv, Infra, ScheduleFunction};
use retarget_shared::config::EnvReader;
use retarget_shared::domain::{
    AppId, Channel, EventKind, MessageId, SubscriptionId, UnsubscribeReason, email_tags,
};
use retarget_shared::services::ingest::{IncomingEvent, Outcome, Rejection, record_events};
use retarget_shared::{Store, StoreError};
use serde::Serialize;
use serde_json::Value;

/// The kind an SES detail type records, and the `detail` field holding its own timestamp.
pub fn kind_of(detail_type: &str) -> Option<(EventKind, &'static str)> {
    Some(match detail_type {
        "Email Sent" => (EventKind::Sent, "mail"),
        "Email Delivered" => (EventKind::Delivered, "delivery"),
        "Email Opened" => (EventKind::Opened, "open"),
        "Email Clicked" => (EventKind::Clicked, "click"),
        "Email Bounced" => (EventKind::Bounced, "bounce"),
        "Email Complaint Received" => (EventKind::Complained, "complaint"),
        "Email Rejected" => (EventKind::Failed, "mail"),
        "Email Rendering Failed" => (EventKind::Failed, "mail"),
        _ => return None,
    })
}

/// What one SES event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum SesOutcome {
    /// Recorded (`new`: for the first time), and whether it unsubscribed the recipient.
    Recorded {
        kind: EventKind,
        new: bool,
        unsubscribed: bool,
    },
    /// Valid, but the message is not retargetable (plan gating): nothing stored.
    NotStored {
        kind: EventKind,
        unsubscribed: bool,
    },
    Ignored {
        reason: Ignored,
    },
}

/// Why an event recorded nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ignored {
    /// A detail type that records nothing.
    DetailType,
    /// No `app_id` / `message_id` / `subscription_id` tags (not sent by this deployment).
    NoTags,
    UnknownApp,
    UnknownMessage,
    UnknownSubscription,
    MessageExpired,
    /// A kind the message's channel lacks (the tags name a push or SMS message).
    InvalidKind,
}

/// The table, named by `TABLE_NAME`.
pub struct EmailEvents {
    pub store: Store,
}

impl FromEnv for EmailEvents {
    fn from_env(env: &mut EnvReader, infra: &Infra) -> Result<Self, Error> {
        Ok(Self { store: infra.store(env) })
    }
}

impl ScheduleFunction for EmailEvents {
    type Report = SesOutcome;
    type Failure = StoreError;

    #[tracing::instrument(skip_all, fields(event_id = event.id.as_deref().unwrap_or(""), detail_type = %event.detail_type))]
    async fn handle(
        &self,
        event: EventBridgeEvent<Value>,
        _deadline: Option<Instant>,
    ) -> Result<SesOutcome, StoreError> {
        let outcome = handle_event(&self.store, &event.detail_type, &event.detail).await?;
        match outcome {
            SesOutcome::Ignored { reason } => tracing::info!(?reason, "ses event recorded nothing"),
            _ => tracing::debug!(?outcome, "ses event"),
        }
        Ok(outcome)
    }
}

/// The recipient the sender's tags name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tagged {
    pub app_id: AppId,
    pub message_id: MessageId,
    pub subscription_id: SubscriptionId,
}

/// `detail.mail.tags`: SES gives each tag as a list of values; ours have one.
pub fn tagged(detail: &Value) -> Option<Tagged> {
    let tags = detail.get("mail")?.get("tags")?;
    let tag = |name: &str| {
        let value = tags.get(name)?;
        value.as_array().and_then(|values| values.first()).unwrap_or(value).as_str()
    };
    Some(Tagged {
        app_id: tag(email_tags::APP_ID)?.parse().ok()?,
        message_id: tag(email_tags::MESSAGE_ID)?.parse().ok()?,
        subscription_id: tag(email_tags::SUBSCRIPTION_ID)?.parse().ok()?,
    })
}

/// Records one SES event (see the module's table); `Err` only when the store failed.
pub async fn handle_event(
    store: &Store,
    detail_type: &str,
    detail: &Value,
) -> Result<SesOutcome, StoreError> {
    let Some((kind, timestamp_field)) = kind_of(detail_type) else {
        return Ok(SesOutcome::Ignored { reason: Ignored::DetailType });
    };
    let Some(tagged) = tagged(detail) else {
        return Ok(SesOutcome::Ignored { reason: Ignored::NoTags });
    };
    if store.get_app(tagged.app_id).await?.is_none() {
        return Ok(SesOutcome::Ignored { reason: Ignored::UnknownApp });
    }
    let occurred_at = detail
        .get(timestamp_field)
        .and_then(|f| f.get("timestamp"))
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .filter(|t| *t <= store.clock().now());
    let event = IncomingEvent {
        event_id: None,
        message_id: Some(tagged.message_id),
        subscription_id: Some(tagged.subscription_id),
        kind,
        occurred_at,
    };
    let outcome = record_events(store, tagged.app_id, std::slice::from_ref(&event))
        .await?
        .into_iter()
        .next()
        .unwrap_or(Outcome::Rejected(Rejection::UnknownMessage));
    let recorded = match outcome {
        Outcome::Rejected(rejection) => {
            let reason = match rejection {
                Rejection::UnknownMessage => Ignored::UnknownMessage,
                Rejection::UnknownSubscription => Ignored::UnknownSubscription,
                Rejection::InvalidKind => Ignored::InvalidKind,
                Rejection::MessageExpired => Ignored::MessageExpired,
            };
            // A dead address is dead whenever SES says so, even past the message's 30 days.
            if reason == Ignored::MessageExpired {
                unsubscribe_if_dead(store, &tagged, kind, detail).await?;
            }
            return Ok(SesOutcome::Ignored { reason });
        }
        Outcome::Accepted => true,
        Outcome::Duplicate => false,
    };
    let unsubscribed = unsubscribe_if_dead(store, &tagged, kind, detail).await?;
    let retargetable =
        store.get_message(tagged.app_id, tagged.message_id).await?.is_some_and(|m| m.retargetable);
    Ok(if retargetable {
        SesOutcome::Recorded { kind, new: recorded, unsubscribed }
    } else {
        SesOutcome::NotStored { kind, unsubscribed }
    })
}

/// Why an event unsubscribes its recipient, if it does: a permanent bounce, or a complaint.
pub fn unsubscribe_reason(kind: EventKind, detail: &Value) -> Option<UnsubscribeReason> {
    match kind {
        EventKind::Complained => Some(UnsubscribeReason::Complaint),
        EventKind::Bounced => {
            let bounce_type = detail.get("bounce").and_then(|b| b.get("bounceType")).and_then(Value::as_str);
            (bounce_type == Some("Permanent")).then_some(UnsubscribeReason::Bounce)
        }
        _ => None,
    }
}

/// Unsubscribes the recipient of a permanent bounce or a complaint; whether it is now
/// unsubscribed for that reason (a complaint replaces an earlier bounce's reason).
async fn unsubscribe_if_dead(
    store: &Store,
    tagged: &Tagged,
    kind: EventKind,
    detail: &Value,
) -> Result<bool, StoreError> {
    let Some(reason) = unsubscribe_reason(kind, detail) else { return Ok(false) };
    let Some(sub) = store.get_subscription(tagged.app_id, tagged.subscription_id).await? else {
        return Ok(false);
    };
    if sub.channel != Channel::Email {
        return Ok(false);
    }
    let Some(after) = store.unsubscribe(tagged.app_id, tagged.subscription_id, reason).await? else {
        return Ok(false);
    };
    if after.unsubscribed_reason == Some(UnsubscribeReason::Bounce) && reason == UnsubscribeReason::Complaint
    {
        store
            .replace_unsubscribe_reason(
                tagged.app_id,
                tagged.subscription_id,
                UnsubscribeReason::Bounce,
                UnsubscribeReason::Complaint,
            )
            .await?;
    }
    tracing::info!(subscription_id = %tagged.subscription_id, reason = reason.as_str(), "email subscription unsubscribed");
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn detail_types_map_to_the_contracts_kinds() {
        let kinds: Vec<_> = [
            "Email Sent",
            "Email Delivered",
            "Email Opened",
            "Email Clicked",
            "Email Bounced",
            "Email Complaint Received",
            "Email Rejected",
            "Email Rendering Failed",
        ]
        .iter()
        .map(|t| kind_of(t).map(|(k, _)| k))
        .collect();
        use EventKind::*;
        assert_eq!(
            kinds,
            [Sent, Delivered, Opened, Clicked, Bounced, Complained, Failed, Failed].map(Some).to_vec()
        );
        for other in ["Email Delivery Delayed", "Email Subscription", "email sent", ""] {
            assert_eq!(kind_of(other), None, "{other}");
        }
    }

    #[test]
    fn tags_are_one_value_lists_and_all_three_are_needed() {
        let (app, message, sub) = (AppId::new(), MessageId::new(), SubscriptionId::new());
        let detail = json!({"mail": {"tags": {
            "ses:configuration-set": ["retarget-email"],
            "app_id": [app.to_string()], "message_id": [message.to_string()], "subscription_id": [sub.to_string()]
        }}});
        assert_eq!(tagged(&detail), Some(Tagged { app_id: app, message_id: message, subscription_id: sub }));
        let partial =
            json!({"mail": {"tags": {"app_id": [app.to_string()], "message_id": [message.to_string()]}}});
        assert_eq!(tagged(&partial), None);
        let garbage =
            json!({"mail": {"tags": {"app_id": ["x"], "message_id": ["y"], "subscription_id": ["z"]}}});
        assert_eq!(tagged(&garbage), None);
        assert_eq!(tagged(&json!({"mail": {}})), None);
    }

    #[test]
    fn only_permanent_bounces_and_complaints_unsubscribe() {
        let bounce = |t: &str| json!({"bounce": {"bounceType": t}});
        assert_eq!(
            unsubscribe_reason(EventKind::Bounced, &bounce("Permanent")),
            Some(UnsubscribeReason::Bounce)
        );
        assert_eq!(unsubscribe_reason(EventKind::Bounced, &bounce("Transient")), None);
        assert_eq!(unsubscribe_reason(EventKind::Bounced, &bounce("Undetermined")), None);
        assert_eq!(unsubscribe_reason(EventKind::Complained, &json!({})), Some(UnsubscribeReason::Complaint));
        assert_eq!(unsubscribe_reason(EventKind::Delivered, &json!({})), None);
    }
}

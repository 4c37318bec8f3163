//! Recording interaction events from any source (the events API, provider webhooks, the
//! senders): validation against the app's messages and subscriptions, plan gating, and the
//! idempotent write. One place, so every source follows the same rules.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use futures::future::try_join_all;
use serde::Serialize;

use crate::Store;
use crate::adapters::store::{Interaction, StoreError};
use crate::domain::{AppId, EventId, EventKind, MessageId, SubscriptionId};

/// An event as received. Ids that did not parse are `None`: they name nothing.
#[derive(Debug, Clone)]
pub struct IncomingEvent {
    pub event_id: Option<EventId>,
    pub message_id: Option<MessageId>,
    pub subscription_id: Option<SubscriptionId>,
    pub kind: EventKind,
    pub occurred_at: Option<DateTime<Utc>>,
}

/// Why one event was not recorded (the contract's per-event codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rejection {
    UnknownMessage,
    UnknownSubscription,
    InvalidKind,
    MessageExpired,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Newly recorded — or, for a message that is not retargetable, valid and not stored.
    Accepted,
    /// Already recorded (same event id, or same message, subscription and kind).
    Duplicate,
    Rejected(Rejection),
}

/// Validates and records events of one app; outcomes are in input order.
pub async fn record_events(
    store: &Store,
    app_id: AppId,
    events: &[IncomingEvent],
) -> Result<Vec<Outcome>, StoreError> {
    let (messages, subscriptions) = tokio::try_join!(
        store.get_messages(app_id, events.iter().filter_map(|e| e.message_id)),
        store.get_subscriptions(app_id, events.iter().filter_map(|e| e.subscription_id)),
    )?;
    let now = store.clock().now();

    let mut outcomes = vec![Outcome::Accepted; events.len()];
    let mut seen_event_ids = HashSet::new();
    // Per message: the input indexes to store and their interactions.
    let mut to_store: HashMap<MessageId, (Vec<usize>, Vec<Interaction>)> = HashMap::new();
    for (i, e) in events.iter().enumerate() {
        let message = e.message_id.and_then(|id| messages.get(&id));
        let subscription = e.subscription_id.and_then(|id| subscriptions.get(&id));
        let rejection = match (message, subscription) {
            (None, _) => Some(Rejection::UnknownMessage),
            (Some(m), s) if s.is_none_or(|s| s.channel != m.channel) => Some(Rejection::UnknownSubscription),
            (Some(m), _) if !m.channel.accepts(e.kind) => Some(Rejection::InvalidKind),
            (Some(m), _) if m.is_expired_at(now) => Some(Rejection::MessageExpired),
            _ => None,
        };
        if let Some(r) = rejection {
            outcomes[i] = Outcome::Rejected(r);
            continue;
        }
        if let Some(id) = &e.event_id
            && !seen_event_ids.insert(id.clone())
        {
            outcomes[i] = Outcome::Duplicate;
            continue;
        }
        let (Some(message), Some(subscription)) = (message, subscription) else { continue };
        // Plan gating: events of messages that are not retargetable are valid but not stored.
        if !message.retargetable {
            continue;
        }
        let entry = to_store.entry(message.message_id).or_default();
        entry.0.push(i);
        entry.1.push(Interaction {
            subscription_id: subscription.subscription_id,
            kind: e.kind,
            external_user_id: subscription.external_user_id.clone(),
            event_id: e.event_id.clone(),
            occurred_at: e.occurred_at.unwrap_or(now),
        });
    }

    let writes = to_store.into_iter().map(|(message_id, (indexes, interactions))| {
        let scope = messages[&message_id].scope();
        async move {
            let recorded = store.record_interactions(&scope, &interactions).await?;
            Ok::<_, StoreError>((indexes, recorded.newly_recorded))
        }
    });
    for (indexes, newly) in try_join_all(writes).await? {
        for (i, new) in indexes.into_iter().zip(newly) {
            outcomes[i] = if new { Outcome::Accepted } else { Outcome::Duplicate };
        }
    }
    Ok(outcomes)
}

//! Retargets: a follow-up message to the audience of a source message, scheduled for
//! `send_at` and dispatched exactly once by the scheduler.
//!
//! Life cycle: `scheduled` → `dispatching` (claimed by one scheduler run) → `dispatched` or
//! `failed`; `scheduled` → `cancelled`. [`RetargetStatus::can_become`] is that state machine;
//! the store's conditional updates enforce it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{
    App, AppId, Channel, Contents, Message, MessageId, MessageStatus, Predicate, RetargetId, SubscriptionId,
};

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

    /// Whether a retarget in this status may move to `next`.
    pub fn can_become(self, next: RetargetStatus) -> bool {
        use RetargetStatus::*;
        matches!(
            (self, next),
            (Scheduled, Dispatching | Cancelled) | (Dispatching, Dispatching | Dispatched | Failed)
        )
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
    /// Recipients whose send waited for their quiet hours to end (counted by the senders).
    #[serde(default)]
    pub deferred: u64,
    /// Recipients not sent because of the frequency cap (counted by the senders).
    #[serde(default)]
    pub capped: u64,
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
    pub after: Option<SubscriptionId>,
    pub audience_size: u64,
    pub enqueued: u64,
    pub unreachable: u64,
}

impl Retarget {
    /// A new retarget of `source` created at `now`, due at `send_at`, and its own message: a
    /// scheduled message on `channel`, retargetable as the app's plan says at `now`.
    pub fn schedule(
        app: &App,
        source: &Message,
        predicate: Predicate,
        channel: Channel,
        contents: Contents,
        send_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> (Retarget, Message) {
        let mut message = Message::new(app.app_id, channel, contents, now);
        message.retargetable = app.retargetable_at(now);
        message.retarget_of = Some(source.message_id);
        message.status = MessageStatus::Scheduled;
        message.send_at = send_at;
        let retarget_id = RetargetId::at(now);
        message.retarget_id = Some(retarget_id);
        let retarget = Retarget {
            retarget_id,
            app_id: app.app_id,
            message_id: message.message_id,
            source_message_id: source.message_id,
            predicate,
            channel,
            send_at,
            status: RetargetStatus::Scheduled,
            audience_size: None,
            enqueued: None,
            unreachable: None,
            deferred: 0,
            capped: 0,
            created_at: now,
            failure: None,
            progress: None,
            lease_owner: None,
        };
        (retarget, message)
    }
}

/// How a claimed retarget's dispatch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DispatchOutcome {
    /// Its whole audience is on the target channel's queue, with these totals.
    Dispatched(DispatchProgress),
    /// Dispatch gave up, for this reason (e.g. the source had expired by then).
    Failed(String),
}

impl DispatchOutcome {
    pub fn status(&self) -> RetargetStatus {
        match self {
            DispatchOutcome::Dispatched(_) => RetargetStatus::Dispatched,
            DispatchOutcome::Failed(_) => RetargetStatus::Failed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RetargetStatus::*;

    #[test]
    fn the_life_cycle_only_moves_forward() {
        assert!(Scheduled.can_become(Dispatching) && Scheduled.can_become(Cancelled));
        assert!(Dispatching.can_become(Dispatched) && Dispatching.can_become(Failed));
        // A dispatch whose lease expired is taken over by another run.
        assert!(Dispatching.can_become(Dispatching));
        for done in [Dispatched, Cancelled, Failed] {
            for next in [Scheduled, Dispatching, Dispatched, Cancelled, Failed] {
                assert!(!done.can_become(next), "{done:?} -> {next:?}");
            }
        }
        assert!(!Scheduled.can_become(Dispatched) && !Dispatching.can_become(Cancelled));
    }
}

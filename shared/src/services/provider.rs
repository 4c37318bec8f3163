//! What a channel provider (Twilio, FCM, APNs) must do, and how its failures are classified.
//! The senders' pipeline (idempotency, events, unsubscribes, SQS retries) is provider-agnostic
//! and lives in `sender`; providers only turn one (app, subscription, message) into one call.

use std::future::Future;
use std::time::Duration;

use crate::adapters::store::{App, Message, Subscription};

/// The provider's id for an accepted send (Twilio's MessageSid, FCM's message name, APNs' apns-id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub provider_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Will never succeed for this recipient: recorded as `failed`. `dead_address` means the
    /// token is unregistered or the number opted out (STOP), so the subscription is unsubscribed.
    #[error("permanent provider error {code}: {detail}")]
    Permanent { code: String, detail: String, dead_address: bool },
    /// May succeed later (429, 5xx, timeouts, network): retried through SQS.
    #[error("transient provider error: {detail}")]
    Transient { detail: String, retry_after: Option<Duration> },
    /// The app has no credentials for this channel (or they are unusable): nothing can be sent
    /// until the operator fixes the app; recorded as `failed`, subscription kept.
    #[error("app is not configured for this provider: {0}")]
    NotConfigured(String),
}

/// One provider behind one channel (or platform).
pub trait Provider: Send + Sync {
    fn send<'a>(
        &'a self,
        app: &'a App,
        subscription: &'a Subscription,
        message: &'a Message,
    ) -> impl Future<Output = Result<Accepted, SendError>> + Send + 'a;
}

//! What a channel provider (Twilio, FCM, APNs) must do, and how its failures are classified.
//! The senders' pipeline (idempotency, events, unsubscribes, SQS retries) is provider-agnostic
//! and lives in `sender`; providers only turn one (app, subscription, message) into one call.

use std::future::Future;
use std::time::Duration;

use crate::Store;
use crate::adapters::store::StoreError;
use crate::domain::{App, AppId, Message, Subscription};

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
    /// May succeed later (429, 5xx, timeouts, network): retried in a later, delayed job
    /// (`sender`), not before `retry_after` — the provider's `Retry-After`, when it gave one.
    #[error("transient provider error: {detail}")]
    Transient { detail: String, retry_after: Option<Duration> },
    /// The app has no credentials for this channel (or they are unusable): nothing can be sent
    /// until the operator fixes the app; recorded as `failed`, subscription kept.
    #[error("app is not configured for this provider: {0}")]
    NotConfigured(String),
    /// Nothing can be sent on this account until its operator acts (SES: the account is
    /// suspended or its sending paused, the MAIL FROM domain or the configuration set is not
    /// there): the job stops calling the provider, and its recipients not sent go whole to the
    /// dead-letter queue, recorded nothing — a redrive sends them once the account is fixed.
    #[error("the provider refuses every send of this account ({code}): {detail}")]
    Halt { code: String, detail: String },
}

impl SendError {
    /// The same error with its detail rewritten by `f` (a provider's text with a device token,
    /// a phone number or a secret masked); its kind, code and retry hint are kept.
    pub fn map_detail(self, f: impl FnOnce(String) -> String) -> Self {
        match self {
            SendError::Permanent { code, detail, dead_address } => {
                SendError::Permanent { code, detail: f(detail), dead_address }
            }
            SendError::Transient { detail, retry_after } => {
                SendError::Transient { detail: f(detail), retry_after }
            }
            SendError::NotConfigured(detail) => SendError::NotConfigured(f(detail)),
            SendError::Halt { code, detail } => SendError::Halt { code, detail: f(detail) },
        }
    }
}

/// One provider behind one channel (or platform).
pub trait Provider: Send + Sync {
    /// The app's secrets this provider sends with: the one secret item the sender reads (and
    /// the only one its IAM policy lets it read), or `()` for a provider that needs none (SES:
    /// the function's own IAM role).
    type Secret: Send + Sync;
    /// What a send needs of the app's credentials, joined once per job from the app's
    /// accounts and its secrets.
    type Credentials: Send + Sync;

    /// Reads [`Provider::Secret`] of one app, once per job.
    fn load_secret(
        store: &Store,
        app_id: AppId,
    ) -> impl Future<Output = Result<Self::Secret, StoreError>> + Send;

    fn credentials(app: &App, secret: &Self::Secret) -> Self::Credentials;

    fn send<'a>(
        &'a self,
        app: &'a App,
        credentials: &'a Self::Credentials,
        subscription: &'a Subscription,
        message: &'a Message,
    ) -> impl Future<Output = Result<Accepted, SendError>> + Send + 'a;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_detail_rewrites_only_the_detail() {
        let mask = |detail: String| detail.replace("tok-1", "***");
        let permanent =
            SendError::Permanent { code: "c".into(), detail: "bad tok-1".into(), dead_address: true };
        assert_eq!(
            permanent.map_detail(mask),
            SendError::Permanent { code: "c".into(), detail: "bad ***".into(), dead_address: true }
        );
        let transient =
            SendError::Transient { detail: "tok-1 later".into(), retry_after: Some(Duration::from_secs(3)) };
        assert_eq!(
            transient.map_detail(mask),
            SendError::Transient { detail: "*** later".into(), retry_after: Some(Duration::from_secs(3)) }
        );
        let not_configured = SendError::NotConfigured("tok-1".into());
        assert_eq!(not_configured.map_detail(mask), SendError::NotConfigured("***".into()));
    }
}

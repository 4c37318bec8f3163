//! The push sender: one [`Provider`] for the push channel that picks FCM HTTP v1 (android) or
//! APNs (ios) by the subscription's platform. The SQS pipeline around it (idempotency, events,
//! unsubscribes, retries) is `retarget_shared::services::sender`.
//!
//! Secrets (service-account keys, .p8 keys, access and provider tokens, device tokens) are never
//! logged nor put into error details.

mod apns;
mod fcm;
mod http;

use std::time::Duration;

use reqwest::Url;
use retarget_shared::adapters::store::{App, Message, Subscription};
use retarget_shared::bootstrap::{Error, Infra, ProviderFromEnv};
use retarget_shared::config::EnvReader;
use retarget_shared::domain::{Channel, Platform};
use retarget_shared::services::provider::{Accepted, Provider, SendError};

pub use apns::{DEFAULT_TOKEN_MAX_AGE as DEFAULT_APNS_TOKEN_MAX_AGE, ProviderTokenClaims, provider_jwt};
pub use fcm::{AssertionClaims, FCM_SCOPE, JWT_BEARER_GRANT, assertion};

use apns::ApnsClient;
use fcm::FcmClient;

pub const DEFAULT_FCM_API_BASE: &str = "https://fcm.googleapis.com";
pub const DEFAULT_APNS_API_BASE: &str = "https://api.push.apple.com";
/// Per-request timeout of provider calls (token endpoint included).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// What one notification says, as both providers carry it.
pub(crate) struct Notification<'a> {
    pub title: Option<&'a str>,
    pub body: &'a str,
    pub url: Option<&'a str>,
    pub message_id: String,
    pub subscription_id: String,
}

impl<'a> Notification<'a> {
    fn of(message: &'a Message, subscription: &Subscription) -> Self {
        Self {
            title: message.contents.title.as_deref(),
            body: &message.contents.body,
            url: message.contents.url.as_deref(),
            message_id: message.message_id.to_string(),
            subscription_id: subscription.subscription_id.to_string(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{name} is not a usable base URL")]
    BaseUrl { name: &'static str },
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// The HTTP client settings the provider uses (timeouts, keep-alive, no forced HTTP version:
/// `https://` negotiates HTTP/2 through ALPN, plain `http://` stand-ins get HTTP/1.1).
pub fn client_builder(timeout: Duration) -> reqwest::ClientBuilder {
    http::client_builder(timeout)
}

/// FCM for android subscriptions, APNs for ios ones.
pub struct PushProvider {
    fcm: FcmClient,
    apns: ApnsClient,
}

impl PushProvider {
    /// Bases without a trailing slash, e.g. `https://fcm.googleapis.com`, `https://api.push.apple.com`.
    pub fn new(fcm_api_base: String, apns_api_base: String, timeout: Duration) -> Result<Self, SetupError> {
        Self::with_client(client_builder(timeout).build()?, &fcm_api_base, &apns_api_base)
    }

    /// With a given HTTP client (one built from [`client_builder`], e.g. trusting a test CA).
    pub fn with_client(
        http: reqwest::Client,
        fcm_api_base: &str,
        apns_api_base: &str,
    ) -> Result<Self, SetupError> {
        let fcm_base = base_url(fcm_api_base).ok_or(SetupError::BaseUrl { name: "FCM_API_BASE" })?;
        let apns_base = base_url(apns_api_base).ok_or(SetupError::BaseUrl { name: "APNS_API_BASE" })?;
        Ok(Self { fcm: FcmClient::new(http.clone(), fcm_base), apns: ApnsClient::new(http, apns_base) })
    }

    /// Replaces APNs provider tokens older than this (default 40 minutes; Apple: 20 to 60).
    pub fn with_apns_token_max_age(mut self, max_age: Duration) -> Self {
        self.apns.set_token_max_age(max_age);
        self
    }

    async fn send_push(
        &self,
        app: &App,
        subscription: &Subscription,
        message: &Message,
    ) -> Result<Accepted, SendError> {
        let token = subscription.token.as_deref().filter(|t| !t.trim().is_empty());
        let (platform, token) = match (subscription.channel, subscription.platform, token) {
            (Channel::Push, Some(platform), Some(token)) => (platform, token),
            (Channel::Push, _, _) => {
                return Err(SendError::Permanent {
                    code: "missing_push_address".into(),
                    detail: "push subscription without platform or token".into(),
                    dead_address: false,
                });
            }
            (channel, _, _) => {
                return Err(SendError::Permanent {
                    code: "wrong_channel".into(),
                    detail: format!("{channel} subscription given to the push sender"),
                    dead_address: false,
                });
            }
        };
        let notification = Notification::of(message, subscription);
        let sent = match platform {
            Platform::Android => {
                let config = app
                    .fcm
                    .as_ref()
                    .ok_or_else(|| SendError::NotConfigured("app has no FCM service account".into()))?;
                self.fcm.send(config, token, &notification).await
            }
            Platform::Ios => {
                let config = app
                    .apns
                    .as_ref()
                    .ok_or_else(|| SendError::NotConfigured("app has no APNs key".into()))?;
                self.apns.send(config, token, &notification).await
            }
        };
        // A provider's message may quote the device token; it never reaches a detail or a log.
        sent.map_err(|e| without_token(e, token))
    }
}

impl Provider for PushProvider {
    fn send<'a>(
        &'a self,
        app: &'a App,
        subscription: &'a Subscription,
        message: &'a Message,
    ) -> impl Future<Output = Result<Accepted, SendError>> + Send + 'a {
        self.send_push(app, subscription, message)
    }
}

impl ProviderFromEnv for PushProvider {
    const CHANNEL: Channel = Channel::Push;

    /// `FCM_API_BASE` and `APNS_API_BASE`, defaulting to the providers' production APIs.
    fn from_env(env: &mut EnvReader, _: &Infra) -> Result<Self, Error> {
        let fcm_api_base = env.url("FCM_API_BASE", Some(DEFAULT_FCM_API_BASE));
        let apns_api_base = env.url("APNS_API_BASE", Some(DEFAULT_APNS_API_BASE));
        Ok(PushProvider::new(fcm_api_base, apns_api_base, DEFAULT_TIMEOUT)?)
    }
}

fn base_url(base: &str) -> Option<Url> {
    let url = Url::parse(base.trim_end_matches('/')).ok()?;
    (matches!(url.scheme(), "http" | "https") && !url.cannot_be_a_base()).then_some(url)
}

/// `error` with every occurrence of the device token in its detail masked.
fn without_token(error: SendError, token: &str) -> SendError {
    let scrub = |detail: String| detail.replace(token, "***");
    match error {
        SendError::Permanent { code, detail, dead_address } => {
            SendError::Permanent { code, detail: scrub(detail), dead_address }
        }
        SendError::Transient { detail, retry_after } => {
            SendError::Transient { detail: scrub(detail), retry_after }
        }
        SendError::NotConfigured(detail) => SendError::NotConfigured(scrub(detail)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_tokens_are_masked_in_error_details() {
        let error = SendError::Permanent {
            code: "UNREGISTERED".into(),
            detail: "Requested entity was not found: tok-123".into(),
            dead_address: true,
        };
        let SendError::Permanent { detail, .. } = without_token(error, "tok-123") else { unreachable!() };
        assert_eq!(detail, "Requested entity was not found: ***");
    }

    #[test]
    fn base_urls() {
        assert!(base_url("https://fcm.googleapis.com").is_some());
        assert!(base_url("http://127.0.0.1:9/").is_some());
        assert!(base_url("ftp://x").is_none());
        assert!(base_url("not a url").is_none());
    }
}

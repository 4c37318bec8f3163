//! The push sender: one [`Provider`] for the push channel that picks FCM HTTP v1 (android) or
//! APNs (ios) by the subscription's platform. The SQS pipeline around it (idempotency, events,
//! unsubscribes, retries) is `retarget_shared::services::sender`.
//!
//! Secrets (service-account keys, .p8 keys, access and provider tokens, device tokens) are never
//! logged nor put into error details.

mod apns;
mod fcm;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::Url;
use retarget_shared::adapters::store::StoreError;
use retarget_shared::bootstrap::{Error, Infra, ProviderFromEnv};
use retarget_shared::config::EnvReader;
use retarget_shared::domain::{
    ApnsConfig, App, AppId, Channel, FcmConfig, Message, Platform, PushSecret, Subscription, Tracked,
};
use retarget_shared::provider_http;
use retarget_shared::services::provider::{Accepted, Provider, SendError};
use retarget_shared::services::tracking::TrackingKeys;
use retarget_shared::{SharedClock, Store, SystemClock};

pub use apns::{DEFAULT_TOKEN_MAX_AGE as DEFAULT_APNS_TOKEN_MAX_AGE, ProviderTokenClaims, provider_jwt};
pub use fcm::{AssertionClaims, FCM_SCOPE, JWT_BEARER_GRANT, assertion};

use apns::ApnsClient;
use fcm::FcmClient;

pub const DEFAULT_FCM_API_BASE: &str = "https://fcm.googleapis.com";
pub const DEFAULT_APNS_API_BASE: &str = "https://api.push.apple.com";
/// Per-request timeout of provider calls (token endpoint included).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// One notification to one device token, as both providers carry it.
pub(crate) struct Notification<'a> {
    /// The device token (FCM registration token, APNs device token).
    pub token: &'a str,
    pub title: Option<&'a str>,
    pub body: &'a str,
    pub url: Option<&'a str>,
    pub message_id: String,
    pub subscription_id: String,
    /// The recipient's tracking token (FCM `data.rt`, APNs `rt`): see `domain::Keyring`.
    pub tracking_token: String,
}

impl<'a> Notification<'a> {
    fn of(message: &'a Message, subscription: &Subscription, token: &'a str, tracking_token: String) -> Self {
        Self {
            token,
            title: message.contents.title.as_deref(),
            body: &message.contents.body,
            url: message.contents.url.as_deref(),
            message_id: message.message_id.to_string(),
            subscription_id: subscription.subscription_id.to_string(),
            tracking_token,
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

/// The settings of the one HTTP client of the process: [`provider_http::client_builder`]'s,
/// connecting within 5 s at most, and kept-alive HTTP/2 connections. No HTTP version is forced:
/// over `https://` rustls offers ALPN `h2, http/1.1`, so APNs (HTTP/2 only) and FCM negotiate
/// HTTP/2; a plain `http://` base (a local stand-in) is spoken to in HTTP/1.1, as there is no
/// ALPN without TLS. Do not add `http1_only()` (APNs refuses HTTP/1.1) nor
/// `http2_prior_knowledge()` (stand-ins speak 1.1).
pub fn client_builder(timeout: Duration) -> reqwest::ClientBuilder {
    let user_agent = concat!("retarget-push-sender/", env!("CARGO_PKG_VERSION"));
    provider_http::client_builder(user_agent, timeout, timeout.min(Duration::from_secs(5)))
        // As this client always did: reqwest's default policy (up to 10 redirects followed).
        .redirect(reqwest::redirect::Policy::default())
        .pool_idle_timeout(Duration::from_secs(55))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .http2_keep_alive_while_idle(true)
}

/// FCM for android subscriptions, APNs for ios ones; every notification carries the
/// recipient's tracking token, signed with the deployment's keyring.
pub struct PushProvider {
    fcm: FcmClient,
    apns: ApnsClient,
    tracking: TrackingKeys,
}

impl PushProvider {
    /// Bases without a trailing slash, e.g. `https://fcm.googleapis.com`, `https://api.push.apple.com`.
    pub fn new(
        fcm_api_base: String,
        apns_api_base: String,
        timeout: Duration,
        tracking: TrackingKeys,
    ) -> Result<Self, SetupError> {
        Self::with_client(client_builder(timeout).build()?, &fcm_api_base, &apns_api_base, tracking)
    }

    /// With a given HTTP client (one built from [`client_builder`], e.g. trusting a test CA).
    pub fn with_client(
        http: reqwest::Client,
        fcm_api_base: &str,
        apns_api_base: &str,
        tracking: TrackingKeys,
    ) -> Result<Self, SetupError> {
        let fcm_base = base_url(fcm_api_base).ok_or(SetupError::BaseUrl { name: "FCM_API_BASE" })?;
        let apns_base = base_url(apns_api_base).ok_or(SetupError::BaseUrl { name: "APNS_API_BASE" })?;
        let clock: SharedClock = Arc::new(SystemClock);
        Ok(Self {
            fcm: FcmClient::new(http.clone(), fcm_base, clock.clone()),
            apns: ApnsClient::new(http, apns_base, clock),
            tracking,
        })
    }

    /// Reads "now" for the token caches and the tokens' `iat` from `clock` instead of the
    /// system clock (tests: a [`retarget_shared::TestClock`] to age tokens without waiting).
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.fcm.set_clock(clock.clone());
        self.apns.set_clock(clock);
        self
    }

    /// Replaces APNs provider tokens older than this (default 40 minutes; Apple: 20 to 60).
    pub fn with_apns_token_max_age(mut self, max_age: Duration) -> Self {
        self.apns.set_token_max_age(max_age);
        self
    }
}

impl ProviderFromEnv for PushProvider {
    const CHANNEL: Channel = Channel::Push;

    /// `FCM_API_BASE` and `APNS_API_BASE`, defaulting to the providers' production APIs.
    /// The tracking keyring is the table's (`TABLE_NAME`).
    fn from_env(env: &mut EnvReader, infra: &Infra) -> Result<Self, Error> {
        let fcm_api_base = env.url("FCM_API_BASE", Some(DEFAULT_FCM_API_BASE));
        let apns_api_base = env.url("APNS_API_BASE", Some(DEFAULT_APNS_API_BASE));
        let tracking = TrackingKeys::new(infra.store(env));
        Ok(PushProvider::new(fcm_api_base, apns_api_base, DEFAULT_TIMEOUT, tracking)?)
    }
}

/// An app's push credentials, each joined from its account and its private key.
#[derive(Debug, Clone, Default)]
pub struct PushCredentials {
    pub fcm: Option<FcmConfig>,
    pub apns: Option<ApnsConfig>,
}

impl Provider for PushProvider {
    type Secret = PushSecret;
    type Credentials = PushCredentials;

    fn load_secret(
        store: &Store,
        app_id: AppId,
    ) -> impl Future<Output = Result<PushSecret, StoreError>> + Send {
        store.get_secret::<PushSecret>(app_id)
    }

    fn credentials(app: &App, secret: &PushSecret) -> PushCredentials {
        PushCredentials { fcm: secret.fcm(app), apns: secret.apns(app) }
    }

    async fn send(
        &self,
        app: &App,
        credentials: &PushCredentials,
        sub: &Subscription,
        message: &Message,
    ) -> Result<Accepted, SendError> {
        let token = sub.token.as_deref().filter(|t| !t.trim().is_empty());
        let (platform, token) = match (sub.channel, sub.platform, token) {
            (Channel::Push, Some(platform), Some(token)) => (platform, token),
            (Channel::Push, _, _) => {
                return Err(SendError::Permanent {
                    code: "missing_push_address".into(),
                    detail: "push sub without platform or token".into(),
                    dead_address: false,
                });
            }
            (channel, _, _) => {
                return Err(SendError::Permanent {
                    code: "wrong_channel".into(),
                    detail: format!("{channel} sub given to the push sender"),
                    dead_address: false,
                });
            }
        };
        let tracked = Tracked {
            app_id: app.app_id,
            message_id: message.message_id,
            subscription_id: sub.subscription_id,
        };
        let tracking_token = self.tracking.mint(&tracked).await.map_err(|e| SendError::Transient {
            detail: format!("the tracking keyring could not be read: {e}"),
            retry_after: None,
        })?;
        let notification = Notification::of(message, sub, token, tracking_token);
        let sent = match platform {
            Platform::Android => {
                self.fcm
                    .send(configured(credentials.fcm.as_ref(), "FCM service account")?, &notification)
                    .await
            }
            Platform::Ios => {
                self.apns.send(configured(credentials.apns.as_ref(), "APNs key")?, &notification).await
            }
        };
        // A provider's message may quote the device token; it never reaches a detail or a log.
        sent.map_err(|e| without_token(e, token))
    }
}

/// The app's credentials for the platform's provider, or why nothing can be sent.
fn configured<'a, T>(config: Option<&'a T>, what: &str) -> Result<&'a T, SendError> {
    config.ok_or_else(|| SendError::NotConfigured(format!("app has no {what}")))
}

/// Seconds since the epoch, the unit of the tokens' `iat` (0 before 1970).
pub(crate) fn unix_seconds(at: DateTime<Utc>) -> u64 {
    u64::try_from(at.timestamp()).unwrap_or_default()
}

fn base_url(base: &str) -> Option<Url> {
    let url = Url::parse(base.trim_end_matches('/')).ok()?;
    (matches!(url.scheme(), "http" | "https") && !url.cannot_be_a_base()).then_some(url)
}

/// `error` with every occurrence of the device token in its detail masked.
fn without_token(error: SendError, token: &str) -> SendError {
    error.map_detail(|detail| detail.replace(token, "***"))
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

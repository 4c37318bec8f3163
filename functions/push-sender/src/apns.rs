//! Apple Push Notification service, HTTP/2 provider API with token authentication (ios).
//!
//! The provider token is an ES256 JWT (header `kid` = key id, claims `iss` = team id, `iat`)
//! signed with the app's .p8 key. Apple wants it refreshed between 20 and 60 minutes and
//! refuses refreshing more often (TooManyProviderTokenUpdates), so each key's token is cached
//! and replaced once it is older than [`DEFAULT_TOKEN_MAX_AGE`], or when Apple refuses it.
//! Its age is read on the client's clock, the one its `iat` comes from.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::{AUTHORIZATION, HeaderMap};
use reqwest::{Client, StatusCode, Url};
use retarget_shared::SharedClock;
use retarget_shared::domain::ApnsConfig;
use retarget_shared::provider_http::{self, clip, endpoint};
use retarget_shared::services::provider::{Accepted, SendError};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{Notification, unix_seconds};

/// Provider tokens older than this are replaced (Apple: between 20 and 60 minutes).
pub const DEFAULT_TOKEN_MAX_AGE: Duration = Duration::from_secs(40 * 60);

/// Claims of the APNs provider token.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProviderTokenClaims {
    pub iss: String,
    pub iat: u64,
}

#[derive(Clone)]
struct ProviderToken {
    jwt: String,
    issued: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct KeyRef {
    team_id: String,
    key_id: String,
}

impl KeyRef {
    fn of(config: &ApnsConfig) -> Self {
        Self { team_id: config.account.team_id.clone(), key_id: config.account.key_id.clone() }
    }
}

/// The APNs client, with its provider-token cache.
pub(crate) struct ApnsClient {
    http: Client,
    api_base: Url,
    token_max_age: Duration,
    tokens: Mutex<HashMap<KeyRef, ProviderToken>>,
    clock: SharedClock,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    reason: Option<String>,
}

impl ApnsClient {
    pub(crate) fn new(http: Client, api_base: Url, clock: SharedClock) -> Self {
        let tokens = Mutex::new(HashMap::new());
        Self { http, api_base, token_max_age: DEFAULT_TOKEN_MAX_AGE, tokens, clock }
    }

    pub(crate) fn set_token_max_age(&mut self, max_age: Duration) {
        self.token_max_age = max_age;
    }

    pub(crate) fn set_clock(&mut self, clock: SharedClock) {
        self.clock = clock;
    }

    /// Sends one alert to its device token.
    pub(crate) async fn send(
        &self,
        config: &ApnsConfig,
        n: &Notification<'_>,
    ) -> Result<Accepted, SendError> {
        let jwt = self.provider_token(config)?;
        let url = endpoint(&self.api_base, &["3", "device", n.token])?;
        let request = self
            .http
            .post(url)
            .header(AUTHORIZATION, format!("bearer {jwt}"))
            .header("apns-topic", &config.account.topic)
            .header("apns-push-type", "alert")
            .header("apns-priority", "10")
            .json(&payload(n));
        let answer = provider_http::call("APNs", request).await?;
        if answer.status == StatusCode::OK {
            return Ok(Accepted { provider_id: apns_id(&answer.headers) });
        }
        let reason = serde_json::from_str::<ErrorBody>(&answer.body).ok().and_then(|b| b.reason);
        let error = classify_error(answer.status, reason.as_deref(), answer.retry_after());
        if matches!(reason.as_deref(), Some("InvalidProviderToken" | "ExpiredProviderToken")) {
            self.invalidate(config, &jwt);
        }
        Err(error)
    }

    /// The cached provider token of the key, or a new one. Signing is quick and local, so a
    /// plain lock held while signing keeps concurrent sends from making several tokens.
    fn provider_token(&self, config: &ApnsConfig) -> Result<String, SendError> {
        let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        let key = KeyRef::of(config);
        let now = self.clock.now();
        // A token from the future (the clock stepped back) is as young as one issued now.
        let age = |t: &ProviderToken| now.signed_duration_since(t.issued).to_std().unwrap_or_default();
        if let Some(token) = tokens.get(&key).filter(|t| age(t) < self.token_max_age) {
            return Ok(token.jwt.clone());
        }
        let jwt = provider_jwt(config, unix_seconds(now))?;
        tokens.insert(key, ProviderToken { jwt: jwt.clone(), issued: now });
        Ok(jwt)
    }

    /// Forgets the key's token if it is still the one Apple refused.
    fn invalidate(&self, config: &ApnsConfig, refused: &str) {
        let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        let key = KeyRef::of(config);
        if tokens.get(&key).is_some_and(|t| t.jwt == refused) {
            tokens.remove(&key);
        }
    }
}

/// A new ES256 provider token.
pub fn provider_jwt(config: &ApnsConfig, now_unix: u64) -> Result<String, SendError> {
    let key = EncodingKey::from_ec_pem(config.private_key_pem.as_bytes())
        .map_err(|_| SendError::NotConfigured("APNs key is not a P-256 PKCS#8 PEM key".into()))?;
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(config.account.key_id.clone());
    let claims = ProviderTokenClaims { iss: config.account.team_id.clone(), iat: now_unix };
    jsonwebtoken::encode(&header, &claims, &key)
        .map_err(|_| SendError::NotConfigured("APNs key cannot sign".into()))
}

fn apns_id(headers: &HeaderMap) -> Option<String> {
    headers.get("apns-id").and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// The notification payload: `aps.alert` plus our ids and the recipient's tracking token `rt`
/// (what the app reports delivery, opens and conversions with, `POST /v1/track`).
fn payload(n: &Notification<'_>) -> Value {
    let mut alert = json!({ "body": n.body });
    if let Some(title) = n.title {
        alert["title"] = json!(title);
    }
    let mut payload = json!({
        // The app's Notification Service Extension, if it has one, runs for every notification
        // (and may report the delivery with `rt`); without one it is displayed as usual.
        "aps": { "alert": alert, "mutable-content": 1 },
        "message_id": n.message_id,
        "subscription_id": n.subscription_id,
        "rt": n.tracking_token,
    });
    if let Some(url) = n.url {
        payload["url"] = json!(url);
    }
    payload
}

/// Maps a non-200 APNs answer by status and `reason`.
fn classify_error(status: StatusCode, reason: Option<&str>, retry_after: Option<Duration>) -> SendError {
    let code = reason.map(clip).unwrap_or_else(|| format!("http_{}", status.as_u16()));
    let detail = format!("APNs answered {} {code}", status.as_u16());
    let permanent =
        |dead_address| SendError::Permanent { code: code.clone(), detail: detail.clone(), dead_address };
    match (status.as_u16(), reason) {
        // The device token is no longer active for the topic (Unregistered, ExpiredToken).
        (410, _) => permanent(true),
        (400, Some("BadDeviceToken" | "DeviceTokenNotForTopic")) => permanent(true),
        // Our provider token was refused: the caller dropped it, the retry signs a new one.
        (403, Some("InvalidProviderToken" | "ExpiredProviderToken")) => {
            SendError::Transient { detail, retry_after }
        }
        // Other 403s (MissingProviderToken, BadCertificate, Forbidden…): the app's key is unusable.
        (403, _) => SendError::NotConfigured(detail),
        (429, _) => SendError::Transient { detail, retry_after },
        (s, _) if s >= 500 => SendError::Transient { detail, retry_after },
        // Other 4xx: BadTopic, PayloadTooLarge, BadPath… will not get better by retrying.
        _ => permanent(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_errors() {
        let dead = |status: u16, reason: Option<&str>| match classify_error(
            StatusCode::from_u16(status).unwrap(),
            reason,
            None,
        ) {
            SendError::Permanent { dead_address, .. } => Some(dead_address),
            _ => None,
        };
        assert_eq!(dead(410, Some("Unregistered")), Some(true));
        assert_eq!(dead(410, None), Some(true));
        assert_eq!(dead(400, Some("BadDeviceToken")), Some(true));
        assert_eq!(dead(400, Some("DeviceTokenNotForTopic")), Some(true));
        assert_eq!(dead(400, Some("BadTopic")), Some(false));
        assert_eq!(dead(413, Some("PayloadTooLarge")), Some(false));
        for (status, reason) in [
            (403, "InvalidProviderToken"),
            (403, "ExpiredProviderToken"),
            (429, "TooManyRequests"),
            (500, "InternalServerError"),
            (503, "ServiceUnavailable"),
        ] {
            let e = classify_error(StatusCode::from_u16(status).unwrap(), Some(reason), None);
            assert!(matches!(e, SendError::Transient { .. }), "{status} {reason}: {e:?}");
        }
        let e = classify_error(StatusCode::FORBIDDEN, Some("MissingProviderToken"), None);
        assert!(matches!(e, SendError::NotConfigured(_)), "{e:?}");
    }

    #[test]
    fn payload_shape() {
        let n = Notification {
            token: "tok",
            title: Some("t"),
            body: "b",
            url: Some("https://x"),
            message_id: "m".into(),
            subscription_id: "s".into(),
            tracking_token: "rt".into(),
        };
        assert_eq!(
            payload(&n),
            json!({"aps": {"alert": {"title": "t", "body": "b"}, "mutable-content": 1}, "message_id": "m",
                "subscription_id": "s", "rt": "rt", "url": "https://x"})
        );
    }
}

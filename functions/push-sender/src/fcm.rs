//! Firebase Cloud Messaging, HTTP v1 API (android).
//!
//! Authentication is Google's service-account flow: an RS256 JWT signed with the account's
//! private key is exchanged at its `token_uri` for an OAuth2 access token, which is cached per
//! service account until five minutes before it expires. One fetch per account is in flight at a
//! time: concurrent sends wait for it instead of all asking for a token. Expiry is read on the
//! client's clock, the one the assertion's `iat` comes from.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::AUTHORIZATION;
use reqwest::{Client, StatusCode, Url};
use retarget_shared::SharedClock;
use retarget_shared::domain::FcmConfig;
use retarget_shared::provider_http::{self, clip, endpoint};
use retarget_shared::services::provider::{Accepted, SendError};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{Notification, unix_seconds};

/// The OAuth2 scope for sending through FCM.
pub const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// The grant type of the service-account (JWT bearer) flow.
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// How long the assertion JWT is valid (Google's maximum).
const ASSERTION_LIFETIME_SECS: u64 = 3600;
/// An access token is used until this long before it expires.
const EXPIRY_MARGIN: Duration = Duration::from_secs(300);
/// Assumed lifetime when the token endpoint does not say.
const DEFAULT_EXPIRES_IN: u64 = 3600;

/// Claims of the service-account assertion.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct AssertionClaims {
    pub iss: String,
    pub scope: String,
    pub aud: String,
    pub iat: u64,
    pub exp: u64,
}

#[derive(Clone)]
struct AccessToken {
    value: String,
    /// Reuse until then (expiry minus the margin); `None`: use once, never cache.
    fresh_until: Option<DateTime<Utc>>,
}

impl AccessToken {
    fn is_fresh(&self, now: DateTime<Utc>) -> bool {
        self.fresh_until.is_some_and(|until| now < until)
    }
}

/// One service account's cached token; its async lock serialises the fetches.
type TokenSlot = Arc<tokio::sync::Mutex<Option<AccessToken>>>;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct AccountKey {
    client_email: String,
    project_id: String,
    token_uri: String,
}

impl AccountKey {
    fn of(config: &FcmConfig) -> Self {
        Self {
            client_email: config.account.client_email.clone(),
            project_id: config.account.project_id.clone(),
            token_uri: config.account.token_uri.clone(),
        }
    }
}

/// The FCM HTTP v1 client, with its access-token cache.
pub(crate) struct FcmClient {
    http: Client,
    api_base: Url,
    tokens: Mutex<HashMap<AccountKey, TokenSlot>>,
    clock: SharedClock,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct TokenError {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
}

#[derive(Deserialize)]
struct SendResponse {
    #[serde(default)]
    name: Option<String>,
}

impl FcmClient {
    pub(crate) fn new(http: Client, api_base: Url, clock: SharedClock) -> Self {
        Self { http, api_base, tokens: Mutex::new(HashMap::new()), clock }
    }

    pub(crate) fn set_clock(&mut self, clock: SharedClock) {
        self.clock = clock;
    }

    /// Sends one notification to its registration token.
    pub(crate) async fn send(&self, config: &FcmConfig, n: &Notification<'_>) -> Result<Accepted, SendError> {
        let access_token = self.access_token(config).await?;
        let url = endpoint(&self.api_base, &["v1", "projects", &config.account.project_id, "messages:send"])?;
        let request = self
            .http
            .post(url)
            .header(AUTHORIZATION, format!("Bearer {access_token}"))
            .json(&message_body(n));
        let answer = provider_http::call("FCM", request).await?;
        if answer.status.is_success() {
            let name = serde_json::from_str::<SendResponse>(&answer.body).ok().and_then(|r| r.name);
            return Ok(Accepted { provider_id: name });
        }
        if answer.status == StatusCode::UNAUTHORIZED {
            self.invalidate(config, &access_token).await;
        }
        Err(classify_send_error(answer.status, answer.retry_after(), &answer.body))
    }

    /// The cached access token of the account, or a fresh one.
    async fn access_token(&self, config: &FcmConfig) -> Result<String, SendError> {
        let slot = self.slot(config);
        let mut cached = slot.lock().await;
        if let Some(token) = cached.as_ref().filter(|t| t.is_fresh(self.clock.now())) {
            return Ok(token.value.clone());
        }
        let token = self.fetch_token(config).await?;
        let value = token.value.clone();
        *cached = Some(token);
        Ok(value)
    }

    /// Forgets the account's token if it is still the one that was refused.
    async fn invalidate(&self, config: &FcmConfig, refused: &str) {
        let slot = self.slot(config);
        let mut cached = slot.lock().await;
        if cached.as_ref().is_some_and(|t| t.value == refused) {
            *cached = None;
        }
    }

    fn slot(&self, config: &FcmConfig) -> TokenSlot {
        let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        tokens.entry(AccountKey::of(config)).or_default().clone()
    }

    async fn fetch_token(&self, config: &FcmConfig) -> Result<AccessToken, SendError> {
        let token_uri = Url::parse(&config.account.token_uri)
            .map_err(|_| SendError::NotConfigured("FCM service account token_uri is not a URL".into()))?;
        let requested_at = self.clock.now();
        let assertion = assertion(config, unix_seconds(requested_at))?;
        let request = self
            .http
            .post(token_uri)
            .form(&[("grant_type", JWT_BEARER_GRANT), ("assertion", assertion.as_str())]);
        let answer = provider_http::call("FCM token endpoint", request).await?;
        let status = answer.status;
        if status.is_success() {
            let parsed: TokenResponse =
                serde_json::from_str(&answer.body).map_err(|_| SendError::Transient {
                    detail: "FCM token endpoint answered without an access token".into(),
                    retry_after: None,
                })?;
            let lifetime = Duration::from_secs(parsed.expires_in.unwrap_or(DEFAULT_EXPIRES_IN));
            // A lifetime past what a date can hold is used once, like one within the margin.
            let fresh_until = lifetime
                .checked_sub(EXPIRY_MARGIN)
                .and_then(|usable| TimeDelta::from_std(usable).ok())
                .and_then(|usable| requested_at.checked_add_signed(usable));
            return Ok(AccessToken { value: parsed.access_token, fresh_until });
        }
        let reason = serde_json::from_str::<TokenError>(&answer.body)
            .ok()
            .map(|e| [e.error, e.error_description].into_iter().flatten().collect::<Vec<_>>().join(": "))
            .filter(|r| !r.is_empty())
            .unwrap_or_else(|| "no error description".into());
        let detail = format!("FCM token endpoint answered {}: {}", status.as_u16(), clip(&reason));
        if status.is_client_error()
            && status != StatusCode::TOO_MANY_REQUESTS
            && status != StatusCode::REQUEST_TIMEOUT
        {
            tracing::warn!(client_email = %config.account.client_email, status = status.as_u16(), "FCM service account refused");
            Err(SendError::NotConfigured(detail))
        } else {
            Err(SendError::Transient { detail, retry_after: answer.retry_after() })
        }
    }
}

/// The signed service-account assertion (RS256) for the token request.
pub fn assertion(config: &FcmConfig, now_unix: u64) -> Result<String, SendError> {
    let pem = normalise_pem(&config.private_key);
    let key = EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|_| {
        SendError::NotConfigured("FCM service account private_key is not an RSA PEM key".into())
    })?;
    let claims = AssertionClaims {
        iss: config.account.client_email.clone(),
        scope: FCM_SCOPE.into(),
        aud: config.account.token_uri.clone(),
        iat: now_unix,
        exp: now_unix + ASSERTION_LIFETIME_SECS,
    };
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key)
        .map_err(|_| SendError::NotConfigured("FCM service account private_key cannot sign".into()))
}

/// A key pasted with literal `\n` escapes (as in an env var) made into a real PEM.
fn normalise_pem(pem: &str) -> std::borrow::Cow<'_, str> {
    if !pem.contains('\n') && pem.contains("\\n") { pem.replace("\\n", "\n").into() } else { pem.into() }
}

/// The `messages:send` body. `data` values must be strings.
fn message_body(n: &Notification<'_>) -> Value {
    let mut notification = json!({ "body": n.body });
    if let Some(title) = n.title {
        notification["title"] = json!(title);
    }
    let mut data =
        json!({ "message_id": n.message_id, "subscription_id": n.subscription_id, "rt": n.tracking_token });
    if let Some(url) = n.url {
        data["url"] = json!(url);
    }
    json!({ "message": { "token": n.token, "notification": notification, "data": data } })
}

/// FCM's error body: `{"error":{"code","message","status","details":[…]}}`.
#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error: ErrorInfo,
}

#[derive(Deserialize, Default)]
struct ErrorInfo {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    details: Vec<ErrorDetail>,
}

#[derive(Deserialize)]
struct ErrorDetail {
    #[serde(rename = "@type", default)]
    kind: String,
    #[serde(rename = "errorCode", default)]
    error_code: Option<String>,
    #[serde(rename = "fieldViolations", default)]
    field_violations: Vec<FieldViolation>,
}

#[derive(Deserialize)]
struct FieldViolation {
    #[serde(default)]
    field: String,
}

const FCM_ERROR_TYPE: &str = "type.googleapis.com/google.firebase.fcm.v1.FcmError";
const BAD_REQUEST_TYPE: &str = "type.googleapis.com/google.rpc.BadRequest";

/// Maps a non-2xx `messages:send` answer.
fn classify_send_error(status: StatusCode, retry_after: Option<Duration>, body: &str) -> SendError {
    let info = serde_json::from_str::<ErrorBody>(body).unwrap_or_default().error;
    let fcm_code =
        info.details.iter().filter(|d| d.kind == FCM_ERROR_TYPE).find_map(|d| d.error_code.clone());
    // The most specific name: FCM's errorCode, then the RPC status, then the HTTP status.
    let code = fcm_code
        .clone()
        .or_else(|| info.status.clone())
        .unwrap_or_else(|| format!("http_{}", status.as_u16()));
    let message = info.message.as_deref().map(clip).unwrap_or_default();
    let detail = format!("FCM answered {} {code}: {message}", status.as_u16());
    let permanent =
        |dead_address| SendError::Permanent { code: code.clone(), detail: detail.clone(), dead_address };

    match code.as_str() {
        // The token is gone (usually 404): the subscription is dead.
        "UNREGISTERED" => return permanent(true),
        // The APNs credentials configured in Firebase (iOS through FCM): retrying cannot help.
        "THIRD_PARTY_AUTH_ERROR" => return permanent(false),
        _ => {}
    }
    let transient_code = matches!(
        code.as_str(),
        "UNAVAILABLE" | "INTERNAL" | "QUOTA_EXCEEDED" | "RESOURCE_EXHAUSTED" | "UNAUTHENTICATED"
    );
    // 401: our access token was refused (the caller dropped it); the next try fetches another.
    if status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::UNAUTHORIZED
        || status.is_server_error()
        || transient_code
    {
        return SendError::Transient { detail, retry_after };
    }
    match code.as_str() {
        "INVALID_ARGUMENT" => permanent(is_about_token(&info)),
        // SENDER_ID_MISMATCH, PERMISSION_DENIED, NOT_FOUND without UNREGISTERED, other 4xx.
        _ => permanent(false),
    }
}

/// Whether an INVALID_ARGUMENT is about the registration token (rather than the payload): a
/// field violation on `message.token`, or FCM's "not a valid FCM registration token" text.
fn is_about_token(info: &ErrorInfo) -> bool {
    let violations: Vec<&str> = info
        .details
        .iter()
        .filter(|d| d.kind == BAD_REQUEST_TYPE)
        .flat_map(|d| d.field_violations.iter().map(|v| v.field.as_str()))
        .collect();
    if !violations.is_empty() {
        return violations.contains(&"message.token");
    }
    info.message.as_deref().is_some_and(|m| m.to_ascii_lowercase().contains("registration token"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(status: &str, code: Option<&str>, message: &str) -> String {
        let details =
            code.map(|c| json!([{ "@type": FCM_ERROR_TYPE, "errorCode": c }])).unwrap_or_else(|| json!([]));
        json!({ "error": { "code": 0, "message": message, "status": status, "details": details } })
            .to_string()
    }

    fn dead(e: &SendError) -> Option<bool> {
        match e {
            SendError::Permanent { dead_address, .. } => Some(*dead_address),
            _ => None,
        }
    }

    #[test]
    fn classifies_send_errors() {
        let unregistered = classify_send_error(
            StatusCode::NOT_FOUND,
            None,
            &body("NOT_FOUND", Some("UNREGISTERED"), "Requested entity was not found."),
        );
        assert_eq!(dead(&unregistered), Some(true));
        let bad_token = classify_send_error(
            StatusCode::BAD_REQUEST,
            None,
            &body(
                "INVALID_ARGUMENT",
                Some("INVALID_ARGUMENT"),
                "The registration token is not a valid FCM registration token",
            ),
        );
        assert_eq!(dead(&bad_token), Some(true));
        let too_big = classify_send_error(
            StatusCode::BAD_REQUEST,
            None,
            &body("INVALID_ARGUMENT", Some("INVALID_ARGUMENT"), "Message is too big"),
        );
        assert_eq!(dead(&too_big), Some(false));
        let violation = json!({"error": {"code": 400, "message": "Invalid value", "status": "INVALID_ARGUMENT",
            "details": [{"@type": BAD_REQUEST_TYPE, "fieldViolations": [{"field": "message.data[0].value"}]}]}});
        assert_eq!(
            dead(&classify_send_error(StatusCode::BAD_REQUEST, None, &violation.to_string())),
            Some(false)
        );
        let violation = json!({"error": {"code": 400, "message": "Invalid value", "status": "INVALID_ARGUMENT",
            "details": [{"@type": BAD_REQUEST_TYPE, "fieldViolations": [{"field": "message.token"}]}]}});
        assert_eq!(
            dead(&classify_send_error(StatusCode::BAD_REQUEST, None, &violation.to_string())),
            Some(true)
        );
        let mismatch = classify_send_error(
            StatusCode::FORBIDDEN,
            None,
            &body("PERMISSION_DENIED", Some("SENDER_ID_MISMATCH"), "SenderId mismatch"),
        );
        assert_eq!(dead(&mismatch), Some(false));
        assert_eq!(dead(&classify_send_error(StatusCode::FORBIDDEN, None, "")), Some(false));
        for (status, code) in [
            (StatusCode::TOO_MANY_REQUESTS, Some("QUOTA_EXCEEDED")),
            (StatusCode::SERVICE_UNAVAILABLE, Some("UNAVAILABLE")),
            (StatusCode::INTERNAL_SERVER_ERROR, Some("INTERNAL")),
            (StatusCode::BAD_GATEWAY, None),
            (StatusCode::UNAUTHORIZED, None),
        ] {
            let e = classify_send_error(status, Some(Duration::from_secs(3)), &body("X", code, "m"));
            assert!(
                matches!(e, SendError::Transient { retry_after: Some(d), .. } if d == Duration::from_secs(3)),
                "{status}: {e:?}"
            );
        }
        let garbage = classify_send_error(StatusCode::BAD_REQUEST, None, "<html>");
        assert!(
            matches!(garbage, SendError::Permanent { ref code, dead_address: false, .. } if code == "http_400")
        );
    }

    #[test]
    fn message_body_shape() {
        let n = Notification {
            token: "tok",
            title: None,
            body: "b",
            url: None,
            message_id: "m".into(),
            subscription_id: "s".into(),
            tracking_token: "rt".into(),
        };
        assert_eq!(
            message_body(&n),
            json!({"message": {"token": "tok", "notification": {"body": "b"},
                "data": {"message_id": "m", "subscription_id": "s", "rt": "rt"}}})
        );
    }

    #[test]
    fn escaped_newlines_are_restored() {
        assert_eq!(
            normalise_pem("-----BEGIN-----\\nAAA\\n-----END-----"),
            "-----BEGIN-----\nAAA\n-----END-----"
        );
        assert_eq!(normalise_pem("a\nb\\n"), "a\nb\\n");
    }
}

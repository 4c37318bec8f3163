//! FCM HTTP v1 against a wiremock stand-in (real HTTP): the service-account token flow, the send
//! request, the token cache and every error mapping.

// A test crate: its helpers may unwrap too (clippy.toml allows it in `#[test]` functions only).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use retarget_push_sender::{AssertionClaims, FCM_SCOPE, JWT_BEARER_GRANT, PushProvider};
use retarget_shared::domain::{FcmConfig, Message, Platform, Subscription};
use retarget_shared::services::provider::{Accepted, SendError};
use serde_json::{Value, json};
use support::*;
use wiremock::{MockServer, Request, Respond, ResponseTemplate};

const SEND_PATH: &str = FCM_SEND_PATH;

fn provider(server: &MockServer, timeout: Duration) -> PushProvider {
    // APNs is not used here: a closed port makes any stray call fail loudly.
    PushProvider::new(server.uri(), "http://127.0.0.1:9".into(), timeout, tracking()).expect("provider")
}

/// Hands out `token-1`, `token-2`… with the given lifetime.
struct Tokens {
    issued: AtomicUsize,
    expires_in: u64,
}

impl Tokens {
    fn new(expires_in: u64) -> Self {
        Self { issued: AtomicUsize::new(0), expires_in }
    }
}

impl Respond for Tokens {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.issued.fetch_add(1, Ordering::SeqCst) + 1;
        ResponseTemplate::new(200).set_body_json(json!({
            "access_token": format!("token-{n}"), "expires_in": self.expires_in, "token_type": "Bearer"
        }))
    }
}

async fn mount_tokens(server: &MockServer, expires_in: u64) {
    answer_posts(server, "/token", Tokens::new(expires_in)).await;
}

async fn mount_send(server: &MockServer, response: ResponseTemplate) {
    answer_posts(server, SEND_PATH, response).await;
}

/// A stand-in handing out tokens of this lifetime (seconds) and accepting every send.
async fn accepting(expires_in: u64) -> MockServer {
    let server = MockServer::start().await;
    mount_tokens(&server, expires_in).await;
    mount_send(&server, accepted()).await;
    server
}

fn fcm_error(code: u16, status: &str, error_code: Option<&str>, message: &str) -> ResponseTemplate {
    let details = match error_code {
        Some(c) => json!([{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": c}]),
        None => json!([]),
    };
    ResponseTemplate::new(code).set_body_json(json!({
        "error": {"code": code, "message": message, "status": status, "details": details}
    }))
}

fn accepted() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"name": "projects/demo-project/messages/0:1500"}))
}

/// An app with this service account, one of its android subscriptions, and a message with this
/// title and URL.
fn android_push(fcm: FcmConfig, title: Option<&str>, url: Option<&str>) -> (PushApp, Subscription, Message) {
    let app = app(Some(fcm), None);
    let subscription = android(&app);
    let message = message(&app, title, url);
    (app, subscription, message)
}

/// One send through the provider, from a fresh app/subscription/message.
async fn send_once(provider: &PushProvider, server: &MockServer) -> Result<Accepted, SendError> {
    let (app, subscription, message) = android_push(fcm_config(server), Some("Hi"), None);
    provider.send_as(&app, &subscription, &message).await
}

#[tokio::test]
async fn token_grant_is_a_signed_jwt_bearer_assertion_and_send_carries_it() {
    let server = accepting(3600).await;
    let provider = provider(&server, Duration::from_secs(5));
    let url = Some("https://shop.example/cart");
    let (app, subscription, message) = android_push(fcm_config(&server), Some("Come back"), url);

    let accepted = provider.send_as(&app, &subscription, &message).await.expect("accepted");
    assert_eq!(accepted.provider_id.as_deref(), Some("projects/demo-project/messages/0:1500"));

    // The token request: a form-encoded jwt-bearer grant whose assertion verifies.
    let token_requests = requests_to(&server, "/token").await;
    assert_eq!(token_requests.len(), 1);
    let grant = &token_requests[0];
    assert!(header_of(grant, "content-type").starts_with("application/x-www-form-urlencoded"));
    let form: Vec<(String, String)> = form_urlencoded::parse(&grant.body).into_owned().collect();
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    assert_eq!(field("grant_type").as_deref(), Some(JWT_BEARER_GRANT));
    let assertion = field("assertion").expect("assertion");
    assert_eq!(jsonwebtoken::decode_header(&assertion).expect("header").alg, Algorithm::RS256);
    let token_uri = format!("{}/token", server.uri());
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[&token_uri]);
    validation.set_issuer(&[CLIENT_EMAIL]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud"]);
    let key = DecodingKey::from_rsa_pem(RSA_PUBLIC_PEM.as_bytes()).expect("public key");
    let claims =
        jsonwebtoken::decode::<AssertionClaims>(&assertion, &key, &validation).expect("verifies").claims;
    assert_eq!(claims.iss, CLIENT_EMAIL);
    assert_eq!(claims.scope, FCM_SCOPE);
    assert_eq!(claims.aud, token_uri);
    assert_eq!(claims.exp, claims.iat + 3600);
    assert!(claims.iat.abs_diff(unix_now()) <= 5, "iat {} is not now", claims.iat);

    // Another key does not verify it: the check above means something.
    let wrong_key = DecodingKey::from_ec_pem(EC_PUBLIC_PEM.as_bytes()).expect("other key");
    assert!(jsonwebtoken::decode::<AssertionClaims>(&assertion, &wrong_key, &validation).is_err());

    // The send: bearer token and the message shape.
    let sends = requests_to(&server, SEND_PATH).await;
    assert_eq!(sends.len(), 1);
    assert_eq!(header_of(&sends[0], "authorization"), "Bearer token-1");
    assert!(header_of(&sends[0], "content-type").starts_with("application/json"));
    let body: Value = sends[0].body_json().expect("json body");
    assert_eq!(
        body,
        json!({"message": {
            "token": ANDROID_TOKEN,
            "notification": {"title": "Come back", "body": "Your cart misses you"},
            "data": {
                "message_id": message.message_id.to_string(),
                "subscription_id": subscription.subscription_id.to_string(),
                "rt": rt(&message, &subscription),
                "url": "https://shop.example/cart"
            }
        }})
    );
}

#[tokio::test]
async fn optional_title_and_url_are_left_out() {
    let server = accepting(3600).await;
    let provider = provider(&server, Duration::from_secs(5));
    let (app, subscription, message) = android_push(fcm_config(&server), None, None);
    provider.send_as(&app, &subscription, &message).await.expect("accepted");
    let body: Value = requests_to(&server, SEND_PATH).await[0].body_json().expect("json");
    assert_eq!(body["message"]["notification"], json!({"body": "Your cart misses you"}));
    assert_eq!(
        body["message"]["data"],
        json!({
            "message_id": message.message_id.to_string(),
            "subscription_id": subscription.subscription_id.to_string(),
            "rt": rt(&message, &subscription),
        })
    );
}

#[tokio::test]
async fn access_token_is_cached_and_refreshed_after_expiry() {
    // An hour: usable for 55 minutes (tokens are dropped 5 minutes before they expire).
    let server = accepting(3600).await;
    let clock = frozen_clock();
    let provider = provider(&server, Duration::from_secs(5)).with_clock(clock.clone());

    send_once(&provider, &server).await.expect("first");
    clock.advance(chrono::Duration::minutes(54));
    send_once(&provider, &server).await.expect("second");
    assert_eq!(requests_to(&server, "/token").await.len(), 1, "two sends, one token request");

    clock.advance(chrono::Duration::minutes(2));
    send_once(&provider, &server).await.expect("third");
    assert_eq!(requests_to(&server, "/token").await.len(), 2, "expired token refreshed");
    let sends = requests_to(&server, SEND_PATH).await;
    let bearers: Vec<&str> = sends.iter().map(|r| header_of(r, "authorization")).collect();
    assert_eq!(bearers, ["Bearer token-1", "Bearer token-1", "Bearer token-2"]);
}

#[tokio::test]
async fn token_within_the_expiry_margin_is_not_cached() {
    let server = accepting(300).await;
    let provider = provider(&server, Duration::from_secs(5));
    send_once(&provider, &server).await.expect("first");
    send_once(&provider, &server).await.expect("second");
    assert_eq!(requests_to(&server, "/token").await.len(), 2);
}

#[tokio::test]
async fn concurrent_sends_share_one_token_request() {
    let server = MockServer::start().await;
    let slow = ResponseTemplate::new(200)
        .set_body_json(json!({"access_token": "slow-token", "expires_in": 3600}))
        .set_delay(Duration::from_millis(300));
    answer_posts(&server, "/token", slow).await;
    mount_send(&server, accepted()).await;
    let provider = Arc::new(provider(&server, Duration::from_secs(5)));
    let config = fcm_config(&server);
    let sends: Vec<_> = (0..8)
        .map(|_| {
            let provider = Arc::clone(&provider);
            let config = config.clone();
            tokio::spawn(async move {
                let (app, subscription, message) = android_push(config, None, None);
                provider.send_as(&app, &subscription, &message).await
            })
        })
        .collect();
    for handle in sends {
        handle.await.expect("task").expect("accepted");
    }
    assert_eq!(requests_to(&server, "/token").await.len(), 1);
    assert_eq!(requests_to(&server, SEND_PATH).await.len(), 8);
}

#[tokio::test]
async fn unauthorized_drops_the_cached_token() {
    let server = MockServer::start().await;
    mount_tokens(&server, 3600).await;
    let refusal = fcm_error(401, "UNAUTHENTICATED", None, "Request had invalid authentication credentials.");
    answer_first_post(&server, SEND_PATH, refusal).await;
    mount_send(&server, accepted()).await;
    let provider = provider(&server, Duration::from_secs(5));

    let first = send_once(&provider, &server).await;
    assert!(matches!(first, Err(SendError::Transient { .. })), "{first:?}");
    send_once(&provider, &server).await.expect("retry with a new token");
    let sends = requests_to(&server, SEND_PATH).await;
    let bearers: Vec<&str> = sends.iter().map(|r| header_of(r, "authorization")).collect();
    assert_eq!(bearers, ["Bearer token-1", "Bearer token-2"]);
}

async fn error_for(response: ResponseTemplate) -> SendError {
    let server = MockServer::start().await;
    mount_tokens(&server, 3600).await;
    mount_send(&server, response).await;
    send_once(&provider(&server, Duration::from_secs(5)), &server).await.expect_err("refused")
}

/// `messages:send` refused with FCM's `error_code`: a permanent failure under that code, which
/// unsubscribes the token when `dead`.
async fn assert_refused(status: u16, rpc_status: &str, error_code: &str, message: &str, dead: bool) {
    let error = error_for(fcm_error(status, rpc_status, Some(error_code), message)).await;
    assert_permanent(&error, error_code, dead);
}

#[tokio::test]
async fn unregistered_token_is_dead() {
    assert_refused(404, "NOT_FOUND", "UNREGISTERED", "Requested entity was not found.", true).await;
}

#[tokio::test]
async fn invalid_registration_token_is_dead() {
    let message = "The registration token is not a valid FCM registration token";
    assert_refused(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", message, true).await;
}

#[tokio::test]
async fn invalid_payload_is_permanent_but_keeps_the_subscription() {
    assert_refused(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "Message is too big", false).await;
}

#[tokio::test]
async fn sender_id_mismatch_keeps_the_subscription() {
    assert_refused(403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH", "SenderId mismatch", false).await;
}

#[tokio::test]
async fn too_many_requests_is_transient_with_retry_after() {
    let response = fcm_error(429, "RESOURCE_EXHAUSTED", Some("QUOTA_EXCEEDED"), "Quota exceeded")
        .insert_header("Retry-After", "30");
    match error_for(response).await {
        SendError::Transient { retry_after, .. } => assert_eq!(retry_after, Some(Duration::from_secs(30))),
        other => panic!("expected transient, got {other:?}"),
    }
}

#[tokio::test]
async fn unavailable_is_transient_with_its_retry_after_in_either_form() {
    for (retry_after, expected) in [("12", 12), ("Wed, 21 Oct 2015 07:28:00 GMT", 45)] {
        let response = fcm_error(503, "UNAVAILABLE", Some("UNAVAILABLE"), "The service is unavailable")
            .insert_header("Date", "Wed, 21 Oct 2015 07:27:15 GMT")
            .insert_header("Retry-After", retry_after);
        match error_for(response).await {
            SendError::Transient { retry_after, .. } => {
                assert_eq!(retry_after, Some(Duration::from_secs(expected)))
            }
            other => panic!("expected transient, got {other:?}"),
        }
    }
    // RESOURCE_EXHAUSTED without FCM's own error code is a quota too.
    let response =
        fcm_error(429, "RESOURCE_EXHAUSTED", None, "Quota exceeded").insert_header("Retry-After", "5");
    let error = error_for(response).await;
    assert!(
        matches!(error, SendError::Transient { retry_after: Some(d), .. } if d == Duration::from_secs(5)),
        "{error:?}"
    );
}

#[tokio::test]
async fn server_errors_are_transient() {
    for response in [
        fcm_error(500, "INTERNAL", Some("INTERNAL"), "Internal error"),
        fcm_error(503, "UNAVAILABLE", Some("UNAVAILABLE"), "The service is unavailable"),
        ResponseTemplate::new(502).set_body_string("<html>bad gateway</html>"),
    ] {
        let error = error_for(response).await;
        assert!(matches!(error, SendError::Transient { retry_after: None, .. }), "{error:?}");
    }
}

#[tokio::test]
async fn timeout_is_transient() {
    let server = MockServer::start().await;
    mount_tokens(&server, 3600).await;
    mount_send(&server, accepted().set_delay(Duration::from_secs(3))).await;
    let error =
        send_once(&provider(&server, Duration::from_millis(300)), &server).await.expect_err("timed out");
    match &error {
        SendError::Transient { detail, .. } => assert!(detail.contains("timed out"), "{detail}"),
        other => panic!("expected transient, got {other:?}"),
    }
}

#[tokio::test]
async fn token_endpoint_refusal_means_not_configured() {
    let server = MockServer::start().await;
    let refusal = json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."});
    answer_posts(&server, "/token", ResponseTemplate::new(400).set_body_json(refusal)).await;
    let error = send_once(&provider(&server, Duration::from_secs(5)), &server).await.expect_err("refused");
    match &error {
        SendError::NotConfigured(detail) => assert!(detail.contains("invalid_grant"), "{detail}"),
        other => panic!("expected not configured, got {other:?}"),
    }
    assert!(requests_to(&server, SEND_PATH).await.is_empty());
}

#[tokio::test]
async fn token_endpoint_outage_is_transient() {
    let server = MockServer::start().await;
    answer_posts(&server, "/token", ResponseTemplate::new(503).insert_header("Retry-After", "7")).await;
    let error = send_once(&provider(&server, Duration::from_secs(5)), &server).await.expect_err("outage");
    assert!(
        matches!(error, SendError::Transient { retry_after: Some(d), .. } if d == Duration::from_secs(7)),
        "{error:?}"
    );

    // Nothing listening at all: a connection error, also transient.
    let app = app(
        Some({
            let mut config = fcm_config(&server);
            config.account.token_uri = "http://127.0.0.1:9/token".into();
            config
        }),
        None,
    );
    let provider = provider(&server, Duration::from_secs(5));
    let error =
        provider.send_as(&app, &android(&app), &message(&app, None, None)).await.expect_err("refused");
    assert!(matches!(error, SendError::Transient { .. }), "{error:?}");
}

#[tokio::test]
async fn unusable_private_key_means_not_configured_without_any_request() {
    let server = MockServer::start().await;
    let provider = provider(&server, Duration::from_secs(5));
    for private_key in ["not a key", EC_PRIVATE_PEM] {
        let app = app(Some(FcmConfig { private_key: private_key.into(), ..fcm_config(&server) }), None);
        let error =
            provider.send_as(&app, &android(&app), &message(&app, None, None)).await.expect_err("bad key");
        assert!(matches!(error, SendError::NotConfigured(_)), "{error:?}");
        // The detail never quotes the key.
        assert!(!error.to_string().contains("PRIVATE KEY"), "{error}");
    }
    assert!(server.received_requests().await.expect("recording").is_empty());
}

#[tokio::test]
async fn app_without_fcm_or_subscription_without_token_sends_nothing() {
    let server = MockServer::start().await;
    let provider = provider(&server, Duration::from_secs(5));
    let no_fcm = app(None, None);
    let error =
        provider.send_as(&no_fcm, &android(&no_fcm), &message(&no_fcm, None, None)).await.expect_err("x");
    assert!(matches!(error, SendError::NotConfigured(_)), "{error:?}");

    let configured = app(Some(fcm_config(&server)), None);
    for subscription in [
        subscription(&configured, Some(Platform::Android), None),
        subscription(&configured, None, Some(ANDROID_TOKEN)),
        subscription(&configured, Some(Platform::Android), Some("  ")),
    ] {
        let error = provider
            .send_as(&configured, &subscription, &message(&configured, None, None))
            .await
            .expect_err("x");
        assert!(matches!(error, SendError::Permanent { dead_address: false, .. }), "{error:?}");
    }
    assert!(server.received_requests().await.expect("recording").is_empty());
}

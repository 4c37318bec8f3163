//! APNs against a wiremock stand-in (real HTTP/1.1 on loopback; HTTP/2 is what `https://` bases
//! negotiate): the ES256 provider token, the request headers and payload, the token cache and
//! every error mapping.

// A test crate: its helpers may unwrap too (clippy.toml allows it in `#[test]` functions only).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashSet;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use retarget_push_sender::{ProviderTokenClaims, PushProvider};
use retarget_shared::domain::{ApnsConfig, Message, Platform, Subscription};
use retarget_shared::services::provider::{Accepted, SendError};
use serde_json::{Value, json};
use support::*;
use wiremock::{MockServer, ResponseTemplate};

fn device_path() -> String {
    format!("/3/device/{IOS_TOKEN}")
}

fn provider(server: &MockServer, timeout: Duration) -> PushProvider {
    // FCM is not used here: a closed port makes any stray call fail loudly.
    PushProvider::new("http://127.0.0.1:9".into(), server.uri(), timeout, tracking()).expect("provider")
}

fn accepted() -> ResponseTemplate {
    ResponseTemplate::new(200).insert_header("apns-id", "EC1BF194-B3B2-424A-89A3-6A3B3C1E4F2B")
}

fn reason(status: u16, reason: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({"reason": reason}))
}

async fn mount_device(server: &MockServer, response: ResponseTemplate) {
    answer_posts(server, &device_path(), response).await;
}

/// An app with an APNs key, one of its ios subscriptions, and a message with this title and URL.
fn ios_push(title: Option<&str>, url: Option<&str>) -> (PushApp, Subscription, Message) {
    let app = app(None, Some(apns_config()));
    let subscription = ios(&app);
    let message = message(&app, title, url);
    (app, subscription, message)
}

async fn send_once(provider: &PushProvider) -> Result<Accepted, SendError> {
    let (app, subscription, message) = ios_push(Some("Hi"), None);
    provider.send_as(&app, &subscription, &message).await
}

/// Verifies a provider token with the test key's public half; returns its claims.
fn verify(jwt: &str) -> ProviderTokenClaims {
    let header = jsonwebtoken::decode_header(jwt).expect("jwt header");
    assert_eq!(header.alg, Algorithm::ES256);
    assert_eq!(header.kid.as_deref(), Some(KEY_ID));
    let mut validation = Validation::new(Algorithm::ES256);
    validation.required_spec_claims = HashSet::from(["iss".to_owned()]);
    validation.validate_exp = false;
    validation.set_issuer(&[TEAM_ID]);
    let key = DecodingKey::from_ec_pem(EC_PUBLIC_PEM.as_bytes()).expect("public key");
    jsonwebtoken::decode::<ProviderTokenClaims>(jwt, &key, &validation).expect("token verifies").claims
}

fn bearer(request: &wiremock::Request) -> String {
    let value = header_of(request, "authorization");
    value.strip_prefix("bearer ").unwrap_or_else(|| panic!("not a bearer token: {value:.10}")).to_owned()
}

#[tokio::test]
async fn request_carries_a_verified_provider_token_headers_and_payload() {
    let server = MockServer::start().await;
    mount_device(&server, accepted()).await;
    let provider = provider(&server, Duration::from_secs(5));
    let (app, subscription, message) = ios_push(Some("Come back"), Some("https://shop.example/cart"));

    let accepted = provider.send_as(&app, &subscription, &message).await.expect("accepted");
    assert_eq!(accepted.provider_id.as_deref(), Some("EC1BF194-B3B2-424A-89A3-6A3B3C1E4F2B"));

    let requests = requests_to(&server, &device_path()).await;
    assert_eq!(requests.len(), 1);
    for (name, value) in [("apns-topic", TOPIC), ("apns-push-type", "alert"), ("apns-priority", "10")] {
        assert_eq!(header_of(&requests[0], name), value, "{name}");
    }
    let claims = verify(&bearer(&requests[0]));
    assert_eq!(claims.iss, TEAM_ID);
    assert!(claims.iat.abs_diff(unix_now()) <= 5, "iat {} is not now", claims.iat);
    assert!(header_of(&requests[0], "content-type").starts_with("application/json"));
    let body: Value = requests[0].body_json().expect("json body");
    assert_eq!(
        body,
        json!({
            "aps": {"alert": {"title": "Come back", "body": "Your cart misses you"}, "mutable-content": 1},
            "message_id": message.message_id.to_string(),
            "subscription_id": subscription.subscription_id.to_string(),
            "rt": rt(&message, &subscription),
            "url": "https://shop.example/cart"
        })
    );

    // Another key does not verify the token: the check above means something.
    let other = DecodingKey::from_rsa_pem(RSA_PUBLIC_PEM.as_bytes()).expect("other key");
    let mut validation = Validation::new(Algorithm::ES256);
    validation.validate_exp = false;
    assert!(jsonwebtoken::decode::<ProviderTokenClaims>(&bearer(&requests[0]), &other, &validation).is_err());
}

#[tokio::test]
async fn optional_title_and_url_are_left_out() {
    let server = MockServer::start().await;
    mount_device(&server, accepted()).await;
    let provider = provider(&server, Duration::from_secs(5));
    let (app, subscription, message) = ios_push(None, None);
    provider.send_as(&app, &subscription, &message).await.expect("accepted");
    let body: Value = requests_to(&server, &device_path()).await[0].body_json().expect("json");
    assert_eq!(
        body,
        json!({
            "aps": {"alert": {"body": "Your cart misses you"}, "mutable-content": 1},
            "message_id": message.message_id.to_string(),
            "subscription_id": subscription.subscription_id.to_string(),
            "rt": rt(&message, &subscription)
        })
    );
}

#[tokio::test]
async fn provider_token_is_reused_then_replaced_when_old() {
    let server = MockServer::start().await;
    mount_device(&server, accepted()).await;
    let clock = frozen_clock();
    let provider = provider(&server, Duration::from_secs(5))
        .with_apns_token_max_age(Duration::from_secs(20 * 60))
        .with_clock(clock.clone());

    send_once(&provider).await.expect("first");
    // Its age counts from when it was made, not from when it was last used.
    clock.advance(chrono::Duration::minutes(19));
    send_once(&provider).await.expect("second");
    clock.advance(chrono::Duration::minutes(2));
    send_once(&provider).await.expect("third");

    let tokens: Vec<String> = requests_to(&server, &device_path()).await.iter().map(bearer).collect();
    assert_eq!(tokens[0], tokens[1], "cached within its age");
    assert_ne!(tokens[1], tokens[2], "replaced once older than the maximum age");
    assert!(verify(&tokens[2]).iat > verify(&tokens[0]).iat);
}

#[tokio::test]
async fn refused_provider_token_is_dropped_and_the_error_is_transient() {
    for refusal in ["ExpiredProviderToken", "InvalidProviderToken"] {
        let server = MockServer::start().await;
        answer_first_post(&server, &device_path(), reason(403, refusal)).await;
        mount_device(&server, accepted()).await;
        let clock = frozen_clock();
        let provider = provider(&server, Duration::from_secs(5)).with_clock(clock.clone());

        let error = send_once(&provider).await.expect_err("refused");
        assert!(matches!(error, SendError::Transient { .. }), "{refusal}: {error:?}");
        // A second later, so the new token's `iat` differs from the refused one's.
        clock.advance(chrono::Duration::seconds(1));
        send_once(&provider).await.expect("accepted with a new token");
        let tokens: Vec<String> = requests_to(&server, &device_path()).await.iter().map(bearer).collect();
        assert_eq!(tokens.len(), 2);
        assert_ne!(tokens[0], tokens[1], "{refusal}: the refused token was reused");
    }
}

async fn error_for(response: ResponseTemplate) -> SendError {
    let server = MockServer::start().await;
    mount_device(&server, response).await;
    send_once(&provider(&server, Duration::from_secs(5))).await.expect_err("refused")
}

#[tokio::test]
async fn unregistered_device_is_dead() {
    let response = ResponseTemplate::new(410)
        .set_body_json(json!({"reason": "Unregistered", "timestamp": 1_700_000_000_000_u64}));
    assert_permanent(&error_for(response).await, "Unregistered", true);
}

#[tokio::test]
async fn bad_device_token_and_wrong_topic_are_dead() {
    assert_permanent(&error_for(reason(400, "BadDeviceToken")).await, "BadDeviceToken", true);
    assert_permanent(&error_for(reason(400, "DeviceTokenNotForTopic")).await, "DeviceTokenNotForTopic", true);
}

#[tokio::test]
async fn other_bad_requests_keep_the_subscription() {
    assert_permanent(&error_for(reason(400, "BadTopic")).await, "BadTopic", false);
    assert_permanent(&error_for(reason(413, "PayloadTooLarge")).await, "PayloadTooLarge", false);
    assert_permanent(&error_for(ResponseTemplate::new(400)).await, "http_400", false);
}

#[tokio::test]
async fn other_forbidden_means_not_configured() {
    let error = error_for(reason(403, "MissingProviderToken")).await;
    assert!(matches!(error, SendError::NotConfigured(_)), "{error:?}");
}

#[tokio::test]
async fn too_many_requests_is_transient_with_retry_after() {
    match error_for(reason(429, "TooManyRequests").insert_header("Retry-After", "12")).await {
        SendError::Transient { retry_after, .. } => assert_eq!(retry_after, Some(Duration::from_secs(12))),
        other => panic!("expected transient, got {other:?}"),
    }
}

/// APNs documents no `Retry-After` for TooManyRequests: without one the sender's backoff applies.
#[tokio::test]
async fn too_many_requests_without_retry_after_is_transient_without_a_hint() {
    match error_for(reason(429, "TooManyRequests")).await {
        SendError::Transient { retry_after, .. } => assert_eq!(retry_after, None),
        other => panic!("expected transient, got {other:?}"),
    }
}

#[tokio::test]
async fn server_errors_are_transient() {
    for response in
        [reason(500, "InternalServerError"), reason(503, "ServiceUnavailable"), ResponseTemplate::new(502)]
    {
        let error = error_for(response).await;
        assert!(matches!(error, SendError::Transient { .. }), "{error:?}");
    }
}

#[tokio::test]
async fn timeout_is_transient_and_does_not_leak_the_device_token() {
    let server = MockServer::start().await;
    mount_device(&server, accepted().set_delay(Duration::from_secs(3))).await;
    let error = send_once(&provider(&server, Duration::from_millis(300))).await.expect_err("timed out");
    match &error {
        SendError::Transient { detail, .. } => {
            assert!(detail.contains("timed out"), "{detail}");
            assert!(!detail.contains(IOS_TOKEN), "device token in {detail}");
        }
        other => panic!("expected transient, got {other:?}"),
    }
}

#[tokio::test]
async fn unusable_key_or_missing_config_sends_nothing() {
    let server = MockServer::start().await;
    let provider = provider(&server, Duration::from_secs(5));
    for apns in [None, Some(ApnsConfig { private_key_pem: "garbage".into(), ..apns_config() })] {
        let app = app(None, apns);
        let error = provider.send_as(&app, &ios(&app), &message(&app, None, None)).await.expect_err("no key");
        assert!(matches!(error, SendError::NotConfigured(_)), "{error:?}");
    }
    assert!(server.received_requests().await.expect("recording").is_empty());
}

#[tokio::test]
async fn the_platform_picks_the_provider() {
    // One stand-in plays both providers: android goes to FCM, ios to APNs.
    let server = MockServer::start().await;
    let token = json!({"access_token": "t", "expires_in": 3600});
    answer_posts(&server, "/token", ResponseTemplate::new(200).set_body_json(token)).await;
    let sent = json!({"name": "fcm-name"});
    answer_posts(&server, FCM_SEND_PATH, ResponseTemplate::new(200).set_body_json(sent)).await;
    mount_device(&server, accepted()).await;
    let provider =
        PushProvider::new(server.uri(), server.uri(), Duration::from_secs(5), tracking()).expect("provider");
    let app = app(Some(fcm_config(&server)), Some(apns_config()));
    let message = message(&app, None, None);
    let phone = subscription(&app, Some(Platform::Android), Some(ANDROID_TOKEN));
    let android = provider.send_as(&app, &phone, &message).await.expect("fcm");
    assert_eq!(android.provider_id.as_deref(), Some("fcm-name"));
    let ios = provider.send_as(&app, &ios(&app), &message).await.expect("apns");
    assert_eq!(ios.provider_id.as_deref(), Some("EC1BF194-B3B2-424A-89A3-6A3B3C1E4F2B"));
    assert_eq!(requests_to(&server, &device_path()).await.len(), 1);
    assert_eq!(requests_to(&server, FCM_SEND_PATH).await.len(), 1);
}

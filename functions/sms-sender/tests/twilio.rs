//! The Twilio provider against a real HTTP server (wiremock): what is sent, and how every
//! kind of answer (or its absence) is classified.

// A test crate: its helpers may unwrap too (clippy.toml allows it in `#[test]` functions only).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use base64::Engine as _;
use chrono::{TimeZone, Utc};
use retarget_shared::domain::{
    App, AppId, Channel, Contents, Message, PhoneNumber, Plan, Subscription, SubscriptionId,
    SubscriptionStatus, TwilioAccount, TwilioConfig,
};
use retarget_shared::edge::signatures::{twilio_signature, verify_twilio};
use retarget_shared::services::provider::{Accepted, Provider, SendError};
use retarget_sms_sender::TwilioProvider;
use serde_json::json;
use wiremock::matchers::{basic_auth, header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
const AUTH_TOKEN: &str = "auth-token-never-logged";
const PUBLIC_BASE_URL: &str = "https://hooks.example.com";
const TO: &str = "+15551234567";
const MESSAGES_PATH: &str = "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json";

/// An app with the Twilio credentials the sender would have joined from its item and secret.
struct SmsApp {
    app: App,
    twilio: Option<TwilioConfig>,
}

impl std::ops::Deref for SmsApp {
    type Target = App;
    fn deref(&self) -> &App {
        &self.app
    }
}

fn app(from: Option<&str>, messaging_service_sid: Option<&str>) -> SmsApp {
    let twilio = TwilioConfig {
        account: TwilioAccount {
            account_sid: ACCOUNT_SID.into(),
            from: from.map(Into::into),
            messaging_service_sid: messaging_service_sid.map(Into::into),
        },
        auth_token: AUTH_TOKEN.into(),
    };
    let app = App {
        app_id: AppId::new(),
        name: "shop".into(),
        plan: Plan::Pro,
        created_at: Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap(),
        retargeting_enabled_at: None,
        twilio: Some(twilio.account.clone()),
        fcm: None,
        apns: None,
        ses: None,
        delivery_policy: Default::default(),
    };
    SmsApp { app, twilio: Some(twilio) }
}

/// `Provider::send` with the app's credentials.
trait SendAs {
    async fn send_as(
        &self,
        app: &SmsApp,
        subscription: &Subscription,
        message: &Message,
    ) -> Result<Accepted, SendError>;
}

impl SendAs for TwilioProvider {
    async fn send_as(
        &self,
        app: &SmsApp,
        subscription: &Subscription,
        message: &Message,
    ) -> Result<Accepted, SendError> {
        self.send(&app.app, &app.twilio, subscription, message).await
    }
}

fn subscription(app: &App, phone: Option<&str>) -> Subscription {
    let now = Utc.with_ymd_and_hms(2026, 11, 2, 0, 0, 0).unwrap();
    Subscription {
        subscription_id: SubscriptionId::at(now),
        app_id: app.app_id,
        channel: Channel::Sms,
        platform: None,
        token: None,
        phone_number: phone.map(|p| PhoneNumber::parse(p).unwrap()),
        email: None,
        external_user_id: None,
        status: SubscriptionStatus::Active,
        unsubscribed_reason: None,
        timezone: None,
        created_at: now,
        updated_at: now,
    }
}

fn message(app: &App, url: Option<&str>) -> Message {
    let contents = Contents {
        title: Some("Not sent".into()),
        body: "Your cart misses you".into(),
        url: url.map(Into::into),
        html: None,
    };
    Message::new(app.app_id, Channel::Sms, contents, Utc.with_ymd_and_hms(2026, 11, 3, 0, 0, 0).unwrap())
}

fn provider(server: &MockServer) -> TwilioProvider {
    provider_with_timeout(&server.uri(), Duration::from_secs(5))
}

fn provider_with_timeout(api_base: &str, timeout: Duration) -> TwilioProvider {
    TwilioProvider::new(api_base.into(), PUBLIC_BASE_URL.into(), timeout)
}

fn form(request: &Request) -> Vec<(String, String)> {
    form_urlencoded::parse(&request.body).into_owned().collect()
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

fn created(sid: &str) -> ResponseTemplate {
    ResponseTemplate::new(201).set_body_json(json!({"sid": sid, "status": "queued"}))
}

fn twilio_error(status: u16, code: u64, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status,
    }))
}

/// A Twilio stand-in answering every POST to the Messages resource with `response`.
async fn twilio(response: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST")).and(path(MESSAGES_PATH)).respond_with(response).mount(&server).await;
    server
}

/// Sends one SMS to a server answering `response`; the outcome and the request Twilio saw.
async fn send_with(
    response: ResponseTemplate,
    url: Option<&str>,
) -> (Result<Accepted, SendError>, Option<Request>) {
    let server = twilio(response).await;
    let app = app(Some("+15550001111"), None);
    let outcome = provider(&server).send_as(&app, &subscription(&app, Some(TO)), &message(&app, url)).await;
    let request = server.received_requests().await.unwrap().into_iter().next();
    (outcome, request)
}

async fn outcome_of(response: ResponseTemplate) -> Result<Accepted, SendError> {
    send_with(response, None).await.0
}

/// Twilio refusing the send with error `code`: a permanent failure under that code, which
/// unsubscribes the recipient when `dead`.
async fn assert_permanent(code: u64, message: &str, dead: bool) {
    let outcome = outcome_of(twilio_error(400, code, message)).await;
    let want = code.to_string();
    assert!(
        matches!(&outcome, Err(SendError::Permanent { code, dead_address, .. }) if *code == want && *dead_address == dead),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn sends_the_form_twilio_expects() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(MESSAGES_PATH))
        .and(basic_auth(ACCOUNT_SID, AUTH_TOKEN))
        .and(header("content-type", "application/x-www-form-urlencoded"))
        .respond_with(created("SM0001"))
        .expect(1)
        .mount(&server)
        .await;
    let app = app(Some("+15550001111"), None);
    let subscription = subscription(&app, Some(TO));
    let message = message(&app, None);

    let outcome = provider(&server).send_as(&app, &subscription, &message).await;
    assert_eq!(outcome, Ok(Accepted { provider_id: Some("SM0001".into()) }));

    let requests = server.received_requests().await.unwrap();
    let request = &requests[0];
    let expected_auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT_SID}:{AUTH_TOKEN}"))
    );
    assert_eq!(request.headers.get("authorization").unwrap().to_str().unwrap(), expected_auth);
    let callback = format!(
        "{PUBLIC_BASE_URL}/v1/webhooks/twilio/{}?message_id={}&subscription_id={}",
        app.app_id, message.message_id, subscription.subscription_id
    );
    let mut form = form(request);
    form.sort();
    let mut expected = vec![
        ("Body".to_owned(), "Your cart misses you".to_owned()),
        ("From".to_owned(), "+15550001111".to_owned()),
        ("StatusCallback".to_owned(), callback),
        ("To".to_owned(), TO.to_owned()),
    ];
    expected.sort();
    assert_eq!(form, expected, "exactly these fields, and no title");
}

#[tokio::test]
async fn the_url_follows_the_body_after_a_space() {
    let (outcome, request) = send_with(created("SM0002"), Some("https://shop.example/cart?c=1&d=2")).await;
    assert!(outcome.is_ok(), "{outcome:?}");
    let form = form(&request.unwrap());
    assert_eq!(field(&form, "Body"), Some("Your cart misses you https://shop.example/cart?c=1&d=2"));
}

#[tokio::test]
async fn messaging_service_is_preferred_over_from() {
    for (from, service, expected) in [
        (Some("+15550001111"), Some("MG0001"), ("MessagingServiceSid", "MG0001")),
        (None, Some("MG0001"), ("MessagingServiceSid", "MG0001")),
        (Some("+15550001111"), None, ("From", "+15550001111")),
    ] {
        let server = twilio(created("SM1")).await;
        let app = app(from, service);
        provider(&server).send_as(&app, &subscription(&app, Some(TO)), &message(&app, None)).await.unwrap();
        let form = form(&server.received_requests().await.unwrap()[0]);
        assert_eq!(field(&form, expected.0), Some(expected.1));
        let other = if expected.0 == "From" { "MessagingServiceSid" } else { "From" };
        assert_eq!(field(&form, other), None, "only one sender field");
    }
}

#[tokio::test]
async fn the_status_callback_verifies_as_the_webhook_checks_it() {
    let (outcome, request) = send_with(created("SM0003"), None).await;
    assert!(outcome.is_ok());
    let callback = field(&form(&request.unwrap()), "StatusCallback").unwrap().to_owned();

    // What the webhook rebuilds: PUBLIC_BASE_URL + path + "?" + query.
    let rest = callback.strip_prefix(PUBLIC_BASE_URL).expect("starts with PUBLIC_BASE_URL");
    let (route, query) = rest.split_once('?').unwrap();
    assert!(route.starts_with("/v1/webhooks/twilio/"));
    let rebuilt = format!("{PUBLIC_BASE_URL}{route}?{query}");
    assert_eq!(rebuilt, callback);

    // Twilio signs the URL it was given plus the form it posts.
    let posted: Vec<(String, String)> = [
        ("AccountSid", ACCOUNT_SID),
        ("ApiVersion", "2010-04-01"),
        ("From", "+15550001111"),
        ("MessageSid", "SM0003"),
        ("MessageStatus", "delivered"),
        ("SmsSid", "SM0003"),
        ("SmsStatus", "delivered"),
        ("To", TO),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_owned(), v.to_owned()))
    .collect();
    let signature = twilio_signature(AUTH_TOKEN, &callback, &posted);
    assert!(verify_twilio(AUTH_TOKEN, &rebuilt, &posted, &signature));
    assert!(!verify_twilio("another-token", &rebuilt, &posted, &signature));
}

#[tokio::test]
async fn invalid_number_is_a_dead_address() {
    let outcome =
        outcome_of(twilio_error(400, 21211, "The 'To' number +15551234567 is not a valid phone number."))
            .await;
    let Err(SendError::Permanent { code, detail, dead_address }) = outcome else { panic!("{outcome:?}") };
    assert_eq!(code, "21211");
    assert!(dead_address);
    assert!(!detail.contains(TO) && !detail.contains("5551234567"), "number masked: {detail}");
}

#[tokio::test]
async fn stop_is_a_dead_address() {
    assert_permanent(21610, "Attempt to send to unsubscribed recipient", true).await;
}

#[tokio::test]
async fn landline_is_a_dead_address() {
    assert_permanent(21614, "'To' number is not a valid mobile number", true).await;
}

#[tokio::test]
async fn other_client_errors_are_permanent_but_keep_the_subscription() {
    assert_permanent(21617, "The concatenated message body exceeds the 1600 character limit.", false).await;
}

#[tokio::test]
async fn bad_credentials_mean_the_app_is_not_configured() {
    let outcome = outcome_of(twilio_error(401, 20003, "Authenticate")).await;
    assert!(matches!(&outcome, Err(SendError::NotConfigured(_))), "{outcome:?}");
    let outcome = outcome_of(ResponseTemplate::new(403)).await;
    assert!(matches!(&outcome, Err(SendError::NotConfigured(_))), "{outcome:?}");
}

#[tokio::test]
async fn too_many_requests_is_transient_with_retry_after() {
    let response = twilio_error(429, 20429, "Too Many Requests").insert_header("Retry-After", "7");
    let outcome = outcome_of(response).await;
    assert!(
        matches!(&outcome, Err(SendError::Transient { retry_after: Some(d), .. }) if *d == Duration::from_secs(7)),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_retry_after_date_is_read_against_the_answers_own_date() {
    let response = twilio_error(429, 20429, "Too Many Requests")
        .insert_header("Date", "Wed, 21 Oct 2015 07:27:15 GMT")
        .insert_header("Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT");
    let outcome = outcome_of(response).await;
    assert!(
        matches!(&outcome, Err(SendError::Transient { retry_after: Some(d), .. }) if *d == Duration::from_secs(45)),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn server_errors_are_transient() {
    let outcome = outcome_of(ResponseTemplate::new(500).set_body_string("oops")).await;
    assert!(matches!(&outcome, Err(SendError::Transient { retry_after: None, .. })), "{outcome:?}");
    let outcome =
        outcome_of(twilio_error(503, 20503, "Service Unavailable").insert_header("Retry-After", "2")).await;
    assert!(
        matches!(&outcome, Err(SendError::Transient { retry_after: Some(d), .. }) if *d == Duration::from_secs(2)),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_slow_twilio_times_out_as_transient() {
    let server = twilio(created("SM_late").set_delay(Duration::from_secs(5))).await;
    let provider = provider_with_timeout(&server.uri(), Duration::from_millis(200));
    let app = app(Some("+15550001111"), None);
    let started = std::time::Instant::now();
    let outcome = provider.send_as(&app, &subscription(&app, Some(TO)), &message(&app, None)).await;
    assert!(started.elapsed() < Duration::from_secs(3), "gave up at the client timeout");
    let Err(SendError::Transient { detail, .. }) = &outcome else { panic!("{outcome:?}") };
    assert!(detail.contains("timed out"), "{detail}");
}

#[tokio::test]
async fn a_refused_connection_is_transient() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let provider = provider_with_timeout(&format!("http://{address}"), Duration::from_secs(2));
    let app = app(Some("+15550001111"), None);
    let outcome = provider.send_as(&app, &subscription(&app, Some(TO)), &message(&app, None)).await;
    let Err(SendError::Transient { detail, .. }) = &outcome else { panic!("{outcome:?}") };
    assert!(detail.contains("connection failed"), "{detail}");
}

#[tokio::test]
async fn nothing_is_sent_without_twilio_config_or_phone_number() {
    let server = MockServer::start().await;
    Mock::given(method("POST")).respond_with(created("SM")).expect(0).mount(&server).await;
    let provider = provider(&server);

    let mut unconfigured = app(Some("+15550001111"), None);
    unconfigured.twilio = None;
    unconfigured.app.twilio = None;
    let outcome = provider
        .send_as(&unconfigured, &subscription(&unconfigured, Some(TO)), &message(&unconfigured, None))
        .await;
    assert!(matches!(&outcome, Err(SendError::NotConfigured(_))), "{outcome:?}");

    let no_sender = app(None, None);
    let outcome =
        provider.send_as(&no_sender, &subscription(&no_sender, Some(TO)), &message(&no_sender, None)).await;
    assert!(matches!(&outcome, Err(SendError::NotConfigured(_))), "{outcome:?}");

    let app = app(Some("+15550001111"), None);
    let outcome = provider.send_as(&app, &subscription(&app, None), &message(&app, None)).await;
    assert!(matches!(&outcome, Err(SendError::Permanent { dead_address: false, .. })), "{outcome:?}");
}

#[tokio::test]
async fn errors_never_carry_the_auth_token_or_the_number() {
    let outcome =
        outcome_of(twilio_error(400, 21211, &format!("bad To {TO} for 15551234567 with {AUTH_TOKEN}"))).await;
    let text = format!("{:?} {}", outcome, outcome.clone().unwrap_err());
    assert!(!text.contains(AUTH_TOKEN) && !text.contains("5551234567"), "{text}");
}

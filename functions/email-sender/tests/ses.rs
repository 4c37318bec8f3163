//! The SES provider against a stand-in SES v2 (wiremock, speaking SES's REST-JSON protocol):
//! what `SendEmail` carries, and how every class of answer (or its absence) is classified.

// A test crate: its helpers may unwrap too (clippy.toml allows it in `#[test]` functions only).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_sesv2::config::{Credentials, SharedCredentialsProvider};
use chrono::{TimeZone, Utc};
use retarget_email_sender::{EmailProvider, ONE_CLICK};
use retarget_shared::domain::{
    App, AppId, Channel, Contents, EmailAddress, Keyring, Message, Plan, SesConfig, Subscription,
    SubscriptionId, SubscriptionStatus, TokenPurpose,
};
use retarget_shared::services::provider::{Accepted, Provider, SendError};
use retarget_shared::services::tracking::TrackingKeys;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SEND_PATH: &str = "/v2/email/outbound-emails";
const PUBLIC_BASE_URL: &str = "https://hooks.example.com";
const TO: &str = "Ada.Lovelace@example.com";

fn now() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 3, 0, 0, 0).unwrap()
}

fn app(ses: Option<SesConfig>) -> App {
    App {
        app_id: AppId::new(),
        name: "shop".into(),
        plan: Plan::Pro,
        created_at: Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap(),
        retargeting_enabled_at: None,
        twilio: None,
        fcm: None,
        apns: None,
        ses,
        delivery_policy: Default::default(),
    }
}

fn ses() -> SesConfig {
    SesConfig::new("Shop <news@shop.example.com>", Some("retarget-events")).unwrap()
}

fn subscription(app: &App) -> Subscription {
    Subscription {
        subscription_id: SubscriptionId::at(now()),
        app_id: app.app_id,
        channel: Channel::Email,
        platform: None,
        token: None,
        phone_number: None,
        email: Some(EmailAddress::parse(TO).unwrap()),
        external_user_id: None,
        status: SubscriptionStatus::Active,
        unsubscribed_reason: None,
        timezone: None,
        created_at: now(),
        updated_at: now(),
    }
}

fn message(app: &App, html: Option<&str>) -> Message {
    let contents = Contents {
        title: Some("Your cart misses you".into()),
        body: "Come back: 10% off today.".into(),
        url: None,
        html: html.map(Into::into),
    };
    Message::new(app.app_id, Channel::Email, contents, now())
}

struct Fixture {
    server: MockServer,
    provider: EmailProvider,
    ring: Keyring,
}

async fn fixture() -> Fixture {
    let server = MockServer::start().await;
    let sdk = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(server.uri())
        .credentials_provider(SharedCredentialsProvider::new(Credentials::for_tests()))
        .build();
    let ring = Keyring::generate(Utc::now());
    let provider = EmailProvider::new(&sdk, PUBLIC_BASE_URL, TrackingKeys::fixed(ring.clone()));
    Fixture { server, provider, ring }
}

fn ses_error(status: u16, code: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header("x-amzn-ErrorType", code)
        .set_body_json(json!({"message": message}))
}

async fn answer(response: ResponseTemplate) -> Result<Accepted, SendError> {
    let f = fixture().await;
    Mock::given(method("POST")).and(path(SEND_PATH)).respond_with(response).mount(&f.server).await;
    let app = app(Some(ses()));
    let sub = subscription(&app);
    f.provider.send(&app, &app.ses, &sub, &message(&app, None)).await
}

#[tokio::test]
async fn send_email_carries_the_from_the_set_the_tags_and_the_one_click_unsubscribe() {
    let f = fixture().await;
    Mock::given(method("POST"))
        .and(path(SEND_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"MessageId": "0100-ses-id"})))
        .expect(1)
        .mount(&f.server)
        .await;
    let app = app(Some(ses()));
    let sub = subscription(&app);
    let msg = message(&app, Some("<p>Come back: <b>10% off</b> today.</p>"));
    let accepted = f.provider.send(&app, &app.ses, &sub, &msg).await.unwrap();
    assert_eq!(accepted.provider_id.as_deref(), Some("0100-ses-id"));

    let requests = f.server.received_requests().await.unwrap();
    let body: Value = serde_json::from_slice(&requests[0].body).unwrap();
    assert_eq!(body["FromEmailAddress"], "Shop <news@shop.example.com>");
    assert_eq!(body["ConfigurationSetName"], "retarget-events");
    assert_eq!(body["Destination"]["ToAddresses"], json!([TO]));
    let simple = &body["Content"]["Simple"];
    assert_eq!(simple["Subject"]["Data"], "Your cart misses you");
    assert_eq!(simple["Body"]["Text"]["Data"], "Come back: 10% off today.");
    assert_eq!(simple["Body"]["Html"]["Data"], "<p>Come back: <b>10% off</b> today.</p>");
    let tags: Vec<(String, String)> = body["EmailTags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["Name"].as_str().unwrap().into(), t["Value"].as_str().unwrap().into()))
        .collect();
    assert_eq!(
        tags,
        vec![
            ("app_id".into(), app.app_id.to_string()),
            ("message_id".into(), msg.message_id.to_string()),
            ("subscription_id".into(), sub.subscription_id.to_string()),
        ]
    );
    let headers = simple["Headers"].as_array().unwrap();
    let header = |name: &str| {
        headers.iter().find(|h| h["Name"] == name).and_then(|h| h["Value"].as_str()).unwrap().to_owned()
    };
    assert_eq!(header("List-Unsubscribe-Post"), ONE_CLICK);
    let link = header("List-Unsubscribe");
    let token = link
        .strip_prefix(&format!("<{PUBLIC_BASE_URL}/u/"))
        .and_then(|rest| rest.strip_suffix('>'))
        .unwrap_or_else(|| panic!("{link}"));
    let tracked = f.ring.verify_for(TokenPurpose::Unsubscribe, token).unwrap();
    assert_eq!(
        (tracked.app_id, tracked.message_id, tracked.subscription_id),
        (app.app_id, msg.message_id, sub.subscription_id)
    );
    assert!(f.ring.verify(token).is_err(), "an unsubscribe link is no tracking token");
}

#[tokio::test]
async fn without_html_only_the_text_part_is_sent_and_without_a_set_none_is_named() {
    let f = fixture().await;
    Mock::given(method("POST"))
        .and(path(SEND_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"MessageId": "m"})))
        .mount(&f.server)
        .await;
    let app = app(Some(SesConfig::new("news@shop.example.com", None).unwrap()));
    let sub = subscription(&app);
    f.provider.send(&app, &app.ses, &sub, &message(&app, None)).await.unwrap();
    let body: Value = serde_json::from_slice(&f.server.received_requests().await.unwrap()[0].body).unwrap();
    assert!(body["Content"]["Simple"]["Body"].get("Html").is_none(), "{body}");
    assert!(body.get("ConfigurationSetName").is_none(), "{body}");
}

#[tokio::test]
async fn throttling_quota_and_5xx_are_transient() {
    for response in [
        ses_error(429, "TooManyRequestsException", "Maximum sending rate exceeded."),
        ses_error(400, "LimitExceededException", "Daily message quota exceeded."),
        ses_error(400, "ThrottlingException", "Rate exceeded"),
        ses_error(500, "InternalFailure", "internal"),
        ses_error(503, "ServiceUnavailable", "unavailable"),
        ResponseTemplate::new(502).set_body_string("<html>bad gateway</html>"),
    ] {
        let outcome = answer(response).await;
        assert!(matches!(outcome, Err(SendError::Transient { retry_after: None, .. })), "{outcome:?}");
    }
}

#[tokio::test]
async fn a_refused_message_fails_that_recipient_only_and_masks_the_address() {
    let outcome = answer(ses_error(
        400,
        "MessageRejected",
        "Email address is not verified. The following identities failed the check in region US-EAST-1: ada.lovelace@example.com",
    ))
    .await;
    let Err(SendError::Permanent { code, detail, dead_address }) = outcome else { panic!("{outcome:?}") };
    assert_eq!((code.as_str(), dead_address), ("MessageRejected", false));
    assert!(!detail.to_ascii_lowercase().contains("lovelace"), "{detail}");
    assert!(detail.contains("A***@example.com"), "{detail}");

    let outcome = answer(ses_error(400, "BadRequestException", "Illegal address")).await;
    assert!(
        matches!(&outcome, Err(SendError::Permanent { code, dead_address: false, .. }) if code == "BadRequestException"),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn account_level_refusals_halt_the_job() {
    for code in [
        "AccountSuspendedException",
        "SendingPausedException",
        "MailFromDomainNotVerifiedException",
        "NotFoundException",
        "AccessDeniedException",
    ] {
        let outcome = answer(ses_error(400, code, "refused")).await;
        assert!(matches!(&outcome, Err(SendError::Halt { code: c, .. }) if c == code), "{code}: {outcome:?}");
    }
}

#[tokio::test]
async fn an_unknown_refusal_is_retried_not_recorded_failed() {
    let outcome = answer(ses_error(400, "SomethingNewException", "new")).await;
    assert!(matches!(outcome, Err(SendError::Transient { .. })), "{outcome:?}");
}

#[tokio::test]
async fn no_answer_in_time_and_no_server_are_transient() {
    let outcome = answer(
        ResponseTemplate::new(200)
            .set_body_json(json!({"MessageId": "late"}))
            .set_delay(Duration::from_secs(15)),
    )
    .await;
    assert!(matches!(outcome, Err(SendError::Transient { .. })), "{outcome:?}");

    let f = fixture().await;
    let app = app(Some(ses()));
    let sub = subscription(&app);
    drop(f.server);
    let outcome = f.provider.send(&app, &app.ses, &sub, &message(&app, None)).await;
    assert!(matches!(outcome, Err(SendError::Transient { .. })), "{outcome:?}");
}

#[tokio::test]
async fn an_app_without_ses_is_not_configured_and_nothing_is_called() {
    let f = fixture().await;
    let app = app(None);
    let sub = subscription(&app);
    let outcome = f.provider.send(&app, &app.ses, &sub, &message(&app, None)).await;
    assert!(matches!(outcome, Err(SendError::NotConfigured(_))), "{outcome:?}");
    assert!(f.server.received_requests().await.unwrap().is_empty());
}

//! Security properties, against DynamoDB Local, the SQS emulator and a wiremock Twilio:
//! API keys are stored only as hashes; secrets and phone numbers never reach the logs (both
//! log formats, every level, captured); another tenant's ids answer 404 on every route that
//! takes one (iterating `ROUTES`) and never show up in lists or audiences; secret comparisons
//! are constant time.

use std::time::Duration;

use base64::Engine as _;
use clap::Parser;
use retarget_admin::{Cli, run};
use retarget_shared::Clock;
use retarget_shared::domain::{ApiKey, AppId, Channel, EventKind, Tracked};
use retarget_shared::edge::routes::{ROUTES, Route};
use retarget_shared::edge::signatures::{push_signature, twilio_signature};
use retarget_shared::services::sender::handle_batch;
use retarget_shared::telemetry;
use retarget_tests::{ApiRequest, PUBLIC_BASE_URL as PUBLIC, TestApp, World, sqs_event, twilio};
use serde_json::{Value, json};
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const ACCOUNT: &str = "AC5ec2e7c0ffee5ec2e7c0ffee5ec2e7c0";
const TWILIO_TOKEN: &str = "twilio-auth-token-5ecret-9f8e7d6c5b4a";
const FROM: &str = "+15550009999";
const FCM_ACCESS_TOKEN: &str = "ya29.c.5ecret-fcm-access-token-0123456789";
const ANDROID_TOKEN: &str = "fcm-registration-token-5ecret-device-0123456789";
const IOS_TOKEN: &str = "740f4707bebcf74f9b7c25d48e3358945f6aa01da5ddb387462c7eaf61bb78ad";
/// The demo's real (test-only) keys: the FCM service account and the APNs .p8.
fn fixture(name: &str) -> String {
    let path = format!("{}/../tools/demo/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn fcm_private_key() -> String {
    let account: Value = serde_json::from_str(&fixture("fcm-demo-service-account.json")).expect("json");
    account["private_key"].as_str().expect("private_key").to_owned()
}

/// The base64 lines of a PEM: any one of them in a log is a leaked key.
fn pem_lines(pem: &str) -> Vec<String> {
    pem.lines().filter(|l| !l.starts_with("-----") && l.len() >= 40).map(str::to_owned).collect()
}

async fn admin(world: &World, args: &[&str]) -> Value {
    let cli = Cli::try_parse_from(std::iter::once("retarget-admin").chain(args.iter().copied()))
        .expect("admin arguments");
    run(&world.store, cli, &mut std::io::empty()).await.expect("admin command")
}

/// An app with Twilio, FCM and APNs credentials, created through the admin library.
struct AdminApp {
    app_id: AppId,
    api_key: String,
    push_webhook_secret: String,
}

/// `token_uri`: where the FCM access token is fetched (a wiremock stand-in, or nowhere).
async fn admin_app(world: &World, token_uri: &str) -> AdminApp {
    let dir = std::env::temp_dir().join(format!("retarget-security-{}", ulid::Ulid::new()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let fcm = dir.join("service-account.json");
    let mut account: Value = serde_json::from_str(&fixture("fcm-demo-service-account.json")).expect("json");
    account["token_uri"] = token_uri.into();
    std::fs::write(&fcm, account.to_string()).expect("write service account");
    let p8 = dir.join("AuthKey.p8");
    std::fs::write(&p8, fixture("apns-demo-key.p8")).expect("write p8");
    let out = admin(
        world,
        &[
            "app",
            "create",
            "--name",
            "Secure",
            "--plan",
            "free",
            "--twilio-account-sid",
            ACCOUNT,
            "--twilio-auth-token",
            TWILIO_TOKEN,
            "--twilio-from",
            FROM,
            "--fcm-service-account",
            fcm.to_str().expect("utf-8 path"),
            "--apns-key",
            p8.to_str().expect("utf-8 path"),
            "--apns-key-id",
            "KEYID12345",
            "--apns-team-id",
            "TEAMID1234",
            "--apns-topic",
            "com.example.app",
        ],
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    let app_id = AppId::parse(out["app_id"].as_str().expect("app_id")).expect("an app id");
    admin(world, &["app", "set-plan", "--app-id", &app_id.to_string(), "--plan", "pro"]).await;
    AdminApp {
        app_id,
        api_key: out["api_key"].as_str().expect("api_key").to_owned(),
        push_webhook_secret: out["push_webhook_secret"].as_str().expect("secret").to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// (a) API keys only as hashes
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn api_keys_are_stored_only_as_hashes() {
    let world = World::new().await;
    let first = admin_app(&world, "https://oauth2.example.com/token").await;
    let second = admin(&world, &["key", "create", "--app-id", &first.app_id.to_string()]).await;
    let second = second["api_key"].as_str().expect("api_key").to_owned();
    let revoked = admin(&world, &["key", "create", "--app-id", &first.app_id.to_string()]).await;
    let revoked = revoked["api_key"].as_str().expect("api_key").to_owned();
    admin(&world, &["key", "revoke", "--app-id", &first.app_id.to_string(), "--api-key", &revoked]).await;
    let other = admin_app(&world, "https://oauth2.example.com/token").await;

    let table = world.snapshot().await;
    let everything = table.join("\n");
    for key in [&first.api_key, &second, &revoked, &other.api_key] {
        let random_part = key.strip_prefix(ApiKey::PREFIX).expect("prefixed key");
        assert!(random_part.len() >= 40, "{key}");
        assert!(!everything.contains(random_part), "a clear API key is stored:\n{everything}");
    }
    // What is stored is the hash: the active keys' hashes are there, the revoked one's is gone.
    for key in [&first.api_key, &second, &other.api_key] {
        let hash = ApiKey::presented(key).hash();
        assert!(everything.contains(hash.as_str()), "no item holds the key's hash");
    }
    assert!(
        !everything.contains(ApiKey::presented(&revoked).hash().as_str()),
        "a revoked key's hash remains"
    );
}

// ---------------------------------------------------------------------------------------------
// (b) no secret or phone number in the logs
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn secrets_and_phone_numbers_never_reach_the_logs() {
    let logs = telemetry::capture();
    let world = World::new().await;
    let queues = world.queues().await;
    let (fcm, apns) = (MockServer::start().await, MockServer::start().await);
    let admin_app = admin_app(&world, &format!("{}/token", fcm.uri())).await;
    let app = world.store.get_app(admin_app.app_id).await.unwrap().expect("the app");
    let t = TestApp {
        app,
        api_key: admin_app.api_key.clone(),
        push_webhook_secret: admin_app.push_webhook_secret.clone(),
        credentials: Default::default(),
    };

    // Subscriptions with phone numbers: created, updated, read, refused, unsubscribed.
    let phones = ["+15551234567", "+447911123456", "+15557654321", "+33612345678"];
    let mut subs = Vec::new();
    for (i, phone) in phones.iter().enumerate() {
        for _ in 0..2 {
            let body =
                json!({"channel": "sms", "phone_number": phone, "external_user_id": format!("person-{i}")});
            let r = world.call(t.post("/v1/subscriptions", &body)).await;
            assert!(r.status == 201 || r.status == 200, "{r:?}");
            subs.push(r.body["subscription_id"].as_str().expect("id").to_owned());
        }
    }
    subs.dedup();
    for bad in ["+1555123456789012", "15551234567", "+1 555 123 4567"] {
        let body = json!({"channel": "sms", "phone_number": bad});
        world.call(t.post("/v1/subscriptions", &body)).await.assert_problem(400, "invalid_phone_number");
    }
    let r = world.call(t.get(&format!("/v1/subscriptions/{}", subs[0]))).await;
    assert_eq!(r.body["phone_number"], phones[0]);

    // Bad authentication attempts, with keys.
    let mut wrong = t.api_key.clone();
    wrong.pop();
    wrong.push('x');
    for authorization in
        [format!("Bearer {wrong}"), format!("Basic {}", t.api_key), "Bearer rtk_guess".into()]
    {
        let request = ApiRequest::get(&format!("/v1/subscriptions/{}", subs[0]));
        world.call(request.header("authorization", &authorization)).await.assert_problem(401, "unauthorized");
    }

    // An SMS message to all of them, sent through the SMS sender to a wiremock Twilio: one
    // accepted, one permanent error and one transient error that quote the number, one timeout.
    let twilio = MockServer::start().await;
    let messages_path = twilio::messages_path(ACCOUNT);
    Mock::given(method("POST"))
        .and(path(&messages_path))
        .and(body_string_contains("To=%2B15557654321"))
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "code": 21211,
            "message": "The 'To' number +15557654321 (15557654321) is not a valid phone number. From +15550009999.",
            "more_info": "https://www.twilio.com/docs/errors/21211",
            "status": 400,
        })))
        .mount(&twilio)
        .await;
    Mock::given(method("POST"))
        .and(path(&messages_path))
        .and(body_string_contains("To=%2B447911123456"))
        .respond_with(
            ResponseTemplate::new(503).set_body_string("upstream busy for +447911123456 / 447911123456"),
        )
        .mount(&twilio)
        .await;
    Mock::given(method("POST"))
        .and(path(&messages_path))
        .and(body_string_contains("To=%2B33612345678"))
        .respond_with(twilio::accepted().set_delay(Duration::from_secs(3)))
        .mount(&twilio)
        .await;
    Mock::given(method("POST"))
        .and(path(&messages_path))
        .respond_with(twilio::accepted())
        .mount(&twilio)
        .await;

    let body =
        json!({"channel": "sms", "contents": {"body": "Sale today"}, "include_subscription_ids": subs});
    let r = world.call(t.post("/v1/messages", &body)).await;
    assert_eq!(r.status, 202, "{r:?}");
    let message_id = r.body["message_id"].as_str().expect("message_id").to_owned();
    let bodies = queues.bodies(&queues.sms).await;
    assert!(!bodies.is_empty());
    let sender =
        world.sender(Channel::Sms, twilio::provider(&world.store, twilio.uri(), Duration::from_secs(1)));
    handle_batch(&sender, sqs_event(&bodies), None).await;
    let requests = twilio.received_requests().await.unwrap_or_default();
    assert_eq!(requests.len(), phones.len(), "one Twilio request per number");

    // Twilio status callbacks, signed and forged, whose parameters carry the numbers.
    for (i, phone) in phones.iter().enumerate() {
        let target = format!(
            "/v1/webhooks/twilio/{}?message_id={message_id}&subscription_id={}",
            t.app.app_id, subs[i]
        );
        let params: Vec<(String, String)> = vec![
            ("MessageSid".into(), format!("SM{i}")),
            ("MessageStatus".into(), "delivered".into()),
            ("To".into(), (*phone).into()),
            ("From".into(), FROM.into()),
            ("AccountSid".into(), ACCOUNT.into()),
        ];
        let form: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(&params).finish();
        for signature in
            [twilio_signature(TWILIO_TOKEN, &format!("{PUBLIC}{target}"), &params), "Zm9yZ2Vk".into()]
        {
            let request = ApiRequest::post(&target)
                .header("content-type", "application/x-www-form-urlencoded")
                .header("x-twilio-signature", &signature)
                .raw_body(form.as_bytes());
            let r = world.call(request).await;
            assert!(r.status == 204 || r.status == 403, "{r:?}");
        }
    }

    // The push webhook with the app's secret: valid, forged, stale.
    let push_message = world.message(&t, Channel::Push).await;
    let push_sub = world.subscription(&t, Channel::Push, "webhook-device-token", None).await;
    let event = json!({
        "event_id": "evt-1", "kind": "clicked", "message_id": push_message.message_id,
        "subscription_id": push_sub, "occurred_at": "2026-11-28T14:00:00Z",
    })
    .to_string();
    let now = world.clock.now().timestamp();
    for (secret, at) in [
        (admin_app.push_webhook_secret.as_str(), now),
        ("whsec_forged", now),
        (admin_app.push_webhook_secret.as_str(), now - 600),
    ] {
        let header = format!("t={at},v1={}", push_signature(secret, at, event.as_bytes()));
        let request = ApiRequest::post(&format!("/v1/webhooks/push/{}", t.app.app_id));
        world.call(request.header("retarget-signature", &header).raw_body(event.as_bytes())).await;
    }
    // Events naming the subscriptions, and an admin key rotation.
    let body = json!({"events": [{"message_id": message_id, "subscription_id": subs[0], "kind": "sent"}]});
    world.call(t.post("/v1/events", &body)).await;
    let rotated = admin(&world, &["key", "create", "--app-id", &t.app.app_id.to_string()]).await;
    let rotated = rotated["api_key"].as_str().expect("key").to_owned();
    admin(&world, &["key", "revoke", "--app-id", &t.app.app_id.to_string(), "--api-key", &rotated]).await;

    // Push: tokens registered, a message sent through the push sender to wiremock FCM (the
    // OAuth token flow, then a send refused as UNREGISTERED) and APNs (accepted, then 410).
    for (token, platform) in [(ANDROID_TOKEN, "android"), (IOS_TOKEN, "ios")] {
        let body =
            json!({"channel": "push", "token": token, "platform": platform, "external_user_id": "person-0"});
        let r = world.call(t.post("/v1/subscriptions", &body)).await;
        assert_eq!(r.status, 201, "{r:?}");
    }
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": FCM_ACCESS_TOKEN, "expires_in": 3600, "token_type": "Bearer",
        })))
        .mount(&fcm)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/projects/retarget-demo/messages:send"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({"error": {
            "code": 404, "status": "NOT_FOUND",
            "message": format!("Requested entity was not found: {ANDROID_TOKEN}"),
            "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}],
        }})))
        .mount(&fcm)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("/3/device/{IOS_TOKEN}")))
        .respond_with(
            ResponseTemplate::new(410)
                .set_body_json(json!({"reason": "Unregistered", "timestamp": 1_795_874_400_000_u64})),
        )
        .mount(&apns)
        .await;
    let body = json!({"channel": "push", "contents": {"title": "Hi", "body": "Sale"}, "include_external_user_ids": ["person-0"]});
    let r = world.call(t.post("/v1/messages", &body)).await;
    assert_eq!((r.status, &r.body["recipients"]), (202, &json!(2)), "{r:?}");
    let bodies = queues.bodies(&queues.push).await;
    let provider = retarget_push_sender::PushProvider::new(
        fcm.uri(),
        apns.uri(),
        Duration::from_secs(2),
        world.tracking(),
    )
    .expect("provider");
    let sender = world.sender(Channel::Push, provider);
    handle_batch(&sender, sqs_event(&bodies), None).await;
    assert!(!fcm.received_requests().await.unwrap_or_default().is_empty(), "FCM was called");
    assert!(!apns.received_requests().await.unwrap_or_default().is_empty(), "APNs was called");

    // What must never appear, in any common spelling.
    let mut forbidden: Vec<(String, String)> = Vec::new();
    for phone in phones.iter().chain([&FROM]) {
        let digits = phone.trim_start_matches('+');
        forbidden.push((format!("phone {phone} (E.164)"), (*phone).to_owned()));
        forbidden.push((format!("phone {phone} (digits)"), digits.to_owned()));
        forbidden.push((format!("phone {phone} (form-encoded)"), format!("%2B{digits}")));
        if let Some(national) = digits.strip_prefix('1') {
            forbidden.push((format!("phone {phone} (national)"), national.to_owned()));
        }
    }
    for (what, key) in [("API key", &t.api_key), ("rotated API key", &rotated), ("wrong API key", &wrong)] {
        forbidden.push((what.into(), key.clone()));
        forbidden.push((format!("{what} (random part)"), key.trim_start_matches(ApiKey::PREFIX).to_owned()));
    }
    forbidden.push(("Twilio auth token".into(), TWILIO_TOKEN.into()));
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{ACCOUNT}:{TWILIO_TOKEN}"));
    forbidden.push(("Twilio basic auth".into(), basic));
    forbidden.push(("push webhook secret".into(), admin_app.push_webhook_secret.clone()));
    forbidden.push((
        "push webhook secret (hex part)".into(),
        admin_app.push_webhook_secret.trim_start_matches("whsec_").to_owned(),
    ));
    for line in pem_lines(&fcm_private_key()) {
        forbidden.push(("FCM private key".into(), line));
    }
    for line in pem_lines(&fixture("apns-demo-key.p8")) {
        forbidden.push(("APNs private key".into(), line));
    }
    forbidden.push(("FCM access token".into(), FCM_ACCESS_TOKEN.into()));
    for (what, token) in [("FCM token", ANDROID_TOKEN), ("APNs device token", IOS_TOKEN)] {
        forbidden.push((what.into(), token.into()));
    }
    // The signed JWT assertions sent to the token endpoint and to APNs.
    for request in fcm.received_requests().await.unwrap_or_default() {
        let form = String::from_utf8_lossy(&request.body).into_owned();
        if let Some(assertion) = form.split("assertion=").nth(1) {
            forbidden.push((
                "FCM JWT assertion".into(),
                assertion.split('&').next().unwrap_or_default().to_owned(),
            ));
        }
    }
    for request in apns.received_requests().await.unwrap_or_default() {
        if let Some(jwt) = request.headers.get("authorization").and_then(|v| v.to_str().ok()) {
            forbidden.push(("APNs provider JWT".into(), jwt.trim_start_matches("bearer ").to_owned()));
        }
    }

    let text = logs.contents();
    // The capture works and saw these flows, in both formats, with numbers masked.
    for expected in [
        "\"message\":\"subscription upserted\"",
        "subscription upserted",
        "twilio did not accept the message",
        "twilio accepted the message",
        "Twilio request with a bad signature",
        "+155***4321",
    ] {
        assert!(
            text.contains(expected),
            "the captured logs lack {expected:?}; captured {} bytes",
            text.len()
        );
    }
    let leaks: Vec<String> = forbidden
        .iter()
        .filter_map(|(what, secret)| {
            let line = text.lines().find(|l| l.contains(secret.as_str()))?;
            Some(format!("{what} in: {}", line.chars().take(600).collect::<String>()))
        })
        .collect();
    assert!(leaks.is_empty(), "{} leaks in {} bytes of logs:\n{}", leaks.len(), text.len(), leaks.join("\n"));
    eprintln!("{} bytes of logs checked for {} secrets", text.len(), forbidden.len());
}

// ---------------------------------------------------------------------------------------------
// (c) tenancy: another app's ids are not found, anywhere
// ---------------------------------------------------------------------------------------------

struct Tenants {
    world: World,
    a: TestApp,
    b: TestApp,
    a_sms_sub: String,
    a_push_sub: String,
    a_message: String,
    a_retarget: String,
    b_message: String,
    b_token_naming_a: String,
}

impl Tenants {
    async fn new() -> Self {
        let world = World::new().await;
        let a = world.twilio_app("twilio-token-of-a", FROM).await;
        let b = world.twilio_app("twilio-token-of-b", FROM).await;
        let a_sms_sub = world.subscription(&a, Channel::Sms, "+15550000001", Some("alice")).await;
        let a_push_sub = world.subscription(&a, Channel::Push, "token-a", Some("alice")).await;
        let a_message = world.message(&a, Channel::Push).await;
        let b_message = world.message(&b, Channel::Push).await;
        let b_sub = world.subscription(&b, Channel::Push, "token-b", Some("bob")).await;
        world.record_each(&a_message, EventKind::Sent, &[a_push_sub]).await;
        world.record_each(&b_message, EventKind::Sent, &[b_sub]).await;
        // B's own tracking token, its ids swapped for A's.
        let b_token = world.track_token(&b, &b_message, b_sub).await;
        let a_recipient =
            Tracked { app_id: a.app.app_id, message_id: a_message.message_id, subscription_id: a_push_sub };
        let b_token_naming_a = retarget_tests::token_naming(&b_token, &a_recipient);
        let mut t = Self {
            b_token_naming_a,
            world,
            a,
            b,
            a_sms_sub: a_sms_sub.to_string(),
            a_push_sub: a_push_sub.to_string(),
            a_message: a_message.message_id.to_string(),
            a_retarget: String::new(),
            b_message: b_message.message_id.to_string(),
        };
        let body = json!({"source_message_id": t.a_message, "action": "sent", "contents": {"body": "again"}});
        let r = t.world.call(t.a.post("/v1/retargets", &body)).await;
        assert_eq!(r.status, 201, "{r:?}");
        t.a_retarget = r.body["retarget_id"].as_str().expect("retarget_id").to_owned();
        t
    }

    /// App B's attempt at app A's data on `route`, and what it must answer: (status, code).
    fn attempt(&self, route: Route, template: &str) -> (ApiRequest, u16, Option<&'static str>) {
        let b = &self.b;
        let on = |id: &str| template.replace("{id}", id).replace("{app_id}", id);
        match route {
            Route::GetSubscription | Route::Unsubscribe => {
                (request(route, &on(&self.a_sms_sub)).bearer(&b.api_key), 404, Some("not_found"))
            }
            Route::GetMessage | Route::MessageRetargets => {
                (request(route, &on(&self.a_message)).bearer(&b.api_key), 404, Some("not_found"))
            }
            Route::Audience | Route::AudienceCount | Route::AudienceCsv => (
                request(route, &format!("{}?action=sent", on(&self.a_message))).bearer(&b.api_key),
                404,
                Some("not_found"),
            ),
            Route::GetRetarget | Route::CancelRetarget => {
                (request(route, &on(&self.a_retarget)).bearer(&b.api_key), 404, Some("not_found"))
            }
            Route::CreateRetarget => (
                request(route, template).bearer(&b.api_key).json(&json!({
                    "source_message_id": self.a_message, "action": "sent", "contents": {"body": "x"},
                })),
                404,
                Some("not_found"),
            ),
            // Signed by B, on B's URL, naming A's message and subscription.
            Route::TwilioWebhook => {
                let target = format!(
                    "{}?message_id={}&subscription_id={}",
                    on(&b.app.app_id.to_string()),
                    self.a_message,
                    self.a_push_sub
                );
                let params = vec![("MessageStatus".to_owned(), "delivered".to_owned())];
                let token = b.credentials.twilio.as_ref().map(|t| t.auth_token.clone());
                let signature = twilio_signature(&token.unwrap_or_default(), &format!("{PUBLIC}{target}"), &params);
                let request =
                    request(route, &target).header("x-twilio-signature", &signature).raw_body(b"MessageStatus=delivered");
                (request, 404, Some("not_found"))
            }
            // Signed by B, on B's URL, from A's subscriber's number: B has no such subscription.
            Route::TwilioInbound => {
                let target = on(&b.app.app_id.to_string());
                let form = "From=%2B15550000001&Body=STOP";
                let params = retarget_shared::edge::request::url_decode_pairs(form.as_bytes());
                let token = b.credentials.twilio.as_ref().map(|t| t.auth_token.clone());
                let signature = twilio_signature(&token.unwrap_or_default(), &format!("{PUBLIC}{target}"), &params);
                let request = request(route, &target)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .header("x-twilio-signature", &signature)
                    .raw_body(form.as_bytes());
                (request, 200, None)
            }
            // B's own policy: reading or replacing it touches nothing of A's.
            Route::GetDeliveryPolicy => (request(route, template).bearer(&b.api_key), 200, None),
            Route::PutDeliveryPolicy => (
                request(route, template).bearer(&b.api_key).json(&json!({"default_timezone": "Europe/Paris"})),
                200,
                None,
            ),
            Route::PushWebhook => {
                let body = json!({
                    "event_id": "x", "kind": "clicked", "message_id": self.a_message,
                    "subscription_id": self.a_push_sub, "occurred_at": "2026-11-28T14:00:00Z",
                })
                .to_string();
                let t = self.world.clock.now().timestamp();
                let header = format!("t={t},v1={}", push_signature(&b.push_webhook_secret, t, body.as_bytes()));
                let request = request(route, &on(&b.app.app_id.to_string()))
                    .header("retarget-signature", &header)
                    .raw_body(body.as_bytes());
                (request, 404, Some("not_found"))
            }
            // A token is valid for the one recipient it was made for, and no other.
            Route::Track => (
                request(route, template).json(&json!({"token": self.b_token_naming_a, "kind": "clicked"})),
                401,
                Some("invalid_token"),
            ),
            Route::TrackPreflight => (request(route, template), 204, None),
            // The same forged token as an unsubscribe link: nobody of A's is unsubscribed.
            Route::UnsubscribePage | Route::UnsubscribeOneClick => {
                (request(route, &template.replace("{token}", &self.b_token_naming_a)), 404, None)
            }
            // B's own list: none of A's messages.
            Route::ListMessages => (request(route, template).bearer(&b.api_key), 200, None),
            // A link's code is unguessable and names its own recipient: another one finds nothing.
            Route::OpenLink => (request(route, &template.replace("{code}", "AAAAAAAAAA")), 404, None),
            // Routes without an id in the path name A's ids in the body instead: events are
            // rejected one by one, a message to A's subscriptions reaches no one.
            Route::RecordEvents => (
                request(route, template).bearer(&b.api_key).json(&json!({"events": [
                    {"message_id": self.a_message, "subscription_id": self.a_push_sub, "kind": "clicked"},
                ]})),
                200,
                None,
            ),
            Route::CreateMessage => (
                request(route, template).bearer(&b.api_key).json(&json!({
                    "channel": "push", "contents": {"body": "x"}, "include_subscription_ids": [self.a_push_sub],
                })),
                202,
                None,
            ),
            Route::CreateSubscription => (
                request(route, template).bearer(&b.api_key).json(&json!({
                    "channel": "push", "token": "token-a", "platform": "android", "external_user_id": "alice",
                })),
                201,
                None,
            ),
        }
    }
}

fn request(route: Route, target: &str) -> ApiRequest {
    let (method, _, _, _) = ROUTES.iter().find(|r| r.2 == route).expect("in ROUTES");
    ApiRequest::new(method.as_str(), target)
}

#[tokio::test]
async fn another_tenants_ids_answer_404_on_every_route_and_never_leak() {
    let t = Tenants::new().await;
    let a_items_before: Vec<String> =
        t.world.snapshot().await.into_iter().filter(|i| i.contains(&t.a.app.app_id.to_string())).collect();
    let mut failures = Vec::new();
    for (method, template, route, _) in ROUTES {
        let (request, status, code) = t.attempt(*route, template);
        let r = t.world.call(request).await;
        let name = format!("{method} {template}");
        let body = r.body.to_string();
        let ok = match code {
            Some(code) => r.status == status && r.body["code"] == code,
            None => r.status == status,
        };
        if !ok {
            failures.push(format!("[{name}] answered {} {body}, expected {status} {code:?}", r.status));
        }
        // Nothing of A's is ever shown to B.
        for a_id in [&t.a_sms_sub, &t.a_push_sub, &t.a_message, &t.a_retarget] {
            if body.contains(a_id.as_str()) {
                failures.push(format!("[{name}] showed app A's id {a_id}: {body}"));
            }
        }
        let leaked = match route {
            Route::RecordEvents => r.body["rejected"] != json!([{"index": 0, "code": "unknown_message"}]),
            Route::CreateMessage => r.body["recipients"] != 0,
            // Same token and user id as A's: B gets its own, new subscription.
            Route::CreateSubscription => r.body["subscription_id"] == t.a_push_sub.as_str(),
            _ => false,
        };
        if leaked {
            failures.push(format!("[{name}] reached app A's data: {body}"));
        }
    }
    // A's items are exactly as they were; no job was queued for A's subscriptions.
    let a_items_after: Vec<String> =
        t.world.snapshot().await.into_iter().filter(|i| i.contains(&t.a.app.app_id.to_string())).collect();
    if a_items_after != a_items_before {
        failures.push("app A's items changed".into());
    }
    let queues = t.world.queues().await;
    let jobs = [queues.drain(&queues.push).await, queues.drain(&queues.sms).await].concat();
    if jobs.iter().any(|j| j.subscription_ids.iter().any(|s| s.to_string() == t.a_push_sub)) {
        failures.push(format!("a send job names app A's subscription: {jobs:?}"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn lists_and_audiences_show_only_the_callers_data() {
    let t = Tenants::new().await;
    // B's audience, count and retargets list of its own message hold only B's data.
    for target in [
        format!("/v1/messages/{}/audience?action=sent", t.b_message),
        format!("/v1/messages/{}/audience?did=sent&channel=sms", t.b_message),
        format!("/v1/messages/{}/audience/count?action=sent", t.b_message),
        format!("/v1/messages/{}/retargets", t.b_message),
    ] {
        let r = t.world.call(t.b.get(&target)).await;
        assert_eq!(r.status, 200, "{target}: {r:?}");
        let body = r.body.to_string();
        for a_id in [&t.a_sms_sub, &t.a_push_sub, &t.a_message, &t.a_retarget] {
            assert!(!body.contains(a_id.as_str()), "{target} showed app A's {a_id}: {body}");
        }
        if target.ends_with("/count?action=sent") {
            assert_eq!(r.body["count"], 1, "{body}");
        }
    }
    // A message to a person id both apps use reaches only the caller's subscriptions.
    let body = json!({"channel": "sms", "contents": {"body": "x"}, "include_external_user_ids": ["alice"]});
    let r = t.world.call(t.b.post("/v1/messages", &body)).await;
    assert_eq!((r.status, &r.body["recipients"]), (202, &json!(0)), "{r:?}");
    let queues = t.world.queues().await;
    assert!(queues.drain(&queues.sms).await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// (d) constant-time comparisons
// ---------------------------------------------------------------------------------------------

/// Review as a test: every signature check goes through `hmac`'s `verify_slice` (constant
/// time, via `subtle`), and no line of the modules handling signatures, keys or secrets
/// compares one with `==`/`!=`. API keys are never compared at all: the request's key is
/// hashed (SHA-256) and looked up by that hash as the item's key.
#[test]
fn secret_comparisons_are_constant_time() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let files = [
        "shared/src/edge/signatures.rs",
        "shared/src/edge/request.rs",
        "shared/src/domain/api_key.rs",
        "shared/src/adapters/store/apps.rs",
        "functions/webhooks/src/lib.rs",
    ];
    let sensitive = ["signature", "mac", "secret", "token", "hash", "api_key", "digest", "v1"];
    let mut offending = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(format!("{root}/{file}")).expect("source file");
        // Unit tests compare expected values; only the code before them is reviewed.
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        for (n, line) in code.lines().enumerate() {
            let trimmed = line.trim_start();
            if trimmed.starts_with("//") || !(line.contains("==") || line.contains("!=")) {
                continue;
            }
            let lower = line.to_lowercase();
            // Comparing a decoded signature's length with the MAC length leaks nothing.
            let length_only = lower.contains(".len() ==");
            if sensitive.iter().any(|s| lower.contains(s)) && !length_only {
                offending.push(format!("{file}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(offending.is_empty(), "non-constant-time comparisons of secrets:\n{}", offending.join("\n"));
    let signatures =
        std::fs::read_to_string(format!("{root}/shared/src/edge/signatures.rs")).expect("source");
    assert_eq!(
        signatures.matches(".verify_slice(").count(),
        2,
        "Twilio and push both verify with verify_slice"
    );
}

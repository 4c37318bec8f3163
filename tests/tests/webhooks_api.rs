//! Provider webhooks with API Gateway events against DynamoDB Local: signatures exactly as
//! Twilio and the contract sign, status mapping, duplicated and out-of-order deliveries.

use rand::seq::SliceRandom;
use retarget_shared::Clock;
use retarget_shared::domain::{Channel, EventKind, Plan};
use retarget_shared::edge::signatures::{push_signature, twilio_signature};
use retarget_tests::{ApiRequest, PUBLIC_BASE_URL as PUBLIC, TestApp, World, twilio};
use serde_json::json;

const TOKEN: &str = "twilio-auth-token-123";

struct Callback {
    path_and_query: String,
    params: Vec<(String, String)>,
}

impl Callback {
    fn new(app: &TestApp, message: &str, subscription: &str, status: &str) -> Self {
        Self {
            path_and_query: format!(
                "/v1/webhooks/twilio/{}?message_id={message}&subscription_id={subscription}",
                app.app.app_id
            ),
            params: vec![
                ("MessageSid".into(), format!("SM{subscription}")),
                ("MessageStatus".into(), status.into()),
                ("AccountSid".into(), twilio::ACCOUNT.into()),
                ("To".into(), "+15550000001".into()),
                ("ApiVersion".into(), "2010-04-01".into()),
            ],
        }
    }

    fn body(&self) -> String {
        let mut form = String::new();
        for (k, v) in &self.params {
            if !form.is_empty() {
                form.push('&');
            }
            form.push_str(&format!("{k}={}", v.replace('+', "%2B")));
        }
        form
    }

    fn request(&self, signed_url_base: &str, token: &str) -> ApiRequest {
        let url = format!("{signed_url_base}{}", self.path_and_query);
        ApiRequest::post(&self.path_and_query)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("X-Twilio-Signature", &twilio_signature(token, &url, &self.params))
            .raw_body(self.body().as_bytes())
    }
}

#[tokio::test]
async fn twilio_statuses_are_recorded_once_whatever_the_order() {
    let world = World::new().await;
    let t = world.twilio_app(TOKEN, "+15550009999").await;
    let message = world.message(&t, Channel::Sms).await;
    let subs = [
        world.subscription(&t, Channel::Sms, "+15550000001", None).await,
        world.subscription(&t, Channel::Sms, "+15550000002", None).await,
    ];
    let m = message.message_id.to_string();
    let mut callbacks = Vec::new();
    for s in &subs {
        for status in ["queued", "sent", "delivered", "read", "sent", "delivered"] {
            callbacks.push(Callback::new(&t, &m, &s.to_string(), status));
        }
    }
    callbacks.shuffle(&mut rand::rng());
    for c in &callbacks {
        let r = world.call(c.request(PUBLIC, TOKEN)).await;
        assert_eq!(r.status, 204, "{r:?}");
    }
    let state = world.scan_all().await;
    // A late `sent` (or anything) replayed after the fact changes nothing.
    for c in callbacks.iter().rev() {
        assert_eq!(world.call(c.request(PUBLIC, TOKEN)).await.status, 204);
    }
    assert_eq!(world.scan_all().await, state);
    let stats = world.stats(&message).await;
    assert_eq!((stats[&EventKind::Sent], stats[&EventKind::Delivered]), (2, 2));

    let mut stream = world.store.interactions(&message.scope(), None);
    let mut kinds = Vec::new();
    while let Some(row) = stream.next().await {
        kinds.push(row.unwrap().kind);
    }
    assert_eq!(
        kinds.iter().filter(|k| **k == EventKind::Delivered).count(),
        2,
        "the delivery survived the late sent"
    );
}

#[tokio::test]
async fn twilio_signatures_with_and_without_the_default_port() {
    let world = World::new().await;
    let t = world.twilio_app(TOKEN, "+15550009999").await;
    let message = world.message(&t, Channel::Sms).await;
    let sub = world.subscription(&t, Channel::Sms, "+15550000001", None).await;
    let c = Callback::new(&t, &message.message_id.to_string(), &sub.to_string(), "undelivered");
    assert_eq!(world.call(c.request("https://hooks.example.com:443", TOKEN)).await.status, 204);
    let stats = world.stats(&message).await;
    assert_eq!(stats[&EventKind::Undelivered], 1);
}

#[tokio::test]
async fn forged_twilio_callbacks_are_refused_and_record_nothing() {
    let world = World::new().await;
    let t = world.twilio_app(TOKEN, "+15550009999").await;
    let other = world.twilio_app(TOKEN, "+15550009999").await;
    let message = world.message(&t, Channel::Sms).await;
    let sub = world.subscription(&t, Channel::Sms, "+15550000001", None).await;
    let c = Callback::new(&t, &message.message_id.to_string(), &sub.to_string(), "delivered");
    let before = world.scan_all().await.len();

    world.call(c.request(PUBLIC, "wrong-token")).await.assert_problem(403, "invalid_signature");
    world.call(c.request("https://evil.example.com", TOKEN)).await.assert_problem(403, "invalid_signature");
    world
        .call(c.request("https://hooks.example.com:8443", TOKEN))
        .await
        .assert_problem(403, "invalid_signature");
    let unsigned = ApiRequest::post(&c.path_and_query).raw_body(c.body().as_bytes());
    world.call(unsigned).await.assert_problem(403, "invalid_signature");
    // A valid signature for this body, but the form was altered in transit.
    let tampered = c.request(PUBLIC, TOKEN).raw_body(c.body().replace("delivered", "failed").as_bytes());
    world.call(tampered).await.assert_problem(403, "invalid_signature");
    // Another app's callback URL with this app's ids: signed with the other app's token, still refused here.
    let mut theirs = Callback::new(&other, &message.message_id.to_string(), &sub.to_string(), "delivered");
    theirs.path_and_query = c.path_and_query.clone();
    world.call(theirs.request(PUBLIC, "another-token")).await.assert_problem(403, "invalid_signature");
    assert_eq!(world.scan_all().await.len(), before);

    let missing_app = Callback {
        path_and_query: c
            .path_and_query
            .replace(&t.app.app_id.to_string(), &retarget_shared::domain::AppId::new().to_string()),
        params: c.params.clone(),
    };
    world.call(missing_app.request(PUBLIC, TOKEN)).await.assert_problem(404, "not_found");
}

/// Issue 14: deployed without a custom domain (`PUBLIC_BASE_URL` empty), the webhooks function
/// checks Twilio's signature over the origin API Gateway reports the callback came to (its
/// request context's `domainName`, where the SMS sender's StatusCallbacks point by default) —
/// as strictly as over a configured URL: any other origin, port or token is refused.
#[tokio::test]
async fn without_a_public_base_url_twilio_signs_the_origin_api_gateway_was_called_at() {
    use retarget_shared::bootstrap::HttpFunction;
    // The domain in the recorded API Gateway event (tests/fixtures/apigw-http-api-request.json).
    const ORIGIN: &str = "https://aaaaaaaaaa.execute-api.us-west-2.amazonaws.com";
    let world = World::new().await;
    let t = world.twilio_app(TOKEN, "+15550009999").await;
    let message = world.message(&t, Channel::Sms).await;
    let sub = world.subscription(&t, Channel::Sms, "+15550000001", None).await;
    let c = Callback::new(&t, &message.message_id.to_string(), &sub.to_string(), "delivered");
    let webhooks = retarget_webhooks::Deps::new(world.store.clone(), None);
    let call =
        async |request: ApiRequest| retarget_tests::ApiResponse::from(webhooks.handle(request.build()).await);
    let before = world.scan_all().await.len();
    for refused in [
        c.request(PUBLIC, TOKEN),
        c.request("https://aaaaaaaaaa.execute-api.us-west-2.amazonaws.com:8443", TOKEN),
        c.request(ORIGIN, "wrong-token"),
    ] {
        call(refused).await.assert_problem(403, "invalid_signature");
    }
    assert_eq!(world.scan_all().await.len(), before, "nothing recorded");
    assert_eq!(call(c.request(ORIGIN, TOKEN)).await.status, 204);
    assert_eq!(world.stats(&message).await[&EventKind::Delivered], 1);

    // With a configured URL, the request's own origin is not trusted instead.
    let configured = retarget_webhooks::Deps::new(world.store.clone(), Some(PUBLIC.to_owned()));
    let c2 = Callback::new(&t, &message.message_id.to_string(), &sub.to_string(), "undelivered");
    let r = retarget_tests::ApiResponse::from(configured.handle(c2.request(ORIGIN, TOKEN).build()).await);
    r.assert_problem(403, "invalid_signature");
}

fn push_request(app: &TestApp, secret: &str, t: i64, body: &serde_json::Value) -> ApiRequest {
    let raw = body.to_string();
    let signature = format!("t={t},v1={}", push_signature(secret, t, raw.as_bytes()));
    ApiRequest::post(&format!("/v1/webhooks/push/{}", app.app.app_id))
        .header("content-type", "application/json")
        .header("Retarget-Signature", &signature)
        .raw_body(raw.as_bytes())
}

#[tokio::test]
async fn push_events_are_signed_fresh_and_deduplicated() {
    let (world, t) = World::with_app(Plan::Pro).await;
    let message = world.message(&t, Channel::Push).await;
    let sub = world.subscription(&t, Channel::Push, "tok", Some("u1")).await;
    let secret = t.push_webhook_secret.clone();
    let now = world.clock.now_epoch();
    let event = |id: &str, kind: &str| json!({"event_id": id, "kind": kind, "message_id": message.message_id, "subscription_id": sub, "occurred_at": "2026-11-28T14:00:00Z"});

    assert_eq!(world.call(push_request(&t, &secret, now, &event("e1", "clicked"))).await.status, 204);
    assert_eq!(world.call(push_request(&t, &secret, now - 300, &event("e1", "clicked"))).await.status, 204);
    assert_eq!(world.call(push_request(&t, &secret, now + 300, &event("e2", "delivered"))).await.status, 204);
    let stats = world.stats(&message).await;
    assert_eq!((stats[&EventKind::Clicked], stats[&EventKind::Delivered]), (1, 1));

    // Rotation: an old and a new secret's signatures side by side; one match is enough.
    let raw = event("e3", "delivered").to_string();
    let header = format!(
        "t={now},v1={},v1={}",
        push_signature("old-secret", now, raw.as_bytes()),
        push_signature(&secret, now, raw.as_bytes())
    );
    let rotated = ApiRequest::post(&format!("/v1/webhooks/push/{}", t.app.app_id))
        .header("Retarget-Signature", &header)
        .raw_body(raw.as_bytes());
    assert_eq!(world.call(rotated).await.status, 204);

    let other = world.app(Plan::Pro).await;
    let before = world.scan_all().await.len();
    // Stale, early, or signed with a secret that is not this app's.
    let other_secret = other.push_webhook_secret.as_str();
    for (key, at) in [
        (secret.as_str(), now - 301),
        (secret.as_str(), now + 301),
        ("not-the-secret", now),
        (other_secret, now),
    ] {
        let request = push_request(&t, key, at, &event("e4", "clicked"));
        world.call(request).await.assert_problem(401, "invalid_signature");
    }
    let unsigned =
        ApiRequest::post(&format!("/v1/webhooks/push/{}", t.app.app_id)).json(&event("e4", "clicked"));
    world.call(unsigned).await.assert_problem(401, "invalid_signature");
    // Signed but malformed: a kind the webhook does not take, a missing field.
    world
        .call(push_request(&t, &secret, now, &event("e4", "sent")))
        .await
        .assert_problem(400, "invalid_request");
    let mut incomplete = event("e4", "clicked");
    incomplete.as_object_mut().unwrap().remove("occurred_at");
    world.call(push_request(&t, &secret, now, &incomplete)).await.assert_problem(400, "invalid_request");
    assert_eq!(world.scan_all().await.len(), before);

    // Signed, well formed, but naming something that does not exist.
    let mut unknown = event("e5", "clicked");
    unknown["message_id"] = retarget_shared::domain::MessageId::new().to_string().into();
    world.call(push_request(&t, &secret, now, &unknown)).await.assert_problem(404, "not_found");
}

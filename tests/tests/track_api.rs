//! `POST /v1/track`: the tokens the push sender puts into every notification, reported back by
//! the device without any secret — recorded exactly as `/v1/events` records, refused (401, and
//! nothing written) for anything but a token this service made for that very recipient, and
//! verified without reading the table.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use retarget_shared::Clock;
use retarget_shared::domain::{
    ACTIVATION_DELAY_SECONDS, Channel, EventKind, Keyring, Plan, TOKEN_LEN, Tracked, token_kid,
};
use retarget_shared::services::sender::handle_batch;
use retarget_shared::services::tracking::TrackingKeys;
use retarget_tests::push::{apns_config, push_app};
use retarget_tests::{ApiRequest, ApiResponse, TestApp, World, sqs_event, token_naming};
use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

const ANDROID: &str = "fcm-registration-token-track";
const IOS: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn track(body: &Value) -> ApiRequest {
    ApiRequest::new("POST", "/v1/track").json(body)
}

async fn report(world: &World, token: &str, kind: &str) -> ApiResponse {
    world.call(track(&json!({"token": token, "kind": kind}))).await
}

/// A recipient of a stored push message of `app`, and its token.
async fn recipient(
    world: &World,
    app: &TestApp,
    address: &str,
) -> (retarget_shared::domain::Message, Tracked, String) {
    let sub = world.subscription(app, Channel::Push, address, Some("person")).await;
    let message = world.message(app, Channel::Push).await;
    let token = world.track_token(app, &message, sub).await;
    let tracked = Tracked { app_id: app.app.app_id, message_id: message.message_id, subscription_id: sub };
    (message, tracked, token)
}

#[tokio::test]
async fn every_push_carries_the_token_the_device_reports_with() {
    let world = World::new().await;
    let fcm = MockServer::start().await;
    let apns = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "ya29.track", "expires_in": 3600, "token_type": "Bearer",
        })))
        .mount(&fcm)
        .await;
    Mock::given(method("POST"))
        .and(path_regex("^/v1/projects/.+/messages:send$"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"name": "projects/p/messages/1"})))
        .mount(&fcm)
        .await;
    Mock::given(method("POST"))
        .and(path_regex("^/3/device/"))
        .respond_with(
            ResponseTemplate::new(200).insert_header("apns-id", "EC1BF194-B3B2-424A-89A3-6A3B3C1E4F2B"),
        )
        .mount(&apns)
        .await;
    let t = push_app(&world, &fcm).await;
    let _ = apns_config();
    let mut subs = Vec::new();
    for (token, platform) in [(ANDROID, "android"), (IOS, "ios")] {
        let body = json!({"channel": "push", "token": token, "platform": platform});
        let r = world.call(t.post("/v1/subscriptions", &body)).await;
        assert_eq!(r.status, 201, "{r:?}");
        subs.push(r.body["subscription_id"].as_str().unwrap().to_owned());
    }
    let body = json!({"channel": "push", "contents": {"body": "Sale"}, "include_subscription_ids": subs});
    let r = world.call(t.post("/v1/messages", &body)).await;
    assert_eq!(r.status, 202, "{r:?}");
    let message_id = r.body["message_id"].as_str().unwrap().to_owned();
    let queues = world.queues().await;
    let bodies = queues.bodies(&queues.push).await;
    let provider = retarget_push_sender::PushProvider::new(
        fcm.uri(),
        apns.uri(),
        Duration::from_secs(5),
        world.tracking(),
    )
    .expect("provider");
    handle_batch(&world.sender(Channel::Push, provider), sqs_event(&bodies), None).await;

    // What FCM and APNs were given: each notification's own token.
    let sent_to = |requests: Vec<wiremock::Request>, pick: fn(&Value) -> &Value| -> Vec<(String, String)> {
        requests
            .iter()
            .filter(|r| !r.url.path().ends_with("/token"))
            .map(|r| {
                let body: Value = serde_json::from_slice(&r.body).expect("json");
                let data = pick(&body);
                (
                    data["subscription_id"].as_str().unwrap().to_owned(),
                    data["rt"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let mut tokens = sent_to(fcm.received_requests().await.unwrap(), |b| &b["message"]["data"]);
    tokens.extend(sent_to(apns.received_requests().await.unwrap(), |b| b));
    assert_eq!(tokens.len(), 2, "{tokens:?}");
    assert_ne!(tokens[0].1, tokens[1].1, "one token per recipient");
    for (_, token) in &tokens {
        assert_eq!(token.len(), TOKEN_LEN);
    }

    // The android device reports a delivery and a click, the iOS one a conversion; each twice.
    let (android, ios) = (&tokens[0].1, &tokens[1].1);
    for _ in 0..2 {
        for (token, kind) in [(android, "delivered"), (android, "clicked"), (ios, "converted")] {
            let r = report(&world, token, kind).await;
            assert_eq!(r.status, 204, "{kind}: {r:?}");
            assert_eq!(r.headers.get("access-control-allow-origin").unwrap(), "*");
        }
    }
    let message = world.store.get_message(t.app.app_id, message_id.parse().unwrap()).await.unwrap().unwrap();
    let stats = world.stats(&message).await;
    assert_eq!(stats.get(&EventKind::Sent), Some(&2));
    assert_eq!(stats.get(&EventKind::Delivered), Some(&1));
    assert_eq!(stats.get(&EventKind::Clicked), Some(&1));
    assert_eq!(stats.get(&EventKind::Converted), Some(&1));
    let clicked = world.call(t.get(&format!("/v1/messages/{message_id}/audience?action=clicked"))).await;
    assert_eq!(clicked.body["subscriptions"][0]["subscription_id"], tokens[0].0.as_str(), "{clicked:?}");
}

#[tokio::test]
async fn any_altered_byte_truncation_or_other_apps_token_is_401_and_writes_nothing() {
    let world = World::new().await;
    let a = world.app(Plan::Pro).await;
    let b = world.app(Plan::Pro).await;
    let (_, tracked, token) = recipient(&world, &a, "device-a").await;
    let (_, b_tracked, b_token) = recipient(&world, &b, "device-b").await;
    let before = world.snapshot().await;

    let raw = URL_SAFE_NO_PAD.decode(&token).unwrap();
    let mut forged = Vec::new();
    // Every byte, every bit.
    for i in 0..raw.len() {
        for bit in 0..8 {
            let mut r = raw.clone();
            r[i] ^= 1 << bit;
            forged.push(URL_SAFE_NO_PAD.encode(r));
        }
    }
    // Every character replaced by another of the alphabet.
    for (i, c) in token.char_indices() {
        let other = if c == 'A' { 'B' } else { 'A' };
        forged.push(format!("{}{other}{}", &token[..i], &token[i + 1..]));
    }
    forged.extend([
        String::new(),
        token[..TOKEN_LEN - 1].to_owned(),
        token[..20].to_owned(),
        format!("{token}A"),
        format!("{token}="),
        format!(" {token}"),
        token.replace('-', "+").replace('_', "/"),
        // B's genuine token made to name A's recipient, and A's to name B's.
        token_naming(&b_token, &tracked),
        token_naming(&token, &b_tracked),
        // A token of another deployment (another keyring) for A's recipient.
        Keyring::generate(world.clock.now()).mint(&tracked, world.clock.now()),
        "x".repeat(10_000),
    ]);
    forged.retain(|f| f != &token);
    for f in &forged {
        let r = report(&world, f, "clicked").await;
        assert_eq!((r.status, r.body["code"].as_str()), (401, Some("invalid_token")), "{f}: {r:?}");
        assert_eq!(r.headers.get("access-control-allow-origin").unwrap(), "*");
    }
    assert_eq!(world.snapshot().await, before, "nothing written for {} forged tokens", forged.len());
    // The genuine ones still work.
    assert_eq!(report(&world, &token, "clicked").await.status, 204);
    assert_eq!(report(&world, &b_token, "clicked").await.status, 204);
}

#[tokio::test]
async fn kinds_bodies_and_the_preflight() {
    let world = World::new().await;
    let a = world.app(Plan::Pro).await;
    let (message, _, token) = recipient(&world, &a, "device-k").await;
    let before = world.snapshot().await;
    for kind in ["sent", "failed", "opened", "undelivered", "bogus", ""] {
        let r = report(&world, &token, kind).await;
        r.assert_problem(400, "invalid_kind");
    }
    for body in [
        json!({}),
        json!({"token": token}),
        json!({"kind": "clicked"}),
        json!({"token": 5, "kind": "clicked"}),
    ] {
        world.call(track(&body)).await.assert_problem(400, "invalid_request");
    }
    let form = ApiRequest::new("POST", "/v1/track")
        .header("content-type", "application/x-www-form-urlencoded")
        .raw_body(b"token=x&kind=clicked");
    world.call(form).await.assert_problem(415, "unsupported_media_type");
    assert_eq!(world.snapshot().await, before);

    // navigator.sendBeacon sends a string as text/plain: accepted.
    let beacon = ApiRequest::new("POST", "/v1/track")
        .header("content-type", "text/plain;charset=UTF-8")
        .raw_body(json!({"token": token, "kind": "clicked"}).to_string().as_bytes());
    assert_eq!(world.call(beacon).await.status, 204);
    assert_eq!(world.stats(&message).await.get(&EventKind::Clicked), Some(&1));

    let preflight = world
        .call(
            ApiRequest::new("OPTIONS", "/v1/track")
                .header("origin", "https://shop.example")
                .header("access-control-request-method", "POST")
                .header("access-control-request-headers", "content-type"),
        )
        .await;
    assert_eq!(preflight.status, 204, "{preflight:?}");
    let header = |name: &str| preflight.headers.get(name).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(header("access-control-allow-origin").as_deref(), Some("*"));
    assert!(header("access-control-allow-methods").unwrap().contains("POST"));
    assert!(header("access-control-allow-headers").unwrap().to_lowercase().contains("content-type"));
    // Other methods: 405, with CORS so a browser can read it.
    let get = world.call(ApiRequest::new("GET", "/v1/track")).await;
    get.assert_problem(405, "method_not_allowed");
}

#[tokio::test]
async fn expired_messages_and_free_plans_record_nothing() {
    let world = World::new().await;
    let pro = world.app(Plan::Pro).await;
    let free = world.app(Plan::Free).await;
    let (expiring, _, expiring_token) = recipient(&world, &pro, "device-e").await;
    let (free_message, _, free_token) = recipient(&world, &free, "device-f").await;

    // A free plan's message: valid, accepted, not stored (plan gating, as /v1/events).
    assert_eq!(report(&world, &free_token, "clicked").await.status, 204);
    let items = world.snapshot().await;
    assert!(
        !items.iter().any(|i| i.contains(&format!("MSG#{}#I#", free_message.message_id))),
        "no interaction stored for a message that is not retargetable"
    );

    world.clock.advance(chrono::Duration::days(31));
    let before = world.snapshot().await;
    assert_eq!(
        report(&world, &expiring_token, "clicked").await.status,
        204,
        "expired: 204, nothing recorded"
    );
    assert_eq!(world.snapshot().await, before);
    let _ = expiring;
}

#[tokio::test]
async fn concurrent_reports_from_every_source_are_counted_once() {
    let world = World::new().await;
    let a = world.app(Plan::Pro).await;
    let (message, tracked, token) = recipient(&world, &a, "device-c").await;
    let events = json!({"events": [{
        "message_id": tracked.message_id.to_string(),
        "subscription_id": tracked.subscription_id.to_string(),
        "kind": "clicked",
    }]});
    let mut calls = Vec::new();
    for i in 0..24 {
        let request = if i % 3 == 0 {
            a.post("/v1/events", &events)
        } else {
            track(&json!({"token": token, "kind": "clicked"}))
        };
        calls.push(world.call(request));
    }
    let answers = futures::future::join_all(calls).await;
    let accepted_by_events: u64 = answers.iter().filter_map(|r| r.body["accepted"].as_u64()).sum();
    assert!(answers.iter().all(|r| r.status == 204 || r.status == 200), "{answers:?}");
    assert!(accepted_by_events <= 1);
    assert_eq!(world.stats(&message).await.get(&EventKind::Clicked), Some(&1), "counted once");
}

/// Verifying reads nothing: a verifier whose table does not exist still refuses every forged
/// token with 401 (a read would fail as 5xx), and accepts genuine ones of the keys it holds.
#[tokio::test]
async fn verifying_a_token_reads_no_table() {
    let world = World::new().await;
    let a = world.app(Plan::Pro).await;
    let (_, tracked, token) = recipient(&world, &a, "device-v").await;
    let ring = world.store.tracking_keyring().await.unwrap().expect("made by the first signer");
    let nowhere =
        retarget_shared::Store::new(world.store.client().clone(), "no-such-table", world.clock.clone());
    let keys = TrackingKeys::new(nowhere.clone());
    // Loaded once: the only read (of a table that is not there) fails, as it should.
    assert!(keys.verify(&token).await.is_err(), "the first token of an unknown key reads the keyring");
    let fixed = TrackingKeys::fixed(ring);
    for i in 0..2000u32 {
        let mut raw = URL_SAFE_NO_PAD.decode(&token).unwrap();
        raw[49 + (i as usize % 16)] ^= (i % 255 + 1) as u8;
        assert!(fixed.verify(&URL_SAFE_NO_PAD.encode(raw)).await.unwrap().is_err());
        assert!(keys.verify("garbage").await.unwrap().is_err(), "malformed: no read, no error");
    }
    assert_eq!(fixed.verify(&token).await.unwrap(), Ok(tracked));
}

/// A rotation leaves every token already out valid, and a verifier that loaded the keyring
/// before it learns the new key from the first token that names it.
#[tokio::test]
async fn rotation_keeps_tokens_already_out_and_verifiers_learn_new_keys() {
    let world = World::new().await;
    let a = world.app(Plan::Pro).await;
    let (message, tracked, old_token) = recipient(&world, &a, "device-r").await;
    // This verifier (the webhooks function's) has the old ring cached.
    assert_eq!(report(&world, &old_token, "delivered").await.status, 204);
    world.store.rotate_tracking_key().await.expect("rotate");
    // A signer that reads the ring now signs with the old key until the new one is active.
    let signer = TrackingKeys::new(world.store.clone());
    assert_eq!(signer.mint(&tracked).await.unwrap(), old_token);
    world.clock.advance(chrono::Duration::seconds(ACTIVATION_DELAY_SECONDS));
    let new_token = TrackingKeys::new(world.store.clone()).mint(&tracked).await.unwrap();
    assert_eq!(token_kid(&new_token), Ok(2));
    assert_eq!(report(&world, &new_token, "clicked").await.status, 204, "a new key is learnt");
    assert_eq!(report(&world, &old_token, "converted").await.status, 204, "the old key still verifies");
    let stats = world.stats(&message).await;
    assert_eq!(
        [EventKind::Delivered, EventKind::Clicked, EventKind::Converted].map(|k| stats.get(&k).copied()),
        [Some(1), Some(1), Some(1)]
    );
}

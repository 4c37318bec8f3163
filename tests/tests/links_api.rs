//! Tracked SMS links: the SMS sender sends every http(s) URL of a body as
//! `{PUBLIC_BASE_URL}/r/{code}`, one code per recipient and link; `GET /r/{code}` answers 302 to
//! the original URL and records `clicked` once; unknown, malformed and expired codes are 404
//! pages that write nothing.

use std::time::Duration;

use retarget_shared::domain::{Channel, EventKind, LinkCode};
use retarget_shared::services::sender::handle_batch;
use retarget_tests::{ApiRequest, PUBLIC_BASE_URL, World, sqs_event, twilio};
use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer};

const BODY: &str = "Your cart: https://shop.example/cart?id=42&utm=sms. Or (https://shop.example/help)!";

/// An SMS to three recipients, sent by the SMS sender to a Twilio stand-in: the world, the
/// message id and each recipient's body as Twilio got it (by phone number).
async fn sent() -> (World, retarget_tests::TestApp, String, Vec<(String, String)>) {
    let world = World::new().await;
    let twilio = MockServer::start().await;
    Mock::given(method("POST")).respond_with(twilio::accepted()).mount(&twilio).await;
    let app = world.twilio_app("token", "+15550009999").await;
    let subs = world.subscriptions(&app, Channel::Sms, 3).await;
    let ids: Vec<String> = subs.iter().map(ToString::to_string).collect();
    let body = json!({"channel": "sms", "contents": {"body": BODY, "url": "https://shop.example/sale"},
        "include_subscription_ids": ids});
    let r = world.call(app.post("/v1/messages", &body)).await;
    assert_eq!(r.status, 202, "{r:?}");
    let message_id = r.body["message_id"].as_str().unwrap().to_owned();
    let queues = world.queues().await;
    let jobs = queues.bodies(&queues.sms).await;
    let sender =
        world.sender(Channel::Sms, twilio::provider(&world.store, twilio.uri(), Duration::from_secs(2)));
    handle_batch(&sender, sqs_event(&jobs), None).await;
    let bodies = twilio
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|r| {
            let form = twilio::form(r);
            (form["To"].clone(), form["Body"].clone())
        })
        .collect();
    (world, app, message_id, bodies)
}

/// The codes of a body's tracked links, in order.
fn codes(body: &str) -> Vec<String> {
    let prefix = format!("{PUBLIC_BASE_URL}/r/");
    body.match_indices(&prefix)
        .map(|(at, _)| body[at + prefix.len()..].chars().take(LinkCode::LEN).collect())
        .collect()
}

fn open(code: &str) -> ApiRequest {
    ApiRequest::new("GET", &format!("/r/{code}"))
}

#[tokio::test]
async fn every_link_of_every_recipient_is_its_own_and_opening_it_records_one_click() {
    let (world, app, message_id, bodies) = sent().await;
    assert_eq!(bodies.len(), 3);
    let mut all_codes = Vec::new();
    for (_, body) in &bodies {
        assert!(!body.contains("shop.example"), "no original URL is sent: {body}");
        let codes = codes(body);
        assert_eq!(codes.len(), 3, "two links of the body and the contents' url: {body}");
        assert_eq!(
            body,
            &format!(
                "Your cart: {PUBLIC_BASE_URL}/r/{}. Or ({PUBLIC_BASE_URL}/r/{})! {PUBLIC_BASE_URL}/r/{}",
                codes[0], codes[1], codes[2]
            ),
            "the text around the links is kept"
        );
        all_codes.extend(codes);
    }
    let distinct: std::collections::HashSet<_> = all_codes.iter().collect();
    assert_eq!(distinct.len(), 9, "one code per recipient and link");

    // The first recipient opens the cart link twice and the help link once.
    let (first_to, first_body) = &bodies[0];
    let first = codes(first_body);
    for (code, url) in [
        (&first[0], "https://shop.example/cart?id=42&utm=sms"),
        (&first[0], "https://shop.example/cart?id=42&utm=sms"),
        (&first[1], "https://shop.example/help"),
        (&first[2], "https://shop.example/sale"),
    ] {
        let r = world.call(open(code)).await;
        assert_eq!(r.status, 302, "{r:?}");
        assert_eq!(r.headers["location"], url);
    }
    let message =
        world.store.get_message(app.app.app_id, message_id.parse().unwrap()).await.unwrap().unwrap();
    let stats = world.stats(&message).await;
    assert_eq!(stats.get(&EventKind::Clicked), Some(&1), "one recipient clicked, however often: {stats:?}");
    assert_eq!(stats.get(&EventKind::Sent), Some(&3));

    // Who clicked, who did not.
    let clicked = world.call(app.get(&format!("/v1/messages/{message_id}/audience?action=clicked"))).await;
    let clicked_subs: Vec<String> = clicked.body["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["subscription_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(clicked_subs.len(), 1, "{clicked:?}");
    let sub = world
        .store
        .get_subscription(app.app.app_id, clicked_subs[0].parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sub.phone_number.unwrap().as_e164(), first_to);
    let not_clicked =
        world.call(app.get(&format!("/v1/messages/{message_id}/audience/count?action=not_clicked"))).await;
    assert_eq!(not_clicked.body["count"], 2, "{not_clicked:?}");
}

#[tokio::test]
async fn unknown_malformed_and_expired_codes_are_404_pages_and_write_nothing() {
    let (world, _, _, bodies) = sent().await;
    let code = codes(&bodies[0].1)[0].clone();
    let before = world.snapshot().await;
    for bad in ["AAAAAAAAAA", "abc", "abcdefghijklmnop", "abc.defghi", "%2e%2e%2fx", "AbCdEfGhI%00"] {
        let r = world.call(open(bad)).await;
        assert_eq!(r.status, 404, "{bad}: {r:?}");
        assert!(r.content_type.starts_with("text/html"), "{bad}: {r:?}");
    }
    let wrong_method = world.call(ApiRequest::new("POST", &format!("/r/{code}"))).await;
    wrong_method.assert_problem(405, "method_not_allowed");
    assert_eq!(world.snapshot().await, before, "nothing written");

    // 30 days on, the link has expired with its message.
    world.clock.advance(chrono::Duration::days(30));
    let before = world.snapshot().await;
    let r = world.call(open(&code)).await;
    assert_eq!((r.status, r.content_type.starts_with("text/html")), (404, true), "{r:?}");
    assert_eq!(world.snapshot().await, before);
}

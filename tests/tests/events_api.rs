//! `POST /v1/events` with API Gateway events against DynamoDB Local.

use chrono::Duration;
use rand::seq::SliceRandom;
use retarget_shared::domain::{Channel, Message, MessageId, Plan, SubscriptionId};
use retarget_tests::{ApiRequest, ApiResponse, TestApp, World};
use serde_json::{Value, json};

/// `POST /v1/events` of these events by `app`.
async fn post(world: &World, app: &TestApp, events: Value) -> ApiResponse {
    world.call(app.post("/v1/events", &json!({ "events": events }))).await
}

/// A push subscription (token `tok`) of `app` and a push message of `app`, in that order.
async fn push_pair(world: &World, app: &TestApp) -> (SubscriptionId, Message) {
    let sub = world.subscription(app, Channel::Push, "tok", None).await;
    (sub, world.message(app, Channel::Push).await)
}

/// The events of a request holding one event.
fn one(message: &Message, subscription: SubscriptionId, kind: &str) -> Value {
    json!([{"message_id": message.message_id, "subscription_id": subscription, "kind": kind}])
}

#[tokio::test]
async fn events_are_validated_one_by_one() {
    let (world, t) = World::with_app(Plan::Pro).await;
    let other = world.app(Plan::Pro).await;
    let push = world.message(&t, Channel::Push).await;
    let sms_sub = world.subscription(&t, Channel::Sms, "+15550000001", None).await;
    let push_sub = world.subscription(&t, Channel::Push, "tok", None).await;
    let foreign_sub = world.subscription(&other, Channel::Push, "tok", None).await;
    let m = push.message_id.to_string();

    let r = post(&world, &t, json!([
        {"message_id": m, "subscription_id": push_sub, "kind": "sent"},
        {"message_id": MessageId::new(), "subscription_id": push_sub, "kind": "sent"},
        {"message_id": "../../x", "subscription_id": push_sub, "kind": "sent"},
        {"message_id": m, "subscription_id": SubscriptionId::new(), "kind": "sent"},
        {"message_id": m, "subscription_id": foreign_sub, "kind": "sent"},
        {"message_id": m, "subscription_id": sms_sub, "kind": "sent"},
        {"message_id": m, "subscription_id": push_sub, "kind": "undelivered"},
        {"message_id": m, "subscription_id": push_sub, "kind": "clicked", "event_id": "e-1", "occurred_at": "2026-11-28T14:00:05Z"},
        {"message_id": m, "subscription_id": push_sub, "kind": "sent"},
    ])).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["accepted"], 2);
    assert_eq!(r.body["duplicates"], 1);
    assert_eq!(
        r.body["rejected"],
        json!([
            {"index": 1, "code": "unknown_message"},
            {"index": 2, "code": "unknown_message"},
            {"index": 3, "code": "unknown_subscription"},
            {"index": 4, "code": "unknown_subscription"},
            {"index": 5, "code": "unknown_subscription"},
            {"index": 6, "code": "invalid_kind"},
        ])
    );
    let stats = world.stats(&push).await;
    assert_eq!(
        (
            stats[&retarget_shared::domain::EventKind::Sent],
            stats[&retarget_shared::domain::EventKind::Clicked]
        ),
        (1, 1)
    );

    // Another app cannot record against this message.
    let theirs = post(&world, &other, one(&push, foreign_sub, "clicked")).await;
    assert_eq!(theirs.body["rejected"], json!([{"index": 0, "code": "unknown_message"}]));
}

#[tokio::test]
async fn replays_and_shuffles_leave_the_same_state() {
    let (world, t) = World::with_app(Plan::Pro).await;
    let message = world.message(&t, Channel::Sms).await;
    let mut subs = Vec::new();
    for i in 0..30 {
        subs.push(
            world.subscription(&t, Channel::Sms, &format!("+1555000{i:04}"), Some(&format!("u{i}"))).await,
        );
    }
    let mut events: Vec<Value> = subs
        .iter()
        .enumerate()
        .flat_map(|(i, s)| {
            let mut kinds = vec!["sent"];
            kinds.push(if i % 3 == 0 { "undelivered" } else { "delivered" });
            kinds.into_iter().map(move |k| json!({"message_id": message.message_id, "subscription_id": s, "kind": k, "event_id": format!("{s}-{k}")}))
        })
        .collect();
    let first = post(&world, &t, Value::Array(events.clone())).await;
    assert_eq!((first.body["accepted"].as_u64(), first.body["duplicates"].as_u64()), (Some(60), Some(0)));
    let state = world.scan_all().await;

    events.shuffle(&mut rand::rng());
    for chunk in events.chunks(7) {
        let again = post(&world, &t, Value::Array(chunk.to_vec())).await;
        assert_eq!(again.body["accepted"], 0);
    }
    assert_eq!(world.scan_all().await, state, "a shuffled replay changed the table");
}

#[tokio::test]
async fn expired_and_unretargetable_messages() {
    let (world, free) = World::with_app(Plan::Free).await;
    let (sub, message) = push_pair(&world, &free).await;
    let before = world.scan_all().await.len();
    let r = post(&world, &free, one(&message, sub, "clicked")).await;
    assert_eq!(
        (r.body["accepted"].as_u64(), r.body["rejected"].as_array().map(Vec::len)),
        (Some(1), Some(0))
    );
    assert_eq!(world.scan_all().await.len(), before, "events of a non-retargetable message are not stored");

    let pro = world.app(Plan::Pro).await;
    let (sub, message) = push_pair(&world, &pro).await;
    world.clock.advance(Duration::days(30) - Duration::seconds(1));
    let r = post(&world, &pro, one(&message, sub, "sent")).await;
    assert_eq!(r.body["accepted"], 1);
    world.clock.advance(Duration::seconds(1));
    let r = post(&world, &pro, one(&message, sub, "clicked")).await;
    assert_eq!(r.body["rejected"], json!([{"index": 0, "code": "message_expired"}]));
}

#[tokio::test]
async fn malformed_requests_are_refused_whole() {
    let (world, t) = World::with_app(Plan::Pro).await;
    let (sub, message) = push_pair(&world, &t).await;
    let good = json!({"message_id": message.message_id, "subscription_id": sub, "kind": "sent"});
    let before = world.scan_all().await.len();
    let many: Vec<Value> = (0..1001).map(|_| good.clone()).collect();
    for events in [
        json!([]),
        Value::Array(many),
        json!([good, {"message_id": message.message_id, "subscription_id": sub, "kind": "opend"}]),
        json!([good, {"message_id": message.message_id, "subscription_id": sub}]),
        json!([good, {"message_id": 7, "subscription_id": sub, "kind": "sent"}]),
        json!([good, {"message_id": message.message_id, "subscription_id": sub, "kind": "sent", "extra": true}]),
        json!([good, {"message_id": message.message_id, "subscription_id": sub, "kind": "sent", "occurred_at": "yesterday"}]),
        json!("nope"),
    ] {
        post(&world, &t, events).await.assert_problem(400, "invalid_request");
    }
    let unauthenticated = ApiRequest::post("/v1/events").json(&json!({"events":[good]}));
    world.call(unauthenticated).await.assert_problem(401, "unauthorized");
    assert_eq!(world.scan_all().await.len(), before);
}

#[tokio::test]
async fn a_full_batch_of_1000_is_recorded_with_one_conditional_put_per_new_event() {
    let (world, t) = World::with_app(Plan::Pro).await;
    let message = world.message(&t, Channel::Push).await;
    let subs = world.subscriptions(&t, Channel::Push, 250).await;
    let events: Vec<Value> = subs
        .iter()
        .flat_map(|s| {
            ["sent", "delivered", "clicked", "failed"]
                .map(|k| json!({"message_id": message.message_id, "subscription_id": s, "kind": k}))
        })
        .collect();
    // The events function's own store: its requests are what is counted.
    let stats = world.events_store().await.stats();
    let puts = || stats.put_requests.load(std::sync::atomic::Ordering::Relaxed);
    let ([w0, _, g0, _], p0) = (stats.snapshot(), puts());
    let r = post(&world, &t, Value::Array(events.clone())).await;
    assert_eq!(r.body["accepted"], 1000);
    let ([w1, _, g1, _], p1) = (stats.snapshot(), puts());
    // 1 message + 250 subscriptions + 1000 interactions looked up 100 at a time; each new
    // event one conditional PutItem (its condition is the exact accepted/duplicate answer), no
    // blind batch write, no counter write (the stats come from the stream).
    assert_eq!((w1 - w0, p1 - p0), (0, 1000));
    assert!(g1 - g0 <= 1 + 3 + 10, "{} BatchGetItem", g1 - g0);
    // Replayed: every event is a known duplicate, found by the batch read, no write at all.
    let r = post(&world, &t, Value::Array(events)).await;
    assert_eq!((&r.body["accepted"], &r.body["duplicates"]), (&json!(0), &json!(1000)));
    assert_eq!(puts(), p1);
}

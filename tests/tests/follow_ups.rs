//! Follow-ups declared with a message (`POST /v1/messages` `follow_ups`): each becomes a
//! retarget of the message at its send time + `after_seconds`, under every rule of
//! `POST /v1/retargets`; one refused follow-up creates nothing at all.

use aws_lambda_events::eventbridge::EventBridgeEvent;
use chrono::{DateTime, Utc};
use retarget_shared::Clock;
use retarget_shared::bootstrap::ScheduleFunction;
use retarget_shared::domain::{Channel, EventKind, Plan};
use retarget_shared::services::dispatch::DispatchDeps;
use retarget_tests::{TestApp, TestBus, World};
use serde_json::{Value, json};

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().expect("a time")).expect("RFC 3339").to_utc()
}

async fn tick(world: &World, bus: &TestBus) -> retarget_shared::services::dispatch::TickReport {
    let queues = world.queues().await;
    let deps = DispatchDeps { store: world.store.clone(), queues: queues.channels(), bus: bus.bus.clone() };
    let event: EventBridgeEvent<Value> =
        serde_json::from_str(include_str!("../fixtures/eventbridge-scheduled-event.json")).expect("fixture");
    deps.handle(event, None).await.expect("tick")
}

/// Two people with a push and an SMS subscription each.
async fn people(world: &World, t: &TestApp) -> (Vec<String>, Vec<String>) {
    let mut push = Vec::new();
    let mut sms = Vec::new();
    for i in 0..2 {
        let user = format!("person-{i}");
        let body = json!({"channel": "push", "token": format!("tok-{i}"), "platform": "android", "external_user_id": user});
        push.push(
            world.call(t.post("/v1/subscriptions", &body)).await.body["subscription_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
        let body =
            json!({"channel": "sms", "phone_number": format!("+1555000000{i}"), "external_user_id": user});
        sms.push(
            world.call(t.post("/v1/subscriptions", &body)).await.body["subscription_id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    (push, sms)
}

#[tokio::test]
async fn follow_ups_are_retargets_of_the_message_dispatched_at_their_time() {
    let world = World::new().await;
    let bus = TestBus::new().await;
    let t = world.app(Plan::Pro).await;
    let (push, sms) = people(&world, &t).await;
    let body = json!({
        "channel": "push",
        "contents": {"title": "Sale", "body": "20% off today"},
        "include_subscription_ids": push,
        "follow_ups": [
            {"after_seconds": 3600, "action": "not_clicked", "channel": "sms", "contents": {"body": "Still 20% off"}},
            {"after_seconds": 86400, "did": ["sent"], "did_not": ["converted"], "contents": {"body": "Last day"}},
        ],
    });
    let now = world.clock.now();
    let r = world.call(t.post("/v1/messages", &body)).await;
    assert_eq!(r.status, 202, "{r:?}");
    let message_id = r.body["message_id"].as_str().unwrap().to_owned();
    let follow_ups = r.body["follow_ups"].as_array().expect("the follow-ups created").clone();
    assert_eq!(follow_ups.len(), 2);
    assert_eq!(time(&follow_ups[0]["send_at"]), now + chrono::Duration::seconds(3600));
    assert_eq!(time(&follow_ups[1]["send_at"]), now + chrono::Duration::seconds(86400));

    let listed = world.call(t.get(&format!("/v1/messages/{message_id}/retargets"))).await;
    let listed = listed.body["retargets"].as_array().unwrap().clone();
    assert_eq!(listed.len(), 2, "{listed:?}");
    for r in &listed {
        assert_eq!(r["source_message_id"], message_id.as_str());
        assert_eq!(r["status"], "scheduled");
    }
    let first = listed.iter().find(|r| r["action"] == "not_clicked").expect("the first follow-up");
    assert_eq!(
        (first["channel"].as_str(), first["send_at"].clone()),
        (Some("sms"), follow_ups[0]["send_at"].clone())
    );
    let second = listed.iter().find(|r| r["action"].is_null()).expect("the combined one");
    assert_eq!(
        (second["did"].clone(), second["did_not"].clone(), second["channel"].as_str()),
        (json!(["sent"]), json!(["converted"]), Some("push"))
    );

    // Both were sent, person-0 clicked. Nothing is due yet.
    let queues = world.queues().await;
    queues.bodies(&queues.push).await;
    let message = world.store.get_message(t.app.app_id, message_id.parse().unwrap()).await.unwrap().unwrap();
    let subs: Vec<_> = push.iter().map(|s| s.parse().unwrap()).collect();
    world
        .record(
            &message,
            &[
                (subs[0], EventKind::Sent, Some("person-0")),
                (subs[1], EventKind::Sent, Some("person-1")),
                (subs[0], EventKind::Clicked, Some("person-0")),
            ],
        )
        .await;
    assert_eq!(tick(&world, &bus).await.dispatched, 0, "not before its time");

    // An hour later the first goes to person-1's SMS subscription (person-0 clicked).
    world.clock.advance(chrono::Duration::seconds(3600));
    assert_eq!(tick(&world, &bus).await.dispatched, 1);
    let jobs = queues.bodies(&queues.sms).await;
    assert!(jobs.len() == 1 && jobs[0].contains(&sms[1]) && !jobs[0].contains(&sms[0]), "{jobs:?}");
    let got =
        world.call(t.get(&format!("/v1/retargets/{}", follow_ups[0]["retarget_id"].as_str().unwrap()))).await;
    assert_eq!(
        (got.body["status"].as_str(), got.body["audience_size"].as_u64()),
        (Some("dispatched"), Some(1))
    );

    // A day later the second goes to both on push (nobody converted).
    world.clock.advance(chrono::Duration::seconds(86400 - 3600));
    assert_eq!(tick(&world, &bus).await.dispatched, 1);
    let jobs = queues.bodies(&queues.push).await;
    assert!(jobs.len() == 1 && jobs[0].contains(&push[0]) && jobs[0].contains(&push[1]), "{jobs:?}");
}

#[tokio::test]
async fn a_scheduled_messages_follow_ups_count_from_its_send_at() {
    let world = World::new().await;
    let t = world.app(Plan::Pro).await;
    let (push, _) = people(&world, &t).await;
    let send_at = world.clock.now() + chrono::Duration::hours(2);
    let body = json!({
        "channel": "push", "contents": {"body": "Tonight"}, "include_subscription_ids": push,
        "send_at": retarget_shared::clock::rfc3339(send_at),
        "follow_ups": [{"after_seconds": 600, "action": "not_clicked", "contents": {"body": "Still on"}}],
    });
    let r = world.call(t.post("/v1/messages", &body)).await;
    assert_eq!((r.status, r.body["status"].as_str()), (202, Some("scheduled")), "{r:?}");
    assert_eq!(time(&r.body["follow_ups"][0]["send_at"]), send_at + chrono::Duration::seconds(600));
    let message_id = r.body["message_id"].as_str().unwrap();
    let message = world.store.get_message(t.app.app_id, message_id.parse().unwrap()).await.unwrap().unwrap();
    assert_eq!(message.send_at, send_at, "the message itself is scheduled as before");
    assert_eq!(world.store.due_messages(send_at, 10).await.unwrap().len(), 1, "and in the due index");
}

#[tokio::test]
async fn one_refused_follow_up_creates_nothing() {
    let world = World::new().await;
    let pro = world.app(Plan::Pro).await;
    let free = world.app(Plan::Free).await;
    let sms_only = world.sms_only_app().await;
    let (push, _) = people(&world, &pro).await;
    let sms_sub = world.subscription(&sms_only, Channel::Sms, "+15550009000", None).await.to_string();
    let free_sub = world.subscription(&free, Channel::Push, "free-token", None).await.to_string();
    let ok = json!({"after_seconds": 3600, "action": "not_clicked", "contents": {"body": "again"}});
    let with = |t: &TestApp, recipients: &[String], channel: &str, last: Value| {
        let mut follow_ups = vec![ok.clone(); 4];
        follow_ups.push(last);
        let body = json!({"channel": channel, "contents": {"body": "hello"}, "include_subscription_ids": recipients,
            "follow_ups": follow_ups});
        t.post("/v1/messages", &body)
    };
    let cases: Vec<(&str, _, u16, &str)> = vec![
        (
            "six follow-ups",
            {
                let body = json!({"channel": "push", "contents": {"body": "hello"}, "include_subscription_ids": push,
                "follow_ups": vec![ok.clone(); 6]});
                pro.post("/v1/messages", &body)
            },
            400,
            "invalid_request",
        ),
        (
            "after_seconds missing",
            with(&pro, &push, "push", json!({"action": "sent", "contents": {"body": "x"}})),
            400,
            "invalid_request",
        ),
        (
            "an unknown field",
            with(
                &pro,
                &push,
                "push",
                json!({"after_seconds": 60, "action": "sent", "contents": {"body": "x"}, "segment": "all"}),
            ),
            400,
            "invalid_request",
        ),
        (
            "action and did",
            with(
                &pro,
                &push,
                "push",
                json!({"after_seconds": 60, "action": "sent", "did": ["sent"], "contents": {"body": "x"}}),
            ),
            400,
            "invalid_request",
        ),
        (
            "no audience",
            with(&pro, &push, "push", json!({"after_seconds": 60, "contents": {"body": "x"}})),
            400,
            "invalid_request",
        ),
        (
            "an SMS of 2000 characters",
            with(
                &pro,
                &push,
                "push",
                json!({"after_seconds": 60, "action": "sent", "channel": "sms", "contents": {"body": "x".repeat(2000)}}),
            ),
            400,
            "invalid_request",
        ),
        ("free plan", with(&free, std::slice::from_ref(&free_sub), "push", ok.clone()), 403, "plan_required"),
        (
            "an action push lacks",
            with(
                &pro,
                &push,
                "push",
                json!({"after_seconds": 60, "action": "opened", "contents": {"body": "x"}}),
            ),
            400,
            "invalid_action",
        ),
        (
            "push on an SMS-only app",
            with(
                &sms_only,
                std::slice::from_ref(&sms_sub),
                "sms",
                json!({"after_seconds": 60, "action": "sent", "channel": "push", "contents": {"body": "x"}}),
            ),
            422,
            "channel_not_configured",
        ),
        (
            "59 seconds after",
            with(
                &pro,
                &push,
                "push",
                json!({"after_seconds": 59, "action": "sent", "contents": {"body": "x"}}),
            ),
            422,
            "send_at_out_of_window",
        ),
        (
            "negative",
            with(
                &pro,
                &push,
                "push",
                json!({"after_seconds": -3600, "action": "sent", "contents": {"body": "x"}}),
            ),
            422,
            "send_at_out_of_window",
        ),
        (
            "past the 30 days",
            with(
                &pro,
                &push,
                "push",
                json!({"after_seconds": 30 * 86400 + 1, "action": "sent", "contents": {"body": "x"}}),
            ),
            422,
            "send_at_out_of_window",
        ),
        (
            "an absurd delay",
            with(
                &pro,
                &push,
                "push",
                json!({"after_seconds": i64::MAX, "action": "sent", "contents": {"body": "x"}}),
            ),
            422,
            "send_at_out_of_window",
        ),
    ];
    let before = world.snapshot().await;
    let queues = world.queues().await;
    for (what, request, status, code) in cases {
        let r = world.call(request).await;
        assert_eq!((r.status, r.body["code"].as_str()), (status, Some(code)), "{what}: {r:?}");
        assert_eq!(world.snapshot().await, before, "{what}: nothing written");
        assert!(
            queues.bodies(&queues.push).await.is_empty() && queues.bodies(&queues.sms).await.is_empty(),
            "{what}: nothing sent"
        );
    }
    // The last day of the window is still in it.
    let r = world
        .call(with(
            &pro,
            &push,
            "push",
            json!({"after_seconds": 30 * 86400, "action": "sent", "contents": {"body": "x"}}),
        ))
        .await;
    assert_eq!(r.status, 202, "{r:?}");
    assert_eq!(r.body["follow_ups"].as_array().map(Vec::len), Some(5));
}

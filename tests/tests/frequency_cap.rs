//! The frequency cap end to end against DynamoDB Local, the SQS emulator and a Twilio stand-in:
//! concurrent sends of different messages to the same people never exceed `max` per window,
//! whatever the interleaving and redeliveries; a retarget counts its capped recipients once;
//! transactional messages neither obey nor count; the window slides on the test clock.

use std::collections::HashMap;

use aws_lambda_events::eventbridge::EventBridgeEvent;
use chrono::Duration;
use futures::future::join_all;
use retarget_shared::bootstrap::ScheduleFunction;
use retarget_shared::domain::{Channel, EventKind, SubscriptionId};
use retarget_shared::services::dispatch::DispatchDeps;
use retarget_shared::services::sender::{SenderDeps, handle_batch};
use retarget_sms_sender::TwilioProvider;
use retarget_tests::{TestApp, TestBus, TestQueues, World, twilio};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer};

struct Harness {
    world: World,
    queues: TestQueues,
    deps: DispatchDeps,
    twilio: MockServer,
    sender: SenderDeps<TwilioProvider>,
    app: TestApp,
    _bus: TestBus,
}

impl Harness {
    async fn new(max: u32) -> Self {
        let world = World::new().await;
        let queues = world.queues().await.clone();
        let bus = TestBus::new().await;
        let deps = DispatchDeps {
            store: world.store.clone(),
            push_queue: queues.push.clone(),
            sms_queue: queues.sms.clone(),
            bus: bus.bus.clone(),
        };
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(twilio::messages_path(twilio::ACCOUNT)))
            .respond_with(twilio::accepted())
            .mount(&server)
            .await;
        let sender = world.sender(
            Channel::Sms,
            twilio::provider(&world.store, server.uri(), std::time::Duration::from_secs(5)),
        );
        let app = world.twilio_app("tok", "+15550000000").await;
        let policy = json!({"frequency_cap": {"max": max, "per_hours": 24, "channels": ["push", "sms"]}});
        let r = world.call(app.put("/v1/app/delivery-policy", &policy)).await;
        assert_eq!(r.status, 200, "{r:?}");
        Self { world, queues, deps, twilio: server, sender, app, _bus: bus }
    }

    async fn people(&self, n: usize) -> Vec<SubscriptionId> {
        let mut subs = Vec::new();
        for i in 0..n {
            let body = json!({"channel": "sms", "phone_number": format!("+1555010{i:04}"), "external_user_id": format!("p{i}")});
            let r = self.world.call(self.app.post("/v1/subscriptions", &body)).await;
            assert_eq!(r.status, 201, "{r:?}");
            subs.push(r.body["subscription_id"].as_str().expect("id").parse().expect("an id"));
        }
        subs
    }

    async fn message(&self, subs: &[SubscriptionId], transactional: bool) {
        let body = json!({"channel": "sms", "contents": {"body": "hello"}, "include_subscription_ids": subs, "transactional": transactional});
        let r = self.world.call(self.app.post("/v1/messages", &body)).await;
        assert_eq!(r.status, 202, "{r:?}");
    }

    /// Every job on the SMS queue handed to the sender at once, each in its own invocation, as
    /// concurrent Lambda instances would take them; then all of them once more (redelivery).
    async fn send_all_concurrently(&self) {
        let bodies = self.queues.bodies(&self.queues.sms).await;
        for _ in 0..2 {
            let runs = bodies.iter().map(|b| {
                handle_batch(&self.sender, retarget_tests::sqs_event(std::slice::from_ref(b)), None)
            });
            for response in join_all(runs).await {
                assert!(response.batch_item_failures.is_empty(), "{:?}", response.batch_item_failures);
            }
        }
    }

    async fn sends_per_number(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for to in twilio::recipients(&self.twilio).await {
            *counts.entry(to).or_default() += 1;
        }
        counts
    }
}

fn scheduled_event() -> EventBridgeEvent<Value> {
    serde_json::from_str(include_str!("../fixtures/eventbridge-scheduled-event.json")).expect("fixture")
}

#[tokio::test]
async fn concurrent_messages_never_pass_the_cap_and_it_slides_with_the_window() {
    let h = Harness::new(2).await;
    let subs = h.people(4).await;
    // Five messages to the same four people, their jobs sent by five concurrent senders.
    for _ in 0..5 {
        h.message(&subs, false).await;
    }
    h.send_all_concurrently().await;
    let counts = h.sends_per_number().await;
    assert_eq!(counts.len(), 4, "{counts:?}");
    assert!(counts.values().all(|n| *n == 2), "exactly max per person: {counts:?}");

    // Nothing recorded for the capped ones: `sent` counts only what went.
    // 23 hours later, still capped; 24 hours after the first sends, room again.
    h.world.clock.advance(Duration::hours(23));
    h.message(&subs, false).await;
    h.send_all_concurrently().await;
    assert!(h.sends_per_number().await.values().all(|n| *n == 2));
    h.world.clock.advance(Duration::hours(1));
    h.message(&subs, false).await;
    h.send_all_concurrently().await;
    assert!(h.sends_per_number().await.values().all(|n| *n == 3), "{:?}", h.sends_per_number().await);
}

#[tokio::test]
async fn transactional_sends_neither_obey_nor_count_and_a_retarget_counts_capped_once() {
    let h = Harness::new(1).await;
    let subs = h.people(3).await;
    // Three transactional messages: all sent, none counted.
    for _ in 0..3 {
        h.message(&subs, true).await;
    }
    h.send_all_concurrently().await;
    assert!(h.sends_per_number().await.values().all(|n| *n == 3));
    // So the first marketing message still goes; the second is capped.
    h.message(&subs, false).await;
    h.send_all_concurrently().await;
    assert!(h.sends_per_number().await.values().all(|n| *n == 4));

    // A retarget to the same people: every one capped, counted once over redeliveries, and
    // nothing recorded for them.
    let source = h.world.message(&h.app, Channel::Sms).await;
    let events: Vec<(SubscriptionId, EventKind, Option<&str>)> =
        subs.iter().map(|s| (*s, EventKind::Sent, None)).collect();
    h.world.record(&source, &events).await;
    let body =
        json!({"source_message_id": source.message_id, "action": "sent", "contents": {"body": "Back?"}});
    let r = h.world.call(h.app.post("/v1/retargets", &body)).await;
    assert_eq!(r.status, 201, "{r:?}");
    let retarget = r.body["retarget_id"].as_str().expect("id").to_owned();
    let message_id = r.body["message_id"].as_str().expect("id").to_owned();
    assert_eq!(h.deps.handle(scheduled_event(), None).await.expect("tick").dispatched, 1);
    h.send_all_concurrently().await;
    assert!(h.sends_per_number().await.values().all(|n| *n == 4), "nobody got the retarget");
    let view = h.world.call(h.app.get(&format!("/v1/retargets/{retarget}"))).await.body;
    assert_eq!((view["capped"].as_u64(), view["deferred"].as_u64()), (Some(3), Some(0)), "{view}");
    let message = h.world.call(h.app.get(&format!("/v1/messages/{message_id}"))).await.body;
    assert_eq!(message["stats"]["sent"], 0, "nothing recorded for capped recipients: {message}");
    assert_eq!(message["stats"]["failed"], 0, "{message}");
}

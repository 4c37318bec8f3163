//! The scheduler end to end against DynamoDB Local and the SQS/EventBridge emulator: due
//! retargets are claimed once, their audience computed at dispatch time and queued in packed
//! jobs, progress checkpointed so a crashed dispatch resumes without loss or repetition.

use std::collections::BTreeSet;
use std::sync::Arc;

use aws_lambda_events::eventbridge::EventBridgeEvent;
use chrono::Duration;
use retarget_shared::adapters::queue::{ChannelQueues, Queue};
use retarget_shared::bootstrap::ScheduleFunction;
use retarget_shared::domain::{
    Address, Channel, EventKind, Message, Plan, Platform, RetargetStatus, SendJob, SubscriptionId,
};
use retarget_shared::services::dispatch::DispatchDeps;
use retarget_shared::services::sender::handle_batch;
use retarget_shared::{Clock, keys};
use retarget_tests::crash::FailAfter;
use retarget_tests::{ApiResponse, TestApp, TestBus, TestQueues, World, twilio};
use serde_json::{Value, json};

struct Harness {
    world: World,
    queues: TestQueues,
    bus: TestBus,
    deps: DispatchDeps,
}

fn scheduled_event() -> EventBridgeEvent<Value> {
    serde_json::from_str(include_str!("../fixtures/eventbridge-scheduled-event.json")).expect("fixture")
}

impl Harness {
    async fn new() -> Self {
        let world = World::new().await;
        let queues = world.queues().await.clone();
        let bus = TestBus::new().await;
        let deps =
            DispatchDeps { store: world.store.clone(), queues: queues.channels(), bus: bus.bus.clone() };
        Self { world, queues, bus, deps }
    }

    async fn tick(&self) -> retarget_shared::services::dispatch::TickReport {
        self.deps.handle(scheduled_event(), None).await.expect("tick")
    }

    async fn retarget(&self, t: &TestApp, body: Value) -> ApiResponse {
        self.world.call(t.post("/v1/retargets", &body)).await
    }

    async fn get_retarget(&self, t: &TestApp, id: &str) -> Value {
        self.world.call(t.get(&format!("/v1/retargets/{id}"))).await.body
    }

    /// A push source with `n` recipients: all sent, even ones clicked; person i has an SMS
    /// subscription when i % 3 == 0.
    async fn source(&self, t: &TestApp, n: usize) -> (Message, Vec<SubscriptionId>, Vec<SubscriptionId>) {
        let message = self.world.message(t, Channel::Push).await;
        let mut push = Vec::new();
        let mut sms = Vec::new();
        let mut events = Vec::new();
        let users: Vec<String> = (0..n).map(|i| format!("person-{i}")).collect();
        for (i, user) in users.iter().enumerate() {
            let sub = self.world.subscription(t, Channel::Push, &format!("token-{i}"), Some(user)).await;
            if i % 3 == 0 {
                sms.push(self.world.subscription(t, Channel::Sms, &format!("+1555{i:07}"), Some(user)).await);
            }
            events.push((sub, EventKind::Sent, Some(user.as_str())));
            if i % 2 == 0 {
                events.push((sub, EventKind::Clicked, Some(user.as_str())));
            }
            push.push(sub);
        }
        self.world.record(&message, &events).await;
        (message, push, sms)
    }
}

fn recipients(jobs: &[SendJob]) -> Vec<SubscriptionId> {
    jobs.iter().flat_map(|j| j.subscription_ids.iter().copied()).collect()
}

#[tokio::test]
async fn a_due_retarget_is_dispatched_once_with_its_audience_computed_at_dispatch() {
    let h = Harness::new().await;
    let t = h.world.app(Plan::Pro).await;
    let (source, push, _) = h.source(&t, 20).await;
    let send_at = retarget_shared::clock::rfc3339(h.world.clock.now() + Duration::hours(1));
    let created = h
        .retarget(&t, json!({"source_message_id": source.message_id, "action": "not_clicked", "contents": {"body": "Still interested?"}, "send_at": send_at}))
        .await;
    assert_eq!(created.status, 201, "{created:?}");
    let id = created.body["retarget_id"].as_str().unwrap().to_owned();

    // Not due yet: nothing happens.
    assert_eq!(h.tick().await.claimed, 0);
    // A click arriving before dispatch counts: the audience is computed at dispatch time.
    h.world.record_each(&source, EventKind::Clicked, &[push[1]]).await;

    h.world.clock.advance(Duration::hours(1));
    let report = h.tick().await;
    assert_eq!((report.claimed, report.dispatched), (1, 1), "{report:?}");
    assert_eq!(h.tick().await.claimed, 0, "dispatched once");

    let jobs = h.queues.drain(&h.queues.push).await;
    let got: BTreeSet<_> = recipients(&jobs).into_iter().collect();
    let expected: BTreeSet<_> =
        push.iter().enumerate().filter(|(i, _)| i % 2 == 1 && *i != 1).map(|(_, s)| *s).collect();
    assert_eq!(got, expected);
    assert_eq!(recipients(&jobs).len(), expected.len(), "no recipient twice");
    let message_id = created.body["message_id"].as_str().unwrap();
    assert!(
        jobs.iter().all(|j| j.message_id.to_string() == message_id),
        "jobs send the retarget's own message"
    );

    let view = h.get_retarget(&t, &id).await;
    assert_eq!(
        (
            view["status"].as_str(),
            view["audience_size"].as_u64(),
            view["enqueued"].as_u64(),
            view["unreachable"].as_u64()
        ),
        (Some("dispatched"), Some(9), Some(9), Some(0))
    );
    let events = h.bus.events().await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["detail-type"], "RetargetDispatched");
    assert_eq!(events[0]["source"], "retarget");
    assert_eq!(
        events[0]["detail"],
        json!({"app_id": t.app.app_id, "retarget_id": id, "message_id": message_id, "audience_size": 9, "enqueued": 9, "unreachable": 0})
    );
    let message =
        h.world.store.get_message(t.app.app_id, message_id.parse().unwrap()).await.unwrap().unwrap();
    assert_eq!((message.recipients, message.retarget_of), (9, Some(source.message_id)));
}

#[tokio::test]
async fn cross_channel_dispatch_counts_the_unreachable() {
    let h = Harness::new().await;
    let t = h.world.app(Plan::Pro).await;
    let (source, _, sms) = h.source(&t, 12).await;
    let created = h.retarget(&t, json!({"source_message_id": source.message_id, "action": "sent", "channel": "sms", "contents": {"body": "Text follow-up"}})).await;
    assert_eq!(created.status, 201, "{created:?}");
    let report = h.tick().await;
    assert_eq!(report.dispatched, 1, "{report:?}");
    let jobs = h.queues.drain(&h.queues.sms).await;
    assert_eq!(recipients(&jobs).into_iter().collect::<BTreeSet<_>>(), sms.iter().copied().collect());
    assert!(jobs.iter().all(|j| j.channel == Channel::Sms));
    let view = h.get_retarget(&t, created.body["retarget_id"].as_str().unwrap()).await;
    assert_eq!((view["audience_size"].as_u64(), view["unreachable"].as_u64()), (Some(4), Some(8)));
}

#[tokio::test]
async fn cancelled_retargets_are_never_dispatched_and_expired_sources_fail() {
    let h = Harness::new().await;
    let t = h.world.app(Plan::Pro).await;
    let (source, _, _) = h.source(&t, 3).await;
    let send_at = retarget_shared::clock::rfc3339(h.world.clock.now() + Duration::days(keys::RETENTION_DAYS));
    let late = h.retarget(&t, json!({"source_message_id": source.message_id, "action": "sent", "contents": {"body": "x"}, "send_at": send_at})).await;
    assert_eq!(late.status, 201, "{late:?}");
    let cancelled = h
        .retarget(
            &t,
            json!({"source_message_id": source.message_id, "action": "sent", "contents": {"body": "x"}}),
        )
        .await;
    let id = cancelled.body["retarget_id"].as_str().unwrap();
    let r = h.world.call(t.delete(&format!("/v1/retargets/{id}"))).await;
    assert_eq!(r.status, 200);

    assert_eq!(h.tick().await.claimed, 0, "the cancelled one is not claimed");
    // At exactly created_at + 30 days the source's data has expired: the retarget fails.
    h.world.clock.advance(Duration::days(keys::RETENTION_DAYS));
    let report = h.tick().await;
    assert_eq!((report.claimed, report.failed), (1, 1), "{report:?}");
    let view = h.get_retarget(&t, late.body["retarget_id"].as_str().unwrap()).await;
    assert_eq!(view["status"], "failed");
    assert!(h.queues.drain(&h.queues.push).await.is_empty());
    assert_eq!(h.get_retarget(&t, id).await["status"], "cancelled");
}

#[tokio::test]
async fn overlapping_ticks_claim_each_retarget_once() {
    let h = Harness::new().await;
    let t = h.world.app(Plan::Pro).await;
    let (source, _, _) = h.source(&t, 30).await;
    for _ in 0..3 {
        let r = h
            .retarget(
                &t,
                json!({"source_message_id": source.message_id, "action": "sent", "contents": {"body": "x"}}),
            )
            .await;
        assert_eq!(r.status, 201);
    }
    let (a, b, c) = tokio::join!(h.tick(), h.tick(), h.tick());
    assert_eq!(a.dispatched + b.dispatched + c.dispatched, 3, "{a:?} {b:?} {c:?}");
    let jobs = h.queues.drain(&h.queues.push).await;
    assert_eq!(recipients(&jobs).len(), 3 * 30, "each retarget's 30 recipients exactly once");
}

#[tokio::test]
async fn a_crashed_dispatch_resumes_from_its_checkpoint_without_loss_or_repetition() {
    let h = Harness::new().await;
    let t = h.world.app(Plan::Pro).await;
    // 5,000 recipients flush per batch: 6,200 recipients take two flushes.
    let message = h.world.message(&t, Channel::Push).await;
    let subs = h
        .world
        .bulk_subscriptions(&t, 6200, |i| Address::Push { platform: Platform::Ios, token: format!("t{i}") })
        .await;
    let ids: Vec<SubscriptionId> = subs.iter().map(|s| s.subscription_id).collect();
    h.world.record_each(&message, EventKind::Sent, &ids).await;
    let created = h
        .retarget(
            &t,
            json!({"source_message_id": message.message_id, "action": "sent", "contents": {"body": "x"}}),
        )
        .await;
    let id = created.body["retarget_id"].as_str().unwrap().to_owned();

    // The first run's queue accepts one SendMessageBatch, then the "crash": every later
    // call fails, as if the process had died after its first checkpoint.
    let dying_sqs = FailAfter::new(1).sqs(retarget_tests::sdk().await);
    let crashing = DispatchDeps {
        store: h.world.store.clone(),
        queues: ChannelQueues {
            push: Arc::new(Queue::new(dying_sqs, h.queues.push.url())),
            ..h.queues.channels()
        },
        bus: h.bus.bus.clone(),
    };
    let report = crashing.handle(scheduled_event(), None).await.unwrap();
    assert_eq!((report.claimed, report.errors), (1, 1), "{report:?}");
    let first = recipients(&h.queues.drain(&h.queues.push).await);
    assert_eq!(first.len(), 5000);
    assert_eq!(h.get_retarget(&t, &id).await["status"], "dispatching");

    // While the dead run's lease holds, nobody takes over.
    assert_eq!(h.tick().await.claimed, 0);
    h.world.clock.advance(Duration::seconds(retarget_shared::keys::DUE_LEASE_SECONDS + 1));
    let report = h.tick().await;
    assert_eq!((report.claimed, report.dispatched), (1, 1), "{report:?}");
    let second = recipients(&h.queues.drain(&h.queues.push).await);
    assert_eq!(second.len(), 1200, "resumed after the checkpoint");
    let all: BTreeSet<_> = first.iter().chain(&second).copied().collect();
    assert_eq!(all.len(), 6200, "nobody lost, nobody twice");
    let view = h.get_retarget(&t, &id).await;
    assert_eq!((view["audience_size"].as_u64(), view["enqueued"].as_u64()), (Some(6200), Some(6200)));
    let _ = RetargetStatus::Dispatched;
}

#[tokio::test]
async fn scheduled_original_messages_go_out_when_due() {
    let h = Harness::new().await;
    let t = h.world.app(Plan::Pro).await;
    let mut subs = Vec::new();
    for i in 0..7 {
        subs.push(h.world.subscription(&t, Channel::Sms, &format!("+1555777{i:04}"), None).await);
    }
    let send_at = retarget_shared::clock::rfc3339(h.world.clock.now() + Duration::hours(2));
    let body = json!({"channel": "sms", "contents": {"body": "Sale starts now"}, "include_subscription_ids": subs, "send_at": send_at});
    let r = h.world.call(t.post("/v1/messages", &body)).await;
    assert_eq!((r.status, r.body["status"].as_str()), (202, Some("scheduled")), "{r:?}");
    let id: retarget_shared::domain::MessageId = r.body["message_id"].as_str().unwrap().parse().unwrap();

    assert_eq!(h.tick().await.messages_sent, 0);
    assert!(h.queues.drain(&h.queues.sms).await.is_empty(), "nothing before send_at");
    h.world.clock.advance(Duration::hours(2));
    assert_eq!(h.tick().await.messages_sent, 1);
    assert_eq!(h.tick().await.messages_sent, 0, "queued once");
    let jobs = h.queues.drain(&h.queues.sms).await;
    assert_eq!(recipients(&jobs).into_iter().collect::<BTreeSet<_>>(), subs.iter().copied().collect());
    assert!(jobs.iter().all(|j| j.message_id == id));
    let message = h.world.store.get_message(t.app.app_id, id).await.unwrap().unwrap();
    assert_eq!((message.status, message.recipients), (retarget_shared::domain::MessageStatus::Sending, 7));
}

#[tokio::test]
async fn sms_to_push_and_a_retarget_of_a_retarget_reach_each_member_once_at_the_provider() {
    use wiremock::matchers::{method, path};
    use wiremock::{Mock, MockServer};

    let h = Harness::new().await;
    let twilio = MockServer::start().await;
    let messages_path = twilio::messages_path(twilio::ACCOUNT);
    Mock::given(method("POST"))
        .and(path(messages_path))
        .respond_with(twilio::accepted())
        .mount(&twilio)
        .await;
    let t = h.world.twilio_app("tok", "+15550000000").await;
    let sender = h.world.sender(
        Channel::Sms,
        twilio::provider(&h.world.store, twilio.uri(), std::time::Duration::from_secs(2)),
    );

    // An SMS source: 5 people, 3 of whom also have a device.
    let source = h.world.message(&t, Channel::Sms).await;
    let users: Vec<String> = (0..5).map(|i| format!("p{i}")).collect();
    let mut events = Vec::new();
    let mut devices = Vec::new();
    for (i, user) in users.iter().enumerate() {
        let phone = h.world.subscription(&t, Channel::Sms, &format!("+1555888{i:04}"), Some(user)).await;
        if i < 3 {
            devices.push(h.world.subscription(&t, Channel::Push, &format!("dev-{i}"), Some(user)).await);
        }
        events.push((phone, EventKind::Undelivered, Some(user.as_str())));
    }
    h.world.record(&source, &events).await;

    // sms → push.
    let r = h.retarget(&t, json!({"source_message_id": source.message_id, "action": "not_delivered", "channel": "push", "contents": {"body": "Check the app"}})).await;
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(h.tick().await.dispatched, 1);
    let jobs = h.queues.drain(&h.queues.push).await;
    assert_eq!(recipients(&jobs).into_iter().collect::<BTreeSet<_>>(), devices.iter().copied().collect());
    let view = h.get_retarget(&t, r.body["retarget_id"].as_str().unwrap()).await;
    assert_eq!((view["audience_size"].as_u64(), view["unreachable"].as_u64()), (Some(3), Some(2)));

    // A retarget of that retarget: its own message is a source like any other. Its devices
    // were sent to; now text everyone the push did not reach... by SMS.
    let first_message: retarget_shared::domain::MessageId =
        r.body["message_id"].as_str().unwrap().parse().unwrap();
    let first = h.world.store.get_message(t.app.app_id, first_message).await.unwrap().unwrap();
    let sent: Vec<_> =
        devices.iter().zip(&users).map(|(d, user)| (*d, EventKind::Sent, Some(user.as_str()))).collect();
    h.world.record(&first, &sent).await;
    let again = h.retarget(&t, json!({"source_message_id": first_message, "action": "not_delivered", "channel": "sms", "contents": {"body": "Text fallback"}})).await;
    assert_eq!(again.status, 201, "{again:?}");
    assert_eq!(h.tick().await.dispatched, 1);
    let bodies = h.queues.bodies(&h.queues.sms).await;
    assert_eq!(bodies.len(), 1);

    // Through the SMS sender to Twilio, delivered twice by SQS: one request per member.
    let event = retarget_tests::sqs_event(&bodies);
    assert!(handle_batch(&sender, event.clone(), None).await.batch_item_failures.is_empty());
    assert!(handle_batch(&sender, event, None).await.batch_item_failures.is_empty());
    let mut to = twilio::recipients(&twilio).await;
    to.sort();
    assert_eq!(
        to,
        vec!["+15558880000", "+15558880001", "+15558880002"],
        "each member of the retarget of the retarget, once"
    );
    let second: retarget_shared::domain::MessageId =
        again.body["message_id"].as_str().unwrap().parse().unwrap();
    let message = h.world.store.get_message(t.app.app_id, second).await.unwrap().unwrap();
    assert_eq!(message.retarget_of, Some(first_message));
    assert_eq!(h.world.stats(&message).await[&EventKind::Sent], 3);
}

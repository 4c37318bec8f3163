//! Exactly once under real concurrency: many writers record the same (message, subscription,
//! kind) at the same instant through every entry point — the events API, the push webhook,
//! Twilio's status callbacks and the senders' own recording — and exactly one of them is
//! accepted, the stats count each triple once.

use std::sync::Arc;

use futures::future::join_all;
use retarget_shared::Clock;
use retarget_shared::adapters::store::Interaction;
use retarget_shared::domain::{Channel, EventKind, Message, Plan, SubscriptionId};
use retarget_shared::edge::signatures::{push_signature, twilio_signature};
use retarget_tests::{ApiRequest, PUBLIC_BASE_URL, TestApp, World, twilio};
use serde_json::json;
use tokio::sync::Barrier;

const TOKEN: &str = "twilio-auth-token-123";
/// Concurrent writers per round.
const WRITERS: usize = 8;
const ROUNDS: usize = 6;
const RECIPIENTS: usize = 12;

#[derive(Clone, Copy, Debug)]
enum Entry {
    EventsApi,
    Sender,
    PushWebhook,
    TwilioCallback,
}

impl Entry {
    /// Whether the entry point tells its caller how many of the events it accepted.
    fn reports(self) -> bool {
        matches!(self, Entry::EventsApi | Entry::Sender)
    }
}

/// Records `kind` for every one of `subs` through `entry`; the number accepted where the entry
/// point says.
async fn record(
    world: &World,
    app: &TestApp,
    message: &Message,
    subs: &[SubscriptionId],
    kind: EventKind,
    entry: Entry,
) -> usize {
    match entry {
        Entry::EventsApi => {
            let events: Vec<_> = subs
                .iter()
                .map(|s| json!({"message_id": message.message_id, "subscription_id": s, "kind": kind.as_str()}))
                .collect();
            let r = world.call(app.post("/v1/events", &json!({ "events": events }))).await;
            assert_eq!(r.status, 200, "{r:?}");
            r.body["accepted"].as_u64().unwrap() as usize
        }
        Entry::Sender => {
            let now = world.clock.now();
            let interactions: Vec<_> = subs
                .iter()
                .map(|s| Interaction {
                    subscription_id: *s,
                    kind,
                    external_user_id: None,
                    event_id: None,
                    occurred_at: now,
                })
                .collect();
            world.store.record_interactions(&message.scope(), &interactions).await.unwrap().accepted()
        }
        Entry::PushWebhook => {
            let now = world.clock.now_epoch();
            let secret = app.push_webhook_secret.clone();
            let calls = subs.iter().map(|s| {
                // The webhook needs an event id: each writer's own, so that the triple decides.
                let event_id = format!("{}-{s}-{}", ulid::Ulid::new(), kind.as_str());
                let body = json!({"event_id": event_id, "kind": kind.as_str(), "message_id": message.message_id, "subscription_id": s, "occurred_at": retarget_shared::clock::rfc3339(world.clock.now())}).to_string();
                let signature = format!("t={now},v1={}", push_signature(&secret, now, body.as_bytes()));
                let request = ApiRequest::post(&format!("/v1/webhooks/push/{}", app.app.app_id))
                    .header("content-type", "application/json")
                    .header("Retarget-Signature", &signature)
                    .raw_body(body.as_bytes());
                world.call(request)
            });
            for r in join_all(calls).await {
                assert_eq!(r.status, 204, "{r:?}");
            }
            0
        }
        Entry::TwilioCallback => {
            let status = match kind {
                EventKind::Sent => "sent",
                EventKind::Delivered => "delivered",
                other => panic!("Twilio reports no {other:?}"),
            };
            let calls = subs.iter().map(|s| {
                let path = format!(
                    "/v1/webhooks/twilio/{}?message_id={}&subscription_id={s}",
                    app.app.app_id, message.message_id
                );
                let params: Vec<(String, String)> = vec![
                    ("MessageSid".into(), format!("SM{s}")),
                    ("MessageStatus".into(), status.into()),
                    ("AccountSid".into(), twilio::ACCOUNT.into()),
                ];
                let body = params.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
                let signature = twilio_signature(TOKEN, &format!("{PUBLIC_BASE_URL}{path}"), &params);
                let request = ApiRequest::post(&path)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .header("X-Twilio-Signature", &signature)
                    .raw_body(body.as_bytes());
                world.call(request)
            });
            for r in join_all(calls).await {
                assert_eq!(r.status, 204, "{r:?}");
            }
            0
        }
    }
}

/// `WRITERS` tasks, released together, each record every triple of the round through `entries`
/// (in turn); returns the accepted counts of the entry points that report them.
async fn race(
    world: &Arc<World>,
    app: &Arc<TestApp>,
    message: &Message,
    subs: &Arc<Vec<SubscriptionId>>,
    kind: EventKind,
    entries: &[Entry],
) -> (usize, bool) {
    let barrier = Arc::new(Barrier::new(WRITERS));
    let tasks = (0..WRITERS).map(|w| {
        let (world, app, subs, barrier) = (world.clone(), app.clone(), subs.clone(), barrier.clone());
        let message = message.clone();
        let entry = entries[w % entries.len()];
        tokio::spawn(async move {
            barrier.wait().await;
            (record(&world, &app, &message, &subs, kind, entry).await, entry.reports())
        })
    });
    let results: Vec<(usize, bool)> = join_all(tasks).await.into_iter().map(|r| r.unwrap()).collect();
    let accepted = results.iter().map(|(a, _)| a).sum();
    (accepted, results.iter().all(|(_, reports)| *reports))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_entry_point_racing_on_the_same_triples_counts_each_once() {
    let world = Arc::new(World::new().await);
    let pro = Arc::new(world.app(Plan::Pro).await);
    let sms_app = Arc::new(world.twilio_app(TOKEN, "+15550009999").await);
    let push_subs = Arc::new(world.subscriptions(&pro, Channel::Push, RECIPIENTS).await);
    let sms_subs = Arc::new(world.subscriptions(&sms_app, Channel::Sms, RECIPIENTS).await);

    let push_rounds: [(EventKind, &[Entry]); 3] = [
        (EventKind::Sent, &[Entry::Sender, Entry::EventsApi]),
        (EventKind::Delivered, &[Entry::EventsApi, Entry::PushWebhook, Entry::Sender]),
        (EventKind::Clicked, &[Entry::PushWebhook, Entry::EventsApi]),
    ];
    let sms_rounds: [(EventKind, &[Entry]); 2] = [
        (EventKind::Sent, &[Entry::Sender, Entry::TwilioCallback, Entry::EventsApi]),
        (EventKind::Delivered, &[Entry::TwilioCallback, Entry::EventsApi]),
    ];
    for round in 0..ROUNDS {
        let push = world.message(&pro, Channel::Push).await;
        let sms = world.message(&sms_app, Channel::Sms).await;
        for (kind, entries) in push_rounds {
            let (accepted, all_report) = race(&world, &pro, &push, &push_subs, kind, entries).await;
            if all_report {
                assert_eq!(accepted, RECIPIENTS, "round {round}: push {kind:?} accepted");
            } else {
                assert!(accepted <= RECIPIENTS, "round {round}: push {kind:?} accepted {accepted}");
            }
        }
        for (kind, entries) in sms_rounds {
            let (accepted, all_report) = race(&world, &sms_app, &sms, &sms_subs, kind, entries).await;
            if all_report {
                assert_eq!(accepted, RECIPIENTS, "round {round}: sms {kind:?} accepted");
            } else {
                assert!(accepted <= RECIPIENTS, "round {round}: sms {kind:?} accepted {accepted}");
            }
        }
        let push_stats = world.stats(&push).await;
        for (kind, _) in push_rounds {
            assert_eq!(push_stats[&kind], RECIPIENTS as u64, "round {round}: push stats {kind:?}");
        }
        let sms_stats = world.stats(&sms).await;
        for (kind, _) in sms_rounds {
            assert_eq!(sms_stats[&kind], RECIPIENTS as u64, "round {round}: sms stats {kind:?}");
        }
    }
}

/// `event_id` is scoped to the app and remembered across requests: the same id again is a
/// duplicate whatever it names, also when it first came with a triple already recorded.
#[tokio::test]
async fn an_event_id_is_remembered_across_requests_whatever_it_names() {
    let (world, app) = World::with_app(Plan::Pro).await;
    let other = world.app(Plan::Pro).await;
    let message = world.message(&app, Channel::Push).await;
    let other_message = world.message(&other, Channel::Push).await;
    let subs = world.subscriptions(&app, Channel::Push, 3).await;
    let other_sub = world.subscription(&other, Channel::Push, "other-tok", None).await;
    let post = |app: &TestApp, events: serde_json::Value| {
        world.call(app.post("/v1/events", &json!({ "events": events })))
    };
    let event = |id: &str, m: &Message, s: &SubscriptionId, kind: &str| json!({"event_id": id, "message_id": m.message_id, "subscription_id": s, "kind": kind});

    let r = post(&app, json!([event("e-1", &message, &subs[0], "delivered")])).await;
    assert_eq!((r.body["accepted"].as_u64(), r.body["duplicates"].as_u64()), (Some(1), Some(0)), "{r:?}");
    // The same id naming another subscription, another kind: a duplicate, nothing stored.
    let r = post(&app, json!([event("e-1", &message, &subs[1], "clicked")])).await;
    assert_eq!((r.body["accepted"].as_u64(), r.body["duplicates"].as_u64()), (Some(0), Some(1)), "{r:?}");
    // Another app's id space is its own.
    let r = post(&other, json!([event("e-1", &other_message, &other_sub, "delivered")])).await;
    assert_eq!(r.body["accepted"].as_u64(), Some(1), "{r:?}");
    // An id first seen on a duplicate triple is remembered too.
    let r = post(&app, json!([event("e-2", &message, &subs[0], "delivered")])).await;
    assert_eq!(r.body["duplicates"].as_u64(), Some(1), "{r:?}");
    let r = post(&app, json!([event("e-2", &message, &subs[2], "delivered")])).await;
    assert_eq!((r.body["accepted"].as_u64(), r.body["duplicates"].as_u64()), (Some(0), Some(1)), "{r:?}");
    // A fresh id on a fresh triple is accepted.
    let r = post(&app, json!([event("e-3", &message, &subs[2], "delivered")])).await;
    assert_eq!(r.body["accepted"].as_u64(), Some(1), "{r:?}");

    let stats = world.stats(&message).await;
    assert_eq!((stats[&EventKind::Delivered], stats[&EventKind::Clicked]), (2, 0));
}

/// Many writers sending the same `event_id` at once, half of them naming another triple:
/// exactly one is accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_of_one_event_id_accept_it_once() {
    let (world, app) = World::with_app(Plan::Pro).await;
    let world = Arc::new(world);
    let app = Arc::new(app);
    let message = world.message(&app, Channel::Push).await;
    // Each round names two fresh subscriptions.
    let subs = world.subscriptions(&app, Channel::Push, 20).await;
    for round in 0..10 {
        let barrier = Arc::new(Barrier::new(WRITERS));
        let tasks = (0..WRITERS).map(|w| {
            let (world, app, barrier) = (world.clone(), app.clone(), barrier.clone());
            let body = json!({"events": [{
                "event_id": format!("race-{round}"),
                "message_id": message.message_id,
                "subscription_id": subs[2 * round + w % 2],
                "kind": if round % 2 == 0 { "delivered" } else { "clicked" },
            }]});
            tokio::spawn(async move {
                barrier.wait().await;
                let r = world.call(app.post("/v1/events", &body)).await;
                assert_eq!(r.status, 200, "{r:?}");
                r.body["accepted"].as_u64().unwrap()
            })
        });
        let accepted: u64 = join_all(tasks).await.into_iter().map(|r| r.unwrap()).sum();
        assert_eq!(accepted, 1, "round {round}");
    }
    let stats = world.stats(&message).await;
    assert_eq!(stats[&EventKind::Delivered] + stats[&EventKind::Clicked], 10);
}

/// Issue 13: a write DynamoDB applied but whose answer was lost (the proxy forwards it, then
/// answers 500) is retried by the SDK, and the retry fails its own condition on the item the
/// first attempt wrote. Before, creating a message then failed (500 to the client, although
/// the message existed) and the event was reported a duplicate with no writer accepting it.
/// Now the writer recognises its own item: created, accepted, counted once; a second writer of
/// the same fields in the same second still gets a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_whose_answer_was_lost_is_still_its_writers() {
    use retarget_shared::Store;
    use retarget_tests::faults::{FaultProxy, FaultRates, Service, test_retry};

    let (world, app) = World::with_app(Plan::Pro).await;
    let upstream = std::env::var("AWS_ENDPOINT_URL_DYNAMODB").expect("set by the services");
    let rates = FaultRates { dynamo_lost_answer: 1.0, ..FaultRates::default() };
    let proxy = FaultProxy::start(Service::DynamoDb, &upstream, rates, 7).await;
    let sdk = retarget_tests::sdk().await;
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(sdk)
            .endpoint_url(&proxy.url)
            .retry_config(test_retry())
            .build(),
    );
    let losing = Store::new(client, world.table.clone(), world.clock.clone());

    // A message created through the losing store exists once and the create succeeded.
    let now = world.clock.now();
    let contents =
        retarget_shared::domain::Contents { title: None, body: "hello".into(), url: None, html: None };
    let mut message = Message::new(app.app.app_id, Channel::Push, contents, now);
    message.retargetable = app.app.retargetable_at(now);
    losing.create_message(&message).await.expect("created although the answer was lost");
    let stored = world.store.get_message(app.app.app_id, message.message_id).await.unwrap();
    assert_eq!(stored.map(|m| m.message_id), Some(message.message_id));

    // Each event's put is applied, its answer lost, its retry fails the condition: accepted.
    let subs = world.subscriptions(&app, Channel::Push, 5).await;
    let interaction = |s: &SubscriptionId, event_id: Option<&str>| Interaction {
        subscription_id: *s,
        kind: EventKind::Delivered,
        external_user_id: None,
        event_id: event_id.map(|id| retarget_shared::domain::EventId::parse(id).unwrap()),
        occurred_at: now,
    };
    let events: Vec<_> = subs[..4].iter().map(|s| interaction(s, None)).collect();
    let outcome = losing.record_interactions(&message.scope(), &events).await.unwrap();
    assert_eq!(outcome.accepted(), 4, "every lost answer was the writer's own write");
    // With an event id: the claim's answer is lost too.
    let with_id = [interaction(&subs[4], Some("lost-1"))];
    let outcome = losing.record_interactions(&message.scope(), &with_id).await.unwrap();
    assert_eq!(outcome.accepted(), 1);
    assert!(proxy.counts.dynamo_lost_answers.load(std::sync::atomic::Ordering::Relaxed) >= 7);

    // Racing writers of the same fields in the same second, half through the losing store:
    // exactly one accepted per triple (equal items alone would let a losing writer take a
    // rival's item for its own).
    let losing = Arc::new(losing);
    let direct = Arc::new(world.store.clone());
    let subs = Arc::new(world.subscriptions(&app, Channel::Push, 6).await);
    for round in 0..4 {
        let round_message = world.message(&app, Channel::Push).await;
        let barrier = Arc::new(Barrier::new(WRITERS));
        let tasks = (0..WRITERS).map(|w| {
            let store = if w % 2 == 0 { losing.clone() } else { direct.clone() };
            let (barrier, scope) = (barrier.clone(), round_message.scope());
            let events: Vec<_> = subs.iter().map(|s| interaction(s, None)).collect();
            tokio::spawn(async move {
                barrier.wait().await;
                store.record_interactions(&scope, &events).await.unwrap().accepted()
            })
        });
        let accepted: usize = join_all(tasks).await.into_iter().map(|r| r.unwrap()).sum();
        assert_eq!(accepted, 6, "round {round}: one writer accepted per triple");
        assert_eq!(world.stats(&round_message).await[&EventKind::Delivered], 6, "round {round}");
    }
    let again = world.store.record_interactions(&message.scope(), &events).await.unwrap();
    assert_eq!(again.accepted(), 0, "replays are duplicates");
    assert_eq!(world.stats(&message).await[&EventKind::Delivered], 5, "counted once each");
}

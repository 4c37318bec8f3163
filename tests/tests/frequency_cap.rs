//! The frequency cap end to end against DynamoDB Local, the SQS emulator and a Twilio stand-in:
//! concurrent sends of different messages to the same people never exceed `max` per window,
//! whatever the interleaving and redeliveries; a retarget counts its capped recipients once;
//! transactional messages neither obey nor count; the window slides on the test clock.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::Duration;
use retarget_shared::domain::{Channel, EventKind, SubscriptionId};
use retarget_shared::keys;
use retarget_shared::services::sender::handle_batch;
use retarget_tests::sending::SmsHarness;
use retarget_tests::twilio;
use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, ResponseTemplate};

struct Harness(SmsHarness);

impl std::ops::Deref for Harness {
    type Target = SmsHarness;
    fn deref(&self) -> &SmsHarness {
        &self.0
    }
}

impl Harness {
    async fn new(max: u32) -> Self {
        Self(
            SmsHarness::new(
                &json!({"frequency_cap": {"max": max, "per_hours": 24, "channels": ["push", "sms"]}}),
            )
            .await,
        )
    }

    async fn people(&self, n: usize) -> Vec<SubscriptionId> {
        let mut subs = Vec::new();
        for i in 0..n {
            subs.push(self.subscribe(&format!("+1555010{i:04}"), Some(&format!("p{i}")), None).await);
        }
        subs
    }

    async fn message(&self, subs: &[SubscriptionId], transactional: bool) {
        self.0.message(subs, "hello", transactional).await;
    }

    async fn sends_per_number(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for to in twilio::recipients(&self.twilio).await {
            *counts.entry(to).or_default() += 1;
        }
        counts
    }
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
    assert_eq!(h.tick().await.dispatched, 1);
    h.send_all_concurrently().await;
    assert!(h.sends_per_number().await.values().all(|n| *n == 4), "nobody got the retarget");
    let view = h.world.call(h.app.get(&format!("/v1/retargets/{retarget}"))).await.body;
    assert_eq!((view["capped"].as_u64(), view["deferred"].as_u64()), (Some(3), Some(0)), "{view}");
    let message = h.world.call(h.app.get(&format!("/v1/messages/{message_id}"))).await.body;
    assert_eq!(message["stats"]["sent"], 0, "nothing recorded for capped recipients: {message}");
    assert_eq!(message["stats"]["failed"], 0, "{message}");
}

/// Twilio fails (503) the send right after its cap slot was taken — what a crash between the
/// slot and the send leaves too: the redelivered job finds the message already counted for the
/// person and sends it in that slot, while another message, meanwhile, is capped. Nobody loses
/// a send to a slot their own failed attempt took, and nobody gets more than `max`.
#[tokio::test]
async fn a_send_failing_after_its_cap_slot_is_retried_into_that_slot() {
    let h = Harness::new(1).await;
    let subs = h.people(1).await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&h.twilio)
        .await;
    let first = h.0.message(&subs, "first", false).await;
    let job = h.queues.bodies(&h.queues.sms).await;
    let event = retarget_tests::sqs_event(&job);
    let response = handle_batch(&h.sender, event.clone(), None).await;
    assert_eq!(response.batch_item_failures.len(), 1, "the job fails: SQS will redeliver it");

    // Meanwhile a second message for the same person: the slot is the first one's.
    h.0.message(&subs, "second", false).await;
    h.send_all_concurrently().await;
    // The first job redelivered: sent, in its own slot.
    let response = handle_batch(&h.sender, event, None).await;
    assert!(response.batch_item_failures.is_empty(), "{:?}", response.batch_item_failures);

    let bodies: Vec<String> = h.texts().await.into_iter().map(|(_, body)| body).collect();
    assert_eq!(bodies, ["first", "first"], "the failed attempt, then its retry; the second message capped");
    let item = h
        .world
        .dynamodb
        .get_item()
        .table_name(&h.world.table)
        .key(keys::PK, AttributeValue::S(keys::cap(h.app.app.app_id, "u:p0")))
        .key(keys::SK, AttributeValue::S(keys::SK_CAP.into()))
        .consistent_read(true)
        .send()
        .await
        .expect("the ledger")
        .item
        .expect("a ledger");
    let counted: Vec<&String> = item["sends"].as_m().expect("sends").keys().collect();
    assert_eq!(counted, [&first], "one slot, the first message's");
}

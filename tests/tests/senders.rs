//! The SMS sender end to end: SQS events in (the event source mapping's shape), Twilio (a
//! wiremock stand-in speaking its API) out, DynamoDB Local for idempotency records, events and
//! unsubscribes. Redeliveries, transient and permanent errors, poison records.

use std::collections::HashMap;
use std::time::Duration;

use retarget_shared::domain::{Channel, EventKind, Message, SendJob, SubscriptionId};
use retarget_shared::services::sender::{SenderDeps, handle_batch};
use retarget_sms_sender::TwilioProvider;
use retarget_tests::{TestApp, World, sqs_event, twilio};
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

struct Harness {
    world: World,
    twilio: MockServer,
    deps: SenderDeps<TwilioProvider>,
    app: TestApp,
}

impl Harness {
    async fn new() -> Self {
        let world = World::new().await;
        let twilio = MockServer::start().await;
        let deps = world.sender(Channel::Sms, twilio::provider(twilio.uri(), Duration::from_secs(2)));
        let app = world.twilio_app("token", "+15550009999").await;
        Self { world, twilio, deps, app }
    }

    /// A harness whose Twilio accepts every message.
    async fn accepting() -> Self {
        let h = Self::new().await;
        h.accept_the_rest().await;
        h
    }

    /// From now on Twilio accepts every message not answered otherwise.
    async fn accept_the_rest(&self) {
        Mock::given(method("POST"))
            .and(path(messages_path()))
            .respond_with(twilio::accepted())
            .mount(&self.twilio)
            .await;
    }

    /// `n` SMS subscriptions, `+15550000000` on.
    async fn recipients(&self, n: usize) -> Vec<SubscriptionId> {
        self.world.subscriptions(&self.app, Channel::Sms, n).await
    }

    fn job(&self, message: &Message, subs: &[SubscriptionId]) -> String {
        serde_json::to_string(&SendJob {
            app_id: self.app.app.app_id,
            message_id: message.message_id,
            channel: Channel::Sms,
            subscription_ids: subs.to_vec(),
        })
        .unwrap()
    }

    /// Provider requests received per `To`.
    async fn requests_per_recipient(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for to in twilio::recipients(&self.twilio).await {
            *counts.entry(to).or_default() += 1;
        }
        counts
    }
}

fn messages_path() -> String {
    twilio::messages_path(twilio::ACCOUNT)
}

#[tokio::test]
async fn every_recipient_gets_one_request_whatever_sqs_redelivers() {
    let h = Harness::accepting().await;
    let subs = h.recipients(12).await;
    let message = h.world.message(&h.app, Channel::Sms).await;
    let event = sqs_event(&[h.job(&message, &subs[..7]), h.job(&message, &subs[7..])]);

    let response = handle_batch(&h.deps, event.clone(), None).await;
    assert!(response.batch_item_failures.is_empty(), "{:?}", response.batch_item_failures);
    // SQS redelivers the whole batch, twice, once concurrently with itself.
    let (a, b) =
        tokio::join!(handle_batch(&h.deps, event.clone(), None), handle_batch(&h.deps, event.clone(), None));
    assert!(a.batch_item_failures.is_empty() && b.batch_item_failures.is_empty());

    let counts = h.requests_per_recipient().await;
    assert_eq!(counts.len(), 12);
    assert!(counts.values().all(|c| *c == 1), "{counts:?}");
    let stats = h.world.store.message_stats(&message.scope()).await.unwrap();
    assert_eq!(stats[&EventKind::Sent], 12);

    // The callback Twilio will use is this app's webhook URL with the message and subscription.
    let request = &h.twilio.received_requests().await.unwrap()[0];
    let form = twilio::form(request);
    let callback = &form["StatusCallback"];
    assert!(
        callback.starts_with(&format!(
            "https://hooks.example.com/v1/webhooks/twilio/{}?message_id={}&subscription_id=",
            h.app.app.app_id, message.message_id
        )),
        "{callback}"
    );
}

#[tokio::test]
async fn transient_errors_are_retried_through_sqs_and_still_send_once() {
    let h = Harness::new().await;
    let subs = h.recipients(4).await;
    // The first attempt for +15550000002 meets a 500, the next a 429; then Twilio accepts.
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .and(body_string_contains("To=%2B15550000002"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .mount(&h.twilio)
        .await;
    Mock::given(method("POST"))
        .and(path(messages_path()))
        .and(body_string_contains("To=%2B15550000002"))
        .respond_with(ResponseTemplate::new(429).insert_header("Retry-After", "1"))
        .up_to_n_times(1)
        .mount(&h.twilio)
        .await;
    h.accept_the_rest().await;
    let message = h.world.message(&h.app, Channel::Sms).await;
    let event = sqs_event(&[h.job(&message, &subs)]);

    let first = handle_batch(&h.deps, event.clone(), None).await;
    assert_eq!(first.batch_item_failures.len(), 1, "the job goes back to SQS");
    let second = handle_batch(&h.deps, event.clone(), None).await;
    assert_eq!(second.batch_item_failures.len(), 1);
    let third = handle_batch(&h.deps, event.clone(), None).await;
    assert!(third.batch_item_failures.is_empty());

    let counts = h.requests_per_recipient().await;
    assert_eq!(counts["+15550000002"], 3, "two failures, one success");
    for other in ["+15550000000", "+15550000001", "+15550000003"] {
        assert_eq!(counts[other], 1, "{other} was sent again on redelivery");
    }
    assert_eq!(h.world.store.message_stats(&message.scope()).await.unwrap()[&EventKind::Sent], 4);
}

#[tokio::test]
async fn permanent_errors_record_failed_and_unsubscribe_stopped_numbers() {
    let h = Harness::new().await;
    let subs = h.recipients(3).await;
    Mock::given(method("POST")).and(path(messages_path())).and(body_string_contains("To=%2B15550000001"))
        .respond_with(ResponseTemplate::new(400).set_body_json(serde_json::json!({"code": 21610, "message": "Attempt to send to unsubscribed recipient", "status": 400})))
        .mount(&h.twilio).await;
    h.accept_the_rest().await;
    let message = h.world.message(&h.app, Channel::Sms).await;
    let event = sqs_event(&[h.job(&message, &subs)]);

    let response = handle_batch(&h.deps, event.clone(), None).await;
    assert!(response.batch_item_failures.is_empty(), "a permanent error is not retried");
    let stats = h.world.store.message_stats(&message.scope()).await.unwrap();
    assert_eq!((stats[&EventKind::Sent], stats[&EventKind::Failed]), (2, 1));
    let stopped = h.world.store.get_subscription(h.app.app.app_id, subs[1]).await.unwrap().unwrap();
    assert!(!stopped.is_active(), "STOP unsubscribes");

    // A later job to the same number sends nothing: the subscription is unsubscribed.
    let later = h.world.message(&h.app, Channel::Sms).await;
    handle_batch(&h.deps, sqs_event(&[h.job(&later, &subs)]), None).await;
    assert_eq!(h.requests_per_recipient().await["+15550000001"], 1);
}

#[tokio::test]
async fn a_poison_record_fails_alone() {
    let h = Harness::accepting().await;
    let subs = h.recipients(2).await;
    let message = h.world.message(&h.app, Channel::Sms).await;
    let push_job = serde_json::to_string(&SendJob {
        app_id: h.app.app.app_id,
        message_id: message.message_id,
        channel: Channel::Push,
        subscription_ids: subs.clone(),
    })
    .unwrap();
    let event = sqs_event(&["{not json".into(), h.job(&message, &subs), push_job]);
    let response = handle_batch(&h.deps, event, None).await;
    let mut failed: Vec<_> = response.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect();
    failed.sort();
    assert_eq!(failed, vec!["message-0".to_owned(), "message-2".to_owned()]);
    assert_eq!(h.requests_per_recipient().await.len(), 2, "the good record was sent");
}

/// A provider that panics for one phone number and accepts the rest: a bug in one send.
struct PanicsFor(&'static str);

impl retarget_shared::services::provider::Provider for PanicsFor {
    async fn send(
        &self,
        _app: &retarget_shared::domain::App,
        subscription: &retarget_shared::domain::Subscription,
        _message: &Message,
    ) -> Result<retarget_shared::services::provider::Accepted, retarget_shared::services::provider::SendError>
    {
        let to = subscription.phone_number.as_ref().map(|p| p.as_e164().to_owned()).unwrap_or_default();
        if to == self.0 {
            panic!("injected bug");
        }
        Ok(retarget_shared::services::provider::Accepted { provider_id: None })
    }
}

#[tokio::test]
async fn a_panic_fails_only_its_own_job() {
    let h = Harness::new().await;
    let subs = h.recipients(4).await;
    let message = h.world.message(&h.app, Channel::Sms).await;
    let deps = h.world.sender(Channel::Sms, PanicsFor("+15550000001"));
    let event = sqs_event(&[h.job(&message, &subs[..2]), h.job(&message, &subs[2..])]);
    let response = handle_batch(&deps, event, None).await;
    let failed: Vec<_> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
    assert_eq!(failed, vec!["message-0"], "only the job holding the panicking send is retried");
    let stats = h.world.store.message_stats(&message.scope()).await.unwrap();
    assert_eq!(stats[&EventKind::Sent], 3, "the other three were sent and recorded");
}

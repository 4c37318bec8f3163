//! One SMS app with its sender and scheduler, driven by hand: what the delivery-policy tests
//! (quiet hours, frequency cap, the delivery model) share. The app's jobs go to the test
//! queues; [`SmsHarness::send_queued`] hands them to the real SMS sender (against a Twilio
//! stand-in that accepts everything) as Lambda's event source mapping would, redeliveries
//! included; [`SmsHarness::tick`] runs one scheduler tick on the test clock.

use aws_lambda_events::eventbridge::EventBridgeEvent;
use chrono::{DateTime, Utc};
use futures::future::join_all;
use retarget_shared::Clock;
use retarget_shared::bootstrap::ScheduleFunction;
use retarget_shared::domain::{Channel, SendJob, SubscriptionId};
use retarget_shared::services::dispatch::{DispatchDeps, TickReport};
use retarget_shared::services::sender::{SenderDeps, handle_batch};
use retarget_sms_sender::TwilioProvider;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer};

use crate::{TestApp, TestBus, TestQueues, World, twilio};

pub struct SmsHarness {
    pub world: World,
    pub queues: TestQueues,
    pub deps: DispatchDeps,
    pub twilio: MockServer,
    pub sender: SenderDeps<TwilioProvider>,
    pub app: TestApp,
    /// Keeps the bus's emulator resources alive.
    _bus: TestBus,
}

/// The scheduler's `rate(1 minute)` event, as EventBridge delivers it.
pub fn scheduled_event() -> EventBridgeEvent<Value> {
    serde_json::from_str(include_str!("../fixtures/eventbridge-scheduled-event.json")).expect("fixture")
}

impl SmsHarness {
    /// A Twilio app on its own world whose delivery policy is `policy` (`PUT` as given).
    pub async fn new(policy: &Value) -> Self {
        let world = World::new().await;
        let queues = world.queues().await.clone();
        let bus = TestBus::new().await;
        let deps =
            DispatchDeps { store: world.store.clone(), queues: queues.channels(), bus: bus.bus.clone() };
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
        let r = world.call(app.put("/v1/app/delivery-policy", policy)).await;
        assert_eq!(r.status, 200, "{r:?}");
        Self { world, queues, deps, twilio: server, sender, app, _bus: bus }
    }

    /// An SMS subscription; `timezone` given or not. Its id.
    pub async fn subscribe(
        &self,
        phone: &str,
        external_user_id: Option<&str>,
        timezone: Option<&str>,
    ) -> SubscriptionId {
        let mut body = json!({"channel": "sms", "phone_number": phone});
        if let Some(user) = external_user_id {
            body["external_user_id"] = user.into();
        }
        if let Some(zone) = timezone {
            body["timezone"] = zone.into();
        }
        let r = self.world.call(self.app.post("/v1/subscriptions", &body)).await;
        assert_eq!(r.status, 201, "{r:?}");
        r.body["subscription_id"].as_str().expect("id").parse().expect("an id")
    }

    /// `POST /v1/messages` by SMS to `subs`; the message's id.
    pub async fn message(&self, subs: &[SubscriptionId], body: &str, transactional: bool) -> String {
        let request = json!({"channel": "sms", "contents": {"body": body}, "include_subscription_ids": subs, "transactional": transactional});
        let r = self.world.call(self.app.post("/v1/messages", &request)).await;
        assert_eq!(r.status, 202, "{r:?}");
        r.body["message_id"].as_str().expect("id").to_owned()
    }

    /// One scheduler tick at the test clock's now.
    pub async fn tick(&self) -> TickReport {
        self.deps.handle(scheduled_event(), None).await.expect("tick")
    }

    /// What is on the SMS queue, through the sender `times` times in one batch (SQS
    /// redelivering it). The jobs.
    pub async fn send_queued(&self, times: usize) -> Vec<SendJob> {
        let bodies = self.queues.bodies(&self.queues.sms).await;
        let event = crate::sqs_event(&bodies);
        for _ in 0..times {
            let response = handle_batch(&self.sender, event.clone(), None).await;
            assert!(response.batch_item_failures.is_empty(), "{:?}", response.batch_item_failures);
        }
        bodies.iter().map(|b| serde_json::from_str(b).expect("a job")).collect()
    }

    /// Every job on the SMS queue handed to the sender at once, each in its own invocation, as
    /// concurrent Lambda instances would take them; then all of them once more (redelivery).
    /// How many jobs there were.
    pub async fn send_all_concurrently(&self) -> usize {
        let bodies = self.queues.bodies(&self.queues.sms).await;
        for _ in 0..2 {
            let runs = bodies
                .iter()
                .map(|b| handle_batch(&self.sender, crate::sqs_event(std::slice::from_ref(b)), None));
            for response in join_all(runs).await {
                assert!(response.batch_item_failures.is_empty(), "{:?}", response.batch_item_failures);
            }
        }
        bodies.len()
    }

    /// Every text Twilio was asked to send so far: (To, Body), in arrival order.
    pub async fn texts(&self) -> Vec<(String, String)> {
        let requests = self.twilio.received_requests().await.unwrap_or_default();
        requests
            .iter()
            .map(|r| {
                let form = twilio::form(r);
                (form.get("To").cloned().unwrap_or_default(), form.get("Body").cloned().unwrap_or_default())
            })
            .collect()
    }

    /// Moves the test clock forward to `when`.
    pub fn advance_to(&self, when: DateTime<Utc>) {
        let now = self.world.clock.now();
        assert!(when >= now, "the clock only moves forward");
        self.world.clock.advance(when - now);
    }
}

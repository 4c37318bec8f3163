//! The integration-test harness: [`World::new`] gives each test a fresh, isolated world — its
//! own uniquely named table in DynamoDB Local and a test clock frozen at a known instant — so
//! tests run in parallel and never see each other's data.
//!
//! `make test` starts DynamoDB Local and the SQS/EventBridge emulator and exports their
//! endpoints (`AWS_ENDPOINT_URL_DYNAMODB`, …); running `cargo test` without them fails with a
//! message saying so.

pub mod faults;
pub mod model;

use std::sync::Arc;

use aws_config::SdkConfig;
use chrono::{DateTime, Utc};
use retarget_shared::bootstrap::Infra;
use retarget_shared::config::EnvReader;
use retarget_shared::{Store, TestClock, adapters::aws, adapters::resources};
use tokio::sync::OnceCell;

static SDK: OnceCell<SdkConfig> = OnceCell::const_new();

/// The SDK configuration pointed at the local stand-ins, loaded once per test binary.
pub async fn sdk() -> &'static SdkConfig {
    SDK.get_or_init(|| async {
        assert!(
            std::env::var_os("AWS_ENDPOINT_URL_DYNAMODB").is_some(),
            "integration tests need DynamoDB Local and the emulator: run them with `make test`"
        );
        aws::load().await
    })
    .await
}

/// 2026-11-28T14:00:00Z: where every test clock starts.
pub fn epoch() -> DateTime<Utc> {
    DateTime::from_timestamp(1_795_874_400, 0).expect("valid timestamp")
}

pub struct World {
    pub store: Store,
    pub clock: Arc<TestClock>,
    /// What the functions' dependencies are built from here: the emulators and the test clock.
    pub infra: Infra,
    pub table: String,
    pub dynamodb: aws_sdk_dynamodb::Client,
}

impl World {
    pub async fn new() -> Self {
        let sdk = sdk().await;
        let dynamodb = aws::dynamodb(sdk);
        let table = format!("test-{}", ulid::Ulid::new().to_string().to_lowercase());
        resources::create_table(&dynamodb, &table).await.expect("create test table in DynamoDB Local");
        let clock = Arc::new(TestClock::frozen_at(epoch()));
        let store = Store::new(dynamodb.clone(), table.clone(), clock.clone());
        let infra = Infra { sdk: sdk.clone(), clock: clock.clone() };
        Self { store, clock, infra, table, dynamodb }
    }

    /// The variables the template gives the functions, for this world's table and `queues`.
    pub fn function_env(&self, queues: &TestQueues, public_base_url: &str) -> EnvReader {
        EnvReader::from_pairs([
            ("TABLE_NAME", self.table.as_str()),
            ("PUSH_QUEUE_URL", queues.push.url()),
            ("SMS_QUEUE_URL", queues.sms.url()),
            ("PUBLIC_BASE_URL", public_base_url),
        ])
    }

    /// Every HTTP function, built through its Lambda constructor against this world.
    pub fn handlers(&self, queues: &TestQueues, public_base_url: &str) -> retarget_local::Handlers {
        let mut env = self.function_env(queues, public_base_url);
        let handlers = retarget_local::Handlers::from_env(&mut env, &self.infra).expect("handlers");
        env.finish().expect("complete function environment");
        handlers
    }

    /// Every item in the table (small test tables only).
    pub async fn scan_all(
        &self,
    ) -> Vec<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
        let mut items = Vec::new();
        let mut pages = self.dynamodb.scan().table_name(&self.table).into_paginator().send();
        while let Some(page) = pages.next().await {
            items.extend(page.expect("scan test table").items.unwrap_or_default());
        }
        items
    }
}

/// A fresh push and SMS queue pair (with DLQs) in the emulator, named uniquely for this test.
pub struct TestQueues {
    pub push: Arc<retarget_shared::adapters::queue::Queue>,
    pub sms: Arc<retarget_shared::adapters::queue::Queue>,
    pub sqs: aws_sdk_sqs::Client,
}

impl TestQueues {
    pub async fn new() -> Self {
        let sqs = aws::sqs(sdk().await);
        let prefix = format!("test-{}", ulid::Ulid::new().to_string().to_lowercase());
        let push =
            resources::create_queue(&sqs, &prefix, &resources::PUSH_QUEUE).await.expect("create push queue");
        let sms =
            resources::create_queue(&sqs, &prefix, &resources::SMS_QUEUE).await.expect("create sms queue");
        Self {
            push: Arc::new(retarget_shared::adapters::queue::Queue::new(sqs.clone(), push.queue_url)),
            sms: Arc::new(retarget_shared::adapters::queue::Queue::new(sqs.clone(), sms.queue_url)),
            sqs,
        }
    }

    /// Receives (and deletes) everything on a queue, decoded as send jobs.
    pub async fn drain(
        &self,
        queue: &retarget_shared::adapters::queue::Queue,
    ) -> Vec<retarget_shared::adapters::queue::SendJob> {
        let mut jobs = Vec::new();
        loop {
            let output = self
                .sqs
                .receive_message()
                .queue_url(queue.url())
                .max_number_of_messages(10)
                .wait_time_seconds(0)
                .send()
                .await
                .expect("receive");
            let messages = output.messages.unwrap_or_default();
            if messages.is_empty() {
                return jobs;
            }
            for m in messages {
                jobs.push(serde_json::from_str(m.body().unwrap_or_default()).expect("a send job"));
                self.sqs
                    .delete_message()
                    .queue_url(queue.url())
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .send()
                    .await
                    .expect("delete");
            }
        }
    }
}

/// An app with a working API key.
pub struct TestApp {
    pub app: retarget_shared::adapters::store::App,
    pub api_key: String,
}

impl World {
    pub async fn app(&self, plan: retarget_shared::domain::Plan) -> TestApp {
        let app = self
            .store
            .create_app(retarget_shared::adapters::store::NewApp {
                name: "Test App".into(),
                plan,
                twilio: None,
                fcm: None,
                apns: None,
            })
            .await
            .expect("create app");
        let api_key = self.store.create_api_key(app.app_id).await.expect("create key").reveal().to_owned();
        TestApp { app, api_key }
    }

    /// A pro app with Twilio credentials: account `AC0123`, this auth token and From number.
    pub async fn twilio_app(&self, auth_token: &str, from: &str) -> TestApp {
        let twilio = retarget_shared::adapters::store::TwilioConfig {
            account_sid: "AC0123".into(),
            auth_token: auth_token.into(),
            from: Some(from.into()),
            messaging_service_sid: None,
        };
        let new = retarget_shared::adapters::store::NewApp {
            name: "Twilio App".into(),
            plan: retarget_shared::domain::Plan::Pro,
            twilio: Some(twilio),
            fcm: None,
            apns: None,
        };
        let app = self.store.create_app(new).await.expect("create app");
        let api_key = self.store.create_api_key(app.app_id).await.expect("create key").reveal().to_owned();
        TestApp { app, api_key }
    }
}

/// An API Gateway HTTP API (payload 2.0) request as Lambda receives it: the recorded fixture
/// `fixtures/apigw-http-api-request.json` with this method, path, query, headers and body,
/// parsed by lambda_http itself.
pub struct ApiRequest {
    event: serde_json::Value,
}

impl ApiRequest {
    pub fn new(method: &str, target: &str) -> Self {
        let mut event: serde_json::Value =
            serde_json::from_str(include_str!("../fixtures/apigw-http-api-request.json")).expect("fixture");
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        event["rawPath"] = path.into();
        event["rawQueryString"] = query.into();
        event["requestContext"]["http"]["method"] = method.into();
        event["requestContext"]["http"]["path"] = path.into();
        Self { event }
    }

    pub fn get(target: &str) -> Self {
        Self::new("GET", target)
    }

    pub fn post(target: &str) -> Self {
        Self::new("POST", target)
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.event["headers"][name.to_ascii_lowercase()] = value.into();
        self
    }

    pub fn bearer(self, api_key: &str) -> Self {
        self.header("authorization", &format!("Bearer {api_key}"))
    }

    pub fn json(self, body: &serde_json::Value) -> Self {
        self.header("content-type", "application/json").raw_body(body.to_string().as_bytes())
    }

    pub fn raw_body(mut self, body: &[u8]) -> Self {
        use base64::Engine as _;
        match std::str::from_utf8(body) {
            Ok(text) => {
                self.event["body"] = text.into();
                self.event["isBase64Encoded"] = false.into();
            }
            Err(_) => {
                self.event["body"] = base64::engine::general_purpose::STANDARD.encode(body).into();
                self.event["isBase64Encoded"] = true.into();
            }
        }
        self
    }

    pub fn build(self) -> lambda_http::Request {
        lambda_http::request::from_str(&self.event.to_string()).expect("a valid API Gateway event")
    }
}

/// A handler's response, read back.
#[derive(Debug)]
pub struct ApiResponse {
    pub status: u16,
    pub content_type: String,
    pub body: serde_json::Value,
}

impl From<lambda_http::Response<lambda_http::Body>> for ApiResponse {
    fn from(r: lambda_http::Response<lambda_http::Body>) -> Self {
        let content_type =
            r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let body = serde_json::from_slice(r.body().as_ref()).unwrap_or(serde_json::Value::Null);
        Self { status: r.status().as_u16(), content_type, body }
    }
}

impl ApiResponse {
    /// Asserts an RFC 9457 problem with this status and code.
    pub fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status, self.content_type.as_str(), self.body["code"].as_str()),
            (status, "application/problem+json", Some(code)),
            "{self:?}"
        );
    }
}

impl World {
    /// A stored subscription of `app` (push tokens get platform android).
    pub async fn subscription(
        &self,
        app: &TestApp,
        channel: retarget_shared::domain::Channel,
        address: &str,
        external_user_id: Option<&str>,
    ) -> retarget_shared::domain::SubscriptionId {
        use retarget_shared::adapters::store::Address;
        use retarget_shared::domain::{Channel, ExternalUserId, PhoneNumber, Platform};
        let address = match channel {
            Channel::Push => Address::Push { platform: Platform::Android, token: address.into() },
            Channel::Sms => Address::Sms { phone_number: PhoneNumber::parse(address).expect("E.164") },
        };
        let user = external_user_id.map(|u| ExternalUserId::parse(u).expect("external user id"));
        self.store.upsert_subscription(app.app.app_id, address, user).await.expect("upsert").0.subscription_id
    }

    /// A stored message of `app`, created now (by the test clock), retargetable as the plan says.
    pub async fn message(
        &self,
        app: &TestApp,
        channel: retarget_shared::domain::Channel,
    ) -> retarget_shared::adapters::store::Message {
        use retarget_shared::Clock;
        let now = self.clock.now();
        let contents =
            retarget_shared::adapters::store::Contents { title: None, body: "hello".into(), url: None };
        let mut message =
            retarget_shared::adapters::store::Message::new(app.app.app_id, channel, contents, now);
        message.retargetable = app.app.retargetable_at(now);
        self.store.create_message(&message).await.expect("create message");
        message
    }
}

/// A fresh event bus in the emulator with a rule that copies every `retarget` event to a
/// queue, so tests can read what was put on the bus.
pub struct TestBus {
    pub bus: retarget_shared::adapters::bus::EventBus,
    pub name: String,
    capture_url: String,
    sqs: aws_sdk_sqs::Client,
}

impl TestBus {
    pub async fn new() -> Self {
        let sdk = sdk().await;
        let eventbridge = aws::eventbridge(sdk);
        let sqs = aws::sqs(sdk);
        let name = format!("test-{}", ulid::Ulid::new().to_string().to_lowercase());
        resources::create_event_bus(&eventbridge, &name).await.expect("create bus");
        let capture_url = sqs
            .create_queue()
            .queue_name(format!("{name}-capture"))
            .send()
            .await
            .expect("queue")
            .queue_url
            .unwrap_or_default();
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&capture_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("queue arn")
            .attributes
            .and_then(|mut a| a.remove(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
            .unwrap_or_default();
        eventbridge
            .put_rule()
            .name(format!("{name}-all"))
            .event_bus_name(&name)
            .event_pattern(r#"{"source":["retarget"]}"#)
            .send()
            .await
            .expect("rule");
        eventbridge
            .put_targets()
            .rule(format!("{name}-all"))
            .event_bus_name(&name)
            .targets(
                aws_sdk_eventbridge::types::Target::builder().id("capture").arn(arn).build().expect("target"),
            )
            .send()
            .await
            .expect("targets");
        Self {
            bus: retarget_shared::adapters::bus::EventBus::new(eventbridge, &name),
            name,
            capture_url,
            sqs,
        }
    }

    /// Every event captured so far (EventBridge envelopes).
    pub async fn events(&self) -> Vec<serde_json::Value> {
        let mut events = Vec::new();
        loop {
            let output = self
                .sqs
                .receive_message()
                .queue_url(&self.capture_url)
                .max_number_of_messages(10)
                .send()
                .await
                .expect("receive");
            let messages = output.messages.unwrap_or_default();
            if messages.is_empty() {
                return events;
            }
            for m in messages {
                events.push(serde_json::from_str(m.body().unwrap_or_default()).expect("event json"));
                self.sqs
                    .delete_message()
                    .queue_url(&self.capture_url)
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .send()
                    .await
                    .expect("delete");
            }
        }
    }
}

/// An SQS event as Lambda's event source mapping delivers it (the recorded fixture
/// `fixtures/sqs-event.json`), one record per body.
pub fn sqs_event(bodies: &[String]) -> aws_lambda_events::sqs::SqsEvent {
    let fixture: serde_json::Value =
        serde_json::from_str(include_str!("../fixtures/sqs-event.json")).expect("fixture");
    let template = fixture["Records"][0].clone();
    let records: Vec<serde_json::Value> = bodies
        .iter()
        .enumerate()
        .map(|(i, body)| {
            let mut record = template.clone();
            record["messageId"] = format!("message-{i}").into();
            record["receiptHandle"] = format!("receipt-{i}").into();
            record["body"] = body.clone().into();
            record
        })
        .collect();
    serde_json::from_value(serde_json::json!({ "Records": records })).expect("an SQS event")
}

//! The integration-test harness: [`World::new`] gives each test a fresh, isolated world — its
//! own uniquely named table in DynamoDB Local and a test clock frozen at a known instant — so
//! tests run in parallel and never see each other's data.
//!
//! `make test` starts DynamoDB Local and the SQS/EventBridge emulator and exports their
//! endpoints (`AWS_ENDPOINT_URL_DYNAMODB`, …); running `cargo test` without them fails with a
//! message saying so.

pub mod bad_input;
pub mod crash;
pub mod faults;
pub mod model;
pub mod push;
pub mod sending;
pub mod ses;
pub mod stack;
pub mod template;
pub mod twilio;

use std::future::Future;
use std::sync::Arc;

use aws_config::SdkConfig;
use chrono::{DateTime, Utc};
use retarget_local::streams::StreamSource;
use retarget_shared::adapters::store::Interaction;
use retarget_shared::bootstrap::{FromEnv, Infra, dead_letter_queue_url_var, queue_url_var};
use retarget_shared::config::EnvReader;
use retarget_shared::domain::{
    Address, Channel, EventKind, ExternalUserId, Message, PhoneNumber, Platform, Subscription, SubscriptionId,
};
use retarget_shared::edge::routes::Function;
use retarget_shared::services::sender::SenderDeps;
use retarget_shared::services::stats::StatsDeps;
use retarget_shared::{Clock, Store, TestClock, adapters::aws, adapters::resources};
use tokio::sync::OnceCell;

/// The public URL prefix the functions are given (`PUBLIC_BASE_URL`): what Twilio signs and
/// what status callbacks point at.
pub const PUBLIC_BASE_URL: &str = "https://hooks.example.com";
/// The export function's URL the buffered audience function points large CSVs at.
pub const EXPORT_URL: &str = "https://export.example.com";

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
    queues: OnceCell<TestQueues>,
    handlers: OnceCell<retarget_local::Handlers>,
    /// The stats aggregator and its table's stream, with each shard's position kept across
    /// [`World::settle`]s, as the event source mapping keeps its checkpoints.
    aggregator: OnceCell<Aggregator>,
}

/// The stats aggregator as Lambda runs it on this world's table: the function built through
/// its `FromEnv`, fed by the local stack's own stand-in for the stream's event source mapping.
pub struct Aggregator {
    pub deps: StatsDeps,
    pub stream: StreamSource,
}

impl World {
    pub async fn new() -> Self {
        let sdk = sdk().await;
        let dynamodb = aws::dynamodb(sdk);
        let table = unique_name("test");
        resources::create_table(&dynamodb, &table).await.expect("create test table in DynamoDB Local");
        let clock = Arc::new(TestClock::frozen_at(epoch()));
        let store = Store::new(dynamodb.clone(), table.clone(), clock.clone());
        let infra = Infra::new(sdk.clone(), clock.clone());
        let (queues, handlers, aggregator) = (OnceCell::new(), OnceCell::new(), OnceCell::new());
        Self { store, clock, infra, table, dynamodb, queues, handlers, aggregator }
    }

    /// A fresh world with one app on `plan`.
    pub async fn with_app(plan: retarget_shared::domain::Plan) -> (Self, TestApp) {
        let world = Self::new().await;
        let app = world.app(plan).await;
        (world, app)
    }

    /// This world's push and SMS queues, created on first use: where its messages are sent.
    pub async fn queues(&self) -> &TestQueues {
        self.queues.get_or_init(TestQueues::new).await
    }

    /// The variables the template gives the functions, for this world's table and `queues`.
    pub fn function_env(&self, queues: &TestQueues) -> EnvReader {
        EnvReader::from_pairs([
            ("TABLE_NAME", self.table.as_str()),
            (queue_url_var(Channel::Push), queues.push.url()),
            (queue_url_var(Channel::Sms), queues.sms.url()),
            (queue_url_var(Channel::Email), queues.email.url()),
            (dead_letter_queue_url_var(Channel::Push), queues.push_dlq_url.as_str()),
            (dead_letter_queue_url_var(Channel::Sms), queues.sms_dlq_url.as_str()),
            (dead_letter_queue_url_var(Channel::Email), queues.email_dlq_url.as_str()),
            ("PUBLIC_BASE_URL", PUBLIC_BASE_URL),
            (retarget_audiences::EXPORT_URL_VAR, EXPORT_URL),
        ])
    }

    /// Every HTTP function, built once through its Lambda constructor against this world's
    /// table and [`World::queues`].
    pub async fn handlers(&self) -> &retarget_local::Handlers {
        let queues = self.queues().await;
        self.handlers
            .get_or_init(|| async {
                let mut env = self.function_env(queues);
                let handlers = retarget_local::Handlers::from_env(&mut env, &self.infra).expect("handlers");
                env.finish().expect("complete function environment");
                handlers
            })
            .await
    }

    /// The events function's own store, whose request counters count what it asked of DynamoDB.
    pub async fn events_store(&self) -> &Store {
        &self.handlers().await.events.deps
    }

    /// The messages function's own push queue, whose counters count what it asked of SQS.
    pub async fn messages_push_queue(&self) -> &retarget_shared::adapters::queue::Queue {
        &self.handlers().await.messages.deps.queues.push
    }

    /// The request as API Gateway routes it: the function owning its route answers (404 for
    /// an unknown path, 405 for a known path with another method).
    pub async fn call(&self, request: ApiRequest) -> ApiResponse {
        self.handlers().await.route(request.build()).await.into()
    }

    /// The request handed to `function` itself, whatever its path and method: what the
    /// function answers on its own for requests the router would not have given it.
    pub async fn call_function(&self, function: Function, request: ApiRequest) -> ApiResponse {
        self.handlers().await.handle(function, request.build()).await.into()
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

    /// Every item in the table as text (maps in key order, sets sorted), sorted: equal when the
    /// table holds the same items.
    pub async fn snapshot(&self) -> Vec<String> {
        let items = self.scan_all().await.into_iter().map(aws_sdk_dynamodb::types::AttributeValue::M);
        let mut items: Vec<String> = items.map(|item| canonical(&item)).collect();
        items.sort();
        items
    }

    /// A sender on `channel` through `provider`, on this world's store, without a retry route:
    /// a job with recipients that failed transiently fails whole, for SQS to redeliver (the
    /// sender's fallback). The senders as deployed are built by their `FromEnv`.
    /// The deployment's tracking keyring as the functions hold it (in this world's table).
    pub fn tracking(&self) -> retarget_shared::services::tracking::TrackingKeys {
        retarget_shared::services::tracking::TrackingKeys::new(self.store.clone())
    }

    /// The tracking token the push sender gives `subscription` for `message` of `app`.
    pub async fn track_token(
        &self,
        app: &TestApp,
        message: &retarget_shared::domain::Message,
        subscription: retarget_shared::domain::SubscriptionId,
    ) -> String {
        let tracked = retarget_shared::domain::Tracked {
            app_id: app.app.app_id,
            message_id: message.message_id,
            subscription_id: subscription,
        };
        self.tracking().mint(&tracked).await.expect("the tracking keyring")
    }

    /// The token of a recipient's email unsubscribe link (`/u/{token}`), as the email sender
    /// mints it.
    pub async fn unsubscribe_token(
        &self,
        app: &TestApp,
        message: &retarget_shared::domain::Message,
        subscription: retarget_shared::domain::SubscriptionId,
    ) -> String {
        let tracked = retarget_shared::domain::Tracked {
            app_id: app.app.app_id,
            message_id: message.message_id,
            subscription_id: subscription,
        };
        let purpose = retarget_shared::domain::TokenPurpose::Unsubscribe;
        self.tracking().mint_for(purpose, &tracked).await.expect("the tracking keyring")
    }

    pub fn sender<P>(&self, channel: Channel, provider: P) -> SenderDeps<P> {
        SenderDeps { store: self.store.clone(), provider, channel, retries: None, pace: None }
    }
}

/// An attribute value as text with maps in key order (their Debug form is in hash order).
fn canonical(value: &aws_sdk_dynamodb::types::AttributeValue) -> String {
    use aws_sdk_dynamodb::types::AttributeValue;
    match value {
        AttributeValue::M(map) => {
            let sorted: std::collections::BTreeMap<_, _> =
                map.iter().map(|(k, v)| (k, canonical(v))).collect();
            format!("{sorted:?}")
        }
        AttributeValue::L(list) => format!("{:?}", list.iter().map(canonical).collect::<Vec<_>>()),
        AttributeValue::Ss(set) | AttributeValue::Ns(set) => {
            let mut set = set.clone();
            set.sort();
            format!("{set:?}")
        }
        other => format!("{other:?}"),
    }
}

/// `prefix-` and a fresh ULID, lower case: a name no other test uses.
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}", ulid::Ulid::new().to_string().to_lowercase())
}

/// A fresh push and SMS queue pair (with DLQs) in the emulator, named uniquely for this test.
#[derive(Clone)]
pub struct TestQueues {
    pub push: Arc<retarget_shared::adapters::queue::Queue>,
    pub sms: Arc<retarget_shared::adapters::queue::Queue>,
    pub email: Arc<retarget_shared::adapters::queue::Queue>,
    pub push_dlq_url: String,
    pub sms_dlq_url: String,
    pub email_dlq_url: String,
    pub sqs: aws_sdk_sqs::Client,
}

impl TestQueues {
    /// The send queue of `channel`.
    pub fn of(&self, channel: Channel) -> &retarget_shared::adapters::queue::Queue {
        match channel {
            Channel::Push => &self.push,
            Channel::Sms => &self.sms,
            Channel::Email => &self.email,
        }
    }

    /// The dead-letter queue of `channel`'s send queue.
    pub fn dead_letter_url(&self, channel: Channel) -> &str {
        match channel {
            Channel::Push => &self.push_dlq_url,
            Channel::Sms => &self.sms_dlq_url,
            Channel::Email => &self.email_dlq_url,
        }
    }

    pub async fn new() -> Self {
        let sqs = aws::sqs(sdk().await);
        let prefix = unique_name("test");
        let push =
            resources::create_queue(&sqs, &prefix, &resources::PUSH_QUEUE).await.expect("create push queue");
        let sms =
            resources::create_queue(&sqs, &prefix, &resources::SMS_QUEUE).await.expect("create sms queue");
        let email = resources::create_queue(&sqs, &prefix, &resources::EMAIL_QUEUE)
            .await
            .expect("create email queue");
        Self {
            push: Arc::new(retarget_shared::adapters::queue::Queue::new(sqs.clone(), push.queue_url)),
            sms: Arc::new(retarget_shared::adapters::queue::Queue::new(sqs.clone(), sms.queue_url)),
            email: Arc::new(retarget_shared::adapters::queue::Queue::new(sqs.clone(), email.queue_url)),
            push_dlq_url: push.dlq_url,
            sms_dlq_url: sms.dlq_url,
            email_dlq_url: email.dlq_url,
            sqs,
        }
    }

    /// The three work queues, as dispatch and the messages function hold them.
    pub fn channels(&self) -> retarget_shared::adapters::queue::ChannelQueues {
        retarget_shared::adapters::queue::ChannelQueues {
            push: self.push.clone(),
            sms: self.sms.clone(),
            email: self.email.clone(),
        }
    }

    /// Receives (and deletes) everything on a queue, decoded as send jobs.
    pub async fn drain(
        &self,
        queue: &retarget_shared::adapters::queue::Queue,
    ) -> Vec<retarget_shared::domain::SendJob> {
        let bodies = self.bodies(queue).await;
        bodies.iter().map(|body| serde_json::from_str(body).expect("a send job")).collect()
    }

    /// Receives (and deletes) everything on a queue, as the raw bodies an SQS event carries.
    pub async fn bodies(&self, queue: &retarget_shared::adapters::queue::Queue) -> Vec<String> {
        take_all(&self.sqs, queue.url()).await
    }

    /// Up to ten send jobs on the dead-letter queue at `dlq_url`, left there (received with a
    /// visibility timeout of 0). Bodies that are not send jobs are skipped.
    pub async fn dead_letters(&self, dlq_url: &str) -> Vec<retarget_shared::domain::SendJob> {
        let output = self
            .sqs
            .receive_message()
            .queue_url(dlq_url)
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .send()
            .await
            .expect("receive the DLQ");
        let messages = output.messages.unwrap_or_default();
        messages.iter().filter_map(|m| serde_json::from_str(m.body()?).ok()).collect()
    }

    /// Messages on the queue at `url`: visible, in flight and delayed (a sender's retry job
    /// waits as a delayed message).
    pub async fn queued(&self, url: &str) -> u64 {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        self.count(
            url,
            &[
                A::ApproximateNumberOfMessages,
                A::ApproximateNumberOfMessagesNotVisible,
                A::ApproximateNumberOfMessagesDelayed,
            ],
        )
        .await
    }

    /// Visible messages on the queue at `url`.
    pub async fn visible(&self, url: &str) -> u64 {
        self.count(url, &[aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessages]).await
    }

    /// Delayed messages on the queue at `url` (retry jobs not yet due).
    pub async fn delayed(&self, url: &str) -> u64 {
        self.count(url, &[aws_sdk_sqs::types::QueueAttributeName::ApproximateNumberOfMessagesDelayed]).await
    }

    async fn count(&self, url: &str, names: &[aws_sdk_sqs::types::QueueAttributeName]) -> u64 {
        let output = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .set_attribute_names(Some(names.to_vec()))
            .send()
            .await
            .expect("queue attributes");
        output.attributes.unwrap_or_default().values().filter_map(|v| v.parse::<u64>().ok()).sum()
    }
}

/// Receives and deletes every message on the queue at `url` until it is empty; their bodies.
async fn take_all(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    loop {
        let output = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(0)
            .send()
            .await
            .expect("receive");
        let messages = output.messages.unwrap_or_default();
        if messages.is_empty() {
            return bodies;
        }
        for m in messages {
            bodies.push(m.body().unwrap_or_default().to_owned());
            let handle = m.receipt_handle().unwrap_or_default();
            sqs.delete_message().queue_url(url).receipt_handle(handle).send().await.expect("delete");
        }
    }
}

/// An app with a working API key.
pub struct TestApp {
    pub app: retarget_shared::domain::App,
    pub api_key: String,
    pub push_webhook_secret: String,
    /// The credentials it was created with.
    pub credentials: retarget_shared::domain::Credentials,
}

impl TestApp {
    /// `GET target` with this app's key.
    pub fn get(&self, target: &str) -> ApiRequest {
        ApiRequest::get(target).bearer(&self.api_key)
    }

    /// `POST target` of this JSON body with this app's key.
    pub fn post(&self, target: &str, body: &serde_json::Value) -> ApiRequest {
        ApiRequest::post(target).bearer(&self.api_key).json(body)
    }

    /// `PUT target` of this JSON body with this app's key.
    pub fn put(&self, target: &str, body: &serde_json::Value) -> ApiRequest {
        ApiRequest::new("PUT", target).bearer(&self.api_key).json(body)
    }

    /// `DELETE target` with this app's key.
    pub fn delete(&self, target: &str) -> ApiRequest {
        ApiRequest::new("DELETE", target).bearer(&self.api_key)
    }
}

impl World {
    /// An app that can send on every channel ([`placeholder_credentials`]: nothing here
    /// reaches a provider with them).
    pub async fn app(&self, plan: retarget_shared::domain::Plan) -> TestApp {
        self.create_app("Test App", plan, placeholder_credentials()).await
    }

    /// An app without any provider credentials: it can send on no channel.
    pub async fn bare_app(&self, plan: retarget_shared::domain::Plan) -> TestApp {
        self.create_app("Bare App", plan, retarget_shared::domain::Credentials::default()).await
    }

    /// A pro app with Twilio credentials: account [`twilio::ACCOUNT`], this auth token and From
    /// number (and placeholder push credentials: push messages are accepted, and fail to send).
    pub async fn twilio_app(&self, auth_token: &str, from: &str) -> TestApp {
        let credentials = retarget_shared::domain::Credentials {
            twilio: Some(twilio_config(auth_token, from)),
            ..placeholder_credentials()
        };
        self.create_app("Twilio App", retarget_shared::domain::Plan::Pro, credentials).await
    }

    /// A pro app sending email from `from` through the configuration set `retarget-email`
    /// (and nothing else).
    pub async fn email_app(&self, from: &str) -> TestApp {
        let ses =
            retarget_shared::domain::SesConfig::new(from, Some("retarget-email")).expect("SES settings");
        let credentials = retarget_shared::domain::Credentials { ses: Some(ses), ..Default::default() };
        self.create_app("Email App", retarget_shared::domain::Plan::Pro, credentials).await
    }

    /// A pro app with Twilio credentials (auth token `token`) and nothing for push.
    pub async fn sms_only_app(&self) -> TestApp {
        let credentials = retarget_shared::domain::Credentials {
            twilio: Some(twilio_config("token", "+15550009999")),
            ..Default::default()
        };
        self.create_app("SMS only", retarget_shared::domain::Plan::Pro, credentials).await
    }

    pub async fn create_app(
        &self,
        name: &str,
        plan: retarget_shared::domain::Plan,
        credentials: retarget_shared::domain::Credentials,
    ) -> TestApp {
        let new =
            retarget_shared::domain::NewApp { name: name.into(), plan, credentials: credentials.clone() };
        let created = self.store.create_app(new).await.expect("create app");
        let api_key =
            self.store.create_api_key(created.app.app_id).await.expect("create key").reveal().to_owned();
        TestApp { app: created.app, api_key, push_webhook_secret: created.push_webhook_secret, credentials }
    }
}

/// Twilio credentials: account [`twilio::ACCOUNT`], this auth token and From number.
pub fn twilio_config(auth_token: &str, from: &str) -> retarget_shared::domain::TwilioConfig {
    retarget_shared::domain::TwilioConfig {
        account: retarget_shared::domain::TwilioAccount {
            account_sid: twilio::ACCOUNT.into(),
            from: Some(from.into()),
            messaging_service_sid: None,
        },
        auth_token: auth_token.into(),
    }
}

/// Credentials for every provider, present (the app may create messages on every channel) but
/// unusable: each sender finds them unusable before any provider call (a Twilio account SID
/// that is no SID, keys that are no keys) and records `failed`, as for an app without any.
pub fn placeholder_credentials() -> retarget_shared::domain::Credentials {
    use retarget_shared::domain::{ApnsAccount, ApnsConfig, FcmAccount, FcmConfig};
    let mut twilio = twilio_config("placeholder-auth-token", "+15550009999");
    twilio.account.account_sid = "AC-placeholder".into();
    retarget_shared::domain::Credentials {
        ses: None,
        twilio: Some(twilio),
        fcm: Some(FcmConfig {
            account: FcmAccount {
                project_id: "placeholder".into(),
                client_email: "placeholder@placeholder.iam.gserviceaccount.com".into(),
                token_uri: "http://127.0.0.1:9/token".into(),
            },
            private_key: "placeholder-fcm-private-key".into(),
        }),
        apns: Some(ApnsConfig {
            account: ApnsAccount {
                key_id: "PLACEHOLD1".into(),
                team_id: "PLACEHOLD2".into(),
                topic: "placeholder".into(),
            },
            private_key_pem: "placeholder-apns-private-key".into(),
        }),
    }
}

/// An API Gateway HTTP API (payload 2.0) request as Lambda receives it: the recorded fixture
/// `fixtures/apigw-http-api-request.json` with this method, path, query, headers and body,
/// parsed by lambda_http itself.
#[derive(Clone)]
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
    /// The `Allow` header (405 answers).
    pub allow: Option<String>,
    pub headers: http::HeaderMap,
    /// The body as sent (for answers that are not JSON).
    pub raw: Vec<u8>,
}

impl From<lambda_http::Response<lambda_http::Body>> for ApiResponse {
    fn from(r: lambda_http::Response<lambda_http::Body>) -> Self {
        let content_type =
            r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let body = serde_json::from_slice(r.body().as_ref()).unwrap_or(serde_json::Value::Null);
        let allow = r.headers().get("allow").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let raw = r.body().as_ref().to_vec();
        Self { status: r.status().as_u16(), content_type, body, allow, headers: r.headers().clone(), raw }
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
        channel: Channel,
        address: &str,
        external_user_id: Option<&str>,
    ) -> SubscriptionId {
        let address = match channel {
            Channel::Push => Address::Push { platform: Platform::Android, token: address.into() },
            Channel::Sms => Address::Sms { phone_number: PhoneNumber::parse(address).expect("E.164") },
            Channel::Email => Address::Email {
                email: retarget_shared::domain::EmailAddress::parse(address).expect("an addr-spec"),
            },
        };
        let user = external_user_id.map(|u| ExternalUserId::parse(u).expect("external user id"));
        self.store
            .upsert_subscription(app.app.app_id, address, user, None)
            .await
            .expect("upsert")
            .0
            .subscription_id
    }

    /// `n` stored subscriptions of `app` without external user ids, one at a time: push tokens
    /// `tok-{i}`, phone numbers `+1555000{i:04}`, emails `user-{i}@example.com`.
    pub async fn subscriptions(&self, app: &TestApp, channel: Channel, n: usize) -> Vec<SubscriptionId> {
        let mut subs = Vec::with_capacity(n);
        for i in 0..n {
            let address = match channel {
                Channel::Push => format!("tok-{i}"),
                Channel::Sms => format!("+1555000{i:04}"),
                Channel::Email => format!("user-{i}@example.com"),
            };
            subs.push(self.subscription(app, channel, &address, None).await);
        }
        subs
    }

    /// `n` active subscriptions of `app` written in bulk (many thousands in seconds), the i-th
    /// at `address(i)`, without external user ids.
    pub async fn bulk_subscriptions(
        &self,
        app: &TestApp,
        n: usize,
        address: impl Fn(usize) -> Address,
    ) -> Vec<Subscription> {
        let now = self.clock.now();
        let subs: Vec<Subscription> = (0..n)
            .map(|i| {
                let mut sub = Subscription::new(app.app.app_id, address(i), None, now);
                sub.subscription_id = SubscriptionId::at(now);
                sub
            })
            .collect();
        self.store.bulk_load_subscriptions(&subs).await.expect("bulk load subscriptions");
        subs
    }

    /// The message's stats once every recorded event has been counted ([`World::settle`]).
    pub async fn stats(&self, message: &Message) -> std::collections::HashMap<EventKind, u64> {
        self.settle().await;
        self.store.message_stats(&message.scope()).await.expect("message stats")
    }

    /// This world's stats aggregator and stream, made on first use.
    pub async fn aggregator(&self) -> &Aggregator {
        self.aggregator
            .get_or_init(|| async {
                let mut env = EnvReader::from_pairs([("TABLE_NAME", self.table.as_str())]);
                let deps = StatsDeps::from_env(&mut env, &self.infra).expect("stats aggregator");
                env.finish().expect("complete aggregator environment");
                let stream = StreamSource::of_store(&self.infra.sdk, &deps.store);
                Aggregator { deps, stream }
            })
            .await
    }

    /// Counts everything recorded so far: the table's stream read to its end through the local
    /// stack's event source mapping into the stats aggregator, as Lambda would (a few seconds
    /// later) on AWS. Safe to call from concurrent tasks (they take turns).
    pub async fn settle(&self) {
        let aggregator = self.aggregator().await;
        aggregator.stream.drain(&aggregator.deps).await.expect("the table's stream drains");
    }

    /// Records these interactions of `message` now (by the test clock), a thousand per call.
    pub async fn record(&self, message: &Message, events: &[(SubscriptionId, EventKind, Option<&str>)]) {
        let now = self.clock.now();
        let interactions: Vec<Interaction> = events
            .iter()
            .map(|(sub, kind, user)| Interaction {
                subscription_id: *sub,
                kind: *kind,
                external_user_id: user.map(|u| ExternalUserId::parse(u).expect("external user id")),
                event_id: None,
                occurred_at: now,
            })
            .collect();
        let scope = message.scope();
        let writes = interactions.chunks(1000).map(|chunk| self.store.record_interactions(&scope, chunk));
        for result in futures::future::join_all(writes).await {
            result.expect("record interactions");
        }
    }

    /// Records `kind` of `message` for each of `subs`, without external user ids.
    pub async fn record_each(&self, message: &Message, kind: EventKind, subs: &[SubscriptionId]) {
        let events: Vec<_> = subs.iter().map(|s| (*s, kind, None)).collect();
        self.record(message, &events).await;
    }

    /// A stored message of `app`, created now (by the test clock), retargetable as the plan says.
    pub async fn message(&self, app: &TestApp, channel: Channel) -> Message {
        let now = self.clock.now();
        let contents =
            retarget_shared::domain::Contents { title: None, body: "hello".into(), url: None, html: None };
        let mut message = Message::new(app.app.app_id, channel, contents, now);
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
        let name = unique_name("test");
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
        let bodies = take_all(&self.sqs, &self.capture_url).await;
        bodies.iter().map(|body| serde_json::from_str(body).expect("event json")).collect()
    }
}

/// Runs `future` to completion on a fresh two-thread runtime: for property tests, whose
/// cases are plain functions.
pub fn block_on<T>(future: impl Future<Output = T>) -> T {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
    runtime.expect("a tokio runtime").block_on(future)
}

/// How many cases a property test runs: `PROPTEST_CASES`, or `default`.
pub fn proptest_cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(default)
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

/// `token` (a tracking token) with the ids it names replaced by `to`'s, its key id and MAC kept:
/// what someone holding one token would try to reach another recipient (or app) with.
pub fn token_naming(token: &str, to: &retarget_shared::domain::Tracked) -> String {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut raw = URL_SAFE_NO_PAD.decode(token).expect("a tracking token");
    raw[1..17].copy_from_slice(&to.app_id.to_bytes());
    raw[17..33].copy_from_slice(&to.message_id.to_bytes());
    raw[33..49].copy_from_slice(&to.subscription_id.to_bytes());
    URL_SAFE_NO_PAD.encode(raw)
}

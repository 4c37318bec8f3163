//! The composition root: how every function's dependencies are built from the environment and
//! the AWS SDK configuration, and how each kind of function is served. A function's `main.rs`
//! names its dependencies type and one of [`serve_http`], [`serve_sqs`], [`serve_schedule`],
//! [`serve_stream`];
//! the local stack builds the very same types through the same [`FromEnv`] constructors, so
//! what runs on a laptop cannot drift from what runs on Lambda.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{Instant, SystemTime};

use aws_config::SdkConfig;
use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_http::{Body, Request, Response};
use lambda_runtime::LambdaEvent;

use crate::adapters::aws;
#[cfg(feature = "eventbridge")]
use crate::adapters::bus::EventBus;
#[cfg(feature = "sqs")]
use crate::adapters::queue::{ChannelQueues, Queue};
use crate::adapters::store::Store;
#[cfg(feature = "dispatch")]
use crate::adapters::store::StoreError;
use crate::clock::{SharedClock, SystemClock};
use crate::config::EnvReader;
use crate::domain::Channel;
use crate::edge::streamed::StreamedBody;
#[cfg(feature = "dispatch")]
use crate::services::dispatch::{DispatchDeps, TickReport, tick};
use crate::services::provider::Provider;
#[cfg(feature = "sqs")]
use crate::services::sender::{Pacer, Retries, SenderDeps, handle_batch};
use crate::services::stats::{StatsDeps, TimeWindowEvent, TimeWindowEventResponse};

/// What a process failing to start or serve reports (Lambda's own error type).
pub type Error = lambda_runtime::Error;

/// What every function's dependencies are made from: the SDK configuration (endpoints,
/// region, credentials), the clock, and one client per AWS service, made on first use and
/// shared by every dependency (one connection pool per service, as a process should have).
#[derive(Clone)]
pub struct Infra {
    pub sdk: SdkConfig,
    pub clock: SharedClock,
    dynamodb: OnceLock<aws_sdk_dynamodb::Client>,
    #[cfg(feature = "sqs")]
    sqs: OnceLock<aws_sdk_sqs::Client>,
    #[cfg(feature = "eventbridge")]
    eventbridge: OnceLock<aws_sdk_eventbridge::Client>,
}

impl Infra {
    pub fn new(sdk: SdkConfig, clock: SharedClock) -> Self {
        Self {
            sdk,
            clock,
            dynamodb: OnceLock::new(),
            #[cfg(feature = "sqs")]
            sqs: OnceLock::new(),
            #[cfg(feature = "eventbridge")]
            eventbridge: OnceLock::new(),
        }
    }

    /// The process's SDK configuration and the system clock: what Lambda runs with.
    pub async fn load() -> Self {
        Self::new(aws::load().await, Arc::new(SystemClock))
    }

    /// The table named by `TABLE_NAME`.
    pub fn store(&self, env: &mut EnvReader) -> Store {
        let client = self.dynamodb.get_or_init(|| aws::dynamodb(&self.sdk)).clone();
        Store::new(client, env.required("TABLE_NAME"), self.clock.clone())
    }

    /// The queue whose URL is in the variable `var`.
    #[cfg(feature = "sqs")]
    pub fn queue(&self, env: &mut EnvReader, var: &str) -> Arc<Queue> {
        let client = self.sqs.get_or_init(|| aws::sqs(&self.sdk)).clone();
        Arc::new(Queue::new(client, env.required(var)))
    }

    /// Every channel's work queue (`PUSH_QUEUE_URL`, `SMS_QUEUE_URL`, `EMAIL_QUEUE_URL`).
    #[cfg(feature = "sqs")]
    pub fn channel_queues(&self, env: &mut EnvReader) -> ChannelQueues {
        ChannelQueues {
            push: self.queue(env, queue_url_var(Channel::Push)),
            sms: self.queue(env, queue_url_var(Channel::Sms)),
            email: self.queue(env, queue_url_var(Channel::Email)),
        }
    }

    /// The bus named by `EVENT_BUS_NAME`.
    #[cfg(feature = "eventbridge")]
    pub fn bus(&self, env: &mut EnvReader) -> EventBus {
        let client = self.eventbridge.get_or_init(|| aws::eventbridge(&self.sdk)).clone();
        EventBus::new(client, env.required("EVENT_BUS_NAME"))
    }
}

/// A function's dependencies, read from its environment variables once per cold start. Every
/// variable is read before any is refused: `EnvReader::finish` names all problems at once.
pub trait FromEnv: Sized {
    fn from_env(env: &mut EnvReader, infra: &Infra) -> Result<Self, Error>;
}

/// The table alone, named by `TABLE_NAME`.
impl FromEnv for Store {
    fn from_env(env: &mut EnvReader, infra: &Infra) -> Result<Self, Error> {
        Ok(infra.store(env))
    }
}

/// An API Gateway function: one request in, one response out (errors are responses).
pub trait HttpFunction: FromEnv + Send + Sync {
    fn handle(&self, request: Request) -> impl Future<Output = Response<Body>> + Send;
}

/// An SQS consumer reporting partial batch failures.
/// An HTTP function whose responses are streamed (a Lambda function URL in `RESPONSE_STREAM`
/// mode): bodies larger than a buffered invocation's 6 MB, sent as they are produced.
pub trait StreamingHttpFunction: FromEnv + Send + Sync {
    fn handle(&self, request: Request) -> impl Future<Output = Response<StreamedBody>> + Send;
}

pub trait SqsFunction: FromEnv + Send + Sync {
    fn handle(
        &self,
        event: SqsEvent,
        deadline: Option<Instant>,
    ) -> impl Future<Output = SqsBatchResponse> + Send;
}

/// A DynamoDB Streams consumer (an event source mapping with a tumbling window, so that each
/// invocation names its shard) reporting partial batch failures.
pub trait StreamFunction: FromEnv + Send + Sync {
    fn handle(
        &self,
        event: TimeWindowEvent,
        deadline: Option<Instant>,
    ) -> impl Future<Output = TimeWindowEventResponse> + Send;
}

impl FromEnv for StatsDeps {
    fn from_env(env: &mut EnvReader, infra: &Infra) -> Result<Self, Error> {
        Ok(Self { store: infra.store(env) })
    }
}

impl StreamFunction for StatsDeps {
    fn handle(
        &self,
        event: TimeWindowEvent,
        deadline: Option<Instant>,
    ) -> impl Future<Output = TimeWindowEventResponse> + Send {
        crate::services::stats::handle_window(self, event, deadline)
    }
}

/// A function invoked by an EventBridge schedule.
pub trait ScheduleFunction: FromEnv + Send + Sync {
    type Report: serde::Serialize + Send;
    type Failure: std::error::Error + Send + Sync + 'static;
    fn handle(
        &self,
        event: EventBridgeEvent<serde_json::Value>,
        deadline: Option<Instant>,
    ) -> impl Future<Output = Result<Self::Report, Self::Failure>> + Send;
}

/// A channel provider built from its own variables (`TWILIO_API_BASE`, `FCM_API_BASE`, …):
/// with it, [`SenderDeps`] is a whole [`SqsFunction`].
pub trait ProviderFromEnv: Provider + Sized {
    const CHANNEL: Channel;
    fn from_env(env: &mut EnvReader, infra: &Infra) -> Result<Self, Error>;

    /// The most provider calls per second one process of the sender makes, if limited.
    #[cfg(feature = "sqs")]
    fn pace(_env: &mut EnvReader) -> Option<Pacer> {
        None
    }
}

/// The variable holding the URL of `channel`'s work queue: where its jobs are enqueued, and
/// where its sender puts back, delayed, the recipients to retry.
pub const fn queue_url_var(channel: Channel) -> &'static str {
    match channel {
        Channel::Push => "PUSH_QUEUE_URL",
        Channel::Sms => "SMS_QUEUE_URL",
        Channel::Email => "EMAIL_QUEUE_URL",
    }
}

/// The variable holding the URL of `channel`'s dead-letter queue, where its sender puts the
/// recipients left once the retry budget is spent.
pub const fn dead_letter_queue_url_var(channel: Channel) -> &'static str {
    match channel {
        Channel::Push => "PUSH_DEAD_LETTER_QUEUE_URL",
        Channel::Sms => "SMS_DEAD_LETTER_QUEUE_URL",
        Channel::Email => "EMAIL_DEAD_LETTER_QUEUE_URL",
    }
}

/// The table, the provider, and the sender's queue and dead-letter queue for its retries
/// ([`RetryPolicy::SEND`](crate::retry::RetryPolicy::SEND)).
#[cfg(feature = "sqs")]
impl<P: ProviderFromEnv> FromEnv for SenderDeps<P> {
    fn from_env(env: &mut EnvReader, infra: &Infra) -> Result<Self, Error> {
        let store = infra.store(env);
        let retries = Retries {
            queue: infra.queue(env, queue_url_var(P::CHANNEL)),
            dead_letters: infra.queue(env, dead_letter_queue_url_var(P::CHANNEL)),
            policy: crate::retry::RetryPolicy::SEND,
        };
        let provider = P::from_env(env, infra)?;
        let pace = P::pace(env);
        Ok(Self { store, provider, channel: P::CHANNEL, retries: Some(retries), pace })
    }
}

#[cfg(feature = "sqs")]
impl<P: ProviderFromEnv> SqsFunction for SenderDeps<P> {
    fn handle(
        &self,
        event: SqsEvent,
        deadline: Option<Instant>,
    ) -> impl Future<Output = SqsBatchResponse> + Send {
        handle_batch(self, event, deadline)
    }
}

#[cfg(feature = "dispatch")]
impl FromEnv for DispatchDeps {
    fn from_env(env: &mut EnvReader, infra: &Infra) -> Result<Self, Error> {
        Ok(Self { store: infra.store(env), queues: infra.channel_queues(env), bus: infra.bus(env) })
    }
}

#[cfg(feature = "dispatch")]
impl ScheduleFunction for DispatchDeps {
    type Report = TickReport;
    type Failure = StoreError;

    #[tracing::instrument(skip_all, fields(event_id = event.id.as_deref().unwrap_or("")))]
    async fn handle(
        &self,
        event: EventBridgeEvent<serde_json::Value>,
        deadline: Option<Instant>,
    ) -> Result<TickReport, StoreError> {
        // The event's content does not matter: a tick is a tick.
        tracing::debug!(detail_type = %event.detail_type, "tick");
        tick(self, deadline).await
    }
}

/// Telemetry, the SDK configuration and `D`'s dependencies, or every configuration problem.
async fn start<D: FromEnv>() -> Result<D, Error> {
    crate::telemetry::init();
    let infra = Infra::load().await;
    let mut env = EnvReader::from_process();
    let deps = D::from_env(&mut env, &infra);
    env.finish()?;
    deps
}

/// Runs an HTTP function on Lambda.
pub async fn serve_http<D: HttpFunction>() -> Result<(), Error> {
    let deps: D = start().await?;
    let deps = &deps;
    lambda_http::run(lambda_http::service_fn(move |request| async move {
        Ok::<_, Error>(deps.handle(request).await)
    }))
    .await
}

/// Runs a response-streaming HTTP function on Lambda.
pub async fn serve_streaming_http<D: StreamingHttpFunction>() -> Result<(), Error> {
    let deps: D = start().await?;
    let deps = &deps;
    lambda_http::run_with_streaming_response(lambda_http::service_fn(move |request| async move {
        Ok::<_, Error>(deps.handle(request).await)
    }))
    .await
}

/// Runs an SQS consumer on Lambda.
pub async fn serve_sqs<D: SqsFunction>() -> Result<(), Error> {
    let deps: D = start().await?;
    let deps = &deps;
    lambda_runtime::run(lambda_runtime::service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let deadline = deadline_instant(event.context.deadline(), SystemTime::now(), Instant::now());
        Ok::<_, Error>(deps.handle(event.payload, deadline).await)
    }))
    .await
}

/// Runs a DynamoDB Streams consumer on Lambda.
pub async fn serve_stream<D: StreamFunction>() -> Result<(), Error> {
    let deps: D = start().await?;
    let deps = &deps;
    lambda_runtime::run(lambda_runtime::service_fn(move |event: LambdaEvent<TimeWindowEvent>| async move {
        let deadline = deadline_instant(event.context.deadline(), SystemTime::now(), Instant::now());
        Ok::<_, Error>(deps.handle(event.payload, deadline).await)
    }))
    .await
}

/// Runs a scheduled function on Lambda.
pub async fn serve_schedule<D: ScheduleFunction>() -> Result<(), Error> {
    let deps: D = start().await?;
    let deps = &deps;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: LambdaEvent<EventBridgeEvent<serde_json::Value>>| async move {
            let deadline = deadline_instant(event.context.deadline(), SystemTime::now(), Instant::now());
            Ok::<_, Error>(deps.handle(event.payload, deadline).await?)
        },
    ))
    .await
}

/// The invocation's deadline as an `Instant`: `now_instant` plus what remains of `deadline` at
/// `now_wall` (now, if it has passed). `None` when Lambda gave none (epoch 0, as some local
/// runners do).
pub fn deadline_instant(deadline: SystemTime, now_wall: SystemTime, now_instant: Instant) -> Option<Instant> {
    if deadline <= SystemTime::UNIX_EPOCH {
        return None;
    }
    Some(now_instant + deadline.duration_since(now_wall).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn deadlines_become_instants() {
        let now = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            deadline_instant(wall + Duration::from_secs(42), wall, now),
            Some(now + Duration::from_secs(42))
        );
        assert_eq!(deadline_instant(wall - Duration::from_secs(1), wall, now), Some(now));
        assert_eq!(deadline_instant(SystemTime::UNIX_EPOCH, wall, now), None);
    }
}

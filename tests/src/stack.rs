//! The whole SMS path for fault injection: the real scheduler dispatching into the emulator's
//! queues and the real SMS sender pipeline consuming them against [`FaultyTwilio`], both
//! reaching DynamoDB and SQS through [`FaultProxy`]s, and a provider wrapper that can make the
//! sender "die" at a chosen send. The event source mapping in between is the local stack's own
//! (`retarget_local::workers`), driven step by step by the test.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lambda_events::sqs::SqsEvent;
use aws_sdk_dynamodb::types::AttributeValue;
use retarget_local::streams::StreamSource;
use retarget_local::workers;
use retarget_shared::adapters::queue::{ChannelQueues, Queue};
use retarget_shared::bootstrap::{Error, Infra, ProviderFromEnv};
use retarget_shared::config::EnvReader;
use retarget_shared::domain::{
    App, Channel, EventKind, Message, MessageId, PhoneNumber, Retarget, SendJob, Subscription, SubscriptionId,
};
use retarget_shared::keys::DUE_LEASE_SECONDS;
use retarget_shared::retry::RetryPolicy;
use retarget_shared::services::dispatch::DispatchDeps;
use retarget_shared::services::provider::{Accepted, Provider, SendError};
use retarget_shared::services::sender::{Retries, SenderDeps};
use retarget_shared::services::stats::StatsDeps;
use retarget_shared::{Clock, Store, adapters::resources, keys};
use retarget_sms_sender::TwilioProvider;
use serde_json::json;
use wiremock::MockServer;

use crate::faults::{FaultProxy, FaultRates, Service};
use crate::twilio::{self, FaultyTwilio, ProviderFaults};
use crate::{TestApp, TestBus, TestQueues, World, sdk};

/// The sender's per-request timeout to Twilio: production's. (A shorter one on a loaded
/// machine times out requests Twilio accepted: the window the last fault tests show.)
pub const PROVIDER_TIMEOUT: Duration = retarget_sms_sender::TWILIO_TIMEOUT;

/// How long a crashed sender may take to settle (see [`Stack::run_until_crash`]) before the
/// test gives up on it.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);

/// The phone number of the stack's `i`th recipient.
pub fn phone(i: usize) -> String {
    format!("+1{:010}", 2_000_000_000 + i)
}

/// What the test waits, on the test clock, before a failed or crashed message is seen again:
/// the queue's visibility timeout, which is also past every lease (sender 60 s, dispatch 6 min).
pub fn redelivery_after() -> chrono::Duration {
    let visibility = i64::from(resources::SMS_QUEUE.visibility_timeout_seconds);
    chrono::Duration::seconds(visibility.max(DUE_LEASE_SECONDS) + 1)
}

// --- a sender that can be made to die -------------------------------------------------------

/// Where the armed crash strikes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum CrashPoint {
    /// Before the provider call: the claim is held, nothing reached the provider.
    BeforeProvider,
    /// After the provider accepted, before the sender records it: the inherent window.
    AfterProviderAccepted,
}

/// Wraps a real provider. Armed with `n` and a point, the n-th send from then on "kills the
/// process" at that point: it and every later provider call never return.
pub struct Crashable<P> {
    inner: P,
    countdown: AtomicU64,
    point: Mutex<CrashPoint>,
    dead: AtomicBool,
    /// Provider calls under way: begun before the death, not answered yet.
    in_flight: AtomicUsize,
    /// Sends answered for good (accepted, or refused permanently) since the last reset, which
    /// the sender goes on to record as done: (message, subscription).
    to_record: Mutex<Vec<(MessageId, SubscriptionId)>>,
    pub sends: AtomicUsize,
    /// What the provider calls returned, as the sender saw them.
    pub outcomes: Mutex<BTreeMap<String, u64>>,
    pub slowest_accepted: Mutex<Duration>,
}

impl<P> Crashable<P> {
    pub fn new(inner: P) -> Self {
        Self {
            inner,
            countdown: AtomicU64::new(u64::MAX),
            point: Mutex::new(CrashPoint::BeforeProvider),
            dead: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            to_record: Mutex::default(),
            sends: AtomicUsize::new(0),
            outcomes: Mutex::default(),
            slowest_accepted: Mutex::default(),
        }
    }

    /// The `nth` send from now (1 = the next) is where the process dies.
    pub fn arm(&self, nth: u64, point: CrashPoint) {
        *self.point.lock().expect("point") = point;
        self.countdown.store(nth.max(1), Ordering::SeqCst);
    }

    /// Disarms, and revives: a new process.
    pub fn reset(&self) {
        self.countdown.store(u64::MAX, Ordering::SeqCst);
        self.to_record.lock().expect("to record").clear();
        self.dead.store(false, Ordering::SeqCst);
    }

    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }

    /// Never returns: the process is gone.
    async fn die(&self) -> Result<Accepted, SendError> {
        self.dead.store(true, Ordering::SeqCst);
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        std::future::pending().await
    }
}

impl<P: Provider> Provider for Crashable<P> {
    type Secret = P::Secret;
    type Credentials = P::Credentials;

    fn load_secret(
        store: &retarget_shared::Store,
        app_id: retarget_shared::domain::AppId,
    ) -> impl std::future::Future<Output = Result<P::Secret, retarget_shared::adapters::store::StoreError>> + Send
    {
        P::load_secret(store, app_id)
    }

    fn credentials(app: &App, secret: &P::Secret) -> P::Credentials {
        P::credentials(app, secret)
    }

    async fn send(
        &self,
        app: &App,
        credentials: &P::Credentials,
        subscription: &Subscription,
        message: &Message,
    ) -> Result<Accepted, SendError> {
        // Counted before the check, so that whoever sees the death also sees every call that
        // got past it.
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        if self.is_dead() {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            return std::future::pending().await;
        }
        // The countdown's previous value: 1 means this is the armed send.
        let strikes =
            self.countdown.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| c.checked_sub(1)) == Ok(1);
        let point = *self.point.lock().expect("point");
        if strikes && point == CrashPoint::BeforeProvider {
            return self.die().await;
        }
        self.sends.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let result = self.inner.send(app, credentials, subscription, message).await;
        let kind = match &result {
            Ok(_) => {
                let mut slowest = self.slowest_accepted.lock().expect("slowest");
                *slowest = (*slowest).max(started.elapsed());
                "accepted".to_owned()
            }
            Err(SendError::Transient { detail, .. }) if detail.contains("timed out") => {
                "timed out".to_owned()
            }
            Err(SendError::Transient { detail, .. }) => {
                format!("transient {}", detail.split(',').next().unwrap_or(""))
            }
            Err(e) => format!("other {e}"),
        };
        *self.outcomes.lock().expect("outcomes").entry(kind).or_default() += 1;
        if strikes && result.is_ok() {
            return self.die().await;
        }
        if strikes {
            // Not accepted: strike at the next one instead.
            self.countdown.store(1, Ordering::SeqCst);
        }
        // A call already at the provider when another send struck finishes and is recorded:
        // the crash is taken to land where no accepted send is left unrecorded (the window
        // where one is, is shown on its own by the fault tests).
        if !matches!(result, Err(SendError::Transient { .. })) {
            let sent = (message.message_id, subscription.subscription_id);
            self.to_record.lock().expect("to record").push(sent);
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        result
    }
}

/// Built as `P` is, so that a sender with a crashable provider is the same [`SqsFunction`]
/// (`retarget_shared::bootstrap`) the event source mapping invokes.
impl<P: ProviderFromEnv> ProviderFromEnv for Crashable<P> {
    const CHANNEL: Channel = P::CHANNEL;

    fn from_env(env: &mut EnvReader, infra: &Infra) -> Result<Self, Error> {
        Ok(Self::new(P::from_env(env, infra)?))
    }
}

// --- the stack ------------------------------------------------------------------------------

pub struct Stack {
    pub world: World,
    /// A pro app with Twilio.
    pub app: TestApp,
    /// The sender's and the scheduler's DynamoDB and SQS go through these.
    pub dynamodb_proxy: FaultProxy,
    pub sqs_proxy: FaultProxy,
    /// The world's queues, reached directly (as the event source mapping reaches them).
    pub queues: TestQueues,
    pub dispatch: DispatchDeps,
    pub sender: SenderDeps<Crashable<TwilioProvider>>,
    /// The stats aggregator, its counter updates through the DynamoDB proxy too, fed by the
    /// local stack's event source mapping of the table's stream (which reaches the stream
    /// directly: it is AWS's side of the mapping).
    pub stats: StatsDeps,
    pub stream: StreamSource,
    pub twilio: Arc<FaultyTwilio>,
    _twilio_server: MockServer,
    pub bus: TestBus,
}

impl Stack {
    pub async fn new(rates: FaultRates, provider: ProviderFaults, seed: u64) -> Self {
        let world = World::new().await;
        let sdk = sdk().await;
        let upstream =
            |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is set by the services"));
        let dynamodb_proxy =
            FaultProxy::start(Service::DynamoDb, &upstream("AWS_ENDPOINT_URL_DYNAMODB"), rates, seed).await;
        let sqs_proxy =
            FaultProxy::start(Service::Sqs, &upstream("AWS_ENDPOINT_URL_SQS"), rates, seed + 1).await;
        // The real SDK retry (standard mode, three attempts), with test-sized backoffs.
        let retry = aws_sdk_dynamodb::config::retry::RetryConfig::standard()
            .with_initial_backoff(Duration::from_millis(20))
            .with_max_backoff(Duration::from_millis(400));
        let dynamodb = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(sdk)
                .endpoint_url(&dynamodb_proxy.url)
                .retry_config(retry.clone())
                .build(),
        );
        let faulty_sqs = aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(sdk).endpoint_url(&sqs_proxy.url).retry_config(retry).build(),
        );
        let store = Store::new(dynamodb, world.table.clone(), world.clock.clone());

        let queues = world.queues().await.clone();
        let bus = TestBus::new().await;
        let dispatch = DispatchDeps {
            store: store.clone(),
            queues: ChannelQueues {
                push: Arc::new(Queue::new(faulty_sqs.clone(), queues.push.url())),
                sms: Arc::new(Queue::new(faulty_sqs.clone(), queues.sms.url())),
                email: Arc::new(Queue::new(faulty_sqs.clone(), queues.email.url())),
            },
            bus: bus.bus.clone(),
        };

        let twilio = FaultyTwilio::new(provider, seed + 2);
        let twilio_server = twilio.mount().await;
        let provider = Crashable::new(twilio::provider(&store, twilio_server.uri(), PROVIDER_TIMEOUT));
        // Retries as deployed: the recipients that failed transiently go back onto the queue as
        // a delayed job (through the faulty SQS too, so a lost or failed enqueue takes the
        // fallback: the whole job fails and comes back after the visibility timeout, which
        // these tests play step by step).
        let retries = Retries {
            queue: Arc::new(Queue::new(faulty_sqs.clone(), queues.sms.url())),
            dead_letters: Arc::new(Queue::new(faulty_sqs.clone(), queues.sms_dlq_url.clone())),
            policy: RetryPolicy::SEND,
        };
        let sender = SenderDeps {
            store: store.clone(),
            provider,
            channel: Channel::Sms,
            retries: Some(retries),
            pace: None,
        };
        let stats = StatsDeps { store };
        let stream = StreamSource::new(sdk, &world.table);
        let app = world.twilio_app("token", "+15550009999").await;
        Self {
            world,
            app,
            dynamodb_proxy,
            sqs_proxy,
            queues,
            dispatch,
            sender,
            stats,
            stream,
            twilio,
            _twilio_server: twilio_server,
            bus,
        }
    }

    /// The SMS queue the sender consumes.
    pub fn queue_url(&self) -> &str {
        self.queues.sms.url()
    }

    /// An SMS source message sent to `n` subscriptions (seeded directly, not through the
    /// proxies), and a retarget of everyone it was sent to, due now. Its id.
    pub async fn retarget_of(&self, n: usize) -> String {
        let source = self.world.message(&self.app, Channel::Sms).await;
        let subs = self
            .world
            .bulk_subscriptions(&self.app, n, |i| retarget_shared::domain::Address::Sms {
                phone_number: PhoneNumber::parse(&phone(i)).expect("E.164"),
            })
            .await;
        let ids: Vec<SubscriptionId> = subs.iter().map(|s| s.subscription_id).collect();
        self.world.record_each(&source, EventKind::Sent, &ids).await;
        let body = json!({"source_message_id": source.message_id, "action": "sent", "contents": {"body": "Last chance"}});
        let created = self.world.call(self.app.post("/v1/retargets", &body)).await;
        assert_eq!(created.status, 201, "{created:?}");
        created.body["retarget_id"].as_str().expect("retarget id").to_owned()
    }

    pub async fn retarget(&self, id: &str) -> Retarget {
        self.world
            .store
            .get_retarget(self.app.app.app_id, id.parse().expect("id"))
            .await
            .expect("get retarget")
            .expect("retarget exists")
    }

    /// The scheduler's event for a tick now (by the test clock).
    pub fn tick_event(&self) -> aws_lambda_events::eventbridge::EventBridgeEvent<serde_json::Value> {
        workers::scheduled_event(self.world.clock.now())
    }

    /// One receive of up to ten messages, as the event source mapping makes it (not waiting).
    pub async fn receive(&self) -> Vec<aws_sdk_sqs::types::Message> {
        workers::receive(&self.queues.sqs, self.queue_url(), 0).await.expect("receive")
    }

    /// The SQS event the event source mapping invokes the sender with for these messages.
    pub fn event(&self, messages: &[aws_sdk_sqs::types::Message]) -> SqsEvent {
        workers::sqs_event(messages, &workers::queue_arn(self.queue_url())).expect("an SQS event")
    }

    /// The visibility timeout has passed: these come back. A handle SQS no longer takes is of a
    /// message that came back on its own meanwhile (its visibility timeout ran out in a long
    /// round, and it was received again, or handled and deleted): nothing to do for it.
    pub async fn make_visible(&self, receipt_handles: &[String]) {
        for handle in receipt_handles {
            let result = self
                .queues
                .sqs
                .change_message_visibility()
                .queue_url(self.queue_url())
                .receipt_handle(handle)
                .visibility_timeout(0)
                .send()
                .await
                .map_err(aws_sdk_sqs::Error::from);
            match result {
                Ok(_) | Err(aws_sdk_sqs::Error::ReceiptHandleIsInvalid(_)) => {}
                Err(e) => panic!("change visibility: {e:?}"),
            }
        }
    }

    /// The jobs on the SMS dead-letter queue (left there).
    pub async fn dead_letters(&self) -> Vec<SendJob> {
        self.queues.dead_letters(&self.queues.sms_dlq_url).await
    }

    /// Messages on the queue at `url`: visible, in flight or delayed.
    pub async fn queued(&self, url: &str) -> u64 {
        self.queues.queued(url).await
    }

    /// Runs `work` until it finishes or the sender's provider dies. A death lets the process
    /// settle — every provider call already under way answers, and each send that was
    /// answered for good is recorded done in the table; with `claimed`, every recipient of
    /// those messages also holds a send record — and then drops `work` where it stands, as if
    /// the process had gone. `None` when it crashed.
    pub async fn run_until_crash<T>(
        &self,
        work: impl Future<Output = T>,
        claimed: Option<&[aws_sdk_sqs::types::Message]>,
    ) -> Option<T> {
        tokio::pin!(work);
        let provider = &self.sender.provider;
        let settled = async {
            while !provider.is_dead() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let settling = async {
                while provider.in_flight.load(Ordering::SeqCst) > 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                // Nothing is answered any more: the list is complete.
                let mut unrecorded = provider.to_record.lock().expect("to record").clone();
                loop {
                    let mut left = Vec::new();
                    for (message, sub) in unrecorded {
                        if self.send_record(message, sub).await.as_deref() != Some("completed") {
                            left.push((message, sub));
                        }
                    }
                    let unclaimed = match claimed {
                        Some(messages) => self.unclaimed(messages).await,
                        None => 0,
                    };
                    if left.is_empty() && unclaimed == 0 {
                        return;
                    }
                    unrecorded = left;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            };
            if tokio::time::timeout(SETTLE_TIMEOUT, settling).await.is_err() {
                panic!("the crashed sender did not settle within {SETTLE_TIMEOUT:?}");
            }
        };
        tokio::select! {
            out = &mut work => Some(out),
            () = settled => None,
        }
    }

    /// Counts everything recorded so far: the stream read to its end into the aggregator,
    /// whose failed counter updates (the proxy's faults) are delivered again until they hold.
    pub async fn settle(&self) {
        self.stream.drain(&self.stats).await.expect("the table's stream drains");
    }

    /// `message`'s stats once everything recorded so far is counted.
    pub async fn stats(&self, message: &Message) -> HashMap<EventKind, u64> {
        self.settle().await;
        self.world.store.message_stats(&message.scope()).await.expect("message stats")
    }

    /// The state of the sender's send record of (message, subscription), if there is one.
    async fn send_record(&self, message: MessageId, sub: SubscriptionId) -> Option<String> {
        let output = self
            .world
            .dynamodb
            .get_item()
            .table_name(&self.world.table)
            .key(keys::PK, AttributeValue::S(keys::send(message, sub)))
            .key(keys::SK, AttributeValue::S(keys::SK_SEND.into()))
            .consistent_read(true)
            .send()
            .await
            .expect("read a send record");
        output.item?.get("state")?.as_s().ok().cloned()
    }

    /// How many recipients of these send jobs have no send record yet.
    async fn unclaimed(&self, messages: &[aws_sdk_sqs::types::Message]) -> usize {
        let mut unclaimed = 0;
        for m in messages {
            let job: SendJob = serde_json::from_str(m.body().unwrap_or_default()).expect("a send job");
            for sub in job.subscription_ids {
                unclaimed += usize::from(self.send_record(job.message_id, sub).await.is_none());
            }
        }
        unclaimed
    }

    /// Provider requests per recipient of the first `n`, from the stand-in's own count of what
    /// it accepted.
    pub fn tally(&self, n: usize) -> Tally {
        let accepted: HashMap<String, u32> = self.twilio.accepted();
        let missed = (0..n).map(phone).filter(|p| !accepted.contains_key(p)).collect();
        let doubled = accepted.iter().filter(|(_, c)| **c > 1).map(|(p, c)| (p.clone(), *c)).collect();
        let strangers: Vec<_> = accepted.keys().filter(|p| !(0..n).any(|i| phone(i) == **p)).collect();
        assert!(strangers.is_empty(), "sent to numbers outside the audience: {strangers:?}");
        Tally { missed, doubled, accepted_total: accepted.values().map(|c| u64::from(*c)).sum() }
    }
}

/// Provider requests per recipient.
pub struct Tally {
    pub missed: Vec<String>,
    pub doubled: Vec<(String, u32)>,
    pub accepted_total: u64,
}

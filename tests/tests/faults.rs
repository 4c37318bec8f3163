//! Fault injection end to end (issue 8, item 3): a 10,000-recipient retarget dispatched by the
//! real scheduler into real SQS queues (the emulator), consumed by the real SMS sender pipeline
//! against a Twilio stand-in, while DynamoDB throttles and leaves batches unprocessed, SQS
//! fails sends, Twilio answers 429/5xx or hangs, and the scheduler and the sender crash.
//! Afterwards the provider's own count of accepted requests per recipient must be exactly one.
//!
//! The loop plays Lambda's part as `tools/local` does: scheduler ticks, an event source mapping
//! that deletes what the sender did not report as failed; a failed or crashed message comes back
//! after the visibility timeout (the test clock is advanced by it, and the message made visible
//! at once rather than waiting six real minutes).
//!
//! The one window no design without provider idempotency keys can close — the provider has
//! accepted a send and the process dies (or the answer is lost) before the sender records it —
//! is shown on its own in the last two tests rather than hidden in the big one.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lambda_events::sqs::SqsEvent;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use retarget_shared::adapters::queue::Queue;
use retarget_shared::adapters::store::{
    App, DISPATCH_LEASE_SECONDS, Interaction, Message, NewApp, RetargetStatus, Subscription,
    SubscriptionStatus, TwilioConfig,
};
use retarget_shared::bootstrap::ScheduleFunction;
use retarget_shared::domain::{Channel, EventKind, Plan, SubscriptionId};
use retarget_shared::services::dispatch::DispatchDeps;
use retarget_shared::services::provider::{Accepted, Provider, SendError};
use retarget_shared::services::sender::{SenderDeps, handle_batch};
use retarget_shared::{Clock, Store, adapters::resources};
use retarget_sms_sender::TwilioProvider;
use retarget_tests::faults::{FaultProxy, FaultRates, Service};
use retarget_tests::{ApiRequest, ApiResponse, TestApp, TestBus, World, sdk};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const ACCOUNT: &str = "AC0123456789";
/// The sender's per-request timeout to Twilio: production's. (A shorter one on a loaded
/// machine times out requests Twilio accepted: the window the last tests show.)
const PROVIDER_TIMEOUT: Duration = retarget_sms_sender::TWILIO_TIMEOUT;
/// How long a "hung" Twilio request takes to answer: past the timeout.
const HANG: Duration = Duration::from_millis(10_500);
/// What the loop waits, on the test clock, before a failed or crashed message is seen again:
/// the queue's visibility timeout, which is also past every lease (sender 60 s, dispatch 6 min).
fn redelivery_after() -> chrono::Duration {
    let visibility = i64::from(resources::SMS_QUEUE.visibility_timeout_seconds);
    chrono::Duration::seconds(visibility.max(DISPATCH_LEASE_SECONDS) + 1)
}

fn seed() -> u64 {
    std::env::var("FAULTS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20_261_128)
}

fn phone(i: usize) -> String {
    format!("+1{:010}", 2_000_000_000 + i)
}

// --- the Twilio stand-in ------------------------------------------------------------------

/// What the stand-in answers, as fractions of requests.
#[derive(Clone, Copy, Default)]
struct ProviderFaults {
    too_many_requests: f64,
    server_error: f64,
    /// Hangs past the client's timeout, then refuses (503): nothing was sent.
    hang_then_refuse: f64,
}

/// Twilio's Messages API: answers by a seeded RNG and counts, per `To`, the requests it
/// accepted (201) — what a real provider would have delivered.
struct Twilio {
    faults: ProviderFaults,
    rng: Mutex<StdRng>,
    accepted: Mutex<HashMap<String, u32>>,
    /// `To` numbers whose request is accepted only after `HANG` (past the client's timeout).
    slow_accept: Mutex<Vec<String>>,
    answered: Mutex<BTreeMap<&'static str, u64>>,
}

impl Twilio {
    fn new(faults: ProviderFaults, seed: u64) -> Arc<Self> {
        Arc::new(Self {
            faults,
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            accepted: Mutex::default(),
            slow_accept: Mutex::default(),
            answered: Mutex::default(),
        })
    }

    fn accepted(&self) -> HashMap<String, u32> {
        self.accepted.lock().unwrap().clone()
    }

    fn answered(&self) -> BTreeMap<&'static str, u64> {
        self.answered.lock().unwrap().clone()
    }

    async fn mount(self: &Arc<Self>) -> MockServer {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(format!("/2010-04-01/Accounts/{ACCOUNT}/Messages.json")))
            .respond_with(TwilioResponder(self.clone()))
            .mount(&server)
            .await;
        server
    }
}

struct TwilioResponder(Arc<Twilio>);

impl Respond for TwilioResponder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let twilio = &self.0;
        let to = form_urlencoded::parse(&request.body)
            .find(|(k, _)| k == "To")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let roll: f64 = twilio.rng.lock().unwrap().random();
        let f = twilio.faults;
        let (kind, response) = if roll < f.too_many_requests {
            (
                "429",
                ResponseTemplate::new(429)
                    .insert_header("Retry-After", "1")
                    .set_body_json(json!({"code": 20429, "message": "Too Many Requests", "status": 429})),
            )
        } else if roll < f.too_many_requests + f.server_error {
            ("500", ResponseTemplate::new(500).set_body_json(json!({"code": 20500, "status": 500})))
        } else if roll < f.too_many_requests + f.server_error + f.hang_then_refuse {
            ("hang_then_503", ResponseTemplate::new(503).set_delay(HANG))
        } else {
            *twilio.accepted.lock().unwrap().entry(to.clone()).or_default() += 1;
            let body = json!({"sid": format!("SM{}", ulid::Ulid::new()), "status": "queued"});
            if twilio.slow_accept.lock().unwrap().contains(&to) {
                ("201_after_timeout", ResponseTemplate::new(201).set_body_json(body).set_delay(HANG))
            } else {
                ("201", ResponseTemplate::new(201).set_body_json(body))
            }
        };
        *twilio.answered.lock().unwrap().entry(kind).or_default() += 1;
        response
    }
}

// --- a sender that can be made to die -------------------------------------------------------

/// Where the armed crash strikes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum CrashPoint {
    /// Before the provider call: the claim is held, nothing reached the provider.
    BeforeProvider,
    /// After the provider accepted, before the sender records it: the inherent window.
    AfterProviderAccepted,
}

/// Wraps the real Twilio provider. Armed with `n` and a point, the n-th send from then on
/// "kills the process" at that point: it and every later provider call never return.
struct Crashable<P> {
    inner: P,
    countdown: AtomicU64,
    point: Mutex<CrashPoint>,
    dead: AtomicBool,
    sends: AtomicUsize,
    /// What the provider calls returned, as the sender saw them.
    outcomes: Mutex<BTreeMap<String, u64>>,
    slowest_accepted: Mutex<Duration>,
}

impl<P> Crashable<P> {
    fn new(inner: P) -> Self {
        Self {
            inner,
            countdown: AtomicU64::new(u64::MAX),
            point: Mutex::new(CrashPoint::BeforeProvider),
            dead: AtomicBool::new(false),
            sends: AtomicUsize::new(0),
            outcomes: Mutex::default(),
            slowest_accepted: Mutex::default(),
        }
    }

    /// The `nth` send from now (1 = the next) is where the process dies.
    fn arm(&self, nth: u64, point: CrashPoint) {
        *self.point.lock().unwrap() = point;
        self.countdown.store(nth.max(1), Ordering::SeqCst);
    }

    /// Disarms, and revives: a new process.
    fn reset(&self) {
        self.countdown.store(u64::MAX, Ordering::SeqCst);
        self.dead.store(false, Ordering::SeqCst);
    }

    fn is_dead(&self) -> bool {
        self.dead.load(Ordering::SeqCst)
    }
}

impl<P: Provider> Provider for Crashable<P> {
    async fn send(
        &self,
        app: &App,
        subscription: &Subscription,
        message: &Message,
    ) -> Result<Accepted, SendError> {
        if self.is_dead() {
            return std::future::pending().await;
        }
        // The countdown's previous value: 1 means this is the armed send.
        let strikes =
            self.countdown.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |c| c.checked_sub(1)) == Ok(1);
        let point = *self.point.lock().unwrap();
        if strikes && point == CrashPoint::BeforeProvider {
            self.dead.store(true, Ordering::SeqCst);
            return std::future::pending().await;
        }
        self.sends.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let result = self.inner.send(app, subscription, message).await;
        let kind = match &result {
            Ok(_) => {
                let mut slowest = self.slowest_accepted.lock().unwrap();
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
        *self.outcomes.lock().unwrap().entry(kind).or_default() += 1;
        if strikes && result.is_ok() {
            self.dead.store(true, Ordering::SeqCst);
            return std::future::pending().await;
        }
        if strikes {
            // Not accepted: strike at the next one instead.
            self.countdown.store(1, Ordering::SeqCst);
        }
        // A call already at the provider when another send struck finishes and is recorded:
        // the crash is taken to land where no accepted send is left unrecorded (the window
        // where one is, is shown on its own below).
        result
    }
}

/// Runs `work` until it finishes or `provider` dies; a death waits until the store has gone
/// quiet (sends already past the provider finish recording) and then drops `work` where it
/// stands, as if the process had gone. `None` when it crashed.
async fn run_until_crash<T, P>(
    work: impl Future<Output = T>,
    provider: &Crashable<P>,
    store_requests: &AtomicU64,
) -> Option<T> {
    tokio::pin!(work);
    let watch = async {
        while !provider.is_dead() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut seen = store_requests.load(Ordering::SeqCst);
        loop {
            tokio::time::sleep(Duration::from_millis(800)).await;
            let now = store_requests.load(Ordering::SeqCst);
            if now == seen {
                return;
            }
            seen = now;
        }
    };
    tokio::select! {
        out = &mut work => Some(out),
        () = watch => None,
    }
}

// --- the world ------------------------------------------------------------------------------

struct Stack {
    world: World,
    app: TestApp,
    /// The sender's and the scheduler's DynamoDB and SQS go through these.
    dynamodb_proxy: FaultProxy,
    sqs_proxy: FaultProxy,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    dlq_url: String,
    dispatch: DispatchDeps,
    sender: SenderDeps<Crashable<TwilioProvider>>,
    twilio: Arc<Twilio>,
    _twilio_server: MockServer,
    bus: TestBus,
}

impl Stack {
    async fn new(rates: FaultRates, provider: ProviderFaults, seed: u64) -> Self {
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

        let sqs = aws_sdk_sqs::Client::new(sdk);
        let prefix = format!("faults-{}", ulid::Ulid::new().to_string().to_lowercase());
        let urls = resources::create_queue(&sqs, &prefix, &resources::SMS_QUEUE).await.expect("sms queue");
        let push = resources::create_queue(&sqs, &prefix, &resources::PUSH_QUEUE).await.expect("push queue");
        let bus = TestBus::new().await;
        let dispatch = DispatchDeps {
            store: store.clone(),
            push_queue: Arc::new(Queue::new(faulty_sqs.clone(), push.queue_url)),
            sms_queue: Arc::new(Queue::new(faulty_sqs, urls.queue_url.clone())),
            bus: bus.bus.clone(),
        };

        let twilio = Twilio::new(provider, seed + 2);
        let twilio_server = twilio.mount().await;
        let sender = SenderDeps {
            store,
            provider: Crashable::new(TwilioProvider::new(
                twilio_server.uri(),
                "https://hooks.example.com".into(),
                PROVIDER_TIMEOUT,
            )),
            channel: Channel::Sms,
        };
        let config = TwilioConfig {
            account_sid: ACCOUNT.into(),
            auth_token: "token".into(),
            from: Some("+15550009999".into()),
            messaging_service_sid: None,
        };
        let app = world
            .store
            .create_app(NewApp {
                name: "faults".into(),
                plan: Plan::Pro,
                twilio: Some(config),
                fcm: None,
                apns: None,
            })
            .await
            .expect("app");
        let api_key = world.store.create_api_key(app.app_id).await.expect("key").reveal().to_owned();
        Self {
            world,
            app: TestApp { app, api_key },
            dynamodb_proxy,
            sqs_proxy,
            sqs,
            queue_url: urls.queue_url,
            dlq_url: urls.dlq_url,
            dispatch,
            sender,
            twilio,
            _twilio_server: twilio_server,
            bus,
        }
    }

    /// An SMS source message sent to `n` subscriptions (seeded directly, not through the
    /// proxies), and a retarget of everyone it was sent to, due now. Its id.
    async fn retarget_of(&self, n: usize) -> String {
        let store = &self.world.store;
        let source = self.world.message(&self.app, Channel::Sms).await;
        let now = self.world.clock.now();
        let subs: Vec<Subscription> = (0..n)
            .map(|i| Subscription {
                subscription_id: SubscriptionId::at(now),
                app_id: self.app.app.app_id,
                channel: Channel::Sms,
                platform: None,
                token: None,
                phone_number: retarget_shared::domain::PhoneNumber::parse(&phone(i)).ok(),
                external_user_id: None,
                status: SubscriptionStatus::Active,
                created_at: now,
                updated_at: now,
            })
            .collect();
        store.bulk_load_subscriptions(&subs).await.expect("seed subscriptions");
        let events: Vec<Interaction> = subs
            .iter()
            .map(|s| Interaction {
                subscription_id: s.subscription_id,
                kind: EventKind::Sent,
                external_user_id: None,
                event_id: None,
                occurred_at: now,
            })
            .collect();
        let scope = source.scope();
        let writes = events.chunks(1000).map(|chunk| store.record_interactions(&scope, chunk));
        for result in futures::future::join_all(writes).await {
            result.expect("seed interactions");
        }
        let deps = retarget_retargets::Deps { store: store.clone() };
        let body = json!({"source_message_id": source.message_id, "action": "sent", "contents": {"body": "Last chance"}});
        let created: ApiResponse = retarget_retargets::handle(
            &deps,
            ApiRequest::post("/v1/retargets").bearer(&self.app.api_key).json(&body).build(),
        )
        .await
        .into();
        assert_eq!(created.status, 201, "{created:?}");
        created.body["retarget_id"].as_str().expect("retarget id").to_owned()
    }

    async fn retarget(&self, id: &str) -> retarget_shared::adapters::store::Retarget {
        self.world
            .store
            .get_retarget(self.app.app.app_id, id.parse().expect("id"))
            .await
            .expect("get retarget")
            .expect("retarget exists")
    }

    /// One receive of up to ten messages, as the event source mapping makes it.
    async fn receive(&self) -> Vec<aws_sdk_sqs::types::Message> {
        self.sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(0)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .expect("receive")
            .messages
            .unwrap_or_default()
    }

    async fn delete(&self, messages: &[&aws_sdk_sqs::types::Message]) {
        for chunk in messages.chunks(10) {
            let entries: Vec<_> = chunk
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(m.receipt_handle().unwrap_or_default())
                        .build()
                        .expect("entry")
                })
                .collect();
            let output = self
                .sqs
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .expect("delete");
            assert!(output.failed.is_empty(), "{:?}", output.failed);
        }
    }

    /// The visibility timeout has passed: these come back.
    async fn make_visible(&self, receipt_handles: &[String]) {
        for handle in receipt_handles {
            self.sqs
                .change_message_visibility()
                .queue_url(&self.queue_url)
                .receipt_handle(handle)
                .visibility_timeout(0)
                .send()
                .await
                .expect("change visibility");
        }
    }

    /// The jobs on the dead-letter queue (left there).
    async fn dead_letters(&self) -> Vec<retarget_shared::adapters::queue::SendJob> {
        let output = self
            .sqs
            .receive_message()
            .queue_url(&self.dlq_url)
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .send()
            .await
            .expect("receive dlq");
        output
            .messages
            .unwrap_or_default()
            .iter()
            .filter_map(|m| serde_json::from_str(m.body()?).ok())
            .collect()
    }

    async fn queued(&self, url: &str) -> u64 {
        let attributes = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("queue attributes")
            .attributes
            .unwrap_or_default();
        attributes.values().filter_map(|v| v.parse::<u64>().ok()).sum()
    }
}

fn sqs_event(messages: &[aws_sdk_sqs::types::Message]) -> SqsEvent {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "md5OfBody": m.md5_of_body(),
                "attributes": {},
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:faults-sms",
                "awsRegion": "us-east-1",
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).expect("an SQS event")
}

/// How a round's sender batches may crash.
#[derive(Clone, Copy)]
struct SenderCrashes {
    /// Per batch: the sender dies part-way, before a provider call (`CrashPoint`).
    mid_batch: f64,
    /// Per batch: the sender finishes but dies before the event source mapping deletes.
    before_delete: f64,
    /// At most this many crashes of each kind.
    max_each: usize,
    point: CrashPoint,
}

#[derive(Default, Debug)]
struct LoopReport {
    rounds: usize,
    ticks: usize,
    scheduler_crashes: usize,
    sender_batches: usize,
    sender_crashes_mid_batch: usize,
    sender_crashes_before_delete: usize,
    failed_messages_redelivered: usize,
    max_receive_count: u32,
}

/// Scheduler and sender, round after round, until the retarget is dispatched and the queue is
/// empty. Each round: a tick (which may crash) alongside the senders polling the queue; then
/// the test clock moves on by the visibility timeout and the round's failed or crashed messages
/// come back.
async fn run_until_quiet(
    stack: &Stack,
    retarget_id: &str,
    scheduler_crash: f64,
    max_scheduler_crashes: usize,
    crashes: SenderCrashes,
    rng: &mut StdRng,
) -> LoopReport {
    let mut report = LoopReport::default();
    let mut dispatched = false;
    for round in 0..60 {
        report.rounds = round + 1;
        let tick_done = AtomicBool::new(false);
        let crash_tick = !dispatched
            && report.scheduler_crashes < max_scheduler_crashes
            && rng.random::<f64>() < scheduler_crash;
        // Half the crashes strike at a random instant, half just after the n-th SendMessageBatch
        // reached SQS (mid-flush, before or during the checkpoint).
        let crash_after = Duration::from_millis(rng.random_range(5..3000));
        let sqs_requests = &stack.sqs_proxy.counts.requests;
        let crash_at_sqs = rng.random_bool(0.5).then(|| {
            (
                sqs_requests.load(Ordering::SeqCst) + rng.random_range(1..4),
                Duration::from_millis(rng.random_range(0..400)),
            )
        });
        let round_started = Instant::now();
        let tick = async {
            let tick = stack.dispatch.handle(retarget_scheduler_event(stack), None);
            let outcome = match (crash_tick, crash_at_sqs) {
                (false, _) => Some(tick.await),
                // The process dies at whatever await point it has reached.
                (true, None) => tokio::time::timeout(crash_after, tick).await.ok(),
                (true, Some((requests, delay))) => {
                    let strike = async {
                        while sqs_requests.load(Ordering::SeqCst) < requests {
                            tokio::time::sleep(Duration::from_millis(2)).await;
                        }
                        tokio::time::sleep(delay).await;
                    };
                    tokio::select! {
                        out = tick => Some(out),
                        () = strike => None,
                    }
                }
            };
            tick_done.store(true, Ordering::SeqCst);
            eprintln!(
                "round {round}: tick {} after {:?}",
                if outcome.is_some() { "ended" } else { "crashed" },
                round_started.elapsed()
            );
            outcome
        };
        let mut redeliver = Vec::new();
        let sender_seed: u64 = rng.random();
        let senders = async {
            let mut sender_rng = StdRng::seed_from_u64(sender_seed);
            loop {
                let finished = tick_done.load(Ordering::SeqCst);
                let messages = stack.receive().await;
                if messages.is_empty() {
                    if finished {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                for m in &messages {
                    let count = m
                        .attributes()
                        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                        .and_then(|c| c.parse().ok())
                        .unwrap_or(0);
                    report.max_receive_count = report.max_receive_count.max(count);
                }
                report.sender_batches += 1;
                let provider = &stack.sender.provider;
                provider.reset();
                let mid_batch = report.sender_crashes_mid_batch < crashes.max_each
                    && sender_rng.random::<f64>() < crashes.mid_batch;
                if mid_batch {
                    // Early enough to land in most batches (most recipients of a redelivered
                    // batch are already done and never reach the provider).
                    let nth = sender_rng.random_range(1..=100);
                    eprintln!("round {round}: the sender will die at its send #{nth} ({:?})", crashes.point);
                    provider.arm(nth, crashes.point);
                }
                let deadline = Instant::now() + Duration::from_secs(60);
                let work = handle_batch(&stack.sender, sqs_event(&messages), Some(deadline));
                let outcome = run_until_crash(work, provider, &stack.dynamodb_proxy.counts.requests).await;
                let Some(response) = outcome else {
                    eprintln!("round {round}: the sender died mid-batch");
                    report.sender_crashes_mid_batch += 1;
                    redeliver.extend(messages.iter().filter_map(|m| m.receipt_handle().map(str::to_owned)));
                    continue;
                };
                provider.reset();
                if report.sender_crashes_before_delete < crashes.max_each
                    && sender_rng.random::<f64>() < crashes.before_delete
                {
                    report.sender_crashes_before_delete += 1;
                    redeliver.extend(messages.iter().filter_map(|m| m.receipt_handle().map(str::to_owned)));
                    continue;
                }
                let failed: std::collections::HashSet<String> =
                    response.batch_item_failures.into_iter().map(|f| f.item_identifier).collect();
                let (failures, done): (Vec<_>, Vec<_>) =
                    messages.iter().partition(|m| failed.contains(m.message_id().unwrap_or_default()));
                stack.delete(&done).await;
                report.failed_messages_redelivered += failures.len();
                redeliver.extend(failures.iter().filter_map(|m| m.receipt_handle().map(str::to_owned)));
            }
        };
        let (tick_outcome, ()) = tokio::join!(tick, senders);
        eprintln!(
            "round {round}: senders idle after {:?}, {} to redeliver",
            round_started.elapsed(),
            redeliver.len()
        );
        report.ticks += 1;
        match tick_outcome {
            None => report.scheduler_crashes += 1,
            Some(Err(e)) => eprintln!("tick failed: {e}"),
            Some(Ok(_)) => {}
        }
        dispatched = stack.retarget(retarget_id).await.status == RetargetStatus::Dispatched;
        if dispatched && redeliver.is_empty() && stack.queued(&stack.queue_url).await == 0 {
            return report;
        }
        stack.world.clock.advance(redelivery_after());
        stack.make_visible(&redeliver).await;
    }
    panic!("not quiet after 60 rounds: {report:?}");
}

fn retarget_scheduler_event(stack: &Stack) -> aws_lambda_events::eventbridge::EventBridgeEvent<Value> {
    retarget_local::workers::scheduled_event(stack.world.clock.now())
}

/// Provider requests per recipient, from the stand-in's own count of what it accepted.
struct Tally {
    missed: Vec<String>,
    doubled: Vec<(String, u32)>,
    accepted_total: u64,
}

fn tally(twilio: &Twilio, n: usize) -> Tally {
    let accepted = twilio.accepted();
    let missed = (0..n).map(phone).filter(|p| !accepted.contains_key(p)).collect();
    let doubled = accepted.iter().filter(|(_, c)| **c > 1).map(|(p, c)| (p.clone(), *c)).collect();
    let strangers: Vec<_> = accepted.keys().filter(|p| !(0..n).any(|i| phone(i) == **p)).collect();
    assert!(strangers.is_empty(), "sent to numbers outside the audience: {strangers:?}");
    Tally { missed, doubled, accepted_total: accepted.values().map(|c| u64::from(*c)).sum() }
}

/// 10,000 as the issue asks; `FAULTS_RECIPIENTS` overrides it for quick local runs.
fn recipients() -> usize {
    std::env::var("FAULTS_RECIPIENTS").ok().and_then(|s| s.parse().ok()).unwrap_or(10_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_recipients_through_every_fault_each_sent_exactly_once() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("retarget_shared::services::sender=warn,retarget_shared::services::dispatch=warn")
        .with_test_writer()
        .try_init();
    let started = Instant::now();
    let seed = seed();
    let recipients = recipients();
    let rates = FaultRates {
        throttle: 0.02,
        partial_batch: 0.15,
        sqs_error: 0.3,
        sqs_partial: 0.5,
        sqs_lost_response: 0.4,
        sqs_scripted: true,
    };
    let provider = ProviderFaults { too_many_requests: 0.02, server_error: 0.01, hang_then_refuse: 0.003 };
    let stack = Stack::new(rates, provider, seed).await;
    stack.dynamodb_proxy.set_enabled(false);
    let id = stack.retarget_of(recipients).await;
    stack.dynamodb_proxy.set_enabled(true);
    let seeded = started.elapsed();

    let mut rng = StdRng::seed_from_u64(seed);
    let crashes =
        SenderCrashes { mid_batch: 0.6, before_delete: 0.3, max_each: 3, point: CrashPoint::BeforeProvider };
    let report = run_until_quiet(&stack, &id, 1.0, 3, crashes, &mut rng).await;

    let t = tally(&stack.twilio, recipients);
    let retarget = stack.retarget(&id).await;
    let dlq = stack.queued(&stack.dlq_url).await;
    let dead_letters = stack.dead_letters().await;
    let accepted = stack.twilio.accepted();
    let mut dead_unsent = 0;
    for job in &dead_letters {
        for sub in &job.subscription_ids {
            let s = stack.world.store.get_subscription(stack.app.app.app_id, *sub).await.unwrap().unwrap();
            let to = s.phone_number.map(|p| p.as_e164().to_owned()).unwrap_or_default();
            if !accepted.contains_key(&to) {
                dead_unsent += 1;
            }
        }
    }
    let message =
        stack.world.store.get_message(stack.app.app.app_id, retarget.message_id).await.unwrap().unwrap();
    let stats = stack.world.store.message_stats(&message.scope()).await.unwrap();
    let figures = json!({
        "test": "faults_10k",
        "seed": seed,
        "recipients": recipients,
        "missed": t.missed.len(),
        "sent_twice_or_more": t.doubled.len(),
        "provider_accepted": t.accepted_total,
        "provider_answers": stack.twilio.answered(),
        "provider_requests": stack.sender.provider.sends.load(Ordering::Relaxed),
        "provider_outcomes": *stack.sender.provider.outcomes.lock().unwrap(),
        "slowest_accepted_ms": stack.sender.provider.slowest_accepted.lock().unwrap().as_millis() as u64,
        "dlq_jobs": dead_letters.len(),
        "dlq_recipients_never_sent": dead_unsent,
        "dynamodb_faults": stack.dynamodb_proxy.counts.json(),
        "sqs_faults": stack.sqs_proxy.counts.json(),
        "loop": format!("{report:?}"),
        "dlq_messages": dlq,
        "retarget": {"status": retarget.status.as_str(), "audience_size": retarget.audience_size, "enqueued": retarget.enqueued},
        "recorded_sent": stats.get(&EventKind::Sent),
        "seed_seconds": seeded.as_secs_f64(),
        "total_seconds": started.elapsed().as_secs_f64(),
    });
    println!("{figures}");

    assert!(
        t.missed.is_empty(),
        "{} recipients missed, e.g. {:?}",
        t.missed.len(),
        &t.missed[..t.missed.len().min(5)]
    );
    assert!(
        t.doubled.is_empty(),
        "{} recipients sent twice: {:?}",
        t.doubled.len(),
        &t.doubled[..t.doubled.len().min(5)]
    );
    assert_eq!(dlq, 0, "nothing dead-lettered");
    assert_eq!(retarget.status, RetargetStatus::Dispatched);
    assert_eq!(retarget.audience_size, Some(recipients as u64), "the totals count each recipient once");
    if message.retargetable {
        assert_eq!(stats.get(&EventKind::Sent), Some(&(recipients as u64)), "every send recorded once");
    }
    // The faults really happened.
    let c = &stack.dynamodb_proxy.counts;
    assert!(c.throttled.load(Ordering::Relaxed) > 0 && c.unprocessed_items.load(Ordering::Relaxed) > 0);
    assert!(report.sender_crashes_mid_batch > 0 && report.scheduler_crashes > 0, "{report:?}");
    let _ = &stack.bus;
}

/// The proxy does what it says, each fault on its own (and the SDK sees it as AWS would send it).
#[tokio::test]
async fn the_fault_proxy_injects_each_kind_as_aws_would_answer() {
    use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
    let world = World::new().await;
    let sdk = sdk().await;
    let upstream = |name: &str| std::env::var(name).expect("services");
    let only = |rates: FaultRates| rates;
    let no_retry = aws_sdk_dynamodb::config::retry::RetryConfig::standard().with_max_attempts(1);
    let dynamodb_through = |proxy: &FaultProxy| {
        aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(sdk)
                .endpoint_url(&proxy.url)
                .retry_config(no_retry.clone())
                .build(),
        )
    };
    let sqs_through = |proxy: &FaultProxy| {
        aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(sdk)
                .endpoint_url(&proxy.url)
                .retry_config(no_retry.clone())
                .build(),
        )
    };

    let throttling = FaultProxy::start(
        Service::DynamoDb,
        &upstream("AWS_ENDPOINT_URL_DYNAMODB"),
        only(FaultRates { throttle: 1.0, ..FaultRates::default() }),
        1,
    )
    .await;
    let err = dynamodb_through(&throttling)
        .get_item()
        .table_name(&world.table)
        .key("pk", AttributeValue::S("x".into()))
        .key("sk", AttributeValue::S("y".into()))
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(
            aws_sdk_dynamodb::Error::from(err),
            aws_sdk_dynamodb::Error::ProvisionedThroughputExceededException(_)
        ),
        "a throttling error the SDK recognises"
    );

    let partial = FaultProxy::start(
        Service::DynamoDb,
        &upstream("AWS_ENDPOINT_URL_DYNAMODB"),
        only(FaultRates { partial_batch: 1.0, ..FaultRates::default() }),
        2,
    )
    .await;
    let puts: Vec<WriteRequest> = (0..10)
        .map(|i| {
            let item = std::collections::HashMap::from([
                ("pk".to_owned(), AttributeValue::S(format!("p{i}"))),
                ("sk".to_owned(), AttributeValue::S("s".into())),
            ]);
            WriteRequest::builder()
                .put_request(PutRequest::builder().set_item(Some(item)).build().unwrap())
                .build()
        })
        .collect();
    let output =
        dynamodb_through(&partial).batch_write_item().request_items(&world.table, puts).send().await.unwrap();
    let unprocessed = output.unprocessed_items().and_then(|m| m.get(&world.table)).map_or(0, Vec::len);
    assert!((1..10).contains(&unprocessed), "{unprocessed} of 10 left unprocessed");
    assert_eq!(world.scan_all().await.len(), 10 - unprocessed, "exactly the processed ones were written");

    let sqs = aws_sdk_sqs::Client::new(sdk);
    let queue = sqs.create_queue().queue_name(format!("proxy-{}", ulid::Ulid::new())).send().await.unwrap();
    let queue_url = queue.queue_url().unwrap().to_owned();
    let entries = |tag: &str| -> Vec<aws_sdk_sqs::types::SendMessageBatchRequestEntry> {
        (0..4)
            .map(|i| {
                aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(format!("{tag}{i}"))
                    .build()
                    .unwrap()
            })
            .collect()
    };
    let count = || async {
        let mut bodies = Vec::new();
        loop {
            let out = sqs
                .receive_message()
                .queue_url(&queue_url)
                .max_number_of_messages(10)
                .visibility_timeout(600)
                .send()
                .await
                .unwrap();
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                return bodies;
            }
            bodies.extend(messages.into_iter().filter_map(|m| m.body));
        }
    };
    let sqs_upstream = upstream("AWS_ENDPOINT_URL_SQS");
    let sqs_proxy = |rates| FaultProxy::start(Service::Sqs, &sqs_upstream, rates, 3);
    let failing = sqs_proxy(FaultRates { sqs_error: 1.0, ..FaultRates::default() }).await;
    let err = sqs_through(&failing)
        .send_message_batch()
        .queue_url(&queue_url)
        .set_entries(Some(entries("a")))
        .send()
        .await;
    assert!(err.is_err());
    assert!(count().await.is_empty(), "a 500 sent nothing");

    let partly = sqs_proxy(FaultRates { sqs_partial: 1.0, ..FaultRates::default() }).await;
    let output = sqs_through(&partly)
        .send_message_batch()
        .queue_url(&queue_url)
        .set_entries(Some(entries("b")))
        .send()
        .await
        .unwrap();
    assert!(!output.failed.is_empty() && output.failed.iter().all(|f| !f.sender_fault));
    assert_eq!(count().await.len(), output.successful.len(), "only the successful entries are on the queue");

    let lossy = sqs_proxy(FaultRates { sqs_lost_response: 1.0, ..FaultRates::default() }).await;
    let err = sqs_through(&lossy)
        .send_message_batch()
        .queue_url(&queue_url)
        .set_entries(Some(entries("c")))
        .send()
        .await;
    assert!(err.is_err(), "the answer was lost");
    assert_eq!(count().await.len(), 4, "but the messages were stored");
}

/// A small retarget (one job) dispatched with no faults; the received SQS messages.
async fn one_job(stack: &Stack, n: usize) -> Vec<aws_sdk_sqs::types::Message> {
    stack.retarget_of(n).await;
    let report = stack.dispatch.handle(retarget_scheduler_event(stack), None).await.expect("tick");
    assert_eq!(report.dispatched, 1, "{report:?}");
    let messages = stack.receive().await;
    assert_eq!(messages.len(), 1);
    messages
}

fn deadline() -> Option<Instant> {
    Some(Instant::now() + Duration::from_secs(60))
}

/// The inherent window, shown rather than hidden: Twilio accepted recipient #5 and the sender
/// died before recording it. A redelivery inside the claim's lease sends nothing (the claim is
/// held); once the lease has run out — as it must, or a sender that died *before* calling the
/// provider would lose its recipients for good — the recipient is sent again. Twilio's Messages
/// API takes no idempotency key, so nothing on our side can tell "accepted, unrecorded" from
/// "never reached": the design chooses at-least-once here, and this test pins that choice.
#[tokio::test]
async fn a_crash_between_the_providers_acceptance_and_the_record_sends_that_recipient_twice() {
    let stack = Stack::new(FaultRates::default(), ProviderFaults::default(), seed()).await;
    let messages = one_job(&stack, 20).await;
    let provider = &stack.sender.provider;
    provider.arm(5, CrashPoint::AfterProviderAccepted);
    let crashed = run_until_crash(
        handle_batch(&stack.sender, sqs_event(&messages), deadline()),
        provider,
        &stack.dynamodb_proxy.counts.requests,
    )
    .await;
    assert!(crashed.is_none(), "the sender died mid-batch");
    provider.reset();
    let accepted_at_crash = stack.twilio.accepted().len();

    let early = handle_batch(&stack.sender, sqs_event(&messages), deadline()).await;
    assert_eq!(early.batch_item_failures.len(), 1, "held claims make an early redelivery wait");
    assert_eq!(stack.twilio.accepted().len(), accepted_at_crash, "and send nothing");

    stack.world.clock.advance(redelivery_after());
    let late = handle_batch(&stack.sender, sqs_event(&messages), deadline()).await;
    assert!(late.batch_item_failures.is_empty(), "{late:?}");
    let t = tally(&stack.twilio, 20);
    println!(
        "{}",
        json!({"test": "crash_after_provider_accepted", "recipients": 20, "accepted_before_crash": accepted_at_crash,
            "missed": t.missed.len(), "sent_twice": t.doubled, "provider_accepted": t.accepted_total})
    );
    assert!(t.missed.is_empty());
    assert_eq!(t.doubled.len(), 1, "only the recipient caught in the window, and it is: {:?}", t.doubled);
}

/// The same window reached without a crash: Twilio accepts but answers after the sender's
/// timeout. A timeout is a transient error (the request may never have arrived), so the claim
/// is released and the redelivery sends again. The alternative — keeping the claim — would
/// lose every recipient whose request really did not arrive.
#[tokio::test]
async fn a_timeout_on_a_send_the_provider_accepted_sends_it_twice() {
    let stack = Stack::new(FaultRates::default(), ProviderFaults::default(), seed()).await;
    stack.twilio.slow_accept.lock().unwrap().push(phone(3));
    let messages = one_job(&stack, 10).await;
    let first = handle_batch(&stack.sender, sqs_event(&messages), deadline()).await;
    assert_eq!(first.batch_item_failures.len(), 1, "the timed-out send is retried");
    stack.twilio.slow_accept.lock().unwrap().clear();
    stack.world.clock.advance(redelivery_after());
    let second = handle_batch(&stack.sender, sqs_event(&messages), deadline()).await;
    assert!(second.batch_item_failures.is_empty(), "{second:?}");
    let t = tally(&stack.twilio, 10);
    println!(
        "{}",
        json!({"test": "timeout_after_provider_accepted", "recipients": 10, "missed": t.missed.len(),
            "sent_twice": t.doubled, "provider_answers": stack.twilio.answered()})
    );
    assert!(t.missed.is_empty());
    assert_eq!(t.doubled, vec![(phone(3), 2)]);
}

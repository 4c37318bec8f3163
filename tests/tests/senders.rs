//! The SMS sender end to end: SQS events in (the event source mapping's shape), Twilio (a
//! wiremock stand-in speaking its API) out, DynamoDB Local for idempotency records, events and
//! unsubscribes. Redeliveries, transient and permanent errors, poison records; and the retries
//! of the recipients that failed transiently — when, which, and how many times — through the
//! local stack's own SQS poller on real (emulated) queues.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use retarget_local::workers::poll_queue;
use retarget_shared::adapters::queue::Queue;
use retarget_shared::bootstrap::FromEnv;
use retarget_shared::domain::{Channel, EventKind, Message, SendJob, SubscriptionId};
use retarget_shared::retry::RetryPolicy;
use retarget_shared::services::sender::{SenderDeps, handle_batch};
use retarget_sms_sender::TwilioProvider;
use retarget_tests::{TestApp, TestQueues, World, sqs_event, twilio};
use serde_json::json;
use tokio::sync::watch;
use wiremock::matchers::{body_string_contains, method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

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
        let deps =
            world.sender(Channel::Sms, twilio::provider(&world.store, twilio.uri(), Duration::from_secs(2)));
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
            retry: 0,
            released: false,
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
    let stats = h.world.stats(&message).await;
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

/// The fallback (a sender without a retry route, or one whose retry could not be enqueued):
/// the job fails whole and SQS redelivers it; the recipients done are skipped.
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
    assert_eq!(h.world.stats(&message).await[&EventKind::Sent], 4);
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
    let stats = h.world.stats(&message).await;
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
        retry: 0,
        released: false,
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
    type Secret = ();
    type Credentials = ();

    fn load_secret(
        _: &retarget_shared::Store,
        _: retarget_shared::domain::AppId,
    ) -> impl std::future::Future<Output = Result<(), retarget_shared::StoreError>> + Send {
        std::future::ready(Ok(()))
    }

    fn credentials(_: &retarget_shared::domain::App, _: &()) {}

    async fn send(
        &self,
        _app: &retarget_shared::domain::App,
        _credentials: &(),
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
    let stats = h.world.stats(&message).await;
    assert_eq!(stats[&EventKind::Sent], 3, "the other three were sent and recorded");
}

// --- retries: fast, narrow and bounded ------------------------------------------------------

/// What the scripted Twilio answers one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    Accept,
    /// 429 with `Retry-After: 1`.
    RateLimited,
    /// 503 without `Retry-After`.
    Unavailable,
}

/// Twilio answering each `To` from a script (and accepting the rest), noting when each request
/// came and what it was answered.
#[derive(Default)]
struct ScriptedTwilio {
    /// Per `To`: the answers to give first, in order.
    first: Mutex<HashMap<String, VecDeque<Answer>>>,
    /// Per `To`: the answer given every time.
    always: Mutex<HashMap<String, Answer>>,
    log: Mutex<Vec<(String, Instant, Answer)>>,
}

impl ScriptedTwilio {
    fn first(&self, to: &str, answers: impl IntoIterator<Item = Answer>) {
        self.first.lock().unwrap().entry(to.to_owned()).or_default().extend(answers);
    }

    fn always(&self, to: &str, answer: Answer) {
        self.always.lock().unwrap().insert(to.to_owned(), answer);
    }

    fn answer(&self, to: &str) -> Answer {
        if let Some(answer) = self.always.lock().unwrap().get(to) {
            return *answer;
        }
        self.first.lock().unwrap().get_mut(to).and_then(VecDeque::pop_front).unwrap_or(Answer::Accept)
    }

    /// When each request to `to` came, and its answer.
    fn requests(&self, to: &str) -> Vec<(Instant, Answer)> {
        self.log.lock().unwrap().iter().filter(|(t, _, _)| t == to).map(|(_, at, a)| (*at, *a)).collect()
    }

    /// Requests received per `To`.
    fn counts(&self) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for (to, _, _) in self.log.lock().unwrap().iter() {
            *counts.entry(to.clone()).or_default() += 1;
        }
        counts
    }

    /// Requests to `to` that were accepted.
    fn accepted(&self, to: &str) -> usize {
        self.requests(to).iter().filter(|(_, a)| *a == Answer::Accept).count()
    }
}

struct Scripted(Arc<ScriptedTwilio>);

impl Respond for Scripted {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let to = twilio::to(request);
        let answer = self.0.answer(&to);
        self.0.log.lock().unwrap().push((to, Instant::now(), answer));
        match answer {
            Answer::Accept => twilio::accepted(),
            Answer::RateLimited => ResponseTemplate::new(429)
                .insert_header("Retry-After", "1")
                .set_body_json(json!({"code": 20429, "message": "Too Many Requests", "status": 429})),
            Answer::Unavailable => ResponseTemplate::new(503)
                .set_body_json(json!({"code": 20503, "message": "Service Unavailable", "status": 503})),
        }
    }
}

/// The SMS sender as deployed — built by its `FromEnv` from the variables the template gives
/// it (this world's table, SMS queue and dead-letter queue) — against a scripted Twilio, fed
/// by the local stack's own SQS poller.
struct Deployed {
    world: World,
    app: TestApp,
    queues: TestQueues,
    twilio: Arc<ScriptedTwilio>,
    _server: MockServer,
    deps: SenderDeps<TwilioProvider>,
}

impl Deployed {
    async fn new() -> Self {
        let world = World::new().await;
        let queues = world.queues().await.clone();
        let twilio = Arc::new(ScriptedTwilio::default());
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(messages_path()))
            .respond_with(Scripted(twilio.clone()))
            .mount(&server)
            .await;
        let mut env = world.function_env(&queues).with("TWILIO_API_BASE", &server.uri());
        let deps = SenderDeps::<TwilioProvider>::from_env(&mut env, &world.infra).expect("the SMS sender");
        env.finish().expect("the sender's whole environment");
        let app = world.twilio_app("token", "+15550009999").await;
        Self { world, app, queues, twilio, _server: server, deps }
    }

    /// A message to `n` new SMS subscriptions (`+15550000000` on), enqueued as dispatch does.
    async fn enqueue(&self, n: usize) -> (Message, Vec<SubscriptionId>) {
        let subs = self.world.subscriptions(&self.app, Channel::Sms, n).await;
        let message = self.world.message(&self.app, Channel::Sms).await;
        let jobs = SendJob::split(self.app.app.app_id, message.message_id, Channel::Sms, &subs);
        self.queues.sms.send_jobs(&jobs).await.expect("enqueue");
        (message, subs)
    }

    /// Runs the SQS poller on the sender's queue until `done` (asked every 100 ms) or `limit`;
    /// whether `done` came.
    async fn poll_until<F: Future<Output = bool>>(&self, limit: Duration, done: impl Fn() -> F) -> bool {
        let (stop, stopped) = watch::channel(false);
        let polling = poll_queue(&self.queues.sqs, self.queues.sms.url(), &self.deps, stopped);
        let watching = async {
            let started = Instant::now();
            let done = loop {
                if done().await {
                    break true;
                }
                if started.elapsed() > limit {
                    break false;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            let _ = stop.send(true);
            done
        };
        let ((), done) = tokio::join!(polling, watching);
        done
    }

    /// The jobs on the dead-letter queue (left there).
    async fn dead_letters(&self) -> Vec<SendJob> {
        self.queues.dead_letters(&self.queues.sms_dlq_url).await
    }

    /// Messages on the sender's queue, visible, in flight or delayed.
    async fn queued(&self) -> u64 {
        self.queues.queued(self.queues.sms.url()).await
    }
}

fn number(i: usize) -> String {
    format!("+1555000{i:04}")
}

/// Issue 13: one recipient rate-limited (429, `Retry-After: 1`) and one refused (503, no hint)
/// in a job of six. Before, the whole job went back to SQS and came again after the queue's
/// 360 s visibility timeout; now only those two are tried again, within seconds.
#[tokio::test]
async fn a_rate_limited_recipient_is_tried_again_within_seconds_and_only_the_failed_ones_are() {
    let h = Deployed::new().await;
    let (limited, unavailable) = (number(1), number(2));
    h.twilio.first(&limited, [Answer::RateLimited]);
    h.twilio.first(&unavailable, [Answer::Unavailable]);
    let (_, subs) = h.enqueue(6).await;

    // Far below the visibility timeout: a whole-job redelivery cannot make it.
    let limit = Duration::from_secs(60);
    let all_sent = || async { (0..subs.len()).all(|i| h.twilio.accepted(&number(i)) == 1) };
    let done = h.poll_until(limit, all_sent).await;
    assert!(done, "not every recipient was sent within {limit:?}: {:?}", h.twilio.counts());

    let retried_after = |to: &str| {
        let requests = h.twilio.requests(to);
        assert_eq!(requests.len(), 2, "{to}: {requests:?}");
        requests[1].0 - requests[0].0
    };
    let (limited_after, unavailable_after) = (retried_after(&limited), retried_after(&unavailable));
    println!(
        "{}",
        json!({"test": "retry_timing", "rate_limited_retried_after_s": limited_after.as_secs_f64(),
            "unavailable_retried_after_s": unavailable_after.as_secs_f64(), "requests": h.twilio.counts()})
    );
    assert!(limited_after >= Duration::from_secs(1), "before its Retry-After: {limited_after:?}");
    assert!(limited_after <= Duration::from_secs(30), "rate-limited once, retried after {limited_after:?}");
    assert!(unavailable_after >= Duration::from_secs(1), "no backoff: {unavailable_after:?}");
    for i in [0, 3, 4, 5] {
        assert_eq!(h.twilio.requests(&number(i)).len(), 1, "{} was asked again", number(i));
    }
    assert_eq!(h.queued().await, 0, "nothing left on the queue");
    assert!(h.dead_letters().await.is_empty());
}

/// A recipient failing transiently for good: after the budget (here a short test policy of
/// four attempts, waits of a second) what is left — that recipient alone — is on the DLQ as a
/// send job, nothing is left on the queue to send it again, and the others were sent once.
#[tokio::test]
async fn a_recipient_failing_for_good_ends_alone_in_the_dlq_after_the_budget() {
    let mut h = Deployed::new().await;
    let policy = RetryPolicy {
        max_attempts: 4,
        base_delay: Duration::from_millis(250),
        max_delay: Duration::from_secs(1),
    };
    h.deps.retries.as_mut().expect("the deployed sender retries").policy = policy;
    let failing = number(2);
    h.twilio.always(&failing, Answer::Unavailable);
    let (message, subs) = h.enqueue(5).await;

    let dead_lettered = || async { !h.dead_letters().await.is_empty() };
    assert!(h.poll_until(Duration::from_secs(60), dead_lettered).await, "{:?}", h.twilio.counts());

    let dead = h.dead_letters().await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].subscription_ids, vec![subs[2]], "only the recipient left");
    assert_eq!((dead[0].message_id, dead[0].channel), (message.message_id, Channel::Sms));
    assert_eq!(dead[0].retry, policy.max_attempts - 1, "as last tried");
    assert_eq!(h.queued().await, 0, "no retry left to send it again");
    let asked = h.twilio.requests(&failing);
    assert_eq!(asked.len(), policy.max_attempts as usize, "{asked:?}");
    assert_eq!(h.twilio.accepted(&failing), 0);
    for i in [0, 1, 3, 4] {
        assert_eq!(
            (h.twilio.requests(&number(i)).len(), h.twilio.accepted(&number(i))),
            (1, 1),
            "{}",
            number(i)
        );
    }
}

/// When the retry cannot be enqueued, the job falls back to SQS's redelivery of all of it.
#[tokio::test]
async fn a_retry_that_cannot_be_enqueued_leaves_the_whole_job_to_sqs() {
    let mut h = Deployed::new().await;
    let missing = format!("{}-missing", h.queues.sms.url());
    let retries = h.deps.retries.as_mut().expect("the deployed sender retries");
    retries.queue = Arc::new(Queue::new(h.queues.sqs.clone(), missing));
    h.twilio.first(&number(1), [Answer::RateLimited]);
    let subs = h.world.subscriptions(&h.app, Channel::Sms, 3).await;
    let message = h.world.message(&h.app, Channel::Sms).await;
    let jobs = SendJob::split(h.app.app.app_id, message.message_id, Channel::Sms, &subs);
    let event = sqs_event(&[serde_json::to_string(&jobs[0]).unwrap()]);

    let first = handle_batch(&h.deps, event.clone(), None).await;
    assert_eq!(first.batch_item_failures.len(), 1, "reported for SQS to redeliver");
    let again = handle_batch(&h.deps, event, None).await;
    assert!(again.batch_item_failures.is_empty());
    let counts = h.twilio.counts();
    assert_eq!((counts[&number(0)], counts[&number(1)], counts[&number(2)]), (1, 2, 1), "{counts:?}");
}

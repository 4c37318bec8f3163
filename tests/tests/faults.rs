//! Fault injection end to end: a 10,000-recipient retarget dispatched by the real scheduler
//! into real SQS queues (the emulator), consumed by the real SMS sender pipeline against a
//! Twilio stand-in, while DynamoDB throttles, leaves batches unprocessed and loses the answers
//! of writes it applied (so the SDK retries them), SQS fails sends,
//! Twilio answers 429/5xx or hangs, and the scheduler and the sender crash. Afterwards the
//! provider's own count of accepted requests per recipient must be exactly one.
//!
//! The loop plays Lambda's part with `tools/local`'s own event source mapping: scheduler ticks,
//! and each received batch turned into the SQS event, handed to the sender and deleted but for
//! what the sender reported as failed; a failed or crashed message comes back after the
//! visibility timeout (the test clock is advanced by it, and the message made visible at once
//! rather than waiting six real minutes).
//!
//! The one window no design without provider idempotency keys can close — the provider has
//! accepted a send and the process dies (or the answer is lost) before the sender records it —
//! is shown on its own in the last two tests rather than hidden in the big one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{Message, MessageSystemAttributeName};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use retarget_email_sender::EmailProvider;
use retarget_local::workers;
use retarget_push_sender::PushProvider;
use retarget_shared::bootstrap::{FromEnv, HttpFunction, Infra, ScheduleFunction, SqsFunction};
use retarget_shared::config::EnvReader;
use retarget_shared::domain::{
    Address, Channel, EmailAddress, EventKind, Platform, RetargetStatus, Subscription,
};
use retarget_shared::edge::request::AppFunction;
use retarget_shared::services::sender::SenderDeps;
use retarget_tests::faults::{FaultProxy, FaultRates, Router, Service, sdk_through};
use retarget_tests::push::{FaultyApns, FaultyFcm, PushFaults, android_token, ios_token, push_app};
use retarget_tests::ses::{FaultySes, REJECTED, email as ses_email};
use retarget_tests::stack::{CrashPoint, Stack, Tally, phone, redelivery_after};
use retarget_tests::twilio::ProviderFaults;
use retarget_tests::{ApiResponse, TestApp, TestQueues, World, sdk};
use serde_json::json;

fn seed() -> u64 {
    std::env::var("FAULTS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20_261_128)
}

/// The receipt handles of these messages: what comes back after the visibility timeout.
fn handles<'m>(messages: impl IntoIterator<Item = &'m Message>) -> Vec<String> {
    messages.into_iter().filter_map(|m| m.receipt_handle().map(str::to_owned)).collect()
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
/// the test clock moves on by the visibility timeout, the round's failed or crashed messages
/// come back, and when only the senders' delayed retry jobs are left, the next round waits for
/// the first of them to come due.
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
            let tick = stack.dispatch.handle(stack.tick_event(), None);
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
            let mut last_step = Instant::now();
            loop {
                // The test clock (frozen, moved by hand) keeps up with the real seconds the
                // retry jobs' delays take, as leases do on AWS: a crashed sender's claims
                // expire while their recipients' retries wait, not only between rounds.
                let step = last_step.elapsed();
                last_step = Instant::now();
                stack.world.clock.advance(chrono::Duration::from_std(step).unwrap_or_default());
                let finished = tick_done.load(Ordering::SeqCst);
                let messages = stack.receive().await;
                if messages.is_empty() {
                    // As Lambda's event source mapping, the senders keep polling while retry
                    // jobs wait to come due: a round ends when the tick is done and nothing is
                    // left but what this round will redeliver.
                    if finished && stack.queues.delayed(stack.queue_url()).await == 0 {
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
                let work = workers::invoke(&stack.sender, stack.event(&messages));
                let Some(response) = stack.run_until_crash(work, None).await else {
                    eprintln!("round {round}: the sender died mid-batch");
                    report.sender_crashes_mid_batch += 1;
                    redeliver.extend(handles(&messages));
                    continue;
                };
                provider.reset();
                if report.sender_crashes_before_delete < crashes.max_each
                    && sender_rng.random::<f64>() < crashes.before_delete
                {
                    report.sender_crashes_before_delete += 1;
                    redeliver.extend(handles(&messages));
                    continue;
                }
                let settled =
                    workers::delete_successes(&stack.queues.sqs, stack.queue_url(), &messages, &response)
                        .await
                        .expect("delete");
                assert_eq!(settled.undeleted, 0, "SQS refused deletes");
                report.failed_messages_redelivered += settled.failed.len();
                redeliver.extend(handles(settled.failed));
            }
        };
        let (tick_outcome, ()) = tokio::join!(tick, senders);
        let url = stack.queue_url();
        eprintln!(
            "round {round}: senders idle after {:?}, {} to redeliver; queue: {} visible, {} delayed, {} in all",
            round_started.elapsed(),
            redeliver.len(),
            stack.queues.visible(url).await,
            stack.queues.delayed(url).await,
            stack.queues.queued(url).await,
        );
        report.ticks += 1;
        match tick_outcome {
            None => report.scheduler_crashes += 1,
            Some(Err(e)) => eprintln!("tick failed: {e}"),
            Some(Ok(_)) => {}
        }
        dispatched = stack.retarget(retarget_id).await.status == RetargetStatus::Dispatched;
        if dispatched && redeliver.is_empty() && stack.queued(stack.queue_url()).await == 0 {
            return report;
        }
        stack.world.clock.advance(redelivery_after());
        stack.make_visible(&redeliver).await;
        // The senders' retry jobs wait as delayed messages (real seconds), and a message in
        // flight without a holder comes back after the visibility timeout: let the next round
        // start once one is due rather than spend it on an empty queue.
        if redeliver.is_empty() {
            let waited = Instant::now();
            let url = stack.queue_url();
            while stack.queues.visible(url).await == 0
                && stack.queues.queued(url).await > 0
                && waited.elapsed() < Duration::from_secs(60)
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let url = stack.queue_url();
    panic!(
        "not quiet after 60 rounds: {report:?}; dispatched {dispatched}; queue: {} visible, {} delayed, {} in all",
        stack.queues.visible(url).await,
        stack.queues.delayed(url).await,
        stack.queues.queued(url).await
    );
}

/// How long `stats` may take to count everything once the senders are quiet: the contract lets
/// them trail by 5 s; the rest is room for a loaded machine.
const STATS_DEADLINE: Duration = Duration::from_secs(30);

/// A count read by `read`, polled until it equals `distinct` or [`STATS_DEADLINE`] passes: the
/// last value read, and how long it took. Stats may trail the stored events, never exceed
/// them: a poll above `distinct` fails at once (something was counted twice).
async fn counted(distinct: u64, read: impl AsyncFn() -> u64) -> (u64, Duration) {
    let started = Instant::now();
    loop {
        let count = read().await;
        assert!(count <= distinct, "counted {count} for {distinct} distinct recipients: counted twice");
        if count == distinct || started.elapsed() > STATS_DEADLINE {
            return (count, started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The two end-to-end runs (SMS, push) take turns: on two shared cores, one DynamoDB Local
/// serving both at once times out on its own locks.
static END_TO_END: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// 10,000; `FAULTS_RECIPIENTS` overrides it for quick local runs.
fn recipients() -> usize {
    std::env::var("FAULTS_RECIPIENTS").ok().and_then(|s| s.parse().ok()).unwrap_or(10_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_recipients_through_every_fault_each_sent_exactly_once() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("retarget_shared::services::sender=warn,retarget_shared::services::dispatch=warn")
        .with_test_writer()
        .try_init();
    let _turn = END_TO_END.lock().await;
    let started = Instant::now();
    let seed = seed();
    let recipients = recipients();
    let rates = FaultRates {
        throttle: 0.02,
        partial_batch: 0.15,
        dynamo_lost_answer: 0.02,
        sqs_error: 0.3,
        sqs_partial: 0.5,
        sqs_lost_response: 0.4,
        sqs_scripted: true,
    };
    let provider = ProviderFaults { too_many_requests: 0.02, server_error: 0.01, hang_then_refuse: 0.003 };
    let stack = Stack::new(rates, provider, seed).await;
    // A message whose receipt handle nobody holds any more comes back after the visibility
    // timeout, as on AWS; 30 s instead of the template's six minutes, so the loop waits for it
    // rather than give up (a batch is handled and deleted well within it: one at a time).
    stack
        .queues
        .sqs
        .set_queue_attributes()
        .queue_url(stack.queue_url())
        .attributes(aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout, "30")
        .send()
        .await
        .expect("shorten the visibility timeout");
    stack.dynamodb_proxy.set_enabled(false);
    let id = stack.retarget_of(recipients).await;
    stack.dynamodb_proxy.set_enabled(true);
    let seeded = started.elapsed();

    let mut rng = StdRng::seed_from_u64(seed);
    let crashes =
        SenderCrashes { mid_batch: 0.6, before_delete: 0.3, max_each: 3, point: CrashPoint::BeforeProvider };
    let report = run_until_quiet(&stack, &id, 1.0, 3, crashes, &mut rng).await;

    let t = stack.tally(recipients);
    let retarget = stack.retarget(&id).await;
    let dlq = stack.queued(&stack.queues.sms_dlq_url).await;
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
    let distinct_sent = t.accepted_total.min(recipients as u64);
    let (recorded_sent, counted_after) = counted(distinct_sent, async || {
        stack.world.settle().await;
        let stats = stack.world.store.message_stats(&message.scope()).await.unwrap();
        stats.get(&EventKind::Sent).copied().unwrap_or_default()
    })
    .await;
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
        "recorded_sent": recorded_sent,
        "stats_counted_after_ms": counted_after.as_millis() as u64,
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
        assert_eq!(recorded_sent, recipients as u64, "every send counted once");
    }
    // The faults really happened.
    let c = &stack.dynamodb_proxy.counts;
    // (Partial batches: of BatchGetItem at least; interactions may be written one by one.)
    let unprocessed =
        c.unprocessed_items.load(Ordering::Relaxed) + c.unprocessed_keys.load(Ordering::Relaxed);
    assert!(c.throttled.load(Ordering::Relaxed) > 0 && unprocessed > 0, "{}", c.json());
    assert!(c.dynamo_lost_answers.load(Ordering::Relaxed) > 0, "writes applied and their answers lost");
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
    let no_retry = aws_sdk_dynamodb::config::retry::RetryConfig::standard().with_max_attempts(1);
    let dynamodb_upstream = upstream("AWS_ENDPOINT_URL_DYNAMODB");
    let dynamodb_through = async |rates: FaultRates, seed: u64| {
        let proxy = FaultProxy::start(Service::DynamoDb, &dynamodb_upstream, rates, seed).await;
        let config = aws_sdk_dynamodb::config::Builder::from(sdk).endpoint_url(&proxy.url);
        (aws_sdk_dynamodb::Client::from_conf(config.retry_config(no_retry.clone()).build()), proxy)
    };

    let (throttling, _proxy) =
        dynamodb_through(FaultRates { throttle: 1.0, ..FaultRates::default() }, 1).await;
    let err = throttling
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

    let (partial, _proxy) =
        dynamodb_through(FaultRates { partial_batch: 1.0, ..FaultRates::default() }, 2).await;
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
    let output = partial.batch_write_item().request_items(&world.table, puts).send().await.unwrap();
    let unprocessed = output.unprocessed_items().and_then(|m| m.get(&world.table)).map_or(0, Vec::len);
    assert!((1..10).contains(&unprocessed), "{unprocessed} of 10 left unprocessed");
    assert_eq!(world.scan_all().await.len(), 10 - unprocessed, "exactly the processed ones were written");

    // Every kind of write is carried out, and its answer lost: the caller sees the 500 AWS
    // gives (retryable), although the write happened. Reads are answered as they are.
    let (losing, proxy) =
        dynamodb_through(FaultRates { dynamo_lost_answer: 1.0, ..FaultRates::default() }, 4).await;
    let item = |pk: &str| {
        std::collections::HashMap::from([
            ("pk".to_owned(), AttributeValue::S(pk.into())),
            ("sk".to_owned(), AttributeValue::S("s".into())),
        ])
    };
    let stored = async |pk: &str| {
        let key = item(pk);
        let output = world
            .dynamodb
            .get_item()
            .table_name(&world.table)
            .set_key(Some(key))
            .consistent_read(true)
            .send();
        output.await.unwrap().item.is_some()
    };
    let internal = |e: aws_sdk_dynamodb::Error| matches!(e, aws_sdk_dynamodb::Error::InternalServerError(_));
    let err = losing.put_item().table_name(&world.table).set_item(Some(item("lost-put"))).send().await;
    assert!(internal(err.unwrap_err().into()), "PutItem: an InternalServerError");
    assert!(stored("lost-put").await, "the put item is there although the caller saw an error");
    let update = losing.update_item().table_name(&world.table).set_key(Some(item("lost-update")));
    let err = update
        .update_expression("SET n = :one")
        .expression_attribute_values(":one", AttributeValue::N("1".into()));
    assert!(internal(err.send().await.unwrap_err().into()), "UpdateItem: an InternalServerError");
    assert!(stored("lost-update").await, "the updated item is there");
    let err = losing.delete_item().table_name(&world.table).set_key(Some(item("lost-put"))).send().await;
    assert!(internal(err.unwrap_err().into()), "DeleteItem: an InternalServerError");
    assert!(!stored("lost-put").await, "the deleted item is gone");
    let put = |pk: &str| {
        WriteRequest::builder()
            .put_request(PutRequest::builder().set_item(Some(item(pk))).build().unwrap())
            .build()
    };
    let err =
        losing.batch_write_item().request_items(&world.table, vec![put("lost-batch-1"), put("lost-batch-2")]);
    assert!(internal(err.send().await.unwrap_err().into()), "BatchWriteItem: an InternalServerError");
    assert!(stored("lost-batch-1").await && stored("lost-batch-2").await, "the whole batch was written");
    let transact_put = aws_sdk_dynamodb::types::Put::builder()
        .table_name(&world.table)
        .set_item(Some(item("lost-transaction")))
        .build()
        .unwrap();
    let transaction = aws_sdk_dynamodb::types::TransactWriteItem::builder().put(transact_put).build();
    let err = losing.transact_write_items().transact_items(transaction).send().await;
    assert!(internal(err.unwrap_err().into()), "TransactWriteItems: an InternalServerError");
    assert!(stored("lost-transaction").await, "the transaction was applied");
    let read = losing.get_item().table_name(&world.table).set_key(Some(item("lost-update"))).send().await;
    assert!(read.unwrap().item.is_some(), "a read is answered");
    assert_eq!(proxy.counts.dynamo_lost_answers.load(Ordering::Relaxed), 5, "{}", proxy.counts.json());
    // With the SDK's own retry, a conditional write lost this way comes back as a failure of
    // its own condition: what the store's conditional writes must tell from a real conflict.
    let retrying = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(sdk)
            .endpoint_url(&proxy.url)
            .retry_config(
                aws_sdk_dynamodb::config::retry::RetryConfig::standard()
                    .with_initial_backoff(Duration::from_millis(1)),
            )
            .build(),
    );
    let conditional = retrying.put_item().table_name(&world.table).set_item(Some(item("lost-conditional")));
    let err = conditional.condition_expression("attribute_not_exists(pk)").send().await.unwrap_err();
    assert!(
        matches!(
            aws_sdk_dynamodb::Error::from(err),
            aws_sdk_dynamodb::Error::ConditionalCheckFailedException(_)
        ),
        "the retry meets the item its first attempt wrote"
    );
    assert!(stored("lost-conditional").await);
    drop(proxy);

    let sqs = aws_sdk_sqs::Client::new(sdk);
    let queue = sqs.create_queue().queue_name(format!("proxy-{}", ulid::Ulid::new())).send().await.unwrap();
    let queue_url = queue.queue_url().unwrap().to_owned();
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
    // Four messages tagged `tag`, sent in one SendMessageBatch through a proxy with `rates`.
    let sqs_upstream = upstream("AWS_ENDPOINT_URL_SQS");
    let send_batch_through = async |rates: FaultRates, tag: &str| {
        let proxy = FaultProxy::start(Service::Sqs, &sqs_upstream, rates, 3).await;
        let config = aws_sdk_sqs::config::Builder::from(sdk).endpoint_url(&proxy.url);
        let client = aws_sdk_sqs::Client::from_conf(config.retry_config(no_retry.clone()).build());
        let entries = (0..4).map(|i| {
            let entry = aws_sdk_sqs::types::SendMessageBatchRequestEntry::builder().id(i.to_string());
            entry.message_body(format!("{tag}{i}")).build().unwrap()
        });
        client.send_message_batch().queue_url(&queue_url).set_entries(Some(entries.collect())).send().await
    };

    let err = send_batch_through(FaultRates { sqs_error: 1.0, ..FaultRates::default() }, "a").await;
    assert!(err.is_err());
    assert!(count().await.is_empty(), "a 500 sent nothing");

    let output =
        send_batch_through(FaultRates { sqs_partial: 1.0, ..FaultRates::default() }, "b").await.unwrap();
    assert!(!output.failed.is_empty() && output.failed.iter().all(|f| !f.sender_fault));
    assert_eq!(count().await.len(), output.successful.len(), "only the successful entries are on the queue");

    let err = send_batch_through(FaultRates { sqs_lost_response: 1.0, ..FaultRates::default() }, "c").await;
    assert!(err.is_err(), "the answer was lost");
    assert_eq!(count().await.len(), 4, "but the messages were stored");
}

/// A small retarget (one job) dispatched with no faults; the received SQS messages.
async fn one_job(stack: &Stack, n: usize) -> Vec<Message> {
    stack.retarget_of(n).await;
    let report = stack.dispatch.handle(stack.tick_event(), None).await.expect("tick");
    assert_eq!(report.dispatched, 1, "{report:?}");
    let messages = stack.receive().await;
    assert_eq!(messages.len(), 1);
    messages
}

/// Once every lease has run out, the batch is delivered again and nothing in it fails; the
/// provider's tally of the `n` recipients then.
async fn redelivered_after_the_lease(stack: &Stack, messages: &[Message], n: usize) -> Tally {
    stack.world.clock.advance(redelivery_after());
    let late = workers::invoke(&stack.sender, stack.event(messages)).await;
    assert!(late.batch_item_failures.is_empty(), "{late:?}");
    stack.tally(n)
}

/// The inherent window, shown rather than hidden: Twilio accepted recipient #5 and the sender
/// died before recording it. A redelivery inside the claim's lease sends nothing (the claim is
/// held); once the lease has run out — as it must, or a sender that died *before* calling the
/// provider would lose its recipients for good — the recipient is sent again. Twilio's Messages
/// API takes no idempotency key, so nothing on our side can tell "accepted, unrecorded" from
/// "never reached": the design chooses at-least-once here, and this test pins that choice.
#[tokio::test]
async fn a_crash_between_the_providers_acceptance_and_the_record_sends_that_recipient_twice() {
    let mut stack = Stack::new(FaultRates::default(), ProviderFaults::default(), seed()).await;
    // The redeliveries are played by hand: the sender's fallback, no retry jobs.
    stack.sender.retries = None;
    let messages = one_job(&stack, 20).await;
    let provider = &stack.sender.provider;
    provider.arm(5, CrashPoint::AfterProviderAccepted);
    // The process dies once every recipient's claim is taken: the ones done, the one caught in
    // the window, and the rest held by sends that never reached the dead provider.
    let work = workers::invoke(&stack.sender, stack.event(&messages));
    let crashed = stack.run_until_crash(work, Some(&messages)).await;
    assert!(crashed.is_none(), "the sender died mid-batch");
    provider.reset();
    let accepted_at_crash = stack.twilio.accepted().len();

    let early = workers::invoke(&stack.sender, stack.event(&messages)).await;
    assert_eq!(early.batch_item_failures.len(), 1, "held claims make an early redelivery wait");
    assert_eq!(stack.twilio.accepted().len(), accepted_at_crash, "and send nothing");

    let t = redelivered_after_the_lease(&stack, &messages, 20).await;
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
    let mut stack = Stack::new(FaultRates::default(), ProviderFaults::default(), seed()).await;
    // The redelivery is played by hand: the sender's fallback, no retry job.
    stack.sender.retries = None;
    stack.twilio.slow_accept.lock().unwrap().push(phone(3));
    let messages = one_job(&stack, 10).await;
    let first = workers::invoke(&stack.sender, stack.event(&messages)).await;
    assert_eq!(first.batch_item_failures.len(), 1, "the timed-out send is retried");
    stack.twilio.slow_accept.lock().unwrap().clear();
    let t = redelivered_after_the_lease(&stack, &messages, 10).await;
    println!(
        "{}",
        json!({"test": "timeout_after_provider_accepted", "recipients": 10, "missed": t.missed.len(),
            "sent_twice": t.doubled, "provider_answers": stack.twilio.answered()})
    );
    assert!(t.missed.is_empty());
    assert_eq!(t.doubled, vec![(phone(3), 2)]);
}

// --- the push and email senders under faults ----------------------------------------------------

/// A function whose invocations the test can wait out: each holds the read side while it runs,
/// so whoever takes the write side knows no invocation is under way (and none starts).
struct Between<D> {
    deps: D,
    running: tokio::sync::RwLock<()>,
}

impl<D: FromEnv> FromEnv for Between<D> {
    fn from_env(env: &mut EnvReader, infra: &Infra) -> Result<Self, retarget_shared::bootstrap::Error> {
        Ok(Self { deps: D::from_env(env, infra)?, running: tokio::sync::RwLock::new(()) })
    }
}

impl<D: SqsFunction> SqsFunction for Between<D> {
    async fn handle(
        &self,
        event: aws_lambda_events::sqs::SqsEvent,
        deadline: Option<Instant>,
    ) -> aws_lambda_events::sqs::SqsBatchResponse {
        let _running = self.running.read().await;
        self.deps.handle(event, deadline).await
    }
}

/// Messages on the queue at `url`: visible, in flight or delayed.
async fn pending(sqs: &aws_sdk_sqs::Client, url: &str) -> u64 {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let output = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::ApproximateNumberOfMessages)
        .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
        .attribute_names(A::ApproximateNumberOfMessagesDelayed)
        .send()
        .await
        .expect("queue attributes");
    output.attributes.unwrap_or_default().values().filter_map(|v| v.parse::<u64>().ok()).sum()
}

/// How long a provider run may take to empty its queue (about a minute alone on two cores).
const QUIET_LIMIT: Duration = Duration::from_secs(240);

/// 1,000 (push: half android, half ios); `PUSH_FAULTS_RECIPIENTS` overrides it.
fn push_recipients() -> usize {
    std::env::var("PUSH_FAULTS_RECIPIENTS").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000)
}

/// What the provider stand-ins answer in both runs.
const PROVIDER_FAULTS: PushFaults =
    PushFaults { too_many_requests: 0.03, server_error: 0.02, hang: 0.004, token_failure: 0.25 };

/// A channel's sender end to end under faults, the parts the push and the email runs share: a
/// world whose channel queue's visibility timeout is cut to 20 s (the fallback redelivery of a
/// whole job would otherwise take the template's six minutes), and an `Infra` whose every AWS
/// call goes through the DynamoDB and SQS fault proxies (SES's, when there is a stand-in, to
/// it).
struct ProviderRun {
    started: Instant,
    channel: Channel,
    world: World,
    queues: TestQueues,
    dynamodb_proxy: FaultProxy,
    sqs_proxy: FaultProxy,
    _router: Router,
    infra: Infra,
}

impl ProviderRun {
    async fn start(channel: Channel, seed: u64, ses: Option<&str>) -> Self {
        let started = Instant::now();
        let sdk = sdk().await;
        let world = World::new().await;
        let queues = world.queues().await.clone();
        queues
            .sqs
            .set_queue_attributes()
            .queue_url(queues.of(channel).url())
            .attributes(aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout, "20")
            .send()
            .await
            .expect("shorten the visibility timeout");
        let upstream = |name: &str| std::env::var(name).expect("services");
        let dynamodb_rates = FaultRates {
            throttle: 0.02,
            partial_batch: 0.15,
            dynamo_lost_answer: 0.02,
            ..FaultRates::default()
        };
        let sqs_rates = FaultRates {
            sqs_error: 0.1,
            sqs_partial: 0.2,
            sqs_lost_response: 0.2,
            sqs_scripted: true,
            ..FaultRates::default()
        };
        let dynamodb_proxy = FaultProxy::start(
            Service::DynamoDb,
            &upstream("AWS_ENDPOINT_URL_DYNAMODB"),
            dynamodb_rates,
            seed,
        )
        .await;
        let sqs_proxy =
            FaultProxy::start(Service::Sqs, &upstream("AWS_ENDPOINT_URL_SQS"), sqs_rates, seed + 1).await;
        let router =
            Router::start_with_ses(&dynamodb_proxy, &sqs_proxy, &upstream("AWS_ENDPOINT_URL_SQS"), ses).await;
        let infra = Infra::new(sdk_through(sdk, &router.url), world.clock.clone());
        Self { started, channel, world, queues, dynamodb_proxy, sqs_proxy, _router: router, infra }
    }

    /// A message of this channel to `subs`, created through the messages function with
    /// DynamoDB's faults off (a conditional create whose answer is lost answers 500: its retry
    /// meets the item it wrote) and SQS's on. Its id.
    async fn create(
        &self,
        messages: &AppFunction<retarget_messages::Messages>,
        app: &TestApp,
        subs: &[Subscription],
        contents: serde_json::Value,
    ) -> String {
        self.dynamodb_proxy.set_enabled(false);
        let ids: Vec<String> = subs.iter().map(|s| s.subscription_id.to_string()).collect();
        let body = json!({"channel": self.channel, "contents": contents, "include_subscription_ids": ids});
        let created = ApiResponse::from(messages.handle(app.post("/v1/messages", &body).build()).await);
        assert_eq!(created.status, 202, "{created:?}");
        self.dynamodb_proxy.set_enabled(true);
        created.body["message_id"].as_str().expect("message id").to_owned()
    }

    /// The local stack's SQS poller (`workers::poll_queue`) invoking `sender` until the queue
    /// has been empty three polls in a row. Time: the senders' own retry delays are real (no
    /// timing is assumed: the run waits until the queue is empty); the clock jumps past every
    /// lease whenever no invocation runs (a claim whose answer was lost is held by no one, and
    /// would otherwise stand for its whole lease). `reached`: recipients reached so far, for
    /// the progress lines. How many clock jumps it took.
    async fn until_quiet<S: SqsFunction>(&self, sender: &Between<S>, reached: impl Fn() -> usize) -> usize {
        let url = self.queues.of(self.channel).url();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let poller = workers::poll_queue(&self.queues.sqs, url, sender, stopped);
        let lease = chrono::Duration::seconds(
            i64::from(retarget_shared::adapters::resources::SENDER_TIMEOUT_SECONDS) + 1,
        );
        let mut clock_jumps = 0;
        let until_quiet = async {
            let (mut empty_polls, mut reported) = (0, Instant::now());
            while empty_polls < 3 {
                assert!(self.started.elapsed() < QUIET_LIMIT, "not quiet after {QUIET_LIMIT:?}");
                tokio::time::sleep(Duration::from_millis(500)).await;
                {
                    let _between = sender.running.write().await;
                    self.world.clock.advance(lease);
                    clock_jumps += 1;
                }
                let left = pending(&self.queues.sqs, url).await;
                empty_polls = if left == 0 { empty_polls + 1 } else { 0 };
                if reported.elapsed() > Duration::from_secs(10) {
                    reported = Instant::now();
                    eprintln!("{:?}: {left} messages queued, {} reached", self.started.elapsed(), reached());
                }
            }
            let _ = stop.send(true);
        };
        tokio::join!(poller, until_quiet);
        clock_jumps
    }

    /// Messages left on the channel's dead-letter queue.
    async fn dead_lettered(&self) -> u64 {
        pending(&self.queues.sqs, self.queues.dead_letter_url(self.channel)).await
    }

    /// `stats.<kind>` of message `id`, read as a client reads it, polled until it counts
    /// `distinct` (it may trail): the count and how long it took.
    async fn counted(&self, app: &TestApp, id: &str, kind: &str, distinct: u64) -> (u64, Duration) {
        let target = format!("/v1/messages/{id}");
        counted(distinct, async || {
            self.world.settle().await;
            let read = self.world.call(app.get(&target)).await;
            read.body["stats"][kind].as_u64().unwrap_or_default()
        })
        .await
    }

    /// Prints the run's figures: `figures`, the faults injected and the times.
    fn report(&self, mut figures: serde_json::Value, seeded: Duration, quiet: Duration, clock_jumps: usize) {
        figures["dynamodb_faults"] = self.dynamodb_proxy.counts.json();
        figures["sqs_faults"] = self.sqs_proxy.counts.json();
        figures["clock_jumps"] = json!(clock_jumps);
        figures["seed_seconds"] = json!(seeded.as_secs_f64());
        figures["quiet_seconds"] = json!(quiet.as_secs_f64());
        figures["total_seconds"] = json!(self.started.elapsed().as_secs_f64());
        println!("{figures}");
    }

    /// The faults injected into DynamoDB and SQS really happened.
    fn assert_aws_faults_happened(&self) {
        let c = &self.dynamodb_proxy.counts;
        assert!(c.throttled.load(Ordering::Relaxed) > 0 && c.dynamo_lost_answers.load(Ordering::Relaxed) > 0);
        let s = &self.sqs_proxy.counts;
        assert!(s.sqs_lost_responses.load(Ordering::Relaxed) > 0, "{}", s.json());
    }
}

/// Recipients reached never, and more than once, of those `expected`, by a stand-in's count.
fn missed_and_doubled(
    expected: &[String],
    reached: impl Fn(&str) -> u32,
) -> (Vec<&String>, Vec<(&String, u32)>) {
    let missed = expected.iter().filter(|e| reached(e) == 0).collect();
    let doubled = expected.iter().filter(|e| reached(e) > 1).map(|e| (e, reached(e))).collect();
    (missed, doubled)
}

fn assert_each_once(missed: &[&String], doubled: &[(&String, u32)], what: &str) {
    assert!(
        missed.is_empty(),
        "{} {what} never reached, e.g. {:?}",
        missed.len(),
        &missed[..missed.len().min(5)]
    );
    assert!(
        doubled.is_empty(),
        "{} {what} reached twice: {:?}",
        doubled.len(),
        &doubled[..doubled.len().min(5)]
    );
}

/// The push sender end to end under faults: a message to android and ios recipients created
/// through the messages function, its jobs consumed by the local stack's own SQS poller
/// invoking the push sender built as its Lambda `main` builds it, with every AWS call of both
/// going through the DynamoDB and SQS fault proxies ([`ProviderRun`]), against an FCM and an
/// APNs stand-in that throttle (429), fail (500/503), hang past the client's timeout, and (FCM)
/// fail to hand out access tokens. Afterwards each device token must have reached its
/// provider's success path exactly once, the DLQ must be empty and `stats.sent` must count each
/// recipient once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_to_android_and_ios_through_every_fault_each_token_reached_once() {
    let filter =
        std::env::var("TEST_LOG").unwrap_or_else(|_| "retarget_shared::services::sender=warn".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    assert!(retarget_tests::push::HANG > retarget_push_sender::DEFAULT_TIMEOUT, "a hang outlasts the client");
    let _turn = END_TO_END.lock().await;
    let (seed, n) = (seed(), push_recipients());
    let (fcm, apns) = (FaultyFcm::new(PROVIDER_FAULTS, seed + 2), FaultyApns::new(PROVIDER_FAULTS, seed + 3));
    let (fcm_server, apns_server) = (fcm.mount().await, apns.mount().await);
    let run = ProviderRun::start(Channel::Push, seed, None).await;
    let app = push_app(&run.world, &fcm_server).await;
    let subs = run
        .world
        .bulk_subscriptions(&app, n, |i| match i % 2 {
            0 => Address::Push { platform: Platform::Android, token: android_token(i) },
            _ => Address::Push { platform: Platform::Ios, token: ios_token(i) },
        })
        .await;

    // The messages function and the push sender, built as their Lambda mains build them.
    let mut env = run
        .world
        .function_env(&run.queues)
        .with("FCM_API_BASE", &fcm_server.uri())
        .with("APNS_API_BASE", &apns_server.uri());
    let messages: AppFunction<retarget_messages::Messages> = FromEnv::from_env(&mut env, &run.infra).unwrap();
    let sender: Between<SenderDeps<PushProvider>> = FromEnv::from_env(&mut env, &run.infra).unwrap();
    env.finish().unwrap();
    let message_id = run.create(&messages, &app, &subs, json!({"title": "Sale", "body": "Last day"})).await;
    let seeded = run.started.elapsed();
    let clock_jumps = run.until_quiet(&sender, || fcm.delivered().len() + apns.delivered().len()).await;
    let quiet = run.started.elapsed();

    // Each device token reached its provider's success path exactly once.
    let (android, ios) = (fcm.delivered(), apns.delivered());
    let expected: Vec<String> =
        (0..n).map(|i| if i % 2 == 0 { android_token(i) } else { ios_token(i) }).collect();
    let reached = |token: &str| android.get(token).or_else(|| ios.get(token)).copied().unwrap_or(0);
    let (missed, doubled) = missed_and_doubled(&expected, reached);
    let strangers = android.len() + ios.len() - expected.iter().filter(|e| reached(e) > 0).count();
    let distinct = (n - missed.len()) as u64;
    let dlq = run.dead_lettered().await;
    let (recorded_sent, counted_after) = run.counted(&app, &message_id, "sent", distinct).await;

    let figures = json!({
        "test": "push_faults",
        "seed": seed,
        "recipients": n,
        "missed": missed.len(),
        "sent_twice_or_more": doubled.len(),
        "fcm_answers": fcm.answered(),
        "apns_answers": apns.answered(),
        "dlq_messages": dlq,
        "recorded_sent": recorded_sent,
        "stats_counted_after_ms": counted_after.as_millis() as u64,
    });
    run.report(figures, seeded, quiet, clock_jumps);

    assert_each_once(&missed, &doubled, "tokens");
    assert_eq!(strangers, 0, "the providers were sent tokens outside the audience");
    assert_eq!(dlq, 0, "nothing dead-lettered");
    assert_eq!(recorded_sent, n as u64, "every send counted once");
    let (fcm_answers, apns_answers) = (fcm.answered(), apns.answered());
    assert!(!fcm_answers.contains_key("send_401"), "FCM was sent a token it never issued: {fcm_answers:?}");
    assert!(!apns_answers.contains_key("403"), "APNs refused the provider token: {apns_answers:?}");
    if n < 1_000 {
        return; // too few requests for every kind of fault to be sure to happen
    }
    // The faults really happened, of every kind.
    for kind in ["send_429", "token_200"] {
        assert!(fcm_answers.get(kind).is_some_and(|c| *c > 0), "FCM never answered {kind}: {fcm_answers:?}");
    }
    assert!(fcm_answers.keys().any(|k| k.starts_with("token_") && *k != "token_200"), "{fcm_answers:?}");
    assert!(fcm_answers.keys().any(|k| *k == "send_500" || *k == "send_503"), "{fcm_answers:?}");
    assert!(apns_answers.get("429").is_some_and(|c| *c > 0), "{apns_answers:?}");
    assert!(apns_answers.keys().any(|k| *k == "500" || *k == "503"), "{apns_answers:?}");
    let hangs = fcm_answers.get("send_hang_then_503").copied().unwrap_or(0)
        + apns_answers.get("hang_then_503").copied().unwrap_or(0);
    assert!(hangs > 0, "no request hung");
    run.assert_aws_faults_happened();
}

/// 1,000, every 50th refused by SES; `EMAIL_FAULTS_RECIPIENTS` overrides the count.
fn email_recipients() -> usize {
    std::env::var("EMAIL_FAULTS_RECIPIENTS").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000)
}

/// Every 50th address is refused by SES (`MessageRejected`).
const REJECTED_EVERY: usize = 50;

/// The email sender end to end under faults, as the push run: an email message created through
/// the messages function, consumed by the email sender built as its Lambda `main` builds it
/// (its SES client reaching the stand-in through the router, as `AWS_ENDPOINT_URL_SESV2` would
/// point it), every DynamoDB and SQS call through the fault proxies, against an SES stand-in
/// that throttles (`TooManyRequestsException`, `LimitExceededException`), fails (500/503),
/// hangs past the sender's timeout and refuses some addresses (`MessageRejected`). Afterwards
/// each accepted address was delivered exactly once, each refused one was asked exactly once
/// and counted failed (never retried, never dead-lettered), the DLQ is empty, and the stats
/// count each recipient once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_through_every_fault_each_address_sent_once() {
    let filter =
        std::env::var("TEST_LOG").unwrap_or_else(|_| "retarget_shared::services::sender=warn".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    assert!(retarget_tests::push::HANG > retarget_email_sender::SES_TIMEOUT, "a hang outlasts the client");
    let _turn = END_TO_END.lock().await;
    let (seed, n) = (seed(), email_recipients());
    let faults = PushFaults { token_failure: 0.0, ..PROVIDER_FAULTS };
    let ses = FaultySes::new(faults, seed + 4);
    let ses_server = ses.mount().await;
    let run = ProviderRun::start(Channel::Email, seed, Some(&ses_server.uri())).await;
    let app = run.world.email_app("Shop <news@shop.example.com>").await;
    let subs = run
        .world
        .bulk_subscriptions(&app, n, |i| Address::Email {
            email: EmailAddress::parse(&ses_email(i, REJECTED_EVERY)).expect("an address"),
        })
        .await;

    // A rate far above what the run needs: the pacing is not what is under test here.
    let mut env = run.world.function_env(&run.queues).with("EMAIL_SEND_RATE", "100000");
    let messages: AppFunction<retarget_messages::Messages> = FromEnv::from_env(&mut env, &run.infra).unwrap();
    let sender: Between<SenderDeps<EmailProvider>> = FromEnv::from_env(&mut env, &run.infra).unwrap();
    env.finish().unwrap();
    let contents = json!({"title": "Sale", "body": "Last day", "html": "<p>Last <b>day</b></p>"});
    let message_id = run.create(&messages, &app, &subs, contents).await;
    let seeded = run.started.elapsed();
    let clock_jumps = run.until_quiet(&sender, || ses.delivered().len()).await;
    let quiet = run.started.elapsed();

    let delivered = ses.delivered();
    let (accepted, refused): (Vec<String>, Vec<String>) =
        (0..n).map(|i| ses_email(i, REJECTED_EVERY)).partition(|a| !a.starts_with(REJECTED));
    let (missed, doubled) = missed_and_doubled(&accepted, |a| delivered.get(a).copied().unwrap_or(0));
    let strangers = delivered.keys().filter(|a| !accepted.contains(a)).count();
    let answers = ses.answered();
    let dlq = run.dead_lettered().await;
    let distinct = (accepted.len() - missed.len()) as u64;
    let (recorded_sent, counted_after) = run.counted(&app, &message_id, "sent", distinct).await;
    let (recorded_failed, _) = run.counted(&app, &message_id, "failed", refused.len() as u64).await;

    let figures = json!({
        "test": "email_faults",
        "seed": seed,
        "recipients": n,
        "refused_by_ses": refused.len(),
        "missed": missed.len(),
        "sent_twice_or_more": doubled.len(),
        "ses_answers": answers,
        "dlq_messages": dlq,
        "recorded_sent": recorded_sent,
        "recorded_failed": recorded_failed,
        "stats_counted_after_ms": counted_after.as_millis() as u64,
    });
    run.report(figures, seeded, quiet, clock_jumps);

    assert_each_once(&missed, &doubled, "addresses");
    assert_eq!(strangers, 0, "SES was sent addresses outside the audience");
    assert!(!answers.contains_key("bad_request"), "a request lacked what SendEmail must carry: {answers:?}");
    let asked_refused = answers.get("rejected").copied().unwrap_or(0);
    assert_eq!(asked_refused, refused.len() as u64, "each refused address asked once, never retried");
    assert_eq!(dlq, 0, "nothing dead-lettered");
    assert_eq!(recorded_sent, accepted.len() as u64, "every send counted once");
    assert_eq!(recorded_failed, refused.len() as u64, "every refusal counted once");
    if n < 1_000 {
        return; // too few requests for every kind of fault to be sure to happen
    }
    for kind in ["429", "hang_then_503"] {
        assert!(answers.get(kind).is_some_and(|c| *c > 0), "SES never answered {kind}: {answers:?}");
    }
    assert!(answers.keys().any(|k| *k == "500" || *k == "503"), "{answers:?}");
    run.assert_aws_faults_happened();
}

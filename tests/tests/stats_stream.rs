//! The stats aggregator against DynamoDB Local's real stream, fed by the local stack's stand-in
//! for Lambda's event source mapping (`retarget_local::streams`): stats are the distinct items
//! stored, whatever is delivered twice, whatever fails or crashes half-way — in the aggregator
//! or in a writer — and they trail the stored events by far less than the contract's 5 s.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::AttributeValue;
use aws_sdk_dynamodbstreams::types::{Identity, OperationType, Record, StreamRecord, StreamViewType};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use chrono::Utc;
use rand::seq::SliceRandom;
use retarget_local::streams::{StreamSource, passes_filter, run_stream_poller, time_window_event};
use retarget_shared::adapters::store::Interaction;
use retarget_shared::bootstrap::StreamFunction;
use retarget_shared::domain::{Channel, EventId, EventKind, Message, Plan, SubscriptionId};
use retarget_shared::services::stats::{StatsDeps, TimeWindowEvent, counted_insert};
use retarget_shared::{Clock, Store, keys};
use retarget_tests::{World, sdk};
use serde_json::json;

// --- helpers ---------------------------------------------------------------------------------

/// Per kind, the interaction items stored for `message`: what its stats must say.
async fn stored(world: &World, message: &Message) -> HashMap<EventKind, u64> {
    let mut counts: HashMap<EventKind, u64> = EventKind::ALL.into_iter().map(|k| (k, 0)).collect();
    let mut rows = world.store.interactions(&message.scope(), None);
    while let Some(row) = rows.next().await {
        *counts.entry(row.expect("read interactions").kind).or_default() += 1;
    }
    counts
}

/// The stats as stored now, without counting anything first.
async fn counted(world: &World, message: &Message) -> HashMap<EventKind, u64> {
    world.store.message_stats(&message.scope()).await.expect("message stats")
}

fn interaction(sub: SubscriptionId, kind: EventKind, event_id: Option<String>) -> Interaction {
    Interaction {
        subscription_id: sub,
        kind,
        external_user_id: None,
        event_id: event_id.map(|id| EventId::parse(&id).expect("event id")),
        occurred_at: retarget_tests::epoch(),
    }
}

/// Every record of the world's stream, per shard.
async fn stream_records(world: &World) -> Vec<(String, Vec<Record>)> {
    let shards = world.aggregator().await.stream.records().await.expect("read the stream");
    shards.into_iter().map(|s| (s.shard_id, s.records)).collect()
}

/// The event Lambda would invoke the aggregator with for these records of `shard`.
async fn event(world: &World, shard: &str, records: &[Record]) -> TimeWindowEvent {
    let (arn, region) = world.aggregator().await.stream.event_source().await.expect("the stream");
    time_window_event(records, shard, &arn, &region, Utc::now()).expect("a stream event")
}

/// `n` new subscriptions with `kind` recorded for each.
async fn record_new(world: &World, message: &Message, kind: EventKind, n: usize) -> Vec<SubscriptionId> {
    let subs: Vec<SubscriptionId> = (0..n).map(|_| SubscriptionId::new()).collect();
    world.record_each(message, kind, &subs).await;
    subs
}

/// Makes chosen DynamoDB requests fail as a crash would: before they reach DynamoDB (nothing
/// written) or after (written, the answer lost). Strikes the first `times` requests of
/// `operation` whose body contains `needle`.
#[derive(Clone)]
struct Sabotage(Arc<SabotageState>);

struct SabotageState {
    operation: &'static str,
    needle: String,
    after_transmit: bool,
    remaining: AtomicUsize,
    fired: AtomicUsize,
}

/// Marks an attempt the sabotage will strike once it has been sent.
#[derive(Debug, Clone)]
struct Doomed(bool);

impl Storable for Doomed {
    type Storer = StoreReplace<Self>;
}

impl fmt::Debug for Sabotage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sabotage({} {})", self.0.operation, self.0.needle)
    }
}

impl Sabotage {
    fn new(operation: &'static str, needle: impl Into<String>, after_transmit: bool, times: usize) -> Self {
        Self(Arc::new(SabotageState {
            operation,
            needle: needle.into(),
            after_transmit,
            remaining: AtomicUsize::new(times),
            fired: AtomicUsize::new(0),
        }))
    }

    fn fired(&self) -> usize {
        self.0.fired.load(Ordering::SeqCst)
    }

    /// A DynamoDB client that goes through this sabotage.
    async fn client(&self) -> aws_sdk_dynamodb::Client {
        let config = aws_sdk_dynamodb::config::Builder::from(sdk().await).interceptor(self.clone()).build();
        aws_sdk_dynamodb::Client::from_conf(config)
    }

    /// A store on the world's table through this sabotage.
    async fn store(&self, world: &World) -> Store {
        Store::new(self.client().await, world.table.clone(), world.clock.clone())
    }

    fn strikes(&self, request: &aws_smithy_runtime_api::http::Request) -> bool {
        let target = request.headers().get("x-amz-target").unwrap_or_default();
        let body = request.body().bytes().and_then(|b| std::str::from_utf8(b).ok()).unwrap_or_default();
        let hit = target.ends_with(&format!(".{}", self.0.operation))
            && body.contains(&self.0.needle)
            && self
                .0
                .remaining
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        if hit {
            self.0.fired.fetch_add(1, Ordering::SeqCst);
        }
        hit
    }
}

impl Intercept for Sabotage {
    fn name(&self) -> &'static str {
        "stats-stream-sabotage"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let strikes = self.strikes(context.request());
        if strikes && !self.0.after_transmit {
            return Err("injected: the process died before this request left".into());
        }
        cfg.interceptor_state().store_put(Doomed(strikes));
        Ok(())
    }

    fn read_after_transmit(
        &self,
        _context: &BeforeDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        match cfg.load::<Doomed>() {
            Some(Doomed(true)) => Err("injected: the process died before the answer came".into()),
            _ => Ok(()),
        }
    }
}

// --- (a) what is counted ----------------------------------------------------------------------

#[tokio::test]
async fn stats_are_the_distinct_items_stored() {
    let (world, app) = World::with_app(Plan::Pro).await;
    let push = world.message(&app, Channel::Push).await;
    let sms = world.message(&app, Channel::Sms).await;
    let subs: Vec<SubscriptionId> = (0..30).map(|_| SubscriptionId::new()).collect();
    // Every subscription sent; two thirds delivered; every fifth clicked (push) or undelivered
    // (sms); each event twice, in any order and batching.
    let mut push_events = Vec::new();
    let mut sms_events = Vec::new();
    for (i, sub) in subs.iter().enumerate() {
        push_events.push((*sub, EventKind::Sent, None));
        sms_events.push((*sub, EventKind::Sent, None));
        if !i.is_multiple_of(3) {
            push_events.push((*sub, EventKind::Delivered, None));
            sms_events.push((*sub, EventKind::Delivered, None));
        }
        if i.is_multiple_of(5) {
            push_events.push((*sub, EventKind::Clicked, None));
            sms_events.push((*sub, EventKind::Undelivered, None));
        }
    }
    let mut rng = rand::rng();
    for events in [&mut push_events, &mut sms_events] {
        events.extend(events.clone());
        events.shuffle(&mut rng);
    }
    for (push_chunk, sms_chunk) in push_events.chunks(9).zip(sms_events.chunks(9)) {
        world.record(&push, push_chunk).await;
        world.record(&sms, sms_chunk).await;
    }

    let push_stats = world.stats(&push).await;
    assert_eq!(push_stats, stored(&world, &push).await);
    assert_eq!(
        (push_stats[&EventKind::Sent], push_stats[&EventKind::Delivered], push_stats[&EventKind::Clicked]),
        (30, 20, 6)
    );
    let sms_stats = world.stats(&sms).await;
    assert_eq!(sms_stats, stored(&world, &sms).await);
    assert_eq!(
        (sms_stats[&EventKind::Sent], sms_stats[&EventKind::Delivered], sms_stats[&EventKind::Undelivered]),
        (30, 20, 6)
    );

    // More later: the stream is read on from where it was, nothing counted twice.
    record_new(&world, &push, EventKind::Sent, 5).await;
    assert_eq!(world.stats(&push).await[&EventKind::Sent], 35);
    assert_eq!(world.stats(&push).await, stored(&world, &push).await);
    assert_eq!(world.stats(&sms).await, sms_stats);
}

#[tokio::test]
async fn concurrent_settles_take_turns_and_count_once() {
    let (world, app) = World::with_app(Plan::Pro).await;
    let message = world.message(&app, Channel::Push).await;
    let writes = (0..4).map(|_| record_new(&world, &message, EventKind::Sent, 25));
    let settles = (0..4).map(|_| world.settle());
    tokio::join!(futures::future::join_all(writes), futures::future::join_all(settles));
    assert_eq!(world.stats(&message).await[&EventKind::Sent], 100);
}

// --- (b) deliveries again ---------------------------------------------------------------------

#[tokio::test]
async fn a_batch_delivered_twice_or_again_with_other_boundaries_counts_once() {
    let (world, app) = World::with_app(Plan::Pro).await;
    let whole = world.message(&app, Channel::Push).await;
    record_new(&world, &whole, EventKind::Sent, 40).await;
    let deps = &world.aggregator().await.deps;

    // The same batch twice (Lambda retrying an invocation whose answer it never got).
    for (shard, records) in stream_records(&world).await {
        let delivered: Vec<Record> = records.into_iter().filter(passes_filter).collect();
        let event = event(&world, &shard, &delivered).await;
        for _ in 0..2 {
            let response = deps.handle(event.clone(), None).await;
            assert!(response.batch_item_failures.is_empty(), "{response:?}");
        }
    }
    assert_eq!(counted(&world, &whole).await[&EventKind::Sent], 40);

    // The first half, then everything from the start (a resumed shard's batch has other
    // boundaries than the one that was partly applied).
    let halves = world.message(&app, Channel::Push).await;
    record_new(&world, &halves, EventKind::Delivered, 30).await;
    for (shard, records) in stream_records(&world).await {
        let mine: Vec<Record> = records
            .into_iter()
            .filter(passes_filter)
            .filter(|r| pk(r).contains(&halves.message_id.to_string()))
            .collect();
        assert_eq!(mine.len(), 30);
        for part in [&mine[..15], &mine[..], &mine[10..20], &mine[25..]] {
            let response = deps.handle(event(&world, &shard, part).await, None).await;
            assert!(response.batch_item_failures.is_empty(), "{response:?}");
        }
    }
    assert_eq!(counted(&world, &halves).await[&EventKind::Delivered], 30);

    // And the event source mapping reading the whole stream from its trim horizon on top.
    assert_eq!(world.stats(&whole).await, stored(&world, &whole).await);
    assert_eq!(world.stats(&halves).await, stored(&world, &halves).await);
    assert_eq!(world.stats(&halves).await[&EventKind::Delivered], 30);
}

fn pk(record: &Record) -> String {
    let keys = record.dynamodb().and_then(|d| d.keys());
    keys.and_then(|k| k.get(keys::PK)).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default()
}

// --- (c) the aggregator failing half-way -------------------------------------------------------

/// Records for `victim` and `bystander` interleaved on the stream, then drains it into an
/// aggregator whose counter updates for `victim` fail (`after_transmit`: they are applied, the
/// answer is lost) the first `times` times.
async fn drain_with_failing_counter(after_transmit: bool, times: usize) {
    let (world, app) = World::with_app(Plan::Pro).await;
    let victim = world.message(&app, Channel::Push).await;
    let bystander = world.message(&app, Channel::Push).await;
    for _ in 0..3 {
        record_new(&world, &victim, EventKind::Sent, 7).await;
        record_new(&world, &bystander, EventKind::Sent, 5).await;
    }
    let sabotage = Sabotage::new("UpdateItem", keys::stats(victim.message_id), after_transmit, times);
    let deps = StatsDeps { store: sabotage.store(&world).await };
    let source = StreamSource::of_store(sdk().await, &deps.store);
    source.drain(&deps).await.expect("drains once the updates hold");

    assert!(sabotage.fired() >= 1, "the sabotage never struck");
    assert!(source.counts.failed_batches.load(Ordering::Relaxed) >= 1, "{}", source.counts.json());
    assert_eq!(counted(&world, &victim).await[&EventKind::Sent], 21);
    assert_eq!(counted(&world, &bystander).await[&EventKind::Sent], 15);
    // Another mapping reading everything again changes nothing.
    assert_eq!(world.stats(&victim).await, stored(&world, &victim).await);
    assert_eq!(world.stats(&bystander).await, stored(&world, &bystander).await);
    println!(
        "{}",
        json!({"test": "failing_counter", "after_transmit": after_transmit, "stream": source.counts.json()})
    );
}

#[tokio::test]
async fn a_counter_update_that_never_reached_dynamodb_is_retried_from_its_record() {
    drain_with_failing_counter(false, 3).await;
}

#[tokio::test]
async fn a_counter_update_whose_answer_was_lost_is_retried_and_counted_once() {
    drain_with_failing_counter(true, 3).await;
}

#[tokio::test]
async fn a_crash_between_two_counter_updates_leaves_stats_exact() {
    let (world, app) = World::with_app(Plan::Pro).await;
    let first = world.message(&app, Channel::Sms).await;
    let second = world.message(&app, Channel::Sms).await;
    record_new(&world, &first, EventKind::Sent, 12).await;
    record_new(&world, &second, EventKind::Sent, 8).await;
    let deps = &world.aggregator().await.deps;

    // An invocation that applied the first message's counter (and part of nothing else) and died.
    for (shard, records) in stream_records(&world).await {
        let delivered: Vec<Record> = records.into_iter().filter(passes_filter).collect();
        let event = event(&world, &shard, &delivered).await;
        let inserts: Vec<_> = event
            .dynamo_db_event
            .records
            .iter()
            .filter_map(counted_insert)
            .filter(|(m, _)| *m == first.message_id)
            .map(|(_, insert)| insert)
            .collect();
        let applied = deps.store.apply_stream_counts(first.message_id, &shard, &inserts[..5]).await.unwrap();
        assert_eq!(applied.counted, 5);
    }
    assert_eq!(counted(&world, &first).await[&EventKind::Sent], 5);
    // The mapping delivers the whole batch again.
    assert_eq!(world.stats(&first).await[&EventKind::Sent], 12);
    assert_eq!(world.stats(&second).await[&EventKind::Sent], 8);
}

// --- (d) a writer crashing after its write ------------------------------------------------------

#[tokio::test]
async fn a_writer_crashing_after_its_item_write_and_retrying_leaves_stats_exact() {
    let (world, app) = World::with_app(Plan::Pro).await;
    let message = world.message(&app, Channel::Push).await;
    let subs = world.subscriptions(&app, Channel::Push, 20).await;
    // Every other one with an event id (claimed by its own conditional put before the item's).
    let event_id = |i: usize| i.is_multiple_of(2).then(|| format!("evt-{i}"));
    let events: Vec<Interaction> =
        subs.iter().enumerate().map(|(i, s)| interaction(*s, EventKind::Delivered, event_id(i))).collect();

    // Four writers, five events each: the first write of each lands, and its writer dies
    // before hearing so (an event id's claim for some, the interaction item for the others).
    for group in events.chunks(5) {
        let sabotage = Sabotage::new("PutItem", group[0].subscription_id.to_string(), true, 1);
        let crashing = sabotage.store(&world).await;
        let result = crashing.record_interactions(&message.scope(), group).await;
        assert!(result.is_err(), "the writer should have seen its crash");
        assert_eq!(sabotage.fired(), 1);
    }
    // The retry: what landed is a duplicate now.
    let retried = world.store.record_interactions(&message.scope(), &events).await.unwrap();
    assert!(retried.duplicates() >= 2, "{retried:?}");
    // And the same events again, through the events API: all duplicates.
    let body: Vec<_> = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut event = json!({"message_id": message.message_id, "subscription_id": e.subscription_id, "kind": "delivered"});
            if let Some(id) = event_id(i) {
                event["event_id"] = id.into();
            }
            event
        })
        .collect();
    let r = world.call(app.post("/v1/events", &json!({ "events": body }))).await;
    assert_eq!((r.status, &r.body["accepted"], &r.body["duplicates"]), (200, &json!(0), &json!(20)), "{r:?}");

    let stats = world.stats(&message).await;
    assert_eq!(stats, stored(&world, &message).await);
    assert_eq!(stats[&EventKind::Delivered], 20);
}

// --- (e) what the stream carries besides inserts ------------------------------------------------

#[tokio::test]
async fn removes_modifies_and_other_items_are_never_counted() {
    let (world, app) = World::with_app(Plan::Pro).await;
    let message = world.message(&app, Channel::Push).await;
    let subs = record_new(&world, &message, EventKind::Sent, 10).await;
    assert_eq!(world.stats(&message).await[&EventKind::Sent], 10);

    let interaction_key = |sub: SubscriptionId| {
        let shard = keys::shard_of(sub, message.scope().shards);
        [
            (keys::PK.to_owned(), AttributeValue::S(keys::interaction_partition(message.message_id, shard))),
            (keys::SK.to_owned(), AttributeValue::S(keys::interaction_sort(sub, EventKind::Sent))),
        ]
    };
    // A REMOVE (what TTL's deletion looks like on the stream) and a MODIFY of interactions.
    let mut removed = world.dynamodb.delete_item().table_name(&world.table);
    for (k, v) in interaction_key(subs[0]) {
        removed = removed.key(k, v);
    }
    removed.send().await.expect("delete an interaction");
    let mut modified = world
        .dynamodb
        .update_item()
        .table_name(&world.table)
        .update_expression("SET note = :n")
        .expression_attribute_values(":n", AttributeValue::S("changed".into()));
    for (k, v) in interaction_key(subs[1]) {
        modified = modified.key(k, v);
    }
    modified.send().await.expect("modify an interaction");
    // Inserts of other items (a message, subscriptions) pass by too.
    world.message(&app, Channel::Sms).await;
    world.subscription(&app, Channel::Push, "tok-x", None).await;

    assert_eq!(world.stats(&message).await[&EventKind::Sent], 10);

    // Without the mapping's filter too: the aggregator itself counts interaction inserts only
    // (and the inserts in there were counted already).
    let deps = &world.aggregator().await.deps;
    let mut names = BTreeMap::new();
    for (shard, records) in stream_records(&world).await {
        for r in &records {
            let name = r.event_name().map(|n| n.as_str().to_owned()).unwrap_or_default();
            *names.entry(name).or_insert(0) += 1;
        }
        let response = deps.handle(event(&world, &shard, &records).await, None).await;
        assert!(response.batch_item_failures.is_empty(), "{response:?}");
        // A TTL deletion as DynamoDB streams it, with the service as who deleted it.
        let ttl_remove = Record::builder()
            .event_id("ttl")
            .event_name(OperationType::Remove)
            .aws_region("us-east-1")
            .user_identity(
                Identity::builder().r#type("Service").principal_id("dynamodb.amazonaws.com").build(),
            )
            .dynamodb(
                StreamRecord::builder()
                    .set_keys(Some(
                        interaction_key(subs[2])
                            .into_iter()
                            .map(|(k, v)| {
                                (
                                    k,
                                    aws_sdk_dynamodbstreams::types::AttributeValue::S(
                                        v.as_s().unwrap().clone(),
                                    ),
                                )
                            })
                            .collect(),
                    ))
                    .sequence_number("99999999999999999999")
                    .size_bytes(80)
                    .stream_view_type(StreamViewType::KeysOnly)
                    .build(),
            )
            .build();
        assert!(!passes_filter(&ttl_remove));
        let event = event(&world, &shard, std::slice::from_ref(&ttl_remove)).await;
        assert_eq!(
            event.dynamo_db_event.records[0].user_identity.as_ref().unwrap().principal_id,
            "dynamodb.amazonaws.com"
        );
        assert!(deps.handle(event, None).await.batch_item_failures.is_empty());
    }
    assert!(
        names.get("REMOVE").is_some_and(|n| *n >= 1) && names.get("MODIFY").is_some_and(|n| *n >= 1),
        "{names:?}"
    );
    assert_eq!(counted(&world, &message).await[&EventKind::Sent], 10);
    // Nothing else was counted under any message.
    let counters: Vec<_> = world
        .scan_all()
        .await
        .into_iter()
        .filter(|item| {
            item.get(keys::PK).and_then(|v| v.as_s().ok()).is_some_and(|pk| pk.starts_with("STATS#"))
        })
        .collect();
    assert!(
        counters
            .iter()
            .all(|c| c.get(keys::PK).and_then(|v| v.as_s().ok()) == Some(&keys::stats(message.message_id))),
        "{counters:?}"
    );
}

// --- (f) how far stats trail ---------------------------------------------------------------------

#[tokio::test]
async fn stats_trail_the_stored_events_by_well_under_five_seconds() {
    let (world, app) = World::with_app(Plan::Pro).await;
    let message = world.message(&app, Channel::Push).await;
    let aggregator = world.aggregator().await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let polling = run_stream_poller(&aggregator.stream, &aggregator.deps, stopped);
    let measuring = async {
        let mut lags = Vec::new();
        let mut expected = 0;
        for round in 0..6 {
            let n = 1 + round * 10;
            let written = Instant::now();
            record_new(&world, &message, EventKind::Sent, n).await;
            expected += n as u64;
            let recorded = written.elapsed();
            loop {
                if counted(&world, &message).await[&EventKind::Sent] == expected {
                    break;
                }
                // The last event was stored when the recording returned.
                assert!(
                    written.elapsed() - recorded < Duration::from_secs(5),
                    "stats still short of {expected} 5 s after the last event was stored"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            lags.push((n, recorded, written.elapsed()));
        }
        let _ = stop.send(true);
        lags
    };
    let ((), lags) = tokio::join!(polling, measuring);
    // How long after the last event was stored the stats had it (each round's events were all
    // stored by then; the earlier ones were counted while the later ones were written).
    let worst = lags.iter().map(|(_, recorded, lag)| lag.saturating_sub(*recorded)).max().unwrap();
    println!(
        "{}",
        json!({
            "test": "stats_lag",
            "rounds": lags.iter().map(|(n, recorded, lag)| json!({"events": n, "recorded_ms": recorded.as_millis() as u64, "counted_after_ms": lag.as_millis() as u64, "after_the_last_write_ms": lag.saturating_sub(*recorded).as_millis() as u64})).collect::<Vec<_>>(),
            "worst_after_the_last_write_ms": worst.as_millis() as u64,
            "stream": aggregator.stream.counts.json(),
        })
    );
    assert!(worst < Duration::from_secs(5), "{lags:?}");
    // A single event, from its write to its count.
    assert!(lags[0].2 < Duration::from_secs(5), "{lags:?}");
    assert_eq!(counted(&world, &message).await, stored(&world, &message).await);
    // The clock the stats read expiry by is the world's (the test clock), untouched here.
    assert_eq!(world.clock.now(), retarget_tests::epoch());
}

//! Ingest: events through the `POST /v1/events` handler (as API Gateway hands them to Lambda),
//! side by side with the naive design (one UpdateItem per event) on the same events. The
//! stats of what was accepted are then counted from the table's stream by the stats
//! aggregator, whose requests are reported apart: the handler's figures are the write path's,
//! the aggregator's what the counters cost on top.

use futures::{StreamExt, TryStreamExt, stream};
use retarget_shared::Store;
use retarget_shared::bootstrap::HttpFunction;
use retarget_shared::domain::{Channel, EventKind, Message, Subscription, SubscriptionId};
use retarget_shared::edge::request::AppFunction;
use serde_json::{Value, json};

use crate::aggregator::Aggregator;
use crate::counting::{Clients, Hottest};
use crate::seed;
use crate::sys::{Stopwatch, peak_rss_mib};

/// The recorded API Gateway HTTP API (payload 2.0) event the integration tests use too.
const FIXTURE: &str = include_str!("../../../tests/fixtures/apigw-http-api-request.json");

/// The fixture as a `POST /v1/events` with this key and body (what `tests/src/lib.rs`'s
/// `ApiRequest` builds), serialised: Lambda's runtime receives it as text.
fn api_event(api_key: &str, body: &str) -> anyhow::Result<String> {
    let mut event: Value = serde_json::from_str(FIXTURE)?;
    event["rawPath"] = "/v1/events".into();
    event["rawQueryString"] = "".into();
    event["requestContext"]["http"]["method"] = "POST".into();
    event["requestContext"]["http"]["path"] = "/v1/events".into();
    event["headers"]["authorization"] = format!("Bearer {api_key}").into();
    event["headers"]["content-type"] = "application/json".into();
    event["headers"]["content-length"] = body.len().to_string().into();
    event["body"] = body.into();
    event["isBase64Encoded"] = false.into();
    Ok(event.to_string())
}

/// `events` events in waves, as they arrive: every recipient's `sent`, then the deliveries
/// (80 %), then the clicks (10 %). Returns (subscription index, kind) pairs.
fn event_plan(events: usize) -> (usize, Vec<(usize, EventKind)>) {
    // 1.9 events per recipient on average.
    let recipients = (events * 10).div_ceil(19);
    let mut plan = Vec::with_capacity(events);
    for kind in [EventKind::Sent, EventKind::Delivered, EventKind::Clicked] {
        plan.extend((0..recipients).filter(|&i| seed::kinds_of(i).contains(&kind)).map(|i| (i, kind)));
    }
    plan.truncate(events);
    (recipients, plan)
}

pub struct Options {
    pub events: usize,
    pub per_request: usize,
    pub naive_concurrency: usize,
    /// Concurrent writers (Lambda instances) taking the requests, each one at a time; 1 is one
    /// instance taking them all in turn.
    pub writers: usize,
}

/// The event rate of a large campaign's burst at which the hottest item's write rate is stated.
const BURST_EVENTS_PER_SECOND: f64 = 16_000.0;

pub async fn run(clients: &Clients, store: &Store, opts: Options) -> anyhow::Result<()> {
    // Setup (not measured): an app and key, a message, its recipients' subscriptions.
    let app = seed::app(store).await?;
    let api_key = store.create_api_key(app.app_id).await?.reveal().to_owned();
    let (recipients, plan) = event_plan(opts.events);
    let message = seed::message(store, app.app_id, recipients, Channel::Push).await?;
    let now = store.clock().now();
    let subs: Vec<Subscription> = (0..recipients).map(|i| seed::person(app.app_id, i, now).0).collect();
    for chunk in subs.chunks(5000) {
        store.bulk_load_subscriptions(chunk).await?;
    }
    let ids: Vec<SubscriptionId> = subs.iter().map(|s| s.subscription_id).collect();
    drop(subs);
    let bodies: Vec<String> = plan
        .chunks(opts.per_request)
        .map(|chunk| {
            let events: Vec<Value> = chunk
                .iter()
                .map(|(i, kind)| {
                    json!({"message_id": message.message_id, "subscription_id": ids[*i], "kind": kind})
                })
                .collect();
            api_event(&api_key, &json!({ "events": events }).to_string())
        })
        .collect::<Result<_, _>>()?;

    // Ours: `writers` lanes of requests taken concurrently, each one request at a time, as
    // that many Lambda instances take them (one lane: one instance taking them all).
    let events = AppFunction::<retarget_events::Events>::new(store.clone());
    let writers = opts.writers.max(1);
    let mut lanes: Vec<Vec<&String>> = vec![Vec::new(); writers];
    for (i, body) in bodies.iter().enumerate() {
        lanes[i % writers].push(body);
    }
    let (batch_before, tally_before) = (store.stats().snapshot(), clients.tally.snapshot());
    let puts_before = store.stats().put_requests.load(std::sync::atomic::Ordering::Relaxed);
    clients.tally.take_hottest();
    let watch = Stopwatch::start();
    let counted: Vec<(u64, u64, u64)> = stream::iter(lanes)
        .map(|lane| take_lane(&events, lane))
        .buffer_unordered(writers)
        .try_collect()
        .await?;
    let (accepted, duplicates, rejected) =
        counted.iter().fold((0, 0, 0), |(a, d, r), (a2, d2, r2)| (a + a2, d + d2, r + r2));
    let (wall, cpu) = watch.stop();
    let ours = clients.tally.snapshot().since(&tally_before);
    let hottest = clients.tally.take_hottest();
    let [_, items_written, _, retries] = store.stats().snapshot();
    // Items written: by batch writes, and by conditional puts (each one item, written or not).
    let puts = store.stats().put_requests.load(std::sync::atomic::Ordering::Relaxed) - puts_before;
    let items_written = items_written - batch_before[1] + puts;
    let events = plan.len() as f64;

    // The stats of what was accepted, counted from the stream (in the background on AWS).
    let aggregator = Aggregator::new(clients, store.table());
    let counters = aggregator.drain().await?;
    let counters_hottest = aggregator.take_hottest();
    let stats: u64 = store.message_stats(&message.scope()).await?.values().sum();
    anyhow::ensure!(stats == accepted, "stats count {stats} events, the handler accepted {accepted}");

    // Naive, on the same events: one UpdateItem per event on one item per (message,
    // subscription), a few in flight like the store's own batches (skipped at concurrency 0).
    let requests = ours.dynamodb_requests() as f64;
    let naive = if opts.naive_concurrency == 0 {
        Value::Null
    } else {
        let naive_before = clients.tally.snapshot();
        let naive_watch = Stopwatch::start();
        naive_ingest(clients, store, &message, &ids, &plan, opts.naive_concurrency).await?;
        let (naive_wall, naive_cpu) = naive_watch.stop();
        let naive = clients.tally.snapshot().since(&naive_before);
        json!({
            "concurrency": opts.naive_concurrency,
            "wall_seconds": naive_wall, "cpu_seconds": naive_cpu,
            "dynamodb_requests": naive.dynamodb_requests(),
            "events_per_dynamodb_request": events / naive.dynamodb_requests() as f64,
            "cpu_over_wall": naive_cpu / naive_wall,
            "cpu_us_per_dynamodb_request": naive_cpu / naive.dynamodb_requests() as f64 * 1e6,
            "write_units_per_event": naive.write_units() / events,
            "over_ours_requests": naive.dynamodb_requests() as f64 / requests,
            "over_ours_wall": naive_wall / wall,
        })
    };

    println!(
        "{}",
        json!({
            "bench": "ingest",
            "events": plan.len(), "recipients": recipients, "events_per_request": opts.per_request,
            "writers": writers, "events_per_second": events / wall,
            "http_requests": bodies.len(), "accepted": accepted, "duplicates": duplicates, "rejected": rejected,
            "wall_seconds": wall, "cpu_seconds": cpu,
            "wall_us_per_event": wall / events * 1e6, "cpu_us_per_event": cpu / events * 1e6,
            "cpu_over_wall": cpu / wall,
            "dynamodb_requests": ours.dynamodb_requests(), "events_per_dynamodb_request": events / requests,
            "cpu_us_per_dynamodb_request": cpu / requests * 1e6,
            "items_written": items_written, "items_written_per_event": items_written as f64 / events,
            "write_units_per_event": ours.write_units() / events,
            "billed_read_units_per_event": ours.billed_read_units() / events,
            "unprocessed_retries": retries - batch_before[3],
            "dynamodb": ours.json(),
            "stats_counted": stats,
            "stats_aggregator": counters.json(accepted as f64),
            "hottest": hot_json(&hottest, events, &counters_hottest, counters.invocations),
            "naive_over_ours_requests": naive["over_ours_requests"],
            "naive_over_ours_wall": naive["over_ours_wall"],
            "naive": naive,
            "peak_rss_mib": peak_rss_mib(),
        })
    );
    Ok(())
}

/// One writer: its requests through the handler in turn; (accepted, duplicates, rejected).
async fn take_lane(
    events: &AppFunction<retarget_events::Events>,
    lane: Vec<&String>,
) -> anyhow::Result<(u64, u64, u64)> {
    let (mut accepted, mut duplicates, mut rejected) = (0u64, 0u64, 0u64);
    for body in lane {
        let request = lambda_http::request::from_str(body)?;
        let response = events.handle(request).await;
        anyhow::ensure!(response.status() == 200, "events handler answered {}", response.status());
        let outcome: Value = serde_json::from_slice(response.body().as_ref())?;
        accepted += outcome["accepted"].as_u64().unwrap_or(0);
        duplicates += outcome["duplicates"].as_u64().unwrap_or(0);
        rejected += outcome["rejected"].as_array().map_or(0, |r| r.len() as u64);
    }
    Ok((accepted, duplicates, rejected))
}

/// The hottest item and partition key of the write path, and of the counters, with the write
/// rate each would take at [`BURST_EVENTS_PER_SECOND`] — on paper: its share of the run's
/// writes times that rate (every write here is of an item under 1 KB: one write unit).
///
/// A counter item is written at most once per aggregator invocation of its stream shard, and
/// Lambda runs one invocation per shard at a time, each after its batch fills (1,000 records)
/// or its 1 s window closes: its rate is the invocations per second of one shard, not a share
/// of the events.
fn hot_json(hottest: &Hottest, events: f64, counters: &Hottest, invocations: usize) -> Value {
    let at_burst = |writes: u64| writes as f64 / events * BURST_EVENTS_PER_SECOND;
    json!({
        "items_written": hottest.items,
        "item": hottest.item,
        "item_writes": hottest.item_writes,
        "item_wcu_per_s_at_16k_events_per_s": at_burst(hottest.item_writes),
        "partition_key": hottest.partition_key,
        "partition_key_writes": hottest.partition_key_writes,
        "partition_key_wcu_per_s_at_16k_events_per_s": at_burst(hottest.partition_key_writes),
        "counter_items": counters.items,
        "counter_item": counters.item,
        "counter_item_writes": counters.item_writes,
        "counter_item_writes_per_invocation": counters.item_writes as f64 / invocations.max(1) as f64,
    })
}

async fn naive_ingest(
    clients: &Clients,
    store: &Store,
    message: &Message,
    ids: &[SubscriptionId],
    plan: &[(usize, EventKind)],
    concurrency: usize,
) -> anyhow::Result<()> {
    use aws_sdk_dynamodb::types::AttributeValue;
    let expires = AttributeValue::N(message.expires_at.timestamp().to_string());
    stream::iter(plan)
        .map(|(i, kind)| {
            clients
                .dynamodb
                .update_item()
                .table_name(store.table())
                .key("pk", AttributeValue::S(format!("NAIVE#{}#{}", message.message_id, ids[*i])))
                .key("sk", AttributeValue::S("NAIVE".into()))
                .update_expression("ADD kinds :k SET expires_at = :exp")
                .expression_attribute_values(":k", AttributeValue::Ss(vec![kind.as_str().to_owned()]))
                .expression_attribute_values(":exp", expires.clone())
                .send()
        })
        .buffer_unordered(concurrency)
        .map_err(aws_sdk_dynamodb::Error::from)
        .try_collect::<Vec<_>>()
        .await?;
    Ok(())
}

//! Ingest: events through the `POST /v1/events` handler (as API Gateway hands them to Lambda),
//! side by side with the naive design (one UpdateItem per event) on the same events. The
//! stats of what was accepted are then counted from the table's stream by the stats
//! aggregator, whose requests are reported apart: the handler's figures are the write path's,
//! the aggregator's what the counters cost on top.

use futures::{StreamExt, TryStreamExt, stream};
use retarget_shared::Store;
use retarget_shared::bootstrap::HttpFunction;
use retarget_shared::domain::{EventKind, Message, Subscription, SubscriptionId};
use retarget_shared::edge::request::AppFunction;
use serde_json::{Value, json};

use crate::aggregator::Aggregator;
use crate::counting::Clients;
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
}

pub async fn run(clients: &Clients, store: &Store, opts: Options) -> anyhow::Result<()> {
    // Setup (not measured): an app and key, a message, its recipients' subscriptions.
    let app = seed::app(store).await?;
    let api_key = store.create_api_key(app.app_id).await?.reveal().to_owned();
    let (recipients, plan) = event_plan(opts.events);
    let message = seed::message(store, app.app_id, recipients).await?;
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

    // Ours: one request at a time, as one Lambda instance takes them.
    let events = AppFunction::<retarget_events::Events>::new(store.clone());
    let (batch_before, tally_before) = (store.stats().snapshot(), clients.tally.snapshot());
    let watch = Stopwatch::start();
    let (mut accepted, mut duplicates, mut rejected) = (0u64, 0u64, 0u64);
    for body in &bodies {
        let request = lambda_http::request::from_str(body)?;
        let response = events.handle(request).await;
        anyhow::ensure!(response.status() == 200, "events handler answered {}", response.status());
        let outcome: Value = serde_json::from_slice(response.body().as_ref())?;
        accepted += outcome["accepted"].as_u64().unwrap_or(0);
        duplicates += outcome["duplicates"].as_u64().unwrap_or(0);
        rejected += outcome["rejected"].as_array().map_or(0, |r| r.len() as u64);
    }
    let (wall, cpu) = watch.stop();
    let ours = clients.tally.snapshot().since(&tally_before);
    let [_, items_written, _, retries] = store.stats().snapshot();
    let items_written = items_written - batch_before[1];
    let events = plan.len() as f64;

    // The stats of what was accepted, counted from the stream (in the background on AWS).
    let counters = Aggregator::new(clients, store.table()).drain().await?;
    let stats: u64 = store.message_stats(&message.scope()).await?.values().sum();
    anyhow::ensure!(stats == accepted, "stats count {stats} events, the handler accepted {accepted}");

    // Naive, on the same events: one UpdateItem per event on one item per (message,
    // subscription), a few in flight like the store's own batches.
    let naive_before = clients.tally.snapshot();
    let naive_watch = Stopwatch::start();
    naive_ingest(clients, store, &message, &ids, &plan, opts.naive_concurrency).await?;
    let (naive_wall, naive_cpu) = naive_watch.stop();
    let naive = clients.tally.snapshot().since(&naive_before);

    let requests = ours.dynamodb_requests() as f64;
    println!(
        "{}",
        json!({
            "bench": "ingest",
            "events": plan.len(), "recipients": recipients, "events_per_request": opts.per_request,
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
            "naive": {
                "concurrency": opts.naive_concurrency,
                "wall_seconds": naive_wall, "cpu_seconds": naive_cpu,
                "dynamodb_requests": naive.dynamodb_requests(),
                "events_per_dynamodb_request": events / naive.dynamodb_requests() as f64,
                "cpu_over_wall": naive_cpu / naive_wall,
                "cpu_us_per_dynamodb_request": naive_cpu / naive.dynamodb_requests() as f64 * 1e6,
                "write_units_per_event": naive.write_units() / events,
            },
            "naive_over_ours_requests": naive.dynamodb_requests() as f64 / requests,
            "naive_over_ours_wall": naive_wall / wall,
            "peak_rss_mib": peak_rss_mib(),
        })
    );
    Ok(())
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

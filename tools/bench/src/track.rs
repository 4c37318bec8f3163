//! `POST /v1/track` through the webhooks function's handler (as API Gateway hands requests to
//! Lambda), in three phases over the same number of requests, `lanes` at a time:
//!
//! - forged tokens (one byte of a genuine token changed): what an attacker's flood costs —
//!   requests/s, CPU per request, and the DynamoDB requests it makes (the claim: none);
//! - genuine tokens, one new `clicked` each: requests/s, CPU and DynamoDB requests per report;
//! - the same reports through `POST /v1/events`, one event per request with the API key: the
//!   baseline a device would otherwise need a relay (and a key) for.

use futures::{StreamExt, stream};
use retarget_shared::Store;
use retarget_shared::bootstrap::HttpFunction;
use retarget_shared::domain::{Channel, Subscription, Tracked};
use retarget_shared::edge::request::AppFunction;
use retarget_shared::services::tracking::TrackingKeys;
use serde_json::{Value, json};

use crate::counting::Clients;
use crate::seed;
use crate::sys::Stopwatch;

const FIXTURE: &str = include_str!("../../../tests/fixtures/apigw-http-api-request.json");

fn request(path: &str, api_key: Option<&str>, body: &str) -> anyhow::Result<String> {
    let mut event: Value = serde_json::from_str(FIXTURE)?;
    event["rawPath"] = path.into();
    event["rawQueryString"] = "".into();
    event["requestContext"]["http"]["method"] = "POST".into();
    event["requestContext"]["http"]["path"] = path.into();
    if let Some(key) = api_key {
        event["headers"]["authorization"] = format!("Bearer {key}").into();
    } else if let Some(headers) = event["headers"].as_object_mut() {
        headers.remove("authorization");
    }
    event["headers"]["content-type"] = "application/json".into();
    event["headers"]["content-length"] = body.len().to_string().into();
    event["body"] = body.into();
    event["isBase64Encoded"] = false.into();
    Ok(event.to_string())
}

/// Runs the requests `lanes` at a time through `handler`: every answer must be `status`.
async fn phase<H: HttpFunction>(
    clients: &Clients,
    handler: &H,
    requests: &[String],
    lanes: usize,
    status: u16,
) -> anyhow::Result<Value> {
    let before = clients.tally.snapshot();
    let watch = Stopwatch::start();
    let answers: Vec<anyhow::Result<u16>> = stream::iter(requests)
        .map(|raw| async move {
            let response = handler.handle(lambda_http::request::from_str(raw)?).await;
            Ok(response.status().as_u16())
        })
        .buffer_unordered(lanes)
        .collect()
        .await;
    let (wall, cpu) = watch.stop();
    let unexpected = answers.iter().filter(|a| !matches!(a, Ok(s) if *s == status)).count();
    anyhow::ensure!(unexpected == 0, "{unexpected} of {} answers were not {status}", requests.len());
    let dynamodb = clients.tally.snapshot().since(&before).dynamodb_requests();
    let n = requests.len() as f64;
    Ok(json!({
        "requests": requests.len(),
        "seconds": wall,
        "requests_per_second": n / wall,
        "cpu_ms_per_request": cpu * 1000.0 / n,
        "dynamodb_requests": dynamodb,
        "dynamodb_requests_per_request": dynamodb as f64 / n,
    }))
}

pub async fn run(clients: &Clients, store: &Store, requests: usize, lanes: usize) -> anyhow::Result<()> {
    // Setup (not measured): an app and key, a message, its recipients, their tokens.
    let app = seed::app(store).await?;
    let api_key = store.create_api_key(app.app_id).await?.reveal().to_owned();
    let message = seed::message(store, app.app_id, requests, Channel::Push).await?;
    let now = store.clock().now();
    let subs: Vec<Subscription> = (0..requests).map(|i| seed::person(app.app_id, i, now).0).collect();
    for chunk in subs.chunks(5000) {
        store.bulk_load_subscriptions(chunk).await?;
    }
    let keys = TrackingKeys::new(store.clone());
    let mut tokens = Vec::with_capacity(requests);
    for sub in &subs {
        let tracked = Tracked {
            app_id: app.app_id,
            message_id: message.message_id,
            subscription_id: sub.subscription_id,
        };
        tokens.push(keys.mint(&tracked).await?);
    }
    let track = |token: &str, kind: &str| {
        request("/v1/track", None, &json!({"token": token, "kind": kind}).to_string())
    };
    let forged: Vec<String> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut bytes = t.clone().into_bytes();
            let at = 1 + i % (bytes.len() - 1);
            bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
            track(&String::from_utf8(bytes)?, "clicked")
        })
        .collect::<anyhow::Result<_>>()?;
    let genuine: Vec<String> = tokens.iter().map(|t| track(t, "clicked")).collect::<anyhow::Result<_>>()?;
    let events: Vec<String> = subs
        .iter()
        .map(|s| {
            let body = json!({"events": [{"message_id": message.message_id, "subscription_id": s.subscription_id, "kind": "delivered"}]});
            request("/v1/events", Some(&api_key), &body.to_string())
        })
        .collect::<anyhow::Result<_>>()?;

    let webhooks = retarget_webhooks::Deps::new(store.clone(), None);
    // Warm: the verifier loads the keyring once, as a Lambda instance does on its first token.
    let warm = track(&tokens[0], "delivered")?;
    anyhow::ensure!(webhooks.handle(lambda_http::request::from_str(&warm)?).await.status() == 204, "warm-up");
    let forged_figures = phase(clients, &webhooks, &forged, lanes, 401).await?;
    let genuine_figures = phase(clients, &webhooks, &genuine, lanes, 204).await?;
    let events_handler = AppFunction::<retarget_events::Events>::new(store.clone());
    let events_figures = phase(clients, &events_handler, &events, lanes, 200).await?;
    // What was recorded, counted from the table's stream: one click and one delivery each.
    crate::aggregator::Aggregator::new(clients, store.table()).drain().await?;
    let stats = store.message_stats(&message.scope()).await?;
    let count = |kind| stats.get(&kind).copied().unwrap_or_default();
    let (clicked, delivered) = (
        count(retarget_shared::domain::EventKind::Clicked),
        count(retarget_shared::domain::EventKind::Delivered),
    );
    anyhow::ensure!(
        clicked == requests as u64 && delivered == requests as u64,
        "stored {clicked} clicks and {delivered} deliveries for {requests} recipients"
    );
    let rate = |v: &Value| v["requests_per_second"].as_f64().unwrap_or_default();
    println!(
        "{}",
        json!({
            "bench": "track",
            "requests": requests,
            "lanes": lanes,
            "forged": forged_figures,
            "genuine": genuine_figures,
            "events_api_one_per_request": events_figures,
            "genuine_vs_events_api": rate(&genuine_figures) / rate(&events_figures),
            "forged_vs_genuine": rate(&forged_figures) / rate(&genuine_figures),
            "stored": {"clicked": clicked, "delivered": delivered},
        })
    );
    Ok(())
}

//! Fault injection for end-to-end tests: a small HTTP proxy in front of DynamoDB Local or the
//! SQS emulator that, by a seeded RNG, answers some requests with the errors AWS gives under
//! load (throttling, partial batches, 500s) so the real SDK retries and the project's own batch
//! retry code are what deal with them. Some faults are answers lost after the request was
//! carried out (a DynamoDB write, an SQS send): the caller sees an error for something that
//! happened, and its retry does it again.
//!
//! Requests are forwarded unchanged (the local stand-ins do not check signatures, so a batch
//! cut down by the proxy is still accepted).
//!
//! The DynamoDB proxy can also stand in for IAM's `dynamodb:LeadingKeys` deny conditions, which
//! DynamoDB Local does not evaluate: [`FaultProxy::deny_leading_keys`] refuses, as AWS would with
//! `AccessDeniedException`, every request naming a key that matches one of the patterns.
//!
//! For benchmarks the proxy adds AWS's in-region latency instead ([`latency`],
//! [`FaultProxy::with_latency`]; the `retarget-proxy` binary runs one as its own process). Its
//! figures are served at `GET /_proxy/stats` and zeroed by `POST /_proxy/reset`.
//!
//! A test and benchmark tool: its `expect`s are on binding loopback and on lock poisoning,
//! never on what a request carries.
#![allow(clippy::expect_used)]

pub mod latency;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http::request::Parts;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::latency::{Call, LatencyCounts, LatencyModel};

/// What the proxy answers.
type Reply = Response<Full<Bytes>>;

/// Which service the proxy stands in front of (they speak different error dialects).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    DynamoDb,
    Sqs,
}

/// How often each fault happens, as a fraction of the requests it applies to.
#[derive(Debug, Clone, Copy, Default)]
pub struct FaultRates {
    /// Any DynamoDB request: 400 ProvisionedThroughputExceededException, not forwarded.
    pub throttle: f64,
    /// BatchWriteItem / BatchGetItem: only part forwarded, the rest returned as unprocessed.
    pub partial_batch: f64,
    /// DynamoDB writes (PutItem, UpdateItem, DeleteItem, BatchWriteItem, TransactWriteItems):
    /// forwarded and applied, then answered 500 InternalServerError (the answer is lost), so
    /// the SDK retries a write that already happened — and a conditional one then meets its
    /// own condition.
    pub dynamo_lost_answer: f64,
    /// SendMessageBatch: a 500 for the whole call, not forwarded.
    pub sqs_error: f64,
    /// SendMessageBatch: some entries reported in `Failed` (not forwarded).
    pub sqs_partial: f64,
    /// SendMessageBatch: forwarded and stored, then answered 500 (the answer is lost), so the
    /// client sends the same messages again.
    pub sqs_lost_response: f64,
    /// The first three SendMessageBatch calls get, in turn, a 500, a lost response and a
    /// partial failure, whatever the rates (a dispatch makes few of them).
    pub sqs_scripted: bool,
}

/// Faults injected so far, by kind.
#[derive(Debug, Default)]
pub struct FaultCounts {
    pub requests: AtomicU64,
    pub throttled: AtomicU64,
    pub unprocessed_items: AtomicU64,
    pub unprocessed_keys: AtomicU64,
    /// DynamoDB writes applied whose answer was replaced by a 500.
    pub dynamo_lost_answers: AtomicU64,
    pub sqs_errors: AtomicU64,
    pub sqs_failed_entries: AtomicU64,
    pub sqs_lost_responses: AtomicU64,
    /// Requests refused by [`FaultProxy::deny_leading_keys`].
    pub access_denied: AtomicU64,
}

impl FaultCounts {
    pub fn json(&self) -> Value {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        json!({
            "requests": get(&self.requests),
            "throttled": get(&self.throttled),
            "batch_write_unprocessed_items": get(&self.unprocessed_items),
            "batch_get_unprocessed_keys": get(&self.unprocessed_keys),
            "dynamodb_lost_answers": get(&self.dynamo_lost_answers),
            "sqs_500": get(&self.sqs_errors),
            "sqs_failed_entries": get(&self.sqs_failed_entries),
            "sqs_lost_responses": get(&self.sqs_lost_responses),
            "access_denied": get(&self.access_denied),
        })
    }
}

struct State {
    service: Service,
    upstream: String,
    rates: FaultRates,
    rng: Mutex<StdRng>,
    enabled: AtomicBool,
    counts: Arc<FaultCounts>,
    client: reqwest::Client,
    batches_seen: AtomicU64,
    /// IAM `StringLike` patterns of partition keys this caller may not name, and what was
    /// refused: (operation, the key).
    denied_keys: Mutex<Vec<String>>,
    refused: Mutex<Vec<(String, String)>>,
    latency: Option<LatencyModel>,
    latency_counts: Arc<LatencyCounts>,
}

/// A running fault-injecting proxy; it stops when dropped.
pub struct FaultProxy {
    pub url: String,
    pub counts: Arc<FaultCounts>,
    pub latency: Arc<LatencyCounts>,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Starts a proxy on loopback forwarding to `upstream` (e.g. `http://127.0.0.1:8000`).
    pub async fn start(service: Service, upstream: &str, rates: FaultRates, seed: u64) -> Self {
        Self::serve(service, upstream, rates, None, seed, 0).await
    }

    /// A proxy injecting no faults that holds every answer until `model`'s latency for it has
    /// passed, on `port` (0: any free one).
    pub async fn with_latency(
        service: Service,
        upstream: &str,
        model: LatencyModel,
        seed: u64,
        port: u16,
    ) -> Self {
        Self::serve(service, upstream, FaultRates::default(), Some(model), seed, port).await
    }

    async fn serve(
        service: Service,
        upstream: &str,
        rates: FaultRates,
        latency: Option<LatencyModel>,
        seed: u64,
        port: u16,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))
            .await
            .expect("bind the fault proxy");
        let url = format!("http://{}", listener.local_addr().expect("proxy address"));
        let counts = Arc::new(FaultCounts::default());
        let latency_counts = Arc::new(LatencyCounts::default());
        let state = Arc::new(State {
            service,
            upstream: upstream.trim_end_matches('/').to_owned(),
            rates,
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            enabled: AtomicBool::new(true),
            counts: counts.clone(),
            client: reqwest::Client::builder().no_proxy().build().expect("proxy http client"),
            batches_seen: AtomicU64::new(0),
            denied_keys: Mutex::new(Vec::new()),
            refused: Mutex::new(Vec::new()),
            latency,
            latency_counts: latency_counts.clone(),
        });
        let serving = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let state = serving.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let state = state.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(&state, request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { url, counts, latency: latency_counts, state, task }
    }

    /// Turns faults on or off (requests are forwarded either way).
    pub fn set_enabled(&self, on: bool) {
        self.state.enabled.store(on, Ordering::SeqCst);
    }

    /// From now on, refuses every DynamoDB request that names a key (anywhere in its body: a
    /// key, an item, a Query's values) matching one of these IAM `StringLike` patterns, with the
    /// `AccessDeniedException` an explicit `Deny` on `dynamodb:LeadingKeys` gives on AWS. An
    /// empty list denies nothing.
    pub fn deny_leading_keys(&self, patterns: &[String]) {
        *self.state.denied_keys.lock().expect("denied keys") = patterns.to_vec();
    }

    /// What was refused so far: (operation, the key that matched).
    pub fn refused(&self) -> Vec<(String, String)> {
        self.state.refused.lock().expect("refused").clone()
    }
}

/// IAM's `StringLike`: `*` matches any run of characters, `?` any one; case-sensitive.
pub fn string_like(pattern: &str, value: &str) -> bool {
    fn go(p: &[u8], v: &[u8]) -> bool {
        match p.split_first() {
            None => v.is_empty(),
            Some((b'*', rest)) => (0..=v.len()).any(|i| go(rest, &v[i..])),
            Some((b'?', rest)) => !v.is_empty() && go(rest, &v[1..]),
            Some((c, rest)) => v.first() == Some(c) && go(rest, &v[1..]),
        }
    }
    go(pattern.as_bytes(), value.as_bytes())
}

/// The first string of `value` (at any depth) matching one of `patterns`.
fn first_denied<'a>(value: &'a Value, patterns: &[String]) -> Option<&'a str> {
    match value {
        Value::String(s) => patterns.iter().any(|p| string_like(p, s)).then_some(s.as_str()),
        Value::Array(items) => items.iter().find_map(|v| first_denied(v, patterns)),
        Value::Object(map) => map.values().find_map(|v| first_denied(v, patterns)),
        _ => None,
    }
}

impl State {
    fn roll(&self, p: f64) -> bool {
        p > 0.0 && self.enabled.load(Ordering::SeqCst) && self.rng.lock().expect("rng").random::<f64>() < p
    }

    fn below(&self, n: usize) -> usize {
        self.rng.lock().expect("rng").random_range(0..n)
    }
}

fn respond(status: StatusCode, content_type: &str, body: Vec<u8>) -> Reply {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = content_type.parse() {
        response.headers_mut().insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

async fn handle(state: &State, request: Request<Incoming>) -> Reply {
    let arrived = Instant::now();
    if request.uri().path().starts_with("/_proxy/") {
        return control(state, &request);
    }
    state.counts.requests.fetch_add(1, Ordering::Relaxed);
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return respond(StatusCode::BAD_GATEWAY, "text/plain", e.to_string().into_bytes()),
    };
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.rsplit('.').next())
        .unwrap_or_default()
        .to_owned();
    let sent = body.len();
    let reply = match state.service {
        Service::DynamoDb => dynamodb(state, &parts, &target, body).await,
        Service::Sqs => sqs(state, &parts, &target, body).await,
    };
    if let Some(model) = &state.latency {
        let call = match state.service {
            Service::DynamoDb => Call::dynamodb(&target),
            Service::Sqs => Call::Sqs,
        };
        let received = hyper::body::Body::size_hint(reply.body()).exact().unwrap_or(0);
        let bytes = sent + usize::try_from(received).unwrap_or(usize::MAX);
        let modelled = model.draw(call, bytes, &mut *state.rng.lock().expect("rng"));
        let upstream = arrived.elapsed();
        state.latency_counts.record(modelled, upstream);
        tokio::time::sleep_until((arrived + modelled).into()).await;
    }
    reply
}

/// `GET /_proxy/stats`: the faults injected and the latency model's figures so far;
/// `POST /_proxy/reset`: zeroes the latter.
fn control(state: &State, request: &Request<Incoming>) -> Reply {
    let json = |value: Value| respond(StatusCode::OK, "application/json", value.to_string().into_bytes());
    match (request.method().as_str(), request.uri().path()) {
        ("GET", "/_proxy/stats") => {
            json(json!({"faults": state.counts.json(), "latency": state.latency_counts.json()}))
        }
        ("POST", "/_proxy/reset") => {
            state.latency_counts.reset();
            json(json!({"reset": true}))
        }
        _ => respond(StatusCode::NOT_FOUND, "text/plain", b"unknown proxy route".to_vec()),
    }
}

async fn dynamodb(state: &State, parts: &Parts, target: &str, body: Bytes) -> Reply {
    let patterns = state.denied_keys.lock().expect("denied keys").clone();
    if !patterns.is_empty() {
        let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if let Some(key) = first_denied(&request, &patterns) {
            state.counts.access_denied.fetch_add(1, Ordering::Relaxed);
            state.refused.lock().expect("refused").push((target.to_owned(), key.to_owned()));
            let error = json!({
                "__type": "com.amazon.coral.service#AccessDeniedException",
                "message": format!("not authorized to perform: dynamodb:{target} with an explicit deny in an identity-based policy (leading key {key})")
            });
            return respond(
                StatusCode::BAD_REQUEST,
                "application/x-amz-json-1.0",
                error.to_string().into_bytes(),
            );
        }
    }
    if state.roll(state.rates.throttle) {
        state.counts.throttled.fetch_add(1, Ordering::Relaxed);
        let error = json!({
            "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
            "message": "The level of configured provisioned throughput for the table was exceeded (injected)"
        });
        return respond(
            StatusCode::BAD_REQUEST,
            "application/x-amz-json-1.0",
            error.to_string().into_bytes(),
        );
    }
    if (target == "BatchWriteItem" || target == "BatchGetItem")
        && state.roll(state.rates.partial_batch)
        && let Some(response) = partial_batch(state, parts, target, &body).await
    {
        return response;
    }
    if DYNAMODB_WRITES.contains(&target) && state.roll(state.rates.dynamo_lost_answer) {
        let (response, _) = forward(state, parts, body).await;
        // Only an answer that said "done" is lost; a real error goes back as it is.
        if !response.status().is_success() {
            return response;
        }
        state.counts.dynamo_lost_answers.fetch_add(1, Ordering::Relaxed);
        let error = json!({
            "__type": "com.amazonaws.dynamodb.v20120810#InternalServerError",
            "message": "Internal server error (injected after the write was applied)"
        });
        return respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            "application/x-amz-json-1.0",
            error.to_string().into_bytes(),
        );
    }
    forward(state, parts, body).await.0
}

/// The DynamoDB operations that write (what [`FaultRates::dynamo_lost_answer`] applies to).
pub const DYNAMODB_WRITES: [&str; 5] =
    ["PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"];

/// Forwards part of a single-table batch and answers the rest as unprocessed.
async fn partial_batch(state: &State, parts: &Parts, target: &str, body: &Bytes) -> Option<Reply> {
    let mut request: Value = serde_json::from_slice(body).ok()?;
    let tables = request["RequestItems"].as_object_mut()?;
    if tables.len() != 1 {
        return None;
    }
    let (table, spec) = tables.iter_mut().next()?;
    let table = table.clone();
    let list = if target == "BatchWriteItem" { spec.as_array_mut()? } else { spec["Keys"].as_array_mut()? };
    if list.len() < 2 {
        return None;
    }
    let keep = 1 + state.below(list.len() - 1);
    let rest: Vec<Value> = list.split_off(keep);
    let left = rest.len() as u64;
    let unprocessed_spec = if target == "BatchWriteItem" {
        Value::Array(rest)
    } else {
        let mut keys_and_attributes = spec.clone();
        keys_and_attributes["Keys"] = Value::Array(rest);
        keys_and_attributes
    };
    let (response, upstream) = forward(state, parts, Bytes::from(request.to_string())).await;
    // Forwarded once, whatever happens next: an answer that cannot be amended goes back as is.
    let Some(mut answer) = upstream.and_then(|b| serde_json::from_slice::<Value>(&b).ok()) else {
        return Some(response);
    };
    if !response.status().is_success() {
        return Some(response);
    }
    let field = if target == "BatchWriteItem" { "UnprocessedItems" } else { "UnprocessedKeys" };
    answer[field] = json!({ table: unprocessed_spec });
    let counter = if target == "BatchWriteItem" {
        &state.counts.unprocessed_items
    } else {
        &state.counts.unprocessed_keys
    };
    counter.fetch_add(left, Ordering::Relaxed);
    Some(respond(StatusCode::OK, "application/x-amz-json-1.0", answer.to_string().into_bytes()))
}

async fn sqs(state: &State, parts: &Parts, target: &str, body: Bytes) -> Reply {
    if target != "SendMessageBatch" {
        return forward(state, parts, body).await.0;
    }
    let internal_error = || {
        let error =
            json!({"__type": "com.amazonaws.sqs#InternalError", "message": "injected internal error"});
        let mut response = respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            "application/x-amz-json-1.0",
            error.to_string().into_bytes(),
        );
        if let Ok(value) = "InternalError;Receiver".parse() {
            response.headers_mut().insert("x-amzn-query-error", value);
        }
        response
    };
    let nth = state.batches_seen.fetch_add(1, Ordering::SeqCst);
    let scripted = |n: u64| state.rates.sqs_scripted && state.enabled.load(Ordering::SeqCst) && nth == n;
    if scripted(0) || state.roll(state.rates.sqs_error) {
        state.counts.sqs_errors.fetch_add(1, Ordering::Relaxed);
        return internal_error();
    }
    if scripted(1) || state.roll(state.rates.sqs_lost_response) {
        let (response, _) = forward(state, parts, body).await;
        if response.status().is_success() {
            state.counts.sqs_lost_responses.fetch_add(1, Ordering::Relaxed);
            return internal_error();
        }
        return response;
    }
    if scripted(2) || state.roll(state.rates.sqs_partial) {
        let Ok(mut request) = serde_json::from_slice::<Value>(&body) else {
            return forward(state, parts, body).await.0;
        };
        let Some(entries) = request["Entries"].as_array_mut() else {
            return forward(state, parts, body).await.0;
        };
        let total = entries.len();
        let failing = 1 + state.below(total.max(1));
        let failed: Vec<Value> = entries.split_off(total - failing.min(total));
        state.counts.sqs_failed_entries.fetch_add(failed.len() as u64, Ordering::Relaxed);
        let failed: Vec<Value> = failed
            .iter()
            .map(|e| json!({"Id": e["Id"], "SenderFault": false, "Code": "InternalError", "Message": "injected"}))
            .collect();
        let mut answer = if entries.is_empty() {
            json!({"Successful": []})
        } else {
            let (response, upstream) = forward(state, parts, Bytes::from(request.to_string())).await;
            match upstream.and_then(|b| serde_json::from_slice::<Value>(&b).ok()) {
                Some(answer) if response.status().is_success() => answer,
                _ => return response,
            }
        };
        answer["Failed"] = Value::Array(failed);
        return respond(StatusCode::OK, "application/x-amz-json-1.0", answer.to_string().into_bytes());
    }
    forward(state, parts, body).await.0
}

/// Sends the request on to the real service; the response, and its body when it was read.
async fn forward(state: &State, parts: &Parts, body: Bytes) -> (Reply, Option<Bytes>) {
    forward_to(&state.client, &state.upstream, parts, body).await
}

/// Sends the request on to `upstream`; the response, and its body when it was read.
async fn forward_to(
    client: &reqwest::Client,
    upstream: &str,
    parts: &Parts,
    body: Bytes,
) -> (Reply, Option<Bytes>) {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = client.request(parts.method.clone(), format!("{upstream}{path}"));
    for (name, value) in &parts.headers {
        if name == hyper::header::HOST || name == hyper::header::CONTENT_LENGTH {
            continue;
        }
        request = request.header(name, value);
    }
    let upstream = match request.body(body).send().await {
        Ok(upstream) => upstream,
        Err(e) => return (respond(StatusCode::BAD_GATEWAY, "text/plain", e.to_string().into_bytes()), None),
    };
    let status = upstream.status();
    let headers = upstream.headers().clone();
    let bytes = match upstream.bytes().await {
        Ok(bytes) => bytes,
        Err(e) => return (respond(StatusCode::BAD_GATEWAY, "text/plain", e.to_string().into_bytes()), None),
    };
    let mut response = Response::new(Full::new(bytes.clone()));
    *response.status_mut() = status;
    for (name, value) in &headers {
        // The body may be rewritten: its length and checksum are recomputed or dropped.
        if name == hyper::header::CONTENT_LENGTH
            || name == hyper::header::TRANSFER_ENCODING
            || name == hyper::header::CONNECTION
            || name.as_str() == "x-amz-crc32"
        {
            continue;
        }
        response.headers_mut().append(name, value.clone());
    }
    (response, Some(bytes))
}

// --- one endpoint for every service -----------------------------------------------------------

/// One endpoint in front of the per-service proxies, for code that takes a whole SDK
/// configuration (the functions' `FromEnv` constructors, through `Infra`): requests go on by
/// their `X-Amz-Target` — DynamoDB's to the DynamoDB proxy, SQS's to the SQS proxy — or their
/// path — SES v2's (`/v2/email/…`, REST-JSON, no target) to its stand-in when there is one —
/// and anything else (EventBridge) straight to `others`. Needed because the process's per-service endpoint
/// variables (`AWS_ENDPOINT_URL_DYNAMODB`, …) outrank an SDK configuration's own endpoint:
/// see [`sdk_through`].
pub struct Router {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Router {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Router {
    pub async fn start(dynamodb: &FaultProxy, sqs: &FaultProxy, others: &str) -> Self {
        Self::start_with_ses(dynamodb, sqs, others, None).await
    }

    /// As [`Router::start`], SES v2's requests going to `ses`.
    pub async fn start_with_ses(
        dynamodb: &FaultProxy,
        sqs: &FaultProxy,
        others: &str,
        ses: Option<&str>,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind the router");
        let url = format!("http://{}", listener.local_addr().expect("router address"));
        let routes = Arc::new(Routes {
            dynamodb: dynamodb.url.clone(),
            sqs: sqs.url.clone(),
            others: others.trim_end_matches('/').to_owned(),
            ses: ses.map(|url| url.trim_end_matches('/').to_owned()),
            client: reqwest::Client::builder().no_proxy().build().expect("router http client"),
        });
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let routes = routes.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let routes = routes.clone();
                        async move { Ok::<_, std::convert::Infallible>(routes.route(request).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { url, task }
    }
}

struct Routes {
    dynamodb: String,
    sqs: String,
    others: String,
    ses: Option<String>,
    client: reqwest::Client,
}

impl Routes {
    async fn route(&self, request: Request<Incoming>) -> Reply {
        let (parts, body) = request.into_parts();
        let body = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => return respond(StatusCode::BAD_GATEWAY, "text/plain", e.to_string().into_bytes()),
        };
        let target = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or_default();
        let upstream = if target.starts_with("DynamoDB_") {
            &self.dynamodb
        } else if target.starts_with("AmazonSQS.") {
            &self.sqs
        } else if let Some(ses) = self.ses.as_ref().filter(|_| parts.uri.path().starts_with("/v2/email/")) {
            ses
        } else {
            &self.others
        };
        forward_to(&self.client, upstream, &parts, body).await.0
    }
}

/// `sdk` with every service reached at `endpoint` (a [`Router`]), and the SDK's own retry with
/// test-sized backoffs (standard mode, three attempts). Built afresh rather than from
/// `sdk.to_builder()`: the loaded configuration carries the environment's per-service
/// endpoints, which would win over any endpoint set on it.
pub fn sdk_through(sdk: &aws_config::SdkConfig, endpoint: &str) -> aws_config::SdkConfig {
    let mut builder = aws_config::SdkConfig::builder();
    builder
        .set_region(sdk.region().cloned())
        .set_credentials_provider(sdk.credentials_provider())
        .set_behavior_version(sdk.behavior_version())
        .set_sleep_impl(sdk.sleep_impl())
        .set_time_source(sdk.time_source())
        .set_http_client(sdk.http_client())
        .set_timeout_config(sdk.timeout_config().cloned())
        .set_stalled_stream_protection(sdk.stalled_stream_protection())
        .set_endpoint_url(Some(endpoint.to_owned()))
        .set_retry_config(Some(test_retry()));
    builder.build()
}

/// The real SDK retry (standard mode, three attempts), with test-sized backoffs.
pub fn test_retry() -> aws_config::retry::RetryConfig {
    aws_config::retry::RetryConfig::standard()
        .with_initial_backoff(std::time::Duration::from_millis(20))
        .with_max_backoff(std::time::Duration::from_millis(400))
}

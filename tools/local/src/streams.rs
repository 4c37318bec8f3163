//! What Lambda's DynamoDB Streams event source mapping does for the stats aggregator, done
//! locally (DynamoDB Local has the stream, not the mapping): find the table's stream, follow
//! its shards — a child only once its parent is read to the end, a shard first seen from
//! `TRIM_HORIZON` — read each in order up to [`STATS_BATCH_SIZE`] records, drop what the
//! template's filter drops, and invoke the function with the tumbling-window event Lambda
//! sends. A reported `batchItemFailures` resumes the shard at the lowest reported sequence
//! number after a backoff (the template retries for as long as the stream keeps records);
//! anything else moves it past the batch.
//!
//! Two ways to drive it: [`run_stream_poller`] (the local stack, idle shards every
//! [`IDLE_POLL`], so stats trail by far less than the contract's 5 s) and
//! [`StreamSource::drain`] (tests and benchmarks: every shard until nothing is left). Both keep
//! each shard's position in the [`StreamSource`], as the mapping keeps its checkpoints.
//!
//! Not emulated: the one-second batching window (locally a batch is whatever one GetRecords
//! returns, which only makes stats trail less) and the window-closing final invocation
//! (`isFinalInvokeForWindow`), whose state the aggregator does not use.

use std::collections::{BTreeMap, HashSet};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_sdk_dynamodbstreams::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodbstreams::operation::get_shard_iterator::GetShardIteratorError;
use aws_sdk_dynamodbstreams::types::{Record, ShardIteratorType};
use chrono::{DateTime, Utc};
use futures::FutureExt as _;
use futures::future::join_all;
use retarget_shared::adapters::resources::{
    STATS_BATCH_SIZE, STATS_TUMBLING_WINDOW_SECONDS, STREAM_VIEW_TYPE,
};
use retarget_shared::bootstrap::StreamFunction;
use retarget_shared::keys;
use retarget_shared::services::stats::{TimeWindowEvent, TimeWindowEventResponse};
use serde_json::{Map, Value, json};
use tokio::sync::{Mutex, watch};

/// How often an idle shard is read again.
pub const IDLE_POLL: Duration = Duration::from_millis(250);

/// How often the stream's shards are listed again (new shards appear as DynamoDB splits or
/// rolls them); also whenever a shard has been read to its end.
const REDISCOVER_EVERY: Duration = Duration::from_secs(5);

/// Lambda gives each invocation this long (the template's `StatsFunction` `Timeout`).
const STATS_TIMEOUT: Duration = Duration::from_secs(60);

/// The backoff before a failed batch is delivered again: doubling from the first, capped.
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// How long [`StreamSource::drain`] keeps at it before it reports the stream stuck.
const DRAIN_LIMIT: Duration = Duration::from_secs(120);

/// The endpoint the stream API is reached at: DynamoDB's own. The SDK would look for
/// `AWS_ENDPOINT_URL_DYNAMODB_STREAMS`, which nothing sets: DynamoDB Local serves both APIs on
/// one port.
pub fn dynamodb_endpoint() -> Option<String> {
    ["AWS_ENDPOINT_URL_DYNAMODB", "AWS_ENDPOINT_URL"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
}

/// A DynamoDB Streams client on `sdk`, pointed at the DynamoDB endpoint when one is set.
pub fn streams_client(sdk: &SdkConfig) -> aws_sdk_dynamodbstreams::Client {
    let mut config = aws_sdk_dynamodbstreams::config::Builder::from(sdk);
    if let Some(endpoint) = dynamodb_endpoint() {
        config = config.endpoint_url(endpoint);
    }
    aws_sdk_dynamodbstreams::Client::from_conf(config.build())
}

/// Why the stream could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("DescribeTable {table}: {detail}")]
    DescribeTable { table: String, detail: String },
    #[error("table {0} has no stream (the table is made by resources::create_table, with one)")]
    NoStream(String),
    #[error("{operation}: {detail}")]
    Streams { operation: &'static str, detail: String },
    #[error("could not build the stream event Lambda would send: {0}")]
    Event(serde_json::Error),
    #[error("the stream did not drain within {limit:?}: {pending}")]
    NotDrained { limit: Duration, pending: String },
}

fn streams_error<E: std::error::Error + 'static>(operation: &'static str) -> impl Fn(E) -> StreamError {
    move |e| StreamError::Streams { operation, detail: DisplayErrorContext(&e).to_string() }
}

/// The template's filter: only inserts of interaction items reach the function.
pub fn passes_filter(record: &Record) -> bool {
    let insert = record.event_name().is_some_and(|name| name.as_str() == "INSERT");
    let pk = record.dynamodb().and_then(|r| r.keys()).and_then(|keys| keys.get(keys::PK));
    let interaction =
        pk.and_then(|pk| pk.as_s().ok()).is_some_and(|pk| pk.starts_with(keys::INTERACTION_PREFIX));
    insert && interaction
}

/// One stream record in the JSON Lambda delivers it in.
pub fn record_json(record: &Record, stream_arn: &str, fallback_region: &str) -> Value {
    let item = |image: Option<
        &std::collections::HashMap<String, aws_sdk_dynamodbstreams::types::AttributeValue>,
    >| {
        image.map(|image| {
            let item: serde_dynamo::Item = image.clone().into();
            serde_json::to_value(item).unwrap_or(Value::Null)
        })
    };
    let mut change = Map::new();
    if let Some(stream) = record.dynamodb() {
        if let Some(at) = stream.approximate_creation_date_time() {
            change.insert("ApproximateCreationDateTime".into(), json!(at.secs()));
        }
        if let Some(keys) = item(stream.keys()) {
            change.insert("Keys".into(), keys);
        }
        if let Some(image) = item(stream.new_image()) {
            change.insert("NewImage".into(), image);
        }
        if let Some(image) = item(stream.old_image()) {
            change.insert("OldImage".into(), image);
        }
        if let Some(seq) = stream.sequence_number() {
            change.insert("SequenceNumber".into(), json!(seq));
        }
        change.insert("SizeBytes".into(), json!(stream.size_bytes().unwrap_or(0)));
        let view = stream.stream_view_type().map_or(STREAM_VIEW_TYPE, |v| v.as_str());
        change.insert("StreamViewType".into(), json!(view));
    }
    let mut out = json!({
        "eventID": record.event_id().unwrap_or_default(),
        "eventName": record.event_name().map(|n| n.as_str()).unwrap_or_default(),
        "eventVersion": record.event_version().unwrap_or("1.1"),
        "eventSource": record.event_source().unwrap_or("aws:dynamodb"),
        "awsRegion": record.aws_region().unwrap_or(fallback_region),
        "dynamodb": change,
        "eventSourceARN": stream_arn,
    });
    // TTL deletions carry who deleted them.
    if let Some(identity) = record.user_identity() {
        out["userIdentity"] = json!({
            "type": identity.r#type().unwrap_or_default(),
            "principalId": identity.principal_id().unwrap_or_default(),
        });
    }
    out
}

/// The tumbling window `now` falls in.
pub fn window_at(now: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let width = i64::from(STATS_TUMBLING_WINDOW_SECONDS.max(1));
    let start = now.timestamp().div_euclid(width) * width;
    let at = |secs| DateTime::from_timestamp(secs, 0).unwrap_or(now);
    (at(start), at(start + width))
}

/// The event Lambda invokes the function with for these records of one shard: a DynamoDB
/// event inside a tumbling window, parsed back into the type the function takes (the round
/// trip through JSON is what shows the shape is Lambda's).
pub fn time_window_event(
    records: &[Record],
    shard_id: &str,
    stream_arn: &str,
    region: &str,
    now: DateTime<Utc>,
) -> Result<TimeWindowEvent, serde_json::Error> {
    let (start, end) = window_at(now);
    let records: Vec<Value> = records.iter().map(|r| record_json(r, stream_arn, region)).collect();
    serde_json::from_value(json!({
        "Records": records,
        "window": { "start": retarget_shared::clock::rfc3339(start), "end": retarget_shared::clock::rfc3339(end) },
        "state": {},
        "shardId": shard_id,
        "eventSourceARN": stream_arn,
        "isFinalInvokeForWindow": false,
        "isWindowTerminatedEarly": false,
    }))
}

/// Sequence numbers are decimal strings of varying width: compared as numbers.
fn sequence_order(seq: &str) -> (usize, &str) {
    let digits = seq.trim_start_matches('0');
    (digits.len(), digits)
}

/// Where a shard is read from next.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Position {
    TrimHorizon,
    /// What is written from now on (a mapping created with `StartingPosition: LATEST`).
    Latest,
    At(String),
    After(String),
}

#[derive(Debug)]
struct Shard {
    parent: Option<String>,
    position: Position,
    /// The iterator GetRecords last handed back, while it is valid for `position`.
    iterator: Option<String>,
    /// Closed and read to its end.
    finished: bool,
    /// Failed deliveries in a row, and when the next may be made.
    failures: u32,
    not_before: Option<Instant>,
}

#[derive(Debug, Default)]
struct State {
    stream_arn: Option<String>,
    shards: BTreeMap<String, Shard>,
    discovered_at: Option<Instant>,
    /// A shard ended since the last listing: its children may be there now.
    rediscover: bool,
}

/// API calls and deliveries so far (what the mapping costs, for benchmarks).
#[derive(Debug, Default)]
pub struct StreamCounts {
    pub describe_table: AtomicU64,
    pub describe_stream: AtomicU64,
    pub get_shard_iterator: AtomicU64,
    pub get_records: AtomicU64,
    pub invocations: AtomicU64,
    pub records_read: AtomicU64,
    pub records_delivered: AtomicU64,
    /// Batches the function reported (part) failed, or panicked on.
    pub failed_batches: AtomicU64,
}

impl StreamCounts {
    pub fn json(&self) -> Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        json!({
            "describe_table": get(&self.describe_table),
            "describe_stream": get(&self.describe_stream),
            "get_shard_iterator": get(&self.get_shard_iterator),
            "get_records": get(&self.get_records),
            "invocations": get(&self.invocations),
            "records_read": get(&self.records_read),
            "records_delivered": get(&self.records_delivered),
            "failed_batches": get(&self.failed_batches),
        })
    }

    /// Requests made to the stream API (DescribeTable included).
    pub fn requests(&self) -> u64 {
        [&self.describe_table, &self.describe_stream, &self.get_shard_iterator, &self.get_records]
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

/// What one pass over the shards did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Round {
    /// Records GetRecords returned, filtered out ones included.
    pub read: usize,
    /// Records handed to the function.
    pub delivered: usize,
    pub invocations: usize,
    /// Batches to be delivered again.
    pub failed: usize,
    /// Shards read to their end in this pass.
    pub finished: usize,
}

impl Round {
    fn add(&mut self, other: Round) {
        self.read += other.read;
        self.delivered += other.delivered;
        self.invocations += other.invocations;
        self.failed += other.failed;
        self.finished += other.finished;
    }
}

/// Every record of one shard, from its trim horizon.
#[derive(Debug)]
pub struct ShardRecords {
    pub shard_id: String,
    pub records: Vec<Record>,
}

/// One table's stream, as an event source mapping sees it: the shards and each one's position.
pub struct StreamSource {
    dynamodb: aws_sdk_dynamodb::Client,
    streams: aws_sdk_dynamodbstreams::Client,
    table: String,
    region: String,
    state: Mutex<State>,
    pub counts: StreamCounts,
}

impl StreamSource {
    /// The stream of `table`, reached with `sdk` (the stream API at the DynamoDB endpoint).
    pub fn new(sdk: &SdkConfig, table: impl Into<String>) -> Self {
        let region = sdk.region().map_or_else(|| "us-east-1".to_owned(), |r| r.to_string());
        Self::with_clients(retarget_shared::adapters::aws::dynamodb(sdk), streams_client(sdk), table, region)
    }

    /// The stream of the table `store` is on, read with its client: what the aggregator built
    /// on `store` is fed from.
    pub fn of_store(sdk: &SdkConfig, store: &retarget_shared::Store) -> Self {
        let region = sdk.region().map_or_else(|| "us-east-1".to_owned(), |r| r.to_string());
        Self::with_clients(store.client().clone(), streams_client(sdk), store.table(), region)
    }

    pub fn with_clients(
        dynamodb: aws_sdk_dynamodb::Client,
        streams: aws_sdk_dynamodbstreams::Client,
        table: impl Into<String>,
        region: impl Into<String>,
    ) -> Self {
        Self {
            dynamodb,
            streams,
            table: table.into(),
            region: region.into(),
            state: Mutex::default(),
            counts: StreamCounts::default(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// The table's latest stream (`DescribeTable` → `LatestStreamArn`).
    pub async fn stream_arn(&self) -> Result<String, StreamError> {
        self.counts.describe_table.fetch_add(1, Ordering::Relaxed);
        let output = self.dynamodb.describe_table().table_name(&self.table).send().await.map_err(|e| {
            StreamError::DescribeTable {
                table: self.table.clone(),
                detail: DisplayErrorContext(&e).to_string(),
            }
        })?;
        output
            .table
            .and_then(|t| t.latest_stream_arn)
            .ok_or_else(|| StreamError::NoStream(self.table.clone()))
    }

    /// Every shard of the stream with its parent (`DescribeStream`, every page).
    async fn list_shards(&self, stream_arn: &str) -> Result<Vec<(String, Option<String>)>, StreamError> {
        let mut shards = Vec::new();
        let mut start: Option<String> = None;
        loop {
            self.counts.describe_stream.fetch_add(1, Ordering::Relaxed);
            let output = self
                .streams
                .describe_stream()
                .stream_arn(stream_arn)
                .set_exclusive_start_shard_id(start.take())
                .send()
                .await
                .map_err(streams_error("DescribeStream"))?;
            let Some(description) = output.stream_description else { break };
            for shard in description.shards.unwrap_or_default() {
                if let Some(id) = shard.shard_id {
                    shards.push((id, shard.parent_shard_id));
                }
            }
            match description.last_evaluated_shard_id {
                Some(last) => start = Some(last),
                None => break,
            }
        }
        Ok(shards)
    }

    /// Finds the stream (once) and any shard not known yet.
    async fn discover(&self, state: &mut State) -> Result<(), StreamError> {
        let stream_arn = match &state.stream_arn {
            Some(arn) => arn.clone(),
            None => {
                let arn = self.stream_arn().await?;
                state.stream_arn = Some(arn.clone());
                arn
            }
        };
        for (id, parent) in self.list_shards(&stream_arn).await? {
            state.shards.entry(id).or_insert_with(|| {
                tracing::debug!(table = %self.table, ?parent, "stream shard found");
                Shard {
                    parent,
                    position: Position::TrimHorizon,
                    iterator: None,
                    finished: false,
                    failures: 0,
                    not_before: None,
                }
            });
        }
        state.discovered_at = Some(Instant::now());
        state.rediscover = false;
        Ok(())
    }

    async fn iterator(
        &self,
        stream_arn: &str,
        shard_id: &str,
        position: &Position,
    ) -> Result<Option<String>, SdkError<GetShardIteratorError>> {
        self.counts.get_shard_iterator.fetch_add(1, Ordering::Relaxed);
        let request = self.streams.get_shard_iterator().stream_arn(stream_arn).shard_id(shard_id);
        let request = match position {
            Position::TrimHorizon => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
            Position::Latest => request.shard_iterator_type(ShardIteratorType::Latest),
            Position::At(seq) => {
                request.shard_iterator_type(ShardIteratorType::AtSequenceNumber).sequence_number(seq)
            }
            Position::After(seq) => {
                request.shard_iterator_type(ShardIteratorType::AfterSequenceNumber).sequence_number(seq)
            }
        };
        Ok(request.send().await?.shard_iterator)
    }

    /// One batch of one shard: read, filter, invoke, move the position.
    async fn step<D: StreamFunction>(
        &self,
        stream_arn: &str,
        shard_id: &str,
        shard: &mut Shard,
        deps: &D,
    ) -> Result<Round, StreamError> {
        let mut round = Round::default();
        let output = loop {
            let iterator = match shard.iterator.clone() {
                Some(iterator) => iterator,
                None => match self.iterator(stream_arn, shard_id, &shard.position).await {
                    Ok(Some(iterator)) => iterator,
                    Ok(None) => {
                        shard.finished = true;
                        round.finished = 1;
                        return Ok(round);
                    }
                    Err(e) => {
                        let service = e.as_service_error();
                        if service.is_some_and(|s| s.is_resource_not_found_exception()) {
                            // The shard is gone (past the stream's retention): nothing left to read.
                            tracing::warn!(shard_id, "stream shard gone");
                            shard.finished = true;
                            round.finished = 1;
                            return Ok(round);
                        }
                        if service.is_some_and(|s| s.is_trimmed_data_access_exception()) {
                            tracing::warn!(shard_id, position = ?shard.position, "position trimmed: reading from the trim horizon");
                            shard.position = Position::TrimHorizon;
                            continue;
                        }
                        return Err(streams_error("GetShardIterator")(e));
                    }
                },
            };
            self.counts.get_records.fetch_add(1, Ordering::Relaxed);
            let result = self
                .streams
                .get_records()
                .shard_iterator(iterator)
                .limit(i32::try_from(STATS_BATCH_SIZE).unwrap_or(1000))
                .send()
                .await;
            match result {
                Ok(output) => break output,
                Err(e) => {
                    shard.iterator = None;
                    let service = e.as_service_error();
                    if service.is_some_and(|s| s.is_expired_iterator_exception()) {
                        continue;
                    }
                    if service.is_some_and(|s| s.is_trimmed_data_access_exception()) {
                        shard.position = Position::TrimHorizon;
                        continue;
                    }
                    return Err(streams_error("GetRecords")(e));
                }
            }
        };
        let records = output.records.unwrap_or_default();
        let next = output.next_shard_iterator;
        round.read = records.len();
        self.counts.records_read.fetch_add(records.len() as u64, Ordering::Relaxed);
        let sequence = |r: &Record| r.dynamodb().and_then(|d| d.sequence_number()).map(str::to_owned);
        let (Some(first), Some(last)) =
            (records.first().and_then(sequence), records.last().and_then(sequence))
        else {
            // Nothing new; a closed shard says so by handing back no iterator.
            shard.finished = next.is_none();
            round.finished = usize::from(shard.finished);
            shard.iterator = next;
            return Ok(round);
        };
        let delivered: Vec<Record> = records.into_iter().filter(passes_filter).collect();
        let resume_at = if delivered.is_empty() {
            // Filtered out records count as processed, as on Lambda.
            None
        } else {
            round.delivered = delivered.len();
            round.invocations = 1;
            self.counts.invocations.fetch_add(1, Ordering::Relaxed);
            self.counts.records_delivered.fetch_add(delivered.len() as u64, Ordering::Relaxed);
            let event = time_window_event(&delivered, shard_id, stream_arn, &self.region, Utc::now())
                .map_err(StreamError::Event)?;
            let invocation = deps.handle(event, Some(Instant::now() + STATS_TIMEOUT));
            match AssertUnwindSafe(invocation).catch_unwind().await {
                Ok(response) => resume_point(&response, &delivered, &first),
                Err(_) => {
                    // A function error: the whole batch again.
                    tracing::error!(shard_id, "the stream function panicked; its batch is retried");
                    Some(first.clone())
                }
            }
        };
        match resume_at {
            None => {
                shard.position = Position::After(last);
                shard.finished = next.is_none();
                round.finished = usize::from(shard.finished);
                shard.iterator = next;
                shard.failures = 0;
                shard.not_before = None;
            }
            Some(seq) => {
                round.failed = 1;
                self.counts.failed_batches.fetch_add(1, Ordering::Relaxed);
                shard.failures += 1;
                let doublings = shard.failures.clamp(1, 8) - 1;
                let backoff = RETRY_FIRST.saturating_mul(1u32 << doublings).min(RETRY_MAX);
                tracing::warn!(shard_id, sequence = %seq, attempt = shard.failures, ?backoff, "stream batch failed; the shard resumes at the reported record");
                shard.position = Position::At(seq);
                shard.iterator = None;
                shard.not_before = Some(Instant::now() + backoff);
            }
        }
        Ok(round)
    }

    /// One batch from every shard that may be read now.
    async fn round<D: StreamFunction>(&self, state: &mut State, deps: &D) -> Result<Round, StreamError> {
        let stale = state.discovered_at.is_none_or(|at| at.elapsed() >= REDISCOVER_EVERY);
        if stale || state.rediscover {
            self.discover(state).await?;
        }
        let Some(stream_arn) = state.stream_arn.clone() else { return Ok(Round::default()) };
        let now = Instant::now();
        let finished: HashSet<String> =
            state.shards.iter().filter(|(_, s)| s.finished).map(|(id, _)| id.clone()).collect();
        let known: HashSet<String> = state.shards.keys().cloned().collect();
        // A child waits for its parent to be read to the end (a parent no longer listed has
        // been trimmed away: nothing of it is left to wait for).
        let ready = |shard: &Shard| {
            !shard.finished
                && shard.not_before.is_none_or(|at| at <= now)
                && shard.parent.as_ref().is_none_or(|p| finished.contains(p) || !known.contains(p))
        };
        let steps = state
            .shards
            .iter_mut()
            .filter(|(_, shard)| ready(shard))
            .map(|(id, shard)| self.step(&stream_arn, id, shard, deps));
        let mut round = Round::default();
        let mut first_error = None;
        for result in join_all(steps).await {
            match result {
                Ok(r) => round.add(r),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        if round.finished > 0 {
            state.rediscover = true;
        }
        match first_error {
            Some(e) if round == Round::default() => Err(e),
            Some(e) => {
                tracing::warn!(error = %e, "a stream shard could not be read");
                Ok(round)
            }
            None => Ok(round),
        }
    }

    /// One pass over the shards, as the long-running poller makes it.
    pub async fn poll<D: StreamFunction>(&self, deps: &D) -> Result<Round, StreamError> {
        let mut state = self.state.lock().await;
        self.round(&mut state, deps).await
    }

    /// Reads every shard until no record is left, delivering to `deps` as the mapping would
    /// (failed batches again, after their backoff): when it returns, every record written
    /// before it was called has been counted. Concurrent calls take turns.
    pub async fn drain<D: StreamFunction>(&self, deps: &D) -> Result<Round, StreamError> {
        let mut state = self.state.lock().await;
        let started = Instant::now();
        // New shards may have appeared since the last call, whatever the listing's age.
        state.rediscover = true;
        let mut total = Round::default();
        loop {
            let round = match self.round(&mut state, deps).await {
                Ok(round) => round,
                // The stream API failing (DynamoDB Local busy): again shortly, as the mapping
                // would, until the limit.
                Err(e) if started.elapsed() < DRAIN_LIMIT => {
                    tracing::warn!(error = %e, table = %self.table, "stream read failed; retrying");
                    tokio::time::sleep(IDLE_POLL).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            total.add(round);
            let waiting = state.shards.values().filter_map(|s| s.not_before.filter(|_| !s.finished)).min();
            if round.read == 0 && round.finished == 0 && waiting.is_none() && !state.rediscover {
                return Ok(total);
            }
            if started.elapsed() > DRAIN_LIMIT {
                let pending: Vec<String> = state
                    .shards
                    .iter()
                    .filter(|(_, s)| !s.finished && s.failures > 0)
                    .map(|(id, s)| format!("{id} at {:?} after {} failures", s.position, s.failures))
                    .collect();
                return Err(StreamError::NotDrained { limit: DRAIN_LIMIT, pending: pending.join(", ") });
            }
            if round.read == 0
                && let Some(at) = waiting
            {
                tokio::time::sleep_until(at.into()).await;
            }
        }
    }

    /// From now on, as a mapping created with `StartingPosition: LATEST`: every shard is
    /// pinned at its current end, so only what is written after this returns is delivered
    /// (benchmarks, on a table whose earlier records are not theirs to count).
    pub async fn skip_to_latest(&self) -> Result<(), StreamError> {
        let mut state = self.state.lock().await;
        self.discover(&mut state).await?;
        let Some(stream_arn) = state.stream_arn.clone() else { return Ok(()) };
        for (id, shard) in state.shards.iter_mut().filter(|(_, s)| !s.finished) {
            shard.position = Position::Latest;
            shard.iterator = self
                .iterator(&stream_arn, id, &Position::Latest)
                .await
                .map_err(streams_error("GetShardIterator"))?;
            shard.finished = shard.iterator.is_none();
        }
        Ok(())
    }

    /// Every record of every shard from its trim horizon, whatever the positions: what the
    /// stream holds (for tests that deliver batches themselves).
    pub async fn records(&self) -> Result<Vec<ShardRecords>, StreamError> {
        let stream_arn = self.stream_arn().await?;
        let mut out = Vec::new();
        for (shard_id, _) in self.list_shards(&stream_arn).await? {
            let mut records = Vec::new();
            let mut iterator = self
                .iterator(&stream_arn, &shard_id, &Position::TrimHorizon)
                .await
                .map_err(streams_error("GetShardIterator"))?;
            while let Some(it) = iterator {
                self.counts.get_records.fetch_add(1, Ordering::Relaxed);
                let output = self
                    .streams
                    .get_records()
                    .shard_iterator(it)
                    .send()
                    .await
                    .map_err(streams_error("GetRecords"))?;
                let batch = output.records.unwrap_or_default();
                let empty = batch.is_empty();
                records.extend(batch);
                // An open shard hands back an iterator forever: stop at its end.
                iterator = if empty { None } else { output.next_shard_iterator };
            }
            out.push(ShardRecords { shard_id, records });
        }
        Ok(out)
    }

    /// The stream's ARN and the region records are delivered with, once known.
    pub async fn event_source(&self) -> Result<(String, String), StreamError> {
        let mut state = self.state.lock().await;
        if state.stream_arn.is_none() {
            state.stream_arn = Some(self.stream_arn().await?);
        }
        Ok((state.stream_arn.clone().unwrap_or_default(), self.region.clone()))
    }
}

/// Where the shard resumes after this response: `None` past the batch; the lowest reported
/// sequence number; the batch's first record when a reported identifier names none of the
/// delivered records (Lambda takes an empty, null or unknown one as the whole batch failing).
fn resume_point(response: &TimeWindowEventResponse, delivered: &[Record], first: &str) -> Option<String> {
    if response.batch_item_failures.is_empty() {
        return None;
    }
    let sequences: HashSet<&str> =
        delivered.iter().filter_map(|r| r.dynamodb().and_then(|d| d.sequence_number())).collect();
    let mut lowest: Option<&str> = None;
    for failure in &response.batch_item_failures {
        match failure.item_identifier.as_deref().filter(|id| sequences.contains(id)) {
            Some(id) => {
                if lowest.is_none_or(|l| sequence_order(id) < sequence_order(l)) {
                    lowest = Some(id);
                }
            }
            None => return Some(first.to_owned()),
        }
    }
    lowest.map(str::to_owned)
}

/// The event source mapping of the table's stream, until `stop`: a pass over the shards, again
/// at once while there were records, else after [`IDLE_POLL`].
pub async fn run_stream_poller<D: StreamFunction>(
    source: &StreamSource,
    deps: &D,
    mut stop: watch::Receiver<bool>,
) {
    let mut quiet_errors = false;
    loop {
        if *stop.borrow() {
            return;
        }
        let busy = tokio::select! {
            _ = stop.changed() => return,
            result = source.poll(deps) => match result {
                Ok(round) => {
                    quiet_errors = false;
                    round.read > 0
                }
                Err(e) => {
                    // Logged once per outage (DynamoDB Local restarting, a table without a stream).
                    if !quiet_errors {
                        tracing::warn!(error = %e, table = source.table(), "stream poll failed; retrying");
                        quiet_errors = true;
                    }
                    false
                }
            },
        };
        if !busy {
            tokio::select! {
                _ = stop.changed() => return,
                () = tokio::time::sleep(IDLE_POLL) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodbstreams::primitives::DateTime as SdkDateTime;
    use aws_sdk_dynamodbstreams::types::{AttributeValue, OperationType, StreamRecord, StreamViewType};

    use super::*;

    fn record(name: OperationType, pk: &str, seq: &str) -> Record {
        let keys = [
            (keys::PK.to_owned(), AttributeValue::S(pk.to_owned())),
            (keys::SK.to_owned(), AttributeValue::S("sub#s".to_owned())),
        ];
        let mut image: std::collections::HashMap<_, _> = keys.clone().into_iter().collect();
        image.insert("expires_at".into(), AttributeValue::N("1800000000".into()));
        image.insert(
            "blob".into(),
            AttributeValue::B(aws_sdk_dynamodbstreams::primitives::Blob::new(vec![0, 1])),
        );
        Record::builder()
            .event_id("e1")
            .event_name(name)
            .event_version("1.1")
            .event_source("aws:dynamodb")
            .aws_region("ddblocal")
            .dynamodb(
                StreamRecord::builder()
                    .approximate_creation_date_time(SdkDateTime::from_secs(1_795_874_400))
                    .set_keys(Some(keys.into_iter().collect()))
                    .set_new_image(Some(image))
                    .sequence_number(seq)
                    .size_bytes(42)
                    .stream_view_type(StreamViewType::NewImage)
                    .build(),
            )
            .build()
    }

    #[test]
    fn records_become_lambdas_event() {
        let now = DateTime::from_timestamp(1_795_874_425, 0).unwrap();
        let r = record(OperationType::Insert, "MSG#x#I#01", "000000000000000000007");
        let json = record_json(&r, "arn:stream", "us-east-1");
        assert_eq!(json["dynamodb"]["ApproximateCreationDateTime"], 1_795_874_400);
        assert_eq!(json["dynamodb"]["Keys"]["pk"], json!({"S": "MSG#x#I#01"}));
        assert_eq!(json["dynamodb"]["NewImage"]["expires_at"], json!({"N": "1800000000"}));
        assert_eq!(json["dynamodb"]["NewImage"]["blob"], json!({"B": "AAE="}));
        assert_eq!(json["dynamodb"]["StreamViewType"], "NEW_IMAGE");
        assert_eq!(json["eventSourceARN"], "arn:stream");
        assert!(json.get("userIdentity").is_none());

        let event = time_window_event(&[r], "shard-1", "arn:stream", "us-east-1", now).unwrap();
        let record = &event.dynamo_db_event.records[0];
        assert_eq!(record.event_name, "INSERT");
        assert_eq!(record.change.sequence_number.as_deref(), Some("000000000000000000007"));
        assert_eq!(record.change.size_bytes, 42);
        assert_eq!(record.change.approximate_creation_date_time.timestamp(), 1_795_874_400);
        let window = &event.time_window_properties;
        assert_eq!(window.shard_id.as_deref(), Some("shard-1"));
        assert_eq!(window.event_source_arn.as_deref(), Some("arn:stream"));
        assert_eq!(window.window.start.timestamp() % i64::from(STATS_TUMBLING_WINDOW_SECONDS), 0);
        assert!(window.window.start <= now && now < window.window.end);
        assert!(!window.is_final_invoke_for_window && !window.is_window_terminated_early);
    }

    #[test]
    fn only_interaction_inserts_pass_the_filter() {
        assert!(passes_filter(&record(OperationType::Insert, "MSG#x#I#01", "1")));
        assert!(!passes_filter(&record(OperationType::Modify, "MSG#x#I#01", "1")));
        assert!(!passes_filter(&record(OperationType::Remove, "MSG#x#I#01", "1")));
        assert!(!passes_filter(&record(OperationType::Insert, "STATS#x", "1")));
        assert!(!passes_filter(&record(OperationType::Insert, "APP#a#MSG#x", "1")));
    }

    #[test]
    fn failures_resume_at_the_lowest_reported_record() {
        let delivered: Vec<Record> =
            ["98", "99", "100"].iter().map(|s| record(OperationType::Insert, "MSG#x#I#01", s)).collect();
        let response = |ids: &[Option<&str>]| {
            let mut response = TimeWindowEventResponse::default();
            response.batch_item_failures = ids
                .iter()
                .map(|id| {
                    let mut f = aws_lambda_events::streams::DynamoDbBatchItemFailure::default();
                    f.item_identifier = id.map(str::to_owned);
                    f
                })
                .collect();
            response
        };
        assert_eq!(resume_point(&response(&[]), &delivered, "98"), None);
        assert_eq!(
            resume_point(&response(&[Some("100"), Some("99")]), &delivered, "98").as_deref(),
            Some("99")
        );
        assert_eq!(resume_point(&response(&[Some("100"), None]), &delivered, "98").as_deref(), Some("98"));
        assert_eq!(resume_point(&response(&[Some("7")]), &delivered, "98").as_deref(), Some("98"));
        assert!(sequence_order("0099") < sequence_order("100"));
    }

    /// What a stream function was handed, batch by batch; it can fail one batch at a record.
    #[derive(Default)]
    struct Recorder {
        seen: std::sync::Mutex<Vec<(String, Vec<String>)>>,
        fail_once_at: std::sync::Mutex<Option<String>>,
    }

    impl retarget_shared::bootstrap::FromEnv for Recorder {
        fn from_env(
            _env: &mut retarget_shared::config::EnvReader,
            _infra: &retarget_shared::bootstrap::Infra,
        ) -> Result<Self, retarget_shared::bootstrap::Error> {
            Ok(Self::default())
        }
    }

    impl StreamFunction for Recorder {
        async fn handle(
            &self,
            event: TimeWindowEvent,
            _deadline: Option<Instant>,
        ) -> TimeWindowEventResponse {
            let shard = event.time_window_properties.shard_id.clone().unwrap_or_default();
            let seqs: Vec<String> = event
                .dynamo_db_event
                .records
                .iter()
                .filter_map(|r| r.change.sequence_number.clone())
                .collect();
            self.seen.lock().unwrap().push((shard, seqs.clone()));
            let mut response = TimeWindowEventResponse::default();
            let mut fail = self.fail_once_at.lock().unwrap();
            if let Some(at) = fail.as_ref().filter(|at| seqs.contains(at)) {
                let mut failure = aws_lambda_events::streams::DynamoDbBatchItemFailure::default();
                failure.item_identifier = Some(at.clone());
                response.batch_item_failures.push(failure);
                *fail = None;
            }
            response
        }
    }

    /// A stream of two shards listed on two pages, the child first: the parent `P` (records 1,
    /// 2 and a MODIFY 3, then closed) and its child `C` (record 4, then open and idle).
    fn mocked_source() -> StreamSource {
        use aws_sdk_dynamodb::operation::describe_table::DescribeTableOutput;
        use aws_sdk_dynamodbstreams::operation::describe_stream::DescribeStreamOutput;
        use aws_sdk_dynamodbstreams::operation::get_records::GetRecordsOutput;
        use aws_sdk_dynamodbstreams::operation::get_shard_iterator::GetShardIteratorOutput;
        use aws_sdk_dynamodbstreams::types::{Shard as SdkShard, StreamDescription};
        use aws_smithy_mocks::{RuleMode, mock, mock_client};

        let table = mock!(aws_sdk_dynamodb::Client::describe_table).then_output(|| {
            DescribeTableOutput::builder()
                .table(
                    aws_sdk_dynamodb::types::TableDescription::builder().latest_stream_arn("arn:s").build(),
                )
                .build()
        });
        let dynamodb = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&table]);

        let shard = |id: &str, parent: Option<&str>| {
            SdkShard::builder().shard_id(id).set_parent_shard_id(parent.map(str::to_owned)).build()
        };
        let describe =
            mock!(aws_sdk_dynamodbstreams::Client::describe_stream).then_compute_output(move |req| {
                let page = match req.exclusive_start_shard_id() {
                    None => StreamDescription::builder()
                        .shards(shard("C", Some("P")))
                        .last_evaluated_shard_id("C"),
                    Some(_) => StreamDescription::builder().shards(shard("P", None)),
                };
                DescribeStreamOutput::builder().stream_description(page.build()).build()
            });
        let iterator =
            mock!(aws_sdk_dynamodbstreams::Client::get_shard_iterator).then_compute_output(|req| {
                let at = match req.shard_iterator_type() {
                    Some(ShardIteratorType::TrimHorizon) => "0".to_owned(),
                    Some(ShardIteratorType::AtSequenceNumber) => {
                        format!("at{}", req.sequence_number().unwrap())
                    }
                    other => panic!("unexpected iterator type {other:?}"),
                };
                GetShardIteratorOutput::builder()
                    .shard_iterator(format!("{}-{at}", req.shard_id().unwrap()))
                    .build()
            });
        let records = mock!(aws_sdk_dynamodbstreams::Client::get_records).then_compute_output(|req| {
            let insert = |seq| record(OperationType::Insert, "MSG#x#I#00", seq);
            let (batch, next): (Vec<Record>, Option<&str>) = match req.shard_iterator().unwrap() {
                "P-0" => (
                    vec![insert("1"), insert("2"), record(OperationType::Modify, "MSG#x#I#00", "3")],
                    Some("P-end"),
                ),
                "P-at2" => {
                    (vec![insert("2"), record(OperationType::Modify, "MSG#x#I#00", "3")], Some("P-end"))
                }
                "P-end" => (vec![], None),
                "C-0" => (vec![insert("4")], Some("C-idle")),
                "C-idle" => (vec![], Some("C-idle")),
                other => panic!("unexpected iterator {other}"),
            };
            GetRecordsOutput::builder()
                .set_records(Some(batch))
                .set_next_shard_iterator(next.map(str::to_owned))
                .build()
        });
        let streams =
            mock_client!(aws_sdk_dynamodbstreams, RuleMode::MatchAny, [&describe, &iterator, &records]);
        StreamSource::with_clients(dynamodb, streams, "t", "us-east-1")
    }

    fn batch(shard: &str, seqs: &[&str]) -> (String, Vec<String>) {
        (shard.to_owned(), seqs.iter().map(|s| (*s).to_owned()).collect())
    }

    #[tokio::test]
    async fn a_child_shard_is_read_after_its_parent_ends() {
        let source = mocked_source();
        let deps = Recorder::default();
        let drained = source.drain(&deps).await.unwrap();
        // The MODIFY is filtered out and never delivered.
        assert_eq!(*deps.seen.lock().unwrap(), vec![batch("P", &["1", "2"]), batch("C", &["4"])]);
        assert_eq!((drained.read, drained.delivered, drained.invocations), (4, 3, 2));
        // Drained: nothing more is delivered.
        source.drain(&deps).await.unwrap();
        assert_eq!(deps.seen.lock().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_reported_failure_resumes_the_shard_at_that_record() {
        let source = mocked_source();
        let deps = Recorder::default();
        *deps.fail_once_at.lock().unwrap() = Some("2".into());
        source.drain(&deps).await.unwrap();
        assert_eq!(
            *deps.seen.lock().unwrap(),
            vec![batch("P", &["1", "2"]), batch("P", &["2"]), batch("C", &["4"])]
        );
        assert_eq!(source.counts.failed_batches.load(Ordering::Relaxed), 1);
    }
}

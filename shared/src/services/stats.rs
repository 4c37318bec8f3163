//! The stats aggregator: a DynamoDB Streams consumer counting the inserts of interaction items
//! (see `adapters/store/stats.rs` for why and how the counters stay exact).
//!
//! The event source mapping: the table's stream (`KEYS_ONLY`), a filter letting through only
//! `INSERT`s of keys starting with [`keys::INTERACTION_PREFIX`], `ParallelizationFactor` 1 (one
//! invocation per shard at a time, records in order), a tumbling window — only because its
//! invocations name their shard (`shardId`), which each counter item is keyed by — and
//! `ReportBatchItemFailures`. Records that are not interaction inserts are skipped (the filter
//! is an optimisation, not what correctness rests on).

use std::collections::HashMap;
use std::time::Instant;

use aws_lambda_events::dynamodb::EventRecord;
use aws_lambda_events::streams::DynamoDbBatchItemFailure;
use aws_lambda_events::time_window::TimeWindowEventResponseProperties;
use futures::{StreamExt, stream};
use serde_dynamo::AttributeValue;

use crate::Store;
use crate::adapters::store::{CountedInsert, StoreError, by_message};
use crate::domain::MessageId;
use crate::keys;

pub use aws_lambda_events::dynamodb::{TimeWindowEvent, TimeWindowEventResponse};

/// Messages' counter updates in flight for one batch.
const UPDATES_IN_FLIGHT: usize = 8;

/// What the aggregator needs; built once per cold start.
pub struct StatsDeps {
    pub store: Store,
}

/// What one batch did, for logs and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct BatchReport {
    pub records: usize,
    pub counted: usize,
    pub replayed: usize,
    pub skipped: usize,
    pub messages: usize,
    pub failed_messages: usize,
}

/// An interaction insert of the stream: its message and what to count.
pub fn counted_insert(record: &EventRecord) -> Option<(MessageId, CountedInsert)> {
    if record.event_name != "INSERT" {
        return None;
    }
    let change = &record.change;
    let text = |item: &serde_dynamo::Item, name: &str| match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v.clone()),
        _ => None,
    };
    let message = keys::parse_interaction_partition(&text(&change.keys, keys::PK)?)?;
    let (_, kind) = keys::parse_interaction_sort(&text(&change.keys, keys::SK)?)?;
    let sequence = keys::stream_sequence(change.sequence_number.as_deref()?)?;
    // The stream carries keys only (no secret item's image ever reaches this function's role):
    // a message's data expires 30 days after its creation, the time its id was made at —
    // exactly the `expires_at` its interaction items carry.
    let expires_at = keys::data_expires_at(message.time()).timestamp();
    Some((message, CountedInsert { sequence, kind, expires_at }))
}

/// Counts one batch of one stream shard. A message whose counter update failed is reported by
/// its first record's sequence number: Lambda resumes the shard there (the lowest reported), and
/// what is delivered again and was applied already is recognised and skipped.
pub async fn handle_window(
    deps: &StatsDeps,
    event: TimeWindowEvent,
    _deadline: Option<Instant>,
) -> TimeWindowEventResponse {
    let records = event.dynamo_db_event.records;
    let mut response = TimeWindowEventResponse::default();
    // The window's state is not used (counts are stored as they come): an empty one is returned.
    response.time_window_event_response_properties = TimeWindowEventResponseProperties::default();
    let Some(first) = records.first() else { return response };
    let Some(shard_id) = event.time_window_properties.shard_id.filter(|s| !s.is_empty()) else {
        // Without a shard id counts cannot be made exact: fail the batch (it stays on the
        // stream) rather than count it unguarded. The template sets a tumbling window, which
        // is what gives the id.
        tracing::error!(
            records = records.len(),
            "stream batch without shardId: is TumblingWindowInSeconds set?"
        );
        response.batch_item_failures = vec![failure(first.change.sequence_number.clone())];
        return response;
    };

    let mut report = BatchReport { records: records.len(), ..BatchReport::default() };
    // Each counted insert with the record's own sequence number, to report a failure by.
    let mut original_sequence: HashMap<String, String> = HashMap::new();
    let inserts: Vec<(MessageId, CountedInsert)> = records
        .iter()
        .filter_map(|record| {
            let insert = counted_insert(record);
            if let (Some((_, counted)), Some(seq)) = (&insert, &record.change.sequence_number) {
                original_sequence.insert(counted.sequence.clone(), seq.clone());
            }
            insert
        })
        .collect();
    report.skipped = records.len() - inserts.len();
    let grouped = by_message(inserts);
    report.messages = grouped.len();

    let store = &deps.store;
    let shard_id = shard_id.as_str();
    let results: Vec<(Option<String>, Result<crate::adapters::store::Applied, StoreError>)> =
        stream::iter(grouped)
            .map(|(message, inserts)| async move {
                let first = inserts.iter().map(|i| i.sequence.clone()).min();
                (first, store.apply_stream_counts(message, shard_id, &inserts).await)
            })
            .buffer_unordered(UPDATES_IN_FLIGHT)
            .collect()
            .await;
    let mut first_failed: Option<String> = None;
    for (first, result) in results {
        match result {
            Ok(applied) => {
                report.counted += applied.counted;
                report.replayed += applied.replayed;
            }
            Err(e) => {
                report.failed_messages += 1;
                tracing::warn!(error = %e, shard_id, "stats counter update failed; the shard resumes at its first record");
                if let Some(first) = first
                    && first_failed.as_ref().is_none_or(|f| first < *f)
                {
                    first_failed = Some(first);
                }
            }
        }
    }
    tracing::info!(?report, shard_id, "stream batch counted");
    if let Some(padded) = first_failed {
        let seq = original_sequence.get(&padded).cloned().unwrap_or(padded);
        response.batch_item_failures = vec![failure(Some(seq))];
    }
    response
}

fn failure(sequence: Option<String>) -> DynamoDbBatchItemFailure {
    let mut failure = DynamoDbBatchItemFailure::default();
    failure.item_identifier = sequence;
    failure
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EventKind, SubscriptionId};

    /// A tumbling-window DynamoDB stream event as Lambda delivers it (the shape of the AWS
    /// documentation's example, with this table's keys).
    fn window_event(records: serde_json::Value, shard_id: Option<&str>) -> TimeWindowEvent {
        let mut event = serde_json::json!({
            "Records": records,
            "window": {"start": "2026-11-28T14:00:00Z", "end": "2026-11-28T14:01:00Z"},
            "state": {},
            "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/retarget/stream/2026-11-28T00:00:00.000",
            "isFinalInvokeForWindow": false,
            "isWindowTerminatedEarly": false
        });
        if let Some(id) = shard_id {
            event["shardId"] = serde_json::json!(id);
        }
        serde_json::from_value(event).unwrap()
    }

    /// A record of a `KEYS_ONLY` stream, as Lambda delivers it.
    fn record(name: &str, pk: &str, sk: &str, seq: &str) -> serde_json::Value {
        serde_json::json!({
            "eventID": "c81e728d9d4c2f636f067f89cc14862c",
            "eventName": name,
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": "us-east-1",
            "dynamodb": {
                "ApproximateCreationDateTime": 1795874400,
                "Keys": {"pk": {"S": pk}, "sk": {"S": sk}},
                "SequenceNumber": seq,
                "SizeBytes": 120,
                "StreamViewType": "KEYS_ONLY"
            },
            "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/retarget/stream/2026-11-28T00:00:00.000"
        })
    }

    #[test]
    fn only_interaction_inserts_are_counted_with_their_ttl() {
        let created = chrono::DateTime::from_timestamp(1_795_874_400, 250_000_000).unwrap();
        let msg = MessageId::at(created);
        let sub = SubscriptionId::new();
        let pk = keys::interaction_partition(msg, 3);
        let sk = keys::interaction_sort(sub, EventKind::Clicked);
        let event = window_event(
            serde_json::json!([
                record("INSERT", &pk, &sk, "111"),
                record("MODIFY", &pk, &sk, "112"),
                record("REMOVE", &pk, &sk, "113"),
                record("INSERT", &keys::stats(msg), "shardId-1", "114"),
                record("INSERT", &pk, "not-a-sort-key", "115"),
                record(
                    "INSERT",
                    &keys::secret(crate::domain::AppId::new(), crate::domain::SecretScope::Sms),
                    "SECRET",
                    "116"
                ),
            ]),
            Some("shardId-00000001795874400000-abcdef12"),
        );
        assert_eq!(
            event.time_window_properties.shard_id.as_deref(),
            Some("shardId-00000001795874400000-abcdef12")
        );
        let counted: Vec<_> = event.dynamo_db_event.records.iter().filter_map(counted_insert).collect();
        assert_eq!(counted.len(), 1);
        assert_eq!(counted[0].0, msg);
        assert_eq!(counted[0].1.kind, EventKind::Clicked);
        assert_eq!(counted[0].1.sequence, keys::stream_sequence("111").unwrap());
        // The message's data TTL, to the second: what its interaction items carry.
        let message = crate::domain::Message::new(
            crate::domain::AppId::new(),
            crate::domain::Channel::Push,
            crate::domain::Contents { title: None, body: "b".into(), url: None, html: None },
            created,
        );
        assert_eq!(counted[0].1.expires_at, message.expires_at.timestamp());
        assert_eq!(counted[0].1.expires_at, 1_795_874_400 + keys::RETENTION_DAYS * 86_400);
    }

    #[tokio::test]
    async fn a_batch_without_a_shard_id_is_failed_whole_not_counted() {
        // No endpoint is reached: the batch is refused before any store call.
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
            .endpoint_url("http://127.0.0.1:9")
            .build();
        let store = Store::new(
            aws_sdk_dynamodb::Client::from_conf(config),
            "t",
            std::sync::Arc::new(crate::SystemClock),
        );
        let msg = MessageId::new();
        let pk = keys::interaction_partition(msg, 0);
        let sk = keys::interaction_sort(SubscriptionId::new(), EventKind::Sent);
        let event = window_event(serde_json::json!([record("INSERT", &pk, &sk, "42")]), None);
        let response = handle_window(&StatsDeps { store }, event, None).await;
        assert_eq!(response.batch_item_failures.len(), 1);
        assert_eq!(response.batch_item_failures[0].item_identifier.as_deref(), Some("42"));
        let json = serde_json::to_value(&response).unwrap();
        assert_eq!(json["state"], serde_json::json!({}), "Lambda needs the state property: {json}");
    }
}

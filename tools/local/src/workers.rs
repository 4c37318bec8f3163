//! What Lambda's event sources do for the deployed functions, done locally: an EventBridge
//! schedule invoking the scheduler every `SCHEDULE_TICK_SECONDS` (moto never fires schedule
//! rules), and SQS event source mappings polling each queue, invoking the sender with a batch
//! and deleting only what the sender did not report in `batchItemFailures` — failures stay on
//! the queue, come back after the visibility timeout and reach the DLQ after maxReceiveCount.

use std::time::{Duration, Instant};

use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::sqs::SqsEvent;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use retarget_shared::SharedClock;
use retarget_shared::bootstrap::{ScheduleFunction, SqsFunction};
use serde_json::{Map, Value, json};
use tokio::sync::watch;

/// Lambda gives each sender invocation this long (the template's sender timeout).
const SENDER_TIMEOUT: Duration =
    Duration::from_secs(retarget_shared::adapters::resources::SENDER_TIMEOUT_SECONDS as u64);

/// The payload EventBridge sends for a schedule rule.
pub fn scheduled_event(now: chrono::DateTime<chrono::Utc>) -> EventBridgeEvent<Value> {
    let event = json!({
        "version": "0",
        "id": ulid::Ulid::new().to_string(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "000000000000",
        "time": retarget_shared::clock::rfc3339(now),
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:000000000000:rule/retarget-scheduler"],
        "detail": {}
    });
    serde_json::from_value(event).unwrap_or_default()
}

pub async fn run_scheduler<D: ScheduleFunction>(
    deps: &D,
    clock: &SharedClock,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            _ = interval.tick() => {}
        }
        if let Err(e) = deps.handle(scheduled_event(clock.now()), None).await {
            tracing::error!(error = %e, "scheduler tick failed");
        }
    }
}

pub async fn poll_queue<D: SqsFunction>(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    deps: &D,
    mut stop: watch::Receiver<bool>,
) {
    let arn =
        format!("arn:aws:sqs:us-east-1:000000000000:{}", queue_url.rsplit('/').next().unwrap_or_default());
    loop {
        let receive = sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send();
        let output = tokio::select! {
            _ = stop.changed() => return,
            output = receive => output,
        };
        let messages = match output {
            Ok(output) => output.messages.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %aws_sdk_sqs::Error::from(e), queue_url, "receive failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if messages.is_empty() {
            continue;
        }
        let records: Vec<Value> = messages
            .iter()
            .map(|m| {
                let attributes: Map<String, Value> = m
                    .attributes()
                    .map(|a| {
                        a.iter().map(|(k, v)| (k.as_str().to_owned(), Value::String(v.clone()))).collect()
                    })
                    .unwrap_or_default();
                json!({
                    "messageId": m.message_id(),
                    "receiptHandle": m.receipt_handle(),
                    "body": m.body(),
                    "md5OfBody": m.md5_of_body(),
                    "attributes": attributes,
                    "messageAttributes": {},
                    "eventSource": "aws:sqs",
                    "eventSourceARN": arn,
                    "awsRegion": "us-east-1",
                })
            })
            .collect();
        let event: SqsEvent = match serde_json::from_value(json!({ "Records": records })) {
            Ok(event) => event,
            Err(e) => {
                tracing::error!(error = %e, "could not build an SQS event");
                continue;
            }
        };
        let response = deps.handle(event, Some(Instant::now() + SENDER_TIMEOUT)).await;
        let failed: std::collections::HashSet<String> =
            response.batch_item_failures.into_iter().map(|f| f.item_identifier).collect();
        let done: Vec<DeleteMessageBatchRequestEntry> = messages
            .iter()
            .filter(|m| !failed.contains(m.message_id().unwrap_or_default()))
            .enumerate()
            .filter_map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .build()
                    .ok()
            })
            .collect();
        if !done.is_empty() {
            match sqs.delete_message_batch().queue_url(queue_url).set_entries(Some(done)).send().await {
                Ok(output) if !output.failed.is_empty() => {
                    tracing::warn!(
                        failed = output.failed.len(),
                        "some deletes failed; those messages will be redelivered"
                    );
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %aws_sdk_sqs::Error::from(e), "delete failed; messages will be redelivered")
                }
            }
        }
    }
}

//! What Lambda's event sources do for the deployed functions, done locally: an EventBridge
//! schedule invoking the scheduler every `SCHEDULE_TICK_SECONDS` (moto never fires schedule
//! rules), and SQS event source mappings polling each queue, invoking the sender with a batch
//! and deleting only what the sender did not report in `batchItemFailures` — failures stay on
//! the queue, come back after the visibility timeout and reach the DLQ after maxReceiveCount.

use std::collections::HashSet;
use std::future::Future;
use std::time::{Duration, Instant};

use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message, MessageSystemAttributeName};
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

/// The ARN an event source mapping names its queue by (the local account and region).
pub fn queue_arn(queue_url: &str) -> String {
    format!("arn:aws:sqs:us-east-1:000000000000:{}", queue_url.rsplit('/').next().unwrap_or_default())
}

/// One ReceiveMessage as the event source mapping makes it: up to ten messages with their
/// system attributes (the receive count among them), waiting up to `wait_seconds` for one.
pub async fn receive(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    wait_seconds: i32,
) -> Result<Vec<Message>, aws_sdk_sqs::Error> {
    let output = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(wait_seconds)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await?;
    Ok(output.messages.unwrap_or_default())
}

/// The SQS event Lambda invokes the function with for these received messages.
pub fn sqs_event(messages: &[Message], queue_arn: &str) -> Result<SqsEvent, serde_json::Error> {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attributes: Map<String, Value> = m
                .attributes()
                .map(|a| a.iter().map(|(k, v)| (k.as_str().to_owned(), Value::String(v.clone()))).collect())
                .unwrap_or_default();
            json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "md5OfBody": m.md5_of_body(),
                "attributes": attributes,
                "messageAttributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1",
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records }))
}

/// The invocation, with the time Lambda gives a sender.
pub fn invoke<D: SqsFunction>(deps: &D, event: SqsEvent) -> impl Future<Output = SqsBatchResponse> + Send {
    deps.handle(event, Some(Instant::now() + SENDER_TIMEOUT))
}

/// What became of a handled batch on the queue.
#[derive(Debug)]
pub struct Settled<'m> {
    /// The messages the function reported as failed: left on the queue, to come back after the
    /// visibility timeout.
    pub failed: Vec<&'m Message>,
    /// Deletes SQS refused: those messages will be redelivered too.
    pub undeleted: usize,
}

/// Deletes the messages the function did not report in `batchItemFailures`.
pub async fn delete_successes<'m>(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    messages: &'m [Message],
    response: &SqsBatchResponse,
) -> Result<Settled<'m>, aws_sdk_sqs::Error> {
    let reported: HashSet<&str> =
        response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
    let (failed, done): (Vec<&Message>, Vec<&Message>) =
        messages.iter().partition(|m| reported.contains(m.message_id().unwrap_or_default()));
    let mut undeleted = 0;
    // A batch holds at most ten messages, DeleteMessageBatch's limit; larger ones go in tens.
    for chunk in done.chunks(10) {
        let entries: Vec<DeleteMessageBatchRequestEntry> = chunk
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .build()
                    .ok()
            })
            .collect();
        let output =
            sqs.delete_message_batch().queue_url(queue_url).set_entries(Some(entries)).send().await?;
        undeleted += output.failed.len();
    }
    Ok(Settled { failed, undeleted })
}

/// One received batch, as the event source mapping handles it: the SQS event, the
/// invocation, and the deletion of what did not fail.
pub async fn deliver_batch<'m, D: SqsFunction>(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    deps: &D,
    messages: &'m [Message],
) -> Result<Settled<'m>, BatchError> {
    let event = sqs_event(messages, &queue_arn(queue_url)).map_err(BatchError::Event)?;
    let response = invoke(deps, event).await;
    delete_successes(sqs, queue_url, messages, &response).await.map_err(BatchError::Delete)
}

/// Why a batch could not be handled; its messages come back after the visibility timeout.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("could not build an SQS event: {0}")]
    Event(serde_json::Error),
    #[error("delete failed; messages will be redelivered: {0}")]
    Delete(aws_sdk_sqs::Error),
}

/// The event source mapping of one queue, until `stop`: long-polls it and hands each batch to
/// [`deliver_batch`].
pub async fn poll_queue<D: SqsFunction>(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    deps: &D,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        // Short long-polls, one after the other: a sender's retry, put back with a delay of a
        // second or more (`DelaySeconds`), is received within about a second of its delay
        // passing, as Lambda's pollers would (the emulator looks again once a second).
        let output = tokio::select! {
            _ = stop.changed() => return,
            output = receive(sqs, queue_url, 1) => output,
        };
        let messages = match output {
            Ok(messages) => messages,
            Err(e) => {
                tracing::warn!(error = %e, queue_url, "receive failed");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if messages.is_empty() {
            continue;
        }
        match deliver_batch(sqs, queue_url, deps, &messages).await {
            Ok(settled) if settled.undeleted > 0 => {
                tracing::warn!(
                    failed = settled.undeleted,
                    "some deletes failed; those messages will be redelivered"
                );
            }
            Ok(_) => {}
            Err(e @ BatchError::Event(_)) => tracing::error!(error = %e, "batch not handled"),
            Err(e @ BatchError::Delete(_)) => tracing::warn!(error = %e, "batch not deleted"),
        }
    }
}

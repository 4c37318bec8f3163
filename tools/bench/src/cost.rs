//! Cost on paper: the counted requests and units of one retarget, priced per million
//! recipients at on-demand us-east-1 list prices.

use serde_json::{Value, json};

/// DynamoDB on-demand, us-east-1 (since the November 2024 price cut), per request unit.
pub const DYNAMODB_WRITE_UNIT: f64 = 0.625 / 1e6;
pub const DYNAMODB_READ_UNIT: f64 = 0.125 / 1e6;
/// SQS standard queue, per request (each 64 KiB chunk of a payload is one request); the
/// free tier is ignored.
pub const SQS_REQUEST: f64 = 0.40 / 1e6;
pub const SQS_CHUNK_BYTES: f64 = 65_536.0;
/// Lambda arm64: per GB-second and per request.
pub const LAMBDA_GB_SECOND: f64 = 0.000_013_333_4;
pub const LAMBDA_REQUEST: f64 = 0.20 / 1e6;
/// EventBridge custom events, per event.
pub const EVENTBRIDGE_EVENT: f64 = 1.00 / 1e6;
/// Memory of the functions in infra/template.yaml.
pub const SCHEDULER_GB: f64 = 0.5;
pub const SENDER_GB: f64 = 0.25;
pub const STATS_GB: f64 = 0.25;
/// What one scheduler run may spend dispatching (its timeout less the deadline margin).
pub const SCHEDULER_RUN_SECONDS: f64 = 270.0;
/// Lambda's SQS event source mapping hands a sender up to this many messages per invocation.
pub const SENDER_BATCH: f64 = 10.0;

/// What was counted for one retarget of `recipients` recipients.
pub struct Counted {
    pub recipients: f64,
    /// Scheduler: DynamoDB units of the dispatch (audience reads, checkpoints, claim, finish).
    pub dispatch_write_units: f64,
    pub dispatch_billed_read_units: f64,
    pub dispatch_wall_seconds: f64,
    /// SendMessageBatch calls and the bytes of one full batch (ten jobs of 500 recipients).
    pub send_batches: f64,
    pub full_batch_bytes: f64,
    pub jobs: f64,
    /// Senders, per recipient, from the sample run with a provider that answers at once.
    pub sender_write_units_per_recipient: f64,
    pub sender_billed_read_units_per_recipient: f64,
    pub sender_wall_seconds_per_job: f64,
    /// The stats aggregator counting the senders' `sent` from the table's stream (its reads
    /// of the stream are not billed), per recipient and per invocation.
    pub stats_write_units_per_recipient: f64,
    pub stats_billed_read_units_per_recipient: f64,
    pub stats_invocations_per_recipient: f64,
    pub stats_wall_seconds_per_invocation: f64,
}

pub fn per_million(c: &Counted) -> Value {
    let scale = 1e6 / c.recipients.max(1.0);
    let chunks_per_batch = (c.full_batch_bytes / SQS_CHUNK_BYTES).ceil().max(1.0);
    let jobs = c.jobs * scale;

    let dispatch_writes = c.dispatch_write_units * scale;
    let dispatch_reads = c.dispatch_billed_read_units * scale;
    let send_requests = c.send_batches * scale * chunks_per_batch;
    // Consumers: one ReceiveMessage per ten messages (same payload, same chunks) and one
    // DeleteMessageBatch per ten (small payload); empty polls are a fixed cost, not per retarget.
    let receive_requests = (jobs / SENDER_BATCH).ceil() * chunks_per_batch;
    let delete_requests = (jobs / SENDER_BATCH).ceil();
    let scheduler_gb_s = c.dispatch_wall_seconds * scale * SCHEDULER_GB;
    // A run stops 30 s before its 300 s timeout and the next tick resumes from the checkpoint.
    let scheduler_invocations = (c.dispatch_wall_seconds / SCHEDULER_RUN_SECONDS).ceil().max(1.0) * scale;
    let sender_writes = c.sender_write_units_per_recipient * 1e6;
    let sender_reads = c.sender_billed_read_units_per_recipient * 1e6;
    let sender_gb_s = c.sender_wall_seconds_per_job * jobs * SENDER_GB;
    let sender_invocations = (jobs / SENDER_BATCH).ceil();
    let stats_writes = c.stats_write_units_per_recipient * 1e6;
    let stats_reads = c.stats_billed_read_units_per_recipient * 1e6;
    let stats_invocations = (c.stats_invocations_per_recipient * 1e6).ceil();
    let stats_gb_s = c.stats_wall_seconds_per_invocation * stats_invocations * STATS_GB;

    let items = [
        ("dynamodb_dispatch_writes", dispatch_writes, DYNAMODB_WRITE_UNIT),
        ("dynamodb_dispatch_reads", dispatch_reads, DYNAMODB_READ_UNIT),
        ("dynamodb_sender_writes", sender_writes, DYNAMODB_WRITE_UNIT),
        ("dynamodb_sender_reads", sender_reads, DYNAMODB_READ_UNIT),
        ("sqs_send", send_requests, SQS_REQUEST),
        ("sqs_receive", receive_requests, SQS_REQUEST),
        ("sqs_delete", delete_requests, SQS_REQUEST),
        ("lambda_scheduler_gb_s", scheduler_gb_s, LAMBDA_GB_SECOND),
        ("lambda_scheduler_requests", scheduler_invocations, LAMBDA_REQUEST),
        ("lambda_sender_gb_s", sender_gb_s, LAMBDA_GB_SECOND),
        ("lambda_sender_requests", sender_invocations, LAMBDA_REQUEST),
        ("dynamodb_stats_writes", stats_writes, DYNAMODB_WRITE_UNIT),
        ("dynamodb_stats_reads", stats_reads, DYNAMODB_READ_UNIT),
        ("lambda_stats_gb_s", stats_gb_s, LAMBDA_GB_SECOND),
        ("lambda_stats_requests", stats_invocations, LAMBDA_REQUEST),
        ("eventbridge_events", scale, EVENTBRIDGE_EVENT),
    ];
    let mut lines = serde_json::Map::new();
    let (mut dispatch_total, mut total) = (0.0, 0.0);
    for (name, quantity, price) in items {
        let dollars = quantity * price;
        total += dollars;
        // What follows the dispatch (sends, their queue reads, their stats) is not its cost.
        if !name.contains("sender")
            && !name.contains("stats")
            && name != "sqs_receive"
            && name != "sqs_delete"
        {
            dispatch_total += dollars;
        }
        lines.insert(name.into(), json!({"quantity": quantity, "unit_price": price, "dollars": dollars}));
    }
    json!({
        "per_million_recipients": lines,
        "sqs_chunks_per_batch": chunks_per_batch,
        "dispatch_dollars": dispatch_total,
        "total_dollars": total,
        "target_dollars": 2.50,
    })
}

//! The definitions of the table, queues and event bus. The local stack and the tests create
//! their resources from these; `tests/tests/template_matches.rs` proves `infra/template.yaml`
//! declares the same.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType, TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;

use crate::keys;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexProjection {
    All,
    KeysOnly,
}

#[derive(Debug, Clone, Copy)]
pub struct IndexSpec {
    pub name: &'static str,
    pub pk: &'static str,
    pub sk: &'static str,
    pub projection: IndexProjection,
}

/// GSI1: a person's subscriptions and a message's retargets. GSI2: due retargets (sparse).
pub const INDEXES: [IndexSpec; 2] = [
    IndexSpec { name: keys::GSI1, pk: keys::GSI1_PK, sk: keys::GSI1_SK, projection: IndexProjection::All },
    IndexSpec {
        name: keys::GSI2,
        pk: keys::GSI2_PK,
        sk: keys::GSI2_SK,
        projection: IndexProjection::KeysOnly,
    },
];

/// Every key attribute of the table and its indexes; all are strings.
pub const KEY_ATTRIBUTES: [&str; 6] =
    [keys::PK, keys::SK, keys::GSI1_PK, keys::GSI1_SK, keys::GSI2_PK, keys::GSI2_SK];

/// The table's stream: keys only. The stats aggregator needs nothing else (an interaction's
/// key names its message, whose id gives its TTL), and no item's attributes — a secret
/// item's least of all — reach the role that reads the stream.
pub const STREAM_VIEW_TYPE: &str = "KEYS_ONLY";

/// The stats aggregator's event source mapping (the template's values; the local stack's
/// poller follows them): records per invocation, the longest wait to fill a batch, and the
/// tumbling window that makes each invocation name its shard.
pub const STATS_BATCH_SIZE: u32 = 1000;
pub const STATS_BATCHING_WINDOW_SECONDS: u32 = 1;
pub const STATS_TUMBLING_WINDOW_SECONDS: u32 = 60;

/// One SQS work queue with its dead-letter queue.
#[derive(Debug, Clone, Copy)]
pub struct QueueSpec {
    /// The template's logical ids of the queue and of its dead-letter queue.
    pub logical_id: &'static str,
    pub dlq_logical_id: &'static str,
    pub name: &'static str,
    /// ≥ 6 × the consumer's timeout, as AWS advises for Lambda event sources.
    pub visibility_timeout_seconds: u32,
    pub max_receive_count: u32,
    pub message_retention_seconds: u32,
    pub dlq_retention_seconds: u32,
}

/// 1 MiB: many recipients per message is how fan-out stays cheap.
pub const MAX_MESSAGE_SIZE: u32 = 1_048_576;
/// The sender functions' timeout; queue visibility is six times this.
pub const SENDER_TIMEOUT_SECONDS: u32 = 60;

pub const PUSH_QUEUE: QueueSpec = QueueSpec {
    logical_id: "PushQueue",
    dlq_logical_id: "PushDeadLetterQueue",
    name: "push",
    visibility_timeout_seconds: 6 * SENDER_TIMEOUT_SECONDS,
    max_receive_count: 5,
    message_retention_seconds: 4 * 86_400,
    dlq_retention_seconds: 14 * 86_400,
};

pub const SMS_QUEUE: QueueSpec =
    QueueSpec { logical_id: "SmsQueue", dlq_logical_id: "SmsDeadLetterQueue", name: "sms", ..PUSH_QUEUE };

pub const EMAIL_QUEUE: QueueSpec = QueueSpec {
    logical_id: "EmailQueue",
    dlq_logical_id: "EmailDeadLetterQueue",
    name: "email",
    ..PUSH_QUEUE
};

pub const QUEUES: [QueueSpec; 3] = [PUSH_QUEUE, SMS_QUEUE, EMAIL_QUEUE];

pub async fn create_table(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<(), aws_sdk_dynamodb::Error> {
    let string_key = |name: &str| {
        AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build()
    };
    let key =
        |name: &str, key_type| KeySchemaElement::builder().attribute_name(name).key_type(key_type).build();
    let mut request = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .key_schema(key(keys::PK, KeyType::Hash)?)
        .key_schema(key(keys::SK, KeyType::Range)?)
        .stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::from(STREAM_VIEW_TYPE))
                .build()?,
        );
    for name in KEY_ATTRIBUTES {
        request = request.attribute_definitions(string_key(name)?);
    }
    for index in INDEXES {
        let projection = match index.projection {
            IndexProjection::All => ProjectionType::All,
            IndexProjection::KeysOnly => ProjectionType::KeysOnly,
        };
        request = request.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(index.name)
                .key_schema(key(index.pk, KeyType::Hash)?)
                .key_schema(key(index.sk, KeyType::Range)?)
                .projection(Projection::builder().projection_type(projection).build())
                .build()?,
        );
    }
    request.send().await?;
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder().attribute_name(keys::EXPIRES_AT).enabled(true).build()?,
        )
        .send()
        .await?;
    Ok(())
}

/// Queue URLs of one queue pair.
#[derive(Debug, Clone)]
pub struct QueueUrls {
    pub queue_url: String,
    pub dlq_url: String,
}

/// Creates (or finds, CreateQueue is idempotent for equal attributes) a queue and its DLQ,
/// named `{prefix}-{name}` and `{prefix}-{name}-dlq`.
pub async fn create_queue(
    client: &aws_sdk_sqs::Client,
    prefix: &str,
    spec: &QueueSpec,
) -> Result<QueueUrls, aws_sdk_sqs::Error> {
    let dlq_url = client
        .create_queue()
        .queue_name(format!("{prefix}-{}-dlq", spec.name))
        .attributes(QueueAttributeName::MessageRetentionPeriod, spec.dlq_retention_seconds.to_string())
        .attributes(QueueAttributeName::MaximumMessageSize, MAX_MESSAGE_SIZE.to_string())
        .send()
        .await?
        .queue_url
        .unwrap_or_default();
    let dlq_arn = client
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .unwrap_or_default();
    let redrive =
        serde_json::json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": spec.max_receive_count});
    let queue_url = client
        .create_queue()
        .queue_name(format!("{prefix}-{}", spec.name))
        .attributes(QueueAttributeName::VisibilityTimeout, spec.visibility_timeout_seconds.to_string())
        .attributes(QueueAttributeName::MessageRetentionPeriod, spec.message_retention_seconds.to_string())
        .attributes(QueueAttributeName::MaximumMessageSize, MAX_MESSAGE_SIZE.to_string())
        .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
        .send()
        .await?
        .queue_url
        .unwrap_or_default();
    Ok(QueueUrls { queue_url, dlq_url })
}

/// Creates the custom event bus the scheduler publishes `RetargetDispatched` on.
pub async fn create_event_bus(
    client: &aws_sdk_eventbridge::Client,
    name: &str,
) -> Result<(), aws_sdk_eventbridge::Error> {
    match client.create_event_bus().name(name).send().await {
        Ok(_) => Ok(()),
        Err(e) => {
            let e = aws_sdk_eventbridge::Error::from(e);
            if matches!(e, aws_sdk_eventbridge::Error::ResourceAlreadyExistsException(_)) {
                Ok(())
            } else {
                Err(e)
            }
        }
    }
}

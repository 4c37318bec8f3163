//! `infra/template.yaml` declares the same table, indexes and queues as
//! `retarget_shared::adapters::resources` (from which the local stack and the tests create theirs).
//! Every expected value comes from the Rust constants, never re-typed here.

use std::collections::BTreeSet;

use retarget_shared::adapters::resources::{self, IndexProjection, QueueSpec};
use retarget_shared::bootstrap::{dead_letter_queue_url_var, queue_url_var};
use retarget_shared::domain::Channel;
use retarget_shared::keys;
use retarget_tests::template::*;
use serde_yaml::Value;

/// A KeySchema as (attribute, key type) pairs, in order.
fn key_schema(v: &Value, what: &str) -> Vec<(String, String)> {
    as_seq(v, what)
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let w = format!("{what}[{i}]");
            (
                as_str(field(e, "AttributeName", &w), &w).to_owned(),
                as_str(field(e, "KeyType", &w), &w).to_owned(),
            )
        })
        .collect()
}

fn hash_range(pk: &str, sk: &str) -> Vec<(String, String)> {
    vec![(pk.to_owned(), "HASH".to_owned()), (sk.to_owned(), "RANGE".to_owned())]
}

fn table(template: &Value) -> &Value {
    resource(template, "Table", "AWS::DynamoDB::Table")
}

#[test]
fn table_key_schema_and_attributes_match() {
    let t = template();
    let table = table(&t);
    assert_eq!(
        key_schema(prop(table, "Table", "KeySchema"), "Table.KeySchema"),
        hash_range(keys::PK, keys::SK),
        "Table.KeySchema differs"
    );

    let defs = as_seq(prop(table, "Table", "AttributeDefinitions"), "Table.AttributeDefinitions");
    let mut declared = Vec::new();
    for (i, d) in defs.iter().enumerate() {
        let w = format!("Table.AttributeDefinitions[{i}]");
        let name = as_str(field(d, "AttributeName", &w), &w).to_owned();
        let ty = as_str(field(d, "AttributeType", &w), &w);
        assert_eq!(ty, "S", "{w} ({name}) AttributeType differs");
        declared.push(name);
    }
    let unique: BTreeSet<&str> = declared.iter().map(String::as_str).collect();
    assert_eq!(unique.len(), declared.len(), "Table.AttributeDefinitions has duplicates: {declared:?}");
    let expected: BTreeSet<&str> = resources::KEY_ATTRIBUTES.into_iter().collect();
    assert_eq!(unique, expected, "Table.AttributeDefinitions differ from resources::KEY_ATTRIBUTES");
}

#[test]
fn table_indexes_match() {
    let t = template();
    let table = table(&t);
    let gsis = as_seq(prop(table, "Table", "GlobalSecondaryIndexes"), "Table.GlobalSecondaryIndexes");

    let names: Vec<&str> = gsis
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let w = format!("Table.GlobalSecondaryIndexes[{i}]");
            as_str(field(g, "IndexName", &w), &w)
        })
        .collect();
    let expected_names: Vec<&str> = resources::INDEXES.iter().map(|i| i.name).collect();
    assert_eq!(
        names.iter().copied().collect::<BTreeSet<_>>(),
        expected_names.iter().copied().collect::<BTreeSet<_>>(),
        "GSI names differ"
    );
    assert_eq!(names.len(), expected_names.len(), "GSI count differs: {names:?}");

    for spec in resources::INDEXES {
        let (_, gsi) = names
            .iter()
            .zip(gsis)
            .find(|(n, _)| **n == spec.name)
            .unwrap_or_else(|| panic!("GSI {} is missing", spec.name));
        let w = format!("GSI {}", spec.name);
        assert_eq!(
            key_schema(field(gsi, "KeySchema", &w), &format!("{w}.KeySchema")),
            hash_range(spec.pk, spec.sk),
            "{w} KeySchema differs"
        );
        let projection = field(gsi, "Projection", &w);
        let ty = as_str(field(projection, "ProjectionType", &w), &format!("{w}.Projection"));
        let expected = match spec.projection {
            IndexProjection::All => "ALL",
            IndexProjection::KeysOnly => "KEYS_ONLY",
        };
        assert_eq!(ty, expected, "{w} ProjectionType differs");
        if spec.projection == IndexProjection::KeysOnly {
            assert!(
                opt_field(projection, "NonKeyAttributes").is_none(),
                "{w} is KEYS_ONLY but lists NonKeyAttributes"
            );
        }
    }
}

#[test]
fn table_ttl_and_billing_match() {
    let t = template();
    let table = table(&t);
    let ttl = prop(table, "Table", "TimeToLiveSpecification");
    let w = "Table.TimeToLiveSpecification";
    assert_eq!(as_str(field(ttl, "AttributeName", w), w), keys::EXPIRES_AT, "{w}.AttributeName differs");
    assert!(as_bool(field(ttl, "Enabled", w), w), "{w}.Enabled is not true");
    assert_eq!(
        as_str(prop(table, "Table", "BillingMode"), "Table.BillingMode"),
        "PAY_PER_REQUEST",
        "Table.BillingMode differs"
    );
}

fn check_queue(t: &Value, spec: &QueueSpec) {
    let id = spec.logical_id;
    let queue = resource(t, id, "AWS::SQS::Queue");
    assert_number(queue, id, "VisibilityTimeout", spec.visibility_timeout_seconds.into());
    assert_number(queue, id, "MessageRetentionPeriod", spec.message_retention_seconds.into());
    assert_number(queue, id, "MaximumMessageSize", resources::MAX_MESSAGE_SIZE.into());

    let w = format!("{id}.Properties.RedrivePolicy");
    let raw = prop(queue, id, "RedrivePolicy");
    // Also accept the policy as a JSON string (JSON is YAML).
    let parsed;
    let redrive = match raw {
        Value::String(s) => {
            parsed = serde_yaml::from_str::<Value>(s).unwrap_or_else(|e| panic!("{w} is not JSON: {e}"));
            &parsed
        }
        other => other,
    };
    assert_eq!(
        as_u64(field(redrive, "maxReceiveCount", &w), &format!("{w}.maxReceiveCount")),
        u64::from(spec.max_receive_count),
        "{w}.maxReceiveCount differs"
    );
    let target = get_att(field(redrive, "deadLetterTargetArn", &w), &format!("{w}.deadLetterTargetArn"));
    assert_eq!(
        target,
        (spec.dlq_logical_id.to_owned(), "Arn".to_owned()),
        "{w}.deadLetterTargetArn does not point at {}.Arn",
        spec.dlq_logical_id
    );

    let dlq_id = spec.dlq_logical_id;
    let dlq = resource(t, dlq_id, "AWS::SQS::Queue");
    assert_number(dlq, dlq_id, "MessageRetentionPeriod", spec.dlq_retention_seconds.into());
    assert_number(dlq, dlq_id, "MaximumMessageSize", resources::MAX_MESSAGE_SIZE.into());
}

#[test]
fn queues_match_specs() {
    let t = template();
    for spec in &resources::QUEUES {
        check_queue(&t, spec);
    }
}

#[test]
fn visibility_timeout_covers_six_sender_timeouts() {
    let t = template();
    let minimum = 6 * u64::from(resources::SENDER_TIMEOUT_SECONDS);
    for spec in &resources::QUEUES {
        assert!(
            u64::from(spec.visibility_timeout_seconds) >= minimum,
            "resources {}: visibility_timeout_seconds {} < 6 × SENDER_TIMEOUT_SECONDS ({minimum})",
            spec.name,
            spec.visibility_timeout_seconds
        );
        let id = spec.logical_id;
        let queue = resource(&t, id, "AWS::SQS::Queue");
        let what = format!("{id}.Properties.VisibilityTimeout");
        let visibility = as_u64(prop(queue, id, "VisibilityTimeout"), &what);
        assert!(visibility >= minimum, "{what} {visibility} < 6 × SENDER_TIMEOUT_SECONDS ({minimum})");
    }
}

/// The variables every function gets (`Globals.Function.Environment.Variables`), if any.
fn global_env(t: &Value) -> Option<&Value> {
    opt_field(field(field(t, "Globals", "template"), "Function", "Globals"), "Environment")
        .map(|e| field(e, "Variables", "Globals.Function.Environment"))
}

/// The environment variables of `logical_id` on AWS: the Globals' and its own, with what each
/// refers to (`!Ref X` → `X`; a plain value or another intrinsic as its Debug form).
fn function_env(t: &Value, logical_id: &str) -> std::collections::BTreeMap<String, String> {
    let globals = global_env(t);
    let function = resource(t, logical_id, "AWS::Serverless::Function");
    let own = opt_field(field(function, "Properties", logical_id), "Environment")
        .map(|e| field(e, "Variables", &format!("{logical_id}.Properties.Environment")));
    let mut vars = std::collections::BTreeMap::new();
    for map in [globals, own].into_iter().flatten() {
        for (name, value) in
            map.as_mapping().unwrap_or_else(|| panic!("{logical_id}: Variables not a mapping"))
        {
            let name = as_str(name, "a variable name").to_owned();
            let target = match intrinsic(value) {
                Some((tag, target)) if tag == "Ref" => as_str(target, &name).to_owned(),
                _ => format!("{value:?}"),
            };
            vars.insert(name, target);
        }
    }
    vars
}

#[test]
fn function_environment_and_outputs_reference_the_resources() {
    let t = template();
    let [push, sms, email] = resources::QUEUES;
    assert_eq!(push.logical_id, resources::PUSH_QUEUE.logical_id);
    assert_eq!(sms.logical_id, resources::SMS_QUEUE.logical_id);
    assert_eq!(email.logical_id, resources::EMAIL_QUEUE.logical_id);
    let outputs = field(&t, "Outputs", "template");
    for (var, output, target, function) in [
        ("TABLE_NAME", "TableName", "Table", "SubscriptionsFunction"),
        (queue_url_var(Channel::Push), "PushQueueUrl", push.logical_id, "SchedulerFunction"),
        (queue_url_var(Channel::Sms), "SmsQueueUrl", sms.logical_id, "SchedulerFunction"),
        (queue_url_var(Channel::Email), "EmailQueueUrl", email.logical_id, "SchedulerFunction"),
        (queue_url_var(Channel::Email), "EmailQueueUrl", email.logical_id, "MessagesFunction"),
        (queue_url_var(Channel::Email), "EmailQueueUrl", email.logical_id, "EmailSenderFunction"),
        ("EVENT_BUS_NAME", "EventBusName", "EventBus", "SchedulerFunction"),
    ] {
        let vars = function_env(&t, function);
        let w = format!("{function}'s {var}");
        assert_eq!(vars.get(var).map(String::as_str), Some(target), "{w} differs");
        let w = format!("Outputs.{output}.Value");
        let value = field(field(outputs, output, "Outputs"), "Value", &format!("Outputs.{output}"));
        assert_eq!(reference(value, &w), target, "{w} differs");
    }
    resource(&t, "EventBus", "AWS::Events::EventBus");
}

/// The template's parameters of `Type: Number`.
fn number_parameters() -> BTreeSet<String> {
    let t = template();
    field(&t, "Parameters", "template")
        .as_mapping()
        .expect("Parameters")
        .iter()
        .filter(|(_, p)| p["Type"].as_str() == Some("Number"))
        .map(|(name, _)| as_str(name, "a parameter").to_owned())
        .collect()
}

/// Builds `D` from an environment holding every name the template gives the function (dummy
/// values), through the `FromEnv` its `main` uses; the names it read, set or not.
fn names_read<D: retarget_shared::bootstrap::FromEnv>(
    declared: &std::collections::BTreeMap<String, String>,
) -> BTreeSet<String> {
    use retarget_shared::config::EnvReader;
    let sdk = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .build();
    let infra =
        retarget_shared::bootstrap::Infra::new(sdk, std::sync::Arc::new(retarget_shared::SystemClock));
    // A URL for each (queue URLs, bases); a number for what a Number parameter sets.
    let numbers = number_parameters();
    let values: Vec<(String, String)> = declared
        .iter()
        .map(|(name, target)| match numbers.contains(target) {
            true => (name.clone(), "2".to_owned()),
            false => (name.clone(), format!("https://{}.example.com", name.to_lowercase())),
        })
        .collect();
    let mut env = EnvReader::from_pairs(values.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    if let Err(e) = D::from_env(&mut env, &infra) {
        panic!("cannot be built from its template environment: {e}");
    }
    let read = env.names_read().clone();
    if let Err(e) = env.finish() {
        panic!("its template environment is refused: {e}");
    }
    read
}

/// Issue 14: each function is given exactly the variables it reads — none missing (it would
/// not start), none extra (queue URLs and the bus name went to every function through Globals).
#[tokio::test]
async fn each_function_is_given_exactly_the_environment_it_reads() {
    use retarget_shared::edge::request::AppFunction;
    use retarget_shared::services::{dispatch::DispatchDeps, sender::SenderDeps, stats::StatsDeps};
    type Reader = fn(&std::collections::BTreeMap<String, String>) -> BTreeSet<String>;
    let functions: [(&str, Reader); 14] = [
        ("SubscriptionsFunction", names_read::<AppFunction<retarget_subscriptions::Subscriptions>>),
        ("MessagesFunction", names_read::<AppFunction<retarget_messages::Messages>>),
        ("EventsFunction", names_read::<AppFunction<retarget_events::Events>>),
        ("WebhooksFunction", names_read::<retarget_webhooks::Deps>),
        ("AudiencesFunction", names_read::<AppFunction<retarget_audiences::Audiences>>),
        ("AudienceExportFunction", names_read::<retarget_audiences::AudienceExport>),
        ("RetargetsFunction", names_read::<AppFunction<retarget_retargets::Retargets>>),
        ("SchedulerFunction", names_read::<DispatchDeps>),
        ("StatsFunction", names_read::<StatsDeps>),
        ("SmsSenderFunction", names_read::<SenderDeps<retarget_sms_sender::TwilioProvider>>),
        ("PushSenderFunction", names_read::<SenderDeps<retarget_push_sender::PushProvider>>),
        ("EmailSenderFunction", names_read::<SenderDeps<retarget_email_sender::EmailProvider>>),
        ("EmailEventsFunction", names_read::<retarget_email_events::EmailEvents>),
        ("DashboardFunction", names_read::<retarget_dashboard::Dashboard>),
    ];
    let t = template();
    let all: BTreeSet<String> = field(&t, "Resources", "template")
        .as_mapping()
        .expect("Resources")
        .iter()
        .filter(|(_, r)| r["Type"].as_str() == Some("AWS::Serverless::Function"))
        .map(|(id, _)| as_str(id, "a logical id").to_owned())
        .collect();
    let checked: BTreeSet<String> = functions.iter().map(|(id, _)| (*id).to_owned()).collect();
    assert_eq!(all, checked, "every function of the template is checked");
    for (id, read) in functions {
        let declared = function_env(&t, id);
        let declared_names: BTreeSet<String> = declared.keys().cloned().collect();
        assert_eq!(read(&declared), declared_names, "{id}: what it reads vs what the template gives it");
    }
}

/// Issue 14: every function logs into a log group of the stack's, with the retention parameter
/// (30 days by default), deleted with the stack; the table alone is retained.
#[test]
fn every_function_logs_into_its_own_group_with_a_retention() {
    let t = template();
    let parameter = field(field(&t, "Parameters", "template"), "LogRetentionDays", "Parameters");
    assert_eq!(as_u64(field(parameter, "Default", "LogRetentionDays"), "LogRetentionDays.Default"), 30);
    let resources = field(&t, "Resources", "template").as_mapping().expect("Resources");
    let mut groups = BTreeSet::new();
    for (id, r) in resources {
        let id = as_str(id, "a logical id");
        if r["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let logging = prop(r, id, "LoggingConfig");
        assert_eq!(as_str(field(logging, "LogFormat", id), id), "JSON", "{id} logs JSON");
        let group =
            reference(field(logging, "LogGroup", id), &format!("{id}.LoggingConfig.LogGroup")).to_owned();
        let g = resource(&t, &group, "AWS::Logs::LogGroup");
        assert_eq!(reference(prop(g, &group, "RetentionInDays"), &group), "LogRetentionDays");
        assert_eq!(as_str(field(g, "DeletionPolicy", &group), &group), "Delete");
        assert!(groups.insert(group.clone()), "{group} is shared");
    }
    assert_eq!(groups.len(), 14);
    assert_eq!(as_str(field(table(&t), "DeletionPolicy", "Table"), "Table"), "Retain");
}

#[test]
fn table_stream_feeds_the_stats_aggregator_as_the_local_stack_does() {
    let t = template();
    let table = table(&t);
    let stream = prop(table, "Table", "StreamSpecification");
    let w = "Table.StreamSpecification.StreamViewType";
    assert_eq!(as_str(field(stream, "StreamViewType", w), w), resources::STREAM_VIEW_TYPE, "{w} differs");

    let function = resource(&t, "StatsFunction", "AWS::Serverless::Function");
    let events = prop(function, "StatsFunction", "Events");
    let source = field(events, "TableStream", "StatsFunction.Events");
    let w = "StatsFunction.Events.TableStream";
    assert_eq!(as_str(field(source, "Type", w), w), "DynamoDB");
    let props = field(source, "Properties", w);
    let (table_id, attribute) = get_att(field(props, "Stream", w), &format!("{w}.Stream"));
    assert_eq!((table_id.as_str(), attribute.as_str()), ("Table", "StreamArn"));
    assert_eq!(as_u64(field(props, "BatchSize", w), w), u64::from(resources::STATS_BATCH_SIZE));
    assert_eq!(
        as_u64(field(props, "MaximumBatchingWindowInSeconds", w), w),
        u64::from(resources::STATS_BATCHING_WINDOW_SECONDS)
    );
    // The window is what gives each invocation its shardId, which the counters are keyed by.
    assert_eq!(
        as_u64(field(props, "TumblingWindowInSeconds", w), w),
        u64::from(resources::STATS_TUMBLING_WINDOW_SECONDS)
    );
    // One invocation per shard at a time: each counter item has a single writer, in order.
    assert_eq!(as_u64(field(props, "ParallelizationFactor", w), w), 1);
    assert_eq!(as_str(field(props, "StartingPosition", w), w), "TRIM_HORIZON");
    let responses = as_seq(field(props, "FunctionResponseTypes", w), w);
    assert_eq!(responses.iter().filter_map(Value::as_str).collect::<Vec<_>>(), ["ReportBatchItemFailures"]);
    let filters = as_seq(field(field(props, "FilterCriteria", w), "Filters", w), w);
    let pattern: serde_json::Value =
        serde_json::from_str(as_str(field(&filters[0], "Pattern", w), w)).expect("filter pattern is JSON");
    assert_eq!(
        pattern,
        serde_json::json!({"eventName": ["INSERT"], "dynamodb": {"Keys": {"pk": {"S": [{"prefix": keys::INTERACTION_PREFIX}]}}}})
    );
}

/// Each sender consumes its channel's queue, is told that queue's and its dead-letter queue's
/// URLs (where it puts back, delayed, the recipients to retry, and what is left after the retry
/// budget), and may send to both — and only there.
#[test]
fn senders_retry_onto_their_own_queue_and_dead_letter_their_own_dlq() {
    let t = template();
    let globals = global_env(&t);
    for (id, channel, spec) in [
        ("SmsSenderFunction", Channel::Sms, resources::SMS_QUEUE),
        ("PushSenderFunction", Channel::Push, resources::PUSH_QUEUE),
    ] {
        let function = resource(&t, id, "AWS::Serverless::Function");
        let vars =
            field(prop(function, id, "Environment"), "Variables", &format!("{id}.Properties.Environment"));
        let w = format!("{id}.Properties.Environment.Variables");
        let queue_var = queue_url_var(channel);
        let queue = opt_field(vars, queue_var)
            .or_else(|| globals.and_then(|g| opt_field(g, queue_var)))
            .unwrap_or_else(|| panic!("{w}.{queue_var} missing"));
        assert_eq!(reference(queue, &format!("{w}.{queue_var}")), spec.logical_id, "{w}.{queue_var} differs");
        let dlq_var = dead_letter_queue_url_var(channel);
        let dlq = field(vars, dlq_var, &w);
        assert_eq!(reference(dlq, &format!("{w}.{dlq_var}")), spec.dlq_logical_id, "{w}.{dlq_var} differs");

        let events = prop(function, id, "Events");
        let sources: Vec<(String, String)> = events
            .as_mapping()
            .unwrap_or_else(|| panic!("{id}.Properties.Events is not a mapping"))
            .values()
            .map(|event| {
                get_att(field(field(event, "Properties", id), "Queue", id), &format!("{id} event Queue"))
            })
            .collect();
        assert_eq!(
            sources,
            vec![(spec.logical_id.to_owned(), "Arn".to_owned())],
            "{id} consumes another queue"
        );

        let (role_id, _) = get_att(prop(function, id, "Role"), &format!("{id}.Properties.Role"));
        let role = resource(&t, &role_id, "AWS::IAM::Role");
        let mut send_targets = BTreeSet::new();
        for policy in as_seq(prop(role, &role_id, "Policies"), &format!("{role_id}.Policies")) {
            let document = field(policy, "PolicyDocument", &role_id);
            for statement in as_seq(field(document, "Statement", &role_id), &format!("{role_id} statements"))
            {
                let actions = one_or_many(field(statement, "Action", &role_id), &format!("{role_id} Action"));
                let actions: Vec<&str> = actions.iter().map(|a| as_str(a, "Action")).collect();
                if !actions.iter().any(|a| a.starts_with("sqs:SendMessage")) {
                    continue;
                }
                for target in
                    one_or_many(field(statement, "Resource", &role_id), &format!("{role_id} Resource"))
                {
                    send_targets.insert(get_att(target, &format!("{role_id} SendMessage Resource")));
                }
            }
        }
        let expected: BTreeSet<(String, String)> = [spec.logical_id, spec.dlq_logical_id]
            .into_iter()
            .map(|q| (q.to_owned(), "Arn".to_owned()))
            .collect();
        assert_eq!(send_targets, expected, "{role_id} may send to exactly its queue and dead-letter queue");
    }
}

/// Issue 14: one deploy is enough. `PublicBaseUrl` defaults to empty; the SMS sender's
/// StatusCallback prefix is then the API's own URL — the same value as the `ApiUrl` output —
/// and the webhooks function gets the parameter as given (empty: it verifies over the origin
/// API Gateway was called at, `retarget_webhooks::request_origin`).
#[test]
fn one_deploy_points_twilio_at_the_api_itself() {
    let t = template();
    let parameter = field(field(&t, "Parameters", "template"), "PublicBaseUrl", "Parameters");
    assert_eq!(as_str(field(parameter, "Default", "PublicBaseUrl"), "PublicBaseUrl.Default"), "");
    let api_url = field(field(field(&t, "Outputs", "template"), "ApiUrl", "Outputs"), "Value", "ApiUrl");
    let sms = resource(&t, "SmsSenderFunction", "AWS::Serverless::Function");
    let vars = field(prop(sms, "SmsSenderFunction", "Environment"), "Variables", "SmsSenderFunction");
    let (tag, args) = intrinsic(field(vars, "PUBLIC_BASE_URL", "SmsSenderFunction")).expect("an !If");
    assert_eq!(tag, "If");
    let args = as_seq(args, "the !If");
    assert_eq!(as_str(&args[0], "its condition"), "HasPublicBaseUrl");
    assert_eq!(reference(&args[1], "its custom-domain branch"), "PublicBaseUrl");
    assert_eq!(&args[2], api_url, "without a custom domain: the ApiUrl output's value");
    let condition = field(field(&t, "Conditions", "template"), "HasPublicBaseUrl", "Conditions");
    assert!(format!("{condition:?}").contains("PublicBaseUrl"), "{condition:?}");
    let webhooks = function_env(&t, "WebhooksFunction");
    assert_eq!(webhooks.get("PUBLIC_BASE_URL").map(String::as_str), Some("PublicBaseUrl"));
}

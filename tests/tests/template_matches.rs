//! `infra/template.yaml` declares the same table, indexes and queues as
//! `retarget_shared::adapters::resources` (from which the local stack and the tests create theirs).
//! Every expected value comes from the Rust constants, never re-typed here.

use std::collections::BTreeSet;
use std::path::PathBuf;

use retarget_shared::adapters::resources::{self, IndexProjection, QueueSpec};
use retarget_shared::keys;
use serde_yaml::Value;

fn template_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../infra/template.yaml")
}

fn template() -> Value {
    let path = template_path();
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
}

/// `map[key]`, or a panic naming `what.key`.
fn field<'a>(map: &'a Value, key: &str, what: &str) -> &'a Value {
    match map {
        Value::Mapping(m) => m.get(key).unwrap_or_else(|| panic!("{what}.{key} is missing")),
        other => panic!("{what} is not a mapping: {other:?}"),
    }
}

fn opt_field<'a>(map: &'a Value, key: &str) -> Option<&'a Value> {
    map.as_mapping().and_then(|m| m.get(key))
}

/// The resource with this logical id, checked to be of `ty`.
fn resource<'a>(template: &'a Value, logical_id: &str, ty: &str) -> &'a Value {
    let res = field(field(template, "Resources", "template"), logical_id, "Resources");
    assert_eq!(as_str(field(res, "Type", logical_id), &format!("{logical_id}.Type")), ty);
    res
}

/// `Resources.{id}.Properties.{name}`.
fn prop<'a>(res: &'a Value, logical_id: &str, name: &str) -> &'a Value {
    field(field(res, "Properties", logical_id), name, &format!("{logical_id}.Properties"))
}

fn as_str<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str().unwrap_or_else(|| panic!("{what} is not a plain string: {v:?}"))
}

/// A number, written as an int or as a string.
fn as_u64(v: &Value, what: &str) -> u64 {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .unwrap_or_else(|| panic!("{what} is not a non-negative integer: {v:?}"))
}

/// A boolean, written as a bool or as a string.
fn as_bool(v: &Value, what: &str) -> bool {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
    .unwrap_or_else(|| panic!("{what} is not a boolean: {v:?}"))
}

fn as_seq<'a>(v: &'a Value, what: &str) -> &'a [Value] {
    v.as_sequence().map(Vec::as_slice).unwrap_or_else(|| panic!("{what} is not a list: {v:?}"))
}

fn assert_number(res: &Value, logical_id: &str, name: &str, expected: u64) {
    let what = format!("{logical_id}.Properties.{name}");
    assert_eq!(as_u64(prop(res, logical_id, name), &what), expected, "{what} differs");
}

/// The intrinsic function of `v`, in short (`!Ref x`) or long (`{"Ref": x}`) form: its name
/// without `Fn::` and its argument.
fn intrinsic(v: &Value) -> Option<(String, &Value)> {
    match v {
        Value::Tagged(t) => {
            let tag = t.tag.to_string();
            Some((tag.trim_start_matches('!').to_owned(), &t.value))
        }
        Value::Mapping(m) if m.len() == 1 => {
            let (k, arg) = m.iter().next()?;
            let k = k.as_str()?;
            if k == "Ref" || k.starts_with("Fn::") {
                Some((k.trim_start_matches("Fn::").to_owned(), arg))
            } else {
                None
            }
        }
        _ => None,
    }
}

/// The (logical id, attribute) of a `GetAtt`, in either form.
fn get_att(v: &Value, what: &str) -> (String, String) {
    let parsed = match intrinsic(v) {
        Some((name, arg)) if name == "GetAtt" => match arg {
            Value::String(s) => s.split_once('.').map(|(a, b)| (a.to_owned(), b.to_owned())),
            Value::Sequence(s) if s.len() == 2 => match (s[0].as_str(), s[1].as_str()) {
                (Some(a), Some(b)) => Some((a.to_owned(), b.to_owned())),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    };
    parsed.unwrap_or_else(|| panic!("{what} is not a GetAtt: {v:?}"))
}

/// The logical id of a `Ref`, in either form.
fn reference<'a>(v: &'a Value, what: &str) -> &'a str {
    match intrinsic(v) {
        Some((name, Value::String(target))) if name == "Ref" => target,
        _ => panic!("{what} is not a Ref: {v:?}"),
    }
}

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

#[test]
fn function_environment_and_outputs_reference_the_resources() {
    let t = template();
    let [push, sms] = resources::QUEUES;
    assert_eq!(push.logical_id, resources::PUSH_QUEUE.logical_id);
    assert_eq!(sms.logical_id, resources::SMS_QUEUE.logical_id);
    let vars = field(
        field(
            field(field(&t, "Globals", "template"), "Function", "Globals"),
            "Environment",
            "Globals.Function",
        ),
        "Variables",
        "Globals.Function.Environment",
    );
    let outputs = field(&t, "Outputs", "template");
    for (var, output, target) in [
        ("TABLE_NAME", "TableName", "Table"),
        ("PUSH_QUEUE_URL", "PushQueueUrl", push.logical_id),
        ("SMS_QUEUE_URL", "SmsQueueUrl", sms.logical_id),
        ("EVENT_BUS_NAME", "EventBusName", "EventBus"),
    ] {
        let w = format!("Globals.Function.Environment.Variables.{var}");
        assert_eq!(
            reference(field(vars, var, "Globals.Function.Environment.Variables"), &w),
            target,
            "{w} differs"
        );
        let w = format!("Outputs.{output}.Value");
        let value = field(field(outputs, output, "Outputs"), "Value", &format!("Outputs.{output}"));
        assert_eq!(reference(value, &w), target, "{w} differs");
    }
    resource(&t, "EventBus", "AWS::Events::EventBus");
}

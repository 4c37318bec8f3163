//! Reading `infra/template.yaml` in tests: its resources, properties and CloudFormation
//! intrinsics (short `!Ref x` and long `{"Ref": x}` forms alike).

use std::path::PathBuf;

use serde_yaml::Value;

pub fn template_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../infra/template.yaml")
}

pub fn template() -> Value {
    let path = template_path();
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
}

/// `map[key]`, or a panic naming `what.key`.
pub fn field<'a>(map: &'a Value, key: &str, what: &str) -> &'a Value {
    match map {
        Value::Mapping(m) => m.get(key).unwrap_or_else(|| panic!("{what}.{key} is missing")),
        other => panic!("{what} is not a mapping: {other:?}"),
    }
}

pub fn opt_field<'a>(map: &'a Value, key: &str) -> Option<&'a Value> {
    map.as_mapping().and_then(|m| m.get(key))
}

/// The resource with this logical id, checked to be of `ty`.
pub fn resource<'a>(template: &'a Value, logical_id: &str, ty: &str) -> &'a Value {
    let res = field(field(template, "Resources", "template"), logical_id, "Resources");
    assert_eq!(as_str(field(res, "Type", logical_id), &format!("{logical_id}.Type")), ty);
    res
}

/// `Resources.{id}.Properties.{name}`.
pub fn prop<'a>(res: &'a Value, logical_id: &str, name: &str) -> &'a Value {
    field(field(res, "Properties", logical_id), name, &format!("{logical_id}.Properties"))
}

pub fn as_str<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str().unwrap_or_else(|| panic!("{what} is not a plain string: {v:?}"))
}

/// A number, written as an int or as a string.
pub fn as_u64(v: &Value, what: &str) -> u64 {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .unwrap_or_else(|| panic!("{what} is not a non-negative integer: {v:?}"))
}

/// A boolean, written as a bool or as a string.
pub fn as_bool(v: &Value, what: &str) -> bool {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
        _ => None,
    }
    .unwrap_or_else(|| panic!("{what} is not a boolean: {v:?}"))
}

pub fn as_seq<'a>(v: &'a Value, what: &str) -> &'a [Value] {
    v.as_sequence().map(Vec::as_slice).unwrap_or_else(|| panic!("{what} is not a list: {v:?}"))
}

pub fn assert_number(res: &Value, logical_id: &str, name: &str, expected: u64) {
    let what = format!("{logical_id}.Properties.{name}");
    assert_eq!(as_u64(prop(res, logical_id, name), &what), expected, "{what} differs");
}

/// The intrinsic function of `v`, in short (`!Ref x`) or long (`{"Ref": x}`) form: its name
/// without `Fn::` and its argument.
pub fn intrinsic(v: &Value) -> Option<(String, &Value)> {
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
pub fn get_att(v: &Value, what: &str) -> (String, String) {
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
pub fn reference<'a>(v: &'a Value, what: &str) -> &'a str {
    match intrinsic(v) {
        Some((name, Value::String(target))) if name == "Ref" => target,
        _ => panic!("{what} is not a Ref: {v:?}"),
    }
}

/// A one-or-many field (`Action`, `Resource`) as a list.
pub fn one_or_many<'a>(v: &'a Value, what: &str) -> Vec<&'a Value> {
    match v {
        Value::Sequence(items) => items.iter().collect(),
        Value::Null => panic!("{what} is empty"),
        one => vec![one],
    }
}

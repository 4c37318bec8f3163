//! `docs/openapi.yaml` documents exactly the routes the service serves
//! (`retarget_shared::edge::routes::ROUTES`), and `infra/template.yaml` maps each of them to the
//! Lambda function that owns it. Every expected value comes from `ROUTES`, never re-typed here.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use retarget_shared::edge::problem::ErrorCode;
use retarget_shared::edge::routes::{Function, ROUTES, UNROUTED};
use serde_yaml::Value;

fn repo_file(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join(relative)
}

fn yaml(relative: &str) -> Value {
    let path = repo_file(relative);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display()))
}

fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_mapping().and_then(|m| m.get(key))
}

fn field<'a>(v: &'a Value, key: &str, what: &str) -> &'a Value {
    get(v, key).unwrap_or_else(|| panic!("{what}.{key} is missing"))
}

fn as_str<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str().unwrap_or_else(|| panic!("{what} is not a plain string: {v:?}"))
}

/// The package (= binary) name of the function that owns a route. Exhaustive on purpose: a new
/// `Function` must be given its crate here (and a function in the template).
fn binary(function: Function) -> &'static str {
    match function {
        Function::Subscriptions => "retarget-subscriptions",
        Function::Messages => "retarget-messages",
        Function::Events => "retarget-events",
        Function::Webhooks => "retarget-webhooks",
        Function::Audiences => "retarget-audiences",
        Function::Retargets => "retarget-retargets",
    }
}

fn expected_routes() -> BTreeSet<(String, String)> {
    ROUTES.iter().map(|(method, path, _, _)| (method.as_str().to_owned(), (*path).to_owned())).collect()
}

/// The `{name}` segments of a path template.
fn template_params(path: &str) -> BTreeSet<String> {
    path.split('/')
        .filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .map(str::to_owned)
        .collect()
}

// ---------------------------------------------------------------------------------------------
// docs/openapi.yaml

const HTTP_METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

fn openapi() -> Value {
    yaml("docs/openapi.yaml")
}

/// Resolves a local `$ref` (`#/components/...`), following chains.
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    let mut current = v;
    for _ in 0..16 {
        let Some(reference) = get(current, "$ref") else { return current };
        let pointer = as_str(reference, "$ref");
        let path = pointer.strip_prefix("#/").unwrap_or_else(|| panic!("$ref {pointer} is not local"));
        current = path.split('/').fold(doc, |node, key| {
            let key = key.replace("~1", "/").replace("~0", "~");
            get(node, &key).unwrap_or_else(|| panic!("$ref {pointer} does not resolve"))
        });
    }
    panic!("$ref chain too long at {v:?}")
}

/// Every (METHOD, path) with its operation object and the path item holding it.
fn operations(doc: &Value) -> BTreeMap<(String, String), (&Value, &Value)> {
    let paths = field(doc, "paths", "openapi").as_mapping().expect("openapi.paths is not a mapping");
    let mut ops = BTreeMap::new();
    for (path, item) in paths {
        let path = as_str(path, "a key of openapi.paths");
        let entries = item.as_mapping().unwrap_or_else(|| panic!("paths.{path} is not a mapping"));
        for (key, op) in entries {
            let key = as_str(key, &format!("a key of paths.{path}"));
            if HTTP_METHODS.contains(&key) {
                ops.insert((key.to_ascii_uppercase(), path.to_owned()), (op, item));
            }
        }
    }
    ops
}

#[test]
fn openapi_documents_exactly_the_served_routes() {
    let doc = openapi();
    let version = as_str(field(&doc, "openapi", "openapi"), "openapi.openapi");
    assert!(version.starts_with("3.1."), "docs/openapi.yaml is OpenAPI {version}, not 3.1");

    let documented: BTreeSet<(String, String)> = operations(&doc).into_keys().collect();
    let served = expected_routes();
    let missing: Vec<_> = served.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&served).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "docs/openapi.yaml differs from routes::ROUTES\n  served but not documented: {missing:?}\n  documented but not served: {extra:?}"
    );
}

#[test]
fn openapi_declares_every_path_parameter() {
    let doc = openapi();
    for ((method, path), (op, item)) in operations(&doc) {
        let what = format!("{method} {path}");
        let mut declared = BTreeSet::new();
        // Path-item parameters apply to every operation; the operation's own override them.
        for source in [get(item, "parameters"), get(op, "parameters")].into_iter().flatten() {
            let list = source.as_sequence().unwrap_or_else(|| panic!("{what}: parameters is not a list"));
            for p in list {
                let p = resolve(&doc, p);
                if as_str(field(p, "in", &what), &format!("{what} parameter.in")) != "path" {
                    continue;
                }
                let name = as_str(field(p, "name", &what), &format!("{what} parameter.name")).to_owned();
                assert_eq!(
                    get(p, "required").and_then(Value::as_bool),
                    Some(true),
                    "{what}: path parameter {name} must be required: true"
                );
                assert!(get(p, "schema").is_some(), "{what}: path parameter {name} has no schema");
                declared.insert(name);
            }
        }
        assert_eq!(
            declared,
            template_params(&path),
            "{what}: declared path parameters differ from the template"
        );
    }
}

#[test]
fn openapi_requires_the_api_key_everywhere_but_the_webhooks() {
    let doc = openapi();
    let schemes = field(field(&doc, "components", "openapi"), "securitySchemes", "openapi.components");
    let bearer: BTreeSet<String> = schemes
        .as_mapping()
        .expect("securitySchemes is not a mapping")
        .iter()
        .filter(|(_, s)| {
            get(s, "type").and_then(Value::as_str) == Some("http")
                && get(s, "scheme").and_then(Value::as_str).is_some_and(|x| x.eq_ignore_ascii_case("bearer"))
        })
        .map(|(name, _)| as_str(name, "securitySchemes key").to_owned())
        .collect();
    assert!(!bearer.is_empty(), "no http bearer security scheme in components.securitySchemes");

    let global = get(&doc, "security");
    let ops = operations(&doc);
    for (method, path, _, function) in ROUTES {
        let what = format!("{method} {path}");
        let Some((op, _)) = ops.get(&(method.as_str().to_owned(), (*path).to_owned())) else {
            panic!("{what} is not documented")
        };
        let security = get(op, "security").or(global);
        let requirements = security.and_then(Value::as_sequence).map(Vec::as_slice).unwrap_or(&[]);
        // Each requirement object is one alternative; none may be empty (anonymous).
        let needs_bearer = !requirements.is_empty()
            && requirements.iter().all(|r| {
                r.as_mapping().is_some_and(|m| {
                    !m.is_empty() && m.keys().any(|k| k.as_str().is_some_and(|k| bearer.contains(k)))
                })
            });
        if *function == Function::Webhooks {
            // `security: []` (no requirement) on the operation itself, not inherited: webhooks
            // are signed, tracking calls carry a token.
            let own = get(op, "security").and_then(Value::as_sequence);
            assert!(
                own.is_some_and(|r| r.iter().all(|r| r.as_mapping().is_some_and(|m| m.is_empty()))),
                "{what}: a webhook is signed, not authenticated by API key: needs security: []"
            );
        } else {
            assert!(needs_bearer, "{what} must require the bearer API key");
        }
    }
}

/// The responses of an operation, by status (`"415"`, `"default"`), resolved.
fn responses<'a>(doc: &'a Value, op: &'a Value, what: &str) -> BTreeMap<String, &'a Value> {
    let responses = field(op, "responses", what).as_mapping().unwrap_or_else(|| panic!("{what}.responses"));
    responses
        .iter()
        .map(|(status, r)| {
            let status = match status {
                Value::Number(n) => n.to_string(),
                other => as_str(other, &format!("a status of {what}")).to_owned(),
            };
            (status, resolve(doc, r))
        })
        .collect()
}

fn is_problem(response: &Value) -> bool {
    get(response, "content").and_then(|c| get(c, "application/problem+json")).is_some()
}

#[test]
fn openapi_documents_415_on_exactly_the_json_routes() {
    let doc = openapi();
    let ops = operations(&doc);
    for (method, path, route, _) in ROUTES {
        let what = format!("{method} {path}");
        let (op, _) = ops.get(&(method.as_str().to_owned(), (*path).to_owned())).expect("documented");
        let responses = responses(&doc, op, &what);
        if route.takes_json() || route.takes_beacon() {
            let body = field(field(op, "requestBody", &what), "content", &what);
            assert!(get(body, "application/json").is_some(), "{what}: a JSON route takes application/json");
            let r415 = responses.get("415").unwrap_or_else(|| panic!("{what}: a JSON route documents 415"));
            assert!(is_problem(r415), "{what}: its 415 is problem+json");
            let description = as_str(field(r415, "description", &what), &what);
            assert!(description.contains("unsupported_media_type"), "{what}: the 415 names its code");
        } else {
            assert!(!responses.contains_key("415"), "{what} is no JSON route: it never answers 415");
        }
    }
}

#[test]
fn openapi_documents_the_allow_header_of_405() {
    let doc = openapi();
    let components = field(field(&doc, "components", "openapi"), "responses", "components");
    let r405 = field(components, "MethodNotAllowed", "components.responses");
    assert!(is_problem(r405), "a 405 is problem+json");
    let allow = field(field(r405, "headers", "MethodNotAllowed"), "Allow", "MethodNotAllowed.headers");
    assert_eq!(get(allow, "required").and_then(Value::as_bool), Some(true), "every 405 carries Allow");
    // A documented operation is a served method, so none lists a 405 (one that did would have
    // to carry the header too).
    for ((method, path), (op, _)) in operations(&doc) {
        let what = format!("{method} {path}");
        if let Some(r) = responses(&doc, op, &what).get("405") {
            assert!(get(r, "headers").and_then(|h| get(h, "Allow")).is_some(), "{what}: 405 without Allow");
        }
    }
    let codes = field(
        field(field(field(&doc, "components", "openapi"), "schemas", "c"), "ErrorCode", "s"),
        "enum",
        "e",
    );
    let codes: Vec<&str> = codes.as_sequence().expect("enum").iter().filter_map(Value::as_str).collect();
    for code in [ErrorCode::MethodNotAllowed, ErrorCode::UnsupportedMediaType] {
        assert!(codes.contains(&code.as_str()), "ErrorCode lacks {}", code.as_str());
    }
}

// ---------------------------------------------------------------------------------------------
// infra/template.yaml

fn template() -> Value {
    yaml("infra/template.yaml")
}

/// The logical id of a `Ref`, in short (`!Ref x`) or long (`{"Ref": x}`) form.
fn reference(v: &Value) -> Option<&str> {
    match v {
        Value::Tagged(t) if t.tag.to_string().trim_start_matches('!') == "Ref" => t.value.as_str(),
        Value::Mapping(m) if m.len() == 1 => m.get("Ref").and_then(Value::as_str),
        _ => None,
    }
}

/// Every serverless function of the template: logical id -> (its binary, the function resource).
fn functions(t: &Value) -> BTreeMap<String, (String, &Value)> {
    let resources = field(t, "Resources", "template").as_mapping().expect("Resources is not a mapping");
    resources
        .iter()
        .filter(|(_, r)| get(r, "Type").and_then(Value::as_str) == Some("AWS::Serverless::Function"))
        .map(|(id, r)| {
            let id = as_str(id, "a Resources key").to_owned();
            let metadata = field(r, "Metadata", &id);
            assert_eq!(
                get(metadata, "BuildMethod").and_then(Value::as_str),
                Some("rust-cargolambda"),
                "{id}.Metadata.BuildMethod must be rust-cargolambda"
            );
            let binary = as_str(
                field(field(metadata, "BuildProperties", &format!("{id}.Metadata")), "Binary", &id),
                &format!("{id}.Metadata.BuildProperties.Binary"),
            )
            .to_owned();
            (id, (binary, r))
        })
        .collect()
}

#[test]
fn template_maps_every_route_to_its_function() {
    let t = template();
    let resources = field(&t, "Resources", "template");
    let functions = functions(&t);

    // (METHOD, path) -> binary of the function whose HttpApi event serves it.
    let mut served: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut unrouted: Option<String> = None;
    let mut dashboard = std::collections::BTreeSet::new();
    for (id, (binary, function)) in &functions {
        let Some(events) = get(field(function, "Properties", id), "Events") else { continue };
        for (name, event) in events.as_mapping().unwrap_or_else(|| panic!("{id}.Events is not a mapping")) {
            let what = format!("{id}.Events.{}", as_str(name, "an event name"));
            if get(event, "Type").and_then(Value::as_str) != Some("HttpApi") {
                continue;
            }
            let props = field(event, "Properties", &what);
            let api = get(props, "ApiId")
                .and_then(reference)
                .unwrap_or_else(|| panic!("{what}.Properties.ApiId must be a Ref to the HttpApi"));
            let api_type = get(resources, api).and_then(|r| get(r, "Type")).and_then(Value::as_str);
            assert_eq!(api_type, Some("AWS::Serverless::HttpApi"), "{what}: ApiId {api} is not an HttpApi");
            if get(props, "Method").is_none() && get(props, "Path").is_none() {
                // SAM's $default route: what no route matched.
                assert!(unrouted.replace(binary.clone()).is_none(), "{what}: a second $default route");
                continue;
            }
            let method =
                as_str(field(props, "Method", &what), &format!("{what}.Method")).to_ascii_uppercase();
            let path = as_str(field(props, "Path", &what), &format!("{what}.Path")).to_owned();
            if binary == "retarget-dashboard" {
                // The dashboard's page and files: no API route, no operation of the document.
                dashboard.insert((method.clone(), path.clone()));
                continue;
            }
            let previous = served.insert((method.clone(), path.clone()), binary.clone());
            assert!(previous.is_none(), "{method} {path} is an HttpApi event twice");
        }
    }

    let mut problems = Vec::new();
    for (method, path, route, function) in ROUTES {
        let expected = binary(*function);
        match served.remove(&(method.as_str().to_owned(), (*path).to_owned())) {
            Some(actual) if actual == expected => {}
            Some(actual) => {
                problems.push(format!("{method} {path} ({route:?}) is served by {actual}, not {expected}"))
            }
            None => problems.push(format!("{method} {path} ({route:?}) is no HttpApi event of {expected}")),
        }
    }
    for ((method, path), binary) in served {
        problems.push(format!("{method} {path} is an HttpApi event of {binary} but not in routes::ROUTES"));
    }
    let dashboard_paths = retarget_dashboard::GATEWAY_PATHS.map(|p| ("GET".to_owned(), p.to_owned()));
    if dashboard != dashboard_paths.into_iter().collect() {
        problems.push(format!(
            "the dashboard function serves {dashboard:?}, not GET {:?}",
            retarget_dashboard::GATEWAY_PATHS
        ));
    }
    if unrouted.as_deref() != Some(binary(UNROUTED)) {
        problems.push(format!("the $default route is served by {unrouted:?}, not {}", binary(UNROUTED)));
    }
    assert!(
        problems.is_empty(),
        "infra/template.yaml differs from routes::ROUTES:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn every_function_crate_is_a_template_function() {
    let t = template();
    let in_template: BTreeSet<String> = functions(&t).into_values().map(|(binary, _)| binary).collect();
    let unique = functions(&t).len();
    assert_eq!(in_template.len(), unique, "two template functions build the same binary");

    let dir = repo_file("functions");
    let mut crates = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display())) {
        let manifest = entry.expect("functions/ entry").path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else { continue };
        // The package's own binary, and any `[[bin]]` it declares (the audiences crate builds
        // two functions: the API's and the response-streaming export).
        let mut section = String::new();
        let mut names = BTreeSet::new();
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                section = line.to_owned();
            } else if let Some((key, value)) = line.split_once('=')
                && key.trim() == "name"
                && (section == "[package]" || section == "[[bin]]")
            {
                names.insert(value.trim().trim_matches('"').to_owned());
            }
        }
        assert!(!names.is_empty(), "{} has no package name", manifest.display());
        crates.extend(names);
    }
    assert_eq!(
        in_template, crates,
        "the template's function binaries differ from the binaries of the crates under functions/"
    );
    for (_, _, _, function) in ROUTES {
        assert!(crates.contains(binary(*function)), "{} is not a crate under functions/", binary(*function));
    }
}

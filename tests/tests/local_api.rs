//! The local stack: provisioning from the shared definitions, the API Gateway–shaped request
//! the handlers receive, the test clock and the error contract, over real HTTP.

use std::sync::Arc;

use lambda_http::RequestExt;
use retarget_local::{LocalApi, LocalConfig, Resources, apigw, provision, serve, stack_env};
use retarget_shared::config::EnvReader;
use serde_json::{Value, json};

struct Running {
    url: String,
    resources: Resources,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start() -> Running {
    let sdk = retarget_tests::sdk().await;
    let name = retarget_tests::unique_name("local");
    let mut env = EnvReader::from_pairs([
        ("TABLE_NAME", name.as_str()),
        ("RESOURCE_PREFIX", name.as_str()),
        ("EVENT_BUS_NAME", name.as_str()),
    ]);
    let config = LocalConfig::read(&mut env);
    env.finish().unwrap();
    let resources = provision(sdk, &config).await.expect("provision");
    // Provisioning twice is harmless (make dev restarts against a running stand-in).
    provision(sdk, &config).await.expect("provision again");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let api = Arc::new(LocalApi::new(sdk, config, resources.clone()).expect("local api"));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, api, async move {
        let _ = stopped.await;
    }));
    Running { url, resources, _stop: stop }
}

/// A request over HTTP to the running stack: (status, content type, JSON body or null).
async fn fetch(method: reqwest::Method, url: String, body: Option<Value>) -> (u16, String, Value) {
    let client = reqwest::Client::new();
    let mut request = client.request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type =
        response.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (status, content_type, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_test_clock_moves_forward_only() {
    let stack = start().await;
    let clock = format!("{}/dev/clock", stack.url);
    let (status, _, before) = fetch(reqwest::Method::GET, clock.clone(), None).await;
    assert_eq!(status, 200);
    let before = chrono::DateTime::parse_from_rfc3339(before["now"].as_str().unwrap()).unwrap();

    let (status, _, after) =
        fetch(reqwest::Method::POST, clock.clone(), Some(json!({"advance_seconds": 31 * 86_400}))).await;
    assert_eq!(status, 200);
    let after = chrono::DateTime::parse_from_rfc3339(after["now"].as_str().unwrap()).unwrap();
    let moved = (after - before).num_seconds();
    assert!((31 * 86_400..31 * 86_400 + 30).contains(&moved), "moved {moved}s");

    for bad in [json!({"advance_seconds": -1}), json!({"advance_seconds": "10"}), json!({"seconds": 10})] {
        let (status, content_type, body) =
            fetch(reqwest::Method::POST, clock.clone(), Some(bad.clone())).await;
        assert_eq!((status, content_type.as_str()), (400, "application/problem+json"), "{bad}");
        assert_eq!(body["code"], "invalid_request");
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_problem_json() {
    let stack = start().await;
    let (status, content_type, body) =
        fetch(reqwest::Method::GET, format!("{}/v1/unknown", stack.url), None).await;
    assert_eq!((status, content_type.as_str()), (404, "application/problem+json"));
    assert_eq!(body["code"], "not_found");
    let (status, _, body) = fetch(reqwest::Method::PATCH, format!("{}/v1/events", stack.url), None).await;
    assert_eq!((status, body["code"].as_str()), (405, Some("method_not_allowed")));
}

#[tokio::test]
async fn bodies_over_the_gateway_limit_are_refused() {
    let stack = start().await;
    let big = vec![b'x'; 10 * 1024 * 1024 + 1];
    let response =
        reqwest::Client::new().post(format!("{}/v1/events", stack.url)).body(big).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 413);
}

#[tokio::test]
async fn provisioning_creates_the_queues_and_the_stack_env_names_them() {
    let stack = start().await;
    let sqs = retarget_shared::adapters::aws::sqs(retarget_tests::sdk().await);
    for (url, spec) in [
        (&stack.resources.push_queue_url, retarget_shared::adapters::resources::PUSH_QUEUE),
        (&stack.resources.sms_queue_url, retarget_shared::adapters::resources::SMS_QUEUE),
    ] {
        let attributes = sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::All)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap();
        let get = |name: &str| attributes.get(&aws_sdk_sqs::types::QueueAttributeName::from(name)).cloned();
        assert_eq!(get("VisibilityTimeout"), Some(spec.visibility_timeout_seconds.to_string()));
        assert_eq!(
            get("MaximumMessageSize"),
            Some(retarget_shared::adapters::resources::MAX_MESSAGE_SIZE.to_string())
        );
        let redrive: Value = serde_json::from_str(&get("RedrivePolicy").unwrap()).unwrap();
        assert_eq!(
            redrive["maxReceiveCount"].to_string().trim_matches('"'),
            spec.max_receive_count.to_string()
        );
    }
    let env = stack_env(&stack.url, &stack.resources);
    // The stack's own names, then what the admin CLI needs to reach the same stand-ins.
    let stack_names = ["API_URL", "TABLE_NAME", "PUSH_QUEUE_URL", "SMS_QUEUE_URL", "EVENT_BUS_NAME"];
    let endpoints = ["DYNAMODB", "SQS", "EVENTBRIDGE"].map(|service| format!("AWS_ENDPOINT_URL_{service}"));
    let aws = ["AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"];
    for name in stack_names.iter().copied().chain(endpoints.iter().map(String::as_str)).chain(aws) {
        assert!(env.contains(&format!("export {name}='")), "{name} missing from\n{env}");
    }
}

#[test]
fn requests_reach_handlers_shaped_like_api_gateway_http_api_events() {
    let request = http::Request::builder()
        .method("POST")
        .uri("/v1/webhooks/twilio/01ABC?message_id=M&subscription_id=S")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("X-Twilio-Signature", "abc=")
        .body(())
        .unwrap();
    let (parts, ()) = request.into_parts();
    let now = chrono::Utc::now();
    let lambda =
        apigw::to_lambda_request(&parts, b"MessageStatus=delivered", [127, 0, 0, 1].into(), now).unwrap();
    assert_eq!(lambda.raw_http_path(), "/v1/webhooks/twilio/01ABC");
    assert_eq!(lambda.uri().query(), Some("message_id=M&subscription_id=S"));
    assert_eq!(lambda.query_string_parameters().first("subscription_id"), Some("S"));
    assert_eq!(lambda.headers()["x-twilio-signature"], "abc=");
    assert_eq!(lambda.body().as_ref(), b"MessageStatus=delivered");
    assert!(matches!(lambda.request_context(), lambda_http::request::RequestContext::ApiGatewayV2(_)));

    let (parts, ()) =
        http::Request::builder().method("POST").uri("/v1/events").body(()).unwrap().into_parts();
    let binary = apigw::to_lambda_request(&parts, &[0xff, 0xfe, 0x00], [127, 0, 0, 1].into(), now).unwrap();
    assert_eq!(binary.body().as_ref(), &[0xff, 0xfe, 0x00], "non-UTF-8 bodies survive base64");
}

/// Issue 18: the local stack serves the dashboard through the dashboard function's handler, on
/// the API's origin, as API Gateway's `GET /dashboard` and `GET /dashboard/{proxy+}` do; any other
/// method there is the `$default` route's problem+json, as on AWS.
#[tokio::test]
async fn the_dashboard_is_served_on_the_apis_origin_with_its_policy() {
    let stack = start().await;
    let client = reqwest::Client::new();
    let page = client.get(format!("{}/dashboard", stack.url)).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    let header = |r: &reqwest::Response, name: &str| {
        r.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned()
    };
    assert_eq!(header(&page, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&page, "content-security-policy"), retarget_dashboard::CONTENT_SECURITY_POLICY);
    assert_eq!(header(&page, "cache-control"), "no-cache");
    let html = page.text().await.unwrap();
    let script = html.split("src=\"").nth(1).and_then(|s| s.split('"').next()).unwrap().to_owned();
    let asset = client.get(format!("{}{script}", stack.url)).send().await.unwrap();
    assert_eq!(asset.status().as_u16(), 200, "{script}");
    assert_eq!(header(&asset, "cache-control"), "public, max-age=31536000, immutable");
    let missing = client.get(format!("{}/dashboard/nope.js", stack.url)).send().await.unwrap();
    assert_eq!(missing.status().as_u16(), 404);
    let (status, content_type, body) =
        fetch(reqwest::Method::POST, format!("{}/dashboard", stack.url), Some(json!({}))).await;
    assert_eq!(
        (status, content_type.as_str(), body["code"].as_str()),
        (404, "application/problem+json", Some("not_found"))
    );
}

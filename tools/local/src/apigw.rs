//! Turns a plain HTTP request into what a Lambda behind an API Gateway HTTP API receives: the
//! request is written as a payload-2.0 event and read back by lambda_http's own parser, so
//! the handlers see exactly the `Request` they get on Lambda.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use lambda_http::Request;
use serde_json::{Map, Value, json};

pub fn to_lambda_request(
    parts: &http::request::Parts,
    body: &[u8],
    source_ip: std::net::IpAddr,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Request, serde_json::Error> {
    // API Gateway lowercases header names and joins repeated headers with commas.
    let mut headers = Map::new();
    for name in parts.headers.keys() {
        let values: Vec<&str> = parts.headers.get_all(name).iter().filter_map(|v| v.to_str().ok()).collect();
        headers.insert(name.as_str().to_ascii_lowercase(), Value::String(values.join(",")));
    }
    let path = parts.uri.path();
    let query = parts.uri.query().unwrap_or("");
    let (body_value, is_base64) = match std::str::from_utf8(body) {
        Ok(text) => (Value::String(text.to_owned()), false),
        Err(_) => (Value::String(STANDARD.encode(body)), true),
    };
    let event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": "127.0.0.1",
            "domainPrefix": "local",
            "http": {
                "method": parts.method.as_str(),
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": source_ip.to_string(),
                "userAgent": headers.get("user-agent").cloned().unwrap_or(Value::String(String::new())),
            },
            "requestId": ulid::Ulid::new().to_string(),
            "routeKey": "$default",
            "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S +0000").to_string(),
            "timeEpoch": now.timestamp_millis(),
        },
        "body": if body.is_empty() { Value::Null } else { body_value },
        "isBase64Encoded": is_base64,
    });
    lambda_http::request::from_str(&event.to_string())
}

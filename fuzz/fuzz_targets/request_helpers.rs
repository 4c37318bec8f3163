//! The request helpers every HTTP function uses (shared/src/edge/request.rs): the body limit, JSON with
//! field-named errors, the route matcher, path ids and the query string, on arbitrary requests.
//! Every error is a 4xx problem+json.
//!
//! Input, like HTTP/1: `METHOD\npath?query\n` then `name: value` header lines, an empty line, and
//! the body. A header `x-fuzz-repeat: N` repeats the body N times (to reach the 1 MiB limit).
#![no_main]

use lambda_http::{Body, Request, RequestExt};
use libfuzzer_sys::fuzz_target;
use retarget_fuzz::{assert_client_error, fields};
use retarget_shared::domain::{AppId, MessageId, RetargetId, SubscriptionId};
use retarget_shared::edge::problem::ErrorCode;
use retarget_shared::edge::request::{BODY_LIMIT, body, json_body, matched_route, path_id, query_pairs};

/// Largest body built from a repeated input.
const MAX_BUILT_BODY: usize = 2 * BODY_LIMIT;

fn build(data: &[u8]) -> Option<Request> {
    let ([method, target], mut rest) = fields::<2>(data)?;
    let mut builder = http::Request::builder().method(method).uri(target);
    let mut repeat = 1usize;
    loop {
        let end = rest.iter().position(|&b| b == b'\n')?;
        let line = &rest[..end];
        rest = &rest[end + 1..];
        if line.is_empty() {
            break;
        }
        let colon = line.iter().position(|&b| b == b':')?;
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"x-fuzz-repeat") {
            repeat = std::str::from_utf8(value).ok()?.parse().ok()?;
            continue;
        }
        // An invalid header name or value never reaches a function (API Gateway refuses it).
        let name = http::HeaderName::from_bytes(name).ok()?;
        let value = http::HeaderValue::from_bytes(value).ok()?;
        builder = builder.header(name, value);
    }
    let body = if rest.is_empty() || repeat <= 1 {
        rest.to_vec()
    } else {
        rest.repeat(repeat.min(MAX_BUILT_BODY / rest.len() + 1))
    };
    let request = builder.body(Body::Binary(body)).ok()?;
    // API Gateway's rawPath: the path as sent, before any decoding.
    let raw_path = target.split_once('?').map_or(target, |(p, _)| p).to_owned();
    Some(request.with_raw_http_path(raw_path))
}

fn check_path_id<T: std::str::FromStr + ToString>(param: Option<&str>) {
    match path_id::<T>(param) {
        // One id has one spelling: an id that parsed prints back to the path segment.
        Ok(id) => assert_eq!(Some(id.to_string().as_str()), param),
        Err(error) => {
            assert_client_error(&error);
            assert_eq!(error.code, ErrorCode::NotFound);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(request) = build(data) else { return };
    let len = request.body().as_ref().len();

    match body(&request) {
        Ok(bytes) => assert!(bytes.len() <= BODY_LIMIT),
        Err(error) => {
            assert!(len > BODY_LIMIT);
            assert_eq!(error.code, ErrorCode::PayloadTooLarge);
            assert_client_error(&error);
        }
    }
    match json_body::<serde_json::Value>(&request) {
        Ok(_) => assert!(len <= BODY_LIMIT),
        Err(error) => assert_client_error(&error),
    }

    match matched_route(&request) {
        Ok(matched) => {
            assert!(len <= BODY_LIMIT);
            check_path_id::<AppId>(matched.param);
            check_path_id::<MessageId>(matched.param);
            check_path_id::<SubscriptionId>(matched.param);
            check_path_id::<RetargetId>(matched.param);
        }
        Err(error) => {
            assert_client_error(&error);
            if len > BODY_LIMIT {
                // Every route holds the body limit, also those that read no body.
                assert_eq!(error.code, ErrorCode::PayloadTooLarge);
            } else {
                assert!(
                    matches!(
                        error.code,
                        ErrorCode::NotFound | ErrorCode::MethodNotAllowed | ErrorCode::UnsupportedMediaType
                    ),
                    "{error:?}"
                );
            }
        }
    }
    let _ = query_pairs(&request);
});

//! Helpers shared by the fuzz targets: a readable input framing (so the committed seeds are real
//! Twilio bodies, signed headers and JSON) and the one assertion every error must pass.
//!
//! Framing: the first `N` lines (`\n`-terminated, UTF-8) are fields, the rest is the raw body.

use retarget_shared::edge::problem::{ApiError, ErrorCode};

/// The first `N` lines as `&str` and the remaining bytes, or `None` when there are fewer lines or
/// a field is not UTF-8 (header values and stored secrets are strings by the time they reach the
/// code under test).
pub fn fields<const N: usize>(data: &[u8]) -> Option<([&str; N], &[u8])> {
    let mut rest = data;
    let mut out = [""; N];
    for slot in &mut out {
        let end = rest.iter().position(|&b| b == b'\n')?;
        *slot = std::str::from_utf8(&rest[..end]).ok()?;
        rest = &rest[end + 1..];
    }
    Some((out, rest))
}

/// An error from parsing client input: a 4xx problem+json, never a 5xx, whose body says the same
/// status and code.
pub fn assert_client_error(error: &ApiError) {
    assert!(error.status.is_client_error(), "not a 4xx: {error:?}");
    assert!(
        !matches!(error.code, ErrorCode::Internal | ErrorCode::Unavailable),
        "a server-side code for client input: {error:?}"
    );
    let response = error.to_response();
    assert_eq!(response.status(), error.status);
    assert_eq!(
        response.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    let body: serde_json::Value =
        serde_json::from_slice(response.body().as_ref()).expect("problem body is JSON");
    assert_eq!(body["status"].as_u64(), Some(u64::from(error.status.as_u16())));
    assert_eq!(body["code"].as_str(), Some(error.code.as_str()));
}

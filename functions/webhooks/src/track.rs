//! `POST /v1/track`: what a device or a web page reports about one push — delivered, clicked,
//! converted — authenticated by the recipient's tracking token alone (`domain::Keyring`), and
//! recorded exactly as `POST /v1/events` would record it (idempotent, exactly once, plan
//! gating, expiry).
//!
//! The hottest public endpoint, so a token is verified from memory (no table read); a request
//! whose token does not verify costs one HMAC and writes nothing. CORS lets any web origin call
//! it: the token is the credential, no cookie is involved.

use chrono::{DateTime, Utc};
use http::{HeaderValue, Method, header};
use lambda_http::{Body, Request, Response};
use retarget_shared::domain::{EventKind, Tracked};
use retarget_shared::edge::problem::{ApiError, ErrorCode, no_content};
use retarget_shared::edge::request::{body, parse_json};
use retarget_shared::services::ingest::{IncomingEvent, Outcome, Rejection, record_events};
use serde::Deserialize;

use crate::Deps;

/// The kinds a device may report.
pub const TRACKABLE: [EventKind; 3] = [EventKind::Delivered, EventKind::Clicked, EventKind::Converted];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrackBody {
    token: String,
    // A string, so that an unknown kind is `invalid_kind` rather than a malformed body.
    kind: String,
    #[serde(default)]
    occurred_at: Option<DateTime<Utc>>,
}

/// A `POST /v1/track` body, parsed (400 `invalid_request` naming the field).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrackRequest {
    pub token: String,
    pub kind: String,
    pub occurred_at: Option<DateTime<Utc>>,
}

/// Parses the body (400 `invalid_request` naming the field). Its media type was checked by the
/// router (`Route::takes_beacon`). Pure.
pub fn parse_track(raw: &[u8]) -> Result<TrackRequest, ApiError> {
    let body: TrackBody = parse_json(raw)?;
    Ok(TrackRequest { token: body.token, kind: body.kind, occurred_at: body.occurred_at })
}

/// The kind a device may report, or 400 `invalid_kind`. Pure.
pub fn trackable_kind(kind: &str) -> Result<EventKind, ApiError> {
    kind.parse::<EventKind>().ok().filter(|k| TRACKABLE.contains(k)).ok_or_else(|| {
        ApiError::new(
            ErrorCode::InvalidKind,
            format!("kind: {:?} cannot be reported here; use delivered, clicked or converted", clip(kind)),
        )
    })
}

fn clip(text: &str) -> &str {
    text.char_indices().nth(40).map_or(text, |(at, _)| &text[..at])
}

pub fn invalid_token() -> ApiError {
    ApiError::new(ErrorCode::InvalidToken, "the token is not a tracking token of this service")
}

pub(crate) async fn track(deps: &Deps, request: &Request) -> Result<Response<Body>, ApiError> {
    let call = parse_track(body(request)?)?;
    let Tracked { app_id, message_id, subscription_id } =
        deps.tracking.verify(&call.token).await?.map_err(|_| invalid_token())?;
    let kind = trackable_kind(&call.kind)?;
    let event = IncomingEvent {
        event_id: None,
        message_id: Some(message_id),
        subscription_id: Some(subscription_id),
        kind,
        occurred_at: call.occurred_at,
    };
    let outcome = record_events(&deps.store, app_id, std::slice::from_ref(&event)).await?;
    match outcome.first().copied().unwrap_or(Outcome::Accepted) {
        // An authentic token whose message (or subscription) is gone: its data expired.
        Outcome::Accepted
        | Outcome::Duplicate
        | Outcome::Rejected(
            Rejection::MessageExpired | Rejection::UnknownMessage | Rejection::UnknownSubscription,
        ) => Ok(no_content()),
        Outcome::Rejected(Rejection::InvalidKind) => Err(ApiError::new(
            ErrorCode::InvalidKind,
            format!("kind: {kind} is not valid for this message's channel"),
        )),
    }
}

/// `OPTIONS /v1/track`: the CORS preflight of a cross-origin `fetch` with a JSON body.
pub(crate) fn preflight() -> Response<Body> {
    let mut response = no_content();
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST, OPTIONS"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Content-Type"));
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
    response
}

/// Every answer of the tracking routes, errors included, may be read by any origin.
pub(crate) fn with_cors(mut response: Response<Body>) -> Response<Body> {
    response.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    response
}

/// Whether a request is for a tracking route (CORS applies), whatever its method.
pub fn is_tracking_path(method: &Method, path: &str) -> bool {
    path == "/v1/track" && (method == Method::POST || method == Method::OPTIONS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies() {
        assert_eq!(parse_track(br#"{"token":"t","kind":"clicked"}"#).unwrap().kind, "clicked");
        for bad in [
            &b"{}"[..],
            br#"{"token":1,"kind":"clicked"}"#,
            br#"{"token":"t","kind":"clicked","x":1}"#,
            b"nope",
        ] {
            assert_eq!(parse_track(bad).unwrap_err().code, ErrorCode::InvalidRequest);
        }
        let at = parse_track(br#"{"token":"t","kind":"converted","occurred_at":"2026-12-01T10:00:00Z"}"#);
        assert!(at.unwrap().occurred_at.is_some());
    }

    #[test]
    fn only_what_a_device_sees_can_be_reported() {
        for ok in ["delivered", "clicked", "converted"] {
            assert!(trackable_kind(ok).is_ok(), "{ok}");
        }
        for bad in ["sent", "failed", "undelivered", "opened", "CLICKED", "", "bogus"] {
            assert_eq!(trackable_kind(bad).unwrap_err().code, ErrorCode::InvalidKind, "{bad}");
        }
    }
}

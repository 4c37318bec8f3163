//! The one place where errors become HTTP: RFC 9457 `application/problem+json` with the
//! contract's stable `code`s. Handlers return `Result<Response, ApiError>` and never an `Err`
//! to lambda_http (which API Gateway would turn into an opaque 502).

use http::StatusCode;
use lambda_http::{Body, Response};
use serde::Serialize;

use crate::adapters::store::StoreError;
use crate::domain::{
    ChannelNotConfigured, ContentsError, PolicyError, PredicateError, SourceError, TimeZoneError,
};
use crate::edge::routes::NoMatch;
use crate::services::audience::SourceLookupError;

/// Every error code of the contract, with its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidRequest,
    InvalidPhoneNumber,
    InvalidEmail,
    InvalidTimezone,
    InvalidAction,
    Unauthorized,
    InvalidSignature,
    InvalidToken,
    InvalidKind,
    PlanRequired,
    NotFound,
    MethodNotAllowed,
    AlreadyDispatched,
    SourceExpired,
    PayloadTooLarge,
    UnsupportedMediaType,
    SegmentsNotCombinable,
    SourceNotRetargetable,
    SendAtOutOfWindow,
    ChannelNotConfigured,
    Internal,
    Unavailable,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidPhoneNumber => "invalid_phone_number",
            ErrorCode::InvalidEmail => "invalid_email",
            ErrorCode::InvalidTimezone => "invalid_timezone",
            ErrorCode::InvalidAction => "invalid_action",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::InvalidSignature => "invalid_signature",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InvalidKind => "invalid_kind",
            ErrorCode::PlanRequired => "plan_required",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::AlreadyDispatched => "already_dispatched",
            ErrorCode::SourceExpired => "source_expired",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::SegmentsNotCombinable => "segments_not_combinable",
            ErrorCode::SourceNotRetargetable => "source_not_retargetable",
            ErrorCode::SendAtOutOfWindow => "send_at_out_of_window",
            ErrorCode::ChannelNotConfigured => "channel_not_configured",
            ErrorCode::Internal => "internal",
            ErrorCode::Unavailable => "unavailable",
        }
    }

    /// The status is fixed per code, except `invalid_signature`: the contract answers 403 for
    /// Twilio and 401 for the push webhook, so that one is chosen by the caller.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidRequest
            | ErrorCode::InvalidPhoneNumber
            | ErrorCode::InvalidEmail
            | ErrorCode::InvalidTimezone
            | ErrorCode::InvalidAction
            | ErrorCode::InvalidKind => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthorized | ErrorCode::InvalidSignature | ErrorCode::InvalidToken => {
                StatusCode::UNAUTHORIZED
            }
            ErrorCode::PlanRequired => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::AlreadyDispatched => StatusCode::CONFLICT,
            ErrorCode::SourceExpired => StatusCode::GONE,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::SegmentsNotCombinable
            | ErrorCode::SourceNotRetargetable
            | ErrorCode::SendAtOutOfWindow
            | ErrorCode::ChannelNotConfigured => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn title(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "The request is malformed",
            ErrorCode::InvalidPhoneNumber => "The phone number is not E.164",
            ErrorCode::InvalidEmail => "The email is not an address (addr-spec)",
            ErrorCode::InvalidTimezone => "The time zone is not an IANA zone name",
            ErrorCode::InvalidAction => "The action does not apply to this channel",
            ErrorCode::Unauthorized => "A valid API key is required",
            ErrorCode::InvalidSignature => "The request signature does not verify",
            ErrorCode::InvalidToken => "The tracking token does not verify",
            ErrorCode::InvalidKind => "The kind does not apply to this message's channel",
            ErrorCode::PlanRequired => "The app's plan does not include retargeting",
            ErrorCode::NotFound => "No such resource",
            ErrorCode::MethodNotAllowed => "The method is not allowed on this resource",
            ErrorCode::AlreadyDispatched => "The retarget is already being dispatched",
            ErrorCode::SourceExpired => "The source message is older than 30 days",
            ErrorCode::PayloadTooLarge => "The request body is larger than 1 MiB",
            ErrorCode::UnsupportedMediaType => "The content type is not supported",
            ErrorCode::SegmentsNotCombinable => "A retarget audience cannot be combined with segments",
            ErrorCode::SourceNotRetargetable => "The source message is not retargetable",
            ErrorCode::SendAtOutOfWindow => "send_at is outside the retargeting window",
            ErrorCode::ChannelNotConfigured => "The app cannot send on this channel",
            ErrorCode::Internal => "Internal error",
            ErrorCode::Unavailable => "Service temporarily unavailable",
        }
    }
}

/// An error as the API reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code:?} ({status}): {detail}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub status: StatusCode,
    pub detail: String,
    /// The `Allow` header of a 405: the methods the path is served with (RFC 9110 §15.5.6).
    allow: Option<String>,
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    type_: String,
    title: &'a str,
    status: u16,
    detail: &'a str,
    code: &'a str,
}

impl ApiError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self { code, status: code.status(), detail: detail.into(), allow: None }
    }

    /// 405 `method_not_allowed` for `method`, with `Allow:` the methods the path is served with.
    pub fn method_not_allowed(method: &http::Method, allowed: &[http::Method]) -> Self {
        let allow = allowed.iter().map(http::Method::as_str).collect::<Vec<_>>().join(", ");
        let mut error =
            Self::new(ErrorCode::MethodNotAllowed, format!("{method} is not allowed here; use {allow}"));
        error.allow = Some(allow);
        error
    }

    /// Why no route serves a request made with `method`: 404, or 405 with its `Allow`.
    pub fn unrouted(method: &http::Method, no: NoMatch) -> Self {
        match no {
            NoMatch::NotFound => Self::not_found(),
            NoMatch::MethodNotAllowed(allowed) => Self::method_not_allowed(method, &allowed),
        }
    }

    /// What a 405 lists in `Allow` (`None` for every other error).
    pub fn allow(&self) -> Option<&str> {
        self.allow.as_deref()
    }

    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub fn invalid_request(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, detail)
    }

    pub fn not_found() -> Self {
        Self::new(ErrorCode::NotFound, "no such resource")
    }

    pub fn unauthorized() -> Self {
        Self::new(ErrorCode::Unauthorized, "missing or unknown API key")
    }

    /// Infrastructure failures: the detail goes to the log, never to the client.
    pub fn internal(err: &dyn std::error::Error) -> Self {
        tracing::error!(error = %err, "internal error");
        Self::new(ErrorCode::Internal, "an internal error occurred; it has been logged")
    }

    pub fn to_response(&self) -> Response<Body> {
        let code = self.code.as_str();
        let body = Problem {
            type_: format!("https://retarget.dev/problems/{}", code.replace('_', "-")),
            title: self.code.title(),
            status: self.status.as_u16(),
            detail: &self.detail,
            code,
        };
        let mut response = json_response(self.status, &body);
        let headers = response.headers_mut();
        headers
            .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/problem+json"));
        // Method names are tokens, so the list is always a valid header value.
        if let Some(allow) = self.allow.as_deref().and_then(|a| http::HeaderValue::from_str(a).ok()) {
            headers.insert(http::header::ALLOW, allow);
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::not_found(),
            StoreError::AlreadyDispatched(status) => ApiError::new(
                ErrorCode::AlreadyDispatched,
                format!("the retarget is already {}; it can no longer be cancelled", status.as_str()),
            ),
            other => ApiError::internal(&other),
        }
    }
}

impl From<ContentsError> for ApiError {
    fn from(e: ContentsError) -> Self {
        ApiError::invalid_request(e.to_string())
    }
}

impl From<TimeZoneError> for ApiError {
    fn from(e: TimeZoneError) -> Self {
        ApiError::new(ErrorCode::InvalidTimezone, format!("timezone: {e}"))
    }
}

impl From<PolicyError> for ApiError {
    fn from(e: PolicyError) -> Self {
        ApiError::invalid_request(e.to_string())
    }
}

impl From<PredicateError> for ApiError {
    fn from(e: PredicateError) -> Self {
        ApiError::new(ErrorCode::InvalidAction, e.to_string())
    }
}

impl From<SourceError> for ApiError {
    fn from(e: SourceError) -> Self {
        let code = match e {
            SourceError::PlanRequired(_) => ErrorCode::PlanRequired,
            SourceError::Expired(_) => ErrorCode::SourceExpired,
            SourceError::NotRetargetable => ErrorCode::SourceNotRetargetable,
        };
        ApiError::new(code, e.to_string())
    }
}

impl From<ChannelNotConfigured> for ApiError {
    fn from(e: ChannelNotConfigured) -> Self {
        ApiError::new(ErrorCode::ChannelNotConfigured, e.to_string())
    }
}

impl From<SourceLookupError> for ApiError {
    fn from(e: SourceLookupError) -> Self {
        match e {
            SourceLookupError::NotFound => ApiError::not_found(),
            SourceLookupError::Unusable(e) => e.into(),
            SourceLookupError::Store(e) => e.into(),
        }
    }
}

impl From<ApiError> for Response<Body> {
    fn from(e: ApiError) -> Self {
        e.to_response()
    }
}

/// A JSON response. Serialising our own response types cannot fail; if it ever did, the
/// client gets a problem+json 500 rather than a panic.
pub fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response<Body> {
    match serde_json::to_vec(body) {
        Ok(bytes) => Response::builder()
            .status(status)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Body::Binary(bytes))
            .unwrap_or_default(),
        Err(e) => ApiError::internal(&e).to_response(),
    }
}

/// 204 No Content.
pub fn no_content() -> Response<Body> {
    Response::builder().status(StatusCode::NO_CONTENT).body(Body::Empty).unwrap_or_default()
}

/// Collapse a handler result into the response API Gateway returns.
pub fn respond(result: Result<Response<Body>, ApiError>) -> Response<Body> {
    result.unwrap_or_else(|e| e.to_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_json(r: &Response<Body>) -> serde_json::Value {
        serde_json::from_slice(r.body().as_ref()).unwrap()
    }

    #[test]
    fn problems_follow_rfc_9457_with_a_stable_code() {
        let r = ApiError::new(ErrorCode::SendAtOutOfWindow, "send_at is after 2026-12-28T00:00:00Z")
            .to_response();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(r.headers()[http::header::CONTENT_TYPE], "application/problem+json");
        let v = body_json(&r);
        assert_eq!(v["code"], "send_at_out_of_window");
        assert_eq!(v["status"], 422);
        for field in ["type", "title", "detail"] {
            assert!(v[field].is_string(), "{field}");
        }
    }

    #[test]
    fn signature_status_is_chosen_by_the_webhook() {
        let twilio = ApiError::new(ErrorCode::InvalidSignature, "bad").with_status(StatusCode::FORBIDDEN);
        assert_eq!(twilio.to_response().status(), StatusCode::FORBIDDEN);
        assert_eq!(body_json(&twilio.to_response())["status"], 403);
    }

    #[test]
    fn domain_errors_keep_their_codes() {
        let at = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let cases: [(ApiError, u16, &str); 4] = [
            (SourceError::PlanRequired(crate::domain::Plan::Free).into(), 403, "plan_required"),
            (SourceError::Expired(at).into(), 410, "source_expired"),
            (SourceError::NotRetargetable.into(), 422, "source_not_retargetable"),
            (ContentsError::Title.into(), 400, "invalid_request"),
        ];
        for (e, status, code) in cases {
            assert_eq!((e.status.as_u16(), e.code.as_str()), (status, code), "{e}");
        }
        let e: ApiError = SourceError::Expired(at).into();
        assert_eq!(e.detail, "the message's data expired at 2027-01-15T08:00:00Z");
    }

    #[test]
    fn a_405_lists_the_allowed_methods() {
        let e = ApiError::method_not_allowed(&http::Method::POST, &[http::Method::GET, http::Method::DELETE]);
        let r = e.to_response();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(r.headers()[http::header::ALLOW], "GET, DELETE");
        assert_eq!(body_json(&r)["code"], "method_not_allowed");
        let e = ApiError::unrouted(&http::Method::PUT, NoMatch::MethodNotAllowed(vec![http::Method::POST]));
        assert_eq!((e.status, e.allow()), (StatusCode::METHOD_NOT_ALLOWED, Some("POST")));
        let r = ApiError::unrouted(&http::Method::GET, NoMatch::NotFound).to_response();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert!(r.headers().get(http::header::ALLOW).is_none(), "only a 405 carries Allow");
    }

    #[test]
    fn a_415_is_a_problem_like_any_other() {
        let r = ApiError::new(ErrorCode::UnsupportedMediaType, "text/plain").to_response();
        assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(r.headers()[http::header::CONTENT_TYPE], "application/problem+json");
        assert_eq!(body_json(&r)["code"], "unsupported_media_type");
    }

    #[test]
    fn codes_serialise_as_their_names() {
        for code in [ErrorCode::PayloadTooLarge, ErrorCode::SegmentsNotCombinable, ErrorCode::NotFound] {
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
    }
}

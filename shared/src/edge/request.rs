//! Request helpers every HTTP function uses: body limits, JSON with field-named errors,
//! bearer authentication, path ids.

use std::future::Future;

use lambda_http::{Body, Request, RequestExt, Response};
use serde::de::DeserializeOwned;

use crate::Store;
use crate::bootstrap::{Error, FromEnv, HttpFunction, Infra};
use crate::config::EnvReader;
use crate::domain::{ApiKey, App};
use crate::edge::problem::{ApiError, ErrorCode, respond};
use crate::edge::routes::{Matched, Route, match_route};

/// The contract's body limit.
pub const BODY_LIMIT: usize = 1024 * 1024;

/// The raw body, refused with 413 past 1 MiB.
pub fn body(request: &Request) -> Result<&[u8], ApiError> {
    let bytes = request.body().as_ref();
    if bytes.len() > BODY_LIMIT {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("the body is {} bytes; the limit is {BODY_LIMIT}", bytes.len()),
        ));
    }
    Ok(bytes)
}

/// Parses a JSON body. Errors name the field: `events[3].kind: unknown variant …`.
pub fn json_body<T: DeserializeOwned>(request: &Request) -> Result<T, ApiError> {
    parse_json(body(request)?)
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Every body of the contract is an object. serde would also read a struct from an array
    // of its fields in order (and `[]` as all defaults): refuse anything else up front.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::invalid_request("the body must be a JSON object"));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || path.is_empty() {
            ApiError::invalid_request(format!("body: {inner}"))
        } else {
            ApiError::invalid_request(format!("{path}: {inner}"))
        }
    })?;
    de.end().map_err(|e| ApiError::invalid_request(format!("body: {e}")))?;
    Ok(value)
}

/// The app whose API key the request bears (`Authorization: Bearer <key>`), or 401.
pub async fn authenticate(store: &Store, request: &Request) -> Result<App, ApiError> {
    let presented = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|k| !k.is_empty() && k.len() <= 256)
        .ok_or_else(ApiError::unauthorized)?;
    store.app_for_key_hash(&ApiKey::presented(presented).hash()).await?.ok_or_else(ApiError::unauthorized)
}

/// What the dependencies of an app-authenticated function hold: the table API keys are in.
pub trait HasStore {
    fn store(&self) -> &Store;
}

impl HasStore for Store {
    fn store(&self) -> &Store {
        self
    }
}

/// One request with a valid API key: its route, the route's path parameter, and the app.
pub struct AppRequest<'r> {
    pub route: Route,
    pub param: Option<&'r str>,
    pub app: App,
    pub request: &'r Request,
}

/// The routes of an HTTP function whose every route is authenticated with an app's API key:
/// the route is matched (404, 405, 413) and the key checked (401) before [`AppRoutes::route`]
/// runs, and its errors become problem responses. [`AppFunction`] serves them.
pub trait AppRoutes: Send + Sync + 'static {
    type Deps: FromEnv + HasStore + Send + Sync;

    fn route(
        deps: &Self::Deps,
        call: AppRequest<'_>,
    ) -> impl Future<Output = Result<Response<Body>, ApiError>> + Send;
}

/// The HTTP function serving `R`'s routes over its dependencies.
pub struct AppFunction<R: AppRoutes> {
    pub deps: R::Deps,
}

impl<R: AppRoutes> AppFunction<R> {
    pub fn new(deps: R::Deps) -> Self {
        Self { deps }
    }
}

impl<R: AppRoutes> FromEnv for AppFunction<R> {
    fn from_env(env: &mut EnvReader, infra: &Infra) -> Result<Self, Error> {
        Ok(Self::new(R::Deps::from_env(env, infra)?))
    }
}

impl<R: AppRoutes> HttpFunction for AppFunction<R> {
    #[tracing::instrument(skip_all, fields(method = %request.method(), path = request.uri().path()))]
    async fn handle(&self, request: Request) -> Response<Body> {
        let result = async {
            let call = app_request(self.deps.store(), &request).await?;
            R::route(&self.deps, call).await
        };
        respond(result.await)
    }
}

/// The request's route (404, 405, 413, 415: see [`matched_route`]) and the app whose API key it
/// bears (401): what every app-authenticated route checks first, in this order.
pub async fn app_request<'r>(store: &Store, request: &'r Request) -> Result<AppRequest<'r>, ApiError> {
    let matched = matched_route(request)?;
    let app = authenticate(store, request).await?;
    Ok(AppRequest { route: matched.route, param: matched.param, app, request })
}

/// The contract route this request is for: 404 for unknown paths, 405 (with `Allow`) for a
/// known path with another method, 415 for a JSON route given a body of another media type.
///
/// Bodies over the limit are refused here, so every route holds the contract's 1 MiB limit,
/// also those that read no body.
pub fn matched_route(request: &Request) -> Result<Matched<'_>, ApiError> {
    let bytes = body(request)?;
    let matched = match_route(request.method(), request.raw_http_path())
        .map_err(|no| ApiError::unrouted(request.method(), no))?;
    if matched.route.takes_json() && !bytes.is_empty() {
        json_content_type(request)?;
    }
    if matched.route.takes_beacon() && !bytes.is_empty() && !is_text_plain(request) {
        json_content_type(request)?;
    }
    Ok(matched)
}

/// 415 `unsupported_media_type` unless the request's `Content-Type` is JSON (see
/// [`is_json_media_type`]) or absent (or blank). Absent is accepted on purpose: curl without
/// `-H`, and many small clients, send JSON without saying so; the body must still parse as JSON
/// (400 otherwise). A type that says it is something else is believed, and refused.
pub fn json_content_type(request: &Request) -> Result<(), ApiError> {
    let Some(value) = request.headers().get(http::header::CONTENT_TYPE) else { return Ok(()) };
    match value.to_str() {
        Ok(text) if text.trim().is_empty() || is_json_media_type(text) => Ok(()),
        Ok(text) => Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            format!("Content-Type {:?} is not JSON; send application/json", clip(text, 100)),
        )),
        Err(_) => Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "Content-Type is not JSON; send application/json",
        )),
    }
}

/// Whether the request says its body is `text/plain` (any parameters, any case).
fn is_text_plain(request: &Request) -> bool {
    let value = request.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    value.is_some_and(|v| v.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case("text/plain"))
}

/// At most `max` characters of `text`, on a character boundary.
fn clip(text: &str, max: usize) -> &str {
    text.char_indices().nth(max).map_or(text, |(at, _)| &text[..at])
}

/// `application/json` or a structured `application/<subtype>+json` (RFC 6839), in any case,
/// with any parameters (`; charset=utf-8`).
pub fn is_json_media_type(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    match essence.split_once('/') {
        Some(("application", "json")) => true,
        Some(("application", subtype)) => subtype
            .strip_suffix("+json")
            .is_some_and(|name| !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b'/')),
        _ => false,
    }
}

/// An id from the path; one that does not parse names nothing, so it is 404 like a missing one.
pub fn path_id<T: std::str::FromStr>(param: Option<&str>) -> Result<T, ApiError> {
    param.and_then(|p| p.parse().ok()).ok_or_else(ApiError::not_found)
}

/// The query string's parameters, decoded.
pub fn query_pairs(request: &Request) -> Vec<(String, String)> {
    request.uri().query().map(|q| url_decode_pairs(q.as_bytes())).unwrap_or_default()
}

/// `application/x-www-form-urlencoded` pairs (also used for Twilio's callbacks).
pub fn url_decode_pairs(bytes: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(bytes).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        events: Vec<Event>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Event {
        kind: crate::domain::EventKind,
    }

    #[test]
    fn json_errors_name_the_field() {
        let err = parse_json::<Body>(br#"{"events":[{"kind":"sent"},{"kind":"opend"}]}"#).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidRequest);
        assert!(err.detail.starts_with("events[1].kind: unknown variant `opend`"), "{}", err.detail);
        let err = parse_json::<Body>(br#"{"events":"x"}"#).unwrap_err();
        assert!(err.detail.starts_with("events: invalid type"), "{}", err.detail);
        let err = parse_json::<Body>(b"{\"events\":[]} trailing").unwrap_err();
        assert!(err.detail.starts_with("body:"), "{}", err.detail);
        assert!(parse_json::<Body>(b"").is_err());
        assert!(parse_json::<Body>(&[0xff, 0xfe]).is_err());
    }

    /// A request as lambda_http hands it over: method, raw path, optional content type, body.
    fn request(method: &str, path: &str, content_type: Option<&str>, body: &str) -> Request {
        let mut builder =
            http::Request::builder().method(method).uri(format!("https://api.example.com{path}"));
        if let Some(content_type) = content_type {
            builder = builder.header(http::header::CONTENT_TYPE, content_type);
        }
        let body = if body.is_empty() { lambda_http::Body::Empty } else { lambda_http::Body::from(body) };
        builder.body(body).unwrap().with_raw_http_path(path)
    }

    #[test]
    fn json_media_types() {
        for json in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=UTF-8",
            " application/json ",
            "application/merge-patch+json",
            "application/vnd.api+json; charset=utf-8",
            "application/problem+json",
        ] {
            assert!(is_json_media_type(json), "{json}");
        }
        for other in [
            "text/plain",
            "text/plain; charset=utf-8",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "text/json",
            "application/jsonp",
            "application/json5",
            "application/+json",
            "application/xml",
            "json",
            "",
        ] {
            assert!(!is_json_media_type(other), "{other}");
        }
    }

    #[test]
    fn a_json_route_refuses_a_body_of_another_media_type() {
        let body = r#"{"events":[]}"#;
        for content_type in ["text/plain", "application/x-www-form-urlencoded", "application/xml"] {
            let err = matched_route(&request("POST", "/v1/events", Some(content_type), body)).err().unwrap();
            assert_eq!(
                (err.code, err.status.as_u16()),
                (ErrorCode::UnsupportedMediaType, 415),
                "{content_type}"
            );
            let response = err.to_response();
            assert_eq!(response.headers()[http::header::CONTENT_TYPE], "application/problem+json");
        }
        // JSON in any of its spellings, or no Content-Type at all (lenient), goes through.
        for content_type in [Some("application/json; charset=utf-8"), Some("application/vnd.x+json"), None] {
            let request = request("POST", "/v1/messages", content_type, body);
            assert_eq!(matched_route(&request).unwrap().route, Route::CreateMessage, "{content_type:?}");
        }
        // No body: nothing to refuse (the handler answers 400 for the missing JSON).
        assert!(matched_route(&request("POST", "/v1/retargets", Some("text/plain"), "")).is_ok());
        // Routes that are not JSON routes take what they take: Twilio posts a form.
        let form = "MessageStatus=sent";
        let twilio =
            request("POST", "/v1/webhooks/twilio/x", Some("application/x-www-form-urlencoded"), form);
        assert_eq!(matched_route(&twilio).unwrap().route, Route::TwilioWebhook);
        let get = request("GET", "/v1/messages/x", Some("text/plain"), "hello");
        assert_eq!(matched_route(&get).unwrap().route, Route::GetMessage);
    }

    #[test]
    fn a_wrong_method_answers_405_with_allow_and_an_unknown_path_404_without() {
        let response =
            respond(matched_route(&request("PUT", "/v1/retargets/x", None, "")).map(|_| unreachable!()));
        assert_eq!(response.status(), 405);
        assert_eq!(response.headers()[http::header::ALLOW], "GET, DELETE");
        let response =
            respond(matched_route(&request("GET", "/v1/events", None, "")).map(|_| unreachable!()));
        assert_eq!(
            (response.status().as_u16(), response.headers()[http::header::ALLOW].to_str().unwrap()),
            (405, "POST")
        );
        let response = respond(matched_route(&request("GET", "/v1/nope", None, "")).map(|_| unreachable!()));
        assert_eq!(response.status(), 404);
        assert!(response.headers().get(http::header::ALLOW).is_none());
        // The 405 wins over the media type: the method is wrong whatever the body.
        let err = matched_route(&request("PUT", "/v1/events", Some("text/plain"), "x")).err().unwrap();
        assert_eq!(err.code, ErrorCode::MethodNotAllowed);
    }
}

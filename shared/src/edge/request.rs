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
use crate::edge::routes::{Matched, NoMatch, Route, match_route};

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
    if bytes.iter().all(u8::is_ascii_whitespace) {
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
            let matched = matched_route(&request)?;
            let app = authenticate(self.deps.store(), &request).await?;
            let call = AppRequest { route: matched.route, param: matched.param, app, request: &request };
            R::route(&self.deps, call).await
        };
        respond(result.await)
    }
}

/// The contract route this request is for: 404 for unknown paths, 405 for a known path with
/// another method.
///
/// Bodies over the limit are refused here, so every route holds the contract's 1 MiB limit,
/// also those that read no body.
pub fn matched_route(request: &Request) -> Result<Matched<'_>, ApiError> {
    body(request)?;
    match_route(request.method(), request.raw_http_path()).map_err(|no| match no {
        NoMatch::NotFound => ApiError::not_found(),
        NoMatch::MethodNotAllowed => {
            ApiError::new(ErrorCode::MethodNotAllowed, format!("{} is not allowed here", request.method()))
        }
    })
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
        let err = parse_json::<Body>(br#"{"events":[{"kind":"sent"},{"kind":"opened"}]}"#).unwrap_err();
        assert_eq!(err.code, ErrorCode::InvalidRequest);
        assert!(err.detail.starts_with("events[1].kind: unknown variant `opened`"), "{}", err.detail);
        let err = parse_json::<Body>(br#"{"events":"x"}"#).unwrap_err();
        assert!(err.detail.starts_with("events: invalid type"), "{}", err.detail);
        let err = parse_json::<Body>(b"{\"events\":[]} trailing").unwrap_err();
        assert!(err.detail.starts_with("body:"), "{}", err.detail);
        assert!(parse_json::<Body>(b"").is_err());
        assert!(parse_json::<Body>(&[0xff, 0xfe]).is_err());
    }
}

//! Audiences of a source message: `GET /v1/messages/{id}/audience` pages through the members,
//! `GET /v1/messages/{id}/audience/count` counts them, `GET /v1/messages/{id}/audience.csv`
//! writes them all as CSV; each streams the source's interactions (see
//! `retarget_shared::services::audience`), none holds the audience in memory.
//!
//! Two functions share this crate. `retarget-audiences` sits behind the HTTP API, which
//! buffers every answer: it serves the CSV whole up to [`BUFFERED_CSV_LIMIT`] and sends larger
//! ones to the export URL (303). `retarget-audience-export` ([`AudienceExport`]) sits behind a
//! Lambda function URL in `RESPONSE_STREAM` mode and streams the CSV of any size, a chunk at a
//! time; the local API serves the route through it.

use std::pin::Pin;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, Response};
use retarget_shared::Store;
use retarget_shared::adapters::store::StoreError;
use retarget_shared::bootstrap::{Error, FromEnv, Infra, StreamingHttpFunction};
use retarget_shared::config::EnvReader;
use retarget_shared::domain::{App, Channel, MessageId, Predicate};
use retarget_shared::edge::problem::{ApiError, json_response};
use retarget_shared::edge::request::{
    AppRequest, AppRoutes, HasStore, app_request, matched_route, path_id, query_pairs,
};
use retarget_shared::edge::routes::Route;
use retarget_shared::edge::streamed::{self, StreamedBody};
use retarget_shared::services::audience::{
    AudienceSpec, Cursor, count, csv_chunks, page, retargetable_source,
};
use serde_json::json;

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

/// The most CSV the buffered function answers itself. A buffered Lambda response is at most
/// 6 MB (6,291,456 bytes) of JSON, in which the CSV is a string whose every line break takes
/// two bytes (`\n`): 5,000,000 bytes of CSV stay below it with room for the envelope, about
/// 100,000 members with 20-character external ids.
pub const BUFFERED_CSV_LIMIT: usize = 5_000_000;

/// The variable naming the export function's URL (the template sets it from the function
/// URL's own attribute).
pub const EXPORT_URL_VAR: &str = "AUDIENCE_EXPORT_URL";

/// The buffered function's dependencies.
pub struct AudienceDeps {
    pub store: Store,
    /// Where audiences too large for a buffered answer are streamed from, without a trailing
    /// slash: `{export_url}/v1/messages/{id}/audience.csv?…`.
    pub export_url: String,
    /// [`BUFFERED_CSV_LIMIT`] (tests set less).
    pub buffered_limit: usize,
}

impl HasStore for AudienceDeps {
    fn store(&self) -> &Store {
        &self.store
    }
}

impl FromEnv for AudienceDeps {
    fn from_env(env: &mut EnvReader, infra: &Infra) -> Result<Self, Error> {
        Ok(Self {
            store: infra.store(env),
            export_url: env.url(EXPORT_URL_VAR, None),
            buffered_limit: BUFFERED_CSV_LIMIT,
        })
    }
}

/// The audience routes, behind the API key (see [`AppRoutes`]).
pub struct Audiences;

impl AppRoutes for Audiences {
    type Deps = AudienceDeps;

    async fn route(deps: &AudienceDeps, call: AppRequest<'_>) -> Result<Response<Body>, ApiError> {
        let store = &deps.store;
        let paged = match call.route {
            Route::Audience => true,
            Route::AudienceCount => false,
            Route::AudienceCsv => return buffered_csv(deps, call).await,
            _ => return Err(ApiError::not_found()),
        };
        let query = AudienceQuery::parse(&query_pairs(call.request))?;
        let message_id: MessageId = path_id(call.param)?;
        let spec = audience_spec(store, &call.app, message_id, &query).await?;
        if paged {
            let result = page(store, spec.clone(), query.cursor, query.limit).await?;
            let mut body = json!({
                "message_id": message_id.to_string(),
                "channel": spec.target,
                "subscriptions": result.members,
                "next_cursor": result.next_cursor.map(|c| c.encode()),
            });
            describe_predicate(&mut body, &spec.predicate);
            Ok(json_response(StatusCode::OK, &body))
        } else {
            let counts = count(store, spec).await?;
            Ok(json_response(StatusCode::OK, &counts))
        }
    }
}

/// The CSV's chunks, its first one already read (so that a failure to read the audience is
/// still a problem response), and the headers of the answer.
pub struct CsvExport {
    pub first: Option<Bytes>,
    pub rest: Pin<Box<dyn Stream<Item = Result<Bytes, StoreError>> + Send>>,
    pub filename: String,
}

/// Checks the request as the paged route does (same source rules, same predicate parameters;
/// `limit` and `cursor` mean nothing here and are ignored) and starts the export.
pub async fn start_csv(store: &Store, call: &AppRequest<'_>) -> Result<CsvExport, ApiError> {
    let pairs: Vec<(String, String)> = query_pairs(call.request)
        .into_iter()
        .filter(|(name, _)| name != "limit" && name != "cursor")
        .collect();
    let query = AudienceQuery::parse(&pairs)?;
    let message_id: MessageId = path_id(call.param)?;
    let spec = audience_spec(store, &call.app, message_id, &query).await?;
    let filename = format!("audience-{message_id}.csv");
    let mut rest = csv_chunks(store, spec).boxed();
    let first = rest.next().await.transpose()?;
    Ok(CsvExport { first, rest, filename })
}

fn csv_headers<B>(response: &mut Response<B>, filename: &str) {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
}

/// The CSV whole, when it fits a buffered answer; else 303 to the same path and query on the
/// export URL (what was read is dropped: memory stays bounded by the limit).
async fn buffered_csv(deps: &AudienceDeps, call: AppRequest<'_>) -> Result<Response<Body>, ApiError> {
    let export = start_csv(&deps.store, &call).await?;
    let mut csv = export.first.map(Vec::from).unwrap_or_default();
    let mut rest = export.rest;
    loop {
        if csv.len() > deps.buffered_limit {
            return Ok(see_export(deps, &call));
        }
        match rest.next().await {
            Some(chunk) => csv.extend_from_slice(&chunk?),
            None => break,
        }
    }
    let mut response = Response::new(Body::Text(String::from_utf8(csv).map_err(|e| ApiError::internal(&e))?));
    csv_headers(&mut response, &export.filename);
    Ok(response)
}

fn see_export(deps: &AudienceDeps, call: &AppRequest<'_>) -> Response<Body> {
    let uri = call.request.uri();
    let location = match uri.query() {
        Some(query) => format!("{}{}?{query}", deps.export_url, uri.path()),
        None => format!("{}{}", deps.export_url, uri.path()),
    };
    let mut response = json_response(
        StatusCode::SEE_OTHER,
        &json!({
            "detail": format!(
                "this audience's CSV is larger than an API Gateway answer can be ({} bytes); \
                 it streams from the export URL: GET it there with the same Authorization header",
                deps.buffered_limit
            ),
            "location": location,
        }),
    );
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// `GET /v1/messages/{id}/audience.csv` streamed: the function behind a Lambda function URL in
/// `RESPONSE_STREAM` mode (up to Lambda's 200 MB a response), and the local API's route. The
/// same checks as every API route (404, 405, 401, then the audience's own), then the CSV a chunk
/// at a time; a read that fails after the first chunk aborts the response, so a client never
/// takes a cut CSV for a whole one. Every other path answers 404: the API serves those.
pub struct AudienceExport {
    pub store: Store,
}

impl FromEnv for AudienceExport {
    fn from_env(env: &mut EnvReader, infra: &Infra) -> Result<Self, Error> {
        Ok(Self { store: infra.store(env) })
    }
}

impl AudienceExport {
    async fn export(&self, request: &Request) -> Result<Response<StreamedBody>, ApiError> {
        // Another route is not served here, whoever asks (404 before the key is looked up).
        if matched_route(request)?.route != Route::AudienceCsv {
            return Err(ApiError::not_found());
        }
        let call = app_request(&self.store, request).await?;
        let export = start_csv(&self.store, &call).await?;
        let body = futures::stream::iter(export.first.map(Ok)).chain(export.rest);
        let mut response = Response::new(streamed::from_stream(body));
        csv_headers(&mut response, &export.filename);
        Ok(response)
    }
}

impl StreamingHttpFunction for AudienceExport {
    #[tracing::instrument(skip_all, fields(method = %request.method(), path = request.uri().path()))]
    async fn handle(&self, request: Request) -> Response<StreamedBody> {
        match self.export(&request).await {
            Ok(response) => response,
            Err(e) => streamed::buffered(e.to_response()),
        }
    }
}

/// `action` for the seed's actions; `action: null` plus `did`/`did_not` for combined ones.
pub fn describe_predicate(body: &mut serde_json::Value, predicate: &Predicate) {
    match predicate {
        Predicate::Action(action) => body["action"] = action.as_str().into(),
        Predicate::Combined { did, did_not } => {
            body["action"] = serde_json::Value::Null;
            body["did"] = json!(did);
            body["did_not"] = json!(did_not);
        }
    }
}

/// The query string, checked for form only (400 `invalid_request`); whether the action fits
/// the source is decided after the source checks, as the contract orders errors.
#[derive(Debug)]
pub struct AudienceQuery {
    pub action: Option<String>,
    pub did: Vec<String>,
    pub did_not: Vec<String>,
    pub channel: Option<Channel>,
    pub limit: usize,
    pub cursor: Option<Cursor>,
}

impl AudienceQuery {
    /// The decoded query pairs (see `request::query_pairs`); the last of a repeated single-valued
    /// parameter wins. Pure.
    pub fn parse(pairs: &[(String, String)]) -> Result<Self, ApiError> {
        let mut q = AudienceQuery {
            action: None,
            did: vec![],
            did_not: vec![],
            channel: None,
            limit: DEFAULT_LIMIT,
            cursor: None,
        };
        let mut combined = false;
        for (name, value) in pairs {
            match name.as_str() {
                "action" => q.action = Some(value.clone()),
                "did" => {
                    combined = true;
                    q.did.push(value.clone());
                }
                "did_not" => {
                    combined = true;
                    q.did_not.push(value.clone());
                }
                "channel" => {
                    q.channel = Some(
                        value
                            .parse()
                            .map_err(|_| ApiError::invalid_request("channel: must be push or sms"))?,
                    );
                }
                "limit" => {
                    q.limit =
                        value.parse().ok().filter(|l| (1..=MAX_LIMIT).contains(l)).ok_or_else(|| {
                            ApiError::invalid_request(format!("limit: must be 1 to {MAX_LIMIT}"))
                        })?;
                }
                "cursor" => {
                    q.cursor = Some(
                        Cursor::decode(value)
                            .map_err(|e| ApiError::invalid_request(format!("cursor: {e}")))?,
                    );
                }
                _ => {}
            }
        }
        match (&q.action, combined) {
            (Some(_), true) => Err(ApiError::invalid_request("action, did/did_not: use one form, not both")),
            (None, false) => Err(ApiError::invalid_request("action: required (or did / did_not)")),
            _ => Ok(q),
        }
    }
}

async fn audience_spec(
    store: &Store,
    app: &App,
    message_id: MessageId,
    q: &AudienceQuery,
) -> Result<AudienceSpec, ApiError> {
    let source = retargetable_source(store, app, message_id).await?;
    let predicate = match &q.action {
        Some(action) => Predicate::action(action, source.channel),
        None => Predicate::combined(&q.did, &q.did_not, source.channel),
    }?;
    let target = q.channel.unwrap_or(source.channel);
    Ok(AudienceSpec { source, predicate, target })
}

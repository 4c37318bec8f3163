//! Provider webhooks. Each verifies a signature before reading anything. The status webhooks
//! map the provider's status to an interaction kind and record it through the same path as
//! `POST /v1/events`, so duplicated and out-of-order deliveries leave the same state (a late
//! `sent` never undoes a `delivered`: kinds are separate facts, not a status that is
//! overwritten). Twilio's inbound webhook takes STOP and START replies.

use chrono::{DateTime, Utc};
use http::StatusCode;
use lambda_http::{Body, Request, RequestExt, Response};
use retarget_shared::Store;
use retarget_shared::bootstrap::{Error, FromEnv, HttpFunction, Infra};
use retarget_shared::config::EnvReader;
use retarget_shared::domain::{App, AppId, EventId, EventKind, HookSecret, SmsSecret};
use retarget_shared::edge::problem::{ApiError, ErrorCode, no_content, respond};
use retarget_shared::edge::request::{body, matched_route, parse_json, path_id, url_decode_pairs};
use retarget_shared::edge::routes::Route;
use retarget_shared::edge::signatures::{verify_push, verify_twilio};
use retarget_shared::services::ingest::{IncomingEvent, Outcome, Rejection, record_events};
use retarget_shared::services::tracking::TrackingKeys;
use serde::Deserialize;

mod inbound;
mod links;
mod track;
mod unsubscribe;
pub use inbound::{OptCommand, opt_command};
pub use links::{NOT_FOUND_PAGE, not_found_page, redirect};
pub use track::{TRACKABLE, TrackRequest, invalid_token, parse_track, trackable_kind};

#[derive(Clone)]
pub struct Deps {
    pub store: Store,
    /// The deployment's tracking keyring, verifying `POST /v1/track` tokens from memory.
    pub tracking: TrackingKeys,
    /// The public URL prefix Twilio was given (`PUBLIC_BASE_URL`), part of what it signs; `None`
    /// when the deploy gives none: then the origin API Gateway was called at
    /// ([`request_origin`]), which is where the SMS sender's callbacks point by default.
    pub public_base_url: Option<String>,
}

pub const TWILIO_SIGNATURE: &str = "x-twilio-signature";
pub const PUSH_SIGNATURE: &str = "retarget-signature";

impl Deps {
    /// The tracking keyring is the table's.
    pub fn new(store: Store, public_base_url: Option<String>) -> Self {
        Self { tracking: TrackingKeys::new(store.clone()), store, public_base_url }
    }
}

impl FromEnv for Deps {
    fn from_env(env: &mut EnvReader, infra: &Infra) -> Result<Self, Error> {
        let public_base_url = Some(env.url("PUBLIC_BASE_URL", Some(""))).filter(|url| !url.is_empty());
        Ok(Self::new(infra.store(env), public_base_url))
    }
}

impl HttpFunction for Deps {
    #[tracing::instrument(skip_all, fields(path = request.uri().path()))]
    async fn handle(&self, request: Request) -> Response<Body> {
        let response = respond(route(self, &request).await);
        if track::is_tracking_path(request.method(), request.raw_http_path()) {
            track::with_cors(response)
        } else {
            response
        }
    }
}

async fn route(deps: &Deps, request: &Request) -> Result<Response<Body>, ApiError> {
    let matched = matched_route(request)?;
    // The app and the one scope of its secrets a webhook verifies with, read together.
    let store = &deps.store;
    let app_id = || path_id::<AppId>(matched.param);
    match matched.route {
        Route::Track => track::track(deps, request).await,
        Route::TrackPreflight => Ok(track::preflight()),
        Route::OpenLink => links::open(deps, matched.param).await,
        Route::UnsubscribePage => Ok(unsubscribe::page(deps, matched.param).await),
        Route::UnsubscribeOneClick => Ok(unsubscribe::one_click(deps, matched.param).await),
        Route::TwilioWebhook => {
            let app_id = app_id()?;
            let (app, secret) =
                tokio::try_join!(store.get_app(app_id), store.get_secret::<SmsSecret>(app_id))?;
            twilio(deps, &app.ok_or_else(ApiError::not_found)?, &secret, request).await
        }
        Route::TwilioInbound => {
            let app_id = app_id()?;
            let (app, secret) =
                tokio::try_join!(store.get_app(app_id), store.get_secret::<SmsSecret>(app_id))?;
            inbound::inbound(deps, &app.ok_or_else(ApiError::not_found)?, &secret, request).await
        }
        Route::PushWebhook => {
            let app_id = app_id()?;
            let (app, secret) =
                tokio::try_join!(store.get_app(app_id), store.get_secret::<HookSecret>(app_id))?;
            push(deps, &app.ok_or_else(ApiError::not_found)?, &secret, request).await
        }
        _ => Err(ApiError::not_found()),
    }
}

/// Twilio's MessageStatus → the kind it records; `None` for in-flight statuses.
pub fn twilio_kind(status: &str) -> Option<EventKind> {
    match status {
        "sent" => Some(EventKind::Sent),
        "delivered" | "read" => Some(EventKind::Delivered),
        "undelivered" => Some(EventKind::Undelivered),
        "failed" => Some(EventKind::Failed),
        // accepted, queued, sending, scheduled, canceled, and anything new: nothing to record.
        _ => None,
    }
}

fn twilio_forbidden() -> ApiError {
    ApiError::new(ErrorCode::InvalidSignature, "X-Twilio-Signature does not verify")
        .with_status(StatusCode::FORBIDDEN)
}

async fn twilio(
    deps: &Deps,
    app: &App,
    secret: &SmsSecret,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let params = verified_twilio_form(deps, app, secret, request)?;
    match twilio_event(&params, request.uri().query().unwrap_or(""))? {
        Some(event) => record_one(deps, app, event).await,
        None => Ok(no_content()),
    }
}

/// The decoded form fields of a Twilio request whose `X-Twilio-Signature` verifies against the
/// app's auth token and the URL Twilio was given; 403 `invalid_signature` otherwise.
pub(crate) fn verified_twilio_form(
    deps: &Deps,
    app: &App,
    secret: &SmsSecret,
    request: &Request,
) -> Result<Vec<(String, String)>, ApiError> {
    let raw = body(request)?;
    let signature =
        request.headers().get(TWILIO_SIGNATURE).and_then(|v| v.to_str().ok()).ok_or_else(twilio_forbidden)?;
    let auth_token = secret.twilio_auth_token.as_deref().ok_or_else(twilio_forbidden)?;
    let query = request.uri().query().unwrap_or("");
    let base = match &deps.public_base_url {
        Some(base) => base.clone(),
        None => request_origin(request).ok_or_else(twilio_forbidden)?,
    };
    let url = twilio_url(&base, request.raw_http_path(), query);
    let params = url_decode_pairs(raw);
    if !verify_twilio(auth_token, &url, &params, signature) {
        tracing::warn!(app_id = %app.app_id, "Twilio request with a bad signature");
        return Err(twilio_forbidden());
    }
    Ok(params)
}

/// `https://{domain}` of the API Gateway request: the domain the caller used (the API's
/// `execute-api` domain, or a custom domain mapped to it), as API Gateway reports it in the
/// request context — not the `Host` header. `None` outside API Gateway. The HTTP API's
/// `$default` stage adds no path prefix.
pub fn request_origin(request: &Request) -> Option<String> {
    match request.request_context_ref()? {
        lambda_http::request::RequestContext::ApiGatewayV2(context) => {
            let domain = context.domain_name.as_deref().filter(|d| !d.is_empty())?;
            Some(format!("https://{domain}"))
        }
        _ => None,
    }
}

/// The URL Twilio signed: the public base URL, the raw path, and the query string if any.
pub fn twilio_url(public_base_url: &str, raw_path: &str, query: &str) -> String {
    let mut url = format!("{public_base_url}{raw_path}");
    if !query.is_empty() {
        url.push('?');
        url.push_str(query);
    }
    url
}

/// The event a verified Twilio status callback records, from its decoded form fields and the
/// callback URL's query string; `None` for an in-flight status (nothing to record). Pure.
pub fn twilio_event(params: &[(String, String)], query: &str) -> Result<Option<IncomingEvent>, ApiError> {
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let status =
        param("MessageStatus").ok_or_else(|| ApiError::invalid_request("MessageStatus: required"))?;
    let Some(kind) = twilio_kind(status) else { return Ok(None) };
    let query_pairs = url_decode_pairs(query.as_bytes());
    let query_param = |name: &str| query_pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let (Some(message_id), Some(subscription_id)) =
        (query_param("message_id"), query_param("subscription_id"))
    else {
        return Err(ApiError::invalid_request("message_id, subscription_id: required in the callback URL"));
    };
    // One Twilio message has one status history: its sid and the status make a natural event id.
    let event_id = param("MessageSid").and_then(|sid| EventId::parse(&format!("twilio:{sid}:{status}")).ok());
    Ok(Some(IncomingEvent {
        event_id,
        message_id: message_id.parse().ok(),
        subscription_id: subscription_id.parse().ok(),
        kind,
        occurred_at: None,
    }))
}

#[derive(Deserialize)]
struct PushEvent {
    event_id: EventId,
    kind: PushKind,
    message_id: String,
    subscription_id: String,
    occurred_at: DateTime<Utc>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum PushKind {
    Delivered,
    Clicked,
}

async fn push(
    deps: &Deps,
    app: &App,
    secret: &HookSecret,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let raw = body(request)?;
    let header = request.headers().get(PUSH_SIGNATURE).and_then(|v| v.to_str().ok());
    check_push_signature(&secret.push_webhook_secret, header, raw, deps.store.clock().now_epoch())?;
    record_one(deps, app, push_event(raw)?).await
}

/// The `Retarget-Signature` header (`None` when missing or not visible ASCII) checked against the
/// raw body at `now_epoch`: 401 `invalid_signature` unless it verifies. Pure.
pub fn check_push_signature(
    secret: &str,
    header: Option<&str>,
    raw: &[u8],
    now_epoch: i64,
) -> Result<(), ApiError> {
    let unauthorized = |detail: String| {
        ApiError::new(ErrorCode::InvalidSignature, detail).with_status(StatusCode::UNAUTHORIZED)
    };
    let header = header.ok_or_else(|| unauthorized("Retarget-Signature is missing".into()))?;
    verify_push(secret, header, raw, now_epoch).map_err(|e| unauthorized(format!("Retarget-Signature: {e}")))
}

/// The event a verified push webhook body records (400 `invalid_request` naming the field when
/// the JSON does not fit). Pure.
pub fn push_event(raw: &[u8]) -> Result<IncomingEvent, ApiError> {
    let event: PushEvent = parse_json(raw)?;
    Ok(IncomingEvent {
        event_id: Some(event.event_id),
        message_id: event.message_id.parse().ok(),
        subscription_id: event.subscription_id.parse().ok(),
        kind: match event.kind {
            PushKind::Delivered => EventKind::Delivered,
            PushKind::Clicked => EventKind::Clicked,
        },
        occurred_at: Some(event.occurred_at),
    })
}

async fn record_one(deps: &Deps, app: &App, event: IncomingEvent) -> Result<Response<Body>, ApiError> {
    let outcome = record_events(&deps.store, app.app_id, std::slice::from_ref(&event)).await?;
    match outcome.first().copied().unwrap_or(Outcome::Accepted) {
        Outcome::Accepted | Outcome::Duplicate => Ok(no_content()),
        // Data past its 30 days is simply no longer recorded; the provider must not retry.
        Outcome::Rejected(Rejection::MessageExpired) => Ok(no_content()),
        Outcome::Rejected(Rejection::UnknownMessage | Rejection::UnknownSubscription) => {
            Err(ApiError::not_found())
        }
        Outcome::Rejected(Rejection::InvalidKind) => Err(ApiError::invalid_request(format!(
            "kind: {} is not valid for this message's channel",
            event.kind
        ))),
    }
}

//! `POST /v1/events`: 1 to 1000 interaction events per request, validated one by one and
//! recorded in batches. Replays and any order leave the same state.

use chrono::{DateTime, Utc};
use http::StatusCode;
use lambda_http::{Body, Request, Response};
use retarget_shared::Store;
use retarget_shared::domain::{EventId, EventKind};
use retarget_shared::edge::problem::{ApiError, json_response};
use retarget_shared::edge::request::{AppRequest, AppRoutes, body, parse_json};
use retarget_shared::edge::routes::Route;
use retarget_shared::services::ingest::{IncomingEvent, Outcome, Rejection, record_events};
use serde::{Deserialize, Serialize};

pub const MAX_EVENTS: usize = 1000;

/// POST /v1/events, behind the API key (see [`AppRoutes`]).
pub struct Events;

impl AppRoutes for Events {
    type Deps = Store;

    async fn route(store: &Store, call: AppRequest<'_>) -> Result<Response<Body>, ApiError> {
        match call.route {
            Route::RecordEvents => record(store, call.app.app_id, call.request).await,
            _ => Err(ApiError::not_found()),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsBody {
    events: Vec<EventIn>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventIn {
    #[serde(default)]
    event_id: Option<EventId>,
    // Strings, not ids: an id that does not parse is a per-event `unknown_*`, not a 400.
    message_id: String,
    subscription_id: String,
    kind: EventKind,
    #[serde(default)]
    occurred_at: Option<DateTime<Utc>>,
}

#[derive(Serialize)]
struct Rejected {
    index: usize,
    code: Rejection,
}

#[derive(Serialize)]
struct Recorded {
    accepted: usize,
    duplicates: usize,
    rejected: Vec<Rejected>,
}

/// A `POST /v1/events` body parsed and checked for form (400 `invalid_request` naming the field):
/// 1 to [`MAX_EVENTS`] events, ids that do not parse kept as `None` (they are per-event
/// rejections, decided when recording). Pure.
pub fn parse_events(raw: &[u8]) -> Result<Vec<IncomingEvent>, ApiError> {
    let body: EventsBody = parse_json(raw)?;
    if body.events.is_empty() || body.events.len() > MAX_EVENTS {
        return Err(ApiError::invalid_request(format!("events: must hold 1 to {MAX_EVENTS} events")));
    }
    Ok(body
        .events
        .into_iter()
        .map(|e| IncomingEvent {
            event_id: e.event_id,
            message_id: e.message_id.parse().ok(),
            subscription_id: e.subscription_id.parse().ok(),
            kind: e.kind,
            occurred_at: e.occurred_at,
        })
        .collect())
}

async fn record(
    store: &Store,
    app_id: retarget_shared::domain::AppId,
    request: &Request,
) -> Result<Response<Body>, ApiError> {
    let events = parse_events(body(request)?)?;
    let outcomes = record_events(store, app_id, &events).await?;
    let mut response = Recorded { accepted: 0, duplicates: 0, rejected: Vec::new() };
    for (index, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            Outcome::Accepted => response.accepted += 1,
            Outcome::Duplicate => response.duplicates += 1,
            Outcome::Rejected(code) => response.rejected.push(Rejected { index, code }),
        }
    }
    tracing::info!(
        accepted = response.accepted,
        duplicates = response.duplicates,
        rejected = response.rejected.len(),
        "events recorded"
    );
    Ok(json_response(StatusCode::OK, &response))
}

//! Retargets: schedule a follow-up message to the audience of a source message (computed
//! later, at dispatch), read one, cancel one, list a source's retargets.

use chrono::{DateTime, Duration, Utc};
use http::StatusCode;
use lambda_http::{Body, Request, Response};
use retarget_shared::Store;
use retarget_shared::clock::rfc3339;
use retarget_shared::domain::{
    App, Channel, Contents, MessageId, Predicate, Retarget, RetargetId, RetargetStatus, check_source,
};
use retarget_shared::edge::audience_body::{KindNames, PredicateIn};
use retarget_shared::edge::problem::{ApiError, ErrorCode, json_response};
use retarget_shared::edge::request::{AppRequest, AppRoutes, json_body, path_id};
use retarget_shared::edge::routes::Route;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// How far in the past `send_at` may be (clock skew between client and service).
pub const SEND_AT_GRACE_SECONDS: i64 = 60;

/// The retarget routes, behind the API key (see [`AppRoutes`]).
pub struct Retargets;

impl AppRoutes for Retargets {
    type Deps = Store;

    async fn route(store: &Store, call: AppRequest<'_>) -> Result<Response<Body>, ApiError> {
        match call.route {
            Route::CreateRetarget => create(store, &call.app, call.request).await,
            Route::GetRetarget => {
                let id: RetargetId = path_id(call.param)?;
                let retarget =
                    store.get_retarget(call.app.app_id, id).await?.ok_or_else(ApiError::not_found)?;
                Ok(json_response(StatusCode::OK, &view(&retarget)))
            }
            Route::CancelRetarget => {
                let id: RetargetId = path_id(call.param)?;
                // `already_dispatched` (409) comes through `StoreError::AlreadyDispatched`.
                let retarget =
                    store.cancel_retarget(call.app.app_id, id).await?.ok_or_else(ApiError::not_found)?;
                tracing::info!(retarget_id = %retarget.retarget_id, "retarget cancelled");
                Ok(json_response(StatusCode::OK, &view(&retarget)))
            }
            Route::MessageRetargets => {
                let id: MessageId = path_id(call.param)?;
                store.get_message(call.app.app_id, id).await?.ok_or_else(ApiError::not_found)?;
                let retargets = store.retargets_of_message(call.app.app_id, id).await?;
                let views: Vec<Value> = retargets.iter().map(view).collect();
                Ok(json_response(StatusCode::OK, &json!({ "retargets": views })))
            }
            _ => Err(ApiError::not_found()),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRetarget {
    // A string, not an id: an id that does not parse names nothing (404, after the 400s and
    // `segments_not_combinable`).
    source_message_id: String,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    did: Option<KindNames>,
    #[serde(default)]
    did_not: Option<KindNames>,
    #[serde(default)]
    channel: Option<Channel>,
    contents: Contents,
    // Parsed strictly as RFC 3339 below.
    #[serde(default)]
    send_at: Option<String>,
    /// Exempt from the delivery policy (quiet hours, frequency cap).
    #[serde(default)]
    transactional: bool,
    // Segments a retarget audience cannot be combined with: any value counts (422
    // `segments_not_combinable`); only their presence is looked at.
    #[serde(default)]
    included_segments: Option<IgnoredAny>,
    #[serde(default)]
    excluded_segments: Option<IgnoredAny>,
    #[serde(default)]
    filters: Option<IgnoredAny>,
    #[serde(default)]
    include_subscription_ids: Option<IgnoredAny>,
    #[serde(default)]
    include_external_user_ids: Option<IgnoredAny>,
}

impl CreateRetarget {
    fn segment_fields(&self) -> Vec<&'static str> {
        [
            ("included_segments", self.included_segments.is_some()),
            ("excluded_segments", self.excluded_segments.is_some()),
            ("filters", self.filters.is_some()),
            ("include_subscription_ids", self.include_subscription_ids.is_some()),
            ("include_external_user_ids", self.include_external_user_ids.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, present)| present.then_some(name))
        .collect()
    }
}

fn parse_send_at(raw: &str) -> Result<DateTime<Utc>, ApiError> {
    DateTime::parse_from_rfc3339(raw).map(|t| t.to_utc()).map_err(|_| {
        ApiError::invalid_request("send_at: must be an RFC 3339 time such as 2026-11-28T14:00:00Z")
    })
}

#[derive(Serialize)]
struct Created {
    retarget_id: String,
    message_id: String,
    status: RetargetStatus,
    send_at: String,
}

/// The checks run in the contract's order: 400 `invalid_request`, 422
/// `segments_not_combinable`, 404, 403, 410, 422 `source_not_retargetable`, 400
/// `invalid_action`, 422 `send_at_out_of_window`. Nothing is written before all passed.
async fn create(store: &Store, app: &App, request: &Request) -> Result<Response<Body>, ApiError> {
    let body: CreateRetarget = json_body(request)?;
    let segments = body.segment_fields();
    let predicate_in = PredicateIn::from_body(body.action, body.did, body.did_not)?;
    let send_at = body.send_at.as_deref().map(parse_send_at).transpose()?;
    // With an explicit channel the contents are checked for it now; without one, against the
    // most lenient channel now and against the source's channel once the source is known.
    body.contents.check(body.channel.unwrap_or(Channel::Push))?;
    let contents = body.contents;
    let transactional = body.transactional;

    if !segments.is_empty() {
        return Err(ApiError::new(
            ErrorCode::SegmentsNotCombinable,
            format!(
                "{}: a retarget's audience is its source's; it takes no other segments",
                segments.join(", ")
            ),
        ));
    }

    let source_id: MessageId = body.source_message_id.parse().map_err(|_| ApiError::not_found())?;
    let source = store.get_message(app.app_id, source_id).await?.ok_or_else(ApiError::not_found)?;
    let channel = body.channel.unwrap_or(source.channel);
    if body.channel.is_none() {
        contents.check(channel)?;
    }

    let now = store.clock().now();
    check_source(app, &source, now)?;
    let predicate = predicate_in.for_source(source.channel)?;
    app.check_can_send(channel)?;

    let send_at = send_at.unwrap_or(now);
    let earliest = now - Duration::seconds(SEND_AT_GRACE_SECONDS);
    if send_at < earliest || send_at > source.expires_at {
        return Err(ApiError::new(
            ErrorCode::SendAtOutOfWindow,
            format!(
                "send_at: must be between {} and the source's expiry {}",
                rfc3339(earliest),
                rfc3339(source.expires_at)
            ),
        ));
    }
    // A time within the grace period means "now".
    let send_at = send_at.max(now);

    let (retarget, mut message) =
        Retarget::schedule(app, &source, predicate, channel, contents, send_at, now);
    message.transactional = transactional;
    store.create_retarget(&retarget, &message).await?;
    tracing::info!(
        retarget_id = %retarget.retarget_id,
        source_message_id = %source.message_id,
        channel = %channel,
        predicate = %retarget.predicate,
        send_at = %rfc3339(send_at),
        "retarget scheduled"
    );
    Ok(json_response(
        StatusCode::CREATED,
        &Created {
            retarget_id: retarget.retarget_id.to_string(),
            message_id: retarget.message_id.to_string(),
            status: retarget.status,
            send_at: rfc3339(retarget.send_at),
        },
    ))
}

/// A retarget as GET, DELETE and the per-message list show it. `action` is null for a
/// combined predicate, which shows `did` and `did_not` instead; the counts are null until
/// the dispatch sets them.
fn view(r: &Retarget) -> Value {
    let mut v = json!({
        "retarget_id": r.retarget_id.to_string(),
        "message_id": r.message_id.to_string(),
        "source_message_id": r.source_message_id.to_string(),
        "action": Value::Null,
        "channel": r.channel,
        "send_at": rfc3339(r.send_at),
        "status": r.status,
        "audience_size": r.audience_size,
        "enqueued": r.enqueued,
        "unreachable": r.unreachable,
        "deferred": r.deferred,
        "capped": r.capped,
        "created_at": rfc3339(r.created_at),
    });
    match &r.predicate {
        Predicate::Action(action) => v["action"] = action.as_str().into(),
        Predicate::Combined { did, did_not } => {
            v["did"] = did.iter().map(|k| k.as_str()).collect::<Vec<_>>().into();
            v["did_not"] = did_not.iter().map(|k| k.as_str()).collect::<Vec<_>>().into();
        }
    }
    if let Some(failure) = &r.failure {
        v["failure"] = failure.as_str().into();
    }
    v
}

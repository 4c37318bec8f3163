//! Audiences of a source message: `GET /v1/messages/{id}/audience` pages through the members,
//! `GET /v1/messages/{id}/audience/count` counts them; both stream the source's interactions
//! (see `retarget_shared::services::audience`), neither holds the audience in memory.

use http::StatusCode;
use lambda_http::{Body, Response};
use retarget_shared::Store;
use retarget_shared::domain::{App, Channel, MessageId, Predicate};
use retarget_shared::edge::problem::{ApiError, json_response};
use retarget_shared::edge::request::{AppRequest, AppRoutes, path_id, query_pairs};
use retarget_shared::edge::routes::Route;
use retarget_shared::services::audience::{AudienceSpec, Cursor, count, page, retargetable_source};
use serde_json::json;

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

/// The audience routes, behind the API key (see [`AppRoutes`]).
pub struct Audiences;

impl AppRoutes for Audiences {
    type Deps = Store;

    async fn route(store: &Store, call: AppRequest<'_>) -> Result<Response<Body>, ApiError> {
        let query = AudienceQuery::parse(&query_pairs(call.request))?;
        let paged = match call.route {
            Route::Audience => true,
            Route::AudienceCount => false,
            _ => return Err(ApiError::not_found()),
        };
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

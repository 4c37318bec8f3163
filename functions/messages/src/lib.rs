//! Messages: create one (resolve its recipients, put them on the channel's queue in packed
//! send jobs) and read one back with its per-kind stats; and the app's delivery policy, which
//! every send obeys.

mod policy;

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use futures::{StreamExt, TryStreamExt, stream};
use http::StatusCode;
use lambda_http::{Body, Request, Response};
use retarget_shared::Store;
use retarget_shared::adapters::queue::ChannelQueues;
use retarget_shared::bootstrap::{Error, FromEnv, Infra};
use retarget_shared::clock::rfc3339;
use retarget_shared::config::EnvReader;
use retarget_shared::domain::{
    App, Channel, Contents, ExternalUserId, Message, MessageId, MessageStatus, Retarget, SendJob,
    SubscriptionId, check_source,
};
use retarget_shared::edge::audience_body::{KindNames, PredicateIn};
use retarget_shared::edge::problem::{ApiError, ErrorCode, json_response};
use retarget_shared::edge::request::{AppRequest, AppRoutes, HasStore, json_body, path_id, query_pairs};
use retarget_shared::edge::routes::Route;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// What the handlers need; built once per cold start.
#[derive(Clone)]
pub struct Deps {
    pub store: Store,
    pub queues: ChannelQueues,
}

impl FromEnv for Deps {
    fn from_env(env: &mut EnvReader, infra: &Infra) -> Result<Self, Error> {
        Ok(Self { store: infra.store(env), queues: infra.channel_queues(env) })
    }
}

impl HasStore for Deps {
    fn store(&self) -> &Store {
        &self.store
    }
}

/// The message routes, behind the API key (see [`AppRoutes`]).
pub struct Messages;

impl AppRoutes for Messages {
    type Deps = Deps;

    async fn route(deps: &Deps, call: AppRequest<'_>) -> Result<Response<Body>, ApiError> {
        match call.route {
            Route::CreateMessage => create(deps, &call.app, call.request).await,
            Route::GetMessage => get(deps, &call.app, path_id(call.param)?).await,
            Route::ListMessages => list(deps, &call.app, call.request).await,
            Route::GetDeliveryPolicy => policy::get(&call.app).await,
            Route::PutDeliveryPolicy => policy::put(&deps.store, &call.app, call.request).await,
            _ => Err(ApiError::not_found()),
        }
    }
}

/// Largest recipient list one request may name (OneSignal's own limit is 20,000).
pub const MAX_INCLUDED: usize = 20_000;
/// How far ahead a message may be scheduled.
pub const MAX_SCHEDULE_AHEAD_DAYS: i64 = 30;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateMessage {
    channel: Channel,
    contents: Contents,
    #[serde(default)]
    include_subscription_ids: Option<Vec<SubscriptionId>>,
    #[serde(default)]
    include_external_user_ids: Option<Vec<ExternalUserId>>,
    #[serde(default)]
    send_at: Option<DateTime<Utc>>,
    #[serde(default)]
    follow_ups: Option<Vec<FollowUpIn>>,
    /// Exempt from the delivery policy (quiet hours, frequency cap).
    #[serde(default)]
    transactional: bool,
}

/// At most this many follow-ups per message.
pub const MAX_FOLLOW_UPS: usize = 5;
/// A follow-up's earliest delay after its message's send time.
pub const MIN_FOLLOW_UP_SECONDS: i64 = 60;

/// A retarget of the message declared with it: sent `after_seconds` after the message's send
/// time to the audience `action` (or `did`/`did_not`) selects then.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FollowUpIn {
    after_seconds: i64,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    did: Option<KindNames>,
    #[serde(default)]
    did_not: Option<KindNames>,
    #[serde(default)]
    channel: Option<Channel>,
    contents: Contents,
    #[serde(default)]
    transactional: bool,
}

/// A follow-up checked for form (400 `invalid_request`, naming `follow_ups[i]`).
struct FollowUp {
    after_seconds: i64,
    predicate: PredicateIn,
    channel: Option<Channel>,
    contents: Contents,
    transactional: bool,
}

fn follow_ups_of(body: Option<Vec<FollowUpIn>>) -> Result<Vec<FollowUp>, ApiError> {
    let follow_ups = body.unwrap_or_default();
    if follow_ups.len() > MAX_FOLLOW_UPS {
        return Err(ApiError::invalid_request(format!("follow_ups: at most {MAX_FOLLOW_UPS}")));
    }
    follow_ups
        .into_iter()
        .enumerate()
        .map(|(i, f)| {
            let at = |mut e: ApiError| {
                e.detail = format!("follow_ups[{i}].{}", e.detail);
                e
            };
            let predicate = PredicateIn::from_body(f.action, f.did, f.did_not).map_err(at)?;
            f.contents.check(f.channel.unwrap_or(Channel::Push)).map_err(|e| at(e.into()))?;
            Ok(FollowUp {
                after_seconds: f.after_seconds,
                predicate,
                channel: f.channel,
                contents: f.contents,
                transactional: f.transactional,
            })
        })
        .collect()
}

/// Each follow-up as the retarget (and its message) it becomes, under every rule of
/// `POST /v1/retargets`, in its order: 403 `plan_required`, 400 `invalid_action`, 422
/// `channel_not_configured`, 422 `send_at_out_of_window` (at least [`MIN_FOLLOW_UP_SECONDS`]
/// after the message's send time, at most its expiry). Pure: nothing is written.
fn schedule_follow_ups(
    app: &App,
    message: &Message,
    follow_ups: Vec<FollowUp>,
    now: DateTime<Utc>,
) -> Result<Vec<(Retarget, Message)>, ApiError> {
    if follow_ups.is_empty() {
        return Ok(Vec::new());
    }
    check_source(app, message, now)?;
    let mut scheduled = Vec::with_capacity(follow_ups.len());
    for (i, f) in follow_ups.into_iter().enumerate() {
        let at = |mut e: ApiError| {
            e.detail = format!("follow_ups[{i}]: {}", e.detail);
            e
        };
        let predicate = f.predicate.for_source(message.channel).map_err(|e| at(e.into()))?;
        let channel = f.channel.unwrap_or(message.channel);
        f.contents.check(channel).map_err(|e| at(e.into()))?;
        app.check_can_send(channel).map_err(|e| at(e.into()))?;
        let send_at = message.send_at + Duration::seconds(f.after_seconds.clamp(-1, 1 << 40));
        if f.after_seconds < MIN_FOLLOW_UP_SECONDS || send_at > message.expires_at {
            return Err(at(ApiError::new(
                ErrorCode::SendAtOutOfWindow,
                format!(
                    "after_seconds: must be at least {MIN_FOLLOW_UP_SECONDS} and send it by the message's expiry {}",
                    rfc3339(message.expires_at)
                ),
            )));
        }
        let (retarget, mut follow_up) =
            Retarget::schedule(app, message, predicate, channel, f.contents, send_at, now);
        follow_up.transactional = f.transactional;
        scheduled.push((retarget, follow_up));
    }
    Ok(scheduled)
}

/// The active subscriptions on `channel` a request names, each once, in id order.
async fn resolve_recipients(
    store: &Store,
    app: &App,
    channel: Channel,
    subscription_ids: Option<Vec<SubscriptionId>>,
    external_user_ids: Option<Vec<ExternalUserId>>,
) -> Result<Vec<SubscriptionId>, ApiError> {
    let mut recipients = BTreeSet::new();
    match (subscription_ids, external_user_ids) {
        (Some(ids), None) => {
            check_list_len("include_subscription_ids", ids.len())?;
            for sub in store.get_subscriptions(app.app_id, ids).await?.into_values() {
                if sub.channel == channel && sub.is_active() {
                    recipients.insert(sub.subscription_id);
                }
            }
        }
        (None, Some(users)) => {
            check_list_len("include_external_user_ids", users.len())?;
            let users: BTreeSet<ExternalUserId> = users.into_iter().collect();
            let found: Vec<Vec<SubscriptionId>> = stream::iter(users)
                .map(|user| async move {
                    let subs = store.subscriptions_of_person(app.app_id, &user, channel).await?;
                    Ok::<_, ApiError>(
                        subs.into_iter().filter(|s| s.is_active()).map(|s| s.subscription_id).collect(),
                    )
                })
                .buffer_unordered(16)
                .try_collect()
                .await?;
            recipients.extend(found.into_iter().flatten());
        }
        _ => {
            return Err(ApiError::invalid_request(
                "include_subscription_ids, include_external_user_ids: give exactly one of them",
            ));
        }
    }
    Ok(recipients.into_iter().collect())
}

fn check_list_len(field: &str, len: usize) -> Result<(), ApiError> {
    if len == 0 || len > MAX_INCLUDED {
        return Err(ApiError::invalid_request(format!("{field}: must list 1 to {MAX_INCLUDED} ids")));
    }
    Ok(())
}

#[derive(Serialize)]
struct Created {
    message_id: String,
    status: MessageStatus,
    recipients: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    follow_ups: Vec<FollowUpCreated>,
}

#[derive(Serialize)]
struct FollowUpCreated {
    retarget_id: String,
    message_id: String,
    send_at: String,
}

async fn create(deps: &Deps, app: &App, request: &Request) -> Result<Response<Body>, ApiError> {
    let body: CreateMessage = json_body(request)?;
    body.contents.check(body.channel)?;
    let contents = body.contents;
    let now = deps.store.clock().now();
    let send_at = body.send_at.unwrap_or(now).max(now);
    if send_at > now + Duration::days(MAX_SCHEDULE_AHEAD_DAYS) {
        return Err(ApiError::invalid_request(format!(
            "send_at: at most {MAX_SCHEDULE_AHEAD_DAYS} days ahead"
        )));
    }
    app.check_can_send(body.channel)?;
    let follow_ups = follow_ups_of(body.follow_ups)?;
    let recipients = resolve_recipients(
        &deps.store,
        app,
        body.channel,
        body.include_subscription_ids,
        body.include_external_user_ids,
    )
    .await?;

    let mut message = Message::new(app.app_id, body.channel, contents, now);
    message.retargetable = app.retargetable_at(now);
    message.recipients = recipients.len() as u64;
    message.send_at = send_at;
    message.status = if send_at > now { MessageStatus::Scheduled } else { MessageStatus::Sending };
    message.transactional = body.transactional;
    // Every follow-up is checked before anything is written: one refused, nothing created.
    let follow_ups = schedule_follow_ups(app, &message, follow_ups, now)?;
    let scheduled = message.status == MessageStatus::Scheduled;
    // Recipients of a scheduled message are resolved now and kept with it; the scheduler sends them.
    match (scheduled, follow_ups.is_empty()) {
        (true, true) => deps.store.create_scheduled_message(&message, &recipients).await?,
        (false, true) => deps.store.create_message(&message).await?,
        (_, false) => {
            let kept = scheduled.then_some(recipients.as_slice());
            deps.store.create_message_with_follow_ups(&message, kept, &follow_ups).await?;
        }
    }

    if message.status == MessageStatus::Sending {
        let jobs = SendJob::split(app.app_id, message.message_id, message.channel, &recipients);
        deps.queues.of(message.channel).send_jobs(&jobs).await.map_err(|e| {
            tracing::error!(error = %e, message_id = %message.message_id, "enqueueing recipients failed");
            ApiError::new(ErrorCode::Unavailable, "the message could not be queued for sending; try again")
        })?;
    }
    tracing::info!(message_id = %message.message_id, channel = %message.channel, recipients = message.recipients, status = ?message.status, "message created");
    Ok(json_response(
        StatusCode::ACCEPTED,
        &Created {
            message_id: message.message_id.to_string(),
            status: message.status,
            recipients: message.recipients,
            follow_ups: follow_ups
                .iter()
                .map(|(r, _)| FollowUpCreated {
                    retarget_id: r.retarget_id.to_string(),
                    message_id: r.message_id.to_string(),
                    send_at: rfc3339(r.send_at),
                })
                .collect(),
        },
    ))
}

async fn get(
    deps: &Deps,
    app: &App,
    id: retarget_shared::domain::MessageId,
) -> Result<Response<Body>, ApiError> {
    let (message, stats) =
        deps.store.get_message_with_stats(app.app_id, id).await?.ok_or_else(ApiError::not_found)?;
    Ok(json_response(StatusCode::OK, &view(&message, &stats)))
}

/// A message as `GET /v1/messages/{id}` and the listing show it.
fn view(message: &Message, stats: &retarget_shared::domain::KindCounts) -> Value {
    let mut view = json!({
        "message_id": message.message_id.to_string(),
        "channel": message.channel,
        "created_at": rfc3339(message.created_at),
        "expires_at": rfc3339(message.expires_at),
        "retargetable": message.retargetable,
        "status": message.status,
        "send_at": rfc3339(message.send_at),
        "recipients": message.recipients,
        "contents": message.contents,
        "stats": stats.view(message.channel),
    });
    if let Some(source) = message.retarget_of {
        view["retarget_of"] = source.to_string().into();
    }
    view
}

/// Messages per page of `GET /v1/messages`: `limit` 1 to [`MAX_LIST_LIMIT`], default
/// [`DEFAULT_LIST_LIMIT`].
pub const MAX_LIST_LIMIT: usize = 100;
pub const DEFAULT_LIST_LIMIT: usize = 20;

/// `limit` and `cursor` of `GET /v1/messages` (400 `invalid_request` naming the parameter). The
/// cursor is the id of the last message of the previous page: stateless, and only ever a bound
/// within the caller's own list. Pure.
pub fn list_query(pairs: &[(String, String)]) -> Result<(usize, Option<MessageId>), ApiError> {
    let mut limit = DEFAULT_LIST_LIMIT;
    let mut cursor = None;
    for (name, value) in pairs {
        match name.as_str() {
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|l| (1..=MAX_LIST_LIMIT).contains(l))
                    .ok_or_else(|| ApiError::invalid_request(format!("limit: 1 to {MAX_LIST_LIMIT}")))?;
            }
            "cursor" => {
                cursor = Some(
                    MessageId::parse(value)
                        .map_err(|_| ApiError::invalid_request("cursor: not a cursor this listing gave"))?,
                );
            }
            other => {
                let shown: String = other.chars().take(40).collect();
                return Err(ApiError::invalid_request(format!(
                    "{shown}: unknown parameter; use limit, cursor"
                )));
            }
        }
    }
    Ok((limit, cursor))
}

async fn list(deps: &Deps, app: &App, request: &Request) -> Result<Response<Body>, ApiError> {
    let (limit, cursor) = list_query(&query_pairs(request))?;
    let (messages, next) = deps.store.list_messages(app.app_id, limit, cursor).await?;
    // At most 100 small Queries, in parallel.
    let stats = futures::future::try_join_all(messages.iter().map(|m| deps.store.stats_of(m))).await?;
    let views: Vec<Value> = messages.iter().zip(&stats).map(|(m, s)| view(m, s)).collect();
    Ok(json_response(
        StatusCode::OK,
        &json!({ "messages": views, "next_cursor": next.map(|id| id.to_string()) }),
    ))
}

//! Subscriptions: register a push token, phone number or email (upsert by address), read one,
//! unsubscribe one. `external_user_id` links a person's subscriptions across channels.

use http::StatusCode;
use lambda_http::{Body, Request, Response};
use retarget_shared::Store;
use retarget_shared::adapters::store::Upserted;
use retarget_shared::domain::{
    Address, App, Channel, EmailAddress, ExternalUserId, PhoneNumber, Platform, Subscription, TimeZone,
    UnsubscribeReason,
};
use retarget_shared::edge::problem::{ApiError, ErrorCode, json_response};
use retarget_shared::edge::request::{AppRequest, AppRoutes, json_body, path_id};
use retarget_shared::edge::routes::Route;
use serde::{Deserialize, Serialize};

/// The subscription routes, behind the API key (see [`AppRoutes`]).
pub struct Subscriptions;

impl AppRoutes for Subscriptions {
    type Deps = Store;

    async fn route(store: &Store, call: AppRequest<'_>) -> Result<Response<Body>, ApiError> {
        match call.route {
            Route::CreateSubscription => create(store, &call.app, call.request).await,
            Route::GetSubscription => {
                let id = path_id(call.param)?;
                let sub =
                    store.get_subscription(call.app.app_id, id).await?.ok_or_else(ApiError::not_found)?;
                Ok(json_response(StatusCode::OK, &SubscriptionView::from(&sub)))
            }
            Route::Unsubscribe => {
                let id = path_id(call.param)?;
                let sub = store
                    .unsubscribe(call.app.app_id, id, UnsubscribeReason::Api)
                    .await?
                    .ok_or_else(ApiError::not_found)?;
                tracing::info!(subscription_id = %sub.subscription_id, "unsubscribed");
                Ok(json_response(StatusCode::OK, &SubscriptionView::from(&sub)))
            }
            _ => Err(ApiError::not_found()),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateSubscription {
    channel: Channel,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    platform: Option<Platform>,
    #[serde(default)]
    phone_number: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    external_user_id: Option<ExternalUserId>,
    /// Checked after the address (400 `invalid_timezone`), so a bad one is told as such.
    #[serde(default)]
    timezone: Option<String>,
}

/// Push tokens: FCM registration tokens are ~160 characters and APNs device tokens 64 hex
/// digits; anything printable up to 4 KiB is accepted so new token formats keep working.
const MAX_TOKEN_LEN: usize = 4096;

fn address(body: &CreateSubscription) -> Result<Address, ApiError> {
    match body.channel {
        Channel::Push => {
            if body.phone_number.is_some() || body.email.is_some() {
                return Err(ApiError::invalid_request("phone_number, email: not allowed for channel push"));
            }
            let token = body
                .token
                .clone()
                .ok_or_else(|| ApiError::invalid_request("token: required for channel push"))?;
            if token.is_empty()
                || token.len() > MAX_TOKEN_LEN
                || token.chars().any(|c| c.is_whitespace() || retarget_shared::domain::is_hidden(c))
            {
                return Err(ApiError::invalid_request(format!(
                    "token: must be 1 to {MAX_TOKEN_LEN} printable characters without spaces"
                )));
            }
            let platform = body.platform.ok_or_else(|| {
                ApiError::invalid_request("platform: required for channel push (ios or android)")
            })?;
            Ok(Address::Push { platform, token })
        }
        Channel::Sms => {
            if body.token.is_some() || body.platform.is_some() || body.email.is_some() {
                return Err(ApiError::invalid_request("token, platform, email: not allowed for channel sms"));
            }
            let phone = body
                .phone_number
                .as_deref()
                .ok_or_else(|| ApiError::invalid_request("phone_number: required for channel sms"))?;
            let phone_number = PhoneNumber::parse(phone)
                .map_err(|e| ApiError::new(ErrorCode::InvalidPhoneNumber, format!("phone_number: {e}")))?;
            Ok(Address::Sms { phone_number })
        }
        Channel::Email => {
            if body.token.is_some() || body.platform.is_some() || body.phone_number.is_some() {
                return Err(ApiError::invalid_request(
                    "token, platform, phone_number: not allowed for channel email",
                ));
            }
            let email = body
                .email
                .as_deref()
                .ok_or_else(|| ApiError::invalid_request("email: required for channel email"))?;
            let email = EmailAddress::parse(email)
                .map_err(|e| ApiError::new(ErrorCode::InvalidEmail, format!("email: {e}")))?;
            Ok(Address::Email { email })
        }
    }
}

async fn create(store: &Store, app: &App, request: &Request) -> Result<Response<Body>, ApiError> {
    let body: CreateSubscription = json_body(request)?;
    let address = address(&body)?;
    let timezone = body.timezone.as_deref().map(TimeZone::parse).transpose()?;
    let (sub, upserted) =
        store.upsert_subscription(app.app_id, address, body.external_user_id, timezone).await?;
    let status = match upserted {
        Upserted::Created => StatusCode::CREATED,
        Upserted::Updated => StatusCode::OK,
    };
    tracing::info!(subscription_id = %sub.subscription_id, channel = %sub.channel, ?upserted, "subscription upserted");
    Ok(json_response(status, &SubscriptionView::summary(&sub)))
}

#[derive(Serialize)]
struct SubscriptionView<'a> {
    subscription_id: String,
    channel: Channel,
    #[serde(skip_serializing_if = "Option::is_none")]
    platform: Option<Platform>,
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    phone_number: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    external_user_id: Option<&'a str>,
    status: &'static str,
    /// The zone given, else the one the phone number implies, else null; left out of the
    /// upsert's summary.
    #[serde(skip_serializing_if = "Option::is_none")]
    timezone: Option<Option<&'static str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    unsubscribed_reason: Option<&'static str>,
}

impl<'a> From<&'a Subscription> for SubscriptionView<'a> {
    fn from(s: &'a Subscription) -> Self {
        Self {
            subscription_id: s.subscription_id.to_string(),
            channel: s.channel,
            platform: s.platform,
            token: s.token.as_deref(),
            phone_number: s.phone_number.as_ref().map(PhoneNumber::as_e164),
            email: s.email.as_ref().map(EmailAddress::as_str),
            external_user_id: s.external_user_id.as_ref().map(ExternalUserId::as_str),
            status: s.status.as_str(),
            timezone: Some(s.known_zone().map(TimeZone::name)),
            unsubscribed_reason: (!s.is_active())
                .then_some(s.unsubscribed_reason)
                .flatten()
                .map(UnsubscribeReason::as_str),
        }
    }
}

impl<'a> SubscriptionView<'a> {
    /// Without the address: what an upsert answers.
    fn summary(s: &'a Subscription) -> Self {
        Self {
            platform: None,
            token: None,
            phone_number: None,
            email: None,
            timezone: None,
            unsubscribed_reason: None,
            ..Self::from(s)
        }
    }
}

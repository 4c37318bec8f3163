//! `GET`/`PUT /v1/app/delivery-policy`: the app's quiet hours, default time zone and frequency
//! cap, which every send of the app obeys (see `retarget_shared::domain::DeliveryPolicy`).

use http::StatusCode;
use lambda_http::{Body, Request, Response};
use retarget_shared::Store;
use retarget_shared::domain::{App, Channel, DeliveryPolicy, FrequencyCap, LocalTime, QuietHours, TimeZone};
use retarget_shared::edge::problem::{ApiError, json_response};
use retarget_shared::edge::request::json_body;
use serde::Deserialize;

/// A PUT replaces the whole policy: a field left out takes a new app's value (no quiet hours,
/// UTC, no cap).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyBody {
    #[serde(default)]
    quiet_hours: Option<QuietHoursBody>,
    #[serde(default)]
    default_timezone: Option<String>,
    #[serde(default)]
    frequency_cap: Option<CapBody>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QuietHoursBody {
    start: String,
    end: String,
    channels: Vec<Channel>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CapBody {
    max: u32,
    per_hours: u32,
    channels: Vec<Channel>,
}

impl PolicyBody {
    fn policy(self) -> Result<DeliveryPolicy, ApiError> {
        let quiet_hours = self
            .quiet_hours
            .map(|q| {
                let start = LocalTime::parse(&q.start, "quiet_hours.start")?;
                let end = LocalTime::parse(&q.end, "quiet_hours.end")?;
                QuietHours::new(start, end, q.channels)
            })
            .transpose()?;
        let default_timezone = match self.default_timezone {
            Some(name) => TimeZone::parse(&name)
                .map_err(|e| ApiError::invalid_request(format!("default_timezone: {e}")))?,
            None => TimeZone::UTC,
        };
        let frequency_cap =
            self.frequency_cap.map(|c| FrequencyCap::new(c.max, c.per_hours, c.channels)).transpose()?;
        Ok(DeliveryPolicy { quiet_hours, default_timezone, frequency_cap })
    }
}

pub async fn get(app: &App) -> Result<Response<Body>, ApiError> {
    Ok(json_response(StatusCode::OK, &app.delivery_policy))
}

pub async fn put(store: &Store, app: &App, request: &Request) -> Result<Response<Body>, ApiError> {
    let policy = json_body::<PolicyBody>(request)?.policy()?;
    let updated = store.set_delivery_policy(app.app_id, &policy).await?;
    tracing::info!(app_id = %app.app_id, policy = ?updated.delivery_policy, "delivery policy set");
    Ok(json_response(StatusCode::OK, &updated.delivery_policy))
}

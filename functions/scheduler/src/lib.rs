//! The scheduler: an EventBridge `rate(1 minute)` rule invokes it with a scheduled event; it
//! dispatches whatever retargets are due (see `retarget_shared::dispatch`).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lambda_events::eventbridge::EventBridgeEvent;
use retarget_shared::dispatch::{DispatchDeps, TickReport, tick};
use retarget_shared::store::StoreError;

pub use retarget_shared::dispatch::DispatchDeps as Deps;

/// Handles one scheduled event. The event's content does not matter (a tick is a tick);
/// `deadline_epoch_ms` is the Lambda context's deadline.
#[tracing::instrument(skip_all, fields(event_id = event.id.as_deref().unwrap_or("")))]
pub async fn handle(
    deps: &DispatchDeps,
    event: EventBridgeEvent<serde_json::Value>,
    deadline_epoch_ms: Option<u64>,
) -> Result<TickReport, StoreError> {
    tracing::debug!(detail_type = %event.detail_type, "tick");
    tick(deps, deadline_epoch_ms.map(instant_of)).await
}

/// The Lambda deadline (epoch milliseconds) as an `Instant`.
pub fn instant_of(deadline_epoch_ms: u64) -> Instant {
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    Instant::now() + Duration::from_millis(deadline_epoch_ms.saturating_sub(now_ms))
}

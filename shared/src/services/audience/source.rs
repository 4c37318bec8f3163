//! Whether a message can be the source of an audience or retarget, checked in the contract's
//! order: 404 `not_found`, 403 `plan_required`, 410 `source_expired`, 422 `source_not_retargetable`.

use crate::Store;
use crate::adapters::store::{App, Message};
use crate::domain::MessageId;
use crate::edge::problem::{ApiError, ErrorCode};

pub async fn retargetable_source(
    store: &Store,
    app: &App,
    message_id: MessageId,
) -> Result<Message, ApiError> {
    let message = store.get_message(app.app_id, message_id).await?.ok_or_else(ApiError::not_found)?;
    check_source(app, &message, store.clock().now())?;
    Ok(message)
}

/// The checks after the message was found (the scheduler repeats them at dispatch time).
pub fn check_source(
    app: &App,
    message: &Message,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), ApiError> {
    if !app.plan.allows_retargeting() {
        return Err(ApiError::new(
            ErrorCode::PlanRequired,
            format!("the {} plan does not include retargeting", app.plan),
        ));
    }
    if message.is_expired_at(now) {
        return Err(ApiError::new(
            ErrorCode::SourceExpired,
            format!("the message's data expired at {}", crate::clock::rfc3339(message.expires_at)),
        ));
    }
    if !message.retargetable {
        return Err(ApiError::new(
            ErrorCode::SourceNotRetargetable,
            "the message was created before the app's plan included retargeting",
        ));
    }
    Ok(())
}

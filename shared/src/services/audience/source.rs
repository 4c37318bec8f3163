//! Finding a message that can be the source of an audience or retarget, in the contract's
//! order: not found, then the domain's source rules (`domain::check_source`).

use crate::Store;
use crate::adapters::store::StoreError;
use crate::domain::{App, Message, MessageId, SourceError, check_source};

#[derive(Debug, thiserror::Error)]
pub enum SourceLookupError {
    /// The app has no such message.
    #[error("no such message")]
    NotFound,
    #[error(transparent)]
    Unusable(#[from] SourceError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub async fn retargetable_source(
    store: &Store,
    app: &App,
    message_id: MessageId,
) -> Result<Message, SourceLookupError> {
    let message = store.get_message(app.app_id, message_id).await?.ok_or(SourceLookupError::NotFound)?;
    check_source(app, &message, store.clock().now())?;
    Ok(message)
}

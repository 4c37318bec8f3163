//! Domain values that parse, not validate: a value of these types is always well formed.

mod api_key;
mod channel;
mod ids;
mod phone;

pub use api_key::{ApiKey, ApiKeyHash};
pub use channel::{Channel, EventKind, Plan, Platform};
pub use ids::{AppId, EventId, ExternalUserId, IdError, MessageId, RetargetId, SubscriptionId, is_hidden};
pub use phone::{PhoneNumber, PhoneNumberError};
pub mod contents;

//! The domain: values that parse, not validate (a value of these types is always well formed),
//! the entities and their state machines, and the domain's own errors. No I/O, no HTTP: the
//! store persists these types, `edge::problem` alone turns their errors into responses.

mod api_key;
mod app;
mod cap;
mod channel;
mod contents;
mod deferral;
mod email;
mod ids;
mod link;
mod message;
mod phone;
mod phone_zones;
mod policy;
mod predicate;
mod retarget;
mod send_job;
mod subscription;
mod timezone;
mod tracking;

pub use api_key::{ApiKey, ApiKeyHash};
pub use app::{
    ApnsAccount, ApnsConfig, App, ChannelNotConfigured, CreatedApp, Credentials, FcmAccount, FcmConfig,
    HookSecret, NewApp, PushSecret, Secret, SecretScope, SesConfig, SesConfigError, SmsSecret, TwilioAccount,
    TwilioConfig,
};
pub use cap::{Admission, Ledger, admit};
pub use channel::{Channel, EventKind, KindCounts, KindCountsView, Plan, Platform};
pub use contents::{Contents, ContentsError};
pub use deferral::{Deferral, DeferralId, DeferralIdError};
pub use email::{EmailAddress, EmailAddressError, email_tags};
pub use ids::{AppId, EventId, ExternalUserId, IdError, MessageId, RetargetId, SubscriptionId, is_hidden};
pub use link::{Link, LinkCode, LinkCodeError};
pub use message::{Message, MessageScope, MessageStatus, SourceError, check_source};
pub use phone::{PhoneNumber, PhoneNumberError};
pub use policy::{
    DeliveryPolicy, FrequencyCap, LocalTime, MAX_CAP_HOURS, MAX_CAP_SENDS, PolicyError, QuietHours,
};
pub use predicate::{Action, KindSet, Predicate, PredicateError};
pub use retarget::{DispatchOutcome, DispatchProgress, Retarget, RetargetStatus};
pub use send_job::{RECIPIENTS_PER_JOB, SendJob};
pub use subscription::{Address, Subscription, SubscriptionStatus, UnsubscribeReason};
pub use timezone::{PHONE_ZONES_SOURCE, TimeZone, TimeZoneError};
pub use tracking::{
    ACTIVATION_DELAY_SECONDS, Keyring, KeyringError, RETIRED_KEY_LIFETIME_DAYS, TOKEN_LEN, TokenError,
    TokenPurpose, Tracked, TrackingKey, token_kid,
};

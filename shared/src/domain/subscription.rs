//! Subscriptions: one push token or phone number of an app, optionally linked to a person
//! (`external_user_id`) across channels.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{AppId, Channel, ExternalUserId, PhoneNumber, Platform, SubscriptionId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    Active,
    Unsubscribed,
}

impl SubscriptionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionStatus::Active => "active",
            SubscriptionStatus::Unsubscribed => "unsubscribed",
        }
    }
}

/// Where a subscription's messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Push { platform: Platform, token: String },
    Sms { phone_number: PhoneNumber },
}

impl Address {
    pub fn channel(&self) -> Channel {
        match self {
            Address::Push { .. } => Channel::Push,
            Address::Sms { .. } => Channel::Sms,
        }
    }

    /// The token or the E.164 number: what identifies the address within its channel.
    pub fn value(&self) -> &str {
        match self {
            Address::Push { token, .. } => token,
            Address::Sms { phone_number } => phone_number.as_e164(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    pub subscription_id: SubscriptionId,
    pub app_id: AppId,
    pub channel: Channel,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<PhoneNumber>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_user_id: Option<ExternalUserId>,
    pub status: SubscriptionStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Subscription {
    /// A new active subscription of `address`, created at `now`.
    pub fn new(
        app_id: AppId,
        address: Address,
        external_user_id: Option<ExternalUserId>,
        now: DateTime<Utc>,
    ) -> Self {
        let channel = address.channel();
        let (platform, token, phone_number) = match address {
            Address::Push { platform, token } => (Some(platform), Some(token), None),
            Address::Sms { phone_number } => (None, None, Some(phone_number)),
        };
        Self {
            subscription_id: SubscriptionId::at(now),
            app_id,
            channel,
            platform,
            token,
            phone_number,
            external_user_id,
            status: SubscriptionStatus::Active,
            created_at: now,
            updated_at: now,
        }
    }

    pub fn is_active(&self) -> bool {
        self.status == SubscriptionStatus::Active
    }
}

//! Subscriptions: one push token, phone number or email address of an app, optionally linked to a person
//! (`external_user_id`) across channels.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use std::borrow::Cow;

use super::{AppId, Channel, EmailAddress, ExternalUserId, PhoneNumber, Platform, SubscriptionId, TimeZone};

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

/// Why a subscription was unsubscribed: what decides whether an inbound START may bring it back
/// (only an opt-out may be undone by the recipient; the app's own unsubscribe may not).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnsubscribeReason {
    /// `POST /v1/subscriptions/{id}/unsubscribe`.
    Api,
    /// The recipient opted out: an inbound STOP, or Twilio error 21610.
    Stop,
    /// The provider says the push token is gone (FCM UNREGISTERED, APNs 410/BadDeviceToken).
    DeadToken,
    /// A permanent email bounce.
    Bounce,
    /// An email complaint.
    Complaint,
}

impl UnsubscribeReason {
    pub fn as_str(self) -> &'static str {
        match self {
            UnsubscribeReason::Api => "api",
            UnsubscribeReason::Stop => "stop",
            UnsubscribeReason::DeadToken => "dead_token",
            UnsubscribeReason::Bounce => "bounce",
            UnsubscribeReason::Complaint => "complaint",
        }
    }

    /// The reason a provider's "this address is dead" gives on `channel`.
    pub fn dead_address(channel: Channel) -> Self {
        match channel {
            Channel::Push => UnsubscribeReason::DeadToken,
            Channel::Sms => UnsubscribeReason::Stop,
            Channel::Email => UnsubscribeReason::Bounce,
        }
    }

    /// Whether the recipient may undo it (an inbound START).
    pub fn opted_out(self) -> bool {
        self == UnsubscribeReason::Stop
    }
}

/// Where a subscription's messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Push { platform: Platform, token: String },
    Sms { phone_number: PhoneNumber },
    Email { email: EmailAddress },
}

impl Address {
    pub fn channel(&self) -> Channel {
        match self {
            Address::Push { .. } => Channel::Push,
            Address::Sms { .. } => Channel::Sms,
            Address::Email { .. } => Channel::Email,
        }
    }

    /// The token, the E.164 number or the email in lower case: what identifies the address
    /// within its channel (one subscription per identity).
    pub fn identity(&self) -> Cow<'_, str> {
        match self {
            Address::Push { token, .. } => Cow::Borrowed(token),
            Address::Sms { phone_number } => Cow::Borrowed(phone_number.as_e164()),
            Address::Email { email } => Cow::Owned(email.identity()),
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
    pub email: Option<EmailAddress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_user_id: Option<ExternalUserId>,
    pub status: SubscriptionStatus,
    /// Set when unsubscribed; absent on active subscriptions and on ones unsubscribed before
    /// reasons were kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsubscribed_reason: Option<UnsubscribeReason>,
    /// The zone the app gave, if any (see [`Subscription::local_zone`] for the one that applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<TimeZone>,
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
        let (mut platform, mut token, mut phone_number, mut email) = (None, None, None, None);
        match address {
            Address::Push { platform: p, token: t } => (platform, token) = (Some(p), Some(t)),
            Address::Sms { phone_number: n } => phone_number = Some(n),
            Address::Email { email: e } => email = Some(e),
        }
        Self {
            subscription_id: SubscriptionId::at(now),
            app_id,
            channel,
            platform,
            token,
            phone_number,
            email,
            external_user_id,
            status: SubscriptionStatus::Active,
            unsubscribed_reason: None,
            timezone: None,
            created_at: now,
            updated_at: now,
        }
    }

    /// What identifies its address within its channel ([`Address::identity`]).
    pub fn identity(&self) -> Option<Cow<'_, str>> {
        match (&self.token, &self.phone_number, &self.email) {
            (Some(token), _, _) => Some(Cow::Borrowed(token)),
            (None, Some(phone), _) => Some(Cow::Borrowed(phone.as_e164())),
            (None, None, Some(email)) => Some(Cow::Owned(email.identity())),
            (None, None, None) => None,
        }
    }

    pub fn is_active(&self) -> bool {
        self.status == SubscriptionStatus::Active
    }

    /// The recipient's zone as far as it is known: the one given, else the one the phone
    /// number implies. `None`: the app's default applies.
    pub fn known_zone(&self) -> Option<TimeZone> {
        self.timezone.or_else(|| self.phone_number.as_ref().and_then(TimeZone::of_phone))
    }

    /// The zone a send to this recipient is timed in.
    pub fn local_zone(&self, default: TimeZone) -> TimeZone {
        self.known_zone().unwrap_or(default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sms(number: &str) -> Subscription {
        let phone_number = PhoneNumber::parse(number).unwrap();
        Subscription::new(AppId::new(), Address::Sms { phone_number }, None, Utc::now())
    }

    #[test]
    fn the_given_zone_beats_the_numbers_which_beats_the_default() {
        let paris = TimeZone::parse("Europe/Paris").unwrap();
        let tokyo = TimeZone::parse("Asia/Tokyo").unwrap();
        let mut ny = sms("+12125551234");
        assert_eq!(ny.local_zone(paris).name(), "America/New_York");
        ny.timezone = Some(tokyo);
        assert_eq!(ny.local_zone(paris), tokyo);
        assert_eq!(sms("+15555551234").local_zone(paris), paris, "an ambiguous number: the default");
        assert_eq!(sms("+15555551234").known_zone(), None);
    }

    #[test]
    fn reasons_are_stored_by_their_contract_names() {
        for r in [
            UnsubscribeReason::Api,
            UnsubscribeReason::Stop,
            UnsubscribeReason::DeadToken,
            UnsubscribeReason::Bounce,
            UnsubscribeReason::Complaint,
        ] {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
    }
}

//! Apps (tenants): their plan and their provider credentials. Secrets never show in `Debug`.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{AppId, Plan};

/// Twilio credentials of an app. The auth token both authenticates sends and keys the
/// status-callback signatures.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TwilioConfig {
    pub account_sid: String,
    pub auth_token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messaging_service_sid: Option<String>,
}

impl fmt::Debug for TwilioConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioConfig")
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"***")
            .field("messaging_service_sid", &self.messaging_service_sid)
            .finish_non_exhaustive()
    }
}

/// A Google service account (the standard JSON key file's fields we use).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FcmConfig {
    pub project_id: String,
    pub client_email: String,
    pub private_key: String,
    pub token_uri: String,
}

impl fmt::Debug for FcmConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FcmConfig")
            .field("project_id", &self.project_id)
            .field("client_email", &self.client_email)
            .finish_non_exhaustive()
    }
}

/// An APNs token-auth key (.p8, PEM) and the identifiers the provider token needs.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ApnsConfig {
    pub private_key_pem: String,
    pub key_id: String,
    pub team_id: String,
    pub topic: String,
}

impl fmt::Debug for ApnsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApnsConfig")
            .field("key_id", &self.key_id)
            .field("team_id", &self.team_id)
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

/// What the operator supplies to create an app.
#[derive(Debug, Clone)]
pub struct NewApp {
    pub name: String,
    pub plan: Plan,
    pub twilio: Option<TwilioConfig>,
    pub fcm: Option<FcmConfig>,
    pub apns: Option<ApnsConfig>,
}

#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct App {
    pub app_id: AppId,
    pub name: String,
    pub plan: Plan,
    pub created_at: DateTime<Utc>,
    /// When the app last moved onto a plan with retargeting; messages created before it are
    /// never retargetable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retargeting_enabled_at: Option<DateTime<Utc>>,
    pub push_webhook_secret: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twilio: Option<TwilioConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fcm: Option<FcmConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apns: Option<ApnsConfig>,
}

impl fmt::Debug for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("App")
            .field("app_id", &self.app_id)
            .field("name", &self.name)
            .field("plan", &self.plan)
            .field("retargeting_enabled_at", &self.retargeting_enabled_at)
            .finish_non_exhaustive()
    }
}

impl App {
    /// Whether a message created at `at` may ever be retargeted.
    pub fn retargetable_at(&self, at: DateTime<Utc>) -> bool {
        self.plan.allows_retargeting() && self.retargeting_enabled_at.is_some_and(|since| since <= at)
    }
}

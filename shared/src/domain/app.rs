//! Apps (tenants): their plan, what they can send on, and their provider credentials.
//!
//! An app is stored as one secret-free item (what authentication, dispatch and every API
//! handler read) and its secrets in items of their own, one per [`SecretScope`], so that IAM
//! can let each function read exactly the scopes it needs (see `keys::secret` and
//! docs/security.md). Secrets never show in `Debug`.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{AppId, Channel, DeliveryPolicy, Plan};

/// A Twilio account without its auth token: what the app item keeps.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TwilioAccount {
    pub account_sid: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messaging_service_sid: Option<String>,
}

/// Twilio credentials of an app. The auth token both authenticates sends and keys the
/// status-callback signatures.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TwilioConfig {
    #[serde(flatten)]
    pub account: TwilioAccount,
    pub auth_token: String,
}

impl fmt::Debug for TwilioConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioConfig").field("account", &self.account).finish_non_exhaustive()
    }
}

/// A Google service account without its private key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FcmAccount {
    pub project_id: String,
    pub client_email: String,
    pub token_uri: String,
}

/// A Google service account (the standard JSON key file's fields we use).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FcmConfig {
    #[serde(flatten)]
    pub account: FcmAccount,
    pub private_key: String,
}

impl fmt::Debug for FcmConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FcmConfig").field("account", &self.account).finish_non_exhaustive()
    }
}

/// The identifiers of an APNs token-auth key, without the key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ApnsAccount {
    pub key_id: String,
    pub team_id: String,
    pub topic: String,
}

/// An APNs token-auth key (.p8, PEM) and the identifiers the provider token needs.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ApnsConfig {
    #[serde(flatten)]
    pub account: ApnsAccount,
    pub private_key_pem: String,
}

impl fmt::Debug for ApnsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApnsConfig").field("account", &self.account).finish_non_exhaustive()
    }
}

/// How an app sends email through Amazon SES: no secret (the email sender signs with the
/// deployment's own IAM role), so all of it lives on the app item.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SesConfig {
    /// `FromEmailAddress`: `addr@domain` or `Name <addr@domain>`, an identity verified in SES.
    pub from: String,
    /// The configuration set whose event destination publishes to EventBridge; SES's default
    /// configuration set of the account (if any) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configuration_set: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SesConfigError {
    #[error("--ses-from must be addr@domain or \"Name <addr@domain>\"")]
    From,
    #[error("--ses-configuration-set must be 1 to 64 characters of letters, digits, '-' and '_'")]
    ConfigurationSet,
}

impl SesConfig {
    /// The addr-spec of `from` (`addr@domain` of `Name <addr@domain>`): the identity SES checks.
    pub fn address(&self) -> String {
        let options = email_address::Options::default().with_required_tld().without_domain_literal();
        email_address::EmailAddress::parse_with_options(&self.from, options)
            .map(|a| a.email().to_owned())
            .unwrap_or_else(|_| self.from.clone())
    }

    pub fn new(from: &str, configuration_set: Option<&str>) -> Result<Self, SesConfigError> {
        let options = email_address::Options::default().with_required_tld().without_domain_literal();
        let parsed = email_address::EmailAddress::parse_with_options(from, options)
            .map_err(|_| SesConfigError::From)?;
        // A header value: no line breaks (header injection), and an address SES can verify.
        if from.contains(['\r', '\n']) || parsed.email().is_empty() {
            return Err(SesConfigError::From);
        }
        let set_ok = |s: &str| {
            (1..=64).contains(&s.len())
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if configuration_set.is_some_and(|s| !set_ok(s)) {
            return Err(SesConfigError::ConfigurationSet);
        }
        Ok(Self { from: from.to_owned(), configuration_set: configuration_set.map(str::to_owned) })
    }
}

/// Provider credentials as the operator gives them; `None` for a provider not given.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    pub twilio: Option<TwilioConfig>,
    pub fcm: Option<FcmConfig>,
    pub apns: Option<ApnsConfig>,
    pub ses: Option<SesConfig>,
}

impl Credentials {
    pub fn is_empty(&self) -> bool {
        self.twilio.is_none() && self.fcm.is_none() && self.apns.is_none() && self.ses.is_none()
    }
}

/// What the operator supplies to create an app.
#[derive(Debug, Clone)]
pub struct NewApp {
    pub name: String,
    pub plan: Plan,
    pub credentials: Credentials,
}

/// An app as everything but the senders and webhooks sees it: no secret in it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct App {
    pub app_id: AppId,
    pub name: String,
    pub plan: Plan,
    pub created_at: DateTime<Utc>,
    /// When the app last moved onto a plan with retargeting; messages created before it are
    /// never retargetable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retargeting_enabled_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twilio: Option<TwilioAccount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fcm: Option<FcmAccount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apns: Option<ApnsAccount>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ses: Option<SesConfig>,
    /// Quiet hours, default zone, frequency cap (`GET`/`PUT /v1/app/delivery-policy`).
    #[serde(default)]
    pub delivery_policy: DeliveryPolicy,
}

impl App {
    /// Whether a message created at `at` may ever be retargeted.
    pub fn retargetable_at(&self, at: DateTime<Utc>) -> bool {
        self.plan.allows_retargeting() && self.retargeting_enabled_at.is_some_and(|since| since <= at)
    }

    /// Whether the app has credentials to send on `channel` at all (push: FCM or APNs; a
    /// recipient on the other platform still fails at send time).
    pub fn can_send(&self, channel: Channel) -> bool {
        match channel {
            Channel::Push => self.fcm.is_some() || self.apns.is_some(),
            Channel::Sms => self.twilio.is_some(),
            Channel::Email => self.ses.is_some(),
        }
    }

    /// What a message, retarget or follow-up on `channel` checks before anything is created.
    pub fn check_can_send(&self, channel: Channel) -> Result<(), ChannelNotConfigured> {
        if self.can_send(channel) { Ok(()) } else { Err(ChannelNotConfigured(channel)) }
    }
}

/// The app has no provider credentials for the channel: nothing it sent there could be delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the app has no provider credentials for {}: {}", .0, match .0 {
    Channel::Push => "add an FCM service account or an APNs key (retarget-admin app set-credentials)",
    Channel::Sms => "add a Twilio account (retarget-admin app set-credentials)",
    Channel::Email => "add an SES from address (retarget-admin app set-credentials --ses-from)",
})]
pub struct ChannelNotConfigured(pub Channel);

/// An app just created, with the push webhook secret it was given (shown once).
#[derive(Clone)]
pub struct CreatedApp {
    pub app: App,
    pub push_webhook_secret: String,
}

impl fmt::Debug for CreatedApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreatedApp").field("app", &self.app).finish_non_exhaustive()
    }
}

/// The items an app's secrets are kept in, one per set of readers. The IAM policies of
/// infra/template.yaml give each function the scopes it needs and deny it the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SecretScope {
    /// The Twilio auth token: the SMS sender (sends) and the webhooks function (signatures).
    Sms,
    /// The FCM and APNs private keys: the push sender.
    Push,
    /// The push webhook secret: the webhooks function.
    Hooks,
}

impl SecretScope {
    pub const ALL: [SecretScope; 3] = [SecretScope::Sms, SecretScope::Push, SecretScope::Hooks];

    pub fn as_str(self) -> &'static str {
        match self {
            SecretScope::Sms => "SMS",
            SecretScope::Push => "PUSH",
            SecretScope::Hooks => "HOOKS",
        }
    }
}

/// The secret item of one scope.
pub trait Secret: Serialize + DeserializeOwned + Default + Send + Sync + 'static {
    const SCOPE: SecretScope;
}

/// `SECRET#{app}#SMS`.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SmsSecret {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub twilio_auth_token: Option<String>,
}

impl Secret for SmsSecret {
    const SCOPE: SecretScope = SecretScope::Sms;
}

impl SmsSecret {
    /// The app's full Twilio credentials, when it has both halves.
    pub fn twilio(&self, app: &App) -> Option<TwilioConfig> {
        let account = app.twilio.clone()?;
        Some(TwilioConfig { account, auth_token: self.twilio_auth_token.clone()? })
    }
}

/// `SECRET#{app}#PUSH`.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct PushSecret {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fcm_private_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apns_private_key_pem: Option<String>,
}

impl Secret for PushSecret {
    const SCOPE: SecretScope = SecretScope::Push;
}

impl PushSecret {
    pub fn fcm(&self, app: &App) -> Option<FcmConfig> {
        let account = app.fcm.clone()?;
        Some(FcmConfig { account, private_key: self.fcm_private_key.clone()? })
    }

    pub fn apns(&self, app: &App) -> Option<ApnsConfig> {
        let account = app.apns.clone()?;
        Some(ApnsConfig { account, private_key_pem: self.apns_private_key_pem.clone()? })
    }
}

/// `SECRET#{app}#HOOKS`.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct HookSecret {
    pub push_webhook_secret: String,
}

impl Secret for HookSecret {
    const SCOPE: SecretScope = SecretScope::Hooks;
}

macro_rules! redacted_debug {
    ($($t:ty),*) => {$(
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($t), " { *** }"))
            }
        }
    )*};
}
redacted_debug!(SmsSecret, PushSecret, HookSecret);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_show_in_debug() {
        let twilio = TwilioConfig {
            account: TwilioAccount { account_sid: "AC1".into(), from: None, messaging_service_sid: None },
            auth_token: "tok-secret".into(),
        };
        let fcm = FcmConfig {
            account: FcmAccount { project_id: "p".into(), client_email: "e".into(), token_uri: "u".into() },
            private_key: "fcm-secret".into(),
        };
        let apns = ApnsConfig {
            account: ApnsAccount { key_id: "k".into(), team_id: "t".into(), topic: "b".into() },
            private_key_pem: "apns-secret".into(),
        };
        let shown = format!(
            "{twilio:?} {fcm:?} {apns:?} {:?} {:?} {:?}",
            SmsSecret { twilio_auth_token: Some("tok-secret".into()) },
            PushSecret { fcm_private_key: Some("fcm-secret".into()), apns_private_key_pem: None },
            HookSecret { push_webhook_secret: "hook-secret".into() },
        );
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("AC1"), "{shown}");
    }

    #[test]
    fn a_service_account_file_reads_as_its_config() {
        let file = r#"{"type":"service_account","project_id":"p1","private_key_id":"x","private_key":"-----BEGIN PRIVATE KEY-----\n","client_email":"a@p1.iam.gserviceaccount.com","token_uri":"https://oauth2.googleapis.com/token"}"#;
        let config: FcmConfig = serde_json::from_str(file).unwrap();
        assert_eq!(config.account.project_id, "p1");
        assert_eq!(config.private_key, "-----BEGIN PRIVATE KEY-----\n");
    }

    #[test]
    fn credentials_join_only_when_both_halves_are_there() {
        let app = App {
            app_id: AppId::at(Utc::now()),
            name: "a".into(),
            plan: Plan::Pro,
            created_at: Utc::now(),
            retargeting_enabled_at: None,
            twilio: Some(TwilioAccount {
                account_sid: "AC1".into(),
                from: None,
                messaging_service_sid: None,
            }),
            fcm: None,
            apns: None,
            ses: None,
            delivery_policy: Default::default(),
        };
        assert!(app.can_send(Channel::Sms) && !app.can_send(Channel::Push));
        assert_eq!(SmsSecret::default().twilio(&app), None);
        let joined = SmsSecret { twilio_auth_token: Some("t".into()) }.twilio(&app).unwrap();
        assert_eq!((joined.account.account_sid.as_str(), joined.auth_token.as_str()), ("AC1", "t"));
        assert_eq!(PushSecret { fcm_private_key: Some("k".into()), ..Default::default() }.fcm(&app), None);
    }
}

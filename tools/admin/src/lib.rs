//! The operator CLI (`retarget-admin`). The commands are the contract's; each returns the JSON
//! object the binary prints.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use retarget_shared::Store;
use retarget_shared::adapters::store::StoreError;
use retarget_shared::domain::{
    ApiKey, ApnsAccount, ApnsConfig, AppId, CreatedApp, Credentials, FcmConfig, NewApp, Plan, SesConfig,
    TwilioAccount, TwilioConfig,
};
use serde_json::{Value, json};

#[derive(Debug, Parser)]
#[command(name = "retarget-admin", about = "Operate retarget apps and API keys (prints JSON)")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apps (tenants).
    #[command(subcommand)]
    App(AppCommand),
    /// API keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// The deployment's tracking keyring (the keys of the push tracking tokens).
    #[command(subcommand)]
    TrackingKey(TrackingKeyCommand),
    /// One-off upgrades of data written by an earlier version.
    #[command(subcommand)]
    Migrate(MigrateCommand),
}

#[derive(Debug, Subcommand)]
pub enum MigrateCommand {
    /// Build the person items and inactive sets audiences read (for subscriptions stored before
    /// they existed): idempotent, and safe to run while the API serves. Prints
    /// {"subscriptions","retried"}.
    AudienceIndex,
}

#[derive(Debug, Subcommand)]
pub enum TrackingKeyCommand {
    /// Add a new key: it verifies at once and signs new tokens 10 minutes later; the previous
    /// keys keep verifying (tokens already out stay valid) until 31 days after they stopped
    /// signing. Prints the keyring's key ids and dates, never a key.
    Rotate,
}

#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Create an app and its first API key.
    Create(Box<CreateApp>),
    /// Add or replace an app's provider credentials (only the providers given; prints {"app_id"}).
    SetCredentials(Box<SetCredentials>),
    /// Change an app's plan (free → paid stamps retargeting_enabled_at).
    SetPlan {
        #[arg(long)]
        app_id: AppId,
        #[arg(long)]
        plan: Plan,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    Create {
        #[arg(long)]
        app_id: AppId,
    },
    Revoke {
        #[arg(long)]
        app_id: AppId,
        #[arg(long)]
        api_key: String,
    },
}

#[derive(Debug, Args)]
pub struct CreateApp {
    #[arg(long)]
    pub name: String,
    #[arg(long)]
    pub plan: Plan,
    #[command(flatten)]
    pub providers: Providers,
}

#[derive(Debug, Args)]
pub struct SetCredentials {
    #[arg(long)]
    pub app_id: AppId,
    #[command(flatten)]
    pub providers: Providers,
}

/// The provider flags of `app create` and `app set-credentials`. A secret is given inline, or,
/// to keep it out of shell history and `ps`, read from a file (`-`: standard input).
#[derive(Debug, Args)]
pub struct Providers {
    #[arg(long)]
    pub twilio_account_sid: Option<String>,
    #[arg(long, requires = "twilio_account_sid", conflicts_with = "twilio_auth_token_file")]
    pub twilio_auth_token: Option<String>,
    /// A file holding the Twilio auth token (`-`: read it from standard input).
    #[arg(long, requires = "twilio_account_sid")]
    pub twilio_auth_token_file: Option<PathBuf>,
    #[arg(long, requires = "twilio_account_sid", conflicts_with = "twilio_messaging_service_sid")]
    pub twilio_from: Option<String>,
    #[arg(long, requires = "twilio_account_sid")]
    pub twilio_messaging_service_sid: Option<String>,
    /// Google's service-account JSON key file (`-`: standard input).
    #[arg(long)]
    pub fcm_service_account: Option<PathBuf>,
    /// The APNs token-auth key (.p8; `-`: standard input).
    #[arg(long, requires_all = ["apns_key_id", "apns_team_id", "apns_topic"])]
    pub apns_key: Option<PathBuf>,
    #[arg(long, requires = "apns_key")]
    pub apns_key_id: Option<String>,
    #[arg(long, requires = "apns_key")]
    pub apns_team_id: Option<String>,
    #[arg(long, requires = "apns_key")]
    pub apns_topic: Option<String>,
    /// The email sender's `FromEmailAddress`: `addr@domain` or `"Name <addr@domain>"`, an
    /// identity verified in SES (no secret: SES is called with the deployment's IAM role).
    #[arg(long)]
    pub ses_from: Option<String>,
    /// The SES configuration set whose events reach EventBridge (the stack's own by default).
    #[arg(long, requires = "ses_from")]
    pub ses_configuration_set: Option<String>,
}

impl Providers {
    /// Reads and checks what was given; at most one of the secrets may come from stdin.
    pub fn read(self, stdin: &mut dyn std::io::Read) -> Result<Credentials, AdminError> {
        let from_stdin = [&self.twilio_auth_token_file, &self.fcm_service_account, &self.apns_key]
            .iter()
            .filter(|p| p.as_deref().is_some_and(is_stdin))
            .count();
        if from_stdin > 1 {
            return Err(AdminError::Invalid("only one secret can be read from standard input".into()));
        }
        let twilio = match self.twilio_account_sid {
            None => None,
            Some(account_sid) => {
                let auth_token = match (self.twilio_auth_token, self.twilio_auth_token_file) {
                    (Some(token), None) => token,
                    (None, Some(path)) => {
                        read_secret(&path, "--twilio-auth-token-file", stdin)?.trim().to_owned()
                    }
                    _ => {
                        return Err(AdminError::Invalid(
                            "Twilio needs --twilio-auth-token or --twilio-auth-token-file".into(),
                        ));
                    }
                };
                if auth_token.is_empty() {
                    return Err(AdminError::Invalid("the Twilio auth token is empty".into()));
                }
                if self.twilio_from.is_none() && self.twilio_messaging_service_sid.is_none() {
                    return Err(AdminError::Invalid(
                        "Twilio needs --twilio-from or --twilio-messaging-service-sid".into(),
                    ));
                }
                if let Some(from) = &self.twilio_from {
                    retarget_shared::domain::PhoneNumber::parse(from)
                        .map_err(|e| AdminError::Invalid(format!("--twilio-from: {e}")))?;
                }
                Some(TwilioConfig {
                    account: TwilioAccount {
                        account_sid,
                        from: self.twilio_from,
                        messaging_service_sid: self.twilio_messaging_service_sid,
                    },
                    auth_token,
                })
            }
        };
        let fcm = match self.fcm_service_account {
            Some(path) => {
                Some(parse_service_account(&read_secret(&path, "--fcm-service-account", stdin)?, &path)?)
            }
            None => None,
        };
        let apns = match (self.apns_key, self.apns_key_id, self.apns_team_id, self.apns_topic) {
            (Some(path), Some(key_id), Some(team_id), Some(topic)) => {
                let private_key_pem = read_secret(&path, "--apns-key", stdin)?;
                if !private_key_pem.contains("BEGIN PRIVATE KEY") {
                    return Err(AdminError::Invalid(format!(
                        "--apns-key {}: not a PEM .p8 key",
                        path.display()
                    )));
                }
                Some(ApnsConfig { account: ApnsAccount { key_id, team_id, topic }, private_key_pem })
            }
            _ => None,
        };
        let ses = self
            .ses_from
            .map(|from| SesConfig::new(&from, self.ses_configuration_set.as_deref()))
            .transpose()
            .map_err(|e| AdminError::Invalid(e.to_string()))?;
        Ok(Credentials { twilio, fcm, apns, ses })
    }
}

fn is_stdin(path: &std::path::Path) -> bool {
    path.as_os_str() == "-"
}

/// A secret's text from `path`, or from `stdin` when `path` is `-`.
fn read_secret(
    path: &std::path::Path,
    flag: &str,
    stdin: &mut dyn std::io::Read,
) -> Result<String, AdminError> {
    let mut text = String::new();
    let read = if is_stdin(path) {
        stdin.read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read_to_string(path).map(|t| text = t)
    };
    read.map_err(|e| AdminError::Invalid(format!("{flag} {}: {e}", path.display())))?;
    Ok(text)
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    Invalid(String),
    #[error("no such app")]
    UnknownApp,
    #[error("no such API key for this app")]
    UnknownKey,
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        AdminError::Store(e)
    }
}

/// Runs a command; secrets named `-` are read from `stdin`.
pub async fn run(store: &Store, cli: Cli, stdin: &mut dyn std::io::Read) -> Result<Value, AdminError> {
    match cli.command {
        Command::App(AppCommand::Create(args)) => create_app(store, *args, stdin).await,
        Command::App(AppCommand::SetCredentials(args)) => {
            let credentials = args.providers.read(stdin)?;
            if credentials.is_empty() {
                return Err(AdminError::Invalid(
                    "give the credentials to set: --twilio-…, --fcm-service-account or --apns-…".into(),
                ));
            }
            store
                .set_credentials(args.app_id, credentials)
                .await
                .map_err(not_found_as(AdminError::UnknownApp))?;
            Ok(json!({ "app_id": args.app_id }))
        }
        Command::App(AppCommand::SetPlan { app_id, plan }) => {
            let app = store.set_plan(app_id, plan).await.map_err(not_found_as(AdminError::UnknownApp))?;
            Ok(json!({
                "app_id": app.app_id,
                "plan": app.plan,
                "retargeting_enabled_at": app.retargeting_enabled_at.map(retarget_shared::clock::rfc3339),
            }))
        }
        Command::Key(KeyCommand::Create { app_id }) => {
            let key = store.create_api_key(app_id).await.map_err(not_found_as(AdminError::UnknownApp))?;
            Ok(json!({ "api_key": key.reveal() }))
        }
        Command::TrackingKey(TrackingKeyCommand::Rotate) => {
            let ring = store.rotate_tracking_key().await.map_err(|e| match e {
                StoreError::AlreadyExists => {
                    AdminError::Invalid("another rotation ran at the same time: run it again".into())
                }
                other => AdminError::Store(other),
            })?;
            let keys: Vec<Value> = ring
                .keys()
                .iter()
                .map(|k| {
                    json!({
                        "kid": k.kid,
                        "created_at": retarget_shared::clock::rfc3339(k.created_at),
                        "signs_from": retarget_shared::clock::rfc3339(k.signs_from),
                        "retired_at": k.retired_at.map(retarget_shared::clock::rfc3339),
                    })
                })
                .collect();
            Ok(json!({ "keys": keys }))
        }
        Command::Migrate(MigrateCommand::AudienceIndex) => {
            let report = store.migrate_audience_index().await.map_err(AdminError::Store)?;
            Ok(json!(report))
        }
        Command::Key(KeyCommand::Revoke { app_id, api_key }) => {
            store
                .revoke_api_key(app_id, &ApiKey::presented(&api_key))
                .await
                .map_err(not_found_as(AdminError::UnknownKey))?;
            Ok(json!({ "app_id": app_id, "revoked": true }))
        }
    }
}

fn not_found_as(replacement: AdminError) -> impl FnOnce(StoreError) -> AdminError {
    move |e| match e {
        StoreError::NotFound => replacement,
        other => AdminError::Store(other),
    }
}

async fn create_app(
    store: &Store,
    args: CreateApp,
    stdin: &mut dyn std::io::Read,
) -> Result<Value, AdminError> {
    let credentials = args.providers.read(stdin)?;
    let CreatedApp { app, push_webhook_secret } =
        store.create_app(NewApp { name: args.name, plan: args.plan, credentials }).await?;
    // The deployment's tracking keyring exists before the first push is sent: a verifier then
    // never caches "no keyring" while the first tokens go out.
    store.tracking_keyring_or_create().await?;
    let key = store.create_api_key(app.app_id).await?;
    Ok(json!({
        "app_id": app.app_id,
        "api_key": key.reveal(),
        "push_webhook_secret": push_webhook_secret,
        "plan": app.plan,
    }))
}

fn parse_service_account(text: &str, path: &std::path::Path) -> Result<FcmConfig, AdminError> {
    serde_json::from_str(text).map_err(|e| {
        AdminError::Invalid(format!(
            "--fcm-service-account {}: not a service-account key (project_id, client_email, private_key, token_uri): {e}",
            path.display()
        ))
    })
}

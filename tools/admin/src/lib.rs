//! The operator CLI (`retarget-admin`). The commands are the contract's; each returns the JSON
//! object the binary prints.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use retarget_shared::Store;
use retarget_shared::adapters::store::StoreError;
use retarget_shared::domain::{ApiKey, ApnsConfig, AppId, FcmConfig, NewApp, Plan, TwilioConfig};
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
}

#[derive(Debug, Subcommand)]
pub enum AppCommand {
    /// Create an app and its first API key.
    Create(Box<CreateApp>),
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
    #[arg(long, requires = "twilio_auth_token")]
    pub twilio_account_sid: Option<String>,
    #[arg(long, requires = "twilio_account_sid")]
    pub twilio_auth_token: Option<String>,
    #[arg(long, requires = "twilio_account_sid", conflicts_with = "twilio_messaging_service_sid")]
    pub twilio_from: Option<String>,
    #[arg(long, requires = "twilio_account_sid")]
    pub twilio_messaging_service_sid: Option<String>,
    /// Google's service-account JSON key file.
    #[arg(long)]
    pub fcm_service_account: Option<PathBuf>,
    /// The APNs token-auth key (.p8).
    #[arg(long, requires_all = ["apns_key_id", "apns_team_id", "apns_topic"])]
    pub apns_key: Option<PathBuf>,
    #[arg(long, requires = "apns_key")]
    pub apns_key_id: Option<String>,
    #[arg(long, requires = "apns_key")]
    pub apns_team_id: Option<String>,
    #[arg(long, requires = "apns_key")]
    pub apns_topic: Option<String>,
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

pub async fn run(store: &Store, cli: Cli) -> Result<Value, AdminError> {
    match cli.command {
        Command::App(AppCommand::Create(args)) => create_app(store, *args).await,
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

async fn create_app(store: &Store, args: CreateApp) -> Result<Value, AdminError> {
    let twilio = match (args.twilio_account_sid, args.twilio_auth_token) {
        (Some(account_sid), Some(auth_token)) => {
            if args.twilio_from.is_none() && args.twilio_messaging_service_sid.is_none() {
                return Err(AdminError::Invalid(
                    "Twilio needs --twilio-from or --twilio-messaging-service-sid".into(),
                ));
            }
            if let Some(from) = &args.twilio_from {
                retarget_shared::domain::PhoneNumber::parse(from)
                    .map_err(|e| AdminError::Invalid(format!("--twilio-from: {e}")))?;
            }
            Some(TwilioConfig {
                account_sid,
                auth_token,
                from: args.twilio_from,
                messaging_service_sid: args.twilio_messaging_service_sid,
            })
        }
        _ => None,
    };
    let fcm = match args.fcm_service_account {
        Some(path) => Some(read_service_account(&path)?),
        None => None,
    };
    let apns = match (args.apns_key, args.apns_key_id, args.apns_team_id, args.apns_topic) {
        (Some(path), Some(key_id), Some(team_id), Some(topic)) => {
            let private_key_pem = std::fs::read_to_string(&path)
                .map_err(|e| AdminError::Invalid(format!("--apns-key {}: {e}", path.display())))?;
            if !private_key_pem.contains("BEGIN PRIVATE KEY") {
                return Err(AdminError::Invalid(format!("--apns-key {}: not a PEM .p8 key", path.display())));
            }
            Some(ApnsConfig { private_key_pem, key_id, team_id, topic })
        }
        _ => None,
    };
    let app = store.create_app(NewApp { name: args.name, plan: args.plan, twilio, fcm, apns }).await?;
    let key = store.create_api_key(app.app_id).await?;
    Ok(json!({
        "app_id": app.app_id,
        "api_key": key.reveal(),
        "push_webhook_secret": app.push_webhook_secret,
        "plan": app.plan,
    }))
}

fn read_service_account(path: &std::path::Path) -> Result<FcmConfig, AdminError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| AdminError::Invalid(format!("--fcm-service-account {}: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| {
        AdminError::Invalid(format!(
            "--fcm-service-account {}: not a service-account key (project_id, client_email, private_key, token_uri): {e}",
            path.display()
        ))
    })
}

//! SES on this machine: the email sender's `SendEmail` reaches the emulator (moto's SES v2,
//! unless `AWS_ENDPOINT_URL_SESV2` names another stand-in), and `POST /dev/ses-events` hands
//! SES-shaped events to the handler the EventBridge rule on `source: aws.ses` invokes on AWS.
//!
//! SES refuses to send from an identity the account has not verified; on AWS the operator
//! verifies it once (console or `aws sesv2 create-email-identity`). Against the emulator this
//! module does that on the first send from each app's `--ses-from`, so a local app works as soon
//! as it has one. Nothing else differs from the deployed email sender: the same pipeline, the
//! same provider, the same SES API.

use std::collections::HashSet;
use std::sync::Mutex;

use aws_config::SdkConfig;
use http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use retarget_email_events::{EmailEvents, SesOutcome, handle_event};
use retarget_email_sender::EmailProvider;
use retarget_shared::Store;
use retarget_shared::adapters::store::StoreError;
use retarget_shared::bootstrap::{Error, Infra, ProviderFromEnv};
use retarget_shared::config::EnvReader;
use retarget_shared::domain::Channel;
use retarget_shared::domain::{App, AppId, Message, SesConfig, Subscription};
use retarget_shared::edge::problem::{ApiError, json_response};
use retarget_shared::edge::request::json_content_type;
use retarget_shared::services::provider::{Accepted, Provider, SendError};
use retarget_shared::services::sender::Pacer;
use serde::Deserialize;
use serde_json::{Value, json};

/// The local-only route feeding SES events to [`retarget_email_events`].
pub const DEV_SES_EVENTS: &str = "/dev/ses-events";

/// Most events one `POST /dev/ses-events` takes (EventBridge delivers one per invocation).
const MAX_EVENTS: usize = 100;

/// The email provider as deployed, plus, against the emulator, the identity verification an
/// operator does once on AWS.
pub struct LocalEmail {
    provider: EmailProvider,
    /// The emulator's SES, when sends go there (`None`: `AWS_ENDPOINT_URL_SESV2` names a
    /// stand-in of the caller's, which verifies nothing).
    emulator: Option<aws_sdk_sesv2::Client>,
    verified: Mutex<HashSet<String>>,
}

impl LocalEmail {
    /// The deployed email provider, its SES the emulator's (`AWS_ENDPOINT_URL_SQS`: the
    /// SQS/EventBridge emulator serves SES v2 too) unless `AWS_ENDPOINT_URL_SESV2` is given.
    pub fn new(provider: EmailProvider, sdk: &SdkConfig, env: &mut EnvReader) -> Self {
        let own = env.optional("AWS_ENDPOINT_URL_SESV2", "");
        let emulator_url = env.optional("AWS_ENDPOINT_URL_SQS", "");
        let (provider, emulator) = match (own.is_empty(), emulator_url.is_empty()) {
            (true, false) => {
                let config = aws_sdk_sesv2::config::Builder::from(sdk).endpoint_url(&emulator_url).build();
                (provider.with_endpoint(sdk, &emulator_url), Some(aws_sdk_sesv2::Client::from_conf(config)))
            }
            _ => (provider, None),
        };
        LocalEmail { provider, emulator, verified: Mutex::new(HashSet::new()) }
    }

    /// Verifies the app's from address (and creates its configuration set) in the emulator,
    /// once per process.
    async fn verify(&self, ses: &SesConfig) -> Result<(), SendError> {
        let Some(emulator) = &self.emulator else { return Ok(()) };
        let address = ses.address();
        let key = format!("{address} {}", ses.configuration_set.as_deref().unwrap_or_default());
        if self.verified.lock().map(|v| v.contains(&key)).unwrap_or(false) {
            return Ok(());
        }
        match emulator.create_email_identity().email_identity(&address).send().await {
            Ok(_) => {}
            // Already verified (another process, or an earlier run of this one).
            Err(e) if e.as_service_error().is_some_and(|e| e.is_already_exists_exception()) => {}
            Err(e) => {
                return Err(SendError::Transient {
                    detail: format!("the emulator's SES identity could not be created: {e}"),
                    retry_after: None,
                });
            }
        }
        // The configuration set the app names, as the stack's template declares one.
        if let Some(set) = &ses.configuration_set {
            match emulator.create_configuration_set().configuration_set_name(set).send().await {
                Ok(_) => {}
                Err(e) if e.as_service_error().is_some_and(|e| e.is_already_exists_exception()) => {}
                Err(e) => {
                    return Err(SendError::Transient {
                        detail: format!("the emulator's SES configuration set could not be created: {e}"),
                        retry_after: None,
                    });
                }
            }
        }
        if let Ok(mut verified) = self.verified.lock() {
            verified.insert(key);
        }
        Ok(())
    }
}

impl ProviderFromEnv for LocalEmail {
    const CHANNEL: Channel = Channel::Email;

    fn from_env(env: &mut EnvReader, infra: &Infra) -> Result<Self, Error> {
        let provider = EmailProvider::from_env(env, infra)?;
        Ok(Self::new(provider, &infra.sdk, env))
    }

    fn pace(env: &mut EnvReader) -> Option<Pacer> {
        EmailProvider::pace(env)
    }
}

impl Provider for LocalEmail {
    type Secret = ();
    type Credentials = Option<SesConfig>;

    fn load_secret(
        store: &Store,
        app_id: AppId,
    ) -> impl std::future::Future<Output = Result<(), StoreError>> + Send {
        EmailProvider::load_secret(store, app_id)
    }

    fn credentials(app: &App, secret: &()) -> Option<SesConfig> {
        EmailProvider::credentials(app, secret)
    }

    async fn send(
        &self,
        app: &App,
        ses: &Option<SesConfig>,
        subscription: &Subscription,
        message: &Message,
    ) -> Result<Accepted, SendError> {
        if let Some(ses) = ses {
            self.verify(ses).await?;
        }
        self.provider.send(app, ses, subscription, message).await
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SesEvents {
    events: Vec<SesEvent>,
}

/// One event as the rule delivers it; the envelope's other fields (`source`, `time`, …) are
/// accepted and not needed.
#[derive(Deserialize)]
struct SesEvent {
    #[serde(rename = "detail-type")]
    detail_type: String,
    detail: Value,
}

/// `POST /dev/ses-events {"events":[{"detail-type","detail"}]}` → 200 `{"results":[…]}`, one
/// outcome per event, in order.
pub async fn dev_ses_events(events: &EmailEvents, request: &Request) -> Result<Response<Body>, ApiError> {
    if request.method() != Method::POST {
        return Err(ApiError::invalid_request(
            "POST /dev/ses-events {\"events\":[{\"detail-type\",\"detail\"}]}",
        ));
    }
    json_content_type(request)?;
    let body: SesEvents = serde_json::from_slice(request.body().as_ref())
        .map_err(|e| ApiError::invalid_request(format!("body: {e}")))?;
    if body.events.len() > MAX_EVENTS {
        return Err(ApiError::invalid_request(format!("events: at most {MAX_EVENTS}")));
    }
    let mut results: Vec<SesOutcome> = Vec::with_capacity(body.events.len());
    for event in &body.events {
        results.push(handle_event(&events.store, &event.detail_type, &event.detail).await?);
    }
    Ok(json_response(StatusCode::OK, &json!({ "results": results })))
}

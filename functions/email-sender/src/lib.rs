//! The email sender: an SQS consumer (the shared pipeline in `retarget_shared::services::sender`)
//! whose provider is Amazon SES v2 `SendEmail`.
//!
//! Each email is sent from the app's `--ses-from` through its configuration set, tagged
//! `app_id`, `message_id`, `subscription_id` — the tags SES puts back on every event it
//! publishes to EventBridge, which is how the webhooks function finds the recipient — and
//! carries a one-click `List-Unsubscribe` (RFC 8058) to `{PUBLIC_BASE_URL}/u/{token}`, the token
//! signed with the deployment's keyring for that purpose only.
//!
//! What SES answers, and what the pipeline does with it:
//!
//! | SES error | class | effect |
//! |---|---|---|
//! | `TooManyRequestsException` (sending rate), `LimitExceededException` (daily quota), `ThrottlingException`, any 5xx, timeouts, network | transient | the recipient is retried later (backoff), then the DLQ |
//! | `MessageRejected` (content refused, or in the sandbox an unverified recipient), `BadRequestException` (e.g. an address SES will not take) | permanent, this recipient | `failed` recorded, subscription kept (a bounce, not a refusal, is what unsubscribes) |
//! | `AccountSuspendedException`, `SendingPausedException`, `MailFromDomainNotVerifiedException`, `NotFoundException` (the configuration set or identity is gone), `AccessDeniedException` | permanent, the whole account | the job stops; its recipients not sent go whole to the DLQ, nothing recorded: a redrive sends them once the operator fixes the account |
//!
//! The SDK's own retries are off: one retry policy (the pipeline's) decides when SES is called
//! again. Addresses never reach the logs in clear (SES's messages may quote them).

use std::future::Future;
use std::time::Duration;

use aws_sdk_sesv2::config::retry::RetryConfig;
use aws_sdk_sesv2::config::timeout::TimeoutConfig;
use aws_sdk_sesv2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sesv2::operation::send_email::SendEmailError;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, MessageHeader, MessageTag};
use retarget_shared::Store;
use retarget_shared::adapters::store::StoreError;
use retarget_shared::bootstrap::{Error, Infra, ProviderFromEnv};
use retarget_shared::config::EnvReader;
use retarget_shared::domain::email_tags;
use retarget_shared::domain::{
    App, AppId, Channel, EmailAddress, Message, SesConfig, Subscription, TokenPurpose, Tracked,
};
use retarget_shared::services::provider::{Accepted, Provider, SendError};
use retarget_shared::services::sender::Pacer;
use retarget_shared::services::tracking::TrackingKeys;

/// One SES call, connect to response.
pub const SES_TIMEOUT: Duration = Duration::from_secs(10);

/// A new SES account's sending rate (emails per second), shared by every sender instance.
pub const DEFAULT_SEND_RATE: f64 = 14.0;
/// The email sender's event source `MaximumConcurrency` (2, the least Lambda allows), by which
/// the account's rate is divided between the instances.
pub const DEFAULT_MAX_CONCURRENCY: u32 = 2;

/// The header value RFC 8058 asks for beside the `https` URI of `List-Unsubscribe`.
pub const ONE_CLICK: &str = "List-Unsubscribe=One-Click";

/// Sends email through SES. Built once per cold start; the SES client (and its connection pool)
/// is shared by every send.
#[derive(Debug, Clone)]
pub struct EmailProvider {
    ses: aws_sdk_sesv2::Client,
    public_base_url: String,
    tracking: TrackingKeys,
}

impl EmailProvider {
    /// `sdk`: the process's SDK configuration (the endpoint through `AWS_ENDPOINT_URL_SESV2`);
    /// `public_base_url`: `PUBLIC_BASE_URL`, the prefix of the unsubscribe links.
    pub fn new(sdk: &aws_config::SdkConfig, public_base_url: &str, tracking: TrackingKeys) -> Self {
        Self {
            ses: ses_client(sdk, None),
            public_base_url: public_base_url.trim_end_matches('/').to_owned(),
            tracking,
        }
    }

    /// The same provider reaching SES at `endpoint` (the local stack's emulator).
    pub fn with_endpoint(mut self, sdk: &aws_config::SdkConfig, endpoint: &str) -> Self {
        self.ses = ses_client(sdk, Some(endpoint));
        self
    }

    /// `PUBLIC_BASE_URL`, without a trailing slash.
    pub fn public_base_url(&self) -> &str {
        &self.public_base_url
    }

    /// The recipient's one-click unsubscribe link.
    async fn unsubscribe_url(&self, tracked: &Tracked) -> Result<String, SendError> {
        let token = self.tracking.mint_for(TokenPurpose::Unsubscribe, tracked).await.map_err(|e| {
            SendError::Transient {
                detail: format!("the tracking keyring could not be read: {e}"),
                retry_after: None,
            }
        })?;
        Ok(unsubscribe_url(&self.public_base_url, &token))
    }
}

/// SES v2 without the SDK's own retries (the pipeline's policy decides), each call bounded by
/// [`SES_TIMEOUT`].
fn ses_client(sdk: &aws_config::SdkConfig, endpoint: Option<&str>) -> aws_sdk_sesv2::Client {
    let mut config = aws_sdk_sesv2::config::Builder::from(sdk)
        .retry_config(RetryConfig::disabled())
        .timeout_config(TimeoutConfig::builder().operation_timeout(SES_TIMEOUT).build());
    if let Some(endpoint) = endpoint {
        config = config.endpoint_url(endpoint);
    }
    aws_sdk_sesv2::Client::from_conf(config.build())
}

/// `{PUBLIC_BASE_URL}/u/{token}`: what `List-Unsubscribe` points at (GET shows a confirmation
/// page, POST — the one click of RFC 8058 — unsubscribes).
pub fn unsubscribe_url(public_base_url: &str, token: &str) -> String {
    format!("{}/u/{token}", public_base_url.trim_end_matches('/'))
}

/// Per-process rate: the account's rate shared by the sender's concurrent instances.
pub fn per_process_rate(account_rate: f64, max_concurrency: u32) -> f64 {
    account_rate / f64::from(max_concurrency.max(1))
}

impl ProviderFromEnv for EmailProvider {
    const CHANNEL: Channel = Channel::Email;

    /// `PUBLIC_BASE_URL` (the unsubscribe links); SES through the SDK's configuration
    /// (`AWS_ENDPOINT_URL_SESV2` locally); the tracking keyring is the table's (`TABLE_NAME`).
    fn from_env(env: &mut EnvReader, infra: &Infra) -> Result<Self, Error> {
        let public_base_url = env.url("PUBLIC_BASE_URL", None);
        let tracking = TrackingKeys::new(infra.store(env));
        Ok(EmailProvider::new(&infra.sdk, &public_base_url, tracking))
    }

    /// `EMAIL_SEND_RATE` (the account's SES sending rate, default 14/s) divided by
    /// `EMAIL_SENDER_MAX_CONCURRENCY` (the event source's maximum concurrency, default 2).
    fn pace(env: &mut EnvReader) -> Option<Pacer> {
        let rate = env.number("EMAIL_SEND_RATE", DEFAULT_SEND_RATE);
        let concurrency = env.number("EMAIL_SENDER_MAX_CONCURRENCY", DEFAULT_MAX_CONCURRENCY);
        Pacer::per_second(per_process_rate(rate, concurrency))
    }
}

impl Provider for EmailProvider {
    /// SES is reached with the function's own IAM role: no app secret.
    type Secret = ();
    type Credentials = Option<SesConfig>;

    fn load_secret(_store: &Store, _app_id: AppId) -> impl Future<Output = Result<(), StoreError>> + Send {
        std::future::ready(Ok(()))
    }

    fn credentials(app: &App, _secret: &()) -> Option<SesConfig> {
        app.ses.clone()
    }

    async fn send(
        &self,
        app: &App,
        ses: &Option<SesConfig>,
        sub: &Subscription,
        message: &Message,
    ) -> Result<Accepted, SendError> {
        let ses = ses.as_ref().ok_or_else(|| SendError::NotConfigured("the app has no --ses-from".into()))?;
        let to = sub.email.as_ref().ok_or_else(|| SendError::Permanent {
            code: "no_email".into(),
            detail: "the subscription has no email address".into(),
            dead_address: false,
        })?;
        let tracked = Tracked {
            app_id: app.app_id,
            message_id: message.message_id,
            subscription_id: sub.subscription_id,
        };
        let unsubscribe = self.unsubscribe_url(&tracked).await?;
        let content = email_content(message, &unsubscribe).map_err(|e| SendError::Permanent {
            code: "bad_request".into(),
            detail: e,
            dead_address: false,
        })?;
        let tags = [
            (email_tags::APP_ID, app.app_id.to_string()),
            (email_tags::MESSAGE_ID, message.message_id.to_string()),
            (email_tags::SUBSCRIPTION_ID, sub.subscription_id.to_string()),
        ];
        let mut request = self
            .ses
            .send_email()
            .from_email_address(&ses.from)
            .destination(Destination::builder().to_addresses(to.as_str()).build())
            .content(content)
            .set_configuration_set_name(ses.configuration_set.clone());
        for (name, value) in tags {
            let tag =
                MessageTag::builder().name(name).value(value).build().map_err(|e| SendError::Permanent {
                    code: "bad_request".into(),
                    detail: e.to_string(),
                    dead_address: false,
                })?;
            request = request.email_tags(tag);
        }
        let outcome = match request.send().await {
            Ok(output) => Ok(Accepted { provider_id: output.message_id }),
            Err(e) => Err(classify(&e).map_detail(|detail| redact(&detail, to))),
        };
        match &outcome {
            Ok(accepted) => tracing::debug!(
                app_id = %app.app_id,
                message_id = %message.message_id,
                subscription_id = %sub.subscription_id,
                to = %to.redacted(),
                ses_message_id = accepted.provider_id.as_deref().unwrap_or(""),
                "ses accepted the email"
            ),
            Err(error) => tracing::info!(
                app_id = %app.app_id,
                message_id = %message.message_id,
                subscription_id = %sub.subscription_id,
                to = %to.redacted(),
                %error,
                "ses did not accept the email"
            ),
        }
        outcome
    }
}

/// The email of a message: subject (`title`), text part (`body`), HTML part (`html`) and the
/// one-click unsubscribe headers.
pub fn email_content(message: &Message, unsubscribe_url: &str) -> Result<EmailContent, String> {
    let contents = &message.contents;
    let text = |data: &str| Content::builder().data(data).charset("UTF-8").build().map_err(|e| e.to_string());
    let mut body = Body::builder().text(text(&contents.body)?);
    if let Some(html) = &contents.html {
        body = body.html(text(html)?);
    }
    let header = |name: &str, value: String| {
        MessageHeader::builder().name(name).value(value).build().map_err(|e| e.to_string())
    };
    let simple = aws_sdk_sesv2::types::Message::builder()
        .subject(text(contents.title.as_deref().unwrap_or_default())?)
        .body(body.build())
        .headers(header("List-Unsubscribe", format!("<{unsubscribe_url}>"))?)
        .headers(header("List-Unsubscribe-Post", ONE_CLICK.to_owned())?)
        .build();
    Ok(EmailContent::builder().simple(simple).build())
}

/// SES error codes after which nothing of the account can be sent until its operator acts.
const ACCOUNT_CODES: [&str; 6] = [
    "AccountSuspendedException",
    "SendingPausedException",
    "MailFromDomainNotVerifiedException",
    "NotFoundException",
    "AccessDeniedException",
    "AccessDenied",
];

/// SES error codes that mean "not now": its rate, its daily quota, its own throttling.
const THROTTLING_CODES: [&str; 4] =
    ["TooManyRequestsException", "LimitExceededException", "ThrottlingException", "Throttling"];

/// What a failed `SendEmail` means for the pipeline (see the module's table).
pub fn classify<R>(error: &SdkError<SendEmailError, R>) -> SendError
where
    R: HasStatus,
{
    let transient = |detail: String| SendError::Transient { detail, retry_after: None };
    let service = match error {
        SdkError::ServiceError(service) => service,
        SdkError::TimeoutError(_) => return transient("SES did not answer in time".into()),
        SdkError::DispatchFailure(_) => return transient("SES could not be reached".into()),
        SdkError::ResponseError(_) => return transient("SES's response could not be read".into()),
        // The request could not be built (e.g. no credentials yet): nothing reached SES.
        _ => return transient(format!("the SES request could not be made: {error}")),
    };
    let status = service.raw().status();
    let err = service.err();
    let code = err.code().unwrap_or_default().to_owned();
    let detail = format!("{code}: {}", err.message().unwrap_or_default());
    if THROTTLING_CODES.contains(&code.as_str()) || status >= 500 {
        return transient(detail);
    }
    if ACCOUNT_CODES.contains(&code.as_str()) {
        return SendError::Halt { code, detail };
    }
    match err {
        SendEmailError::MessageRejected(_) | SendEmailError::BadRequestException(_) => {
            SendError::Permanent { code, detail, dead_address: false }
        }
        // Any other refusal (an error code this version does not know): retried, then the DLQ —
        // never a recipient marked failed for a reason nobody looked at.
        _ => transient(detail),
    }
}

/// The HTTP status of a raw response (the SDK's, or a test's).
pub trait HasStatus {
    fn status(&self) -> u16;
}

impl HasStatus for aws_sdk_sesv2::config::http::HttpResponse {
    fn status(&self) -> u16 {
        self.status().as_u16()
    }
}

/// `detail` with the recipient's address masked, however SES spelled its case.
fn redact(detail: &str, to: &EmailAddress) -> String {
    let address = to.as_str().to_ascii_lowercase();
    let lower = detail.to_ascii_lowercase();
    let mut out = String::with_capacity(detail.len());
    let mut rest = 0;
    for (at, _) in lower.match_indices(&address) {
        out.push_str(&detail[rest..at]);
        out.push_str(&to.redacted());
        rest = at + address.len();
    }
    out.push_str(&detail[rest..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_account_rate_is_shared_by_the_instances() {
        assert_eq!(per_process_rate(14.0, 2), 7.0);
        assert_eq!(per_process_rate(14.0, 0), 14.0);
        assert_eq!(per_process_rate(200.0, 4), 50.0);
    }

    #[test]
    fn addresses_are_masked_in_any_case() {
        let to = EmailAddress::parse("Ada.Lovelace@Example.com").unwrap();
        let detail = "Email address is not verified: ada.lovelace@example.com, ADA.LOVELACE@EXAMPLE.COM.";
        let masked = redact(detail, &to);
        assert!(!masked.to_ascii_lowercase().contains("lovelace"), "{masked}");
        assert!(masked.starts_with("Email address is not verified: "), "{masked}");
    }
}

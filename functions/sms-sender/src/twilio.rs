//! Twilio's Messages API as a [`Provider`]: one `POST …/Accounts/{AccountSid}/Messages.json`
//! per (app, subscription, message), its failures classified for the senders' pipeline.
//!
//! Nothing here logs the auth token or a full phone number: numbers appear masked
//! (`PhoneNumber`'s `Display`), and Twilio's error messages, which may quote the `To` number,
//! are redacted before they leave this module.

use std::future::Future;
use std::time::Duration;

use reqwest::StatusCode;
use retarget_shared::Store;
use retarget_shared::adapters::store::StoreError;
use retarget_shared::domain::{
    App, AppId, Contents, Link, LinkCode, Message, MessageId, PhoneNumber, SmsSecret, Subscription,
    SubscriptionId, TwilioConfig,
};
use retarget_shared::provider_http::{self, retry_after, transport_error};
use retarget_shared::services::provider::{Accepted, Provider, SendError};
use serde::Deserialize;

/// Twilio error codes after which the number will never take an SMS again: the subscription
/// is unsubscribed. 21211: invalid `To`; 21614: not a mobile number; 21610: the recipient
/// replied STOP.
const DEAD_ADDRESS_CODES: [u64; 3] = [21211, 21614, 21610];

/// Twilio's "authenticate" error (bad account SID or auth token).
const BAD_CREDENTIALS_CODE: u64 = 20003;

/// How transport failures name the provider.
const TWILIO: &str = "Twilio";

/// Sends SMS through Twilio. Built once per cold start; the HTTP client (and its connection
/// pool) is shared by every send.
#[derive(Debug, Clone)]
pub struct TwilioProvider {
    client: reqwest::Client,
    api_base: String,
    public_base_url: String,
    /// Where the tracked links of the bodies are stored (`links`); `None`: bodies are sent as
    /// they are (tests of the HTTP exchange alone).
    links: Option<Store>,
}

impl TwilioProvider {
    /// `api_base`: `TWILIO_API_BASE` (`https://api.twilio.com`); `public_base_url`:
    /// `PUBLIC_BASE_URL`, the prefix of the status-callback URL; `timeout`: the whole request
    /// (connect, send, response), after which the send is a transient failure.
    // Building the client fails only when the TLS backend cannot initialise: not on any input.
    #[allow(clippy::expect_used)]
    pub fn new(api_base: String, public_base_url: String, timeout: Duration) -> Self {
        // Never follows a redirect: a redirected POST would be replayed as a GET (or not at all).
        let user_agent = concat!("retarget-sms-sender/", env!("CARGO_PKG_VERSION"));
        let client = provider_http::client_builder(user_agent, timeout, timeout)
            .build()
            .expect("the HTTP client's TLS backend initialises");
        Self {
            client,
            api_base: api_base.trim_end_matches('/').to_owned(),
            public_base_url: public_base_url.trim_end_matches('/').to_owned(),
            links: None,
        }
    }

    /// Tracks the bodies' links: each http(s) URL is sent as `{PUBLIC_BASE_URL}/r/{code}`, the
    /// code stored in `store` before the send.
    pub fn with_links(mut self, store: Store) -> Self {
        self.links = Some(store);
        self
    }

    /// The body a recipient is sent: [`sms_body`], its URLs replaced by tracked links (stored
    /// first; a failure to store them is transient, nothing is sent).
    async fn body_for(&self, app: &App, sub: &Subscription, message: &Message) -> Result<String, SendError> {
        let body = sms_body(&message.contents);
        let Some(store) = &self.links else { return Ok(body) };
        let rewritten = crate::links::rewrite(&body, &self.public_base_url, LinkCode::generate);
        if rewritten.links.is_empty() {
            return Ok(body);
        }
        let expires_at = chrono::DateTime::from_timestamp(message.scope().expires_at, 0).unwrap_or_default();
        let links: Vec<Link> = rewritten
            .links
            .into_iter()
            .map(|(code, url)| Link {
                code,
                app_id: app.app_id,
                message_id: message.message_id,
                subscription_id: sub.subscription_id,
                url,
                expires_at,
            })
            .collect();
        store.put_links(&links).await.map_err(|e| SendError::Transient {
            detail: format!("the tracked links could not be stored: {e}"),
            retry_after: None,
        })?;
        Ok(rewritten.body)
    }

    /// `TWILIO_API_BASE`, without a trailing slash.
    pub fn api_base(&self) -> &str {
        &self.api_base
    }

    /// `PUBLIC_BASE_URL`, without a trailing slash.
    pub fn public_base_url(&self) -> &str {
        &self.public_base_url
    }

    /// The Messages resource of an account.
    fn messages_url(&self, account_sid: &str) -> String {
        format!("{}/2010-04-01/Accounts/{account_sid}/Messages.json", self.api_base)
    }
}

/// Who the SMS comes from: a Messaging Service (preferred when both are configured, as it
/// picks the number itself) or one number.
enum Sender<'a> {
    MessagingService(&'a str),
    From(&'a str),
}

impl Provider for TwilioProvider {
    type Secret = SmsSecret;
    /// The app's Twilio account joined with its auth token.
    type Credentials = Option<TwilioConfig>;

    fn load_secret(
        store: &Store,
        app_id: AppId,
    ) -> impl Future<Output = Result<SmsSecret, StoreError>> + Send {
        store.get_secret::<SmsSecret>(app_id)
    }

    fn credentials(app: &App, secret: &SmsSecret) -> Option<TwilioConfig> {
        secret.twilio(app)
    }

    async fn send(
        &self,
        app: &App,
        twilio: &Option<TwilioConfig>,
        sub: &Subscription,
        message: &Message,
    ) -> Result<Accepted, SendError> {
        let twilio = twilio
            .as_ref()
            .ok_or_else(|| SendError::NotConfigured("the app has no Twilio configuration".into()))?;
        let sender = Sender::of(twilio)?;
        let to = sub.phone_number.as_ref().ok_or_else(|| SendError::Permanent {
            code: "no_phone_number".into(),
            detail: "the sub has no phone number".into(),
            dead_address: false,
        })?;

        let body = self.body_for(app, sub, message).await?;
        let callback =
            status_callback_url(&self.public_base_url, app.app_id, message.message_id, sub.subscription_id);
        let (sender_field, sender_value) = sender.field();
        let form = [
            ("To", to.as_e164()),
            (sender_field, sender_value),
            ("Body", body.as_str()),
            ("StatusCallback", callback.as_str()),
        ];

        let response = self
            .client
            .post(self.messages_url(&twilio.account.account_sid))
            .basic_auth(&twilio.account.account_sid, Some(&twilio.auth_token))
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| transport_error(TWILIO, e))?;

        let status = response.status();
        let retry_after = retry_after(response.headers());
        // A 2xx whose body cannot be read was still accepted: resending would send twice.
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(e) if status.is_success() => {
                tracing::warn!(error = %e.without_url(), "twilio accepted the message but its response was unreadable");
                Default::default()
            }
            Err(e) => return Err(transport_error(TWILIO, e)),
        };
        let outcome = classify(status, retry_after, &bytes);
        let outcome = outcome.map_err(|e| redact(e, to, &twilio.auth_token));
        match &outcome {
            Ok(accepted) => tracing::debug!(
                app_id = %app.app_id,
                message_id = %message.message_id,
                subscription_id = %sub.subscription_id,
                to = %to,
                sid = accepted.provider_id.as_deref().unwrap_or(""),
                "twilio accepted the message"
            ),
            Err(error) => tracing::info!(
                app_id = %app.app_id,
                message_id = %message.message_id,
                subscription_id = %sub.subscription_id,
                to = %to,
                http_status = status.as_u16(),
                %error,
                "twilio did not accept the message"
            ),
        }
        outcome
    }
}

impl<'a> Sender<'a> {
    fn of(config: &'a TwilioConfig) -> Result<Self, SendError> {
        let sid = &config.account.account_sid;
        let sid_ok = !sid.is_empty() && sid.bytes().all(|b| b.is_ascii_alphanumeric());
        if !sid_ok || config.auth_token.is_empty() {
            return Err(SendError::NotConfigured(
                "the app's Twilio account SID or auth token is unusable".into(),
            ));
        }
        let non_empty = |v: &'a Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty());
        match (non_empty(&config.account.messaging_service_sid), non_empty(&config.account.from)) {
            (Some(service), _) => Ok(Sender::MessagingService(service)),
            (None, Some(from)) => Ok(Sender::From(from)),
            (None, None) => Err(SendError::NotConfigured(
                "the app's Twilio configuration has neither a From number nor a Messaging Service SID".into(),
            )),
        }
    }

    fn field(&self) -> (&'static str, &'a str) {
        match self {
            Sender::MessagingService(sid) => ("MessagingServiceSid", sid),
            Sender::From(number) => ("From", number),
        }
    }
}

/// The SMS text: the body, then a space and the URL when there is one. An SMS has no title.
pub fn sms_body(contents: &Contents) -> String {
    match &contents.url {
        Some(url) => format!("{} {url}", contents.body),
        None => contents.body.clone(),
    }
}

/// The `StatusCallback` given to Twilio: the Twilio webhook with the message and subscription.
/// Exactly `PUBLIC_BASE_URL + path + "?" + query` as the webhook rebuilds it to check
/// Twilio's signature (ids are ULIDs: nothing to percent-encode).
pub fn status_callback_url(
    public_base_url: &str,
    app_id: AppId,
    message_id: MessageId,
    subscription_id: SubscriptionId,
) -> String {
    format!(
        "{}/v1/webhooks/twilio/{app_id}?message_id={message_id}&subscription_id={subscription_id}",
        public_base_url.trim_end_matches('/')
    )
}

/// Twilio's JSON: `{"sid"}` on success, `{"code","message","more_info","status"}` on error.
#[derive(Debug, Default, Deserialize)]
struct TwilioResponse {
    #[serde(default)]
    sid: Option<String>,
    #[serde(default)]
    code: Option<u64>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    more_info: Option<String>,
}

/// Turns Twilio's answer into the pipeline's outcome.
fn classify(status: StatusCode, retry_after: Option<Duration>, body: &[u8]) -> Result<Accepted, SendError> {
    let parsed: TwilioResponse = serde_json::from_slice(body).unwrap_or_default();
    if status.is_success() {
        return Ok(Accepted { provider_id: parsed.sid.filter(|sid| !sid.is_empty()) });
    }
    let detail = error_detail(status, &parsed);
    if status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
        || !status.is_client_error()
    {
        return Err(SendError::Transient { detail, retry_after });
    }
    if status == StatusCode::UNAUTHORIZED
        || status == StatusCode::FORBIDDEN
        || parsed.code == Some(BAD_CREDENTIALS_CODE)
    {
        return Err(SendError::NotConfigured(format!("Twilio rejected the app's credentials: {detail}")));
    }
    let (code, dead_address) = match parsed.code {
        Some(code) => (code.to_string(), DEAD_ADDRESS_CODES.contains(&code)),
        None => (format!("http_{}", status.as_u16()), false),
    };
    Err(SendError::Permanent { code, detail, dead_address })
}

fn error_detail(status: StatusCode, parsed: &TwilioResponse) -> String {
    let mut detail = format!("HTTP {}", status.as_u16());
    if let Some(code) = parsed.code {
        detail.push_str(&format!(", Twilio error {code}"));
    }
    if let Some(message) = parsed.message.as_deref().filter(|m| !m.is_empty()) {
        detail.push_str(": ");
        detail.push_str(message);
    }
    if let Some(more_info) = parsed.more_info.as_deref().filter(|m| !m.is_empty()) {
        detail.push_str(&format!(" ({more_info})"));
    }
    detail
}

/// Twilio's messages may quote the `To` number (21211: "The 'To' number +1… is not valid"):
/// the detail is logged and stored, so the number is masked. The auth token never appears in
/// an answer, but it is scrubbed all the same.
fn redact(error: SendError, to: &PhoneNumber, auth_token: &str) -> SendError {
    error.map_detail(|text| {
        let e164 = to.as_e164();
        let mut text = text.replace(e164, &to.masked());
        if let Some(digits) = e164.strip_prefix('+') {
            text = text.replace(digits, &to.masked());
        }
        if !auth_token.is_empty() {
            text = text.replace(auth_token, "***");
        }
        mask_digit_runs(&text)
    })
}

/// Masks every other run of 7 or more digits (with its leading `+`): Twilio's messages may
/// quote the From number or numbers other than the recipient's.
fn mask_digit_runs(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let digits_start = if chars[i] == '+' { i + 1 } else { i };
        let mut end = digits_start;
        while end < chars.len() && chars[end].is_ascii_digit() {
            end += 1;
        }
        if end - digits_start >= 7 {
            let run: String = chars[i..end].iter().collect();
            let keep = 4.min(run.len().saturating_sub(7));
            out.push_str(&run[..keep]);
            out.push_str("***");
            out.push_str(&run[run.len() - keep..]);
            i = end;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use retarget_shared::domain::TwilioAccount;

    fn contents(url: Option<&str>) -> Contents {
        Contents {
            title: Some("Ignored".into()),
            body: "Sale ends tonight".into(),
            url: url.map(Into::into),
            html: None,
        }
    }

    #[test]
    fn body_appends_the_url_and_drops_the_title() {
        assert_eq!(sms_body(&contents(None)), "Sale ends tonight");
        assert_eq!(sms_body(&contents(Some("https://x.example/s"))), "Sale ends tonight https://x.example/s");
    }

    #[test]
    fn callback_url_is_the_webhook_route_with_both_ids() {
        let (app, message, subscription) = (AppId::new(), MessageId::new(), SubscriptionId::new());
        assert_eq!(
            status_callback_url("https://hooks.example.com/", app, message, subscription),
            format!(
                "https://hooks.example.com/v1/webhooks/twilio/{app}?message_id={message}&subscription_id={subscription}"
            )
        );
    }

    #[test]
    fn sender_prefers_the_messaging_service() {
        let mut config = TwilioConfig {
            account: TwilioAccount {
                account_sid: "AC123".into(),
                from: Some("+15550001111".into()),
                messaging_service_sid: Some("MG123".into()),
            },
            auth_token: "tok".into(),
        };
        assert_eq!(Sender::of(&config).unwrap().field(), ("MessagingServiceSid", "MG123"));
        config.account.messaging_service_sid = Some(" ".into());
        assert_eq!(Sender::of(&config).unwrap().field(), ("From", "+15550001111"));
        config.account.from = None;
        assert!(matches!(Sender::of(&config), Err(SendError::NotConfigured(_))));
        config.account.from = Some("+15550001111".into());
        config.account.account_sid = "AC1/../x".into();
        assert!(matches!(Sender::of(&config), Err(SendError::NotConfigured(_))));
    }

    #[test]
    fn classification_without_a_body() {
        assert_eq!(classify(StatusCode::CREATED, None, b""), Ok(Accepted { provider_id: None }));
        assert!(matches!(
            classify(StatusCode::NOT_FOUND, None, b"<html>"),
            Err(SendError::Permanent { code, dead_address: false, .. }) if code == "http_404"
        ));
        assert!(matches!(classify(StatusCode::REQUEST_TIMEOUT, None, b""), Err(SendError::Transient { .. })));
        assert!(matches!(classify(StatusCode::FOUND, None, b""), Err(SendError::Transient { .. })));
    }

    #[test]
    fn redaction_masks_the_number_and_the_token() {
        let to = PhoneNumber::parse("+15551234567").unwrap();
        let error = SendError::Permanent {
            code: "21211".into(),
            detail: "The 'To' number +15551234567 (15551234567) is not valid; secret-token".into(),
            dead_address: true,
        };
        let SendError::Permanent { detail, .. } = redact(error, &to, "secret-token") else { unreachable!() };
        assert!(!detail.contains("5551234567") && !detail.contains("secret-token"), "{detail}");
        assert!(detail.contains(&to.masked()), "{detail}");
        let error = SendError::Permanent {
            code: "21606".into(),
            detail: "The From phone number +15550009999 (15550009999), error 21606".into(),
            dead_address: false,
        };
        let SendError::Permanent { detail, .. } = redact(error, &to, "t") else { unreachable!() };
        assert_eq!(detail, "The From phone number +155***9999 (1555***9999), error 21606");
    }
}

//! Local stand-ins for the providers the senders call — Twilio's Messages API, FCM HTTP v1 with
//! Google's OAuth token endpoint, and APNs — on one loopback HTTP/1.1 port. One implementation
//! for both users: `make run`'s demo embeds a [`StandIn`] and reads what it received in
//! process; `make dev` runs the `retarget-standin` binary next to the local stack.
//!
//! They speak just enough of each API for the senders, and refuse what the provider would refuse
//! for the one set of [`credentials`] they know: Twilio's Basic auth, the service account's RS256
//! assertion and the access token it was given, the APNs ES256 provider token (key id, team) and
//! topic — an app wired to anything else fails as it would against the real provider.
//!
//! Every request is recorded as a [`Received`]; `GET /received` answers them all as JSON (oldest
//! first) and `DELETE /received` forgets them, so a reader sees what "the provider" got. With
//! [`Options::status_callbacks`] the Twilio stand-in then posts the message's StatusCallback
//! (`sent`, then `delivered`), signed as Twilio signs; the demo leaves that off and sends its own
//! callbacks (duplicated, out of order, one undelivered) to tell its story.

pub mod credentials;

use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// Google's scope for sending through FCM, which the assertion must ask for.
const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
/// How long after accepting an SMS (and between its two callbacks) Twilio "calls back".
const CALLBACK_DELAY: Duration = Duration::from_millis(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    Twilio,
    /// Google's OAuth token endpoint (the service account's `token_uri`).
    FcmToken,
    Fcm,
    Apns,
    /// A path none of the stand-ins serves (answered 404).
    Unknown,
}

/// One request a stand-in got, and what it answered.
#[derive(Debug, Clone, Serialize)]
pub struct Received {
    /// When it arrived (wall clock, not the stack's test clock).
    pub at: String,
    pub provider: Provider,
    /// `sms` or `push` for the sends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<&'static str>,
    pub path: String,
    /// The status the stand-in answered.
    pub answered: u16,
    /// Why it was refused, if it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// The phone number (Twilio `To`) or device token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    /// Push only: the recipient's tracking token (FCM `data.rt`, APNs `rt`), what the device
    /// reports with to `POST /v1/track`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracking_token: Option<String>,
    /// Twilio only: the StatusCallback URL the sender gave, and the callbacks made to it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_callback: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub callbacks: Vec<Callback>,
}

/// A status callback the Twilio stand-in made, and what the webhook answered.
#[derive(Debug, Clone, Serialize)]
pub struct Callback {
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answered: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// After accepting an SMS, post its StatusCallback `sent` then `delivered`.
    pub status_callbacks: bool,
    /// Post the callbacks to this origin (e.g. `http://127.0.0.1:3000`, the local API) instead of
    /// the StatusCallback URL's own; the URL signed stays the one the sender gave, as the webhook
    /// checks it against `PUBLIC_BASE_URL` (which may name a tunnel to this stack).
    pub callback_origin: Option<String>,
    /// Print one line per request (and callback) on standard error.
    pub echo: bool,
}

#[derive(Clone)]
pub struct StandIn {
    inner: Arc<Inner>,
}

struct Inner {
    options: Options,
    received: Mutex<Vec<Received>>,
    http: reqwest::Client,
    fcm_key: DecodingKey,
    fcm_project: String,
    fcm_client_email: String,
    apns_key: DecodingKey,
}

#[derive(Deserialize)]
struct AssertionClaims {
    scope: String,
}

/// A response in the making: status, JSON body, and why it was refused (recorded, not sent).
struct Reply {
    status: StatusCode,
    body: Value,
    refused: Option<String>,
    headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn ok(status: StatusCode, body: Value) -> Self {
        Self { status, body, refused: None, headers: Vec::new() }
    }

    fn refuse(status: StatusCode, body: Value, why: impl Into<String>) -> Self {
        Self { status, body, refused: Some(why.into()), headers: Vec::new() }
    }
}

/// A status callback to make once the SMS is recorded.
struct CallbackJob {
    url: String,
    params: Vec<(String, String)>,
}

impl StandIn {
    pub fn new(options: Options) -> anyhow::Result<Self> {
        let (fcm_project, fcm_client_email) = credentials::fcm_project_and_email()?;
        Ok(Self {
            inner: Arc::new(Inner {
                options,
                received: Mutex::new(Vec::new()),
                http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?,
                fcm_key: DecodingKey::from_rsa_pem(credentials::FCM_PUBLIC_KEY_PEM.as_bytes())?,
                fcm_project,
                fcm_client_email,
                apns_key: DecodingKey::from_ec_pem(credentials::APNS_PUBLIC_KEY_PEM.as_bytes())?,
            }),
        })
    }

    /// Everything received so far, oldest first.
    pub fn received(&self) -> Vec<Received> {
        self.inner.received.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// What one provider received.
    pub fn of(&self, provider: Provider) -> Vec<Received> {
        self.received().into_iter().filter(|r| r.provider == provider).collect()
    }

    /// Serves the stand-ins on `listener` forever.
    pub async fn serve(self, listener: TcpListener) {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let me = self.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| me.clone().answer(request));
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    }

    async fn answer(
        self,
        request: Request<hyper::body::Incoming>,
    ) -> Result<Response<Full<Bytes>>, Infallible> {
        let (parts, body) = request.into_parts();
        let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let path = parts.uri.path().to_owned();
        if path == "/received" {
            return Ok(self.received_route(&parts.method));
        }
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
        let auth = header(AUTHORIZATION.as_str()).to_owned();
        let mut record = Received {
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            provider: Provider::Unknown,
            channel: None,
            path: path.clone(),
            answered: 0,
            refused: None,
            to: None,
            title: None,
            body: None,
            message_id: None,
            subscription_id: None,
            tracking_token: None,
            status_callback: None,
            callbacks: Vec::new(),
        };
        let mut callback = None;
        let reply = if parts.method != Method::POST {
            Reply::refuse(StatusCode::METHOD_NOT_ALLOWED, json!({"error": "POST only"}), "not a POST")
        } else if path == "/token" {
            record.provider = Provider::FcmToken;
            self.fcm_token(header(HOST.as_str()), &body)
        } else if let Some(project) =
            path.strip_prefix("/v1/projects/").and_then(|rest| rest.strip_suffix("/messages:send"))
        {
            record.provider = Provider::Fcm;
            record.channel = Some("push");
            self.fcm_send(project, &auth, &body, &mut record)
        } else if let Some(token) = path.strip_prefix("/3/device/") {
            record.provider = Provider::Apns;
            record.channel = Some("push");
            record.to = Some(token.to_owned());
            self.apns_send(&auth, header("apns-topic"), &body, &mut record)
        } else if let Some(account) =
            path.strip_prefix("/2010-04-01/Accounts/").and_then(|rest| rest.strip_suffix("/Messages.json"))
        {
            record.provider = Provider::Twilio;
            record.channel = Some("sms");
            let (reply, job) = self.twilio_send(account, &auth, &body, &mut record);
            callback = job;
            reply
        } else {
            Reply::refuse(StatusCode::NOT_FOUND, json!({"error": "no such stand-in route"}), "unknown path")
        };
        record.answered = reply.status.as_u16();
        record.refused = reply.refused.clone();
        self.echo(&record);
        let index = {
            let mut received = self.inner.received.lock().unwrap_or_else(PoisonError::into_inner);
            received.push(record);
            received.len() - 1
        };
        if let Some(job) = callback.filter(|_| self.inner.options.status_callbacks) {
            tokio::spawn(self.clone().call_back(index, job));
        }
        let mut response = json_response(reply.status, &reply.body);
        for (name, value) in reply.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
        Ok(response)
    }

    fn received_route(&self, method: &Method) -> Response<Full<Bytes>> {
        match *method {
            Method::GET => json_response(StatusCode::OK, &json!({ "received": self.received() })),
            Method::DELETE => {
                self.inner.received.lock().unwrap_or_else(PoisonError::into_inner).clear();
                json_response(StatusCode::OK, &json!({ "received": [] }))
            }
            _ => json_response(StatusCode::METHOD_NOT_ALLOWED, &json!({"error": "GET or DELETE"})),
        }
    }

    /// Google's token endpoint: a JWT-bearer grant whose assertion the service account signed,
    /// for itself, addressed to this endpoint (`aud`, as the `Host` the sender used says).
    fn fcm_token(&self, host: &str, body: &[u8]) -> Reply {
        let form = form_pairs(body);
        if field(&form, "grant_type") != Some(JWT_BEARER_GRANT) {
            return Reply::refuse(
                StatusCode::BAD_REQUEST,
                json!({"error": "unsupported_grant_type", "error_description": "Invalid grant_type."}),
                "grant_type is not jwt-bearer",
            );
        }
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&self.inner.fcm_client_email]);
        validation.set_audience(&[format!("http://{host}/token")]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        // The sender's clock may be the stack's test clock, moved on by /dev/clock.
        validation.validate_exp = false;
        let assertion = field(&form, "assertion").unwrap_or_default();
        match jsonwebtoken::decode::<AssertionClaims>(assertion, &self.inner.fcm_key, &validation) {
            Ok(token) if token.claims.scope.split(' ').any(|s| s == FCM_SCOPE) => Reply::ok(
                StatusCode::OK,
                json!({"access_token": credentials::FCM_ACCESS_TOKEN, "expires_in": 3599, "token_type": "Bearer"}),
            ),
            Ok(_) => Reply::refuse(
                StatusCode::BAD_REQUEST,
                json!({"error": "invalid_scope", "error_description": "Invalid OAuth scope."}),
                "the assertion does not ask for the firebase.messaging scope",
            ),
            Err(e) => Reply::refuse(
                StatusCode::BAD_REQUEST,
                json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}),
                format!("assertion: {e}"),
            ),
        }
    }

    /// FCM HTTP v1 `messages:send` with the access token the token endpoint gave.
    fn fcm_send(&self, project: &str, auth: &str, body: &[u8], record: &mut Received) -> Reply {
        let message: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let message = &message["message"];
        let text = |v: &Value| v.as_str().map(str::to_owned);
        record.to = text(&message["token"]);
        record.title = text(&message["notification"]["title"]);
        record.body = text(&message["notification"]["body"]);
        record.message_id = text(&message["data"]["message_id"]);
        record.subscription_id = text(&message["data"]["subscription_id"]);
        record.tracking_token = text(&message["data"]["rt"]);
        let error = |code: u16, status: &str, why: &str| {
            Reply::refuse(
                StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST),
                json!({"error": {"code": code, "message": why, "status": status}}),
                why.to_owned(),
            )
        };
        if auth != format!("Bearer {}", credentials::FCM_ACCESS_TOKEN) {
            return error(401, "UNAUTHENTICATED", "Request had invalid authentication credentials.");
        }
        if project != self.inner.fcm_project {
            return error(403, "PERMISSION_DENIED", "The service account may not send for this project.");
        }
        if record.to.as_deref().is_none_or(str::is_empty) {
            return error(400, "INVALID_ARGUMENT", "The registration token is missing.");
        }
        Reply::ok(
            StatusCode::OK,
            json!({"name": format!("projects/{project}/messages/{}", ulid::Ulid::new())}),
        )
    }

    /// APNs `/3/device/{token}` with an ES256 provider token of the key, and its topic.
    fn apns_send(&self, auth: &str, topic: &str, body: &[u8], record: &mut Received) -> Reply {
        let payload: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let text = |v: &Value| v.as_str().map(str::to_owned);
        record.title = text(&payload["aps"]["alert"]["title"]);
        record.body = text(&payload["aps"]["alert"]["body"]);
        record.message_id = text(&payload["message_id"]);
        record.subscription_id = text(&payload["subscription_id"]);
        record.tracking_token = text(&payload["rt"]);
        let reason = |status: StatusCode, reason: &str, why: String| {
            Reply::refuse(status, json!({ "reason": reason }), why)
        };
        let Some(jwt) = auth.strip_prefix("bearer ").or_else(|| auth.strip_prefix("Bearer ")) else {
            return reason(StatusCode::FORBIDDEN, "MissingProviderToken", "no bearer token".into());
        };
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[credentials::APNS_TEAM_ID]);
        validation.set_required_spec_claims(&["iss"]);
        validation.validate_exp = false; // provider tokens carry only iat
        let verified = jsonwebtoken::decode_header(jwt)
            .map_err(|e| e.to_string())
            .and_then(|h| match h.kid.as_deref() {
                Some(credentials::APNS_KEY_ID) => Ok(()),
                other => Err(format!("kid {other:?} is not the key's id")),
            })
            .and_then(|()| {
                jsonwebtoken::decode::<Value>(jwt, &self.inner.apns_key, &validation)
                    .map_err(|e| e.to_string())
            });
        if let Err(why) = verified {
            return reason(StatusCode::FORBIDDEN, "InvalidProviderToken", format!("provider token: {why}"));
        }
        if topic != credentials::APNS_TOPIC {
            return reason(StatusCode::BAD_REQUEST, "TopicDisallowed", format!("apns-topic {topic:?}"));
        }
        if payload["aps"].is_null() {
            return reason(StatusCode::BAD_REQUEST, "PayloadEmpty", "no aps in the payload".into());
        }
        let mut reply = Reply::ok(StatusCode::OK, json!({}));
        reply.headers.push(("apns-id", ulid::Ulid::new().to_string()));
        reply
    }

    /// Twilio's Messages API: Basic auth of the account in the path, To, From (or a messaging
    /// service) and Body. Answers 201 `queued` and, if asked, what to call back.
    fn twilio_send(
        &self,
        account: &str,
        auth: &str,
        body: &[u8],
        record: &mut Received,
    ) -> (Reply, Option<CallbackJob>) {
        let form = form_pairs(body);
        let get = |name: &str| field(&form, name).map(str::to_owned);
        record.to = get("To");
        record.body = get("Body");
        record.status_callback = get("StatusCallback");
        if let Some(url) = &record.status_callback {
            let query = url.split_once('?').map(|(_, q)| form_pairs(q.as_bytes())).unwrap_or_default();
            record.message_id = field(&query, "message_id").map(str::to_owned);
            record.subscription_id = field(&query, "subscription_id").map(str::to_owned);
        }
        let basic = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            credentials::TWILIO_ACCOUNT_SID,
            credentials::TWILIO_AUTH_TOKEN
        ));
        let error = |status: StatusCode, code: u32, message: &str| {
            let body = json!({"code": code, "message": message, "status": status.as_u16(),
                "more_info": format!("https://www.twilio.com/docs/errors/{code}")});
            (Reply::refuse(status, body, message.to_owned()), None)
        };
        if account != credentials::TWILIO_ACCOUNT_SID || auth != format!("Basic {basic}") {
            return error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
        }
        let Some(to) = record.to.clone() else {
            return error(StatusCode::BAD_REQUEST, 21604, "A 'To' phone number is required.");
        };
        let from = get("From").or_else(|| get("MessagingServiceSid"));
        let Some(from) = from else {
            return error(StatusCode::BAD_REQUEST, 21603, "A 'From' or 'MessagingServiceSid' is required.");
        };
        if record.body.as_deref().is_none_or(str::is_empty) {
            return error(StatusCode::BAD_REQUEST, 21602, "Message body is required.");
        }
        let sid = format!("SM{:032x}", ulid::Ulid::new().0);
        let job = record.status_callback.clone().map(|url| CallbackJob {
            url,
            params: [
                ("AccountSid", account),
                ("ApiVersion", "2010-04-01"),
                ("From", from.as_str()),
                ("MessageSid", sid.as_str()),
                ("SmsSid", sid.as_str()),
                ("To", to.as_str()),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        });
        let body = json!({"sid": sid, "status": "queued", "account_sid": account, "to": to, "from": from,
            "body": record.body, "api_version": "2010-04-01"});
        (Reply::ok(StatusCode::CREATED, body), job)
    }

    /// Posts `sent`, then `delivered`, to the StatusCallback, each signed with the account's
    /// auth token over the callback URL as given, and records what the webhook answered.
    async fn call_back(self, index: usize, job: CallbackJob) {
        let target = match &self.inner.options.callback_origin {
            Some(origin) => match path_and_query(&job.url) {
                Some(rest) => format!("{}{rest}", origin.trim_end_matches('/')),
                None => job.url.clone(),
            },
            None => job.url.clone(),
        };
        for status in ["sent", "delivered"] {
            tokio::time::sleep(CALLBACK_DELAY).await;
            let mut params = job.params.clone();
            params.push(("MessageStatus".into(), status.into()));
            params.push(("SmsStatus".into(), status.into()));
            let signature = retarget_shared::edge::signatures::twilio_signature(
                credentials::TWILIO_AUTH_TOKEN,
                &job.url,
                &params,
            );
            let sent = self
                .inner
                .http
                .post(&target)
                .header("X-Twilio-Signature", signature)
                .form(&params)
                .send()
                .await;
            let callback = match sent {
                Ok(response) => Callback { status, answered: Some(response.status().as_u16()), error: None },
                Err(e) => Callback { status, answered: None, error: Some(e.without_url().to_string()) },
            };
            if self.inner.options.echo {
                let outcome = callback
                    .answered
                    .map_or_else(|| callback.error.clone().unwrap_or_default(), |s| s.to_string());
                let to = field(&job.params, "To").unwrap_or_default();
                eprintln!("retarget-standin: twilio status callback {status} for {to} → {outcome}");
            }
            if let Some(record) =
                self.inner.received.lock().unwrap_or_else(PoisonError::into_inner).get_mut(index)
            {
                record.callbacks.push(callback);
            }
        }
    }

    fn echo(&self, r: &Received) {
        if !self.inner.options.echo {
            return;
        }
        let what = match r.provider {
            Provider::Twilio => "twilio sms",
            Provider::Fcm => "fcm push",
            Provider::Apns => "apns push",
            Provider::FcmToken => "fcm oauth token",
            Provider::Unknown => "unknown",
        };
        let to = r.to.as_deref().map(|to| format!(" to {to}")).unwrap_or_default();
        let body = r.body.as_deref().map(|b| format!(" {b:?}")).unwrap_or_default();
        let refused = r.refused.as_deref().map(|why| format!(" (refused: {why})")).unwrap_or_default();
        eprintln!("retarget-standin: {what}{to}{body} → {}{refused}", r.answered);
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

fn field<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// `/path?query` of an absolute URL, exactly as written.
fn path_and_query(url: &str) -> Option<&str> {
    let (_, rest) = url.split_once("://")?;
    rest.find('/').map(|slash| &rest[slash..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use retarget_shared::edge::signatures::verify_twilio;

    async fn start(options: Options) -> (StandIn, String) {
        let standin = StandIn::new(options).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(standin.clone().serve(listener));
        (standin, url)
    }

    fn now() -> u64 {
        chrono::Utc::now().timestamp().try_into().unwrap()
    }

    fn fcm_assertion(aud: &str, iss: &str) -> String {
        let account: Value = serde_json::from_str(credentials::FCM_SERVICE_ACCOUNT).unwrap();
        let key = EncodingKey::from_rsa_pem(account["private_key"].as_str().unwrap().as_bytes()).unwrap();
        let claims = json!({"iss": iss, "scope": FCM_SCOPE, "aud": aud, "iat": now(), "exp": now() + 3600});
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key).unwrap()
    }

    fn apns_jwt(kid: &str) -> String {
        let key = EncodingKey::from_ec_pem(credentials::APNS_KEY_P8.as_bytes()).unwrap();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, &json!({"iss": credentials::APNS_TEAM_ID, "iat": now()}), &key).unwrap()
    }

    #[tokio::test]
    async fn fcm_takes_only_the_service_accounts_assertion_and_the_token_it_gave() {
        let (standin, url) = start(Options::default()).await;
        let http = reqwest::Client::new();
        let (project, email) = credentials::fcm_project_and_email().unwrap();
        let token = |assertion: String| {
            http.post(format!("{url}/token"))
                .form(&[("grant_type", JWT_BEARER_GRANT), ("assertion", assertion.as_str())])
                .send()
        };
        let good = token(fcm_assertion(&format!("{url}/token"), &email)).await.unwrap();
        assert_eq!(good.status(), 200);
        let good: Value = good.json().await.unwrap();
        assert_eq!(good["access_token"], credentials::FCM_ACCESS_TOKEN);
        let other_issuer = token(fcm_assertion(&format!("{url}/token"), "x@y.iam.gserviceaccount.com"));
        assert_eq!(other_issuer.await.unwrap().status(), 400);
        let other_audience = token(fcm_assertion("https://oauth2.googleapis.com/token", &email));
        assert_eq!(other_audience.await.unwrap().status(), 400);

        let send = |token: &str, project: &str| {
            http.post(format!("{url}/v1/projects/{project}/messages:send"))
                .bearer_auth(token)
                .json(&json!({"message": {"token": "tok-1", "notification": {"title": "Hi", "body": "Back in stock"},
                    "data": {"message_id": "m1", "subscription_id": "s1"}}}))
                .send()
        };
        assert_eq!(send(credentials::FCM_ACCESS_TOKEN, &project).await.unwrap().status(), 200);
        assert_eq!(send("forged", &project).await.unwrap().status(), 401);
        assert_eq!(send(credentials::FCM_ACCESS_TOKEN, "other-project").await.unwrap().status(), 403);

        let sends = standin.of(Provider::Fcm);
        assert_eq!(sends.len(), 3);
        let first = &sends[0];
        assert_eq!((first.to.as_deref(), first.body.as_deref()), (Some("tok-1"), Some("Back in stock")));
        assert_eq!((first.message_id.as_deref(), first.subscription_id.as_deref()), (Some("m1"), Some("s1")));
        assert_eq!(first.refused, None);
        assert!(sends[1].refused.is_some());
        assert_eq!(standin.of(Provider::FcmToken).len(), 3);
    }

    #[tokio::test]
    async fn apns_takes_only_the_keys_provider_token_for_its_topic() {
        let (standin, url) = start(Options::default()).await;
        let http = reqwest::Client::new();
        let send = |jwt: String, topic: &str| {
            http.post(format!("{url}/3/device/abcd"))
                .header(AUTHORIZATION, format!("bearer {jwt}"))
                .header("apns-topic", topic)
                .json(&json!({"aps": {"alert": {"body": "Back in stock"}}, "message_id": "m1", "subscription_id": "s1"}))
                .send()
        };
        let ok = send(apns_jwt(credentials::APNS_KEY_ID), credentials::APNS_TOPIC).await.unwrap();
        assert_eq!(ok.status(), 200);
        assert!(ok.headers().contains_key("apns-id"));
        let wrong_key = send(apns_jwt("OTHERKEY12"), credentials::APNS_TOPIC).await.unwrap();
        assert_eq!(wrong_key.status(), 403);
        assert_eq!(wrong_key.json::<Value>().await.unwrap()["reason"], "InvalidProviderToken");
        let wrong_topic = send(apns_jwt(credentials::APNS_KEY_ID), "com.other").await.unwrap();
        assert_eq!(wrong_topic.status(), 400);
        let sends = standin.of(Provider::Apns);
        assert_eq!(sends.iter().map(|r| r.answered).collect::<Vec<_>>(), [200, 403, 400]);
        assert_eq!(sends[0].to.as_deref(), Some("abcd"));
        assert_eq!(sends[0].body.as_deref(), Some("Back in stock"));
    }

    #[tokio::test]
    async fn twilio_checks_the_account_then_calls_back_signed_and_received_lists_it() {
        let webhook = wiremock::MockServer::start().await;
        wiremock::Mock::given(wiremock::matchers::method("POST"))
            .respond_with(wiremock::ResponseTemplate::new(204))
            .mount(&webhook)
            .await;
        let options = Options { status_callbacks: true, callback_origin: Some(webhook.uri()), echo: false };
        let (standin, url) = start(options).await;
        let http = reqwest::Client::new();
        let callback = "https://hooks.example.com/v1/webhooks/twilio/A1?message_id=M1&subscription_id=S1";
        let send = |sid: &str, token: &str| {
            http.post(format!("{url}/2010-04-01/Accounts/{sid}/Messages.json"))
                .basic_auth(sid, Some(token))
                .form(&[
                    ("To", "+15551234567"),
                    ("From", credentials::TWILIO_FROM),
                    ("Body", "Still there?"),
                    ("StatusCallback", callback),
                ])
                .send()
        };
        let refused = send(credentials::TWILIO_ACCOUNT_SID, "wrong").await.unwrap();
        assert_eq!(refused.status(), 401);
        assert_eq!(refused.json::<Value>().await.unwrap()["code"], 20003);
        let accepted = send(credentials::TWILIO_ACCOUNT_SID, credentials::TWILIO_AUTH_TOKEN).await.unwrap();
        assert_eq!(accepted.status(), 201);
        let sid = accepted.json::<Value>().await.unwrap()["sid"].as_str().unwrap().to_owned();

        let mut calls = Vec::new();
        for _ in 0..50 {
            calls = webhook.received_requests().await.unwrap();
            if calls.len() >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(calls.len(), 2, "one callback per status, and none for the refused send");
        for (call, status) in calls.iter().zip(["sent", "delivered"]) {
            assert_eq!(call.url.path(), "/v1/webhooks/twilio/A1");
            assert_eq!(call.url.query(), Some("message_id=M1&subscription_id=S1"));
            let params = form_pairs(&call.body);
            assert_eq!(field(&params, "MessageStatus"), Some(status));
            assert_eq!(field(&params, "MessageSid"), Some(sid.as_str()));
            let signature = call.headers.get("x-twilio-signature").unwrap().to_str().unwrap();
            assert!(verify_twilio(credentials::TWILIO_AUTH_TOKEN, callback, &params, signature));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;

        let listed: Value = http.get(format!("{url}/received")).send().await.unwrap().json().await.unwrap();
        let listed = listed["received"].as_array().unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[0]["answered"], 401);
        let text = &listed[1];
        assert_eq!((text["provider"].as_str(), text["channel"].as_str()), (Some("twilio"), Some("sms")));
        assert_eq!(
            (text["to"].as_str(), text["body"].as_str()),
            (Some("+15551234567"), Some("Still there?"))
        );
        assert_eq!((text["message_id"].as_str(), text["subscription_id"].as_str()), (Some("M1"), Some("S1")));
        assert_eq!(
            text["callbacks"],
            json!([{"status": "sent", "answered": 204}, {"status": "delivered", "answered": 204}])
        );

        assert_eq!(http.delete(format!("{url}/received")).send().await.unwrap().status(), 200);
        assert!(standin.received().is_empty());
    }

    #[test]
    fn app_flags_name_the_written_files() {
        let dir = std::env::temp_dir().join(format!("retarget-standin-test-{}", std::process::id()));
        let flags = credentials::write_app_flags(&dir, "http://127.0.0.1:4000/").unwrap();
        let value = |flag: &str| flags.iter().position(|f| f == flag).map(|i| flags[i + 1].clone()).unwrap();
        let account: Value =
            serde_json::from_str(&std::fs::read_to_string(value("--fcm-service-account")).unwrap()).unwrap();
        assert_eq!(account["token_uri"], "http://127.0.0.1:4000/token");
        assert_eq!(std::fs::read_to_string(value("--apns-key")).unwrap(), credentials::APNS_KEY_P8);
        assert_eq!(value("--twilio-account-sid"), credentials::TWILIO_ACCOUNT_SID);
        std::fs::remove_dir_all(dir).unwrap();
    }
}

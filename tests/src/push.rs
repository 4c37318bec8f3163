//! FCM and APNs stood in for by wiremock, for the push sender under faults: [`FaultyFcm`] (the
//! OAuth2 token endpoint and `messages:send`) and [`FaultyApns`] (`/3/device/{token}`) answer
//! by a seeded RNG with what the providers give under load — 429 (FCM with `Retry-After`), 500
//! and 503, requests that hang past the sender's timeout, and for FCM a failing token endpoint —
//! and count, per device token, the requests that reached their success path: what a real
//! provider would have delivered. Each configured kind is also forced once early (a 429, a 503
//! and a hang among the first sends, a failure of the first token request), so the test's
//! "every kind happened" holds whatever the dice and the interleaving give.
//!
//! The stand-ins speak plain HTTP, so the sender's client talks HTTP/1.1 to them (over
//! `https://` it negotiates HTTP/2, which APNs requires: `functions/push-sender/tests/http_versions.rs`).
//! FCM's access tokens live just past the client's five-minute margin, so it fetches a new
//! one every few seconds and a failing token endpoint keeps mattering.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use retarget_shared::domain::{ApnsAccount, ApnsConfig, Credentials, FcmAccount, FcmConfig, Plan};
use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::{TestApp, World};

/// How long a "hung" request takes to answer (then 503, nothing delivered): past the push
/// sender's 10 s per-request timeout (`retarget_push_sender::DEFAULT_TIMEOUT`).
pub const HANG: Duration = Duration::from_millis(10_500);

/// The FCM project of the demo's service account (`tools/demo/fixtures`).
pub const PROJECT_ID: &str = "retarget-demo";
pub const APNS_KEY_ID: &str = "KEYID12345";
pub const APNS_TEAM_ID: &str = "TEAMID1234";
pub const APNS_TOPIC: &str = "com.example.app";
/// An access token's lifetime: the client reuses one until 5 minutes before it expires, so
/// these are fresh for 2 s.
const ACCESS_TOKEN_SECONDS: u64 = 302;

/// The demo's test-only keys (never used anywhere real).
fn fixture(name: &str) -> String {
    let path = format!("{}/../tools/demo/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The demo's FCM service account, its token endpoint on `fcm`.
pub fn fcm_config(fcm: &MockServer) -> FcmConfig {
    let account: Value = serde_json::from_str(&fixture("fcm-demo-service-account.json")).expect("json");
    let text = |name: &str| account[name].as_str().expect("service account field").to_owned();
    FcmConfig {
        account: FcmAccount {
            project_id: text("project_id"),
            client_email: text("client_email"),
            token_uri: format!("{}/token", fcm.uri()),
        },
        private_key: text("private_key"),
    }
}

/// The demo's APNs .p8 key.
pub fn apns_config() -> ApnsConfig {
    ApnsConfig {
        account: ApnsAccount {
            key_id: APNS_KEY_ID.into(),
            team_id: APNS_TEAM_ID.into(),
            topic: APNS_TOPIC.into(),
        },
        private_key_pem: fixture("apns-demo-key.p8"),
    }
}

/// A pro app (retargetable, so sends are recorded) with FCM on `fcm` and an APNs key (and a
/// placeholder Twilio account: SMS messages are accepted, and fail to send).
pub async fn push_app(world: &World, fcm: &MockServer) -> TestApp {
    let credentials = Credentials {
        fcm: Some(fcm_config(fcm)),
        apns: Some(apns_config()),
        ..crate::placeholder_credentials()
    };
    world.create_app("Push App", Plan::Pro, credentials).await
}

/// The FCM registration token of the `i`th android recipient.
pub fn android_token(i: usize) -> String {
    format!("fcm-registration-token-{i:06}")
}

/// The APNs device token (64 hex digits) of the `i`th ios recipient.
pub fn ios_token(i: usize) -> String {
    format!("{i:064x}")
}

/// What the stand-ins answer, as fractions of requests.
#[derive(Clone, Copy, Default, Debug)]
pub struct PushFaults {
    /// 429 (FCM: `RESOURCE_EXHAUSTED` with `Retry-After: 1`; APNs: `TooManyRequests`).
    pub too_many_requests: f64,
    /// 500 or 503, half each.
    pub server_error: f64,
    /// Hangs past the client's timeout ([`HANG`]), then 503: nothing delivered.
    pub hang: f64,
    /// Of FCM token requests: 500, 503, 429 or a hang, a quarter each (the first token request
    /// always fails when this is above 0).
    pub token_failure: f64,
}

/// What a stand-in has seen: successes per device token (or address), and every answer by kind.
#[derive(Default)]
pub(crate) struct Tally {
    delivered: Mutex<HashMap<String, u32>>,
    answered: Mutex<BTreeMap<&'static str, u64>>,
}

impl Tally {
    pub(crate) fn answer(&self, kind: &'static str, response: ResponseTemplate) -> ResponseTemplate {
        *self.answered.lock().expect("answered").entry(kind).or_default() += 1;
        response
    }

    pub(crate) fn deliver(&self, token: &str) {
        *self.delivered.lock().expect("delivered").entry(token.to_owned()).or_default() += 1;
    }

    pub(crate) fn delivered(&self) -> HashMap<String, u32> {
        self.delivered.lock().expect("delivered").clone()
    }

    pub(crate) fn answered(&self) -> BTreeMap<&'static str, u64> {
        self.answered.lock().expect("answered").clone()
    }
}

/// One stand-in's state: its faults, its RNG, its request counters and its tally (the SES
/// stand-in's too, `crate::ses`).
pub(crate) struct Faulty {
    pub(crate) faults: PushFaults,
    rng: Mutex<StdRng>,
    /// Send requests so far: the rare faults are also forced once at fixed early numbers
    /// ([`FORCED`]), so a run too short for the dice still sees every configured kind.
    sends: AtomicU64,
    /// Token requests so far: the first one fails when `token_failure` is configured.
    tokens: AtomicU64,
    pub(crate) tally: Tally,
}

/// Send request numbers (1-based) that are forced to a 429, a server error and a hang, in that
/// order, when the fault is configured at all.
const FORCED: [u64; 3] = [3, 7, 11];

/// What a roll of the dice gave.
pub(crate) enum Fault {
    TooManyRequests,
    ServerError(u16),
    Hang,
    None,
}

impl Faulty {
    pub(crate) fn new(faults: PushFaults, seed: u64) -> Self {
        Self {
            faults,
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            sends: AtomicU64::new(0),
            tokens: AtomicU64::new(0),
            tally: Tally::default(),
        }
    }

    pub(crate) fn roll(&self) -> f64 {
        self.rng.lock().expect("rng").random()
    }

    pub(crate) fn fault(&self) -> Fault {
        let (roll, f) = (self.roll(), self.faults);
        let n = self.sends.fetch_add(1, Ordering::SeqCst) + 1;
        if n == FORCED[0] && f.too_many_requests > 0.0 {
            return Fault::TooManyRequests;
        }
        if n == FORCED[1] && f.server_error > 0.0 {
            return Fault::ServerError(503);
        }
        if n == FORCED[2] && f.hang > 0.0 {
            return Fault::Hang;
        }
        if roll < f.too_many_requests {
            Fault::TooManyRequests
        } else if roll < f.too_many_requests + f.server_error {
            Fault::ServerError(if self.roll() < 0.5 { 500 } else { 503 })
        } else if roll < f.too_many_requests + f.server_error + f.hang {
            Fault::Hang
        } else {
            Fault::None
        }
    }
}

/// FCM HTTP v1 and its token endpoint, faulty.
pub struct FaultyFcm {
    state: Faulty,
    issued: AtomicU64,
}

impl FaultyFcm {
    pub fn new(faults: PushFaults, seed: u64) -> Arc<Self> {
        Arc::new(Self { state: Faulty::new(faults, seed), issued: AtomicU64::new(0) })
    }

    /// Serves `POST /token` and `POST /v1/projects/{PROJECT_ID}/messages:send`; the server
    /// stops when dropped.
    pub async fn mount(self: &Arc<Self>) -> MockServer {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/token"))
            .respond_with(FcmToken(self.clone()))
            .mount(&server)
            .await;
        Mock::given(method("POST"))
            .and(path(format!("/v1/projects/{PROJECT_ID}/messages:send")))
            .respond_with(FcmSend(self.clone()))
            .mount(&server)
            .await;
        server
    }

    /// Requests that reached the success path, per registration token.
    pub fn delivered(&self) -> HashMap<String, u32> {
        self.state.tally.delivered()
    }

    /// Answers so far by kind (`send_200`, `send_429`, `token_hang_then_503`, …).
    pub fn answered(&self) -> BTreeMap<&'static str, u64> {
        self.state.tally.answered()
    }

    fn is_issued(&self, authorization: &str) -> bool {
        let issued = self.issued.load(Ordering::SeqCst);
        authorization
            .strip_prefix("Bearer at-")
            .and_then(|n| n.parse::<u64>().ok())
            .is_some_and(|n| (1..=issued).contains(&n))
    }
}

fn fcm_error(status: u16, rpc_status: &str, error_code: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({"error": {
        "code": status, "message": "injected", "status": rpc_status,
        "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": error_code}],
    }}))
}

struct FcmToken(Arc<FaultyFcm>);

impl Respond for FcmToken {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let fcm = &self.0;
        let tally = &fcm.state.tally;
        let grant = form_urlencoded::parse(&request.body)
            .any(|(k, v)| k == "grant_type" && v == "urn:ietf:params:oauth:grant-type:jwt-bearer");
        if !grant {
            return tally.answer(
                "token_400",
                ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_grant"})),
            );
        }
        let first = fcm.state.tokens.fetch_add(1, Ordering::SeqCst) == 0;
        let token_failure = fcm.state.faults.token_failure;
        if token_failure > 0.0 && (first || fcm.state.roll() < token_failure) {
            let oauth_error = |status: u16| {
                ResponseTemplate::new(status)
                    .set_body_json(json!({"error": "internal_failure", "error_description": "injected"}))
            };
            return match fcm.state.roll() {
                r if r < 0.25 => tally.answer("token_500", oauth_error(500)),
                r if r < 0.5 => tally.answer("token_503", oauth_error(503)),
                r if r < 0.75 => {
                    tally.answer("token_429", oauth_error(429).insert_header("Retry-After", "1"))
                }
                _ => tally.answer("token_hang_then_503", oauth_error(503).set_delay(HANG)),
            };
        }
        let n = fcm.issued.fetch_add(1, Ordering::SeqCst) + 1;
        let body = json!({"access_token": format!("at-{n}"), "expires_in": ACCESS_TOKEN_SECONDS, "token_type": "Bearer"});
        tally.answer("token_200", ResponseTemplate::new(200).set_body_json(body))
    }
}

struct FcmSend(Arc<FaultyFcm>);

impl Respond for FcmSend {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let fcm = &self.0;
        let tally = &fcm.state.tally;
        let authorization = header(request, "authorization");
        if !fcm.is_issued(authorization) {
            // Never for a token the endpoint issued: the test checks there is none.
            let body = json!({"error": {"code": 401, "message": "injected", "status": "UNAUTHENTICATED"}});
            return tally.answer("send_401", ResponseTemplate::new(401).set_body_json(body));
        }
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let Some(token) = body["message"]["token"].as_str() else {
            return tally.answer("send_400", fcm_error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT"));
        };
        match fcm.state.fault() {
            Fault::TooManyRequests => tally.answer(
                "send_429",
                fcm_error(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED").insert_header("Retry-After", "1"),
            ),
            Fault::ServerError(500) => tally.answer("send_500", fcm_error(500, "INTERNAL", "INTERNAL")),
            Fault::ServerError(_) => tally.answer("send_503", fcm_error(503, "UNAVAILABLE", "UNAVAILABLE")),
            Fault::Hang => tally
                .answer("send_hang_then_503", fcm_error(503, "UNAVAILABLE", "UNAVAILABLE").set_delay(HANG)),
            Fault::None => {
                tally.deliver(token);
                let name = format!("projects/{PROJECT_ID}/messages/{}", ulid::Ulid::new());
                tally.answer("send_200", ResponseTemplate::new(200).set_body_json(json!({ "name": name })))
            }
        }
    }
}

/// APNs' provider API, faulty.
pub struct FaultyApns {
    state: Faulty,
}

impl FaultyApns {
    pub fn new(faults: PushFaults, seed: u64) -> Arc<Self> {
        Arc::new(Self { state: Faulty::new(faults, seed) })
    }

    /// Serves `POST /3/device/{token}`; the server stops when dropped.
    pub async fn mount(self: &Arc<Self>) -> MockServer {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path_regex("^/3/device/[^/]+$"))
            .respond_with(ApnsSend(self.clone()))
            .mount(&server)
            .await;
        server
    }

    /// Requests that reached the success path, per device token.
    pub fn delivered(&self) -> HashMap<String, u32> {
        self.state.tally.delivered()
    }

    /// Answers so far by kind (`200`, `429`, `hang_then_503`, …).
    pub fn answered(&self) -> BTreeMap<&'static str, u64> {
        self.state.tally.answered()
    }
}

fn apns_error(status: u16, reason: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(json!({ "reason": reason }))
}

struct ApnsSend(Arc<FaultyApns>);

impl Respond for ApnsSend {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let tally = &self.0.state.tally;
        let token = request.url.path().trim_start_matches("/3/device/").to_owned();
        let bearer = header(request, "authorization")
            .strip_prefix("bearer ")
            .is_some_and(|jwt| jwt.split('.').count() == 3);
        if !bearer || header(request, "apns-topic") != APNS_TOPIC {
            return tally.answer("403", apns_error(403, "MissingProviderToken"));
        }
        match self.0.state.fault() {
            // APNs gives no Retry-After: the sender's own backoff applies.
            Fault::TooManyRequests => tally.answer("429", apns_error(429, "TooManyRequests")),
            Fault::ServerError(500) => tally.answer("500", apns_error(500, "InternalServerError")),
            Fault::ServerError(_) => tally.answer("503", apns_error(503, "ServiceUnavailable")),
            Fault::Hang => {
                tally.answer("hang_then_503", apns_error(503, "ServiceUnavailable").set_delay(HANG))
            }
            Fault::None => {
                tally.deliver(&token);
                let id = ulid::Ulid::new().to_string();
                tally.answer("200", ResponseTemplate::new(200).insert_header("apns-id", id.as_str()))
            }
        }
    }
}

fn header<'r>(request: &'r Request, name: &str) -> &'r str {
    request.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default()
}

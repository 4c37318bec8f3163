//! Twilio's Messages API, stood in for by wiremock: the paths, answers and request readers the
//! SMS tests share, and [`FaultyTwilio`], a stand-in that fails, throttles and hangs by a seeded
//! RNG and counts what it accepted per recipient.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use retarget_sms_sender::TwilioProvider;
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::PUBLIC_BASE_URL;

/// The account of every app [`crate::World::twilio_app`] creates.
pub const ACCOUNT: &str = "AC0123";

/// Where Twilio takes an account's messages.
pub fn messages_path(account: &str) -> String {
    format!("/2010-04-01/Accounts/{account}/Messages.json")
}

/// Twilio's answer to a message it accepted.
pub fn accepted() -> ResponseTemplate {
    ResponseTemplate::new(201).set_body_json(json!({"sid": "SM123", "status": "queued"}))
}

/// The SMS sender's provider against a stand-in at `api_base`, with status callbacks and
/// tracked links under [`PUBLIC_BASE_URL`], its links stored in `store`'s table.
pub fn provider(store: &retarget_shared::Store, api_base: String, timeout: Duration) -> TwilioProvider {
    TwilioProvider::new(api_base, PUBLIC_BASE_URL.into(), timeout).with_links(store.clone())
}

/// A request's form parameters.
pub fn form(request: &Request) -> HashMap<String, String> {
    form_urlencoded::parse(&request.body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
}

/// The number a request sends to.
pub fn to(request: &Request) -> String {
    form_urlencoded::parse(&request.body)
        .find(|(k, _)| k == "To")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// The `To` of every request the stand-in received, in order.
pub async fn recipients(server: &MockServer) -> Vec<String> {
    server.received_requests().await.unwrap_or_default().iter().map(to).collect()
}

/// How long a "hung" request takes to answer: past the sender's timeout.
pub const HANG: Duration = Duration::from_millis(10_500);

/// What [`FaultyTwilio`] answers, as fractions of requests.
#[derive(Clone, Copy, Default)]
pub struct ProviderFaults {
    pub too_many_requests: f64,
    pub server_error: f64,
    /// Hangs past the client's timeout, then refuses (503): nothing was sent.
    pub hang_then_refuse: f64,
}

/// The Messages API of [`ACCOUNT`]: answers by a seeded RNG and counts, per `To`, the requests
/// it accepted (201) — what a real provider would have delivered.
pub struct FaultyTwilio {
    faults: ProviderFaults,
    rng: Mutex<StdRng>,
    accepted: Mutex<HashMap<String, u32>>,
    /// `To` numbers whose request is accepted only after [`HANG`] (past the client's timeout).
    pub slow_accept: Mutex<Vec<String>>,
    answered: Mutex<BTreeMap<&'static str, u64>>,
}

impl FaultyTwilio {
    pub fn new(faults: ProviderFaults, seed: u64) -> Arc<Self> {
        Arc::new(Self {
            faults,
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            accepted: Mutex::default(),
            slow_accept: Mutex::default(),
            answered: Mutex::default(),
        })
    }

    /// Requests accepted so far, per `To`.
    pub fn accepted(&self) -> HashMap<String, u32> {
        self.accepted.lock().expect("accepted").clone()
    }

    /// Answers given so far, by kind (`201`, `429`, `hang_then_503`, …).
    pub fn answered(&self) -> BTreeMap<&'static str, u64> {
        self.answered.lock().expect("answered").clone()
    }

    /// Serves it; the server stops when dropped.
    pub async fn mount(self: &Arc<Self>) -> MockServer {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(messages_path(ACCOUNT)))
            .respond_with(Responder(self.clone()))
            .mount(&server)
            .await;
        server
    }
}

struct Responder(Arc<FaultyTwilio>);

impl Respond for Responder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let twilio = &self.0;
        let to = to(request);
        let roll: f64 = twilio.rng.lock().expect("rng").random();
        let f = twilio.faults;
        let (kind, response) = if roll < f.too_many_requests {
            (
                "429",
                ResponseTemplate::new(429)
                    .insert_header("Retry-After", "1")
                    .set_body_json(json!({"code": 20429, "message": "Too Many Requests", "status": 429})),
            )
        } else if roll < f.too_many_requests + f.server_error {
            ("500", ResponseTemplate::new(500).set_body_json(json!({"code": 20500, "status": 500})))
        } else if roll < f.too_many_requests + f.server_error + f.hang_then_refuse {
            ("hang_then_503", ResponseTemplate::new(503).set_delay(HANG))
        } else {
            *twilio.accepted.lock().expect("accepted").entry(to.clone()).or_default() += 1;
            let body = json!({"sid": format!("SM{}", ulid::Ulid::new()), "status": "queued"});
            if twilio.slow_accept.lock().expect("slow").contains(&to) {
                ("201_after_timeout", ResponseTemplate::new(201).set_body_json(body).set_delay(HANG))
            } else {
                ("201", ResponseTemplate::new(201).set_body_json(body))
            }
        };
        *twilio.answered.lock().expect("answered").entry(kind).or_default() += 1;
        response
    }
}

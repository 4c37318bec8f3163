//! SES v2 stood in for by wiremock, for the email sender under faults: [`FaultySes`] serves
//! `SendEmail` (`POST /v2/email/outbound-emails`, SES's REST-JSON protocol) and answers, by the
//! same seeded dice as the push stand-ins (`crate::push`), with what SES gives under load —
//! `TooManyRequestsException` (429, the sending rate) and `LimitExceededException` (400, the
//! daily quota), 500 and 503, and requests that hang past the sender's timeout
//! (`retarget_email_sender::SES_TIMEOUT`) — and refuses every address whose local part starts
//! with [`REJECTED`] with `MessageRejected`, a refusal of that recipient alone. It counts, per
//! destination address, the requests SES would have delivered, and it checks what every request
//! carries (from address, configuration set, the three tags, the one-click unsubscribe headers):
//! a request without them is answered `BadRequestException` and counted as such.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use crate::push::{Fault, Faulty, HANG, PushFaults};

/// `SendEmail`'s path in SES v2.
pub const SEND_PATH: &str = "/v2/email/outbound-emails";

/// Addresses starting with this are refused by SES (`MessageRejected`).
pub const REJECTED: &str = "rejected";

/// The `i`th recipient's address: every `rejected_every`th one is refused.
pub fn email(i: usize, rejected_every: usize) -> String {
    if rejected_every > 0 && i % rejected_every == rejected_every - 1 {
        format!("{REJECTED}.{i}@example.com")
    } else {
        format!("user.{i}@example.com")
    }
}

/// SES v2, faulty. `faults.token_failure` has no meaning here (SES signs with SigV4, no token).
pub struct FaultySes {
    state: Faulty,
}

impl FaultySes {
    pub fn new(faults: PushFaults, seed: u64) -> Arc<Self> {
        Arc::new(Self { state: Faulty::new(faults, seed) })
    }

    /// Serves `SendEmail`; the server stops when dropped.
    pub async fn mount(self: &Arc<Self>) -> MockServer {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path(SEND_PATH))
            .respond_with(SesSend(self.clone()))
            .mount(&server)
            .await;
        server
    }

    /// Requests SES would have delivered, per destination address.
    pub fn delivered(&self) -> HashMap<String, u32> {
        self.state.tally.delivered()
    }

    /// Answers so far by kind (`200`, `429`, `limit_exceeded`, `hang_then_503`, `rejected`, …).
    pub fn answered(&self) -> BTreeMap<&'static str, u64> {
        self.state.tally.answered()
    }
}

/// An SES error as its REST-JSON protocol gives it: the code in `x-amzn-ErrorType`.
pub fn ses_error(status: u16, code: &str, message: &str) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .insert_header("x-amzn-ErrorType", code)
        .set_body_json(json!({ "message": message }))
}

/// Whether a `SendEmail` body carries what the sender must always send.
fn well_formed(body: &Value) -> bool {
    let tags: Vec<&str> = body["EmailTags"]
        .as_array()
        .map(|tags| tags.iter().filter_map(|t| t["Name"].as_str()).collect())
        .unwrap_or_default();
    let headers: Vec<&str> = body["Content"]["Simple"]["Headers"]
        .as_array()
        .map(|hs| hs.iter().filter_map(|h| h["Name"].as_str()).collect())
        .unwrap_or_default();
    body["FromEmailAddress"].is_string()
        && body["ConfigurationSetName"].is_string()
        && tags == ["app_id", "message_id", "subscription_id"]
        && headers.contains(&"List-Unsubscribe")
        && headers.contains(&"List-Unsubscribe-Post")
}

struct SesSend(Arc<FaultySes>);

impl Respond for SesSend {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let state = &self.0.state;
        let tally = &state.tally;
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let to = body["Destination"]["ToAddresses"].as_array().map(Vec::as_slice).unwrap_or_default();
        let [Value::String(to)] = to else {
            return tally.answer("bad_request", ses_error(400, "BadRequestException", "one destination"));
        };
        if !well_formed(&body) {
            return tally.answer("bad_request", ses_error(400, "BadRequestException", "incomplete request"));
        }
        match state.fault() {
            Fault::TooManyRequests if state.roll() < 0.5 => tally.answer(
                "limit_exceeded",
                ses_error(400, "LimitExceededException", "Daily message quota exceeded."),
            ),
            Fault::TooManyRequests => tally
                .answer("429", ses_error(429, "TooManyRequestsException", "Maximum sending rate exceeded.")),
            Fault::ServerError(500) => tally.answer("500", ses_error(500, "InternalFailure", "injected")),
            Fault::ServerError(_) => tally.answer("503", ses_error(503, "ServiceUnavailable", "injected")),
            Fault::Hang => tally
                .answer("hang_then_503", ses_error(503, "ServiceUnavailable", "injected").set_delay(HANG)),
            Fault::None if to.starts_with(REJECTED) => tally.answer(
                "rejected",
                ses_error(400, "MessageRejected", "Email address is on the suppression list."),
            ),
            Fault::None => {
                tally.deliver(to);
                let id = format!("0100{}-ses", ulid::Ulid::new());
                tally.answer("200", ResponseTemplate::new(200).set_body_json(json!({ "MessageId": id })))
            }
        }
    }
}

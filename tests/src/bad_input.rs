//! The bad-input catalogue's world (`tests/bad_input.rs`): two tenants with data, requests
//! for every route of the routing table shaped as each route would accept them, and the runner
//! that checks each case answers its problem and writes nothing.

use std::cell::RefCell;

use http::Method;
use retarget_shared::Clock;
use retarget_shared::domain::{Channel, EventKind, Plan};
use retarget_shared::edge::routes::{Function, ROUTES, Route};
use retarget_shared::edge::signatures::{push_signature, twilio_signature};
use serde_json::{Value, json};

use crate::{ApiRequest, ApiResponse, PUBLIC_BASE_URL, TestApp, World};

pub const TOKEN_A: &str = "twilio-auth-token-of-app-a";
pub const TOKEN_B: &str = "twilio-auth-token-of-app-b";
/// One byte over the contract's 1 MiB body limit.
pub const OVER_LIMIT: usize = 1024 * 1024 + 1;

/// Two tenants with data, and the handlers of every HTTP function.
pub struct Fixture {
    pub world: World,
    /// Pro app with Twilio: owns every id the cases use.
    pub a: TestApp,
    /// Another pro app with its own Twilio token and push secret.
    pub b: TestApp,
    /// A free app without Twilio.
    pub free: TestApp,
    pub sms_subscription: String,
    pub push_subscription: String,
    pub push_message: String,
    pub sms_message: String,
    pub retarget: String,
    /// App A's tracking token for `push_message` to `push_subscription`.
    pub track_token: String,
    pub unsubscribe_token: String,
    /// A tracked link of app A's `sms_message` to `sms_subscription`.
    pub link_code: String,
    /// Audience cursor issued for app B's message.
    pub b_cursor: String,
    /// The cases [`Fixture::run`] checks.
    cases: RefCell<Vec<Case>>,
}

impl Fixture {
    pub async fn new() -> Self {
        let world = World::new().await;
        let a = world.twilio_app(TOKEN_A, "+15550009999").await;
        let b = world.twilio_app(TOKEN_B, "+15550009999").await;
        let free = world.app(Plan::Free).await;
        let sms_subscription = world.subscription(&a, Channel::Sms, "+15550000001", Some("alice")).await;
        let push_subscription = world.subscription(&a, Channel::Push, "push-token-a", Some("alice")).await;
        let push_message = world.message(&a, Channel::Push).await;
        let sms_message = world.message(&a, Channel::Sms).await;
        // An interaction so the source has an audience.
        world.record_each(&push_message, EventKind::Sent, &[push_subscription]).await;
        let track_token = world.track_token(&a, &push_message, push_subscription).await;
        let unsubscribe_token = world.unsubscribe_token(&a, &push_message, push_subscription).await;
        let link = retarget_shared::domain::Link {
            code: retarget_shared::domain::LinkCode::generate(),
            app_id: a.app.app_id,
            message_id: sms_message.message_id,
            subscription_id: sms_subscription,
            url: "https://shop.example/cart".into(),
            expires_at: world.clock.now() + chrono::Duration::days(30),
        };
        world.store.put_links(std::slice::from_ref(&link)).await.expect("a link");

        let mut fixture = Self {
            sms_subscription: sms_subscription.to_string(),
            push_subscription: push_subscription.to_string(),
            push_message: push_message.message_id.to_string(),
            sms_message: sms_message.message_id.to_string(),
            retarget: String::new(),
            track_token,
            unsubscribe_token,
            link_code: link.code.to_string(),
            b_cursor: String::new(),
            cases: RefCell::default(),
            world,
            a,
            b,
            free,
        };

        let body = json!({"source_message_id": fixture.push_message, "action": "sent", "contents": {"body": "Come back!"}});
        let created = fixture.call(Function::Retargets, fixture.a.post("/v1/retargets", &body)).await;
        assert_eq!(created.status, 201, "{created:?}");
        fixture.retarget = created.body["retarget_id"].as_str().expect("retarget_id").to_owned();

        // App B: a message whose audience has two members, paged one at a time for a cursor.
        let b_message = fixture.world.message(&fixture.b, Channel::Push).await;
        let mut b_subs = Vec::new();
        for token in ["b-1", "b-2"] {
            b_subs.push(fixture.world.subscription(&fixture.b, Channel::Push, token, None).await);
        }
        fixture.world.record_each(&b_message, EventKind::Sent, &b_subs).await;
        let target = format!("/v1/messages/{}/audience?action=sent&limit=1", b_message.message_id);
        let page = fixture.call(Function::Audiences, fixture.b.get(&target)).await;
        assert_eq!(page.status, 200, "{page:?}");
        fixture.b_cursor = page.body["next_cursor"].as_str().expect("a next cursor").to_owned();
        fixture
    }

    /// Hands the request to `function` itself, whatever its path: each case is answered by the
    /// function owning its route, not by the router.
    pub async fn call(&self, function: Function, request: ApiRequest) -> ApiResponse {
        self.world.call_function(function, request).await
    }

    /// The existing id of app A each templated route is about.
    pub fn id_for(&self, route: Route) -> Option<String> {
        match route {
            Route::CreateSubscription
            | Route::CreateMessage
            | Route::RecordEvents
            | Route::CreateRetarget
            | Route::Track
            | Route::TrackPreflight
            | Route::ListMessages
            | Route::GetDeliveryPolicy
            | Route::PutDeliveryPolicy => None,
            Route::GetSubscription | Route::Unsubscribe => Some(self.sms_subscription.clone()),
            Route::GetMessage
            | Route::Audience
            | Route::AudienceCount
            | Route::AudienceCsv
            | Route::MessageRetargets => Some(self.push_message.clone()),
            Route::GetRetarget | Route::CancelRetarget => Some(self.retarget.clone()),
            Route::TwilioWebhook | Route::TwilioInbound | Route::PushWebhook => {
                Some(self.a.app.app_id.to_string())
            }
            Route::OpenLink => Some(self.link_code.clone()),
            Route::UnsubscribePage | Route::UnsubscribeOneClick => Some(self.unsubscribe_token.clone()),
        }
    }

    /// A request that the route would accept (or at least not refuse for its form) from app A.
    pub fn valid_target(&self, route: Route) -> String {
        let template = template_of(route);
        let path = fill(template, self.id_for(route).as_deref());
        match route {
            Route::Audience | Route::AudienceCount | Route::AudienceCsv => format!("{path}?action=sent"),
            Route::TwilioWebhook => {
                format!("{path}?message_id={}&subscription_id={}", self.sms_message, self.sms_subscription)
            }
            _ => path,
        }
    }

    /// A well-formed body for the route (JSON, or Twilio's form).
    pub fn valid_body(&self, route: Route) -> Option<Vec<u8>> {
        let json = match route {
            Route::CreateSubscription => {
                json!({"channel": "sms", "phone_number": "+15550000002", "external_user_id": "bob"})
            }
            Route::CreateMessage => json!({
                "channel": "sms",
                "contents": {"body": "hello"},
                "include_subscription_ids": [self.sms_subscription],
            }),
            Route::RecordEvents => json!({"events": [{
                "message_id": self.sms_message,
                "subscription_id": self.sms_subscription,
                "kind": "sent",
            }]}),
            Route::CreateRetarget => json!({
                "source_message_id": self.push_message,
                "action": "sent",
                "contents": {"body": "Come back!"},
            }),
            Route::PushWebhook => self.push_event(json!({})),
            Route::TwilioWebhook => return Some(b"MessageSid=SM1&MessageStatus=delivered".to_vec()),
            Route::TwilioInbound => return Some(b"From=%2B15550000009&To=%2B15550001111&Body=HELP".to_vec()),
            Route::PutDeliveryPolicy => json!({
                "quiet_hours": {"start": "21:00", "end": "08:00", "channels": ["sms"]},
                "default_timezone": "America/New_York",
                "frequency_cap": {"max": 3, "per_hours": 24, "channels": ["push", "sms"]},
            }),
            Route::Track => json!({"token": self.track_token, "kind": "clicked"}),
            Route::UnsubscribeOneClick => return Some(b"List-Unsubscribe=One-Click".to_vec()),
            Route::TrackPreflight
            | Route::OpenLink
            | Route::UnsubscribePage
            | Route::ListMessages
            | Route::GetSubscription
            | Route::Unsubscribe
            | Route::GetMessage
            | Route::Audience
            | Route::AudienceCount
            | Route::AudienceCsv
            | Route::MessageRetargets
            | Route::GetRetarget
            | Route::CancelRetarget
            | Route::GetDeliveryPolicy => return None,
        };
        Some(json.to_string().into_bytes())
    }

    /// A valid push event of app A with `overrides` merged in (`null` removes a field).
    pub fn push_event(&self, overrides: Value) -> Value {
        let mut event = json!({
            "event_id": "evt-1",
            "kind": "delivered",
            "message_id": self.push_message,
            "subscription_id": self.push_subscription,
            "occurred_at": "2026-11-28T14:00:00Z",
        });
        merge(&mut event, overrides);
        event
    }

    /// A request for `route` from app A: authenticated, signed (webhooks), with `body`.
    pub fn request(&self, route: Route, target: &str, body: Option<&[u8]>) -> ApiRequest {
        let (method, _, _, _) = route_entry(route);
        self.request_as(method.as_str(), route, target, body)
    }

    /// As [`Fixture::request`], with another method.
    pub fn request_as(&self, method: &str, route: Route, target: &str, body: Option<&[u8]>) -> ApiRequest {
        let mut request = ApiRequest::new(method, target);
        match route {
            Route::TwilioWebhook | Route::TwilioInbound => {
                let params = retarget_shared::edge::request::url_decode_pairs(body.unwrap_or_default());
                let signature = twilio_signature(TOKEN_A, &format!("{PUBLIC_BASE_URL}{target}"), &params);
                request = request
                    .header("content-type", "application/x-www-form-urlencoded")
                    .header("x-twilio-signature", &signature);
            }
            Route::PushWebhook => {
                let header = self.push_header(&self.a, self.now(), body.unwrap_or_default());
                request =
                    request.header("content-type", "application/json").header("retarget-signature", &header);
            }
            // The token (or the link's code) is the credential.
            Route::Track | Route::TrackPreflight | Route::OpenLink => {
                if body.is_some() {
                    request = request.header("content-type", "application/json");
                }
            }
            Route::UnsubscribePage | Route::UnsubscribeOneClick => {
                if body.is_some() {
                    request = request.header("content-type", "application/x-www-form-urlencoded");
                }
            }
            _ => {
                request = request.bearer(&self.a.api_key);
                if body.is_some() {
                    request = request.header("content-type", "application/json");
                }
            }
        }
        match body {
            Some(body) => request.raw_body(body),
            None => request,
        }
    }

    pub fn push_header(&self, app: &TestApp, t: i64, body: &[u8]) -> String {
        format!("t={t},v1={}", push_signature(&app.push_webhook_secret, t, body))
    }

    pub fn now(&self) -> i64 {
        self.world.clock.now().timestamp()
    }

    /// Everything in the table, in a stable order.
    pub async fn snapshot(&self) -> Vec<String> {
        self.world.snapshot().await
    }

    pub async fn queued(&self) -> usize {
        let queues = self.world.queues().await;
        queues.drain(&queues.push).await.len() + queues.drain(&queues.sms).await.len()
    }

    /// Adds a case: `request` to `route` must answer `status` with problem `code`.
    pub fn expect(
        &self,
        name: impl Into<String>,
        route: Route,
        request: ApiRequest,
        status: u16,
        code: &'static str,
    ) {
        self.cases.borrow_mut().push(Case { name: name.into(), route, request, status, code, allow: None });
    }

    /// Adds a case: `request` to `route` must answer 405 `method_not_allowed` with exactly
    /// this `Allow` header (e.g. `GET, DELETE`).
    pub fn expect_405(&self, name: impl Into<String>, route: Route, request: ApiRequest, allow: String) {
        let (status, code) = (405, "method_not_allowed");
        self.cases.borrow_mut().push(Case {
            name: name.into(),
            route,
            request,
            status,
            code,
            allow: Some(allow),
        });
    }

    /// Whether a case added so far is named with this prefix.
    pub fn has_case(&self, name_prefix: &str) -> bool {
        self.cases.borrow().iter().any(|c| c.name.starts_with(name_prefix))
    }

    /// Runs every case added; each must answer its problem and leave the table and queues
    /// untouched. A 405 must carry `Allow` (the expected one when the case names it), and no
    /// other answer may.
    pub async fn run(&self) {
        let cases = self.cases.take();
        assert!(!cases.is_empty());
        let mut before = self.snapshot().await;
        let mut failures = Vec::new();
        let total = cases.len();
        for case in cases {
            let (_, _, _, function) = route_entry(case.route);
            let raw = self.world.handlers().await.handle(*function, case.request.build()).await;
            let allow =
                raw.headers().get(http::header::ALLOW).map(|v| v.to_str().unwrap_or("(not text)").to_owned());
            let response = ApiResponse::from(raw);
            let mut problems = Vec::new();
            match (response.status, &allow, &case.allow) {
                (405, Some(got), Some(want)) if got != want => {
                    problems.push(format!("Allow: {got}, expected Allow: {want}"));
                }
                (405, None, _) => problems.push("a 405 without Allow".to_owned()),
                (405, Some(_), _) => {}
                (_, Some(got), _) => problems.push(format!("Allow: {got} on a {}", response.status)),
                (_, None, _) => {}
            }
            // A link a person followed that leads nowhere is a page, not a problem document.
            let link_page =
                matches!(case.route, Route::OpenLink | Route::UnsubscribePage | Route::UnsubscribeOneClick)
                    && (case.status, case.code) == (404, "not_found")
                    && response.status == 404
                    && response.content_type.starts_with("text/html");
            if !link_page
                && (response.status, response.content_type.as_str(), response.body["code"].as_str())
                    != (case.status, "application/problem+json", Some(case.code))
            {
                problems.push(format!(
                    "answered {} {} {}, expected {} {}",
                    response.status, response.content_type, response.body, case.status, case.code
                ));
            }
            let after = self.snapshot().await;
            if after != before {
                let added: Vec<_> = after.iter().filter(|i| !before.contains(i)).collect();
                let removed: Vec<_> = before.iter().filter(|i| !after.contains(i)).collect();
                problems.push(format!("wrote to the table: added {added:?}, changed/removed {removed:?}"));
                // The next case compares with the table as it is now, so one write fails one case.
                before = after;
            }
            if *function == Function::Messages {
                let queued = self.queued().await;
                if queued > 0 {
                    problems.push(format!("sent {queued} SQS messages"));
                }
            }
            if !problems.is_empty() {
                failures.push(format!("[{}] {}", case.name, problems.join("; ")));
            }
        }
        assert!(failures.is_empty(), "{} of {total} cases failed:\n{}", failures.len(), failures.join("\n"));
        eprintln!("{total} bad-input cases answered their problem and wrote nothing");
    }
}

/// One row of the catalogue.
struct Case {
    name: String,
    route: Route,
    request: ApiRequest,
    status: u16,
    code: &'static str,
    /// The `Allow` a 405 must carry.
    allow: Option<String>,
}

pub fn route_entry(route: Route) -> &'static (Method, &'static str, Route, Function) {
    ROUTES.iter().find(|r| r.2 == route).expect("every route is in ROUTES")
}

pub fn template_of(route: Route) -> &'static str {
    route_entry(route).1
}

/// The template with its one parameter replaced.
pub fn fill(template: &str, id: Option<&str>) -> String {
    match id {
        Some(id) => template.replace("{id}", id).replace("{app_id}", id),
        None => template.to_owned(),
    }
}

pub fn label(route: Route) -> String {
    let (method, template, _, _) = route_entry(route);
    format!("{method} {template}")
}

/// Merges `overrides` into `target` (objects recursively; `null` removes the field).
pub fn merge(target: &mut Value, overrides: Value) {
    if let (Some(t), Value::Object(o)) = (target.as_object_mut(), overrides) {
        for (k, v) in o {
            match v {
                Value::Null => {
                    t.remove(&k);
                }
                Value::Object(_) if t.get(&k).is_some_and(Value::is_object) => {
                    merge(t.get_mut(&k).expect("present"), v);
                }
                v => {
                    t.insert(k, v);
                }
            }
        }
    }
}

/// What a 405 on `template`'s path lists in `Allow`: the methods the table serves it with, in
/// the table's order.
pub fn allow_of(template: &str) -> String {
    let methods: Vec<&str> = ROUTES.iter().filter(|r| r.1 == template).map(|r| r.0.as_str()).collect();
    methods.join(", ")
}

/// Does the route authenticate with an API key (every `/v1/*` route except the webhooks)?
pub fn needs_api_key(route: Route) -> bool {
    !matches!(
        route,
        Route::TwilioWebhook
            | Route::TwilioInbound
            | Route::PushWebhook
            | Route::Track
            | Route::TrackPreflight
            | Route::OpenLink
            | Route::UnsubscribePage
            | Route::UnsubscribeOneClick
    )
}

//! Issue 14: an app's provider secrets are readable only by the functions that send or verify
//! with them (and the operator CLI), and IAM enforces it, not convention.
//!
//! The design (docs/security.md): the app item is secret-free; each set of secrets lives in an
//! item of its own, `SECRET#{app}#{scope}` (`keys::secret`), and every function's policy in
//! `infra/template.yaml` carries an explicit `Deny` on `dynamodb:LeadingKeys` for the scopes it
//! does not need. No function may Scan (a Scan names no leading key, so no condition on one could
//! stop it), and the table's stream, which the stats function's role reads, carries keys only.
//!
//! Two proofs. The template's policies, evaluated the way IAM evaluates them (explicit deny
//! wins, otherwise an allow is needed), give each scope exactly its readers. And each function,
//! run through a DynamoDB proxy refusing what its own policy denies (DynamoDB Local evaluates no
//! IAM), does all its work without being refused once — while the same proxy, given a policy
//! denying every secret, stops the webhooks and the sender: the enforcement bites.

use std::collections::{BTreeMap, BTreeSet};

use retarget_local::{Handlers, workers};
use retarget_shared::Clock;
use retarget_shared::bootstrap::Infra;
use retarget_shared::domain::{AppId, Channel, SecretScope, Tracked};
use retarget_shared::edge::routes::Function;
use retarget_shared::edge::signatures::{push_signature, twilio_signature};
use retarget_shared::keys;
use retarget_tests::faults::{FaultProxy, FaultRates, Router, Service, sdk_through, string_like};
use retarget_tests::stack::{Stack, phone};
use retarget_tests::template::*;
use retarget_tests::twilio::ProviderFaults;
use retarget_tests::{ApiRequest, ApiResponse, PUBLIC_BASE_URL, World, sdk};
use serde_json::json;
use serde_yaml::Value;

const FUNCTIONS: [&str; 13] = [
    "SubscriptionsFunction",
    "MessagesFunction",
    "EventsFunction",
    "WebhooksFunction",
    "AudiencesFunction",
    "AudienceExportFunction",
    "RetargetsFunction",
    "SchedulerFunction",
    "StatsFunction",
    "SmsSenderFunction",
    "PushSenderFunction",
    "EmailSenderFunction",
    "EmailEventsFunction",
];

/// The functions with no AWS permission at all (beyond the logging and tracing SAM gives every
/// role): the dashboard serves files it carries in its binary.
const UNPRIVILEGED: [&str; 1] = ["DashboardFunction"];

/// Who may read each scope, and nobody else.
fn expected_readers(scope: SecretScope) -> BTreeSet<&'static str> {
    match scope {
        SecretScope::Sms => ["SmsSenderFunction", "WebhooksFunction"].into(),
        SecretScope::Push => ["PushSenderFunction"].into(),
        SecretScope::Hooks => ["WebhooksFunction"].into(),
    }
}

/// Every DynamoDB action that reads an item or can return one (`ReturnValues`), or change it.
const ITEM_ACTIONS: [&str; 14] = [
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:Query",
    "dynamodb:Scan",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:PartiQLSelect",
    "dynamodb:PartiQLInsert",
    "dynamodb:PartiQLUpdate",
    "dynamodb:PartiQLDelete",
    "dynamodb:GetRecords",
];

/// What a statement applies to, of what matters here.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Res {
    Table,
    Index(String),
    Stream,
    Any,
    Other(String),
}

#[derive(Debug)]
struct Stmt {
    allow: bool,
    actions: Vec<String>,
    resources: Vec<Res>,
    /// `ForAnyValue:StringLike` on `dynamodb:LeadingKeys`: the only condition these policies use.
    leading_keys_like: Option<Vec<String>>,
}

fn resource_of(v: &Value, what: &str) -> Res {
    if v.as_str() == Some("*") {
        return Res::Any;
    }
    match intrinsic(v) {
        Some((name, _)) if name == "GetAtt" => match get_att(v, what) {
            (id, attr) if id == "Table" && attr == "Arn" => Res::Table,
            (id, attr) if id == "Table" && attr == "StreamArn" => Res::Stream,
            (id, attr) => Res::Other(format!("{id}.{attr}")),
        },
        Some((name, Value::String(s))) if name == "Sub" => match s.strip_prefix("${Table.Arn}/index/") {
            Some(index) if !index.contains('*') => Res::Index(index.to_owned()),
            // An SES ARN (the email sender's identities and configuration sets), wildcards and
            // all, never names the table.
            _ if s.starts_with("arn:${AWS::Partition}:ses:") => Res::Other(s.clone()),
            _ if s.contains("Table") || s.contains('*') => panic!("{what}: cannot evaluate {s}"),
            _ => Res::Other(s.clone()),
        },
        _ => match v.as_str() {
            Some(s) if !s.contains('*') && !s.contains(":dynamodb:") => Res::Other(s.to_owned()),
            _ => panic!("{what}: cannot evaluate the resource {v:?}"),
        },
    }
}

fn statement(v: &Value, what: &str) -> Stmt {
    let allow = match as_str(field(v, "Effect", what), what) {
        "Allow" => true,
        "Deny" => false,
        other => panic!("{what}: Effect {other}"),
    };
    let actions =
        one_or_many(field(v, "Action", what), what).into_iter().map(|a| as_str(a, what).to_owned()).collect();
    let resources =
        one_or_many(field(v, "Resource", what), what).into_iter().map(|r| resource_of(r, what)).collect();
    assert!(opt_field(v, "NotAction").is_none() && opt_field(v, "NotResource").is_none(), "{what}: Not*");
    let leading_keys_like = opt_field(v, "Condition").map(|condition| {
        let map = condition.as_mapping().unwrap_or_else(|| panic!("{what}: Condition"));
        assert_eq!(map.len(), 1, "{what}: only ForAnyValue:StringLike is evaluated here: {condition:?}");
        let like = field(condition, "ForAnyValue:StringLike", what);
        assert_eq!(like.as_mapping().map(|m| m.len()), Some(1), "{what}: {like:?}");
        one_or_many(field(like, "dynamodb:LeadingKeys", what), what)
            .into_iter()
            .map(|p| as_str(p, what).to_owned())
            .collect()
    });
    assert!(!(allow && leading_keys_like.is_some()), "{what}: a conditional Allow is not evaluated here");
    Stmt { allow, actions, resources, leading_keys_like }
}

/// A function's statements on AWS: its inline `Policies` (SAM's `- Statement:` form), or its
/// explicit role's; SAM policy templates and managed policies other than logging and tracing
/// are refused (they could grant anything).
fn statements_of(t: &Value, id: &str) -> Vec<Stmt> {
    let function = resource(t, id, "AWS::Serverless::Function");
    let props = field(function, "Properties", id);
    let mut documents: Vec<&Value> = Vec::new();
    if let Some(policies) = opt_field(props, "Policies") {
        for (i, policy) in as_seq(policies, id).iter().enumerate() {
            let what = format!("{id}.Policies[{i}]");
            let statements =
                opt_field(policy, "Statement").unwrap_or_else(|| panic!("{what}: not a Statement list"));
            documents.extend(as_seq(statements, &what));
        }
    }
    if let Some(role) = opt_field(props, "Role") {
        let (role_id, _) = get_att(role, &format!("{id}.Role"));
        let role = resource(t, &role_id, "AWS::IAM::Role");
        for (i, policy) in as_seq(prop(role, &role_id, "Policies"), &role_id).iter().enumerate() {
            let what = format!("{role_id}.Policies[{i}]");
            documents
                .extend(as_seq(field(field(policy, "PolicyDocument", &what), "Statement", &what), &what));
        }
        for arn in as_seq(prop(role, &role_id, "ManagedPolicyArns"), &role_id) {
            let text = format!("{arn:?}");
            assert!(
                text.contains("AWSLambdaBasicExecutionRole") || text.contains("AWSXrayWriteOnlyAccess"),
                "{role_id}: managed policy {text} is not evaluated here"
            );
        }
    }
    if let Some(globals) = opt_field(t, "Globals").and_then(|g| opt_field(g, "Function")) {
        assert!(opt_field(globals, "Policies").is_none() && opt_field(globals, "Role").is_none());
    }
    documents.iter().enumerate().map(|(i, s)| statement(s, &format!("{id} statement {i}"))).collect()
}

/// IAM's decision for one request: an explicit deny wins; otherwise an allow is needed.
fn allowed(statements: &[Stmt], action: &str, res: &Res, leading_key: Option<&str>) -> bool {
    let matches = |s: &Stmt| {
        s.actions.iter().any(|a| string_like(a, action))
            && s.resources.iter().any(|r| r == res || *r == Res::Any)
    };
    let denied = statements.iter().filter(|s| !s.allow && matches(s)).any(|s| match &s.leading_keys_like {
        None => true,
        // ForAnyValue with the key absent (Scan, PartiQL) is false: such a deny does not apply.
        Some(patterns) => leading_key.is_some_and(|key| patterns.iter().any(|p| string_like(p, key))),
    });
    !denied && statements.iter().any(|s| s.allow && matches(s))
}

/// The `dynamodb:LeadingKeys` patterns a function's policy denies.
fn denied_patterns(t: &Value, id: &str) -> Vec<String> {
    statements_of(t, id)
        .into_iter()
        .filter(|s| !s.allow)
        .filter_map(|s| s.leading_keys_like)
        .flatten()
        .collect()
}

#[test]
fn the_template_lets_each_scope_of_secrets_be_read_by_its_functions_only() {
    let t = template();
    let app = AppId::new();
    let mut readers: BTreeMap<SecretScope, BTreeSet<&str>> = BTreeMap::new();
    for id in FUNCTIONS {
        let statements = statements_of(&t, id);
        // The deny must not stop everything: every function reads the secret-free app item.
        assert!(allowed(&statements, "dynamodb:GetItem", &Res::Table, Some(&keys::app(app))), "{id}");
        // A Scan names no leading key: nothing could keep it off the secret items.
        for action in ["dynamodb:Scan", "dynamodb:PartiQLSelect", "dynamodb:ExecuteStatement"] {
            for res in [Res::Table, Res::Index("gsi1".into()), Res::Index("gsi2".into())] {
                assert!(!allowed(&statements, action, &res, None), "{id} may {action} {res:?}");
            }
        }
        for scope in SecretScope::ALL {
            let key = keys::secret(app, scope);
            let reachable = ITEM_ACTIONS
                .iter()
                .filter(|a| allowed(&statements, a, &Res::Table, Some(&key)))
                .collect::<Vec<_>>();
            if !reachable.is_empty() {
                readers.entry(scope).or_default().insert(id);
            }
        }
        // The stream's records are keys only: its readers see no item's attributes.
        let reads_stream = ["dynamodb:GetRecords", "dynamodb:GetShardIterator"]
            .iter()
            .any(|a| allowed(&statements, a, &Res::Stream, None) || allowed(&statements, a, &Res::Any, None));
        if reads_stream {
            let spec = prop(resource(&t, "Table", "AWS::DynamoDB::Table"), "Table", "StreamSpecification");
            assert_eq!(as_str(field(spec, "StreamViewType", "Table"), "StreamViewType"), "KEYS_ONLY", "{id}");
        }
    }
    for scope in SecretScope::ALL {
        assert_eq!(
            readers.remove(&scope).unwrap_or_default(),
            expected_readers(scope),
            "readers of {scope:?}"
        );
    }
    // The tracking keyring: the push sender signs tracking tokens with it, the email sender
    // unsubscribe links; the webhooks function verifies both.
    let keyring_readers: BTreeSet<&str> = FUNCTIONS
        .iter()
        .copied()
        .filter(|id| {
            let statements = statements_of(&t, id);
            ITEM_ACTIONS.iter().any(|a| allowed(&statements, a, &Res::Table, Some(keys::TRACKING_KEYRING)))
        })
        .collect();
    assert_eq!(
        keyring_readers,
        ["EmailSenderFunction", "PushSenderFunction", "WebhooksFunction"].into(),
        "readers of the tracking keyring"
    );
    // Functions added later are caught here, not silently left out.
    let declared: BTreeSet<String> = field(&t, "Resources", "template")
        .as_mapping()
        .expect("Resources")
        .iter()
        .filter(|(_, r)| opt_field(r, "Type").and_then(Value::as_str) == Some("AWS::Serverless::Function"))
        .filter_map(|(k, _)| k.as_str().map(str::to_owned))
        .collect();
    let expected = FUNCTIONS.iter().chain(&UNPRIVILEGED).map(|f| (*f).to_owned()).collect::<BTreeSet<_>>();
    assert_eq!(declared, expected);
}

/// The dashboard's function can do nothing on AWS: no statement, no role, not even the app item
/// every other function reads; and nothing in its environment names the table or a queue.
#[test]
fn the_dashboard_function_has_no_permission_on_the_table_or_the_queues() {
    let t = template();
    for id in UNPRIVILEGED {
        let statements = statements_of(&t, id);
        assert!(statements.is_empty(), "{id} has statements: {statements:?}");
        let props = field(resource(&t, id, "AWS::Serverless::Function"), "Properties", id);
        assert!(opt_field(props, "Role").is_none() && opt_field(props, "Policies").is_none(), "{id}");
        assert!(opt_field(props, "Environment").is_none(), "{id} is given variables");
        let app = AppId::new();
        for action in
            ITEM_ACTIONS.iter().chain(&["sqs:SendMessage", "sqs:ReceiveMessage", "events:PutEvents"])
        {
            for res in [Res::Table, Res::Any] {
                assert!(!allowed(&statements, action, &res, Some(&keys::app(app))), "{id} may {action}");
            }
        }
    }
    if let Some(globals) = opt_field(&t, "Globals").and_then(|g| opt_field(g, "Function")) {
        assert!(
            opt_field(globals, "Environment").is_none(),
            "Globals give every function, the dashboard's too, variables"
        );
    }
}

/// The IAM evaluator itself: the shapes it must get right.
#[test]
fn the_evaluator_follows_iam() {
    let allow = Stmt {
        allow: true,
        actions: vec!["dynamodb:GetItem".into(), "dynamodb:Scan".into()],
        resources: vec![Res::Table],
        leading_keys_like: None,
    };
    let deny = Stmt {
        allow: false,
        actions: vec!["dynamodb:*".into()],
        resources: vec![Res::Table],
        leading_keys_like: Some(vec!["SECRET#*#SMS".into()]),
    };
    let s = [allow, deny];
    assert!(allowed(&s, "dynamodb:GetItem", &Res::Table, Some("APP#1")));
    assert!(!allowed(&s, "dynamodb:GetItem", &Res::Table, Some("SECRET#01#SMS")));
    assert!(allowed(&s, "dynamodb:GetItem", &Res::Table, Some("SECRET#01#PUSH")));
    assert!(!allowed(&s, "dynamodb:PutItem", &Res::Table, Some("APP#1")), "not allowed at all");
    assert!(allowed(&s, "dynamodb:Scan", &Res::Table, None), "a Scan escapes a LeadingKeys deny");
    assert!(!allowed(&s, "dynamodb:GetItem", &Res::Index("gsi1".into()), Some("APP#1")));
}

/// A World's handlers (as the local stack builds them) whose DynamoDB calls go through a proxy
/// refusing what `denied` names.
struct Confined {
    handlers: Handlers,
    proxy: FaultProxy,
    _sqs: FaultProxy,
    _router: Router,
}

async fn confined(world: &World, denied: &[String]) -> Confined {
    let upstream = |name: &str| std::env::var(name).expect("set by the services");
    let proxy = FaultProxy::start(
        Service::DynamoDb,
        &upstream("AWS_ENDPOINT_URL_DYNAMODB"),
        FaultRates::default(),
        1,
    )
    .await;
    proxy.deny_leading_keys(denied);
    let sqs =
        FaultProxy::start(Service::Sqs, &upstream("AWS_ENDPOINT_URL_SQS"), FaultRates::default(), 2).await;
    let router = Router::start(&proxy, &sqs, &upstream("AWS_ENDPOINT_URL_SQS")).await;
    let infra = Infra::new(sdk_through(sdk().await, &router.url), world.clock.clone());
    let queues = world.queues().await;
    let mut env = world.function_env(queues);
    let handlers = Handlers::from_env(&mut env, &infra).expect("handlers");
    Confined { handlers, proxy, _sqs: sqs, _router: router }
}

impl Confined {
    async fn call(&self, function: Function, request: ApiRequest) -> ApiResponse {
        self.handlers.handle(function, request.build()).await.into()
    }
}

/// A Twilio status callback for (message, subscription), signed with `token`.
fn twilio_callback(app: AppId, message: &str, sub: &str, status: &str, token: &str) -> ApiRequest {
    let path = format!("/v1/webhooks/twilio/{app}?message_id={message}&subscription_id={sub}");
    let params = vec![
        ("MessageSid".to_owned(), format!("SM{}", ulid::Ulid::new())),
        ("MessageStatus".to_owned(), status.to_owned()),
    ];
    let body: String = params.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
    ApiRequest::post(&path)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("X-Twilio-Signature", &twilio_signature(token, &format!("{PUBLIC_BASE_URL}{path}"), &params))
        .raw_body(body.as_bytes())
}

#[tokio::test]
async fn every_function_works_under_its_own_policy_and_the_policy_is_enforced() {
    let t = template();
    let mut stack = Stack::new(FaultRates::default(), ProviderFaults::default(), 14).await;
    stack.sender.retries = None;
    let (world, app) = (&stack.world, &stack.app);
    let api_policy = denied_patterns(&t, "MessagesFunction");
    assert_eq!(api_policy, [format!("{}*", keys::SECRET_PREFIX)]);
    for id in [
        "SubscriptionsFunction",
        "EventsFunction",
        "AudiencesFunction",
        "AudienceExportFunction",
        "RetargetsFunction",
    ] {
        assert_eq!(denied_patterns(&t, id), api_policy, "{id}");
    }
    let api = confined(world, &api_policy).await;

    // The API, end to end, under the API functions' policy.
    let mut subs = Vec::new();
    for i in 0..3 {
        let body = json!({"channel": "sms", "phone_number": phone(i)});
        let created = api.call(Function::Subscriptions, app.post("/v1/subscriptions", &body)).await;
        assert_eq!(created.status, 201, "{created:?}");
        subs.push(created.body["subscription_id"].as_str().expect("id").to_owned());
    }
    let got = api.call(Function::Subscriptions, app.get(&format!("/v1/subscriptions/{}", subs[0]))).await;
    assert_eq!(got.status, 200, "{got:?}");
    let body = json!({"channel": "sms", "contents": {"body": "Sale: https://shop.example/sale"}, "include_subscription_ids": subs});
    let created = api.call(Function::Messages, app.post("/v1/messages", &body)).await;
    assert_eq!(created.status, 202, "{created:?}");
    let message = created.body["message_id"].as_str().expect("message id").to_owned();

    // The SMS sender, under its policy, sends them all.
    stack.dynamodb_proxy.deny_leading_keys(&denied_patterns(&t, "SmsSenderFunction"));
    let jobs = stack.receive().await;
    let response = workers::invoke(&stack.sender, stack.event(&jobs)).await;
    assert!(response.batch_item_failures.is_empty(), "{:?}", response.batch_item_failures);
    assert_eq!(stack.twilio.accepted().len(), 3, "every recipient was sent");

    // The webhooks function verifies Twilio (SMS scope) and push (HOOKS scope) signatures.
    let hooks = confined(world, &denied_patterns(&t, "WebhooksFunction")).await;
    let delivered = twilio_callback(app.app.app_id, &message, &subs[0], "delivered", "token");
    assert_eq!(hooks.call(Function::Webhooks, delivered).await.status, 204);
    let push_body = json!({"event_id": "e-1", "kind": "delivered", "message_id": message,
        "subscription_id": subs[1], "occurred_at": "2026-11-28T14:00:00Z"})
    .to_string();
    let now = world.clock.now().timestamp();
    let signature =
        format!("t={now},v1={}", push_signature(&app.push_webhook_secret, now, push_body.as_bytes()));
    let pushed = ApiRequest::post(&format!("/v1/webhooks/push/{}", app.app.app_id))
        .header("content-type", "application/json")
        .header("retarget-signature", &signature)
        .raw_body(push_body.as_bytes());
    let pushed = hooks.call(Function::Webhooks, pushed).await;
    assert!(pushed.status < 300, "{pushed:?}");
    // ... and tracking tokens, with the tracking keyring (made by the first signer).
    let tracked = Tracked {
        app_id: app.app.app_id,
        message_id: message.parse().expect("message id"),
        subscription_id: subs[2].parse().expect("subscription id"),
    };
    let token = world.tracking().mint(&tracked).await.expect("a token");
    let track = ApiRequest::post("/v1/track").json(&json!({"token": token, "kind": "clicked"}));
    let tracked_call = hooks.call(Function::Webhooks, track).await;
    assert_eq!(tracked_call.status, 204, "{tracked_call:?}");

    // Events, audiences and retargets, under the API policy again.
    let events =
        json!({"events": [{"message_id": message, "subscription_id": subs[2], "kind": "delivered"}]});
    let recorded = api.call(Function::Events, app.post("/v1/events", &events)).await;
    assert!(recorded.status < 300, "{recorded:?}");
    let count = api
        .call(
            Function::Audiences,
            app.get(&format!("/v1/messages/{message}/audience/count?action=delivered")),
        )
        .await;
    assert_eq!(count.status, 200, "{count:?}");
    let audience =
        api.call(Function::Audiences, app.get(&format!("/v1/messages/{message}/audience?action=sent"))).await;
    assert_eq!(audience.status, 200, "{audience:?}");
    let body = json!({"source_message_id": message, "action": "delivered", "contents": {"body": "Thanks"}});
    let retarget = api.call(Function::Retargets, app.post("/v1/retargets", &body)).await;
    assert_eq!(retarget.status, 201, "{retarget:?}");

    // The scheduler dispatches it, then the stats count the stream, each under its policy.
    stack.dynamodb_proxy.deny_leading_keys(&denied_patterns(&t, "SchedulerFunction"));
    let report = retarget_shared::services::dispatch::tick(&stack.dispatch, None).await.expect("tick");
    assert_eq!((report.dispatched, report.errors), (1, 0), "{report:?}");
    stack.dynamodb_proxy.deny_leading_keys(&denied_patterns(&t, "StatsFunction"));
    stack.settle().await;
    let stats = api.call(Function::Messages, app.get(&format!("/v1/messages/{message}"))).await;
    assert_eq!(stats.body["stats"]["sent"], 3, "{stats:?}");
    assert_eq!(stats.body["stats"]["delivered"], 3, "{stats:?}");

    assert_eq!(api.proxy.refused(), [], "an API function reached for a secret");
    assert_eq!(hooks.proxy.refused(), [], "the webhooks function was refused");
    assert_eq!(stack.dynamodb_proxy.refused(), [], "the sender, the scheduler or the stats were refused");

    // The enforcement bites: under a policy denying every secret the webhooks cannot verify,
    // and the sender cannot send; nothing is recorded or sent.
    let denied = confined(world, &api_policy).await;
    let callback = twilio_callback(app.app.app_id, &message, &subs[1], "delivered", "token");
    let refused = denied.call(Function::Webhooks, callback).await;
    assert!(refused.status >= 500, "{refused:?}");
    let sms_secret = keys::secret(app.app.app_id, SecretScope::Sms);
    assert_eq!(denied.proxy.refused(), [("GetItem".to_owned(), sms_secret.clone())]);

    stack.dynamodb_proxy.deny_leading_keys(&api_policy);
    let later = world.subscription(app, Channel::Sms, &phone(7), None).await;
    let one = json!({"channel": "sms", "contents": {"body": "One more"}, "include_subscription_ids": [later.to_string()]});
    assert_eq!(world.call(app.post("/v1/messages", &one)).await.status, 202);
    let jobs = stack.receive().await;
    let response = workers::invoke(&stack.sender, stack.event(&jobs)).await;
    assert_eq!(response.batch_item_failures.len(), jobs.len(), "the job fails and stays on the queue");
    assert!(!stack.twilio.accepted().contains_key(&phone(7)));
    assert!(stack.dynamodb_proxy.refused().iter().any(|(_, key)| *key == sms_secret));
}

/// The delivery policy's writes, each allowed to the function that makes it (a missing action
/// is an AccessDenied on AWS that no emulator here would show): the policy on the app item
/// (messages), inbound STOP/START on subscriptions (webhooks), deferrals and cap ledgers (the
/// senders, also counting on the retarget), releasing deferrals (scheduler).
#[test]
fn the_delivery_policys_writes_are_allowed_where_they_are_made() {
    use retarget_shared::domain::{DeferralId, MessageId, RetargetId, SubscriptionId};
    let t = template();
    let app = AppId::new();
    let deferral = DeferralId::of(MessageId::new(), chrono::Utc::now(), &[SubscriptionId::new()]);
    let mut cases: Vec<(&str, &str, String)> = vec![
        ("MessagesFunction", "dynamodb:UpdateItem", keys::app(app)),
        (
            "WebhooksFunction",
            "dynamodb:GetItem",
            keys::address(app, retarget_shared::domain::Channel::Sms, "+15550000001"),
        ),
        ("WebhooksFunction", "dynamodb:UpdateItem", keys::subscription(app, SubscriptionId::new())),
        ("SchedulerFunction", "dynamodb:UpdateItem", keys::deferral(app, &deferral)),
        ("SchedulerFunction", "dynamodb:DeleteItem", keys::deferral(app, &deferral)),
    ];
    for sender in ["SmsSenderFunction", "PushSenderFunction"] {
        cases.push((sender, "dynamodb:PutItem", keys::deferral(app, &deferral)));
        cases.push((sender, "dynamodb:UpdateItem", keys::retarget(app, RetargetId::new())));
        cases.push((sender, "dynamodb:GetItem", keys::cap(app, "u:ada")));
        cases.push((sender, "dynamodb:PutItem", keys::cap(app, "u:ada")));
        cases.push((sender, "dynamodb:UpdateItem", keys::send(MessageId::new(), SubscriptionId::new())));
    }
    for (function, action, key) in cases {
        assert!(
            allowed(&statements_of(&t, function), action, &Res::Table, Some(&key)),
            "{function} may not {action} {key}"
        );
    }
}

/// The audience index (issue 19), written in the same transaction as every subscription change
/// and read by every audience: each write allowed to each function that changes a
/// subscription's status or person (an unsubscribe puts the inactive-set item, a resubscribe
/// deletes it, both update the person item), each read to each function that computes an
/// audience. A missing action would be an AccessDenied on AWS that DynamoDB Local never shows.
#[test]
fn the_audience_index_is_written_and_read_where_it_is_used() {
    use retarget_shared::domain::{Channel, ExternalUserId};
    let t = template();
    let app = AppId::new();
    let inactive = keys::inactive(app, Channel::Sms);
    let person = keys::person(app, &ExternalUserId::parse("ada").expect("a user id"));
    let mut cases: Vec<(&str, &str, String)> = Vec::new();
    // Subscribe, refresh, unsubscribe (API); STOP, START, one-click unsubscribe (webhooks).
    for function in ["SubscriptionsFunction", "WebhooksFunction"] {
        cases.push((function, "dynamodb:PutItem", inactive.clone()));
        cases.push((function, "dynamodb:DeleteItem", inactive.clone()));
        cases.push((function, "dynamodb:UpdateItem", person.clone()));
    }
    // Dead addresses (senders), bounces and complaints (email events): unsubscribes only.
    for function in ["SmsSenderFunction", "PushSenderFunction", "EmailSenderFunction", "EmailEventsFunction"]
    {
        cases.push((
            function,
            "dynamodb:GetItem",
            keys::subscription(app, retarget_shared::domain::SubscriptionId::new()),
        ));
        cases.push((function, "dynamodb:PutItem", inactive.clone()));
        cases.push((function, "dynamodb:UpdateItem", person.clone()));
    }
    for function in ["AudiencesFunction", "AudienceExportFunction", "SchedulerFunction"] {
        cases.push((function, "dynamodb:Query", inactive.clone()));
        cases.push((function, "dynamodb:BatchGetItem", person.clone()));
    }
    for (function, action, key) in cases {
        assert!(
            allowed(&statements_of(&t, function), action, &Res::Table, Some(&key)),
            "{function} may not {action} {key}"
        );
    }
}

//! The messages function with API Gateway events, against DynamoDB Local and the SQS emulator.

use chrono::Duration;
use retarget_shared::Clock;
use retarget_shared::domain::{
    Channel, EventKind, Plan, RECIPIENTS_PER_JOB, SubscriptionId, UnsubscribeReason,
};
use retarget_tests::{ApiRequest, ApiResponse, TestApp, TestQueues, World};
use serde_json::{Value, json};

struct Harness {
    world: World,
    queues: TestQueues,
}

impl Harness {
    async fn new() -> Self {
        let world = World::new().await;
        let queues = world.queues().await.clone();
        Self { world, queues }
    }

    /// A harness with one app on `plan`.
    async fn with_app(plan: Plan) -> (Self, TestApp) {
        let h = Self::new().await;
        let t = h.world.app(plan).await;
        (h, t)
    }

    /// `POST /v1/messages` of this body by `t`.
    async fn create(&self, t: &TestApp, body: &Value) -> ApiResponse {
        self.world.call(t.post("/v1/messages", body)).await
    }

    /// The id of the message `t` creates with this body.
    async fn created(&self, t: &TestApp, body: &Value) -> String {
        self.create(t, body).await.body["message_id"].as_str().unwrap().to_owned()
    }

    /// `GET /v1/messages/{id}` by `t`.
    async fn get(&self, t: &TestApp, id: &str) -> ApiResponse {
        self.world.call(t.get(&format!("/v1/messages/{id}"))).await
    }

    async fn sms(&self, t: &TestApp, phone: &str, user: Option<&str>) -> SubscriptionId {
        self.world.subscription(t, Channel::Sms, phone, user).await
    }

    async fn push(&self, t: &TestApp, token: &str, user: Option<&str>) -> SubscriptionId {
        self.world.subscription(t, Channel::Push, token, user).await
    }
}

/// A message on `channel` to one subscription.
fn to_one(channel: &str, subscription: SubscriptionId) -> Value {
    json!({"channel": channel, "contents": {"body": "x"}, "include_subscription_ids": [subscription]})
}

#[tokio::test]
async fn a_message_to_subscription_ids_is_queued_to_its_channel() {
    let (h, t) = Harness::with_app(Plan::Pro).await;
    let a = h.sms(&t, "+15550000001", None).await;
    let b = h.sms(&t, "+15550000002", None).await;
    let push = h.push(&t, "tok", None).await;
    let gone = h.sms(&t, "+15550000003", None).await;
    h.world.store.unsubscribe(t.app.app_id, gone, UnsubscribeReason::Api).await.unwrap();

    let body = json!({
        "channel": "sms",
        "contents": {"body": "Your cart misses you"},
        "include_subscription_ids": [a, b, b, push, gone, SubscriptionId::new()],
    });
    let r = h.create(&t, &body).await;
    assert_eq!(r.status, 202, "{r:?}");
    assert_eq!((r.body["status"].as_str(), r.body["recipients"].as_u64()), (Some("sending"), Some(2)));

    let jobs = h.queues.drain(&h.queues.sms).await;
    assert_eq!(jobs.len(), 1);
    let mut queued = jobs[0].subscription_ids.clone();
    queued.sort();
    let mut expected = vec![a, b];
    expected.sort();
    assert_eq!(queued, expected, "active SMS subscriptions only, each once");
    assert_eq!(jobs[0].message_id.to_string(), r.body["message_id"].as_str().unwrap());
    assert!(h.queues.drain(&h.queues.push).await.is_empty());
}

#[tokio::test]
async fn external_user_ids_reach_every_active_subscription_of_each_person() {
    let (h, t) = Harness::with_app(Plan::Pro).await;
    let p1a = h.push(&t, "t1", Some("p1")).await;
    let p1b = h.push(&t, "t2", Some("p1")).await;
    let p2 = h.push(&t, "t3", Some("p2")).await;
    h.sms(&t, "+15550000009", Some("p1")).await;
    h.push(&t, "t4", Some("p3")).await;

    let body = json!({"channel":"push","contents":{"title":"Hi","body":"Back in stock","url":"https://shop.example/x"},
        "include_external_user_ids":["p1","p2","p1","nobody"]});
    let r = h.create(&t, &body).await;
    assert_eq!((r.status, r.body["recipients"].as_u64()), (202, Some(3)), "{r:?}");
    let mut queued: Vec<_> =
        h.queues.drain(&h.queues.push).await.into_iter().flat_map(|j| j.subscription_ids).collect();
    queued.sort();
    let mut expected = vec![p1a, p1b, p2];
    expected.sort();
    assert_eq!(queued, expected);
}

#[tokio::test]
async fn large_audiences_are_packed_many_recipients_per_sqs_message() {
    let (h, t) = Harness::with_app(Plan::Pro).await;
    let ids = h.world.subscriptions(&t, Channel::Push, 1200).await;
    let body = json!({"channel":"push","contents":{"body":"x"},"include_subscription_ids": ids});
    let r = h.create(&t, &body).await;
    assert_eq!(r.body["recipients"], 1200);
    let jobs = h.queues.drain(&h.queues.push).await;
    assert_eq!(jobs.len(), 1200usize.div_ceil(RECIPIENTS_PER_JOB));
    // The messages function's own queue: its requests are what is counted.
    let queue = h.world.messages_push_queue().await;
    assert_eq!(queue.stats.batch_requests.load(std::sync::atomic::Ordering::Relaxed), 1);
    let total: usize = jobs.iter().map(|j| j.subscription_ids.len()).sum();
    assert_eq!(total, 1200);
}

#[tokio::test]
async fn get_returns_the_message_with_stats_and_its_30_day_expiry() {
    let (h, t) = Harness::with_app(Plan::Pro).await;
    let a = h.push(&t, "a", None).await;
    let id = h.created(&t, &to_one("push", a)).await;

    let message = h.world.store.get_message(t.app.app_id, id.parse().unwrap()).await.unwrap().unwrap();
    h.world.record(&message, &[(a, EventKind::Sent, None), (a, EventKind::Clicked, None)]).await;
    h.world.settle().await;

    let got = h.get(&t, &id).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["channel"], "push");
    assert_eq!(got.body["retargetable"], true);
    assert_eq!(
        got.body["stats"],
        json!({"sent":1,"delivered":0,"clicked":1,"failed":0,"undelivered":0,"converted":0})
    );
    assert!(got.body.get("retarget_of").is_none());
    let created_at = chrono::DateTime::parse_from_rfc3339(got.body["created_at"].as_str().unwrap()).unwrap();
    let expires_at = chrono::DateTime::parse_from_rfc3339(got.body["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(expires_at - created_at, Duration::days(30));

    h.world.clock.advance(Duration::days(30));
    let later = h.get(&t, &id).await;
    assert_eq!(later.body["stats"]["sent"], 0, "expired data is never returned");
    // The message item itself lives 90 days more (to answer 410 for audiences), then it is
    // gone even though DynamoDB Local never deletes it.
    h.world
        .clock
        .advance(Duration::days(retarget_shared::keys::MESSAGE_TOMBSTONE_DAYS) - Duration::seconds(1));
    assert_eq!(h.get(&t, &id).await.status, 200);
    h.world.clock.advance(Duration::seconds(1));
    h.get(&t, &id).await.assert_problem(404, "not_found");
}

#[tokio::test]
async fn free_plan_messages_are_not_retargetable() {
    let (h, t) = Harness::with_app(Plan::Free).await;
    let a = h.sms(&t, "+15550000001", None).await;
    let id = h.created(&t, &to_one("sms", a)).await;
    let got = h.get(&t, &id).await;
    assert_eq!(got.body["retargetable"], false);
}

#[tokio::test]
async fn scheduled_messages_wait_for_their_time() {
    let (h, t) = Harness::with_app(Plan::Pro).await;
    let a = h.sms(&t, "+15550000001", None).await;
    let send_at = retarget_shared::clock::rfc3339(h.world.clock.now() + Duration::hours(2));
    let body =
        json!({"channel":"sms","contents":{"body":"x"},"include_subscription_ids":[a],"send_at":send_at});
    let r = h.create(&t, &body).await;
    assert_eq!((r.status, r.body["status"].as_str()), (202, Some("scheduled")));
    assert!(h.queues.drain(&h.queues.sms).await.is_empty());
}

#[tokio::test]
async fn another_apps_message_is_not_found_and_bad_input_writes_nothing() {
    let (h, t) = Harness::with_app(Plan::Pro).await;
    let other = h.world.app(Plan::Pro).await;
    let a = h.sms(&t, "+15550000001", None).await;
    let body = to_one("sms", a);
    let id = h.created(&t, &body).await;
    h.get(&other, &id).await.assert_problem(404, "not_found");
    // Another app naming my subscription reaches nobody.
    let theirs = h.create(&other, &body).await;
    assert_eq!(theirs.body["recipients"], 0);
    h.queues.drain(&h.queues.sms).await;

    let before = h.world.scan_all().await.len();
    let far = retarget_shared::clock::rfc3339(h.world.clock.now() + Duration::days(31));
    h.world.call(ApiRequest::post("/v1/messages").json(&body)).await.assert_problem(401, "unauthorized");
    for invalid in [
        json!({"channel":"sms","contents":{"body":"x"}}),
        json!({"channel":"sms","contents":{"body":"x"},"include_subscription_ids":[a],"include_external_user_ids":["u"]}),
        json!({"channel":"sms","contents":{"body":"x"},"include_subscription_ids":[]}),
        json!({"channel":"sms","contents":{"body":"x"},"include_subscription_ids":["nope"]}),
        json!({"channel":"sms","contents":{"body":""},"include_subscription_ids":[a]}),
        json!({"channel":"sms","contents":{"body":"x".repeat(1601)},"include_subscription_ids":[a]}),
        json!({"channel":"sms","contents":{"body":"x","url":"javascript:alert(1)"},"include_subscription_ids":[a]}),
        json!({"channel":"sms","contents":{"body":"x"},"include_subscription_ids":[a],"send_at":"tomorrow"}),
        json!({"channel":"sms","contents":{"body":"x"},"include_subscription_ids":[a],"send_at":far}),
        json!({"channel":"sms","contents":"x","include_subscription_ids":[a]}),
    ] {
        h.create(&t, &invalid).await.assert_problem(400, "invalid_request");
    }
    let not_an_object = ApiRequest::post("/v1/messages").bearer(&t.api_key).raw_body(b"[]");
    h.world.call(not_an_object).await.assert_problem(400, "invalid_request");
    assert_eq!(h.world.scan_all().await.len(), before);
    assert!(h.queues.drain(&h.queues.sms).await.is_empty());
}

/// Issue 14: a channel the app has no provider credentials for is refused before anything is
/// created or queued (no message for every recipient to fail with "app has no FCM service
/// account"); credentials added later make the same request go through.
#[tokio::test]
async fn a_channel_without_credentials_is_refused_and_nothing_is_created() {
    let h = Harness::new().await;
    let bare = h.world.bare_app(Plan::Pro).await;
    let sms_only = h.world.sms_only_app().await;
    let (push_sub, sms_sub) =
        (h.push(&bare, "tok-1", None).await, h.sms(&sms_only, "+15550000001", None).await);
    let bare_sms = h.sms(&bare, "+15550000002", None).await;
    let before = h.world.snapshot().await;
    for (t, channel, sub) in
        [(&bare, "push", push_sub), (&bare, "sms", bare_sms), (&sms_only, "push", sms_sub)]
    {
        let refused = h.create(t, &to_one(channel, sub)).await;
        refused.assert_problem(422, "channel_not_configured");
        assert!(refused.body["detail"].as_str().unwrap().contains(channel), "{refused:?}");
    }
    let scheduled = json!({"channel": "push", "contents": {"body": "x"}, "include_subscription_ids": [push_sub],
        "send_at": "2026-12-01T00:00:00Z"});
    h.create(&bare, &scheduled).await.assert_problem(422, "channel_not_configured");
    assert_eq!(h.world.snapshot().await, before, "nothing written");
    let queued = (h.queues.drain(&h.queues.push).await, h.queues.drain(&h.queues.sms).await);
    assert!(queued.0.is_empty() && queued.1.is_empty(), "nothing queued: {queued:?}");

    assert_eq!(h.create(&sms_only, &to_one("sms", sms_sub)).await.status, 202);
    let fcm = retarget_tests::placeholder_credentials().fcm;
    let credentials = retarget_shared::domain::Credentials { fcm, ..Default::default() };
    h.world.store.set_credentials(bare.app.app_id, credentials).await.unwrap();
    let bare = TestApp { app: h.world.store.get_app(bare.app.app_id).await.unwrap().unwrap(), ..bare };
    assert_eq!(h.create(&bare, &to_one("push", push_sub)).await.status, 202);
    h.create(&bare, &to_one("sms", bare_sms)).await.assert_problem(422, "channel_not_configured");
}

/// Issue 17: email needs the app's SES settings (`--ses-from`): without them a message on email
/// is refused whole (422 `channel_not_configured`, saying what to set), nothing written; with
/// them it is accepted and its recipients go on the email queue.
#[tokio::test]
async fn an_email_message_needs_the_apps_ses_settings_and_goes_on_the_email_queue() {
    let (h, t) = Harness::with_app(Plan::Pro).await;
    let sub = h.world.subscription(&t, Channel::Email, "ada@example.com", None).await;
    let body = json!({"channel": "email", "contents": {"title": "Hello", "body": "x"}, "include_subscription_ids": [sub]});
    let before = h.world.snapshot().await;
    let refused = h.create(&t, &body).await;
    refused.assert_problem(422, "channel_not_configured");
    assert!(refused.body["detail"].as_str().unwrap().contains("--ses-from"), "{refused:?}");
    assert_eq!(h.world.snapshot().await, before, "nothing written");

    let ses = retarget_shared::domain::SesConfig::new("Shop <shop@example.com>", Some("retarget-events"))
        .expect("SES settings");
    let credentials = retarget_shared::domain::Credentials { ses: Some(ses.clone()), ..Default::default() };
    h.world.store.set_credentials(t.app.app_id, credentials).await.unwrap();
    assert_eq!(h.world.store.get_app(t.app.app_id).await.unwrap().unwrap().ses, Some(ses), "kept");
    let accepted = h.create(&t, &body).await;
    assert_eq!(accepted.status, 202, "{accepted:?}");
    let jobs = h.queues.drain(&h.queues.email).await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!((jobs[0].channel, jobs[0].subscription_ids.clone()), (Channel::Email, vec![sub]));
    assert!(
        h.queues.drain(&h.queues.sms).await.is_empty() && h.queues.drain(&h.queues.push).await.is_empty()
    );
}

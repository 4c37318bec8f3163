//! The messages function with API Gateway events, against DynamoDB Local and the SQS emulator.

use chrono::Duration;
use retarget_messages::{Deps, handle};
use retarget_shared::adapters::queue::RECIPIENTS_PER_JOB;
use retarget_shared::adapters::store::{Address, Interaction};
use retarget_shared::domain::{EventKind, Plan, SubscriptionId};
use retarget_shared::{Clock, domain};
use retarget_tests::{ApiRequest, ApiResponse, TestApp, TestQueues, World};
use serde_json::json;

struct Harness {
    world: World,
    queues: TestQueues,
    deps: Deps,
}

impl Harness {
    async fn new() -> Self {
        let world = World::new().await;
        let queues = TestQueues::new().await;
        let deps = Deps {
            store: world.store.clone(),
            push_queue: queues.push.clone(),
            sms_queue: queues.sms.clone(),
        };
        Self { world, queues, deps }
    }

    async fn call(&self, request: ApiRequest) -> ApiResponse {
        handle(&self.deps, request.build()).await.into()
    }

    async fn sms(&self, t: &TestApp, phone: &str, user: Option<&str>) -> SubscriptionId {
        let user = user.map(|u| domain::ExternalUserId::parse(u).unwrap());
        let address = Address::Sms { phone_number: domain::PhoneNumber::parse(phone).unwrap() };
        self.world.store.upsert_subscription(t.app.app_id, address, user).await.unwrap().0.subscription_id
    }

    async fn push(&self, t: &TestApp, token: &str, user: Option<&str>) -> SubscriptionId {
        let user = user.map(|u| domain::ExternalUserId::parse(u).unwrap());
        let address = Address::Push { platform: domain::Platform::Android, token: token.into() };
        self.world.store.upsert_subscription(t.app.app_id, address, user).await.unwrap().0.subscription_id
    }
}

#[tokio::test]
async fn a_message_to_subscription_ids_is_queued_to_its_channel() {
    let h = Harness::new().await;
    let t = h.world.app(Plan::Pro).await;
    let a = h.sms(&t, "+15550000001", None).await;
    let b = h.sms(&t, "+15550000002", None).await;
    let push = h.push(&t, "tok", None).await;
    let gone = h.sms(&t, "+15550000003", None).await;
    h.world.store.unsubscribe(t.app.app_id, gone).await.unwrap();

    let body = json!({
        "channel": "sms",
        "contents": {"body": "Your cart misses you"},
        "include_subscription_ids": [a, b, b, push, gone, SubscriptionId::new()],
    });
    let r = h.call(ApiRequest::post("/v1/messages").bearer(&t.api_key).json(&body)).await;
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
    let h = Harness::new().await;
    let t = h.world.app(Plan::Pro).await;
    let p1a = h.push(&t, "t1", Some("p1")).await;
    let p1b = h.push(&t, "t2", Some("p1")).await;
    let p2 = h.push(&t, "t3", Some("p2")).await;
    h.sms(&t, "+15550000009", Some("p1")).await;
    h.push(&t, "t4", Some("p3")).await;

    let body = json!({"channel":"push","contents":{"title":"Hi","body":"Back in stock","url":"https://shop.example/x"},
        "include_external_user_ids":["p1","p2","p1","nobody"]});
    let r = h.call(ApiRequest::post("/v1/messages").bearer(&t.api_key).json(&body)).await;
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
    let h = Harness::new().await;
    let t = h.world.app(Plan::Pro).await;
    let mut ids = Vec::new();
    for i in 0..1200 {
        ids.push(h.push(&t, &format!("token-{i}"), None).await);
    }
    let body = json!({"channel":"push","contents":{"body":"x"},"include_subscription_ids": ids});
    let r = h.call(ApiRequest::post("/v1/messages").bearer(&t.api_key).json(&body)).await;
    assert_eq!(r.body["recipients"], 1200);
    let jobs = h.queues.drain(&h.queues.push).await;
    assert_eq!(jobs.len(), 1200usize.div_ceil(RECIPIENTS_PER_JOB));
    assert_eq!(h.queues.push.stats.batch_requests.load(std::sync::atomic::Ordering::Relaxed), 1);
    let total: usize = jobs.iter().map(|j| j.subscription_ids.len()).sum();
    assert_eq!(total, 1200);
}

#[tokio::test]
async fn get_returns_the_message_with_stats_and_its_30_day_expiry() {
    let h = Harness::new().await;
    let t = h.world.app(Plan::Pro).await;
    let a = h.push(&t, "a", None).await;
    let body = json!({"channel":"push","contents":{"body":"x"},"include_subscription_ids":[a]});
    let created = h.call(ApiRequest::post("/v1/messages").bearer(&t.api_key).json(&body)).await;
    let id = created.body["message_id"].as_str().unwrap().to_owned();

    let message = h.world.store.get_message(t.app.app_id, id.parse().unwrap()).await.unwrap().unwrap();
    let now = h.world.clock.now();
    let event = |kind| Interaction {
        subscription_id: a,
        kind,
        external_user_id: None,
        event_id: None,
        occurred_at: now,
    };
    h.world
        .store
        .record_interactions(&message.scope(), &[event(EventKind::Sent), event(EventKind::Clicked)])
        .await
        .unwrap();

    let got = h.call(ApiRequest::get(&format!("/v1/messages/{id}")).bearer(&t.api_key)).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body["channel"], "push");
    assert_eq!(got.body["retargetable"], true);
    assert_eq!(got.body["stats"], json!({"sent":1,"delivered":0,"clicked":1,"failed":0,"undelivered":0}));
    assert!(got.body.get("retarget_of").is_none());
    let created_at = chrono::DateTime::parse_from_rfc3339(got.body["created_at"].as_str().unwrap()).unwrap();
    let expires_at = chrono::DateTime::parse_from_rfc3339(got.body["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(expires_at - created_at, Duration::days(30));

    h.world.clock.advance(Duration::days(30));
    let later = h.call(ApiRequest::get(&format!("/v1/messages/{id}")).bearer(&t.api_key)).await;
    assert_eq!(later.body["stats"]["sent"], 0, "expired data is never returned");
    // The message item itself lives 90 days more (to answer 410 for audiences), then it is
    // gone even though DynamoDB Local never deletes it.
    h.world
        .clock
        .advance(Duration::days(retarget_shared::keys::MESSAGE_TOMBSTONE_DAYS) - Duration::seconds(1));
    assert_eq!(h.call(ApiRequest::get(&format!("/v1/messages/{id}")).bearer(&t.api_key)).await.status, 200);
    h.world.clock.advance(Duration::seconds(1));
    h.call(ApiRequest::get(&format!("/v1/messages/{id}")).bearer(&t.api_key))
        .await
        .assert_problem(404, "not_found");
}

#[tokio::test]
async fn free_plan_messages_are_not_retargetable() {
    let h = Harness::new().await;
    let t = h.world.app(Plan::Free).await;
    let a = h.sms(&t, "+15550000001", None).await;
    let body = json!({"channel":"sms","contents":{"body":"x"},"include_subscription_ids":[a]});
    let created = h.call(ApiRequest::post("/v1/messages").bearer(&t.api_key).json(&body)).await;
    let id = created.body["message_id"].as_str().unwrap();
    let got = h.call(ApiRequest::get(&format!("/v1/messages/{id}")).bearer(&t.api_key)).await;
    assert_eq!(got.body["retargetable"], false);
}

#[tokio::test]
async fn scheduled_messages_wait_for_their_time() {
    let h = Harness::new().await;
    let t = h.world.app(Plan::Pro).await;
    let a = h.sms(&t, "+15550000001", None).await;
    let send_at = retarget_shared::clock::rfc3339(h.world.clock.now() + Duration::hours(2));
    let body =
        json!({"channel":"sms","contents":{"body":"x"},"include_subscription_ids":[a],"send_at":send_at});
    let r = h.call(ApiRequest::post("/v1/messages").bearer(&t.api_key).json(&body)).await;
    assert_eq!((r.status, r.body["status"].as_str()), (202, Some("scheduled")));
    assert!(h.queues.drain(&h.queues.sms).await.is_empty());
}

#[tokio::test]
async fn another_apps_message_is_not_found_and_bad_input_writes_nothing() {
    let h = Harness::new().await;
    let t = h.world.app(Plan::Pro).await;
    let other = h.world.app(Plan::Pro).await;
    let a = h.sms(&t, "+15550000001", None).await;
    let body = json!({"channel":"sms","contents":{"body":"x"},"include_subscription_ids":[a]});
    let created = h.call(ApiRequest::post("/v1/messages").bearer(&t.api_key).json(&body)).await;
    let id = created.body["message_id"].as_str().unwrap();
    h.call(ApiRequest::get(&format!("/v1/messages/{id}")).bearer(&other.api_key))
        .await
        .assert_problem(404, "not_found");
    // Another app naming my subscription reaches nobody.
    let theirs = h.call(ApiRequest::post("/v1/messages").bearer(&other.api_key).json(&body)).await;
    assert_eq!(theirs.body["recipients"], 0);
    h.queues.drain(&h.queues.sms).await;

    let before = h.world.scan_all().await.len();
    let post = || ApiRequest::post("/v1/messages").bearer(&t.api_key);
    let far = retarget_shared::clock::rfc3339(h.world.clock.now() + Duration::days(31));
    for (request, status, code) in [
        (ApiRequest::post("/v1/messages").json(&body), 401, "unauthorized"),
        (post().json(&json!({"channel":"sms","contents":{"body":"x"}})), 400, "invalid_request"),
        (post().json(&json!({"channel":"sms","contents":{"body":"x"},"include_subscription_ids":[a],"include_external_user_ids":["u"]})), 400, "invalid_request"),
        (post().json(&json!({"channel":"sms","contents":{"body":"x"},"include_subscription_ids":[]})), 400, "invalid_request"),
        (post().json(&json!({"channel":"sms","contents":{"body":"x"},"include_subscription_ids":["nope"]})), 400, "invalid_request"),
        (post().json(&json!({"channel":"sms","contents":{"body":""},"include_subscription_ids":[a]})), 400, "invalid_request"),
        (post().json(&json!({"channel":"sms","contents":{"body":"x".repeat(1601)},"include_subscription_ids":[a]})), 400, "invalid_request"),
        (post().json(&json!({"channel":"sms","contents":{"body":"x","url":"javascript:alert(1)"},"include_subscription_ids":[a]})), 400, "invalid_request"),
        (post().json(&json!({"channel":"sms","contents":{"body":"x"},"include_subscription_ids":[a],"send_at":"tomorrow"})), 400, "invalid_request"),
        (post().json(&json!({"channel":"sms","contents":{"body":"x"},"include_subscription_ids":[a],"send_at":far})), 400, "invalid_request"),
        (post().json(&json!({"channel":"sms","contents":"x","include_subscription_ids":[a]})), 400, "invalid_request"),
        (post().raw_body(b"[]"), 400, "invalid_request"),
    ] {
        h.call(request).await.assert_problem(status, code);
    }
    assert_eq!(h.world.scan_all().await.len(), before);
    assert!(h.queues.drain(&h.queues.sms).await.is_empty());
}

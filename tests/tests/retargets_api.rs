//! The retargets function with API Gateway events against DynamoDB Local: scheduling across
//! channels, reading, listing, cancelling, the store's due index and claims, and every error
//! of the contract in its order of precedence.

use chrono::{DateTime, Duration, Utc};
use retarget_shared::Clock;
use retarget_shared::clock::rfc3339;
use retarget_shared::domain::{
    Channel, Contents, DispatchOutcome, DispatchProgress, Message, MessageId, MessageStatus, Plan,
    RetargetId, RetargetStatus,
};
use retarget_tests::{ApiRequest, ApiResponse, TestApp, World};
use serde_json::{Value, json};

struct Harness {
    world: World,
}

impl Harness {
    async fn new() -> Self {
        Self { world: World::new().await }
    }

    async fn post(&self, t: &TestApp, body: &Value) -> ApiResponse {
        self.world.call(t.post("/v1/retargets", body)).await
    }

    async fn get(&self, t: &TestApp, path: &str) -> ApiResponse {
        self.world.call(t.get(path)).await
    }

    async fn delete(&self, t: &TestApp, path: &str) -> ApiResponse {
        self.world.call(t.delete(path)).await
    }

    fn now(&self) -> DateTime<Utc> {
        self.world.clock.now()
    }

    /// Creates a retarget that must succeed; returns the 201 body.
    async fn created(&self, t: &TestApp, body: &Value) -> Value {
        let r = self.post(t, body).await;
        assert_eq!(r.status, 201, "{r:?}");
        r.body
    }

    /// A stored message of a pro app that is not retargetable (created while the app was free).
    async fn not_retargetable(&self, t: &TestApp) -> Message {
        let now = self.now();
        let contents = Contents { title: None, body: "old".into(), url: None, html: None };
        let message = Message::new(t.app.app_id, Channel::Push, contents, now);
        assert!(!message.retargetable);
        self.world.store.create_message(&message).await.unwrap();
        message
    }
}

fn id_of(v: &Value, field: &str) -> String {
    v[field].as_str().unwrap_or_else(|| panic!("{field} in {v}")).to_owned()
}

fn body(source: &Message, action: &str) -> Value {
    json!({"source_message_id": source.message_id, "action": action, "contents": {"body": "Come back!"}})
}

#[tokio::test]
async fn push_to_push_schedules_a_retarget_with_its_own_retargetable_message() {
    let h = Harness::new().await;
    let t = h.world.app(Plan::Pro).await;
    let source = h.world.message(&t, Channel::Push).await;
    let send_at = h.now() + Duration::hours(2);
    let mut b = body(&source, "clicked");
    b["contents"] = json!({"title": "Still there?", "body": "Your cart", "url": "https://shop.example/cart"});
    b["send_at"] = rfc3339(send_at).into();
    let created = h.created(&t, &b).await;
    let keys: Vec<&str> = created.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys.len(), 4, "{created}");
    assert_eq!(created["status"], "scheduled");
    assert_eq!(created["send_at"], rfc3339(send_at));
    let rt = id_of(&created, "retarget_id");
    let msg = id_of(&created, "message_id");
    assert!(RetargetId::parse(&rt).is_ok() && MessageId::parse(&msg).is_ok());

    let message = h.world.store.get_message(t.app.app_id, msg.parse().unwrap()).await.unwrap().unwrap();
    assert_eq!(message.retarget_of, Some(source.message_id));
    assert!(message.retargetable);
    assert_eq!(
        (message.channel, message.status, message.send_at),
        (Channel::Push, MessageStatus::Scheduled, send_at)
    );
    assert_eq!(message.contents.url.as_deref(), Some("https://shop.example/cart"));
    assert_eq!(message.created_at, h.now());

    let got = h.get(&t, &format!("/v1/retargets/{rt}")).await;
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(
        got.body,
        json!({
            "retarget_id": rt, "message_id": msg, "source_message_id": source.message_id.to_string(),
            "action": "clicked", "channel": "push", "send_at": rfc3339(send_at), "status": "scheduled",
            "audience_size": null, "enqueued": null, "unreachable": null, "deferred": 0, "capped": 0, "created_at": rfc3339(h.now()),
        })
    );
    let stored = h.world.store.get_retarget(t.app.app_id, rt.parse().unwrap()).await.unwrap().unwrap();
    assert_eq!(stored.status, RetargetStatus::Scheduled);
}

#[tokio::test]
async fn push_to_sms_and_sms_to_push_cross_channels() {
    let h = Harness::new().await;
    let t = h.world.app(Plan::Enterprise).await;
    let push = h.world.message(&t, Channel::Push).await;
    let sms = h.world.message(&t, Channel::Sms).await;

    let mut b = body(&push, "not_clicked");
    b["channel"] = "sms".into();
    let created = h.created(&t, &b).await;
    assert_eq!(created["send_at"], rfc3339(h.now()), "send_at defaults to now");
    let got = h.get(&t, &format!("/v1/retargets/{}", id_of(&created, "retarget_id"))).await;
    assert_eq!(
        (got.body["channel"].as_str(), got.body["action"].as_str()),
        (Some("sms"), Some("not_clicked"))
    );
    let m = h.world.store.get_message(t.app.app_id, id_of(&created, "message_id").parse().unwrap()).await;
    assert_eq!(m.unwrap().unwrap().channel, Channel::Sms);

    let mut b = body(&sms, "delivered");
    b["channel"] = "push".into();
    let created = h.created(&t, &b).await;
    let got = h.get(&t, &format!("/v1/retargets/{}", id_of(&created, "retarget_id"))).await;
    assert_eq!(got.body["channel"], "push");
    assert_eq!(got.body["source_message_id"], sms.message_id.to_string());
    let m = h.world.store.get_message(t.app.app_id, id_of(&created, "message_id").parse().unwrap()).await;
    assert_eq!(m.unwrap().unwrap().channel, Channel::Push);

    // Without a channel the retarget goes out on the source's.
    let created = h.created(&t, &body(&sms, "not_delivered")).await;
    let got = h.get(&t, &format!("/v1/retargets/{}", id_of(&created, "retarget_id"))).await;
    assert_eq!(got.body["channel"], "sms");
}

#[tokio::test]
async fn combined_predicates_take_arrays_or_comma_separated_kinds() {
    let h = Harness::new().await;
    let t = h.world.app(Plan::Pro).await;
    let source = h.world.message(&t, Channel::Push).await;
    let b = json!({"source_message_id": source.message_id, "did": ["delivered"], "did_not": "clicked",
        "contents": {"body": "x"}});
    let created = h.created(&t, &b).await;
    let got = h.get(&t, &format!("/v1/retargets/{}", id_of(&created, "retarget_id"))).await;
    assert_eq!(got.body["action"], Value::Null);
    assert_eq!(
        (got.body["did"].clone(), got.body["did_not"].clone()),
        (json!(["delivered"]), json!(["clicked"]))
    );

    let b =
        json!({"source_message_id": source.message_id, "did": "sent, delivered", "contents": {"body": "x"}});
    let created = h.created(&t, &b).await;
    let got = h.get(&t, &format!("/v1/retargets/{}", id_of(&created, "retarget_id"))).await;
    assert_eq!(
        (got.body["did"].clone(), got.body["did_not"].clone()),
        (json!(["sent", "delivered"]), json!([]))
    );

    let b = json!({"source_message_id": source.message_id, "did_not": ["clicked", "failed"], "contents": {"body": "x"}});
    h.created(&t, &b).await;
    // A segment field that is null is absent, like any other optional field.
    let b = json!({"source_message_id": source.message_id, "action": "sent", "filters": null,
        "include_subscription_ids": null, "contents": {"body": "x"}});
    h.created(&t, &b).await;
}

#[tokio::test]
async fn a_retarget_of_a_retarget_can_be_created_and_listed() {
    let h = Harness::new().await;
    let t = h.world.app(Plan::Pro).await;
    let source = h.world.message(&t, Channel::Push).await;
    let first = h.created(&t, &body(&source, "not_clicked")).await;
    let first_msg = id_of(&first, "message_id");
    let b = json!({"source_message_id": first_msg, "action": "clicked", "channel": "push", "contents": {"body": "y"}});
    let second = h.created(&t, &b).await;

    let listed = h.get(&t, &format!("/v1/messages/{first_msg}/retargets")).await;
    assert_eq!(listed.status, 200, "{listed:?}");
    let ids: Vec<&str> = listed.body["retargets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["retarget_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![id_of(&second, "retarget_id")]);
    let m = h.world.store.get_message(t.app.app_id, id_of(&second, "message_id").parse().unwrap()).await;
    assert_eq!(m.unwrap().unwrap().retarget_of.map(|m| m.to_string()), Some(first_msg));
}

#[tokio::test]
async fn list_get_cancel_and_409_once_claimed() {
    let h = Harness::new().await;
    let t = h.world.app(Plan::Pro).await;
    let source = h.world.message(&t, Channel::Sms).await;
    let other_source = h.world.message(&t, Channel::Sms).await;
    let a = h.created(&t, &body(&source, "sent")).await;
    h.world.clock.advance(Duration::seconds(1));
    let b = h.created(&t, &body(&source, "not_delivered")).await;
    h.created(&t, &body(&other_source, "delivered")).await;
    let (a_id, b_id) = (id_of(&a, "retarget_id"), id_of(&b, "retarget_id"));

    let listed = h.get(&t, &format!("/v1/messages/{}/retargets", source.message_id)).await;
    let views = listed.body["retargets"].as_array().unwrap().clone();
    assert_eq!(
        views.iter().map(|v| v["retarget_id"].as_str().unwrap()).collect::<Vec<_>>(),
        vec![a_id.as_str(), b_id.as_str()]
    );
    assert_eq!(views[1], h.get(&t, &format!("/v1/retargets/{b_id}")).await.body);
    let none = h
        .get(&t, &format!("/v1/messages/{}/retargets", h.world.message(&t, Channel::Push).await.message_id))
        .await;
    assert_eq!(none.body, json!({"retargets": []}));

    // Cancel: 200 with the view; again: the same, unchanged.
    let cancelled = h.delete(&t, &format!("/v1/retargets/{a_id}")).await;
    assert_eq!(
        (cancelled.status, cancelled.body["status"].as_str()),
        (200, Some("cancelled")),
        "{cancelled:?}"
    );
    assert_eq!(cancelled.body["retarget_id"], a_id.as_str());
    let again = h.delete(&t, &format!("/v1/retargets/{a_id}")).await;
    assert_eq!((again.status, &again.body), (200, &cancelled.body));
    assert_eq!(h.get(&t, &format!("/v1/retargets/{a_id}")).await.body["status"], "cancelled");

    // Claimed by the scheduler: no longer cancellable.
    let claimed = h.world.store.claim_retarget(t.app.app_id, b_id.parse().unwrap(), h.now()).await.unwrap();
    assert_eq!(claimed.map(|r| r.status), Some(RetargetStatus::Dispatching));
    h.delete(&t, &format!("/v1/retargets/{b_id}")).await.assert_problem(409, "already_dispatched");
    assert_eq!(h.get(&t, &format!("/v1/retargets/{b_id}")).await.body["status"], "dispatching");

    let finished = h
        .world
        .store
        .finish_retarget(
            t.app.app_id,
            b_id.parse().unwrap(),
            &DispatchOutcome::Dispatched(DispatchProgress {
                after: None,
                audience_size: 5,
                enqueued: 4,
                unreachable: 1,
            }),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(finished.status, RetargetStatus::Dispatched);
    let got = h.get(&t, &format!("/v1/retargets/{b_id}")).await;
    assert_eq!(
        (
            got.body["status"].clone(),
            got.body["audience_size"].clone(),
            got.body["enqueued"].clone(),
            got.body["unreachable"].clone()
        ),
        (json!("dispatched"), json!(5), json!(4), json!(1))
    );
    h.delete(&t, &format!("/v1/retargets/{b_id}")).await.assert_problem(409, "already_dispatched");
    // Finishing twice does nothing.
    let twice = h
        .world
        .store
        .finish_retarget(t.app.app_id, b_id.parse().unwrap(), &DispatchOutcome::Failed("x".into()))
        .await
        .unwrap();
    assert!(twice.is_none());
    assert_eq!(h.get(&t, &format!("/v1/retargets/{b_id}")).await.body["status"], "dispatched");
}

#[tokio::test]
async fn failed_dispatches_keep_their_reason() {
    let h = Harness::new().await;
    let t = h.world.app(Plan::Pro).await;
    let source = h.world.message(&t, Channel::Push).await;
    let rt: RetargetId = id_of(&h.created(&t, &body(&source, "sent")).await, "retarget_id").parse().unwrap();
    let store = &h.world.store;
    assert!(
        store
            .finish_retarget(t.app.app_id, rt, &DispatchOutcome::Failed("x".into()))
            .await
            .unwrap()
            .is_none(),
        "not claimed yet"
    );
    // A dispatch can only end dispatched or failed: `DispatchOutcome` has no other variant, so
    // "finish as cancelled" (once refused at run time) cannot be written at all.
    store.claim_retarget(t.app.app_id, rt, h.now()).await.unwrap().unwrap();
    store
        .finish_retarget(t.app.app_id, rt, &DispatchOutcome::Failed("source expired".into()))
        .await
        .unwrap()
        .unwrap();
    let got = h.get(&t, &format!("/v1/retargets/{rt}")).await;
    assert_eq!(
        (got.body["status"].as_str(), got.body["failure"].as_str()),
        (Some("failed"), Some("source expired"))
    );
    assert_eq!(got.body["audience_size"], Value::Null);
    h.delete(&t, &format!("/v1/retargets/{rt}")).await.assert_problem(409, "already_dispatched");
}

#[tokio::test]
async fn due_retargets_are_claimed_exactly_once_and_never_when_cancelled() {
    let h = Harness::new().await;
    let t = h.world.app(Plan::Pro).await;
    let store = &h.world.store;
    let source = h.world.message(&t, Channel::Push).await;
    let start = h.now();
    let mut later = body(&source, "sent");
    later["send_at"] = rfc3339(start + Duration::hours(1)).into();
    let due_later: RetargetId = id_of(&h.created(&t, &later).await, "retarget_id").parse().unwrap();
    let now_rt: RetargetId =
        id_of(&h.created(&t, &body(&source, "clicked")).await, "retarget_id").parse().unwrap();
    let cancelled: RetargetId =
        id_of(&h.created(&t, &body(&source, "delivered")).await, "retarget_id").parse().unwrap();
    h.delete(&t, &format!("/v1/retargets/{cancelled}")).await;

    let app = t.app.app_id;
    assert_eq!(store.due_retargets(start, 100).await.unwrap(), vec![(app, now_rt)]);
    assert!(store.claim_retarget(app, cancelled, start).await.unwrap().is_none(), "cancelled: never claimed");
    assert!(store.claim_retarget(app, due_later, start).await.unwrap().is_none(), "not due yet");
    assert!(store.claim_retarget(app, due_later, start + Duration::minutes(59)).await.unwrap().is_none());

    // Two schedulers race for the due one: exactly one wins.
    let (x, y) =
        tokio::join!(store.claim_retarget(app, now_rt, start), store.claim_retarget(app, now_rt, start));
    let winners = [x.unwrap(), y.unwrap()].into_iter().flatten().collect::<Vec<_>>();
    assert_eq!(winners.len(), 1);
    assert_eq!(winners[0].status, RetargetStatus::Dispatching);
    assert!(store.due_retargets(start, 100).await.unwrap().is_empty());

    // While its run holds the lease it is not due; a run that died leaves the lease to expire
    // and the retarget comes due again, to be resumed.
    let lease = Duration::seconds(retarget_shared::keys::DUE_LEASE_SECONDS);
    assert!(store.due_retargets(start + lease - Duration::seconds(1), 100).await.unwrap().is_empty());
    let in_an_hour = start + Duration::hours(1);
    let mut due = store.due_retargets(in_an_hour, 100).await.unwrap();
    due.sort();
    let mut expected = vec![(app, now_rt), (app, due_later)];
    expected.sort();
    assert_eq!(due, expected);
    let mut many = Vec::new();
    for _ in 0..8 {
        many.push(store.claim_retarget(app, due_later, in_an_hour));
    }
    let results = futures::future::join_all(many).await;
    assert_eq!(results.into_iter().filter(|r| matches!(r, Ok(Some(_)))).count(), 1);
    // Only a finished dispatch leaves the due index for good.
    for rt in [now_rt, due_later] {
        store
            .finish_retarget(app, rt, &DispatchOutcome::Dispatched(DispatchProgress::default()))
            .await
            .unwrap();
    }
    assert!(store.due_retargets(in_an_hour + Duration::days(40), 100).await.unwrap().is_empty());
    assert!(store.cancel_retarget(app, RetargetId::new()).await.unwrap().is_none());
}

#[tokio::test]
async fn due_retargets_come_earliest_first_and_respect_the_limit() {
    let h = Harness::new().await;
    let t = h.world.app(Plan::Pro).await;
    let source = h.world.message(&t, Channel::Push).await;
    let start = h.now();
    let mut ids = Vec::new();
    for minutes in [30, 10, 20] {
        let mut b = body(&source, "sent");
        b["send_at"] = rfc3339(start + Duration::minutes(minutes)).into();
        ids.push((minutes, id_of(&h.created(&t, &b).await, "retarget_id").parse::<RetargetId>().unwrap()));
    }
    ids.sort();
    let expected: Vec<_> = ids.iter().map(|(_, id)| (t.app.app_id, *id)).collect();
    let at = start + Duration::hours(1);
    assert_eq!(h.world.store.due_retargets(at, 100).await.unwrap(), expected);
    assert_eq!(h.world.store.due_retargets(at, 2).await.unwrap(), expected[..2]);
    assert_eq!(h.world.store.due_retargets(start + Duration::minutes(20), 100).await.unwrap(), expected[..2]);
}

#[tokio::test]
async fn send_at_window_edges_are_exact() {
    let h = Harness::new().await;
    let t = h.world.app(Plan::Pro).await;
    let source = h.world.message(&t, Channel::Push).await;
    let with_send_at = |at: DateTime<Utc>| {
        let mut b = body(&source, "sent");
        b["send_at"] = rfc3339(at).into();
        b
    };
    let expiry = source.created_at + Duration::days(30);
    assert_eq!(expiry, source.expires_at);
    let edge = h.created(&t, &with_send_at(expiry)).await;
    assert_eq!(edge["send_at"], rfc3339(expiry));
    h.post(&t, &with_send_at(expiry + Duration::seconds(1)))
        .await
        .assert_problem(422, "send_at_out_of_window");

    h.world.clock.advance(Duration::days(3));
    let now = h.now();
    let past = h.created(&t, &with_send_at(now - Duration::seconds(60))).await;
    assert_eq!(past["send_at"], rfc3339(now), "a time within the grace period means now");
    h.post(&t, &with_send_at(now - Duration::seconds(61))).await.assert_problem(422, "send_at_out_of_window");
    // Other offsets are the same instant.
    let mut b = body(&source, "sent");
    b["send_at"] = "2026-12-01T16:00:00+02:00".into();
    assert_eq!(h.created(&t, &b).await["send_at"], "2026-12-01T14:00:00Z");
}

#[tokio::test]
async fn a_source_is_retargetable_until_the_last_second_of_its_30_days() {
    let h = Harness::new().await;
    let t = h.world.app(Plan::Pro).await;
    let source = h.world.message(&t, Channel::Sms).await;
    h.world.clock.advance(Duration::days(30) - Duration::seconds(1));
    let created = h.created(&t, &body(&source, "delivered")).await;
    assert_eq!(created["send_at"], rfc3339(source.expires_at - Duration::seconds(1)));
    h.world.clock.advance(Duration::seconds(1));
    let before = h.world.scan_all().await.len();
    h.post(&t, &body(&source, "delivered")).await.assert_problem(410, "source_expired");
    assert_eq!(h.world.scan_all().await.len(), before);
}

#[tokio::test]
async fn another_apps_retargets_and_messages_are_not_found() {
    let h = Harness::new().await;
    let t = h.world.app(Plan::Pro).await;
    let other = h.world.app(Plan::Pro).await;
    let source = h.world.message(&t, Channel::Push).await;
    let created = h.created(&t, &body(&source, "sent")).await;
    let rt = id_of(&created, "retarget_id");

    h.get(&other, &format!("/v1/retargets/{rt}")).await.assert_problem(404, "not_found");
    h.delete(&other, &format!("/v1/retargets/{rt}")).await.assert_problem(404, "not_found");
    h.get(&other, &format!("/v1/messages/{}/retargets", source.message_id))
        .await
        .assert_problem(404, "not_found");
    h.post(&other, &body(&source, "sent")).await.assert_problem(404, "not_found");
    assert_eq!(h.get(&t, &format!("/v1/retargets/{rt}")).await.body["status"], "scheduled", "untouched");

    for path in [
        "/v1/retargets/nope",
        "/v1/retargets/01arz3ndektsv4rrffq69g5fav",
        &format!("/v1/retargets/{}", RetargetId::new()),
    ] {
        h.get(&t, path).await.assert_problem(404, "not_found");
        h.delete(&t, path).await.assert_problem(404, "not_found");
    }
    h.get(&t, "/v1/messages/nope/retargets").await.assert_problem(404, "not_found");
    h.get(&t, &format!("/v1/messages/{}/retargets", MessageId::new())).await.assert_problem(404, "not_found");
    let unknown = json!({"source_message_id": MessageId::new(), "action": "sent", "contents": {"body": "x"}});
    h.post(&t, &unknown).await.assert_problem(404, "not_found");
    let unparseable = json!({"source_message_id": "../x", "action": "sent", "contents": {"body": "x"}});
    h.post(&t, &unparseable).await.assert_problem(404, "not_found");

    // Unauthenticated: 401 on every route.
    for r in [
        ApiRequest::post("/v1/retargets").json(&body(&source, "sent")),
        ApiRequest::get(&format!("/v1/retargets/{rt}")),
        ApiRequest::new("DELETE", &format!("/v1/retargets/{rt}")).bearer("not-a-key"),
        ApiRequest::get(&format!("/v1/messages/{}/retargets", source.message_id)).bearer("nope"),
    ] {
        h.world.call(r).await.assert_problem(401, "unauthorized");
    }
    h.world
        .call(ApiRequest::new("PUT", &format!("/v1/retargets/{rt}")).bearer(&t.api_key))
        .await
        .assert_problem(405, "method_not_allowed");
}

/// Every error of POST /v1/retargets, each alone and in the contract's precedence, and none
/// of them writes anything.
#[tokio::test]
async fn errors_follow_the_contracts_precedence_and_write_nothing() {
    let h = Harness::new().await;
    let t = h.world.app(Plan::Pro).await;
    let free = h.world.app(Plan::Free).await;
    let push = h.world.message(&t, Channel::Push).await;
    let sms = h.world.message(&t, Channel::Sms).await;
    let free_push = h.world.message(&free, Channel::Push).await;
    let old = h.not_retargetable(&t).await;
    h.world.clock.advance(Duration::days(30));
    let now = h.now();
    // Created at the advanced time: fresh.
    let fresh = h.world.message(&t, Channel::Push).await;
    let fresh_sms = h.world.message(&t, Channel::Sms).await;
    let free_fresh = h.world.message(&free, Channel::Push).await;
    let fresh_old = h.not_retargetable(&t).await;
    let expired = push.clone();
    let too_late = rfc3339(now + Duration::days(31));
    let too_early = rfc3339(now - Duration::seconds(61));

    let src = |m: &Message| m.message_id.to_string();
    // Runs of cases: who sends the bodies, and the problem each must be answered.
    let groups: Vec<(Option<&TestApp>, u16, &str, Vec<Value>)> = vec![
        // 401 before anything.
        (None, 401, "unauthorized", vec![json!("not even an object")]),
        // 400 invalid_request: shape and types.
        (
            Some(&t),
            400,
            "invalid_request",
            vec![
                json!([]),
                json!({"action": "sent", "contents": {"body": "x"}}),
                json!({"source_message_id": src(&fresh), "action": "sent"}),
                json!({"source_message_id": 42, "action": "sent", "contents": {"body": "x"}}),
                json!({"source_message_id": src(&fresh), "action": 1, "contents": {"body": "x"}}),
                json!({"source_message_id": src(&fresh), "did": 5, "contents": {"body": "x"}}),
                json!({"source_message_id": src(&fresh), "did": [1], "contents": {"body": "x"}}),
                json!({"source_message_id": src(&fresh), "action": "sent", "contents": {"body": "x"}, "colour": "red"}),
                json!({"source_message_id": src(&fresh), "action": "sent", "contents": {"body": "x", "icon": "y"}}),
                json!({"source_message_id": src(&fresh), "action": "sent", "did": "sent", "contents": {"body": "x"}}),
                json!({"source_message_id": src(&fresh), "action": "sent", "did_not": [], "contents": {"body": "x"}}),
                json!({"source_message_id": src(&fresh), "contents": {"body": "x"}}),
                json!({"source_message_id": src(&fresh), "did": [], "did_not": " , ", "contents": {"body": "x"}}),
                json!({"source_message_id": src(&fresh), "action": "sent", "send_at": "tomorrow", "contents": {"body": "x"}}),
                json!({"source_message_id": src(&fresh), "action": "sent", "send_at": "2026-12-28 14:00:00", "contents": {"body": "x"}}),
                json!({"source_message_id": src(&fresh), "action": "sent", "send_at": 1_800_000_000, "contents": {"body": "x"}}),
                json!({"source_message_id": src(&fresh), "action": "sent", "channel": "fax", "contents": {"body": "x"}}),
                json!({"source_message_id": src(&fresh), "action": "sent", "contents": {"body": "  "}}),
                json!({"source_message_id": src(&fresh), "action": "sent", "contents": {"body": "x", "url": "javascript:alert(1)"}}),
                json!({"source_message_id": src(&fresh), "action": "sent", "channel": "sms", "contents": {"body": "x".repeat(1601)}}),
                // Without a channel, the contents are checked for the source's (sms: 1600 characters).
                json!({"source_message_id": src(&fresh_sms), "action": "sent", "contents": {"body": "x".repeat(1601)}}),
                // 400 before 422 segments, 404, 403, …
                json!({"source_message_id": src(&fresh), "action": "sent", "filters": [], "colour": 1, "contents": {"body": "x"}}),
                json!({"source_message_id": MessageId::new(), "action": "sent", "filters": [], "contents": {"body": ""}}),
            ],
        ),
        (
            Some(&free),
            400,
            "invalid_request",
            vec![
                json!({"source_message_id": src(&free_push), "action": "opened", "send_at": "soon", "contents": {"body": "x"}}),
            ],
        ),
        // 422 segments_not_combinable, whatever their value, before 404 and the rest.
        (
            Some(&t),
            422,
            "segments_not_combinable",
            vec![
                json!({"source_message_id": src(&fresh), "action": "sent", "included_segments": ["All"], "contents": {"body": "x"}}),
                json!({"source_message_id": src(&fresh), "action": "sent", "excluded_segments": "x", "contents": {"body": "x"}}),
                json!({"source_message_id": src(&fresh), "action": "sent", "filters": [{"field": "tag"}], "contents": {"body": "x"}}),
                json!({"source_message_id": src(&fresh), "action": "sent", "include_subscription_ids": [], "contents": {"body": "x"}}),
                json!({"source_message_id": src(&fresh), "action": "sent", "include_external_user_ids": 7, "contents": {"body": "x"}}),
                json!({"source_message_id": MessageId::new(), "action": "sent", "filters": {}, "contents": {"body": "x"}}),
            ],
        ),
        (
            Some(&free),
            422,
            "segments_not_combinable",
            vec![
                json!({"source_message_id": "nope", "action": "bad", "included_segments": [], "contents": {"body": "x"}}),
            ],
        ),
        // 404 before 403 …
        (
            Some(&free),
            404,
            "not_found",
            vec![
                json!({"source_message_id": MessageId::new(), "action": "sent", "contents": {"body": "x"}}),
                json!({"source_message_id": src(&fresh), "action": "sent", "contents": {"body": "x"}}),
            ],
        ),
        (
            Some(&t),
            404,
            "not_found",
            vec![json!({"source_message_id": src(&free_fresh), "action": "sent", "contents": {"body": "x"}})],
        ),
        // 403 before 410, 422, 400 invalid_action, 422 send_at.
        (
            Some(&free),
            403,
            "plan_required",
            vec![
                json!({"source_message_id": src(&free_fresh), "action": "sent", "contents": {"body": "x"}}),
                json!({"source_message_id": src(&free_push), "action": "sent", "contents": {"body": "x"}}),
                json!({"source_message_id": src(&free_fresh), "action": "opened", "send_at": too_late, "contents": {"body": "x"}}),
            ],
        ),
        // 410 before 422 not retargetable, 400 invalid_action and 422 send_at.
        (
            Some(&t),
            410,
            "source_expired",
            vec![
                json!({"source_message_id": src(&expired), "action": "sent", "contents": {"body": "x"}}),
                json!({"source_message_id": src(&old), "action": "sent", "contents": {"body": "x"}}),
                json!({"source_message_id": src(&sms), "action": "clicked", "send_at": too_early, "contents": {"body": "x"}}),
                json!({"source_message_id": src(&expired), "action": "sent", "send_at": too_late, "contents": {"body": "x"}}),
            ],
        ),
        // 422 not retargetable before invalid_action and send_at.
        (
            Some(&t),
            422,
            "source_not_retargetable",
            vec![
                json!({"source_message_id": src(&fresh_old), "action": "sent", "contents": {"body": "x"}}),
                json!({"source_message_id": src(&fresh_old), "action": "opened", "send_at": too_late, "contents": {"body": "x"}}),
            ],
        ),
        // 400 invalid_action, against the source's channel, before 422 send_at.
        (
            Some(&t),
            400,
            "invalid_action",
            vec![
                json!({"source_message_id": src(&fresh_sms), "did": ["clicked", "opened"], "channel": "push", "contents": {"body": "x"}}),
                json!({"source_message_id": src(&fresh_sms), "action": "not_opened", "send_at": too_late, "contents": {"body": "x"}}),
                json!({"source_message_id": src(&fresh), "did": ["undelivered"], "contents": {"body": "x"}}),
                json!({"source_message_id": src(&fresh), "action": "opened", "contents": {"body": "x"}}),
                json!({"source_message_id": src(&fresh), "action": "", "contents": {"body": "x"}}),
                json!({"source_message_id": src(&fresh), "did": "undelivered", "channel": "sms", "contents": {"body": "x"}}),
                json!({"source_message_id": src(&fresh), "did": ["opened"], "contents": {"body": "x"}}),
                json!({"source_message_id": src(&fresh), "did": ["sent"], "did_not": "sent", "contents": {"body": "x"}}),
            ],
        ),
        // 422 send_at_out_of_window last.
        (
            Some(&t),
            422,
            "send_at_out_of_window",
            vec![
                json!({"source_message_id": src(&fresh), "action": "sent", "send_at": too_late, "contents": {"body": "x"}}),
                json!({"source_message_id": src(&fresh), "action": "sent", "send_at": too_early, "contents": {"body": "x"}}),
            ],
        ),
    ];
    let cases = groups
        .iter()
        .flat_map(|(app, status, code, bodies)| bodies.iter().map(move |b| (b, app, status, code)));
    for (i, (body, app, status, code)) in cases.enumerate() {
        let before = h.world.scan_all().await.len();
        let request = ApiRequest::post("/v1/retargets").json(body);
        let request = match app {
            Some(app) => request.bearer(&app.api_key),
            None => request,
        };
        let r = h.world.call(request).await;
        assert_eq!((r.status, r.body["code"].as_str()), (*status, Some(*code)), "case {i}: {body} → {r:?}");
        r.assert_problem(*status, code);
        assert!(r.body["detail"].as_str().is_some_and(|d| !d.is_empty()));
        assert_eq!(h.world.scan_all().await.len(), before, "case {i} wrote something");
    }
}

#[tokio::test]
async fn not_retargetable_sources_come_after_expiry_and_before_actions() {
    let h = Harness::new().await;
    // Messages of a free app stay unretargetable after an upgrade.
    let t = h.world.app(Plan::Free).await;
    let before_upgrade = h.world.message(&t, Channel::Sms).await;
    h.world.clock.advance(Duration::seconds(5));
    h.world.store.set_plan(t.app.app_id, Plan::Pro).await.unwrap();
    let after_upgrade = h.world.message(&h.refresh(&t).await, Channel::Sms).await;
    assert!(after_upgrade.retargetable);

    let before = h.world.scan_all().await.len();
    let b = json!({"source_message_id": before_upgrade.message_id, "action": "clicked",
        "send_at": rfc3339(h.now() + Duration::days(60)), "contents": {"body": "x"}});
    h.post(&t, &b).await.assert_problem(422, "source_not_retargetable");
    h.post(&t, &body(&before_upgrade, "sent")).await.assert_problem(422, "source_not_retargetable");
    assert_eq!(h.world.scan_all().await.len(), before);
    h.created(&t, &body(&after_upgrade, "sent")).await;
}

#[tokio::test]
async fn bodies_over_the_limit_and_without_json_are_refused() {
    let h = Harness::new().await;
    let t = h.world.app(Plan::Pro).await;
    let before = h.world.scan_all().await.len();
    let post = || ApiRequest::post("/v1/retargets").bearer(&t.api_key);
    h.world.call(post().raw_body(b"{not json")).await.assert_problem(400, "invalid_request");
    h.world.call(post().raw_body(b"")).await.assert_problem(400, "invalid_request");
    h.world.call(post().raw_body(&[0xff, 0xfe])).await.assert_problem(400, "invalid_request");
    let big = vec![b' '; 1024 * 1024 + 1];
    h.world.call(post().raw_body(&big)).await.assert_problem(413, "payload_too_large");
    assert_eq!(h.world.scan_all().await.len(), before);
}

impl Harness {
    /// The app as stored now (after a plan change).
    async fn refresh(&self, t: &TestApp) -> TestApp {
        let app = self.world.store.get_app(t.app.app_id).await.unwrap().unwrap();
        TestApp {
            app,
            api_key: t.api_key.clone(),
            push_webhook_secret: t.push_webhook_secret.clone(),
            credentials: t.credentials.clone(),
        }
    }
}

/// Issue 14: a retarget onto a channel the app has no provider credentials for is refused with
/// 422 `channel_not_configured`, after `invalid_action` and before `send_at_out_of_window`, and
/// nothing is created; the source's own channel (default) is checked the same way.
#[tokio::test]
async fn a_retarget_onto_a_channel_without_credentials_is_refused() {
    let h = Harness::new().await;
    let t = h.world.sms_only_app().await;
    let sms = h.world.message(&t, Channel::Sms).await;
    let mut onto_push = body(&sms, "delivered");
    onto_push["channel"] = "push".into();
    let before = h.world.snapshot().await;
    let refused = h.post(&t, &onto_push).await;
    refused.assert_problem(422, "channel_not_configured");
    assert!(refused.body["detail"].as_str().unwrap().contains("push"), "{refused:?}");

    let mut wrong_action = onto_push.clone();
    wrong_action["action"] = "not_a_kind".into();
    h.post(&t, &wrong_action).await.assert_problem(400, "invalid_action");
    let mut too_late = onto_push.clone();
    too_late["send_at"] = rfc3339(sms.expires_at + Duration::hours(1)).into();
    h.post(&t, &too_late).await.assert_problem(422, "channel_not_configured");
    assert_eq!(h.world.snapshot().await, before, "nothing written");
    h.created(&t, &body(&sms, "delivered")).await;

    // An app whose push source can no longer send push (no credentials at all).
    let bare = h.world.bare_app(Plan::Pro).await;
    let push = h.world.message(&bare, Channel::Push).await;
    h.post(&bare, &body(&push, "not_clicked")).await.assert_problem(422, "channel_not_configured");
}

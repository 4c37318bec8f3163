//! The subscriptions function, called with API Gateway HTTP API events, against DynamoDB Local.

use retarget_shared::domain::Plan;
use retarget_tests::{ApiRequest, World};
use serde_json::{Value, json};

#[tokio::test]
async fn push_and_sms_subscriptions_upsert_by_address() {
    let (world, t) = World::with_app(Plan::Pro).await;
    let push =
        json!({"channel":"push","token":"fcm-token-1","platform":"android","external_user_id":"user-1"});
    let created = world.call(t.post("/v1/subscriptions", &push)).await;
    assert_eq!(created.status, 201, "{created:?}");
    assert_eq!(created.body["channel"], "push");
    assert_eq!(created.body["external_user_id"], "user-1");
    assert_eq!(created.body["status"], "active");
    let id = created.body["subscription_id"].as_str().unwrap().to_owned();

    // The same token again: same id, fields updated, 200.
    let again = json!({"channel":"push","token":"fcm-token-1","platform":"ios","external_user_id":"user-2"});
    let updated = world.call(t.post("/v1/subscriptions", &again)).await;
    assert_eq!((updated.status, updated.body["subscription_id"].as_str()), (200, Some(id.as_str())));
    assert_eq!(updated.body["external_user_id"], "user-2");

    let got = world.call(t.get(&format!("/v1/subscriptions/{id}"))).await;
    assert_eq!(got.status, 200);
    assert_eq!(
        got.body,
        json!({"subscription_id": id, "channel": "push", "platform": "ios", "token": "fcm-token-1", "external_user_id": "user-2", "status": "active", "timezone": null})
    );

    let sms = json!({"channel":"sms","phone_number":"+15551234567"});
    let created = world.call(t.post("/v1/subscriptions", &sms)).await;
    assert_eq!((created.status, &created.body["external_user_id"]), (201, &json!(null)));
    let sms_id = created.body["subscription_id"].as_str().unwrap().to_owned();
    let got = world.call(t.get(&format!("/v1/subscriptions/{sms_id}"))).await;
    assert_eq!(got.body["phone_number"], "+15551234567");
    assert!(got.body.get("token").is_none() && got.body.get("platform").is_none());
}

#[tokio::test]
async fn unsubscribe_and_resubscribe() {
    let (world, t) = World::with_app(Plan::Free).await;
    let sms = json!({"channel":"sms","phone_number":"+447911123456","external_user_id":"u"});
    let created = world.call(t.post("/v1/subscriptions", &sms)).await;
    let id = created.body["subscription_id"].as_str().unwrap().to_owned();

    let off =
        world.call(ApiRequest::post(&format!("/v1/subscriptions/{id}/unsubscribe")).bearer(&t.api_key)).await;
    assert_eq!((off.status, off.body["status"].as_str()), (200, Some("unsubscribed")));
    assert_eq!(off.body["unsubscribed_reason"], "api");
    let again =
        world.call(ApiRequest::post(&format!("/v1/subscriptions/{id}/unsubscribe")).bearer(&t.api_key)).await;
    assert_eq!(again.body["status"], "unsubscribed", "unsubscribing twice is harmless");

    // Registering the number again is an explicit opt-in: same id, active.
    let back = world.call(t.post("/v1/subscriptions", &sms)).await;
    assert_eq!(
        (back.status, back.body["subscription_id"].as_str(), back.body["status"].as_str()),
        (200, Some(id.as_str()), Some("active"))
    );
    let got = world.call(t.get(&format!("/v1/subscriptions/{id}"))).await;
    assert!(got.body.get("unsubscribed_reason").is_none(), "an active one has no reason: {got:?}");
}

#[tokio::test]
async fn a_person_has_subscriptions_on_both_channels() {
    let (world, t) = World::with_app(Plan::Pro).await;
    for body in [
        json!({"channel":"push","token":"a","platform":"ios","external_user_id":"p1"}),
        json!({"channel":"push","token":"b","platform":"android","external_user_id":"p1"}),
        json!({"channel":"sms","phone_number":"+15550000001","external_user_id":"p1"}),
        json!({"channel":"sms","phone_number":"+15550000002","external_user_id":"p2"}),
    ] {
        assert_eq!(world.call(t.post("/v1/subscriptions", &body)).await.status, 201);
    }
    let p1 = retarget_shared::domain::ExternalUserId::parse("p1").unwrap();
    let push = world
        .store
        .subscriptions_of_person(t.app.app_id, &p1, retarget_shared::domain::Channel::Push)
        .await
        .unwrap();
    let sms = world
        .store
        .subscriptions_of_person(t.app.app_id, &p1, retarget_shared::domain::Channel::Sms)
        .await
        .unwrap();
    assert_eq!((push.len(), sms.len()), (2, 1));
    assert_eq!(sms[0].phone_number.as_ref().unwrap().as_e164(), "+15550000001");
}

#[tokio::test]
async fn another_apps_subscription_is_not_found() {
    let (world, mine) = World::with_app(Plan::Pro).await;
    let theirs = world.app(Plan::Pro).await;
    let body = json!({"channel":"sms","phone_number":"+15551234567"});
    let created = world.call(theirs.post("/v1/subscriptions", &body)).await;
    let id = created.body["subscription_id"].as_str().unwrap();

    world.call(mine.get(&format!("/v1/subscriptions/{id}"))).await.assert_problem(404, "not_found");
    world
        .call(ApiRequest::post(&format!("/v1/subscriptions/{id}/unsubscribe")).bearer(&mine.api_key))
        .await
        .assert_problem(404, "not_found");
    // The same phone number is a separate subscription in another app.
    let mine_created = world.call(mine.post("/v1/subscriptions", &body)).await;
    assert_eq!(mine_created.status, 201);
    assert_ne!(mine_created.body["subscription_id"].as_str(), Some(id));
}

#[tokio::test]
async fn bad_requests_are_refused_and_write_nothing() {
    let (world, t) = World::with_app(Plan::Pro).await;
    let before = world.scan_all().await.len();
    let post = |body: Value| t.post("/v1/subscriptions", &body);
    let raw = |body: &[u8]| ApiRequest::post("/v1/subscriptions").bearer(&t.api_key).raw_body(body);
    let unknown = "/v1/subscriptions/01ARZ3NDEKTSV4RRFFQ69G5FAV";
    let cases: Vec<(ApiRequest, u16, &str)> = vec![
        (
            ApiRequest::post("/v1/subscriptions")
                .json(&json!({"channel":"sms","phone_number":"+15551234567"})),
            401,
            "unauthorized",
        ),
        (ApiRequest::post("/v1/subscriptions").bearer("rtk_wrong").json(&json!({})), 401, "unauthorized"),
        (post(json!({"channel":"sms","phone_number":"5551234567"})), 400, "invalid_phone_number"),
        (post(json!({"channel":"sms","phone_number":"+1 555 123"})), 400, "invalid_phone_number"),
        (post(json!({"channel":"fax","phone_number":"+15551234567"})), 400, "invalid_request"),
        (post(json!({"channel":"push","token":"t"})), 400, "invalid_request"),
        (post(json!({"channel":"push","platform":"ios"})), 400, "invalid_request"),
        (post(json!({"channel":"push","token":"has space","platform":"ios"})), 400, "invalid_request"),
        (post(json!({"channel":"sms","phone_number":"+15551234567","token":"x"})), 400, "invalid_request"),
        (post(json!({"channel":"sms","phone_number":12345})), 400, "invalid_request"),
        (post(json!({"channel":"email","email":"ada"})), 400, "invalid_email"),
        (post(json!({"channel":"email","email":"Ada <ada@example.com>"})), 400, "invalid_email"),
        (post(json!({"channel":"email","email":"ada@localhost"})), 400, "invalid_email"),
        (
            post(json!({"channel":"email","email":"ada@example.com\r\nBcc: eve@example.com"})),
            400,
            "invalid_email",
        ),
        (post(json!({"channel":"email"})), 400, "invalid_request"),
        (
            post(json!({"channel":"email","email":"ada@example.com","phone_number":"+15551234567"})),
            400,
            "invalid_request",
        ),
        (
            post(json!({"channel":"sms","phone_number":"+15551234567","email":"ada@example.com"})),
            400,
            "invalid_request",
        ),
        (post(json!({"channel":"email","email":42})), 400, "invalid_request"),
        (post(json!({"channel":"sms","phone_number":"+15551234567","colour":"red"})), 400, "invalid_request"),
        (
            post(json!({"channel":"sms","phone_number":"+15551234567","external_user_id":""})),
            400,
            "invalid_request",
        ),
        (raw(b"{not json"), 400, "invalid_request"),
        (raw(&[0xff, 0xfe, 0xfd]), 400, "invalid_request"),
        (raw(&vec![b' '; 1024 * 1024 + 1]), 413, "payload_too_large"),
        (t.get("/v1/subscriptions/..%2F..%2Fetc"), 404, "not_found"),
        (t.get(unknown), 404, "not_found"),
        (t.delete(unknown), 405, "method_not_allowed"),
    ];
    for (request, status, code) in cases {
        world.call(request).await.assert_problem(status, code);
    }
    assert_eq!(world.scan_all().await.len(), before, "a refused request wrote something");
}

#[tokio::test]
async fn errors_name_the_field() {
    let (world, t) = World::with_app(Plan::Pro).await;
    let body = json!({"channel":"push","token":"t","platform":"windows"});
    let r = world.call(t.post("/v1/subscriptions", &body)).await;
    r.assert_problem(400, "invalid_request");
    assert!(r.body["detail"].as_str().unwrap().starts_with("platform:"), "{r:?}");
}

#[tokio::test]
async fn email_subscriptions_upsert_whatever_the_case_and_keep_the_address_as_given() {
    let (world, t) = World::with_app(Plan::Pro).await;
    let first = json!({"channel":"email","email":"Ada.Lovelace@Example.com","external_user_id":"ada"});
    let created = world.call(t.post("/v1/subscriptions", &first)).await;
    assert_eq!((created.status, created.body["channel"].as_str()), (201, Some("email")), "{created:?}");
    let id = created.body["subscription_id"].as_str().unwrap().to_owned();

    // The same address in another case is the same subscription.
    let again = json!({"channel":"email","email":"ada.lovelace@EXAMPLE.COM","external_user_id":"ada-2"});
    let updated = world.call(t.post("/v1/subscriptions", &again)).await;
    assert_eq!((updated.status, updated.body["subscription_id"].as_str()), (200, Some(id.as_str())));
    let got = world.call(t.get(&format!("/v1/subscriptions/{id}"))).await;
    assert_eq!(
        got.body,
        json!({"subscription_id": id, "channel": "email", "email": "Ada.Lovelace@Example.com",
            "external_user_id": "ada-2", "status": "active", "timezone": null})
    );

    // Another address is another subscription; a phone number with those digits is not it either.
    let other =
        world.call(t.post("/v1/subscriptions", &json!({"channel":"email","email":"ada@example.org"}))).await;
    assert_eq!(other.status, 201);
    assert_ne!(other.body["subscription_id"].as_str(), Some(id.as_str()));

    // Given a zone, an email subscription keeps it (no number to imply one).
    let zoned = json!({"channel":"email","email":"grace@example.com","timezone":"America/New_York"});
    let r = world.call(t.post("/v1/subscriptions", &zoned)).await;
    let zid = r.body["subscription_id"].as_str().unwrap().to_owned();
    let got = world.call(t.get(&format!("/v1/subscriptions/{zid}"))).await;
    assert_eq!(got.body["timezone"], "America/New_York");
}

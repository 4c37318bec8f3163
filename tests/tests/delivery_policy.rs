//! The delivery policy API and the recipients' time zones, through the handlers against
//! DynamoDB Local: `GET`/`PUT /v1/app/delivery-policy`, `timezone` on subscriptions (given,
//! implied by the number, or none), and every bad input refused with nothing written.

use retarget_shared::domain::Plan;
use retarget_tests::{TestApp, World};
use serde_json::{Value, json};

const POLICY: &str = "/v1/app/delivery-policy";

#[tokio::test]
async fn a_new_apps_policy_is_the_contracts_and_a_put_replaces_it_whole() {
    let world = World::new().await;
    let t = world.app(Plan::Pro).await;
    let got = world.call(t.get(POLICY)).await;
    assert_eq!(got.status, 200, "{got:?}");
    assert_eq!(got.body, json!({"quiet_hours": null, "default_timezone": "UTC", "frequency_cap": null}));

    // The contract's example.
    let policy = json!({
        "quiet_hours": {"start": "21:00", "end": "08:00", "channels": ["sms"]},
        "default_timezone": "America/New_York",
        "frequency_cap": {"max": 3, "per_hours": 24, "channels": ["push", "sms", "email"]},
    });
    let put = world.call(t.put(POLICY, &policy)).await;
    assert_eq!((put.status, &put.body), (200, &policy), "{put:?}");
    assert_eq!(world.call(t.get(POLICY)).await.body, policy, "read back as stored");

    // Channels come back in one order whatever order they were given in.
    let reordered = json!({"frequency_cap": {"max": 1, "per_hours": 720, "channels": ["sms", "push"]}});
    let put = world.call(t.put(POLICY, &reordered)).await;
    assert_eq!(put.status, 200, "{put:?}");
    assert_eq!(
        put.body,
        json!({"quiet_hours": null, "default_timezone": "UTC",
               "frequency_cap": {"max": 1, "per_hours": 720, "channels": ["push", "sms"]}}),
        "fields left out take a new app's values"
    );

    // Another app's policy is its own.
    let other = world.app(Plan::Pro).await;
    assert_eq!(world.call(other.get(POLICY)).await.body["default_timezone"], "UTC");
}

#[tokio::test]
async fn bad_policies_are_refused_and_change_nothing() {
    let world = World::new().await;
    let t = world.app(Plan::Pro).await;
    let good = json!({"quiet_hours": {"start": "22:00", "end": "07:30", "channels": ["push", "sms"]},
                      "default_timezone": "Europe/Paris"});
    assert_eq!(world.call(t.put(POLICY, &good)).await.status, 200);
    let before = world.snapshot().await;
    let quiet = |start: Value, end: Value, channels: Value| json!({"quiet_hours": {"start": start, "end": end, "channels": channels}});
    let cap = |max: Value, per_hours: Value, channels: Value| json!({"frequency_cap": {"max": max, "per_hours": per_hours, "channels": channels}});
    let cases = [
        ("start 24:00", quiet(json!("24:00"), json!("08:00"), json!(["sms"]))),
        ("start 9:00", quiet(json!("9:00"), json!("08:00"), json!(["sms"]))),
        ("end with seconds", quiet(json!("21:00"), json!("08:00:00"), json!(["sms"]))),
        ("start = end", quiet(json!("08:00"), json!("08:00"), json!(["sms"]))),
        ("numeric time", quiet(json!(2100), json!("08:00"), json!(["sms"]))),
        ("no channel", quiet(json!("21:00"), json!("08:00"), json!([]))),
        ("channel twice", quiet(json!("21:00"), json!("08:00"), json!(["sms", "sms"]))),
        ("unknown channel", quiet(json!("21:00"), json!("08:00"), json!(["fax"]))),
        ("quiet hours without end", json!({"quiet_hours": {"start": "21:00", "channels": ["sms"]}})),
        ("unknown zone", json!({"default_timezone": "Mars/Olympus_Mons"})),
        ("zone in lower case", json!({"default_timezone": "europe/paris"})),
        ("zone as a number", json!({"default_timezone": 2})),
        ("max 0", cap(json!(0), json!(24), json!(["push"]))),
        ("max negative", cap(json!(-1), json!(24), json!(["push"]))),
        ("max 1001", cap(json!(1001), json!(24), json!(["push"]))),
        ("max fractional", cap(json!(1.5), json!(24), json!(["push"]))),
        ("per_hours 0", cap(json!(3), json!(0), json!(["push"]))),
        ("per_hours 721", cap(json!(3), json!(721), json!(["push"]))),
        ("cap without channels", cap(json!(3), json!(24), json!([]))),
        ("unknown field", json!({"quiet_hours": null, "timezone": "UTC"})),
        ("not an object", json!(["quiet_hours"])),
    ];
    for (name, body) in cases {
        let r = world.call(t.put(POLICY, &body)).await;
        assert_eq!((r.status, r.body["code"].as_str()), (400, Some("invalid_request")), "{name}: {r:?}");
        assert!(r.body["detail"].as_str().is_some_and(|d| !d.is_empty()), "{name}: says why");
    }
    assert_eq!(world.snapshot().await, before, "nothing was written");
    let r = world.call(t.get(POLICY)).await;
    assert_eq!(r.body["default_timezone"], "Europe/Paris");
}

#[tokio::test]
async fn subscriptions_carry_the_zone_given_else_the_numbers_else_none() {
    let world = World::new().await;
    let t = world.app(Plan::Pro).await;
    let create = |body: Value| world.call(t.post("/v1/subscriptions", &body));
    let zone_of = |id: Value| zone_of(&world, &t, id);

    // Given.
    let given =
        create(json!({"channel": "push", "token": "tok-1", "platform": "ios", "timezone": "Asia/Tokyo"}))
            .await;
    assert_eq!(given.status, 201, "{given:?}");
    assert!(given.body.get("timezone").is_none(), "the upsert's summary is the contract's: {given:?}");
    assert_eq!(zone_of(given.body["subscription_id"].clone()).await, "Asia/Tokyo");
    // Implied by the number: a NANP area code, a single-zone country.
    let ny = create(json!({"channel": "sms", "phone_number": "+12125550100"})).await;
    assert_eq!(zone_of(ny.body["subscription_id"].clone()).await, "America/New_York");
    let paris = create(json!({"channel": "sms", "phone_number": "+33612345678"})).await;
    assert_eq!(zone_of(paris.body["subscription_id"].clone()).await, "Europe/Paris");
    // The given zone beats the number's.
    let la =
        create(json!({"channel": "sms", "phone_number": "+14155550100", "timezone": "Europe/Berlin"})).await;
    assert_eq!(zone_of(la.body["subscription_id"].clone()).await, "Europe/Berlin");
    // Neither: null (the policy's default applies at send time).
    let none = create(json!({"channel": "sms", "phone_number": "+15555550100"})).await;
    assert_eq!(zone_of(none.body["subscription_id"].clone()).await, Value::Null);
    let push = create(json!({"channel": "push", "token": "tok-2", "platform": "android"})).await;
    assert_eq!(zone_of(push.body["subscription_id"].clone()).await, Value::Null);

    // An upsert without a zone keeps the one given; with one, replaces it.
    let again = create(json!({"channel": "push", "token": "tok-1", "platform": "ios"})).await;
    assert_eq!(
        (again.status, &again.body["subscription_id"]),
        (200, &given.body["subscription_id"]),
        "{again:?}"
    );
    assert_eq!(zone_of(given.body["subscription_id"].clone()).await, "Asia/Tokyo");
    let moved =
        create(json!({"channel": "push", "token": "tok-1", "platform": "ios", "timezone": "Europe/Paris"}))
            .await;
    assert_eq!(moved.status, 200, "{moved:?}");
    assert_eq!(zone_of(given.body["subscription_id"].clone()).await, "Europe/Paris");

    // A bad zone: 400 invalid_timezone, nothing written (not even for a new address).
    let before = world.snapshot().await;
    for bad in [json!("Paris"), json!("europe/paris"), json!(""), json!("UTC+2"), json!(5)] {
        let r = create(json!({"channel": "sms", "phone_number": "+33699999999", "timezone": bad})).await;
        let code = if bad.is_string() { "invalid_timezone" } else { "invalid_request" };
        r.assert_problem(400, code);
    }
    let r =
        create(json!({"channel": "push", "token": "tok-1", "platform": "ios", "timezone": "Nowhere/Here"}))
            .await;
    r.assert_problem(400, "invalid_timezone");
    assert_eq!(world.snapshot().await, before, "nothing was written");
}

async fn zone_of(world: &World, t: &TestApp, id: Value) -> Value {
    let target = format!("/v1/subscriptions/{}", id.as_str().unwrap_or_default());
    let r = world.call(t.get(&target)).await;
    assert_eq!(r.status, 200, "{r:?}");
    r.body["timezone"].clone()
}

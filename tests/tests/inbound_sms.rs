//! Twilio's inbound webhook against DynamoDB Local: STOP unsubscribes the sender's number,
//! START brings back what an opt-out (or error 21610) unsubscribed and nothing else, every
//! answer is empty TwiML, and a bad signature changes nothing.

use retarget_shared::domain::{Channel, UnsubscribeReason};
use retarget_shared::edge::signatures::twilio_signature;
use retarget_tests::{ApiRequest, PUBLIC_BASE_URL as PUBLIC, TestApp, World};

const TOKEN: &str = "twilio-auth-token-inbound";
const NUMBER: &str = "+15550001234";

fn inbound(app: &TestApp, from: &str, fields: &[(&str, &str)], token: &str) -> ApiRequest {
    inbound_to(&app.app.app_id.to_string(), from, fields, token)
}

fn inbound_to(app_id: &str, from: &str, fields: &[(&str, &str)], token: &str) -> ApiRequest {
    let path = format!("/v1/webhooks/twilio/{app_id}/inbound");
    let mut params: Vec<(String, String)> = vec![
        ("MessageSid".into(), "SM0123".into()),
        ("AccountSid".into(), retarget_tests::twilio::ACCOUNT.into()),
        ("From".into(), from.into()),
        ("To".into(), "+15550009999".into()),
    ];
    params.extend(fields.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    let form: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{k}={}", v.replace('%', "%25").replace('+', "%2B").replace(' ', "+")))
        .collect();
    let signature = twilio_signature(token, &format!("{PUBLIC}{path}"), &params);
    ApiRequest::post(&path)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-twilio-signature", &signature)
        .raw_body(form.join("&").as_bytes())
}

async fn status(world: &World, t: &TestApp, id: &str) -> (String, Option<String>) {
    let r = world.call(t.get(&format!("/v1/subscriptions/{id}"))).await;
    assert_eq!(r.status, 200, "{r:?}");
    (
        r.body["status"].as_str().unwrap_or_default().to_owned(),
        r.body["unsubscribed_reason"].as_str().map(str::to_owned),
    )
}

async fn reply(world: &World, t: &TestApp, from: &str, fields: &[(&str, &str)]) {
    let r = world.call(inbound(t, from, fields, TOKEN)).await;
    assert_eq!((r.status, r.content_type.as_str()), (200, "text/xml"), "{r:?}");
    assert_eq!(r.raw, b"<Response></Response>", "empty TwiML");
}

fn active() -> (String, Option<String>) {
    ("active".into(), None)
}

fn unsubscribed(reason: &str) -> (String, Option<String>) {
    ("unsubscribed".into(), Some(reason.into()))
}

#[tokio::test]
async fn stop_unsubscribes_and_start_brings_back_only_an_opt_out() {
    let world = World::new().await;
    let t = world.twilio_app(TOKEN, "+15550009999").await;
    let sub = world.subscription(&t, Channel::Sms, NUMBER, Some("ada")).await.to_string();
    let other = world.subscription(&t, Channel::Sms, "+15550005678", None).await.to_string();

    // HELP and chatter change nothing.
    for body in ["HELP", "STOP please", "thanks"] {
        reply(&world, &t, NUMBER, &[("Body", body)]).await;
        assert_eq!(status(&world, &t, &sub).await, active(), "{body}");
    }
    // STOP, in any case and with spaces: unsubscribed, reason stop; only that number.
    reply(&world, &t, NUMBER, &[("Body", " stop ")]).await;
    assert_eq!(status(&world, &t, &sub).await, unsubscribed("stop"));
    assert_eq!(status(&world, &t, &other).await, active());
    // Twice: the same.
    reply(&world, &t, NUMBER, &[("Body", "STOPALL"), ("OptOutType", "STOP")]).await;
    assert_eq!(status(&world, &t, &sub).await, unsubscribed("stop"));
    // START: active again, no reason left.
    reply(&world, &t, NUMBER, &[("Body", "Start")]).await;
    assert_eq!(status(&world, &t, &sub).await, active());
    // Twilio's own OptOutType wins (a keyword of another language).
    reply(&world, &t, NUMBER, &[("Body", "ARRET"), ("OptOutType", "STOP")]).await;
    assert_eq!(status(&world, &t, &sub).await, unsubscribed("stop"));
    reply(&world, &t, NUMBER, &[("Body", "hello"), ("OptOutType", "START")]).await;
    assert_eq!(status(&world, &t, &sub).await, active());

    // Unsubscribed by the app: START does not undo it, and a later STOP does not turn it into
    // an opt-out that START could undo.
    let r = world.call(t.post(&format!("/v1/subscriptions/{sub}/unsubscribe"), &serde_json::json!({}))).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(status(&world, &t, &sub).await, unsubscribed("api"));
    reply(&world, &t, NUMBER, &[("Body", "START")]).await;
    assert_eq!(status(&world, &t, &sub).await, unsubscribed("api"));
    reply(&world, &t, NUMBER, &[("Body", "STOP")]).await;
    reply(&world, &t, NUMBER, &[("Body", "UNSTOP")]).await;
    assert_eq!(status(&world, &t, &sub).await, unsubscribed("api"));

    // Registered again by the app: active, and the next STOP is the recipient's.
    let again = world
        .call(t.post("/v1/subscriptions", &serde_json::json!({"channel": "sms", "phone_number": NUMBER})))
        .await;
    assert_eq!((again.status, again.body["subscription_id"].as_str()), (200, Some(sub.as_str())));
    assert_eq!(status(&world, &t, &sub).await, active());
    reply(&world, &t, NUMBER, &[("Body", "QUIT")]).await;
    assert_eq!(status(&world, &t, &sub).await, unsubscribed("stop"));
}

#[tokio::test]
async fn an_error_21610_counts_as_an_opt_out_that_start_undoes() {
    let world = World::new().await;
    let t = world.twilio_app(TOKEN, "+15550009999").await;
    let sub = world.subscription(&t, Channel::Sms, NUMBER, None).await;
    // What the SMS sender does on Twilio's 21610 (a dead address on SMS).
    let reason = UnsubscribeReason::dead_address(Channel::Sms);
    world.store.unsubscribe(t.app.app_id, sub, reason).await.expect("unsubscribe");
    assert_eq!(status(&world, &t, &sub.to_string()).await, unsubscribed("stop"));
    reply(&world, &t, NUMBER, &[("Body", "YES")]).await;
    assert_eq!(status(&world, &t, &sub.to_string()).await, active());
}

#[tokio::test]
async fn forged_or_foreign_replies_change_nothing() {
    let world = World::new().await;
    let t = world.twilio_app(TOKEN, "+15550009999").await;
    let other_app = world.twilio_app("another-token", "+15550009998").await;
    let sub = world.subscription(&t, Channel::Sms, NUMBER, None).await.to_string();
    let before = world.snapshot().await;

    // Signed with another token, or not at all: 403 invalid_signature.
    let forged = world.call(inbound(&t, NUMBER, &[("Body", "STOP")], "not-the-token")).await;
    forged.assert_problem(403, "invalid_signature");
    let unsigned = ApiRequest::post(&format!("/v1/webhooks/twilio/{}/inbound", t.app.app_id))
        .header("content-type", "application/x-www-form-urlencoded")
        .raw_body(b"From=%2B15550001234&Body=STOP");
    world.call(unsigned).await.assert_problem(403, "invalid_signature");
    // Signed by the other app, on its own URL: it has no subscription of that number.
    let r = world.call(inbound(&other_app, NUMBER, &[("Body", "STOP")], "another-token")).await;
    assert_eq!(r.status, 200, "{r:?}");
    // Numbers that are not E.164, or unknown: nothing to change, still empty TwiML.
    reply(&world, &t, "15550001234", &[("Body", "STOP")]).await;
    reply(&world, &t, "+15550000000", &[("Body", "STOP")]).await;
    reply(&world, &t, "", &[("Body", "STOP")]).await;
    // An unknown app: 404.
    let unknown = inbound_to("01JD0000000000000000000000", NUMBER, &[("Body", "STOP")], TOKEN);
    world.call(unknown).await.assert_problem(404, "not_found");

    assert_eq!(world.snapshot().await, before, "nothing changed");
    assert_eq!(status(&world, &t, &sub).await, active());
}

//! `GET /v1/messages`: an app's messages newest first, paged by a stateless cursor, each once,
//! with its contents, recipients, status and stats; another app's never; bad parameters 400.

use std::collections::HashSet;

use retarget_shared::Clock;
use retarget_shared::domain::{Channel, EventKind, Plan};
use retarget_tests::{TestApp, World};
use serde_json::{Value, json};

async fn page(world: &World, t: &TestApp, query: &str) -> Value {
    let r = world.call(t.get(&format!("/v1/messages{query}"))).await;
    assert_eq!(r.status, 200, "{query}: {r:?}");
    r.body
}

#[tokio::test]
async fn every_message_once_newest_first_across_pages() {
    let world = World::new().await;
    let t = world.app(Plan::Pro).await;
    let other = world.app(Plan::Pro).await;
    let sub = world.subscription(&t, Channel::Push, "tok-1", Some("u-1")).await;
    let other_message = world.message(&other, Channel::Push).await;
    let mut created = Vec::new();
    for i in 0..23 {
        let body = json!({"channel": "push", "contents": {"body": format!("message {i}")}, "include_subscription_ids": [sub]});
        let r = world.call(t.post("/v1/messages", &body)).await;
        assert_eq!(r.status, 202, "{r:?}");
        created.push(r.body["message_id"].as_str().unwrap().to_owned());
        world.clock.advance(chrono::Duration::milliseconds(5));
    }
    // A retarget's own message is a message like any other.
    let body = json!({"source_message_id": created[0], "action": "sent", "contents": {"body": "again"}});
    let retarget = world.call(t.post("/v1/retargets", &body)).await;
    assert_eq!(retarget.status, 201, "{retarget:?}");
    created.push(retarget.body["message_id"].as_str().unwrap().to_owned());

    let mut seen = Vec::new();
    let mut cursor = String::new();
    let mut pages = 0;
    loop {
        let query =
            if cursor.is_empty() { "?limit=10".to_owned() } else { format!("?limit=10&cursor={cursor}") };
        let body = page(&world, &t, &query).await;
        pages += 1;
        for m in body["messages"].as_array().unwrap() {
            seen.push(m["message_id"].as_str().unwrap().to_owned());
            for field in [
                "channel",
                "created_at",
                "expires_at",
                "retargetable",
                "status",
                "send_at",
                "recipients",
                "contents",
                "stats",
            ] {
                assert!(!m[field].is_null(), "{field} in {m}");
            }
        }
        match body["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
        assert!(pages < 10, "paging ends");
    }
    let mut newest_first = created.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first, "each once, newest first");
    assert!(!seen.contains(&other_message.message_id.to_string()), "another app's message is never listed");
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), seen.len());

    // The first page holds the retarget's message (retarget_of) and the newest original.
    let first = page(&world, &t, "?limit=2").await;
    assert_eq!(first["messages"][0]["retarget_of"], created[0].as_str());
    assert_eq!(first["messages"][1]["contents"]["body"], "message 22");
    assert_eq!(first["messages"][1]["recipients"], 1);
    assert_eq!(page(&world, &t, "").await["messages"].as_array().unwrap().len(), 20, "20 by default");
}

#[tokio::test]
async fn stats_contents_and_expiry_are_shown() {
    let world = World::new().await;
    let t = world.app(Plan::Pro).await;
    let message = world.message(&t, Channel::Sms).await;
    let subs = world.subscriptions(&t, Channel::Sms, 2).await;
    world.record_each(&message, EventKind::Sent, &subs).await;
    world.record_each(&message, EventKind::Clicked, &subs[..1]).await;
    world.settle().await;
    let listed = page(&world, &t, "").await;
    let m = &listed["messages"][0];
    assert_eq!((m["stats"]["sent"].as_u64(), m["stats"]["clicked"].as_u64()), (Some(2), Some(1)), "{m}");
    assert_eq!(m["channel"], "sms");
    let got = world.call(t.get(&format!("/v1/messages/{}", message.message_id))).await;
    assert_eq!(&got.body, m, "listed as GET /v1/messages/{{id}} shows it");

    // Past its 30 days it is still listed (until its tombstone goes), its stats zero.
    world.clock.advance(chrono::Duration::days(31));
    let listed = page(&world, &t, "").await;
    let m = &listed["messages"][0];
    assert_eq!(m["stats"]["sent"], 0, "{m}");
    assert!(m["expires_at"].as_str().unwrap() < retarget_shared::clock::rfc3339(world.clock.now()).as_str());
}

#[tokio::test]
async fn bad_parameters_are_400_and_an_empty_app_lists_nothing() {
    let world = World::new().await;
    let t = world.app(Plan::Pro).await;
    let empty = page(&world, &t, "").await;
    assert_eq!(empty, json!({"messages": [], "next_cursor": null}));
    for query in [
        "?limit=0",
        "?limit=101",
        "?limit=-1",
        "?limit=ten",
        "?cursor=nope",
        "?cursor=",
        "?cursor=01jdq8z3v4k6w2m9x7t5r1b0c8",
        "?page=2",
        "?limit=10&limit=abc",
    ] {
        let r = world.call(t.get(&format!("/v1/messages{query}"))).await;
        r.assert_problem(400, "invalid_request");
    }
    let r = world.call(retarget_tests::ApiRequest::new("GET", "/v1/messages")).await;
    r.assert_problem(401, "unauthorized");
}

//! `GET /v1/messages/{id}/audience.csv` (issue 15, part 5b) against DynamoDB Local: the buffered
//! audiences function behind the HTTP API, the response-streaming export function (a function
//! URL on AWS) and the local API's server, which streams it. Each gives the members the paged
//! JSON gives, in its order; errors are problem+json and write nothing; a read that fails once
//! the CSV has started aborts the response rather than end it short.

use std::sync::Arc;

use http_body_util::BodyExt;
use retarget_audiences::{AudienceDeps, AudienceExport, Audiences};
use retarget_shared::adapters::store::Interaction;
use retarget_shared::bootstrap::{HttpFunction, StreamingHttpFunction};
use retarget_shared::domain::{
    Channel, EventKind, ExternalUserId, Plan, Platform, Subscription, SubscriptionId, SubscriptionStatus,
    UnsubscribeReason,
};
use retarget_shared::edge::request::AppFunction;
use retarget_shared::{Clock, Store};
use retarget_tests::faults::{FaultProxy, FaultRates, Service};
use retarget_tests::{ApiRequest, EXPORT_URL, TestApp, World};

/// (subscription_id, external_user_id) of every page of the paged JSON, in order.
async fn paged(world: &World, t: &TestApp, query: &str) -> Vec<(String, String)> {
    let mut members = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut target = format!("{query}&limit=7");
        if let Some(c) = &cursor {
            target.push_str(&format!("&cursor={c}"));
        }
        let r = world.call(t.get(&target)).await;
        assert_eq!(r.status, 200, "{r:?}");
        for m in r.body["subscriptions"].as_array().expect("subscriptions") {
            let user = m["external_user_id"].as_str().unwrap_or_default().to_owned();
            members.push((m["subscription_id"].as_str().expect("id").to_owned(), user));
        }
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return members,
        }
    }
}

/// The rows of a CSV export, its header checked.
fn rows(csv: &[u8]) -> Vec<(String, String)> {
    let mut reader = csv::Reader::from_reader(csv);
    assert_eq!(
        reader.headers().expect("a header").iter().collect::<Vec<_>>(),
        ["subscription_id", "external_user_id"]
    );
    reader.records().map(|r| r.expect("a CSV record")).map(|r| (r[0].to_owned(), r[1].to_owned())).collect()
}

struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

/// What the HTTP API's route gives: the buffered audiences function.
async fn buffered(world: &World, request: ApiRequest) -> Answer {
    let r = world.handlers().await.route(request.build()).await;
    Answer { status: r.status().as_u16(), headers: r.headers().clone(), body: r.body().to_vec() }
}

/// What the export function's URL gives, the streamed body read to its end.
async fn streamed(export: &AudienceExport, request: ApiRequest) -> Answer {
    let r = export.handle(request.build()).await;
    let (parts, body) = r.into_parts();
    let body = body.collect().await.expect("a whole body").to_bytes().to_vec();
    Answer { status: parts.status.as_u16(), headers: parts.headers, body }
}

fn problem(a: &Answer) -> (u16, String, String) {
    let body: serde_json::Value = serde_json::from_slice(&a.body).unwrap_or_default();
    let content_type = a.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    (a.status, content_type.to_owned(), body["code"].as_str().unwrap_or_default().to_owned())
}

/// Push recipients with awkward external ids, sms subscriptions for some of the same people.
async fn fixture(
    world: &World,
    t: &TestApp,
    n: usize,
) -> (retarget_shared::domain::Message, Vec<SubscriptionId>) {
    let message = world.message(t, Channel::Push).await;
    let mut subs = Vec::new();
    let mut events = Vec::new();
    for i in 0..n {
        let user = match i % 4 {
            0 => format!("user-{i}"),
            1 => format!("Doe, Jane {i}"),
            2 => format!("say \"hi\" {i}"),
            _ => format!("=HYPERLINK({i})"),
        };
        let sub = world.subscription(t, Channel::Push, &format!("tok-{i}"), Some(&user)).await;
        if i % 3 == 0 {
            world.subscription(t, Channel::Sms, &format!("+1555100{i:04}"), Some(&user)).await;
        }
        events.push((sub, EventKind::Sent, user.clone()));
        if i % 2 == 0 {
            events.push((sub, EventKind::Clicked, user));
        }
        subs.push(sub);
    }
    let events: Vec<_> = events.iter().map(|(s, k, u)| (*s, *k, Some(u.as_str()))).collect();
    world.record(&message, &events).await;
    world.store.unsubscribe(t.app.app_id, subs[4], UnsubscribeReason::Api).await.expect("unsubscribe");
    (message, subs)
}

#[tokio::test]
async fn the_csv_holds_the_paged_jsons_members_in_its_order_buffered_and_streamed() {
    let (world, t) = World::with_app(Plan::Pro).await;
    let (message, _) = fixture(&world, &t, 24).await;
    let export = &world.handlers().await.audience_export;
    let m = message.message_id;
    for query in [
        "action=sent",
        "action=clicked",
        "action=not_clicked",
        "did=sent&did_not=clicked",
        "action=sent&channel=sms",
        "action=not_clicked&channel=sms",
    ] {
        let json = paged(&world, &t, &format!("/v1/messages/{m}/audience?{query}")).await;
        assert!(!json.is_empty(), "{query}: an audience to compare");
        let target = format!("/v1/messages/{m}/audience.csv?{query}");
        for answer in [buffered(&world, t.get(&target)).await, streamed(export, t.get(&target)).await] {
            assert_eq!(answer.status, 200, "{query}: {}", String::from_utf8_lossy(&answer.body));
            assert_eq!(answer.headers["content-type"], "text/csv; charset=utf-8");
            assert_eq!(
                answer.headers["content-disposition"],
                format!("attachment; filename=\"audience-{m}.csv\"")
            );
            assert_eq!(rows(&answer.body), json, "{query}");
        }
    }
    // An empty audience is the header alone; limit and cursor are ignored.
    world.record_each(&message, EventKind::Converted, &[]).await;
    let target = format!("/v1/messages/{m}/audience.csv?action=converted&limit=1&cursor=nonsense");
    let answer = streamed(export, t.get(&target)).await;
    assert_eq!((answer.status, answer.body.as_slice()), (200, &b"subscription_id,external_user_id\n"[..]));
}

#[tokio::test]
async fn bad_requests_are_problems_on_both_functions_and_write_nothing() {
    let (world, t) = World::with_app(Plan::Pro).await;
    let other = world.app(Plan::Pro).await;
    let (message, _) = fixture(&world, &t, 5).await;
    let export = &world.handlers().await.audience_export;
    let m = message.message_id;
    let before = world.snapshot().await;
    let csv = format!("/v1/messages/{m}/audience.csv");
    let cases: Vec<(ApiRequest, u16, &str)> = vec![
        (ApiRequest::get(&format!("{csv}?action=sent")), 401, "unauthorized"),
        (ApiRequest::get(&format!("{csv}?action=sent")).bearer("rt_not_a_key"), 401, "unauthorized"),
        (other.get(&format!("{csv}?action=sent")), 404, "not_found"),
        (t.get(&format!("/v1/messages/{}/audience.csv?action=sent", ulid::Ulid::new())), 404, "not_found"),
        (t.get("/v1/messages/nope/audience.csv?action=sent"), 404, "not_found"),
        (t.get(&format!("{csv}?action=opened")), 400, "invalid_action"),
        (t.get(&csv), 400, "invalid_request"),
        (t.get(&format!("{csv}?action=sent&did=sent")), 400, "invalid_request"),
        (t.get(&format!("{csv}?action=sent&channel=fax")), 400, "invalid_request"),
        (
            ApiRequest::new("POST", &format!("{csv}?action=sent")).bearer(&t.api_key),
            405,
            "method_not_allowed",
        ),
    ];
    for (request, status, code) in cases {
        let again = request.clone();
        let b = buffered(&world, request).await;
        let s = streamed(export, again).await;
        for (which, answer) in [("buffered", &b), ("streamed", &s)] {
            assert_eq!(
                problem(answer),
                (status, "application/problem+json".to_owned(), code.to_owned()),
                "{which}"
            );
        }
    }
    // The export URL serves the CSV and nothing else.
    for other_route in [format!("/v1/messages/{m}/audience?action=sent"), format!("/v1/messages/{m}")] {
        let s = streamed(export, t.get(&other_route)).await;
        assert_eq!(
            problem(&s),
            (404, "application/problem+json".to_owned(), "not_found".to_owned()),
            "{other_route}"
        );
    }
    // A source past its 30 days.
    world.clock.advance(chrono::Duration::days(31));
    let s = streamed(export, t.get(&format!("{csv}?action=sent"))).await;
    assert_eq!(problem(&s).0, 410, "{}", String::from_utf8_lossy(&s.body));
    assert_eq!(world.snapshot().await, before, "nothing written");
}

#[tokio::test]
async fn a_csv_too_large_for_a_buffered_answer_is_sent_to_the_export_url() {
    let (world, t) = World::with_app(Plan::Pro).await;
    let (message, _) = fixture(&world, &t, 40).await;
    let m = message.message_id;
    let small = AppFunction::<Audiences>::new(AudienceDeps {
        store: world.store.clone(),
        export_url: EXPORT_URL.to_owned(),
        buffered_limit: 1000,
    });
    let target = format!("/v1/messages/{m}/audience.csv?action=sent&channel=push");
    let r = small.handle(t.get(&target).build()).await;
    assert_eq!(r.status(), 303);
    let location = r.headers()["location"].to_str().expect("location").to_owned();
    assert_eq!(location, format!("{EXPORT_URL}{target}"));
    // What the export URL answers there, with the same key: the whole audience.
    let export = &world.handlers().await.audience_export;
    let whole = streamed(export, t.get(&target)).await;
    assert!(whole.body.len() > 1000);
    assert_eq!(rows(&whole.body).len(), 39, "40 recipients, one unsubscribed");
    // Under the limit the same function answers it itself.
    let r = small.handle(t.get(&format!("/v1/messages/{m}/audience.csv?action=clicked")).build()).await;
    assert_eq!(r.status(), 200);
    assert!(r.body().len() <= 1000);
}

/// The local API's own server writes the CSV as it is produced (chunked, no length), and a read
/// that fails after the first chunk aborts the response: the client gets an error, never a CSV
/// that looks whole.
#[tokio::test]
async fn the_stream_is_chunked_and_a_read_failing_midway_aborts_it() {
    let (world, t) = World::with_app(Plan::Pro).await;
    let message = world.message(&t, Channel::Push).await;
    // Long external ids (200 characters) make the first 64 KiB chunk a few hundred members, so
    // that a failure after it needs only a small audience. The audience is of the SMS
    // subscriptions of the push recipients, each person with two phones… two push subscriptions:
    // the interactions and replicas are all read ahead at this size, but the later push
    // subscription of each person still reads the earlier one's kinds as the stream reaches it
    // (its person's targets go to the first match), after the first chunk for most people.
    let n = 1_500;
    let now = world.clock.now();
    let subs: Vec<Subscription> = (0..2 * n)
        .map(|j| (j, j / 2))
        .map(|(j, i)| Subscription {
            subscription_id: SubscriptionId::at(now),
            app_id: t.app.app_id,
            channel: Channel::Push,
            platform: Some(Platform::Android),
            token: Some(format!("tok-{j}")),
            phone_number: None,
            email: None,
            external_user_id: Some(ExternalUserId::parse(&format!("{i:0>200}")).expect("an id")),
            status: SubscriptionStatus::Active,
            unsubscribed_reason: None,
            timezone: None,
            created_at: now,
            updated_at: now,
        })
        .collect();
    let phones: Vec<Subscription> = subs
        .iter()
        .step_by(2)
        .enumerate()
        .map(|(i, push)| Subscription {
            subscription_id: SubscriptionId::at(now),
            channel: Channel::Sms,
            platform: None,
            token: None,
            phone_number: Some(
                retarget_shared::domain::PhoneNumber::parse(&format!("+1555030{i:04}")).expect("E.164"),
            ),
            ..push.clone()
        })
        .collect();
    let everyone: Vec<Subscription> = subs.iter().chain(&phones).cloned().collect();
    world.store.bulk_load_subscriptions(&everyone).await.expect("bulk load subscriptions");
    let sent: Vec<Interaction> = subs
        .iter()
        .map(|s| Interaction {
            subscription_id: s.subscription_id,
            kind: EventKind::Sent,
            external_user_id: s.external_user_id.clone(),
            event_id: None,
            occurred_at: now,
        })
        .collect();
    world.store.bulk_load_interactions(&message.scope(), &sent).await.expect("bulk load");
    let target = format!("/v1/messages/{}/audience.csv?action=sent&channel=sms", message.message_id);

    // Through a real HTTP server: the local API's, serving this world's table.
    let queues = world.queues().await;
    let config = retarget_local::LocalConfig {
        api_port: 0,
        table_name: world.table.clone(),
        resource_prefix: world.table.clone(),
        event_bus_name: "unused".into(),
        stack_env_file: None,
        schedule_tick_seconds: 60,
        public_base_url: "http://127.0.0.1".into(),
    };
    let resources = retarget_local::Resources {
        table_name: world.table.clone(),
        push_queue_url: queues.push.url().to_owned(),
        push_dlq_url: queues.push_dlq_url.clone(),
        sms_queue_url: queues.sms.url().to_owned(),
        sms_dlq_url: queues.sms_dlq_url.clone(),
        email_queue_url: queues.email.url().to_owned(),
        email_dlq_url: queues.email_dlq_url.clone(),
        event_bus_name: "unused".into(),
    };
    let api = Arc::new(
        retarget_local::LocalApi::new(retarget_tests::sdk().await, config, resources).expect("local api"),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("address"));
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(retarget_local::serve(listener, api, async move {
        let _ = stopped.await;
    }));
    let response = reqwest::Client::new()
        .get(format!("{url}{target}"))
        .bearer_auth(&t.api_key)
        .send()
        .await
        .expect("the export answers");
    assert_eq!(response.status(), 200);
    assert!(response.headers().get("content-length").is_none(), "{:?}", response.headers());
    assert_eq!(response.headers()["transfer-encoding"], "chunked");
    let body = response.bytes().await.expect("the whole CSV");
    assert_eq!(rows(&body).len(), n);

    // The export function reading DynamoDB through a proxy that starts refusing the interactions'
    // reads once the first chunk is out.
    let upstream = std::env::var("AWS_ENDPOINT_URL_DYNAMODB").expect("DynamoDB Local's endpoint");
    let proxy = FaultProxy::start(Service::DynamoDb, &upstream, FaultRates::default(), 1).await;
    let sdk = retarget_tests::faults::sdk_through(retarget_tests::sdk().await, &proxy.url);
    let store =
        Store::new(retarget_shared::adapters::aws::dynamodb(&sdk), world.table.clone(), world.clock.clone());
    let export = AudienceExport { store };
    let response = export.handle(t.get(&target).build()).await;
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let first = body.frame().await.expect("a first chunk").expect("read").into_data().expect("data");
    assert!(first.starts_with(b"subscription_id,external_user_id\n"));
    proxy.deny_leading_keys(&[format!("MSG#{}#*", message.message_id)]);
    let mut received = first.len();
    let failed = loop {
        match body.frame().await {
            Some(Ok(frame)) => received += frame.into_data().map(|d| d.len()).unwrap_or_default(),
            Some(Err(e)) => break Some(e),
            None => break None,
        }
    };
    assert!(failed.is_some(), "the stream ended as if whole after {received} bytes");
    assert!(received < body_len(n), "{received} bytes: less than the whole CSV");
    assert!(!proxy.refused().is_empty(), "the proxy refused reads");
}

/// The CSV of `n` members with 200-character external ids: the header, then per line a
/// 26-character id, a comma, the external id and a line break.
fn body_len(n: usize) -> usize {
    "subscription_id,external_user_id\n".len() + n * 228
}

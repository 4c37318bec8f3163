//! Issue 17: email end to end below the API — the email sender's pipeline against a stand-in
//! SES v2 (wiremock) with DynamoDB Local and the emulator's queues; SES's events (real shapes,
//! tests/fixtures/ses-events.json) through the handler the EventBridge rule invokes; the
//! one-click unsubscribe route.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use retarget_email_events::{Ignored, SesOutcome, handle_event};
use retarget_email_sender::EmailProvider;
use retarget_shared::Clock as _;
use retarget_shared::domain::{
    Channel, Contents, EventKind, Message, SendJob, SubscriptionId, SubscriptionStatus, UnsubscribeReason,
};
use retarget_shared::retry::RetryPolicy;
use retarget_shared::services::sender::{Pacer, Retries, SenderDeps, process_job};
use retarget_shared::services::tracking::TrackingKeys;
use retarget_tests::{ApiRequest, TestApp, TestQueues, World};
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const SEND_PATH: &str = "/v2/email/outbound-emails";

/// SES answers per recipient address: the listed error code, else accepted.
#[derive(Clone, Default)]
struct Ses {
    refuse: Arc<std::sync::Mutex<HashMap<String, (u16, String)>>>,
    all: Arc<std::sync::Mutex<Option<(u16, String)>>>,
}

impl Respond for Ses {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        let to = body["Destination"]["ToAddresses"][0].as_str().unwrap_or_default().to_owned();
        let refusal =
            self.all.lock().unwrap().clone().or_else(|| self.refuse.lock().unwrap().get(&to).cloned());
        match refusal {
            Some((status, code)) => ResponseTemplate::new(status)
                .insert_header("x-amzn-ErrorType", code.as_str())
                .set_body_json(json!({"message": format!("{code} for {to}")})),
            None => ResponseTemplate::new(200).set_body_json(json!({"MessageId": format!("ses-{to}")})),
        }
    }
}

struct Harness {
    world: World,
    app: TestApp,
    queues: TestQueues,
    ses: Ses,
    server: MockServer,
    deps: SenderDeps<EmailProvider>,
}

impl Harness {
    async fn new(pace: Option<Pacer>) -> Self {
        let world = World::new().await;
        let queues = world.queues().await.clone();
        let server = MockServer::start().await;
        let ses = Ses::default();
        Mock::given(method("POST")).and(path(SEND_PATH)).respond_with(ses.clone()).mount(&server).await;
        let sdk = world.infra.sdk.to_builder().endpoint_url(server.uri()).build();
        let provider =
            EmailProvider::new(&sdk, retarget_tests::PUBLIC_BASE_URL, TrackingKeys::new(world.store.clone()));
        let retries = Retries {
            queue: queues.email.clone(),
            dead_letters: Arc::new(retarget_shared::adapters::queue::Queue::new(
                queues.sqs.clone(),
                queues.email_dlq_url.clone(),
            )),
            policy: RetryPolicy::SEND,
        };
        let deps = SenderDeps {
            store: world.store.clone(),
            provider,
            channel: Channel::Email,
            retries: Some(retries),
            pace,
        };
        let app = world.email_app("Shop <news@shop.example.com>").await;
        Self { world, app, queues, ses, server, deps }
    }

    async fn message(&self) -> Message {
        let now = self.world.clock.now();
        let contents = Contents {
            title: Some("Your cart misses you".into()),
            body: "Come back".into(),
            url: None,
            html: Some("<p>Come back</p>".into()),
        };
        let mut message = Message::new(self.app.app.app_id, Channel::Email, contents, now);
        message.retargetable = true;
        self.world.store.create_message(&message).await.unwrap();
        message
    }

    fn job(&self, message: &Message, subs: &[SubscriptionId]) -> SendJob {
        SendJob {
            app_id: self.app.app.app_id,
            message_id: message.message_id,
            channel: Channel::Email,
            subscription_ids: subs.to_vec(),
            retry: 0,
            released: false,
        }
    }

    async fn ses_calls(&self) -> usize {
        self.server.received_requests().await.unwrap().len()
    }

    async fn kinds(
        &self,
        message: &Message,
        subs: &[SubscriptionId],
    ) -> HashMap<SubscriptionId, Vec<EventKind>> {
        self.world.store.kinds_of(&message.scope(), Channel::Email, subs).await.unwrap()
    }
}

#[tokio::test]
async fn each_recipient_is_sent_once_and_recorded_sent_whatever_the_redeliveries() {
    let h = Harness::new(None).await;
    let subs = h.world.subscriptions(&h.app, Channel::Email, 5).await;
    let message = h.message().await;
    let job = h.job(&message, &subs);
    let first = process_job(&h.deps, &job, None).await.unwrap();
    assert_eq!(first.sent, 5, "{first:?}");
    // SQS delivers the same job again (twice, at once): nobody is sent twice.
    let (a, b) = tokio::join!(process_job(&h.deps, &job, None), process_job(&h.deps, &job, None));
    assert_eq!((a.unwrap().sent, b.unwrap().sent), (5, 5), "already sent counts as done");
    assert_eq!(h.ses_calls().await, 5);
    let kinds = h.kinds(&message, &subs).await;
    assert!(subs.iter().all(|s| kinds.get(s) == Some(&vec![EventKind::Sent])), "{kinds:?}");
}

#[tokio::test]
async fn a_refused_recipient_fails_alone_and_stays_subscribed() {
    let h = Harness::new(None).await;
    let subs = h.world.subscriptions(&h.app, Channel::Email, 3).await;
    h.ses.refuse.lock().unwrap().insert("user-1@example.com".into(), (400, "MessageRejected".into()));
    let message = h.message().await;
    let report = process_job(&h.deps, &h.job(&message, &subs), None).await.unwrap();
    assert_eq!((report.sent, report.failed), (2, 1), "{report:?}");
    let kinds = h.kinds(&message, &subs).await;
    assert_eq!(kinds.get(&subs[1]), Some(&vec![EventKind::Failed]));
    let sub = h.world.store.get_subscription(h.app.app.app_id, subs[1]).await.unwrap().unwrap();
    assert_eq!(sub.status, SubscriptionStatus::Active);
}

/// An account-level refusal (suspended, paused, unverified MAIL FROM) stops the job: its
/// recipients go whole to the DLQ for a redrive, nothing is recorded failed, and SES is not
/// called for every one of them.
#[tokio::test]
async fn an_account_refusal_stops_the_job_and_dead_letters_it_recording_nothing() {
    let h = Harness::new(None).await;
    let subs = h.world.subscriptions(&h.app, Channel::Email, 40).await;
    *h.ses.all.lock().unwrap() = Some((400, "AccountSuspendedException".into()));
    let message = h.message().await;
    let report = process_job(&h.deps, &h.job(&message, &subs), None).await.unwrap();
    assert_eq!(
        (report.halted, report.sent, report.failed, report.dead_lettered),
        (40, 0, 0, 1),
        "{report:?}"
    );
    assert!(h.ses_calls().await <= 16, "at most the calls already in flight: {}", h.ses_calls().await);
    assert!(h.kinds(&message, &subs).await.is_empty(), "nothing recorded");
    let dead = h.queues.dead_letters(&h.queues.email_dlq_url).await;
    assert_eq!(dead.len(), 1);
    let mut left = dead[0].subscription_ids.clone();
    left.sort();
    let mut all = subs.clone();
    all.sort();
    assert_eq!((left, dead[0].retry), (all, 0), "every recipient, for a redrive");

    // Once the account is fixed, the redriven job sends each of them.
    *h.ses.all.lock().unwrap() = None;
    let redriven = process_job(&h.deps, &dead[0], None).await.unwrap();
    assert_eq!(redriven.sent, 40, "{redriven:?}");
}

/// A paced sender's job outlasts its invocation: what the deadline leaves is continued at once
/// in a new job with the same retry count — not a failure, not a step toward the DLQ — and no
/// call starts inside the deadline margin.
#[tokio::test]
async fn a_paced_job_continues_past_the_deadline_without_spending_its_retries() {
    let h = Harness::new(Pacer::per_second(10.0)).await;
    let subs = h.world.subscriptions(&h.app, Channel::Email, 60).await;
    let message = h.message().await;
    let started = Instant::now();
    // 5 s of margin: about one second of sends at 10/s.
    let deadline = started + Duration::from_millis(6_000);
    let report = process_job(&h.deps, &h.job(&message, &subs), Some(deadline)).await.unwrap();
    assert!(report.sent >= 5 && report.sent <= 15, "{report:?}");
    assert_eq!(report.sent + report.continued, 60, "{report:?}");
    assert_eq!((report.retry, report.dead_lettered), (0, 0));
    assert!(started.elapsed() < Duration::from_secs(3), "stopped at the margin: {:?}", started.elapsed());
    let continued = h.queues.drain(&h.queues.email).await;
    assert_eq!(continued.len(), 1, "{continued:?}");
    assert_eq!((continued[0].retry, continued[0].subscription_ids.len()), (0, report.continued));
    let rest = process_job(&h.deps, &continued[0], None).await.unwrap();
    assert_eq!(rest.sent, report.continued);
    assert_eq!(h.ses_calls().await, 60, "each once");
}

// ---- SES events --------------------------------------------------------------------------

fn fixture(name: &str, app: &TestApp, message: &Message, sub: SubscriptionId) -> (String, Value) {
    let all: Value = serde_json::from_str(include_str!("../fixtures/ses-events.json")).unwrap();
    let text = all[name]
        .to_string()
        .replace("{{app_id}}", &app.app.app_id.to_string())
        .replace("{{message_id}}", &message.message_id.to_string())
        .replace("{{subscription_id}}", &sub.to_string());
    let event: Value = serde_json::from_str(&text).unwrap();
    (event["detail-type"].as_str().unwrap().to_owned(), event["detail"].clone())
}

async fn deliver(h: &Harness, name: &str, message: &Message, sub: SubscriptionId) -> SesOutcome {
    let (detail_type, detail) = fixture(name, &h.app, message, sub);
    handle_event(&h.world.store, &detail_type, &detail).await.unwrap()
}

#[tokio::test]
async fn every_detail_type_records_its_kind_once_and_others_nothing() {
    let h = Harness::new(None).await;
    let subs = h.world.subscriptions(&h.app, Channel::Email, 1).await;
    let message = h.message().await;
    let sub = subs[0];
    for (name, kind) in [
        ("Email Sent", EventKind::Sent),
        ("Email Delivered", EventKind::Delivered),
        ("Email Opened", EventKind::Opened),
        ("Email Clicked", EventKind::Clicked),
        ("Email Bounced (transient)", EventKind::Bounced),
        ("Email Rejected", EventKind::Failed),
    ] {
        let outcome = deliver(&h, name, &message, sub).await;
        assert!(matches!(outcome, SesOutcome::Recorded { kind: k, .. } if k == kind), "{name}: {outcome:?}");
        // A replay (EventBridge at least once, or an archive replayed) changes nothing.
        let again = deliver(&h, name, &message, sub).await;
        assert!(matches!(again, SesOutcome::Recorded { new: false, .. }), "{name}: {again:?}");
    }
    let outcome = deliver(&h, "Email Delivery Delayed", &message, sub).await;
    assert_eq!(outcome, SesOutcome::Ignored { reason: Ignored::DetailType });
    let mut kinds = h.kinds(&message, &subs).await.remove(&sub).unwrap();
    kinds.sort_by_key(|k| k.as_str());
    use EventKind::*;
    let mut expected = vec![Sent, Delivered, Opened, Clicked, Bounced, Failed];
    expected.sort_by_key(|k| k.as_str());
    assert_eq!(kinds, expected);
    let still = h.world.store.get_subscription(h.app.app.app_id, sub).await.unwrap().unwrap();
    assert_eq!(still.status, SubscriptionStatus::Active, "a transient bounce unsubscribes no one");
}

#[tokio::test]
async fn a_permanent_bounce_and_a_complaint_unsubscribe_in_either_order_with_the_same_reason() {
    let h = Harness::new(None).await;
    let subs = h.world.subscriptions(&h.app, Channel::Email, 3).await;
    let message = h.message().await;
    let reason = |sub| {
        let h = &h;
        async move {
            h.world.store.get_subscription(h.app.app.app_id, sub).await.unwrap().unwrap().unsubscribed_reason
        }
    };
    deliver(&h, "Email Bounced", &message, subs[0]).await;
    assert_eq!(reason(subs[0]).await, Some(UnsubscribeReason::Bounce));

    deliver(&h, "Email Bounced", &message, subs[1]).await;
    deliver(&h, "Email Complaint Received", &message, subs[1]).await;
    deliver(&h, "Email Complaint Received", &message, subs[2]).await;
    deliver(&h, "Email Bounced", &message, subs[2]).await;
    // Replays after the fact change nothing either.
    deliver(&h, "Email Bounced", &message, subs[1]).await;
    assert_eq!(reason(subs[1]).await, Some(UnsubscribeReason::Complaint));
    assert_eq!(reason(subs[2]).await, Some(UnsubscribeReason::Complaint));
}

#[tokio::test]
async fn events_of_mail_this_deployment_did_not_send_are_ignored_not_failed() {
    let h = Harness::new(None).await;
    let subs = h.world.subscriptions(&h.app, Channel::Email, 1).await;
    let message = h.message().await;
    let (detail_type, mut detail) = fixture("Email Bounced", &h.app, &message, subs[0]);
    let store = &h.world.store;
    // Mail sent by something else through the same account: no tags of ours.
    let mut untagged = detail.clone();
    untagged["mail"]["tags"] = json!({"ses:configuration-set": ["other"]});
    assert_eq!(
        handle_event(store, &detail_type, &untagged).await.unwrap(),
        SesOutcome::Ignored { reason: Ignored::NoTags }
    );
    // Another deployment's app (or one deleted).
    let mut other_app = detail.clone();
    other_app["mail"]["tags"]["app_id"] = json!([retarget_shared::domain::AppId::new().to_string()]);
    assert_eq!(
        handle_event(store, &detail_type, &other_app).await.unwrap(),
        SesOutcome::Ignored { reason: Ignored::UnknownApp }
    );
    // A message or subscription of this app that does not exist.
    detail["mail"]["tags"]["message_id"] = json!([retarget_shared::domain::MessageId::new().to_string()]);
    assert_eq!(
        handle_event(store, &detail_type, &detail).await.unwrap(),
        SesOutcome::Ignored { reason: Ignored::UnknownMessage }
    );
    let sub = store.get_subscription(h.app.app.app_id, subs[0]).await.unwrap().unwrap();
    assert_eq!(sub.status, SubscriptionStatus::Active, "nobody unsubscribed by others' events");
}

// ---- One-click unsubscribe ---------------------------------------------------------------

#[tokio::test]
async fn the_unsubscribe_link_shows_a_page_on_get_and_unsubscribes_on_post_only() {
    let h = Harness::new(None).await;
    let subs = h.world.subscriptions(&h.app, Channel::Email, 1).await;
    let message = h.message().await;
    let token = h.world.unsubscribe_token(&h.app, &message, subs[0]).await;
    let target = format!("/u/{token}");
    let status =
        || async { h.world.store.get_subscription(h.app.app.app_id, subs[0]).await.unwrap().unwrap() };

    let page = h.world.call(ApiRequest::get(&target)).await;
    assert_eq!(page.status, 200, "{page:?}");
    assert!(String::from_utf8_lossy(&page.raw).contains("<form method=\"post\""), "{page:?}");
    assert_eq!(status().await.status, SubscriptionStatus::Active, "a GET (a scanner) changes nothing");

    let one_click = ApiRequest::post(&target)
        .header("content-type", "application/x-www-form-urlencoded")
        .raw_body(b"List-Unsubscribe=One-Click");
    let done = h.world.call(one_click.clone()).await;
    assert_eq!(done.status, 200, "{done:?}");
    let sub = status().await;
    assert_eq!(
        (sub.status, sub.unsubscribed_reason),
        (SubscriptionStatus::Unsubscribed, Some(UnsubscribeReason::Stop))
    );
    assert_eq!(h.world.call(one_click).await.status, 200, "idempotent");

    // A tracking token (same key, other purpose) or a forged one unsubscribes nobody.
    let other = h.world.subscriptions(&h.app, Channel::Email, 2).await[1];
    let tracking = h.world.track_token(&h.app, &message, other).await;
    for bad in [tracking.as_str(), "not-a-token"] {
        let r = h
            .world
            .call(ApiRequest::post(&format!("/u/{bad}")).raw_body(b"List-Unsubscribe=One-Click"))
            .await;
        assert_eq!(r.status, 404, "{bad}: {r:?}");
    }
    let other = h.world.store.get_subscription(h.app.app.app_id, other).await.unwrap().unwrap();
    assert_eq!(other.status, SubscriptionStatus::Active);
}

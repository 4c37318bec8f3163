//! Quiet hours end to end against DynamoDB Local, the SQS emulator and a Twilio stand-in: the
//! SMS sender defers the recipients whose local time is inside the app's quiet hours (grouped
//! by the instant they end), the scheduler puts each group back on the queue at that instant
//! on the test clock — never before — and every recipient is sent exactly once, whatever SQS
//! redelivers; a retarget counts its deferred recipients once; transactional messages never wait.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use futures::{StreamExt, TryStreamExt, stream};
use retarget_shared::adapters::queue::{ChannelQueues, Queue};
use retarget_shared::bootstrap::ScheduleFunction;
use retarget_shared::domain::{Channel, Deferral, EventKind, SubscriptionId};
use retarget_shared::services::dispatch::DispatchDeps;
use retarget_shared::{Clock, Store, keys};
use retarget_tests::crash::FailAfter;
use retarget_tests::sending::{SmsHarness, scheduled_event};
use retarget_tests::twilio;
use serde_json::json;

struct Harness(SmsHarness);

impl std::ops::Deref for Harness {
    type Target = SmsHarness;
    fn deref(&self) -> &SmsHarness {
        &self.0
    }
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).expect("a time").with_timezone(&Utc)
}

/// The recipients of the scenario (the test clock starts at 2026-11-28T14:00:00Z, a Saturday in
/// November: US standard time). Quiet hours 21:00–08:00 on SMS; default zone Asia/Tokyo.
const PEOPLE: [(&str, Option<&str>, &str); 6] = [
    // New York 09:00: now.
    ("+12125550101", None, "2026-11-28T14:00:00Z"),
    // Los Angeles 06:00: at 08:00 PST = 16:00Z.
    ("+14155550102", None, "2026-11-28T16:00:00Z"),
    // Paris 15:00: now.
    ("+33612345678", None, "2026-11-28T14:00:00Z"),
    // Given Tokyo (23:00): at 08:00 JST = 23:00Z.
    ("+15555550103", Some("Asia/Tokyo"), "2026-11-28T23:00:00Z"),
    // No zone from the number: the default, Tokyo.
    ("+15555550104", None, "2026-11-28T23:00:00Z"),
    // A New York number whose given zone is Los Angeles: the given zone wins.
    ("+12125550105", Some("America/Los_Angeles"), "2026-11-28T16:00:00Z"),
];

impl Harness {
    async fn new() -> Self {
        Self(
            SmsHarness::new(&json!({
                "quiet_hours": {"start": "21:00", "end": "08:00", "channels": ["sms"]},
                "default_timezone": "Asia/Tokyo",
            }))
            .await,
        )
    }

    async fn people(&self) -> Vec<SubscriptionId> {
        let mut subs = Vec::new();
        for (i, (phone, zone, _)) in PEOPLE.iter().enumerate() {
            subs.push(self.subscribe(phone, Some(&format!("p{i}")), *zone).await);
        }
        subs
    }

    async fn sent_to(&self) -> Vec<String> {
        let mut to = twilio::recipients(&self.twilio).await;
        to.sort();
        to
    }
}

/// The numbers due at or before `t`, sorted.
fn due_by(t: &str) -> Vec<String> {
    let mut v: Vec<String> = PEOPLE
        .iter()
        .filter(|(_, _, release)| at(release) <= at(t))
        .map(|(p, _, _)| (*p).to_owned())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn each_recipient_waits_for_their_own_morning_and_is_sent_once_then() {
    let h = Harness::new().await;
    let subs = h.people().await;
    let body = json!({"channel": "sms", "contents": {"body": "Your cart misses you"}, "include_subscription_ids": subs});
    let r = h.world.call(h.app.post("/v1/messages", &body)).await;
    assert_eq!(r.status, 202, "{r:?}");

    // Sent now to those outside their quiet hours; the others wait. SQS delivers it twice.
    h.send_queued(2).await;
    assert_eq!(h.sent_to().await, due_by("2026-11-28T14:00:00Z"));
    let pending = h.world.store.pending_deferrals(h.app.app.app_id).await.expect("deferrals");
    let mut releases: Vec<(DateTime<Utc>, usize)> =
        pending.iter().map(|d| (d.release, d.subscription_ids.len())).collect();
    releases.sort();
    assert_eq!(
        releases,
        [(at("2026-11-28T16:00:00Z"), 2), (at("2026-11-28T23:00:00Z"), 2)],
        "one deferral per instant, not one per recipient, and none twice"
    );

    // Not a second early.
    assert_eq!(h.tick().await.deferrals_released, 0);
    h.advance_to(at("2026-11-28T15:59:59Z"));
    assert_eq!(h.tick().await.deferrals_released, 0);
    assert!(h.queues.bodies(&h.queues.sms).await.is_empty());
    // Los Angeles' 08:00.
    h.advance_to(at("2026-11-28T16:00:00Z"));
    assert_eq!(h.tick().await.deferrals_released, 1);
    let jobs = h.send_queued(2).await;
    assert!(jobs.iter().all(|j| j.released), "{jobs:?}");
    assert_eq!(h.sent_to().await, due_by("2026-11-28T16:00:00Z"));
    assert_eq!(h.tick().await.deferrals_released, 0, "released once");
    // Tokyo's 08:00.
    h.advance_to(at("2026-11-28T22:59:59Z"));
    assert_eq!(h.tick().await.deferrals_released, 0);
    h.advance_to(at("2026-11-28T23:00:00Z"));
    assert_eq!(h.tick().await.deferrals_released, 1);
    h.send_queued(1).await;
    let sent = h.sent_to().await;
    assert_eq!(sent, due_by("2026-11-28T23:00:00Z"));
    assert_eq!(sent.iter().collect::<BTreeSet<_>>().len(), PEOPLE.len(), "each once");
    assert!(h.world.store.pending_deferrals(h.app.app.app_id).await.expect("deferrals").is_empty());
}

#[tokio::test]
async fn a_retarget_counts_its_deferred_recipients_once_and_transactional_sends_never_wait() {
    let h = Harness::new().await;
    let subs = h.people().await;
    // A source everyone was sent, then a retarget to it by SMS now.
    let source = h.world.message(&h.app, Channel::Sms).await;
    let events: Vec<(SubscriptionId, EventKind, Option<&str>)> =
        subs.iter().map(|s| (*s, EventKind::Sent, None)).collect();
    h.world.record(&source, &events).await;
    let r = h
        .world
        .call(h.app.post(
            "/v1/retargets",
            &json!({"source_message_id": source.message_id, "action": "sent", "contents": {"body": "Still there?"}}),
        ))
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let retarget = r.body["retarget_id"].as_str().expect("id").to_owned();
    assert_eq!(h.tick().await.dispatched, 1);
    // Delivered three times by SQS: four recipients deferred, counted once.
    h.send_queued(3).await;
    assert_eq!(h.sent_to().await, due_by("2026-11-28T14:00:00Z"));
    let view = h.world.call(h.app.get(&format!("/v1/retargets/{retarget}"))).await.body;
    assert_eq!((view["deferred"].as_u64(), view["capped"].as_u64()), (Some(4), Some(0)), "{view}");
    // Released and sent: still counted once.
    h.advance_to(at("2026-11-28T23:00:00Z"));
    assert_eq!(h.tick().await.deferrals_released, 2);
    h.send_queued(2).await;
    assert_eq!(h.sent_to().await.len(), PEOPLE.len());
    let view = h.world.call(h.app.get(&format!("/v1/retargets/{retarget}"))).await.body;
    assert_eq!(view["deferred"].as_u64(), Some(4), "{view}");

    // A transactional message at 23:00Z: Paris (00:00) and New York (18:00)... and everyone
    // inside their quiet hours still gets it now.
    let before = h.sent_to().await.len();
    let body = json!({"channel": "sms", "contents": {"body": "Your code: 123456"}, "include_subscription_ids": subs, "transactional": true});
    let r = h.world.call(h.app.post("/v1/messages", &body)).await;
    assert_eq!(r.status, 202, "{r:?}");
    h.send_queued(1).await;
    assert_eq!(h.sent_to().await.len(), before + PEOPLE.len(), "nobody waited");
    assert!(h.world.store.pending_deferrals(h.app.app.app_id).await.expect("deferrals").is_empty());
}

/// The scheduler dies while releasing a deferral, once before its recipients are back on the
/// queue (SQS gone) and once after, before it forgets the deferral (its DeleteItem never
/// made): each time the lease runs out and a later tick releases it again, never before; the
/// recipients are texted once, and nothing is left waiting.
#[tokio::test]
async fn a_release_that_dies_on_either_side_of_its_enqueue_is_redone_and_texts_once() {
    let h = Harness::new().await;
    let subs = h.people().await;
    h.message(&subs, "Your cart misses you", false).await;
    h.send_queued(1).await;
    assert_eq!(h.sent_to().await, due_by("2026-11-28T14:00:00Z"));
    let sdk = retarget_tests::sdk().await;
    let with = |store: Store, sms_queue: Arc<Queue>| DispatchDeps {
        store,
        queues: ChannelQueues { sms: sms_queue, ..h.deps.queues.clone() },
        bus: h.deps.bus.clone(),
    };
    let clock: Arc<dyn Clock> = h.world.clock.clone();

    // Los Angeles' 08:00: the release dies before it enqueues.
    h.advance_to(at("2026-11-28T16:00:00Z"));
    let dead_queue = Arc::new(Queue::new(FailAfter::new(0).sqs(sdk), h.queues.sms.url()));
    let report = with(h.world.store.clone(), dead_queue).handle(scheduled_event(), None).await.expect("tick");
    assert_eq!(report.deferrals_released, 0, "{report:?}");
    assert!(h.queues.bodies(&h.queues.sms).await.is_empty());
    // Its lease holds: nobody releases it meanwhile.
    h.advance_to(at("2026-11-28T16:00:00Z") + Duration::seconds(keys::DUE_LEASE_SECONDS - 1));
    assert_eq!(h.tick().await.deferrals_released, 0);

    // Lease over: released again, and this time the process dies after the enqueue, before
    // the deferral is forgotten.
    h.advance_to(at("2026-11-28T16:00:00Z") + Duration::seconds(keys::DUE_LEASE_SECONDS));
    let no_delete = Store::new(FailAfter::only("DeleteItem", 0).dynamodb(sdk), h.world.table.clone(), clock);
    let report =
        with(no_delete, h.deps.queues.sms.clone()).handle(scheduled_event(), None).await.expect("tick");
    assert_eq!(report.deferrals_released, 0, "{report:?}");
    h.send_queued(2).await;
    let la = due_by("2026-11-28T16:00:00Z");
    assert_eq!(h.sent_to().await, la, "released recipients texted at the second attempt");

    // Once more after that lease: the same recipients are queued again, and nobody is texted twice.
    h.advance_to(at("2026-11-28T16:00:00Z") + Duration::seconds(2 * keys::DUE_LEASE_SECONDS));
    assert_eq!(h.tick().await.deferrals_released, 1);
    let jobs = h.send_queued(1).await;
    assert!(!jobs.is_empty() && jobs.iter().all(|j| j.released), "{jobs:?}");
    assert_eq!(h.sent_to().await, la, "each once");
    assert_eq!(h.tick().await.deferrals_released, 0, "forgotten");

    // Tokyo's group was never touched and goes at its own hour.
    h.advance_to(at("2026-11-28T23:00:00Z"));
    assert_eq!(h.tick().await.deferrals_released, 1);
    h.send_queued(1).await;
    assert_eq!(h.sent_to().await, due_by("2026-11-28T23:00:00Z"));
    assert!(h.world.store.pending_deferrals(h.app.app.app_id).await.expect("deferrals").is_empty());
}

/// A recipient whose quiet hours end after the message's 30 days are over is still texted at
/// their morning: waiting never drops a send. (The message's data has expired by then, so its
/// `sent` is not shown, as for anything past `expires_at`.)
#[tokio::test]
async fn a_recipient_released_after_the_message_expired_is_still_texted() {
    let h = Harness::new().await;
    // No zone from the number: the default, Tokyo.
    let sub = h.subscribe("+15555550199", None, None).await;
    h.message(&[sub], "Last day of the sale", false).await;
    // The job comes up an hour before the message expires (2026-12-28T14:00Z): 22:00 in Tokyo.
    h.advance_to(at("2026-12-28T13:00:00Z"));
    h.send_queued(1).await;
    assert!(h.sent_to().await.is_empty(), "quiet hours");
    // 08:00 in Tokyo, nine hours after the message expired.
    h.advance_to(at("2026-12-28T23:00:00Z"));
    assert_eq!(h.tick().await.deferrals_released, 1);
    h.send_queued(1).await;
    assert_eq!(h.sent_to().await, ["+15555550199"]);
    assert!(h.world.store.pending_deferrals(h.app.app.app_id).await.expect("deferrals").is_empty());
}

/// A million recipients over ten zones are about two thousand send jobs, so about two thousand
/// deferrals end at each zone's 08:00 (more where zones share an offset). EventBridge calls the
/// scheduler once a minute: one tick must release every deferral due, not one page of them and
/// the rest minutes late.
#[tokio::test]
async fn one_tick_releases_every_deferral_due_however_many() {
    const DEFERRALS: usize = 601;
    let h = Harness::new().await;
    let sub = h.subscribe("+15555550199", None, None).await;
    let message_id = h.message(&[sub], "Good morning", false).await.parse().expect("an id");
    // Tokyo's 08:00; each deferral a job's worth of one recipient (distinct ids: distinct deferrals).
    let release = at("2026-11-28T23:00:00Z");
    let store = &h.world.store;
    let deferrals: Vec<_> = (0..DEFERRALS)
        .flat_map(|_| {
            Deferral::group(
                h.app.app.app_id,
                message_id,
                Channel::Sms,
                None,
                release + Duration::days(30),
                [(SubscriptionId::new(), release)],
            )
        })
        .collect();
    let stored: Vec<bool> = stream::iter(&deferrals)
        .map(|d| store.defer(d, false))
        .buffer_unordered(16)
        .try_collect()
        .await
        .expect("deferrals stored");
    assert!(stored.iter().all(|s| *s));

    h.advance_to(release);
    let report = h.tick().await;
    assert_eq!(report.deferrals_released, DEFERRALS, "{report:?}");
    assert!(store.pending_deferrals(h.app.app.app_id).await.expect("deferrals").is_empty());
    // The message's own job is on the queue too.
    let jobs = h.queues.bodies(&h.queues.sms).await;
    let released = jobs
        .iter()
        .filter(|b| serde_json::from_str::<retarget_shared::domain::SendJob>(b).expect("a job").released)
        .count();
    assert_eq!(released, DEFERRALS);
    assert_eq!(h.tick().await.deferrals_released, 0, "nothing left for the next tick");
}

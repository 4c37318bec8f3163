//! Quiet hours at scale (issue 16): an SMS retarget of N recipients spread evenly over ten
//! zones, every one of them inside the app's quiet hours (21:00–08:00 local) when it is
//! dispatched, on a test clock. Measured in one process, phase by phase:
//!
//! 1. dispatch: the scheduler's `tick` puts the audience on the SMS queue (as `fanout`);
//! 2. deferral: every queued job through the SMS sender's pipeline (a provider that counts
//!    calls: none is expected), which stores the recipients as deferrals, grouped by the
//!    instant their quiet hours end — the DynamoDB requests and write units of that phase,
//!    per recipient;
//! 3. release: the test clock moves a minute at a time, as EventBridge's `rate(1 minute)`
//!    would call the scheduler, until every deferral is released; after each tick the released
//!    jobs are taken off the queue and each recipient's release time is compared with the end
//!    of their zone's window (computed here with chrono-tz, independently of the product). The
//!    scheduler's peak RSS over these ticks, and what they ask of DynamoDB per recipient.
//!    One released job per zone then goes through the sender again: it must send, not defer.
//!
//! A recipient's zone is written into its subscription id (its last byte: ids still sort at
//! random, so every job mixes the zones as a real audience would), so the bench holds no
//! per-recipient map next to the scheduler it measures. Seeding is its own process
//! (`quiet-hours-seed`), so the peak RSS read here is the scheduler's and the sender's.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context as _;
use chrono::{DateTime, Duration, NaiveDate, TimeZone as _, Utc};
use futures::{StreamExt, TryStreamExt, stream};
use retarget_shared::Store;
use retarget_shared::adapters::store::Interaction;
use retarget_shared::clock::TestClock;
use retarget_shared::domain::{
    Address, App, AppId, Channel, Contents, DeliveryPolicy, EventKind, LocalTime, Message, MessageId,
    PhoneNumber, Predicate, QuietHours, Retarget, RetargetStatus, SendJob, SmsSecret, Subscription,
    SubscriptionId, TimeZone,
};
use retarget_shared::services::dispatch::tick;
use retarget_shared::services::provider::{Accepted, Provider, SendError};
use retarget_shared::services::sender::{SenderDeps, process_job};
use serde_json::json;

use crate::counting::{Clients, Snapshot};
use crate::sys::{Stopwatch, peak_rss_mib, reset_peak_rss};

/// The ten zones: a number prefix libphonenumber maps to exactly that zone, and the digits
/// that follow it (a counter, zero-padded).
const ZONES: [(&str, &str, usize); 10] = [
    ("America/Los_Angeles", "+1415", 7),
    ("America/Denver", "+1303", 7),
    ("America/Chicago", "+1312", 7),
    ("America/New_York", "+1212", 7),
    ("America/Halifax", "+1902", 7),
    ("America/Sao_Paulo", "+5511", 9),
    ("Atlantic/Reykjavik", "+354", 7),
    ("Europe/London", "+4420", 8),
    ("Europe/Paris", "+331", 8),
    ("Europe/Helsinki", "+3589", 7),
];

/// Quiet hours of the bench's app, on SMS.
const QUIET: (&str, &str) = ("21:00", "08:00");
/// The dispatch instant: inside every zone's quiet hours (Los Angeles 21:30 … Helsinki 07:30).
fn dispatch_at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 8, 5, 30, 0).single().unwrap_or_default()
}

/// Subscriptions seeded per round.
const CHUNK: usize = 5000;
/// Send jobs run at once in the deferral phase (concurrent Lambda invocations).
const SENDERS: usize = 8;

pub struct Options {
    pub app_id: AppId,
    pub message_id: MessageId,
}

/// Counts provider calls; answers at once.
#[derive(Clone, Default)]
struct Counting(Arc<AtomicUsize>);

impl Provider for Counting {
    type Secret = SmsSecret;
    type Credentials = ();

    fn load_secret(
        store: &Store,
        app_id: retarget_shared::domain::AppId,
    ) -> impl std::future::Future<Output = Result<Self::Secret, retarget_shared::adapters::store::StoreError>> + Send
    {
        store.get_secret::<SmsSecret>(app_id)
    }

    fn credentials(_: &App, _: &SmsSecret) {}

    async fn send<'a>(
        &'a self,
        _app: &'a App,
        _credentials: &'a (),
        _subscription: &'a Subscription,
        _message: &'a Message,
    ) -> Result<Accepted, SendError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(Accepted { provider_id: None })
    }
}

/// The end of `zone`'s quiet hours that follows `at` (08:00 local on the dispatch's local day
/// or the next), in UTC.
fn window_end(zone: chrono_tz::Tz, at: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
    let local = at.with_timezone(&zone);
    let day: NaiveDate = local.date_naive();
    for d in [day, day + Duration::days(1)] {
        let end = zone
            .from_local_datetime(&d.and_hms_opt(8, 0, 0).context("08:00")?)
            .single()
            .context("08:00 is ambiguous")?
            .with_timezone(&Utc);
        if end > at {
            return Ok(end);
        }
    }
    anyhow::bail!("no window end after {at} in {zone}")
}

fn subscription_id(now: DateTime<Utc>, zone: usize) -> SubscriptionId {
    let mut bytes = SubscriptionId::at(now).to_bytes();
    bytes[15] = zone as u8;
    SubscriptionId::from_bytes(bytes)
}

fn zone_of(id: &SubscriptionId) -> usize {
    id.to_bytes()[15] as usize
}

/// The bench's clock: frozen at the dispatch instant, moved by the release phase.
fn clock() -> Arc<TestClock> {
    Arc::new(TestClock::frozen_at(dispatch_at()))
}

/// Seeds the app, its policy and an SMS message sent to `recipients` people spread over the
/// zones (person i in zone i % 10); prints one JSON line with their ids.
pub async fn seed(clients: &Clients, table: &str, recipients: usize) -> anyhow::Result<()> {
    let watch = Stopwatch::start();
    let store = Store::new(clients.dynamodb.clone(), table.to_owned(), clock());
    let (app, message) = seed_with(&store, recipients).await?;
    println!(
        "{}",
        json!({"bench": "seed_quiet_hours", "app_id": app.app_id, "message_id": message.message_id,
            "recipients": recipients, "seed_seconds": watch.stop().0})
    );
    Ok(())
}

async fn seed_with(store: &Store, recipients: usize) -> anyhow::Result<(App, Message)> {
    let app = crate::seed::app(store).await?;
    let quiet = QuietHours::new(
        LocalTime::parse(QUIET.0, "start")?,
        LocalTime::parse(QUIET.1, "end")?,
        vec![Channel::Sms],
    )?;
    let policy = DeliveryPolicy { quiet_hours: Some(quiet), ..DeliveryPolicy::default() };
    let app = store.set_delivery_policy(app.app_id, &policy).await?;
    let now = store.clock().now();
    let contents = Contents { title: None, body: "bench".into(), url: None, html: None };
    let mut message = Message::new(app.app_id, Channel::Sms, contents, now);
    message.retargetable = true;
    message.recipients = recipients as u64;
    store.create_message(&message).await?;
    let scope = message.scope();
    for chunk_start in (0..recipients).step_by(CHUNK) {
        let chunk_end = (chunk_start + CHUNK).min(recipients);
        let mut subs = Vec::with_capacity(chunk_end - chunk_start);
        let mut events = Vec::with_capacity(chunk_end - chunk_start);
        for i in chunk_start..chunk_end {
            let zone = i % ZONES.len();
            let (_, prefix, digits) = ZONES[zone];
            let number = format!("{prefix}{:0digits$}", 2 * 10usize.pow(digits as u32 - 1) + i / ZONES.len());
            let phone_number = PhoneNumber::parse(&number).map_err(|e| anyhow::anyhow!("{number}: {e}"))?;
            let mut sub = Subscription::new(app.app_id, Address::Sms { phone_number }, None, now);
            sub.subscription_id = subscription_id(now, zone);
            events.push(Interaction {
                subscription_id: sub.subscription_id,
                kind: EventKind::Sent,
                external_user_id: None,
                event_id: None,
                occurred_at: now,
            });
            subs.push(sub);
        }
        let interactions = stream::iter(events.chunks(1000))
            .map(|batch| store.bulk_load_interactions(&scope, batch))
            .buffer_unordered(2)
            .try_collect::<Vec<_>>();
        tokio::try_join!(store.bulk_load_subscriptions(&subs), interactions)?;
        if chunk_end.is_multiple_of(100_000) || chunk_end == recipients {
            eprintln!("quiet hours: seeded {chunk_end}/{recipients}");
        }
    }
    Ok((app, message))
}

/// Takes up to ten jobs off the queue (deleting them): empty when the queue is.
async fn take(clients: &Clients, queue_url: &str) -> anyhow::Result<Vec<SendJob>> {
    let output = clients.sqs.receive_message().queue_url(queue_url).max_number_of_messages(10).send().await?;
    let messages = output.messages.unwrap_or_default();
    let mut jobs = Vec::with_capacity(messages.len());
    for m in &messages {
        jobs.push(serde_json::from_str::<SendJob>(m.body().unwrap_or_default())?);
    }
    if !messages.is_empty() {
        let mut delete = clients.sqs.delete_message_batch().queue_url(queue_url);
        for (i, m) in messages.iter().enumerate() {
            delete = delete.entries(
                aws_sdk_sqs::types::DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle().unwrap_or_default())
                    .build()?,
            );
        }
        let out = delete.send().await?;
        anyhow::ensure!(out.failed.is_empty(), "DeleteMessageBatch failed for {:?}", out.failed);
    }
    Ok(jobs)
}

/// Per zone: recipients released and how late their release came after the window's end.
#[derive(Default)]
struct ZoneSpread {
    released: usize,
    earliest_s: Option<i64>,
    latest_s: Option<i64>,
    /// Released recipients by seconds after the window's end.
    by_offset: BTreeMap<i64, usize>,
}

pub async fn run(clients: &Clients, table: &str, opts: Options) -> anyhow::Result<()> {
    let start = dispatch_at();
    let clock = clock();
    let store = Store::new(clients.dynamodb.clone(), table.to_owned(), clock.clone());
    let zones: Vec<chrono_tz::Tz> = ZONES
        .iter()
        .map(|(name, prefix, digits)| {
            let zone = TimeZone::parse(name).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            let sample = PhoneNumber::parse(&format!("{prefix}{}", "2".repeat(*digits)))
                .map_err(|e| anyhow::anyhow!("{prefix}: {e}"))?;
            anyhow::ensure!(
                TimeZone::of_phone(&sample) == Some(zone),
                "{prefix} is not {name} in libphonenumber's map"
            );
            Ok(zone.tz())
        })
        .collect::<anyhow::Result<_>>()?;
    let ends: Vec<DateTime<Utc>> =
        zones.iter().map(|z| window_end(*z, start)).collect::<anyhow::Result<_>>()?;
    let last_end = ends.iter().max().copied().context("no zones")?;

    let app = store.get_app(opts.app_id).await?.context("no such app")?;
    let source = store.get_message(opts.app_id, opts.message_id).await?.context("no such message")?;
    let recipients = source.recipients as usize;

    let deps = crate::fanout::dispatch_deps(clients, &store).await?;
    let sms_queue_url = deps.queues.sms.url().to_owned();

    // 1. Dispatch.
    let contents =
        Contents { title: None, body: "Still there? Your cart is waiting.".into(), url: None, html: None };
    let (retarget, message) = Retarget::schedule(
        &app,
        &source,
        Predicate::action("sent", Channel::Sms)?,
        Channel::Sms,
        contents,
        start,
        start,
    );
    store.create_retarget(&retarget, &message).await?;
    reset_peak_rss();
    let before = clients.tally.snapshot();
    let watch = Stopwatch::start();
    let report = tick(&deps, None).await?;
    let (dispatch_wall, _) = watch.stop();
    let dispatch_rss = peak_rss_mib();
    let dispatch = clients.tally.snapshot().since(&before);
    let dispatched = store.get_retarget(app.app_id, retarget.retarget_id).await?.context("retarget gone")?;
    anyhow::ensure!(
        dispatched.status == RetargetStatus::Dispatched && report.claimed == 1,
        "the retarget was not dispatched: {report:?}, {:?}",
        dispatched.status
    );
    eprintln!(
        "quiet hours: dispatched {} recipients in {dispatch_wall:.1} s",
        dispatched.enqueued.unwrap_or(0)
    );

    // 2. Deferral: every queued job through the sender.
    let provider = Counting::default();
    let sender = SenderDeps {
        store: store.clone(),
        provider: provider.clone(),
        channel: Channel::Sms,
        retries: None,
        pace: None,
    };
    let before = clients.tally.snapshot();
    let watch = Stopwatch::start();
    let mut jobs_run = 0usize;
    let mut deferred = 0usize;
    loop {
        let jobs = take(clients, &sms_queue_url).await?;
        if jobs.is_empty() {
            break;
        }
        jobs_run += jobs.len();
        let reports = stream::iter(&jobs)
            .map(|job| process_job(&sender, job, None))
            .buffer_unordered(SENDERS)
            .try_collect::<Vec<_>>()
            .await
            .map_err(|e| anyhow::anyhow!("send job: {e}"))?;
        deferred += reports.iter().map(|r| r.deferred).sum::<usize>();
        if jobs_run.is_multiple_of(200) {
            eprintln!("quiet hours: {jobs_run} jobs through the sender, {deferred} recipients deferred");
        }
    }
    let (defer_wall, _) = watch.stop();
    let deferral = clients.tally.snapshot().since(&before);
    let sent_at_dispatch = provider.0.load(Ordering::Relaxed);
    anyhow::ensure!(sent_at_dispatch == 0, "{sent_at_dispatch} recipients texted inside their quiet hours");
    anyhow::ensure!(deferred == recipients, "{deferred} of {} recipients deferred", recipients);
    let deferral_items = deferral.op("TransactWriteItems").requests;
    let counted_deferred =
        store.get_retarget(app.app_id, retarget.retarget_id).await?.context("retarget gone")?.deferred;
    eprintln!(
        "quiet hours: {deferred} recipients deferred in {defer_wall:.1} s ({deferral_items} deferrals)"
    );

    // 3. Release, a tick a minute.
    let mut spread: Vec<ZoneSpread> = (0..ZONES.len()).map(|_| ZoneSpread::default()).collect();
    let mut samples: Vec<Option<SendJob>> = vec![None; ZONES.len()];
    let mut ticks = 0usize;
    let mut busiest_tick = 0usize;
    let mut release_rss: f64 = 0.0;
    let mut release = Snapshot::default();
    let mut released_total = 0usize;
    let mut tick_wall = 0.0f64;
    let mut slowest_tick = 0.0f64;
    reset_peak_rss();
    while released_total < deferred {
        clock.advance(Duration::seconds(60));
        let now = store.clock().now();
        anyhow::ensure!(
            now <= last_end + Duration::hours(2),
            "deferrals left two hours after the last window end"
        );
        let before = clients.tally.snapshot();
        let watch = Stopwatch::start();
        let report = tick(&deps, None).await?;
        let (wall, _) = watch.stop();
        release_rss = release_rss.max(peak_rss_mib());
        release = release.plus(&clients.tally.snapshot().since(&before));
        tick_wall += wall;
        slowest_tick = slowest_tick.max(wall);
        ticks += 1;
        busiest_tick = busiest_tick.max(report.deferrals_released);
        loop {
            let jobs = take(clients, &sms_queue_url).await?;
            if jobs.is_empty() {
                break;
            }
            for job in jobs {
                anyhow::ensure!(job.released, "a job on the queue that is not a release");
                for id in &job.subscription_ids {
                    let zone = zone_of(id);
                    let s = spread.get_mut(zone).context("zone byte out of range")?;
                    let offset = (now - ends[zone]).num_seconds();
                    s.released += 1;
                    s.earliest_s = Some(s.earliest_s.map_or(offset, |e| e.min(offset)));
                    s.latest_s = Some(s.latest_s.map_or(offset, |l| l.max(offset)));
                    *s.by_offset.entry(offset).or_default() += 1;
                    released_total += 1;
                }
                let zone = job.subscription_ids.first().map(zone_of).unwrap_or_default();
                if samples[zone].is_none() && job.subscription_ids.iter().all(|id| zone_of(id) == zone) {
                    // Sent below at this tick's time, as its sender would now.
                    let report =
                        process_job(&sender, &job, None).await.map_err(|e| anyhow::anyhow!("{e}"))?;
                    anyhow::ensure!(
                        report.sent == job.subscription_ids.len() && report.deferred == 0,
                        "a released job was not sent whole: {report:?}"
                    );
                    samples[zone] = Some(job);
                }
            }
        }
    }
    let released_early: usize =
        spread.iter().map(|s| s.by_offset.range(..0).map(|(_, n)| n).sum::<usize>()).sum();
    anyhow::ensure!(released_early == 0, "{released_early} recipients released before their window ended");
    let sampled_sent = provider.0.load(Ordering::Relaxed);

    let per_recipient = |x: f64| x / recipients.max(1) as f64;
    let zones_json: Vec<_> = ZONES
        .iter()
        .zip(&spread)
        .zip(&ends)
        .map(|(((name, _, _), s), end)| {
            json!({
                "zone": name, "window_end_utc": end.to_rfc3339(), "released": s.released,
                "earliest_after_end_s": s.earliest_s, "latest_after_end_s": s.latest_s,
                "by_seconds_after_end": s.by_offset.iter().map(|(k, v)| (k.to_string(), *v)).collect::<BTreeMap<_, _>>(),
            })
        })
        .collect();
    let latest = spread.iter().filter_map(|s| s.latest_s).max();
    println!(
        "{}",
        json!({
            "bench": "quiet_hours",
            "recipients": recipients, "zones": ZONES.len(), "quiet_hours": format!("{}-{}", QUIET.0, QUIET.1),
            "dispatched_at": start.to_rfc3339(),
            "dispatch": {
                "wall_seconds": dispatch_wall, "peak_rss_mib": dispatch_rss, "jobs": jobs_run,
                "dynamodb": dispatch.json(),
            },
            "deferral": {
                "wall_seconds": defer_wall, "jobs": jobs_run, "deferred": deferred,
                "retarget_deferred": counted_deferred, "deferrals": deferral_items,
                "recipients_per_deferral": deferred as f64 / deferral_items.max(1) as f64,
                "sent_inside_quiet_hours": sent_at_dispatch,
                "deferral_write_requests_per_recipient": per_recipient(deferral_items as f64),
                "deferral_write_units_per_recipient": per_recipient(deferral.op("TransactWriteItems").units),
                "sender_dynamodb_requests_per_recipient": per_recipient(deferral.dynamodb_requests() as f64),
                "sender_write_units_per_recipient": per_recipient(deferral.write_units()),
                "sender_billed_read_units_per_recipient": per_recipient(deferral.billed_read_units()),
                "dynamodb": deferral.json(),
            },
            "release": {
                "ticks": ticks, "busiest_tick_deferrals": busiest_tick, "released": released_total,
                "tick_wall_seconds": tick_wall, "slowest_tick_seconds": slowest_tick,
                "scheduler_peak_rss_mib": release_rss,
                "dynamodb_requests_per_recipient": per_recipient(release.dynamodb_requests() as f64),
                "write_units_per_recipient": per_recipient(release.write_units()),
                "billed_read_units_per_recipient": per_recipient(release.billed_read_units()),
                "sqs_send_message_batch": release.op("SendMessageBatch").requests,
                "dynamodb": release.json(),
                "released_early": released_early,
                "latest_after_window_end_s": latest,
                "sampled_jobs_sent": samples.iter().flatten().count(), "sampled_recipients_sent": sampled_sent,
            },
            "per_zone": zones_json,
        })
    );
    Ok(())
}

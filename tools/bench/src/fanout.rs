//! Fan-out: a retarget of the seeded audience dispatched into the SQS emulator by the
//! scheduler's own `dispatch::tick`, requests counted (the emulator is not timed). Then a small
//! sample of the queued jobs goes through the senders' pipeline with a provider that accepts
//! at once, to count what the senders ask of DynamoDB per recipient, and what the stats
//! aggregator then asks to count their `sent` events from the table's stream.
//!
//! Peak RSS is reset before the tick and read right after it: it is the scheduler's.

use std::sync::Arc;

use anyhow::Context as _;
use aws_sdk_sqs::types::QueueAttributeName;
use retarget_email_sender::EmailProvider;
use retarget_shared::Store;
use retarget_shared::adapters::bus::EventBus;
use retarget_shared::adapters::queue::{ChannelQueues, Queue};
use retarget_shared::adapters::resources;
use retarget_shared::domain::{
    App, AppId, Channel, Contents, EventKind, Message, MessageId, Predicate, RECIPIENTS_PER_JOB, Retarget,
    RetargetStatus, SendJob, Subscription, SubscriptionId,
};
use retarget_shared::services::dispatch::{DispatchDeps, tick};
use retarget_shared::services::provider::{Accepted, Provider, SendError};
use retarget_shared::services::sender::{SenderDeps, process_job};
use retarget_shared::services::tracking::TrackingKeys;
use serde_json::json;
use std::sync::atomic::Ordering;

use crate::aggregator::{Aggregator, Drained};
use crate::cost;
use crate::counting::Clients;
use crate::sys::{Stopwatch, peak_rss_mib, reset_peak_rss};

pub struct Options {
    pub app_id: AppId,
    pub message_id: MessageId,
    pub action: String,
    pub sender_jobs: usize,
}

/// A provider that accepts every send at once: the senders' own cost, without the provider's.
struct Instant;

impl Provider for Instant {
    /// The push sender's scope: the bench reads what the real push sender reads.
    type Secret = retarget_shared::domain::PushSecret;
    type Credentials = ();

    fn load_secret(
        store: &Store,
        app_id: retarget_shared::domain::AppId,
    ) -> impl std::future::Future<Output = Result<Self::Secret, retarget_shared::adapters::store::StoreError>> + Send
    {
        store.get_secret::<retarget_shared::domain::PushSecret>(app_id)
    }

    fn credentials(_: &App, _: &Self::Secret) {}

    async fn send<'a>(
        &'a self,
        _app: &'a App,
        _credentials: &'a (),
        _subscription: &'a Subscription,
        _message: &'a Message,
    ) -> Result<Accepted, SendError> {
        Ok(Accepted { provider_id: None })
    }
}

/// The scheduler as deployed, on queues and a bus of its own (named `bench-…`): every channel's
/// work queue from [`resources::QUEUES`].
pub(crate) async fn dispatch_deps(clients: &Clients, store: &Store) -> anyhow::Result<DispatchDeps> {
    let prefix = format!("bench-{}", ulid::Ulid::new().to_string().to_lowercase());
    let prefix_ref = prefix.as_str();
    let queue = |spec| async move {
        let urls = resources::create_queue(&clients.sqs, prefix_ref, spec).await?;
        anyhow::Ok(Arc::new(Queue::new(clients.sqs.clone(), urls.queue_url)))
    };
    let queues = ChannelQueues {
        push: queue(&resources::PUSH_QUEUE).await?,
        sms: queue(&resources::SMS_QUEUE).await?,
        email: queue(&resources::EMAIL_QUEUE).await?,
    };
    resources::create_event_bus(&clients.eventbridge, &prefix).await?;
    Ok(DispatchDeps {
        store: store.clone(),
        queues,
        bus: EventBus::new(clients.eventbridge.clone(), &prefix),
    })
}

pub async fn run(clients: &Clients, store: &Store, opts: Options) -> anyhow::Result<()> {
    let source = store.get_message(opts.app_id, opts.message_id).await?.context("no such message")?;
    let app = store.get_app(opts.app_id).await?.context("no such app")?;
    let deps = dispatch_deps(clients, store).await?;

    // The retarget, stored as the retargets API stores it, due now (whole seconds: a retarget
    // is due once the clock's whole seconds reach its send_at).
    let now = store.clock().now();
    let now = chrono::DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now);
    // A subject too: email requires one (the other channels ignore it).
    let contents = Contents {
        title: Some("Still interested?".into()),
        body: "Still interested?".into(),
        url: None,
        html: None,
    };
    let predicate = Predicate::action(&opts.action, source.channel)?;
    let (retarget, message) =
        Retarget::schedule(&app, &source, predicate, source.channel, contents, now, now);
    store.create_retarget(&retarget, &message).await?;

    let rss_start = peak_rss_mib();
    reset_peak_rss();
    let before = clients.tally.snapshot();
    let watch = Stopwatch::start();
    let report = tick(&deps, None).await?;
    let (wall, cpu) = watch.stop();
    let rss = peak_rss_mib();
    let counted = clients.tally.snapshot().since(&before);
    let done = store.get_retarget(app.app_id, retarget.retarget_id).await?.context("retarget gone")?;
    anyhow::ensure!(
        done.status == RetargetStatus::Dispatched && report.claimed == 1,
        "the retarget was not dispatched alone: {report:?}, {:?}",
        done.status
    );
    let recipients = done.enqueued.unwrap_or(0);
    let batches = deps.queues.of(source.channel).stats.batch_requests.load(Ordering::Relaxed);
    let messages = deps.queues.of(source.channel).stats.messages_sent.load(Ordering::Relaxed);
    let on_queue = clients
        .sqs
        .get_queue_attributes()
        .queue_url(deps.queues.of(source.channel).url())
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .send()
        .await?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::ApproximateNumberOfMessages))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);

    let queue_url = deps.queues.of(source.channel).url();
    let sample = match source.channel {
        // The real email provider, its SES an in-process stand-in answering at once: the
        // sender's own CPU per email, SDK request building and signing included.
        Channel::Email => {
            let ses = crate::ses_standin::start().await?;
            let sdk = clients.sdk.to_builder().endpoint_url(&ses).build();
            let tracking = TrackingKeys::new(store.clone());
            let provider = EmailProvider::new(&sdk, "https://bench.example.com", tracking);
            sender_sample(clients, store, queue_url, opts.sender_jobs, provider, Channel::Email).await?
        }
        channel => sender_sample(clients, store, queue_url, opts.sender_jobs, Instant, channel).await?,
    };
    let counted_sent =
        store.message_stats(&message.scope()).await?.get(&EventKind::Sent).copied().unwrap_or(0);
    anyhow::ensure!(
        counted_sent == sample.sent as u64,
        "stats count {counted_sent} sent, the senders sent {}",
        sample.sent
    );

    // The payload of one full SendMessageBatch (ten jobs of 500), for SQS's 64 KiB billing.
    let full_job = SendJob::split(
        app.app_id,
        message.message_id,
        source.channel,
        &(0..RECIPIENTS_PER_JOB).map(|_| SubscriptionId::new()).collect::<Vec<_>>(),
    );
    let full_batch_bytes = 10 * serde_json::to_string(&full_job[0])?.len();
    let per_recipient = |x: f64| if sample.recipients > 0 { x / sample.recipients as f64 } else { f64::NAN };
    let cost = cost::per_million(&cost::Counted {
        recipients: recipients as f64,
        dispatch_write_units: counted.write_units(),
        dispatch_billed_read_units: counted.billed_read_units(),
        dispatch_wall_seconds: wall,
        send_batches: batches as f64,
        full_batch_bytes: full_batch_bytes as f64,
        jobs: messages as f64,
        sender_write_units_per_recipient: per_recipient(sample.dynamodb.write_units()),
        sender_billed_read_units_per_recipient: per_recipient(sample.dynamodb.billed_read_units()),
        sender_wall_seconds_per_job: sample.wall_seconds / sample.jobs.max(1) as f64,
        stats_write_units_per_recipient: per_recipient(sample.counters.dynamodb.write_units()),
        stats_billed_read_units_per_recipient: per_recipient(sample.counters.dynamodb.billed_read_units()),
        stats_invocations_per_recipient: per_recipient(sample.counters.invocations as f64),
        stats_wall_seconds_per_invocation: sample.counters.wall_seconds
            / sample.counters.invocations.max(1) as f64,
    });

    let sqs = counted.op("SendMessageBatch");
    println!(
        "{}",
        json!({
            "bench": "fanout",
            "source_recipients": source.recipients, "action": opts.action,
            "recipients": recipients, "tick": report,
            "wall_seconds": wall, "cpu_seconds": cpu,
            "sqs_send_message_batch": batches, "sqs_requests_counted": sqs.requests,
            "sqs_messages": messages, "messages_on_queue": on_queue,
            "recipients_per_sqs_request": recipients as f64 / batches.max(1) as f64,
            "naive_sqs_requests": recipients,
            "naive_over_ours_sqs_requests": recipients as f64 / batches.max(1) as f64,
            "full_batch_bytes": full_batch_bytes,
            "dispatch_dynamodb": counted.json(),
            "peak_rss_mib_start": rss_start, "peak_rss_mib": rss,
            "channel": source.channel,
            "sender_sample": {
                "jobs": sample.jobs, "recipients": sample.recipients, "sent": sample.sent,
                "wall_seconds": sample.wall_seconds, "cpu_seconds": sample.cpu_seconds,
                "cpu_ms_per_recipient": per_recipient(sample.cpu_seconds * 1000.0),
                "dynamodb_requests_per_recipient": per_recipient(sample.dynamodb.dynamodb_requests() as f64),
                "write_units_per_recipient": per_recipient(sample.dynamodb.write_units()),
                "billed_read_units_per_recipient": per_recipient(sample.dynamodb.billed_read_units()),
                "dynamodb": sample.dynamodb.json(),
                "stats_counted_sent": counted_sent,
                "stats_aggregator": sample.counters.json(sample.recipients as f64),
            },
            "cost": cost,
        })
    );
    Ok(())
}

struct Sample {
    jobs: usize,
    recipients: usize,
    sent: usize,
    wall_seconds: f64,
    cpu_seconds: f64,
    dynamodb: crate::counting::Snapshot,
    /// The stats aggregator counting the sample's `sent` events from the stream.
    counters: Drained,
}

/// Takes up to `jobs` jobs off the queue and runs them through the senders' pipeline.
async fn sender_sample<P: Provider>(
    clients: &Clients,
    store: &Store,
    queue_url: &str,
    jobs: usize,
    provider: P,
    channel: Channel,
) -> anyhow::Result<Sample> {
    let mut taken: Vec<SendJob> = Vec::new();
    while taken.len() < jobs {
        let output = clients
            .sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages((jobs - taken.len()).min(10) as i32)
            .send()
            .await?;
        let messages = output.messages.unwrap_or_default();
        if messages.is_empty() {
            break;
        }
        for m in messages {
            taken.push(serde_json::from_str(m.body().unwrap_or_default())?);
        }
    }
    let deps = SenderDeps { store: store.clone(), provider, channel, retries: None, pace: None };
    let aggregator = Aggregator::new(clients, store.table());
    // The seeded audience's records are not the sample's to count.
    aggregator.count_from_now_on().await?;
    let before = clients.tally.snapshot();
    let watch = Stopwatch::start();
    let mut sent = 0;
    for job in &taken {
        sent += process_job(&deps, job, None).await.map_err(|e| anyhow::anyhow!("send job: {e}"))?.sent;
    }
    let (wall_seconds, cpu_seconds) = watch.stop();
    let dynamodb = clients.tally.snapshot().since(&before);
    let counters = aggregator.drain().await?;
    Ok(Sample {
        jobs: taken.len(),
        recipients: taken.iter().map(|j| j.subscription_ids.len()).sum(),
        sent,
        wall_seconds,
        cpu_seconds,
        dynamodb,
        counters,
    })
}

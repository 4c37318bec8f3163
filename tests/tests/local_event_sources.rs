//! The local stack's stand-in for Lambda's SQS event source mapping: successes are deleted,
//! reported failures stay on the queue, and a poison message reaches the DLQ after the queue's
//! maxReceiveCount.

use std::time::Duration;

use retarget_local::workers::poll_queue;
use retarget_shared::adapters::resources::{QueueSpec, SMS_QUEUE, create_queue};
use retarget_shared::domain::Channel;
use retarget_tests::{World, twilio};

#[tokio::test]
async fn poison_messages_reach_the_dlq_after_max_receive_count() {
    let world = World::new().await;
    let sqs = retarget_shared::adapters::aws::sqs(retarget_tests::sdk().await);
    // A quick-cycling queue: visible again after 1 s, dead-lettered after 2 receives.
    let spec = QueueSpec { visibility_timeout_seconds: 1, max_receive_count: 2, ..SMS_QUEUE };
    let prefix = retarget_tests::unique_name("esm");
    let urls = create_queue(&sqs, &prefix, &spec).await.unwrap();
    sqs.send_message().queue_url(&urls.queue_url).message_body("{not a send job").send().await.unwrap();

    let deps = world.sender(
        Channel::Sms,
        twilio::provider(&world.store, "http://127.0.0.1:9".into(), Duration::from_secs(1)),
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let polling = poll_queue(&sqs, &urls.queue_url, &deps, stopped);
    let watching = async {
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let dead =
                sqs.receive_message().queue_url(&urls.dlq_url).wait_time_seconds(0).send().await.unwrap();
            if let Some(message) = dead.messages.unwrap_or_default().into_iter().next() {
                let _ = stop.send(true);
                return message.body;
            }
        }
        let _ = stop.send(true);
        None
    };
    let ((), dead) = tokio::join!(polling, watching);
    assert_eq!(dead.as_deref(), Some("{not a send job"), "the poison message never reached the DLQ");
    let left = sqs.receive_message().queue_url(&urls.queue_url).wait_time_seconds(0).send().await.unwrap();
    assert!(left.messages.unwrap_or_default().is_empty());
}

/// The local stack's workers include the table stream's event source mapping, on the stack's
/// table: what is recorded there is counted into the stats within the contract's 5 s.
#[tokio::test]
async fn the_local_stacks_workers_count_stats_from_the_table_stream() {
    let (world, app) = World::with_app(retarget_shared::domain::Plan::Pro).await;
    let sdk = retarget_tests::sdk().await;
    let prefix = retarget_tests::unique_name("esm");
    let mut env = retarget_shared::config::EnvReader::from_pairs([
        ("TABLE_NAME", world.table.as_str()),
        ("RESOURCE_PREFIX", prefix.as_str()),
        ("EVENT_BUS_NAME", prefix.as_str()),
    ]);
    let config = retarget_local::LocalConfig::read(&mut env);
    env.finish().unwrap();
    // The world's table is the stack's: provisioning leaves it as it is.
    let resources = retarget_local::provision(sdk, &config).await.expect("provision");
    let api = retarget_local::LocalApi::new(sdk, config, resources).expect("local api");
    let workers = api.workers().expect("the local stack's workers");
    assert_eq!(
        (workers.stream.table(), workers.stats.store.table()),
        (world.table.as_str(), world.table.as_str())
    );

    let message = world.message(&app, Channel::Push).await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let polling = retarget_local::streams::run_stream_poller(&workers.stream, &workers.stats, stopped);
    let watching = async {
        let subs: Vec<_> = (0..12).map(|_| retarget_shared::domain::SubscriptionId::new()).collect();
        world.record_each(&message, retarget_shared::domain::EventKind::Sent, &subs).await;
        let written = std::time::Instant::now();
        let counted = loop {
            let stats = world.store.message_stats(&message.scope()).await.unwrap();
            if stats[&retarget_shared::domain::EventKind::Sent] == 12
                || written.elapsed() > Duration::from_secs(5)
            {
                break stats[&retarget_shared::domain::EventKind::Sent];
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let _ = stop.send(true);
        (counted, written.elapsed())
    };
    let ((), (counted, after)) = tokio::join!(polling, watching);
    assert_eq!(counted, 12, "not counted within 5 s ({after:?})");
}

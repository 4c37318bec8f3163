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

    let deps =
        world.sender(Channel::Sms, twilio::provider("http://127.0.0.1:9".into(), Duration::from_secs(1)));
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

//! Send jobs on the channel queues: many recipients per SQS message, ten messages per
//! SendMessageBatch, failed entries retried until every job is on the queue (or an error says
//! which were not — never a silent drop). A job may be delayed (`DelaySeconds`): how a sender
//! puts the recipients that failed transiently back on its own queue for later.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_sqs::types::SendMessageBatchRequestEntry;

use crate::domain::{Channel, SendJob};
use crate::retry::RetryPolicy;

const ENTRIES_PER_BATCH: usize = 10;

/// SQS's longest `DelaySeconds`.
pub const MAX_DELAY: Duration = Duration::from_secs(900);

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("SQS {operation} failed: {source}")]
    Sqs {
        operation: &'static str,
        #[source]
        source: Box<aws_sdk_sqs::Error>,
    },
    #[error("{count} SQS messages still failing after {attempts} attempts: {last_error}")]
    EntriesFailed { count: usize, attempts: u32, last_error: String },
    #[error("job does not serialise: {0}")]
    Encode(#[from] serde_json::Error),
}

/// Requests made, for benchmarks and tests.
#[derive(Debug, Default)]
pub struct QueueStats {
    pub batch_requests: AtomicU64,
    pub messages_sent: AtomicU64,
    pub entry_retries: AtomicU64,
}

/// A channel's work queue.
#[derive(Debug)]
pub struct Queue {
    client: aws_sdk_sqs::Client,
    url: String,
    retry: RetryPolicy,
    pub stats: QueueStats,
}

impl Queue {
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> Self {
        Self { client, url: url.into(), retry: RetryPolicy::QUEUE, stats: QueueStats::default() }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Puts every job on the queue.
    pub async fn send_jobs(&self, jobs: &[SendJob]) -> Result<(), QueueError> {
        self.send_entries(jobs.iter().map(|job| (job, Duration::ZERO))).await
    }

    /// Puts every job on the queue, each hidden from consumers for its delay (rounded up to
    /// whole seconds, at most [`MAX_DELAY`]).
    pub async fn send_delayed(&self, jobs: &[(SendJob, Duration)]) -> Result<(), QueueError> {
        self.send_entries(jobs.iter().map(|(job, delay)| (job, *delay))).await
    }

    async fn send_entries<'j>(
        &self,
        jobs: impl Iterator<Item = (&'j SendJob, Duration)>,
    ) -> Result<(), QueueError> {
        let entries = jobs
            .map(|(job, delay)| Ok((serde_json::to_string(job)?, delay_seconds(delay))))
            .collect::<Result<Vec<_>, QueueError>>()?;
        for chunk in entries.chunks(ENTRIES_PER_BATCH) {
            self.send_batch(chunk).await?;
        }
        Ok(())
    }

    /// Sends (body, `DelaySeconds`) entries in one SendMessageBatch, then the failed ones again.
    async fn send_batch(&self, entries: &[(String, i32)]) -> Result<(), QueueError> {
        // Entry ids are the index in this chunk, so a failed entry maps back to its body.
        let mut pending: Vec<usize> = (0..entries.len()).collect();
        let mut last_error = String::new();
        for attempt in 0..self.retry.max_attempts {
            if attempt > 0 {
                self.stats.entry_retries.fetch_add(pending.len() as u64, Ordering::Relaxed);
                self.retry.wait(attempt).await;
            }
            let request_entries = pending
                .iter()
                .map(|&i| {
                    let (body, delay) = &entries[i];
                    // No delay: the queue's own (none) applies, as for every dispatched job.
                    let delay = (*delay > 0).then_some(*delay);
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(body)
                        .set_delay_seconds(delay)
                        .build()
                        .map_err(|e| QueueError::Sqs {
                            operation: "SendMessageBatch",
                            source: Box::new(e.into()),
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            self.stats.batch_requests.fetch_add(1, Ordering::Relaxed);
            let output = match self
                .client
                .send_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(request_entries))
                .send()
                .await
            {
                Ok(output) => output,
                Err(e) => {
                    // The whole call failed (throttling, network): retry every entry.
                    last_error = aws_sdk_sqs::Error::from(e).to_string();
                    continue;
                }
            };
            let sent = output.successful.len();
            self.stats.messages_sent.fetch_add(sent as u64, Ordering::Relaxed);
            let failed: Vec<usize> = output.failed.iter().filter_map(|f| f.id.parse().ok()).collect();
            if let Some(f) = output.failed.first() {
                last_error = format!("{}: {}", f.code, f.message.as_deref().unwrap_or(""));
                // A sender fault (bad body) will not succeed on retry.
                if f.sender_fault {
                    return Err(QueueError::EntriesFailed {
                        count: failed.len(),
                        attempts: attempt + 1,
                        last_error,
                    });
                }
            }
            if failed.is_empty() {
                return Ok(());
            }
            pending = failed;
        }
        Err(QueueError::EntriesFailed { count: pending.len(), attempts: self.retry.max_attempts, last_error })
    }
}

/// A delay as SQS's `DelaySeconds`: whole seconds, rounded up (never shorter than asked), at
/// most [`MAX_DELAY`].
fn delay_seconds(delay: Duration) -> i32 {
    let seconds = delay.min(MAX_DELAY).as_secs_f64().ceil();
    // At most 900: the cast cannot truncate.
    seconds as i32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AppId, Channel, MessageId, RECIPIENTS_PER_JOB, SubscriptionId};

    #[test]
    fn delays_are_whole_seconds_rounded_up_and_capped() {
        assert_eq!(delay_seconds(Duration::ZERO), 0);
        assert_eq!(delay_seconds(Duration::from_millis(1)), 1);
        assert_eq!(delay_seconds(Duration::from_millis(2500)), 3);
        assert_eq!(delay_seconds(Duration::from_secs(900)), 900);
        assert_eq!(delay_seconds(Duration::from_secs(86_400)), 900);
    }

    #[test]
    fn jobs_hold_at_most_the_limit_and_keep_every_recipient() {
        let subs: Vec<_> = (0..1234).map(|_| SubscriptionId::new()).collect();
        let jobs = SendJob::split(AppId::new(), MessageId::new(), Channel::Sms, &subs);
        assert_eq!(jobs.len(), 3);
        assert!(jobs.iter().all(|j| j.subscription_ids.len() <= RECIPIENTS_PER_JOB));
        let all: Vec<_> = jobs.iter().flat_map(|j| j.subscription_ids.clone()).collect();
        assert_eq!(all, subs);
    }

    #[test]
    fn a_full_job_fits_an_sqs_message_many_times_over() {
        let subs: Vec<_> = (0..RECIPIENTS_PER_JOB).map(|_| SubscriptionId::new()).collect();
        let job = &SendJob::split(AppId::new(), MessageId::new(), Channel::Push, &subs)[0];
        let size = serde_json::to_string(job).unwrap().len();
        assert!(
            size * ENTRIES_PER_BATCH < crate::adapters::resources::MAX_MESSAGE_SIZE as usize,
            "{size} bytes"
        );
    }

    mod partial_failures {
        use super::*;
        use aws_sdk_sqs::Client;
        use aws_sdk_sqs::operation::send_message_batch::SendMessageBatchOutput;
        use aws_sdk_sqs::types::{BatchResultErrorEntry, SendMessageBatchResultEntry};
        use aws_smithy_mocks::{RuleMode, mock, mock_client};

        fn ok(id: &str) -> SendMessageBatchResultEntry {
            SendMessageBatchResultEntry::builder()
                .id(id)
                .message_id("m")
                .md5_of_message_body("x")
                .build()
                .unwrap()
        }

        fn failed(id: &str, sender_fault: bool) -> BatchResultErrorEntry {
            BatchResultErrorEntry::builder()
                .id(id)
                .code("InternalError")
                .sender_fault(sender_fault)
                .build()
                .unwrap()
        }

        fn jobs(n: usize) -> Vec<SendJob> {
            (0..n)
                .map(|_| SendJob {
                    app_id: AppId::new(),
                    message_id: MessageId::new(),
                    channel: Channel::Sms,
                    subscription_ids: vec![SubscriptionId::new()],
                    retry: 0,
                    released: false,
                })
                .collect()
        }

        #[tokio::test]
        async fn delayed_jobs_carry_their_delay_in_whole_seconds_and_others_none() {
            let [first, second]: [SendJob; 2] = jobs(2).try_into().unwrap();
            let sent = mock!(Client::send_message_batch)
                .match_requests(|r| {
                    let delays: Vec<Option<i32>> = r.entries().iter().map(|e| e.delay_seconds()).collect();
                    delays == [Some(2), Some(900)] || delays == [None]
                })
                .then_output(|| {
                    SendMessageBatchOutput::builder()
                        .successful(ok("0"))
                        .set_failed(Some(vec![]))
                        .build()
                        .unwrap()
                });
            let client = mock_client!(aws_sdk_sqs, RuleMode::MatchAny, [&sent]);
            let queue = Queue::new(client, "q");
            let delayed = [(first.clone(), Duration::from_millis(1200)), (second, Duration::from_secs(3600))];
            queue.send_delayed(&delayed).await.unwrap();
            queue.send_jobs(&[first]).await.unwrap();
            assert_eq!(sent.num_calls(), 2);
        }

        #[tokio::test]
        async fn failed_entries_are_resent_alone_until_accepted() {
            let first = mock!(Client::send_message_batch).then_output(|| {
                SendMessageBatchOutput::builder()
                    .successful(ok("0"))
                    .successful(ok("2"))
                    .failed(failed("1", false))
                    .build()
                    .unwrap()
            });
            let retry = mock!(Client::send_message_batch)
                .match_requests(|r| r.entries().len() == 1 && r.entries()[0].id() == "1")
                .then_output(|| {
                    SendMessageBatchOutput::builder()
                        .successful(ok("1"))
                        .set_failed(Some(vec![]))
                        .build()
                        .unwrap()
                });
            let client = mock_client!(aws_sdk_sqs, RuleMode::Sequential, [&first, &retry]);
            let queue = Queue::new(client, "q");
            queue.send_jobs(&jobs(3)).await.unwrap();
            assert_eq!(queue.stats.messages_sent.load(Ordering::Relaxed), 3);
            assert_eq!(queue.stats.batch_requests.load(Ordering::Relaxed), 2);
            assert_eq!(retry.num_calls(), 1);
        }

        #[tokio::test]
        async fn sender_faults_are_errors_not_retries() {
            let bad = mock!(Client::send_message_batch).then_output(|| {
                SendMessageBatchOutput::builder()
                    .successful(ok("0"))
                    .failed(failed("1", true))
                    .build()
                    .unwrap()
            });
            let client = mock_client!(aws_sdk_sqs, RuleMode::MatchAny, [&bad]);
            let err = Queue::new(client, "q").send_jobs(&jobs(2)).await.unwrap_err();
            assert!(matches!(err, QueueError::EntriesFailed { count: 1, .. }), "{err}");
            assert_eq!(bad.num_calls(), 1);
        }
    }
}

/// The work queue of each channel: where its send jobs are enqueued (dispatch, direct messages)
/// and where its sender puts back the recipients to retry.
#[derive(Debug, Clone)]
pub struct ChannelQueues {
    pub push: std::sync::Arc<Queue>,
    pub sms: std::sync::Arc<Queue>,
    pub email: std::sync::Arc<Queue>,
}

impl ChannelQueues {
    pub fn of(&self, channel: Channel) -> &Queue {
        match channel {
            Channel::Push => &self.push,
            Channel::Sms => &self.sms,
            Channel::Email => &self.email,
        }
    }
}

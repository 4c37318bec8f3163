//! The event bus: after a dispatch the scheduler announces it (`RetargetDispatched`).
//! PutEvents can accept the call and still fail entries (`FailedEntryCount`); those are
//! retried, and an event that still fails is an error, never silently dropped.

use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use serde::Serialize;

use crate::domain::{AppId, MessageId, RetargetId};
use crate::retry::RetryPolicy;

pub const SOURCE: &str = "retarget";
pub const RETARGET_DISPATCHED: &str = "RetargetDispatched";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RetargetDispatched {
    pub app_id: AppId,
    pub retarget_id: RetargetId,
    pub message_id: MessageId,
    pub audience_size: u64,
    pub enqueued: u64,
    pub unreachable: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("PutEvents failed: {0}")]
    Call(String),
    #[error("PutEvents entry failed after {attempts} attempts: {code}: {message}")]
    EntryFailed { attempts: u32, code: String, message: String },
}

#[derive(Debug, Clone)]
pub struct EventBus {
    client: aws_sdk_eventbridge::Client,
    name: String,
}

impl EventBus {
    pub fn new(client: aws_sdk_eventbridge::Client, name: impl Into<String>) -> Self {
        Self { client, name: name.into() }
    }

    pub async fn retarget_dispatched(&self, detail: &RetargetDispatched) -> Result<(), BusError> {
        let detail = serde_json::to_string(detail).map_err(|e| BusError::Call(e.to_string()))?;
        let entry = PutEventsRequestEntry::builder()
            .event_bus_name(&self.name)
            .source(SOURCE)
            .detail_type(RETARGET_DISPATCHED)
            .detail(detail)
            .build();
        let attempts = RetryPolicy::BUS.max_attempts;
        let mut last = (String::new(), String::new());
        for attempt in 0..attempts {
            if attempt > 0 {
                RetryPolicy::BUS.wait(attempt).await;
            }
            let output = match self.client.put_events().entries(entry.clone()).send().await {
                Ok(output) => output,
                Err(e) => {
                    last = ("call".into(), aws_sdk_eventbridge::Error::from(e).to_string());
                    continue;
                }
            };
            if output.failed_entry_count == 0 {
                return Ok(());
            }
            if let Some(failed) =
                output.entries.unwrap_or_default().into_iter().find(|e| e.error_code.is_some())
            {
                last = (failed.error_code.unwrap_or_default(), failed.error_message.unwrap_or_default());
            }
        }
        Err(BusError::EntryFailed { attempts, code: last.0, message: last.1 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_eventbridge::Client;
    use aws_sdk_eventbridge::operation::put_events::PutEventsOutput;
    use aws_sdk_eventbridge::types::PutEventsResultEntry;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    fn detail() -> RetargetDispatched {
        RetargetDispatched {
            app_id: AppId::new(),
            retarget_id: RetargetId::new(),
            message_id: MessageId::new(),
            audience_size: 3,
            enqueued: 3,
            unreachable: 0,
        }
    }

    #[tokio::test]
    async fn failed_entries_are_put_again() {
        let throttled = mock!(Client::put_events).then_output(|| {
            PutEventsOutput::builder()
                .failed_entry_count(1)
                .entries(
                    PutEventsResultEntry::builder()
                        .error_code("ThrottlingException")
                        .error_message("slow down")
                        .build(),
                )
                .build()
        });
        let accepted = mock!(Client::put_events).then_output(|| {
            PutEventsOutput::builder()
                .failed_entry_count(0)
                .entries(PutEventsResultEntry::builder().event_id("e1").build())
                .build()
        });
        let client = mock_client!(aws_sdk_eventbridge, RuleMode::Sequential, [&throttled, &accepted]);
        EventBus::new(client, "bus").retarget_dispatched(&detail()).await.unwrap();
        assert_eq!((throttled.num_calls(), accepted.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn an_entry_that_keeps_failing_is_an_error() {
        let failing = mock!(Client::put_events).then_output(|| {
            PutEventsOutput::builder()
                .failed_entry_count(1)
                .entries(PutEventsResultEntry::builder().error_code("InternalFailure").build())
                .build()
        });
        let client = mock_client!(aws_sdk_eventbridge, RuleMode::MatchAny, [&failing]);
        let err = EventBus::new(client, "bus").retarget_dispatched(&detail()).await.unwrap_err();
        assert!(
            matches!(err, BusError::EntryFailed { attempts: 5, ref code, .. } if code == "InternalFailure"),
            "{err}"
        );
    }
}

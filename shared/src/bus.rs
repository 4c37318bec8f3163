//! The event bus: after a dispatch the scheduler announces it (`RetargetDispatched`).
//! PutEvents can accept the call and still fail entries (`FailedEntryCount`); those are
//! retried, and an event that still fails is an error, never silently dropped.

use std::time::Duration;

use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use serde::Serialize;

use crate::domain::{AppId, MessageId, RetargetId};

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
        let attempts = 5;
        let mut last = (String::new(), String::new());
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(100u64 << attempt)).await;
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

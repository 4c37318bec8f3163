//! The target of the EventBridge rule on `source: aws.ses`: `retarget_email_events`.
#![recursion_limit = "256"] // the ingest future (record, then unsubscribe) nests deeply
use retarget_email_events::EmailEvents;
use retarget_shared::bootstrap::{Error, serve_schedule};

#[tokio::main]
async fn main() -> Result<(), Error> {
    serve_schedule::<EmailEvents>().await
}

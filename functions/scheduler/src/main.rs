//! Invoked every minute by an EventBridge schedule: `retarget_shared::services::dispatch`.
#![recursion_limit = "256"] // the dispatch future nests deeply (audience stream in dispatch in tick)

use retarget_shared::bootstrap::{Error, serve_schedule};
use retarget_shared::services::dispatch::DispatchDeps;

#[tokio::main]
async fn main() -> Result<(), Error> {
    serve_schedule::<DispatchDeps>().await
}

//! Invoked by the table's DynamoDB Stream: `retarget_shared::services::stats`.

use retarget_shared::bootstrap::{Error, serve_stream};
use retarget_shared::services::stats::StatsDeps;

#[tokio::main]
async fn main() -> Result<(), Error> {
    serve_stream::<StatsDeps>().await
}

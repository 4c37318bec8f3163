// The streaming runtime's service stack nests deep futures; the default limit (128) is a little short.
#![recursion_limit = "256"]

use retarget_shared::bootstrap::{Error, serve_streaming_http};

#[tokio::main]
async fn main() -> Result<(), Error> {
    serve_streaming_http::<retarget_audiences::AudienceExport>().await
}

use retarget_shared::bootstrap::{Error, serve_http};
use retarget_shared::edge::request::AppFunction;

#[tokio::main]
async fn main() -> Result<(), Error> {
    serve_http::<AppFunction<retarget_subscriptions::Subscriptions>>().await
}

#[tokio::main]
async fn main() -> Result<(), retarget_shared::bootstrap::Error> {
    retarget_shared::bootstrap::serve_http::<retarget_events::Deps>().await
}

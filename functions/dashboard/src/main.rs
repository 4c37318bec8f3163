use retarget_shared::bootstrap::{Error, serve_http};

#[tokio::main]
async fn main() -> Result<(), Error> {
    serve_http::<retarget_dashboard::Dashboard>().await
}

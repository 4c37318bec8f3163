use retarget_email_sender::EmailProvider;
use retarget_shared::bootstrap::{Error, serve_sqs};
use retarget_shared::services::sender::SenderDeps;

#[tokio::main]
async fn main() -> Result<(), Error> {
    serve_sqs::<SenderDeps<EmailProvider>>().await
}

use retarget_shared::bootstrap::{Error, serve_sqs};
use retarget_shared::services::sender::SenderDeps;
use retarget_sms_sender::TwilioProvider;

#[tokio::main]
async fn main() -> Result<(), Error> {
    serve_sqs::<SenderDeps<TwilioProvider>>().await
}

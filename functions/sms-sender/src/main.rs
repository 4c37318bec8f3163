use std::sync::Arc;
use std::time::{Instant, SystemTime};

use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use retarget_shared::config::EnvReader;
use retarget_shared::domain::Channel;
use retarget_shared::sender::{SenderDeps, handle_batch};
use retarget_shared::{Store, SystemClock, aws, telemetry};
use retarget_sms_sender::{Config, TWILIO_TIMEOUT, TwilioProvider, deadline_instant};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let mut env = EnvReader::from_process();
    let config = Config::read(&mut env);
    env.finish()?;
    let sdk = aws::load().await;
    let deps = SenderDeps {
        store: Store::new(aws::dynamodb(&sdk), config.table.table_name, Arc::new(SystemClock)),
        provider: TwilioProvider::new(config.twilio_api_base, config.public_base_url, TWILIO_TIMEOUT),
        channel: Channel::Sms,
    };
    let deps = &deps;
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| async move {
        let deadline = deadline_instant(event.context.deadline, SystemTime::now(), Instant::now());
        Ok::<_, Error>(handle_batch(deps, event.payload, deadline).await)
    }))
    .await
}

use std::sync::Arc;
use std::time::SystemTime;

use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use retarget_push_sender::{
    DEFAULT_APNS_API_BASE, DEFAULT_FCM_API_BASE, DEFAULT_TIMEOUT, PushProvider, deadline_from_epoch_millis,
};
use retarget_shared::config::{EnvReader, TableConfig};
use retarget_shared::domain::Channel;
use retarget_shared::sender::{SenderDeps, handle_batch};
use retarget_shared::{Store, SystemClock, aws, telemetry};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let mut env = EnvReader::from_process();
    let table = TableConfig::read(&mut env);
    let fcm_api_base = env.url("FCM_API_BASE", Some(DEFAULT_FCM_API_BASE));
    let apns_api_base = env.url("APNS_API_BASE", Some(DEFAULT_APNS_API_BASE));
    env.finish()?;
    let sdk = aws::load().await;
    let deps = SenderDeps {
        store: Store::new(aws::dynamodb(&sdk), table.table_name, Arc::new(SystemClock)),
        provider: PushProvider::new(fcm_api_base, apns_api_base, DEFAULT_TIMEOUT)?,
        channel: Channel::Push,
    };
    let deps = &deps;
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| async move {
        let deadline = deadline_from_epoch_millis(event.context.deadline, SystemTime::now());
        Ok::<_, Error>(handle_batch(deps, event.payload, deadline).await)
    }))
    .await
}

use std::sync::Arc;

use aws_lambda_events::eventbridge::EventBridgeEvent;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use retarget_scheduler::{Deps, handle};
use retarget_shared::bus::EventBus;
use retarget_shared::config::{EnvReader, TableConfig};
use retarget_shared::queue::Queue;
use retarget_shared::{Store, SystemClock, aws, telemetry};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let mut env = EnvReader::from_process();
    let table = TableConfig::read(&mut env);
    let push_queue_url = env.required("PUSH_QUEUE_URL");
    let sms_queue_url = env.required("SMS_QUEUE_URL");
    let bus_name = env.required("EVENT_BUS_NAME");
    env.finish()?;
    let sdk = aws::load().await;
    let sqs = aws::sqs(&sdk);
    let deps = Deps {
        store: Store::new(aws::dynamodb(&sdk), table.table_name, Arc::new(SystemClock)),
        push_queue: Arc::new(Queue::new(sqs.clone(), push_queue_url)),
        sms_queue: Arc::new(Queue::new(sqs, sms_queue_url)),
        bus: EventBus::new(aws::eventbridge(&sdk), bus_name),
    };
    lambda_runtime::run(service_fn(|event: LambdaEvent<EventBridgeEvent<serde_json::Value>>| {
        let deadline = event.context.deadline;
        let deps = &deps;
        async move { Ok::<_, Error>(handle(deps, event.payload, Some(deadline)).await?) }
    }))
    .await
}

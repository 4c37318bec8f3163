use std::sync::Arc;

use lambda_http::{Error, service_fn};
use retarget_messages::{Deps, handle};
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
    env.finish()?;
    let sdk = aws::load().await;
    let sqs = aws::sqs(&sdk);
    let deps = Deps {
        store: Store::new(aws::dynamodb(&sdk), table.table_name, Arc::new(SystemClock)),
        push_queue: Arc::new(Queue::new(sqs.clone(), push_queue_url)),
        sms_queue: Arc::new(Queue::new(sqs, sms_queue_url)),
    };
    lambda_http::run(service_fn(|request| async { Ok::<_, Error>(handle(&deps, request).await) })).await
}

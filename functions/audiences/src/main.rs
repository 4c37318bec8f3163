use std::sync::Arc;

use lambda_http::{Error, service_fn};
use retarget_audiences::{Deps, handle};
use retarget_shared::config::{EnvReader, TableConfig};
use retarget_shared::{Store, SystemClock, aws, telemetry};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let mut env = EnvReader::from_process();
    let table = TableConfig::read(&mut env);
    env.finish()?;
    let sdk = aws::load().await;
    let deps = Deps { store: Store::new(aws::dynamodb(&sdk), table.table_name, Arc::new(SystemClock)) };
    lambda_http::run(service_fn(|request| async { Ok::<_, Error>(handle(&deps, request).await) })).await
}

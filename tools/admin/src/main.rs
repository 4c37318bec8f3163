use std::process::ExitCode;

use clap::Parser;
use retarget_shared::config::{EnvReader, TableConfig};
use retarget_shared::{Store, SystemClock, aws};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = retarget_admin::Cli::parse();
    let mut env = EnvReader::from_process();
    let table = TableConfig::read(&mut env);
    if let Err(e) = env.finish() {
        eprintln!("retarget-admin: {e}");
        return ExitCode::from(2);
    }
    let sdk = aws::load().await;
    let store = Store::new(aws::dynamodb(&sdk), table.table_name, std::sync::Arc::new(SystemClock));
    match retarget_admin::run(&store, cli).await {
        Ok(output) => {
            println!("{output}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("retarget-admin: {e}");
            ExitCode::FAILURE
        }
    }
}

use std::process::ExitCode;

use clap::Parser;
use retarget_shared::bootstrap::Infra;
use retarget_shared::config::EnvReader;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = retarget_admin::Cli::parse();
    let mut env = EnvReader::from_process();
    let store = Infra::load().await.store(&mut env);
    if let Err(e) = env.finish() {
        eprintln!("retarget-admin: {e}");
        return ExitCode::from(2);
    }
    match retarget_admin::run(&store, cli, &mut std::io::stdin()).await {
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

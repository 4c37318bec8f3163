use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use retarget_local::{LocalApi, LocalConfig, provision, serve, stack_env, write_atomically};
use retarget_shared::config::EnvReader;
use retarget_shared::{aws, telemetry};
use tokio::signal::unix::{SignalKind, signal};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init();
    let mut env = EnvReader::from_process();
    let config = LocalConfig::read(&mut env);
    env.finish()?;

    let sdk = aws::load().await;
    let resources = provision(&sdk, &config).await?;
    let addr = SocketAddr::from(([127, 0, 0, 1], config.api_port));
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("bind {addr}"))?;
    let api_url = format!("http://{addr}");

    if let Some(path) = &config.stack_env_file {
        write_atomically(path, &stack_env(&api_url, &resources)).context("write the stack env file")?;
    }
    tracing::info!(%api_url, table = %resources.table_name, "local stack ready");

    let stack_env_file = config.stack_env_file.clone();
    let api = Arc::new(LocalApi::new(&sdk, config, resources));
    let mut terminate = signal(SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("shutting down");
    };
    serve(listener, api, shutdown).await;
    if let Some(path) = stack_env_file {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

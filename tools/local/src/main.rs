use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use retarget_local::workers::{poll_queue, run_scheduler};
use retarget_local::{LocalApi, LocalConfig, provision, serve, stack_env, write_atomically};
use retarget_shared::config::EnvReader;
use retarget_shared::{SharedClock, adapters::aws, telemetry};
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
    let dashboard_url = format!("{api_url}{}", retarget_dashboard::PREFIX);
    tracing::info!(%api_url, %dashboard_url, table = %resources.table_name, "local stack ready");

    let stack_env_file = config.stack_env_file.clone();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let api = Arc::new(LocalApi::new(&sdk, config.clone(), resources.clone())?);

    // The event sources: the scheduler's schedule, the two queues' pollers and the table stream's.
    let sqs = aws::sqs(&sdk);
    let workers = api.workers()?;
    let clock: SharedClock = api.clock.clone();
    let tick = Duration::from_secs(config.schedule_tick_seconds.max(1));
    let event_sources = async {
        tokio::join!(
            run_scheduler(&workers.scheduler, &clock, tick, stop_rx.clone()),
            poll_queue(&sqs, &resources.sms_queue_url, &workers.sms_sender, stop_rx.clone()),
            poll_queue(&sqs, &resources.push_queue_url, &workers.push_sender, stop_rx.clone()),
            poll_queue(&sqs, &resources.email_queue_url, &workers.email_sender, stop_rx.clone()),
            retarget_local::streams::run_stream_poller(&workers.stream, &workers.stats, stop_rx.clone()),
        )
    };
    let mut terminate = signal(SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("shutting down");
    };
    let serving = async {
        serve(listener, api.clone(), shutdown).await;
        let _ = stop_tx.send(true);
    };
    tokio::join!(serving, event_sources);
    if let Some(path) = stack_env_file {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

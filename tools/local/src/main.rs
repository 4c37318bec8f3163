use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use std::time::Duration;

use retarget_local::{LocalApi, LocalConfig, provision, serve, stack_env, workers, write_atomically};
use retarget_push_sender::PushProvider;
use retarget_shared::bus::EventBus;
use retarget_shared::config::EnvReader;
use retarget_shared::dispatch::DispatchDeps;
use retarget_shared::domain::Channel;
use retarget_shared::sender::SenderDeps;
use retarget_shared::{aws, telemetry};
use retarget_sms_sender::TwilioProvider;
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
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let api = Arc::new(LocalApi::new(&sdk, config.clone(), resources.clone()));

    // The event sources: the scheduler's schedule and the two queues' pollers.
    let sqs = aws::sqs(&sdk);
    let dispatch = DispatchDeps {
        store: api.store.clone(),
        push_queue: api.handlers.messages.push_queue.clone(),
        sms_queue: api.handlers.messages.sms_queue.clone(),
        bus: EventBus::new(aws::eventbridge(&sdk), resources.event_bus_name.clone()),
    };
    let timeout = Duration::from_secs(10);
    let sms = SenderDeps {
        store: api.store.clone(),
        provider: TwilioProvider::new(
            config.twilio_api_base.clone(),
            config.public_base_url.clone(),
            timeout,
        ),
        channel: Channel::Sms,
    };
    let push = SenderDeps {
        store: api.store.clone(),
        provider: PushProvider::new(config.fcm_api_base.clone(), config.apns_api_base.clone(), timeout)?,
        channel: Channel::Push,
    };
    let tick = Duration::from_secs(config.schedule_tick_seconds.max(1));
    let workers = async {
        tokio::join!(
            workers::run_scheduler(&dispatch, tick, stop_rx.clone()),
            workers::poll_queue(&sqs, &resources.sms_queue_url, &sms, stop_rx.clone()),
            workers::poll_queue(&sqs, &resources.push_queue_url, &push, stop_rx.clone()),
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
    tokio::join!(serving, workers);
    if let Some(path) = stack_env_file {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

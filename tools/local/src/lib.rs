//! The local stack: everything the deployed system has, on this machine and offline.
//!
//! - [`provision`] creates the table, queues and bus in DynamoDB Local and the emulator from
//!   the same definitions the template is checked against;
//! - [`LocalApi`] serves the contract's routes by handing API Gateway–shaped requests to the
//!   Lambda handler functions themselves, plus the local-only test clock `/dev/clock`, and the
//!   dashboard's `GET /dashboard…` through the dashboard function's own handler;
//! - [`serve`] is the HTTP server in front of it;
//! - [`workers`] and [`streams`] stand in for Lambda's event sources (the schedule, the
//!   queues' and the table stream's event source mappings), invoking [`Workers`].

pub mod apigw;
pub mod ses;
pub mod streams;
pub mod workers;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use aws_config::SdkConfig;
use chrono::Duration;
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use lambda_http::{Body, Request, RequestExt, Response};
use retarget_push_sender::PushProvider;
use retarget_shared::bootstrap::{
    Error, FromEnv, HttpFunction, Infra, StreamingHttpFunction, dead_letter_queue_url_var, queue_url_var,
};
use retarget_shared::clock::rfc3339;
use retarget_shared::config::EnvReader;
use retarget_shared::domain::Channel;
use retarget_shared::edge::problem::{ApiError, ErrorCode, json_response};
use retarget_shared::edge::request::{AppFunction, json_content_type};
use retarget_shared::edge::routes::{Function, match_route};
use retarget_shared::edge::streamed::{self, StreamedBody};
use retarget_shared::services::dispatch::DispatchDeps;
use retarget_shared::services::sender::SenderDeps;
use retarget_shared::services::stats::StatsDeps;
use retarget_shared::{Clock, TestClock, adapters::aws, adapters::resources};
use retarget_sms_sender::TwilioProvider;
use serde::Deserialize;
use tokio::net::TcpListener;

/// What `make dev` passes in; every name has a working default. The functions' own variables
/// (`TWILIO_API_BASE`, `FCM_API_BASE`, …) are read by the functions themselves: see
/// [`function_env`].
#[derive(Debug, Clone)]
pub struct LocalConfig {
    pub api_port: u16,
    pub table_name: String,
    pub resource_prefix: String,
    pub event_bus_name: String,
    pub stack_env_file: Option<PathBuf>,
    pub schedule_tick_seconds: u64,
    pub public_base_url: String,
}

impl LocalConfig {
    pub fn read(env: &mut EnvReader) -> Self {
        let api_port = env.number("API_PORT", 3000u16);
        let public_default = format!("http://127.0.0.1:{api_port}");
        Self {
            api_port,
            table_name: env.optional("TABLE_NAME", "retarget-local"),
            resource_prefix: env.optional("RESOURCE_PREFIX", "retarget-local"),
            event_bus_name: env.optional("EVENT_BUS_NAME", "retarget-local-bus"),
            stack_env_file: Some(env.optional("STACK_ENV_FILE", ".local/stack.env").into()),
            schedule_tick_seconds: env.number("SCHEDULE_TICK_SECONDS", 60u64),
            public_base_url: env.url("PUBLIC_BASE_URL", Some(&public_default)),
        }
    }
}

/// What [`provision`] made.
#[derive(Debug, Clone)]
pub struct Resources {
    pub table_name: String,
    pub push_queue_url: String,
    pub push_dlq_url: String,
    pub sms_queue_url: String,
    pub sms_dlq_url: String,
    pub email_queue_url: String,
    pub email_dlq_url: String,
    pub event_bus_name: String,
}

/// Creates whatever is missing; safe to run against an existing stack.
pub async fn provision(sdk: &SdkConfig, config: &LocalConfig) -> anyhow::Result<Resources> {
    let dynamodb = aws::dynamodb(sdk);
    let exists = match dynamodb.describe_table().table_name(&config.table_name).send().await {
        Ok(_) => true,
        Err(e) => {
            let e = aws_sdk_dynamodb::Error::from(e);
            if matches!(e, aws_sdk_dynamodb::Error::ResourceNotFoundException(_)) {
                false
            } else {
                return Err(e).context("DescribeTable (is DynamoDB Local running?)");
            }
        }
    };
    if !exists {
        resources::create_table(&dynamodb, &config.table_name).await.context("create the table")?;
    }
    let sqs = aws::sqs(sdk);
    let push = resources::create_queue(&sqs, &config.resource_prefix, &resources::PUSH_QUEUE)
        .await
        .context("create the push queue (is the emulator running?)")?;
    let sms = resources::create_queue(&sqs, &config.resource_prefix, &resources::SMS_QUEUE)
        .await
        .context("create the SMS queue")?;
    let email = resources::create_queue(&sqs, &config.resource_prefix, &resources::EMAIL_QUEUE)
        .await
        .context("create the email queue")?;
    resources::create_event_bus(&aws::eventbridge(sdk), &config.event_bus_name)
        .await
        .context("create the event bus")?;
    Ok(Resources {
        table_name: config.table_name.clone(),
        push_queue_url: push.queue_url,
        push_dlq_url: push.dlq_url,
        sms_queue_url: sms.queue_url,
        sms_dlq_url: sms.dlq_url,
        email_queue_url: email.queue_url,
        email_dlq_url: email.dlq_url,
        event_bus_name: config.event_bus_name.clone(),
    })
}

/// `export NAME=value` lines so `. .local/stack.env && cargo run -p retarget-admin -- …` works.
pub fn stack_env(api_url: &str, res: &Resources) -> String {
    let mut vars = vec![
        ("API_URL".to_owned(), api_url.to_owned()),
        ("TABLE_NAME".to_owned(), res.table_name.clone()),
        ("PUSH_QUEUE_URL".to_owned(), res.push_queue_url.clone()),
        ("SMS_QUEUE_URL".to_owned(), res.sms_queue_url.clone()),
        ("EMAIL_QUEUE_URL".to_owned(), res.email_queue_url.clone()),
        ("EVENT_BUS_NAME".to_owned(), res.event_bus_name.clone()),
    ];
    for name in [
        "AWS_ENDPOINT_URL_DYNAMODB",
        "AWS_ENDPOINT_URL_SQS",
        "AWS_ENDPOINT_URL_EVENTBRIDGE",
        "AWS_REGION",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    ] {
        let fallback = match name {
            "AWS_REGION" => "us-east-1",
            "AWS_ACCESS_KEY_ID" | "AWS_SECRET_ACCESS_KEY" => "local",
            _ => "",
        };
        vars.push((name.to_owned(), std::env::var(name).unwrap_or_else(|_| fallback.to_owned())));
    }
    // The provider stand-ins' address, when the caller runs them (`make dev`, `make run`).
    if let Ok(url) = std::env::var("STANDIN_URL") {
        vars.push(("STANDIN_URL".to_owned(), url));
    }
    vars.iter().map(|(k, v)| format!("export {k}='{}'\n", v.replace('\'', "'\\''"))).collect()
}

/// The environment every local function reads, as the template sets it on AWS: this process's
/// own variables (provider bases and the like, with the functions' own defaults) plus the
/// provisioned resources and the public URL.
pub fn function_env(config: &LocalConfig, resources: &Resources) -> EnvReader {
    EnvReader::from_process()
        .with("TABLE_NAME", &resources.table_name)
        .with(queue_url_var(Channel::Push), &resources.push_queue_url)
        .with(queue_url_var(Channel::Sms), &resources.sms_queue_url)
        .with(queue_url_var(Channel::Email), &resources.email_queue_url)
        .with(dead_letter_queue_url_var(Channel::Push), &resources.push_dlq_url)
        .with(dead_letter_queue_url_var(Channel::Sms), &resources.sms_dlq_url)
        .with(dead_letter_queue_url_var(Channel::Email), &resources.email_dlq_url)
        .with("EVENT_BUS_NAME", &resources.event_bus_name)
        .with("PUBLIC_BASE_URL", &config.public_base_url)
        // Locally the API itself streams the export (`Handlers::route_streamed`).
        .with(retarget_audiences::EXPORT_URL_VAR, &config.public_base_url)
}

/// Writes the file whole or not at all (a reader polling for it never sees half).
pub fn write_atomically(path: &std::path::Path, contents: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents)?;
    std::fs::rename(tmp, path)
}

/// Every HTTP function's handler with its dependencies, as the Lambda functions wire them:
/// what the local API serves, and what tests call to reach the function owning a route.
pub struct Handlers {
    pub subscriptions: AppFunction<retarget_subscriptions::Subscriptions>,
    pub messages: AppFunction<retarget_messages::Messages>,
    pub events: AppFunction<retarget_events::Events>,
    pub webhooks: retarget_webhooks::Deps,
    pub retargets: AppFunction<retarget_retargets::Retargets>,
    pub audiences: AppFunction<retarget_audiences::Audiences>,
    /// The response-streaming export function (a function URL on AWS): streamed routes.
    pub audience_export: retarget_audiences::AudienceExport,
}

impl Handlers {
    /// Each function's dependencies from `env`, through the constructors its Lambda `main` uses.
    pub fn from_env(env: &mut EnvReader, infra: &Infra) -> Result<Self, Error> {
        Ok(Self {
            subscriptions: FromEnv::from_env(env, infra)?,
            messages: FromEnv::from_env(env, infra)?,
            events: FromEnv::from_env(env, infra)?,
            webhooks: FromEnv::from_env(env, infra)?,
            retargets: FromEnv::from_env(env, infra)?,
            audiences: FromEnv::from_env(env, infra)?,
            audience_export: FromEnv::from_env(env, infra)?,
        })
    }

    /// `function`'s handler, whatever the request's route.
    pub async fn handle(&self, function: Function, request: Request) -> Response<Body> {
        match function {
            Function::Subscriptions => self.subscriptions.handle(request).await,
            Function::Messages => self.messages.handle(request).await,
            Function::Events => self.events.handle(request).await,
            Function::Webhooks => self.webhooks.handle(request).await,
            Function::Retargets => self.retargets.handle(request).await,
            Function::Audiences => self.audiences.handle(request).await,
        }
    }

    /// The handler of the function owning the request's route, as API Gateway routes it: 404 for
    /// an unknown path, 405 (with `Allow`) for a known path with another method.
    pub async fn route(&self, request: Request) -> Response<Body> {
        match match_route(request.method(), request.raw_http_path()) {
            Ok(matched) => {
                let function = matched.function;
                self.handle(function, request).await
            }
            Err(no) => ApiError::unrouted(request.method(), no).to_response(),
        }
    }

    /// As [`Handlers::route`], but a streamed route (`Route::streamed`) is answered by the
    /// response-streaming export function, whatever its size, as its function URL does on AWS.
    pub async fn route_streamed(&self, request: Request) -> Response<StreamedBody> {
        match match_route(request.method(), request.raw_http_path()) {
            Ok(matched) if matched.route.streamed() => self.audience_export.handle(request).await,
            _ => streamed::buffered(self.route(request).await),
        }
    }
}

/// The functions Lambda's event sources invoke: the schedule, the two queues and the table's
/// stream (with the stream itself, which [`streams::run_stream_poller`] reads for `stats`).
pub struct Workers {
    pub scheduler: DispatchDeps,
    pub sms_sender: SenderDeps<TwilioProvider>,
    pub push_sender: SenderDeps<PushProvider>,
    pub email_sender: SenderDeps<ses::LocalEmail>,
    pub stats: StatsDeps,
    pub stream: streams::StreamSource,
}

/// The local API: the Lambda handlers behind one router, and the test clock.
pub struct LocalApi {
    pub clock: Arc<TestClock>,
    pub infra: Infra,
    pub resources: Resources,
    pub config: LocalConfig,
    pub handlers: Handlers,
    /// The target of the EventBridge rule on `source: aws.ses`, fed by `POST /dev/ses-events`.
    pub email_events: retarget_email_events::EmailEvents,
    /// `GET /dashboard` and `GET /dashboard/{proxy+}`: the template's routes of the dashboard
    /// function (any other method there is API Gateway's `$default`, as below).
    pub dashboard: retarget_dashboard::Dashboard,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdvanceClock {
    advance_seconds: i64,
}

impl LocalApi {
    /// The HTTP functions on a test clock that follows the wall clock until `/dev/clock` moves it.
    pub fn new(sdk: &SdkConfig, config: LocalConfig, resources: Resources) -> anyhow::Result<Self> {
        let clock = Arc::new(TestClock::following_wall_clock());
        let infra = Infra::new(sdk.clone(), clock.clone());
        let mut env = function_env(&config, &resources);
        let handlers = Handlers::from_env(&mut env, &infra).map_err(|e| anyhow::anyhow!(e))?;
        let email_events = FromEnv::from_env(&mut env, &infra).map_err(|e| anyhow::anyhow!(e))?;
        let dashboard = FromEnv::from_env(&mut env, &infra).map_err(|e| anyhow::anyhow!(e))?;
        env.finish()?;
        Ok(Self { clock, infra, resources, config, handlers, email_events, dashboard })
    }

    /// The scheduler, the two senders and the stats aggregator, built as their Lambda `main`s
    /// build them, and the stream the aggregator's event source mapping reads.
    pub fn workers(&self) -> anyhow::Result<Workers> {
        let mut env = function_env(&self.config, &self.resources);
        let infra = &self.infra;
        let workers = (|| -> Result<Workers, Error> {
            let stats = StatsDeps::from_env(&mut env, infra)?;
            let stream = streams::StreamSource::of_store(&infra.sdk, &stats.store);
            Ok(Workers {
                scheduler: FromEnv::from_env(&mut env, infra)?,
                sms_sender: FromEnv::from_env(&mut env, infra)?,
                push_sender: FromEnv::from_env(&mut env, infra)?,
                email_sender: FromEnv::from_env(&mut env, infra)?,
                stats,
                stream,
            })
        })()
        .map_err(|e| anyhow::anyhow!(e))?;
        env.finish()?;
        Ok(workers)
    }

    pub async fn handle(&self, request: Request) -> Response<StreamedBody> {
        if request.raw_http_path() == "/dev/clock" {
            return streamed::buffered(self.dev_clock(&request).unwrap_or_else(|e| e.to_response()));
        }
        if request.raw_http_path() == ses::DEV_SES_EVENTS {
            let response = ses::dev_ses_events(&self.email_events, &request).await;
            return streamed::buffered(response.unwrap_or_else(|e| e.to_response()));
        }
        if request.method() == Method::GET && retarget_dashboard::owns(request.raw_http_path()) {
            return streamed::buffered(self.dashboard.handle(request).await);
        }
        self.handlers.route_streamed(request).await
    }

    fn dev_clock(&self, request: &Request) -> Result<Response<Body>, ApiError> {
        match *request.method() {
            Method::GET => {}
            Method::POST => {
                json_content_type(request)?;
                let body: AdvanceClock = serde_json::from_slice(request.body().as_ref())
                    .map_err(|e| ApiError::invalid_request(format!("body: {e}")))?;
                if !(0..=10 * 366 * 86_400).contains(&body.advance_seconds) {
                    return Err(ApiError::invalid_request(
                        "advance_seconds: the clock only moves forward, by at most ten years",
                    ));
                }
                self.clock.advance(Duration::seconds(body.advance_seconds));
                tracing::info!(advance_seconds = body.advance_seconds, now = %rfc3339(self.clock.now()), "test clock advanced");
            }
            _ => return Err(ApiError::method_not_allowed(request.method(), &[Method::GET, Method::POST])),
        }
        Ok(json_response(StatusCode::OK, &serde_json::json!({ "now": rfc3339(self.clock.now()) })))
    }
}

/// API Gateway HTTP APIs refuse bodies over 10 MB before any function runs; so does this.
const GATEWAY_BODY_LIMIT: usize = 10 * 1024 * 1024;

async fn handle_http(
    api: Arc<LocalApi>,
    peer: SocketAddr,
    request: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<StreamedBody>, Infallible> {
    let (parts, body) = request.into_parts();
    let response = match Limited::new(body, GATEWAY_BODY_LIMIT).collect().await {
        Err(_) => streamed::buffered(
            ApiError::new(ErrorCode::PayloadTooLarge, "request body over the gateway's limit").to_response(),
        ),
        Ok(collected) => {
            let bytes = collected.to_bytes();
            match apigw::to_lambda_request(&parts, &bytes, peer.ip(), api.clock.now()) {
                // Like a Lambda invocation, the handler runs to completion even when the
                // client goes away: hyper drops this future when the connection closes,
                // which would otherwise stop a handler between two writes.
                // (A streamed body is then written as the client reads it, and stops if it
                // goes away: it writes nothing.)
                Ok(request) => match tokio::spawn(async move { api.handle(request).await }).await {
                    Ok(response) => response,
                    Err(e) => streamed::buffered(ApiError::internal(&e).to_response()),
                },
                Err(e) => streamed::buffered(
                    ApiError::invalid_request(format!("request could not be represented: {e}")).to_response(),
                ),
            }
        }
    };
    Ok(response)
}

/// Serves until `shutdown` resolves.
pub async fn serve(listener: TcpListener, api: Arc<LocalApi>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                };
                let api = api.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle_http(api.clone(), peer, req));
                    if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await {
                        tracing::debug!(error = %e, "connection closed with an error");
                    }
                });
            }
        }
    }
}

//! The main job (`make run`): a story told against the running local stack, each step checked.
//! For now it covers what the foundation offers — apps and keys, the test clock, the API's
//! error contract, and the sharded interaction store on the stack's own table; each later
//! feature adds its chapter.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context as _, bail, ensure};
use chrono::{DateTime, Duration, Utc};
use clap::Parser as _;
use retarget_shared::domain::{EventKind, MessageId, SubscriptionId};
use retarget_shared::store::{Interaction, MessageScope};
use retarget_shared::{Store, SystemClock, aws, keys};
use serde_json::Value;

struct Demo {
    api_url: String,
    http: reqwest::Client,
    store: Store,
    step: usize,
}

impl Demo {
    fn heading(&mut self, title: &str) {
        self.step += 1;
        println!("\n[{}] {title}", self.step);
    }

    async fn get(&self, path: &str) -> anyhow::Result<(u16, String, Value)> {
        let response = self.http.get(format!("{}{path}", self.api_url)).send().await?;
        Self::read(response).await
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<(u16, String, Value)> {
        let response = self.http.post(format!("{}{path}", self.api_url)).json(&body).send().await?;
        Self::read(response).await
    }

    async fn read(response: reqwest::Response) -> anyhow::Result<(u16, String, Value)> {
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body = response.json().await.unwrap_or(Value::Null);
        Ok((status, content_type, body))
    }

    async fn clock(&self) -> anyhow::Result<DateTime<Utc>> {
        let (status, _, body) = self.get("/dev/clock").await?;
        ensure!(status == 200, "GET /dev/clock answered {status}");
        let now = body["now"].as_str().context("clock without `now`")?;
        Ok(DateTime::parse_from_rfc3339(now)?.with_timezone(&Utc))
    }
}

fn ok(line: impl std::fmt::Display) {
    println!("    ✓ {line}");
}

async fn story(demo: &mut Demo) -> anyhow::Result<()> {
    demo.heading("Create an app on the pro plan (retarget-admin app create)");
    let args = ["retarget-admin", "app", "create", "--name", "Demo Shop", "--plan", "pro"];
    let created = retarget_admin::run(&demo.store, retarget_admin::Cli::try_parse_from(args)?).await?;
    let app_id = created["app_id"].as_str().context("no app_id")?.to_owned();
    let api_key = created["api_key"].as_str().context("no api_key")?;
    ok(format!("app {app_id}, plan {}, API key {}…", created["plan"], &api_key[..8]));

    demo.heading("Read and move the stack's test clock");
    let before = demo.clock().await?;
    ok(format!("now is {before}"));
    let (status, _, _) = demo.post("/dev/clock", serde_json::json!({"advance_seconds": 3600})).await?;
    ensure!(status == 200, "advancing the clock answered {status}");
    let after = demo.clock().await?;
    let moved = after - before;
    ensure!(moved >= Duration::seconds(3600) && moved < Duration::seconds(3660), "clock moved by {moved}");
    ok(format!("advanced one hour: now is {after}"));
    let (status, content_type, body) =
        demo.post("/dev/clock", serde_json::json!({"advance_seconds": -5})).await?;
    ensure!(status == 400 && content_type == "application/problem+json", "moving back answered {status}");
    ok(format!("moving it backwards is refused: {status} {}", body["code"]));

    demo.heading("The API speaks problem+json");
    let (status, content_type, body) = demo.get("/v1/nothing-here").await?;
    ensure!(status == 404 && content_type == "application/problem+json" && body["code"] == "not_found");
    ok(format!("GET /v1/nothing-here → {status} {}", body["code"]));
    let (status, _, body) = demo.get("/v1/events").await?;
    ensure!(status == 405 && body["code"] == "method_not_allowed", "GET /v1/events answered {status}");
    ok(format!("GET /v1/events → {status} {}", body["code"]));

    demo.heading("Record 2,000 interactions into the sharded store, twice, and read them back");
    let scope = MessageScope {
        app_id: retarget_shared::domain::AppId::parse(&app_id)?,
        message_id: MessageId::new(),
        expires_at: (Utc::now() + Duration::days(keys::RETENTION_DAYS)).timestamp(),
        shards: keys::DEFAULT_SHARDS,
    };
    let events: Vec<Interaction> = (0..1000)
        .map(|_| SubscriptionId::new())
        .flat_map(|sub| {
            [EventKind::Sent, EventKind::Delivered].map(|kind| Interaction {
                subscription_id: sub,
                kind,
                external_user_id: None,
                event_id: None,
                occurred_at: Utc::now(),
            })
        })
        .collect();
    let started = Instant::now();
    let first = demo.store.record_interactions(&scope, &events[..1000]).await?;
    let second = demo.store.record_interactions(&scope, &events[1000..]).await?;
    let replay = demo.store.record_interactions(&scope, &events).await?;
    ensure!(first.accepted() + second.accepted() == 2000, "not every event was recorded");
    ensure!(replay.accepted() == 0 && replay.duplicates() == 2000, "the replay recorded something");
    ok(format!(
        "2,000 recorded, replay: 0 accepted, 2,000 duplicates ({} ms)",
        started.elapsed().as_millis()
    ));
    let [writes, written, gets, retries] = demo.store.stats().snapshot();
    ok(format!("{writes} BatchWriteItem for {written} items, {gets} BatchGetItem, {retries} retries"));
    let mut stream = demo.store.interactions(&scope, None);
    let mut rows = 0;
    let mut last = None;
    while let Some(row) = stream.next().await {
        let row = row?;
        let key = (row.subscription_id, row.kind.code());
        if last.is_some_and(|l| l >= key) {
            bail!("the merged stream is out of order");
        }
        last = Some(key);
        rows += 1;
    }
    ensure!(rows == 2000, "read back {rows} rows");
    ok(format!("read back {rows} rows from {} shards, in order, each once", keys::DEFAULT_SHARDS));
    let stats = demo.store.message_stats(&scope).await?;
    ensure!(stats[&EventKind::Sent] == 1000 && stats[&EventKind::Delivered] == 1000, "stats {stats:?}");
    ok("stats: 1,000 sent, 1,000 delivered");
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let api_url = std::env::var("API_URL").unwrap_or_else(|_| "http://127.0.0.1:3000".into());
    let Ok(table) = std::env::var("TABLE_NAME") else {
        eprintln!("retarget-demo: TABLE_NAME is required (source the stack env file)");
        return ExitCode::from(2);
    };
    let sdk = aws::load().await;
    let mut demo = Demo {
        api_url: api_url.trim_end_matches('/').to_owned(),
        http: reqwest::Client::new(),
        store: Store::new(aws::dynamodb(&sdk), table, Arc::new(SystemClock)),
        step: 0,
    };
    println!("retarget demo against {}", demo.api_url);
    match story(&mut demo).await {
        Ok(()) => {
            println!("\nAll {} steps checked out.", demo.step);
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("    ✗ {e:#}");
            println!("\nStep {} failed.", demo.step);
            ExitCode::FAILURE
        }
    }
}

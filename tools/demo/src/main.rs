//! The main job (`make run`): a story told against the running local stack, each step checked.
//! So far: apps and keys, the test clock, the error contract, subscriptions, a push message,
//! signed provider webhooks, stats and 30-day expiry; each later feature adds its chapter.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, ensure};
use chrono::{DateTime, Duration, Utc};
use clap::Parser as _;
use retarget_shared::{Store, SystemClock, aws};
use serde_json::Value;

struct Demo {
    api_url: String,
    api_key: String,
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

    async fn authed_get(&self, path: &str) -> anyhow::Result<(u16, String, Value)> {
        let response =
            self.http.get(format!("{}{path}", self.api_url)).bearer_auth(&self.api_key).send().await?;
        Self::read(response).await
    }

    async fn authed_post(&self, path: &str, body: Value) -> anyhow::Result<(u16, String, Value)> {
        let url = format!("{}{path}", self.api_url);
        let response = self.http.post(url).bearer_auth(&self.api_key).json(&body).send().await?;
        Self::read(response).await
    }

    /// A push-provider event signed as the contract says (`Retarget-Signature: t=…,v1=…`).
    async fn signed_push(&self, app_id: &str, secret: &str, t: i64, event: &Value) -> anyhow::Result<u16> {
        let body = event.to_string();
        let signature = retarget_shared::signatures::push_signature(secret, t, body.as_bytes());
        let response = self
            .http
            .post(format!("{}/v1/webhooks/push/{app_id}", self.api_url))
            .header("Retarget-Signature", format!("t={t},v1={signature}"))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await?;
        Ok(response.status().as_u16())
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

    demo.heading("Register push and SMS subscriptions, linked by external user ids");
    demo.api_key = api_key.to_owned();
    let mut push_subs = Vec::new();
    let mut sms_subs = Vec::new();
    for i in 1..=6 {
        let user = format!("shopper-{i}");
        let platform = if i % 2 == 0 { "ios" } else { "android" };
        let push = serde_json::json!({"channel":"push","token":format!("device-token-{i}"),"platform":platform,"external_user_id":user});
        let (status, _, body) = demo.authed_post("/v1/subscriptions", push).await?;
        ensure!(status == 201, "push subscription answered {status}: {body}");
        push_subs.push(body["subscription_id"].as_str().context("no id")?.to_owned());
        if i <= 4 {
            let sms = serde_json::json!({"channel":"sms","phone_number":format!("+1555010000{i}"),"external_user_id":user});
            let (status, _, body) = demo.authed_post("/v1/subscriptions", sms).await?;
            ensure!(status == 201, "sms subscription answered {status}: {body}");
            sms_subs.push(body["subscription_id"].as_str().context("no id")?.to_owned());
        }
    }
    ok(format!(
        "{} push and {} SMS subscriptions for 6 shoppers (shoppers 1-4 have both)",
        push_subs.len(),
        sms_subs.len()
    ));
    let again = serde_json::json!({"channel":"push","token":"device-token-1","platform":"android","external_user_id":"shopper-1"});
    let (status, _, body) = demo.authed_post("/v1/subscriptions", again).await?;
    ensure!(
        status == 200 && body["subscription_id"] == push_subs[0].as_str(),
        "re-registering answered {status}"
    );
    ok("registering a token again returns the same subscription (200)");

    demo.heading("Send a push message to every shopper");
    let message = serde_json::json!({"channel":"push","contents":{"title":"Back in stock","body":"The blue sneakers are back","url":"https://shop.example/sneakers"},
        "include_external_user_ids":["shopper-1","shopper-2","shopper-3","shopper-4","shopper-5","shopper-6"]});
    let (status, _, body) = demo.authed_post("/v1/messages", message).await?;
    ensure!(status == 202 && body["recipients"] == 6, "message answered {status}: {body}");
    let message_id = body["message_id"].as_str().context("no message id")?.to_owned();
    ok(format!("message {message_id}: {} recipients, status {}", body["recipients"], body["status"]));

    demo.heading("The push provider reports: 6 sent, 4 confirmed deliveries, 2 clicks (signed webhooks)");
    let events: Vec<Value> = push_subs
        .iter()
        .map(|s| serde_json::json!({"message_id": message_id, "subscription_id": s, "kind": "sent"}))
        .collect();
    let (status, _, body) = demo.authed_post("/v1/events", serde_json::json!({"events": events})).await?;
    ensure!(status == 200 && body["accepted"] == 6, "events answered {status}: {body}");
    ok(format!("POST /v1/events: {} accepted", body["accepted"]));
    let secret = created["push_webhook_secret"].as_str().context("no secret")?;
    let now = demo.clock().await?.timestamp();
    let mut delivered = 0;
    for (i, sub) in push_subs.iter().enumerate().take(4) {
        for kind in if i < 2 { &["delivered", "clicked"][..] } else { &["delivered"][..] } {
            let event = serde_json::json!({"event_id": format!("evt-{i}-{kind}"), "kind": kind, "message_id": message_id,
                "subscription_id": sub, "occurred_at": retarget_shared::clock::rfc3339(Utc::now())});
            for _ in 0..2 {
                // Providers deliver at least once: every webhook arrives twice.
                let status = demo.signed_push(&app_id, secret, now, &event).await?;
                ensure!(status == 204, "push webhook answered {status}");
            }
            delivered += 1;
        }
    }
    ok(format!("{delivered} webhook events, each delivered twice, all 204"));
    let status =
        demo.signed_push(&app_id, "not-the-secret", now, &serde_json::json!({"event_id":"x"})).await?;
    ensure!(status == 401, "a forged webhook answered {status}");
    ok("a forged signature is refused: 401");

    demo.heading("Message stats count each subscription once");
    let (status, _, body) = demo.authed_get(&format!("/v1/messages/{message_id}")).await?;
    ensure!(status == 200, "GET message answered {status}");
    let stats = &body["stats"];
    ok(format!(
        "sent {}, delivered {}, clicked {} (retargetable: {}, expires {})",
        stats["sent"], stats["delivered"], stats["clicked"], body["retargetable"], body["expires_at"]
    ));
    ensure!(stats["sent"] == 6 && stats["delivered"] == 4 && stats["clicked"] == 2, "stats {stats}");

    demo.heading("Thirty days later the interaction data has expired");
    let (status, _, _) = demo.post("/dev/clock", serde_json::json!({"advance_seconds": 30 * 86_400})).await?;
    ensure!(status == 200, "advancing the clock answered {status}");
    let (_, _, body) = demo.authed_get(&format!("/v1/messages/{message_id}")).await?;
    ensure!(body["stats"]["sent"] == 0 && body["stats"]["clicked"] == 0, "expired stats {}", body["stats"]);
    ok("stats read 0 although DynamoDB Local never deletes anything: every read filters expires_at");
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
        api_key: String::new(),
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

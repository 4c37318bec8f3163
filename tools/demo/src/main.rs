//! The main job (`make run`): the whole story, offline, against the running local stack and
//! local provider stand-ins, every step checked. Exits 0 only if all of them pass.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant};

use anyhow::{Context as _, bail, ensure};
use chrono::{DateTime, Utc};
use clap::Parser as _;
use retarget_shared::edge::signatures::{push_signature, twilio_signature};
use retarget_shared::{Store, SystemClock, adapters::aws};
use retarget_standin::{Options, Provider, StandIn, credentials};
use serde_json::{Value, json};

struct Demo {
    api_url: String,
    api_key: String,
    http: reqwest::Client,
    store: Store,
    standin: StandIn,
    step: usize,
}

type Reply = (u16, String, Value);

/// The contract lets stats trail the stored events by 5 seconds at most.
const STATS_LAG: StdDuration = StdDuration::from_secs(5);

impl Demo {
    fn heading(&mut self, title: &str) {
        self.step += 1;
        println!("\n[{}] {title}", self.step);
    }

    async fn read(response: reqwest::Response) -> anyhow::Result<Reply> {
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

    async fn get(&self, path: &str) -> anyhow::Result<Reply> {
        Self::read(self.http.get(format!("{}{path}", self.api_url)).bearer_auth(&self.api_key).send().await?)
            .await
    }

    async fn post(&self, path: &str, body: Value) -> anyhow::Result<Reply> {
        let request =
            self.http.post(format!("{}{path}", self.api_url)).bearer_auth(&self.api_key).json(&body);
        Self::read(request.send().await?).await
    }

    /// The message (`GET /v1/messages/{id}`) once `done` holds for its stats, polled for at
    /// most `within`: stats are counted from the table's stream, a moment after the events
    /// are stored. With how long that took.
    async fn message_when(
        &self,
        message_id: &str,
        within: StdDuration,
        done: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<(Value, StdDuration)> {
        let started = Instant::now();
        loop {
            let (status, _, body) = self.get(&format!("/v1/messages/{message_id}")).await?;
            ensure!(status == 200, "GET /v1/messages/{message_id} answered {status}: {body}");
            if done(&body["stats"]) {
                return Ok((body, started.elapsed()));
            }
            ensure!(started.elapsed() < within, "stats still {} after {within:?}", body["stats"]);
            tokio::time::sleep(StdDuration::from_millis(100)).await;
        }
    }

    async fn clock(&self) -> anyhow::Result<DateTime<Utc>> {
        let (status, _, body) = self.get("/dev/clock").await?;
        ensure!(status == 200, "GET /dev/clock answered {status}");
        Ok(DateTime::parse_from_rfc3339(body["now"].as_str().context("clock without now")?)?
            .with_timezone(&Utc))
    }

    async fn advance(&self, seconds: i64) -> anyhow::Result<DateTime<Utc>> {
        let (status, _, body) = self.post("/dev/clock", json!({"advance_seconds": seconds})).await?;
        ensure!(status == 200, "advancing the clock answered {status}: {body}");
        self.clock().await
    }

    /// A push-provider event, signed as the contract says.
    async fn push_webhook(&self, app_id: &str, secret: &str, t: i64, event: &Value) -> anyhow::Result<u16> {
        let body = event.to_string();
        let response = self
            .http
            .post(format!("{}/v1/webhooks/push/{app_id}", self.api_url))
            .header("Retarget-Signature", format!("t={t},v1={}", push_signature(secret, t, body.as_bytes())))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await?;
        Ok(response.status().as_u16())
    }

    /// A Twilio request (a status callback, an inbound message) to `callback_url`, the public
    /// URL Twilio calls, signed as Twilio signs. Its status and body.
    async fn twilio_callback(
        &self,
        callback_url: &str,
        auth_token: &str,
        params: &[(&str, &str)],
    ) -> anyhow::Result<(u16, String)> {
        let params: Vec<(String, String)> =
            params.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        let signature = twilio_signature(auth_token, callback_url, &params);
        let body: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(&params).finish();
        // The stack serves PUBLIC_BASE_URL at API_URL locally: same path and query.
        let path_and_query =
            callback_url.split_once("/v1/").map(|(_, rest)| format!("/v1/{rest}")).context("callback URL")?;
        let response = self
            .http
            .post(format!("{}{path_and_query}", self.api_url))
            .header("X-Twilio-Signature", signature)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.text().await?))
    }

    /// Every request the stand-ins got so far was one they accept (right credentials, well formed).
    /// `POST /v1/track` as a device sends it: no API key, the push's token.
    async fn track(&self, token: &str, kind: &str) -> anyhow::Result<u16> {
        let body = json!({"token": token, "kind": kind});
        let response = self.http.post(format!("{}/v1/track", self.api_url)).json(&body).send().await?;
        Ok(response.status().as_u16())
    }

    fn none_refused(&self) -> anyhow::Result<()> {
        let refused: Vec<_> = self.standin.received().into_iter().filter(|r| r.refused.is_some()).collect();
        ensure!(refused.is_empty(), "the provider stand-ins refused {refused:?}");
        Ok(())
    }

    /// Polls until `check` holds (the stack's pollers and scheduler run on their own).
    async fn wait_for<F: Fn(&Demo) -> bool>(&self, what: &str, check: F) -> anyhow::Result<()> {
        let started = Instant::now();
        while started.elapsed() < StdDuration::from_secs(60) {
            if check(self) {
                return Ok(());
            }
            tokio::time::sleep(StdDuration::from_millis(200)).await;
        }
        bail!("timed out waiting for {what}")
    }
}

fn ok(line: impl std::fmt::Display) {
    println!("    ✓ {line}");
}

async fn story(demo: &mut Demo) -> anyhow::Result<()> {
    let standin_base = std::env::var("STANDIN_URL").context("STANDIN_URL")?;
    let twilio_token = credentials::TWILIO_AUTH_TOKEN;

    demo.heading("Create an app on the pro plan, with Twilio, FCM, APNs and SES credentials");
    // The stand-ins' credentials, as `make dev-app` gives them: the service account's token_uri
    // is the stand-in's.
    let credentials_dir = std::env::temp_dir().join(format!("retarget-demo-{}", std::process::id()));
    let flags = credentials::write_app_flags(&credentials_dir, &standin_base)?;
    let args = ["retarget-admin", "app", "create", "--name", "Demo Shop", "--plan", "pro"]
        .into_iter()
        .map(str::to_owned)
        .chain(flags)
        .chain(
            ["--ses-from", DEMO_FROM, "--ses-configuration-set", "retarget-local-email"].map(str::to_owned),
        );
    let created =
        retarget_admin::run(&demo.store, retarget_admin::Cli::try_parse_from(args)?, &mut std::io::empty())
            .await?;
    let _ = std::fs::remove_dir_all(&credentials_dir);
    let app_id = created["app_id"].as_str().context("no app_id")?.to_owned();
    demo.api_key = created["api_key"].as_str().context("no api_key")?.to_owned();
    let secret = created["push_webhook_secret"].as_str().context("no secret")?.to_owned();
    ok(format!("app {app_id}, plan {}, API key {}…", created["plan"], &demo.api_key[..8]));

    demo.heading("Register six shoppers: a phone each (android or iOS), four of them also an SMS number");
    let mut push_subs = Vec::new();
    let mut sms_subs = Vec::new();
    for i in 1..=6 {
        let user = format!("shopper-{i}");
        let platform = if i % 2 == 0 { "ios" } else { "android" };
        let token = if platform == "ios" { format!("{:064x}", i) } else { format!("fcm-token-{i}") };
        let (status, _, body) = demo
            .post(
                "/v1/subscriptions",
                json!({"channel":"push","token":token,"platform":platform,"external_user_id":user}),
            )
            .await?;
        ensure!(status == 201, "push subscription answered {status}: {body}");
        push_subs.push(body["subscription_id"].as_str().context("no id")?.to_owned());
        if i <= 4 {
            let (status, _, body) = demo
                .post(
                    "/v1/subscriptions",
                    json!({"channel":"sms","phone_number":format!("+1555010000{i}"),"external_user_id":user}),
                )
                .await?;
            ensure!(status == 201, "sms subscription answered {status}: {body}");
            sms_subs.push(body["subscription_id"].as_str().context("no id")?.to_owned());
        }
    }
    ok(format!(
        "{} push and {} SMS subscriptions, linked by external user id",
        push_subs.len(),
        sms_subs.len()
    ));

    demo.heading(
        "Send a push message to all six, with a follow-up declared up front; FCM and APNs deliver it",
    );
    let (status, _, body) = demo
        .post("/v1/messages", json!({"channel":"push","contents":{"title":"Back in stock","body":"The blue sneakers are back","url":"https://shop.example/sneakers"},
            "include_external_user_ids":["shopper-1","shopper-2","shopper-3","shopper-4","shopper-5","shopper-6"],
            "follow_ups":[{"after_seconds":7200,"action":"not_converted","contents":{"title":"Still thinking?","body":"Free shipping on the blue sneakers today"}}]}))
        .await?;
    ensure!(status == 202 && body["recipients"] == 6, "message answered {status}: {body}");
    let message_id = body["message_id"].as_str().context("no message id")?.to_owned();
    let follow_up_id =
        body["follow_ups"][0]["retarget_id"].as_str().context("no follow-up in the answer")?.to_owned();
    ok(format!("message {message_id} queued for {} recipients", body["recipients"]));
    ok(format!(
        "follow-up {follow_up_id}: a push to those who do not convert, at {}",
        body["follow_ups"][0]["send_at"]
    ));
    demo.wait_for("6 push requests at the stand-ins", |d| {
        d.standin.of(Provider::Fcm).len() + d.standin.of(Provider::Apns).len() >= 6
    })
    .await?;
    ok(format!(
        "{} FCM sends (after {} OAuth token fetch), {} APNs sends",
        demo.standin.of(Provider::Fcm).len(),
        demo.standin.of(Provider::FcmToken).len(),
        demo.standin.of(Provider::Apns).len()
    ));
    demo.none_refused()?;
    demo.message_when(&message_id, StdDuration::from_secs(30), |stats| stats["sent"] == 6).await?;
    ok("the sender recorded a `sent` event for each of the six");

    demo.heading(
        "The devices report back with each push's tracking token (no secret in the app), a relay through the signed webhook; everything sent twice",
    );
    let token_of = |sub: &str| {
        let pushes = [demo.standin.of(Provider::Fcm), demo.standin.of(Provider::Apns)].concat();
        pushes.into_iter().find(|r| r.subscription_id.as_deref() == Some(sub)).and_then(|r| r.tracking_token)
    };
    let tokens: Vec<String> = push_subs
        .iter()
        .map(|sub| token_of(sub).with_context(|| format!("no tracking token in the push to {sub}")))
        .collect::<anyhow::Result<_>>()?;
    ok(format!("each push carried its own token (FCM data.rt, APNs rt), {} characters", tokens[0].len()));
    // shopper-1 and shopper-2 (android and iOS): delivered and clicked; shopper-1 then buys.
    for (token, kinds) in [
        (&tokens[0], &["delivered", "clicked", "converted"][..]),
        (&tokens[1], &["delivered", "clicked"][..]),
    ] {
        for kind in kinds {
            for _ in 0..2 {
                let status = demo.track(token, kind).await?;
                ensure!(status == 204, "POST /v1/track {kind} answered {status}");
            }
        }
    }
    ok("5 reports to POST /v1/track, each sent twice, all 204");
    let mut forged = tokens[0].clone().into_bytes();
    forged[30] = if forged[30] == b'A' { b'B' } else { b'A' };
    ensure!(demo.track(&String::from_utf8(forged)?, "clicked").await? == 401, "a forged token was accepted");
    ok("an altered token is refused: 401 invalid_token");
    // shopper-3 and shopper-4: their deliveries come through a server-side relay instead.
    let now = demo.clock().await?.timestamp();
    for (i, sub) in push_subs.iter().enumerate().skip(2).take(2) {
        let event = json!({"event_id": format!("evt-{i}-delivered"), "kind": "delivered", "message_id": message_id,
            "subscription_id": sub, "occurred_at": retarget_shared::clock::rfc3339(Utc::now())});
        for _ in 0..2 {
            let status = demo.push_webhook(&app_id, &secret, now, &event).await?;
            ensure!(status == 204, "push webhook answered {status}");
        }
    }
    ok("2 signed push webhook events, each sent twice, all 204");
    ensure!(
        demo.push_webhook(&app_id, "forged", now, &json!({"event_id":"x"})).await? == 401,
        "a forged webhook was accepted"
    );
    ok("a forged signature is refused: 401 invalid_signature");
    let (body, lag) = demo
        .message_when(&message_id, STATS_LAG, |s| {
            s["sent"] == 6 && s["delivered"] == 4 && s["clicked"] == 2 && s["converted"] == 1
        })
        .await?;
    let stats = &body["stats"];
    ok(format!(
        "stats count each subscription once: sent {}, delivered {}, clicked {}, converted {} (counted from the table's stream within {} ms)",
        stats["sent"],
        stats["delivered"],
        stats["clicked"],
        stats["converted"],
        lag.as_millis()
    ));

    demo.heading("Audience counts for every action");
    for (action, expected) in [
        ("sent", 6),
        ("delivered", 4),
        ("not_delivered", 2),
        ("clicked", 2),
        ("not_clicked", 4),
        ("converted", 1),
        ("not_converted", 5),
    ] {
        let (status, _, body) =
            demo.get(&format!("/v1/messages/{message_id}/audience/count?action={action}")).await?;
        ensure!(status == 200 && body["count"] == expected, "{action}: {status} {body}");
        ok(format!("{action:<14} {}", body["count"]));
    }
    let (_, _, body) =
        demo.get(&format!("/v1/messages/{message_id}/audience/count?action=not_clicked&channel=sms")).await?;
    ensure!(body["count"] == 2 && body["unreachable"] == 2, "not_clicked via sms: {body}");
    ok(format!(
        "not_clicked, reached by SMS: {} (unreachable without a number: {})",
        body["count"], body["unreachable"]
    ));
    let (_, _, page) =
        demo.get(&format!("/v1/messages/{message_id}/audience?action=not_clicked&limit=3")).await?;
    let cursor = page["next_cursor"].as_str().context("no cursor on a full page")?;
    let (_, _, rest) = demo
        .get(&format!("/v1/messages/{message_id}/audience?action=not_clicked&limit=3&cursor={cursor}"))
        .await?;
    let paged = page["subscriptions"].as_array().map_or(0, Vec::len)
        + rest["subscriptions"].as_array().map_or(0, Vec::len);
    ensure!(paged == 4 && rest["next_cursor"].is_null(), "paging returned {paged}");
    ok("paging with limit=3 returns the 4 members once, in 2 pages");

    demo.heading("Schedule an SMS retarget, one hour out, to those who did not click");
    let send_at = retarget_shared::clock::rfc3339(demo.clock().await? + chrono::Duration::hours(1));
    let (status, _, body) = demo
        .post(
            "/v1/retargets",
            json!({"source_message_id": message_id, "action": "not_clicked", "channel": "sms",
            "contents": {"body": "Your sneakers are waiting - 10% off today: https://shop.example/sneakers?c=sms"}, "send_at": send_at}),
        )
        .await?;
    ensure!(status == 201, "retarget answered {status}: {body}");
    let retarget_id = body["retarget_id"].as_str().context("no retarget id")?.to_owned();
    let retarget_message = body["message_id"].as_str().context("no message id")?.to_owned();
    ok(format!("retarget {retarget_id}: status {}, send_at {}", body["status"], body["send_at"]));
    let (status, _, body) = demo
        .post(
            "/v1/retargets",
            json!({"source_message_id": message_id, "action": "not_clicked", "channel": "sms",
        "contents": {"body": "x"}, "include_subscription_ids": [push_subs[0]]}),
        )
        .await?;
    ensure!(status == 422 && body["code"] == "segments_not_combinable", "combining answered {status}");
    ok("combining the audience with other segments is refused: 422 segments_not_combinable");

    demo.heading(
        "An hour passes; the scheduler's tick dispatches it and the SMS sender texts through Twilio",
    );
    demo.advance(3600).await?;
    let started = Instant::now();
    let view = loop {
        let (_, _, view) = demo.get(&format!("/v1/retargets/{retarget_id}")).await?;
        if view["status"] == "dispatched" {
            break view;
        }
        ensure!(started.elapsed() < StdDuration::from_secs(60), "retarget still {}", view["status"]);
        tokio::time::sleep(StdDuration::from_millis(250)).await;
    };
    ensure!(
        view["audience_size"] == 2 && view["enqueued"] == 2 && view["unreachable"] == 2,
        "retarget {view}"
    );
    ok(format!(
        "dispatched: audience_size {}, enqueued {}, unreachable {}",
        view["audience_size"], view["enqueued"], view["unreachable"]
    ));
    demo.wait_for("2 SMS at the Twilio stand-in", |d| d.standin.of(Provider::Twilio).len() >= 2).await?;
    let texts = demo.standin.of(Provider::Twilio);
    for text in &texts {
        let (to, body) = (text.to.as_deref().unwrap_or_default(), text.body.as_deref().unwrap_or_default());
        ok(format!("Twilio got To {to} Body {body:?}"));
    }
    ensure!(texts.len() == 2, "{} SMS reached Twilio", texts.len());
    demo.none_refused()?;

    demo.heading("Twilio's status callbacks come back (signed, duplicated, out of order)");
    for (i, text) in texts.iter().enumerate() {
        let callback = text.status_callback.clone().context("no StatusCallback")?;
        let sid = format!("SMdemo{i}");
        let statuses: &[&str] = if i == 0 {
            &["delivered", "sent", "queued", "delivered"]
        } else {
            &["sent", "undelivered", "sent"]
        };
        for status in statuses {
            let (code, _) = demo
                .twilio_callback(
                    &callback,
                    twilio_token,
                    &[
                        ("MessageSid", &sid),
                        ("MessageStatus", status),
                        ("AccountSid", credentials::TWILIO_ACCOUNT_SID),
                    ],
                )
                .await?;
            ensure!(code == 204, "callback answered {code}");
        }
    }
    ok("7 callbacks, all 204");
    let (body, _) = demo
        .message_when(&retarget_message, STATS_LAG, |s| {
            s["sent"] == 2 && s["delivered"] == 1 && s["undelivered"] == 1
        })
        .await?;
    let stats = &body["stats"];
    ensure!(body["retarget_of"] == message_id.as_str(), "retarget_of {}", body["retarget_of"]);
    ok(format!(
        "the retarget's own message: sent {}, delivered {}, undelivered {} (retarget_of {})",
        stats["sent"], stats["delivered"], stats["undelivered"], body["retarget_of"]
    ));

    demo.heading("A shopper opens the tracked link of the text");
    let text = &texts[0];
    let body = text.body.as_deref().unwrap_or_default();
    ensure!(!body.contains("shop.example"), "the original URL was sent: {body}");
    let code: String =
        body.split("/r/").nth(1).context("no tracked link in the text")?.chars().take(10).collect();
    ok(format!(
        "the text carried {}/r/{code} instead of the URL",
        body.split("/r/").next().unwrap_or_default().rsplit(' ').next().unwrap_or_default()
    ));
    for _ in 0..2 {
        let response = demo.http.get(format!("{}/r/{code}", demo.api_url)).send().await?;
        let location =
            response.headers().get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok()).unwrap_or("");
        ensure!(
            response.status().as_u16() == 302 && location == "https://shop.example/sneakers?c=sms",
            "GET /r/{code} answered {} to {location:?}",
            response.status()
        );
    }
    ok("GET /r/{code}, twice: 302 to https://shop.example/sneakers?c=sms");
    demo.message_when(&retarget_message, STATS_LAG, |s| s["clicked"] == 1).await?;
    ok("the retarget's message counts 1 click, however often it was opened");

    demo.heading("Two hours after the push, its declared follow-up goes to the five who did not buy");
    let pushes_before = demo.standin.of(Provider::Fcm).len() + demo.standin.of(Provider::Apns).len();
    demo.advance(3600).await?;
    let started = Instant::now();
    let view = loop {
        let (_, _, view) = demo.get(&format!("/v1/retargets/{follow_up_id}")).await?;
        if view["status"] == "dispatched" {
            break view;
        }
        ensure!(started.elapsed() < StdDuration::from_secs(60), "follow-up still {}", view["status"]);
        tokio::time::sleep(StdDuration::from_millis(250)).await;
    };
    ensure!(view["audience_size"] == 5 && view["enqueued"] == 5, "follow-up {view}");
    demo.wait_for("5 more pushes at the stand-ins", |d| {
        d.standin.of(Provider::Fcm).len() + d.standin.of(Provider::Apns).len() >= pushes_before + 5
    })
    .await?;
    ok(format!(
        "dispatched: audience_size {}, enqueued {}; 5 pushes delivered",
        view["audience_size"], view["enqueued"]
    ));
    let (_, _, listed) = demo.get("/v1/messages?limit=10").await?;
    let listed = listed["messages"].as_array().map_or(0, Vec::len);
    ensure!(listed == 3, "GET /v1/messages listed {listed}");
    ok("GET /v1/messages lists the push, the SMS retarget's message and the follow-up's, newest first");
    demo.none_refused()?;

    email(demo, &app_id, &message_id).await?;

    delivery_policy(demo, &app_id).await?;

    demo.heading("Thirty days after the source, its data has expired");
    demo.advance(30 * 86_400).await?;
    let (status, _, body) =
        demo.get(&format!("/v1/messages/{message_id}/audience/count?action=sent")).await?;
    ensure!(status == 410 && body["code"] == "source_expired", "expired source answered {status}");
    let (_, _, body) = demo.get(&format!("/v1/messages/{message_id}")).await?;
    ensure!(body["stats"]["sent"] == 0, "expired stats {}", body["stats"]);
    ok(
        "audiences answer 410 source_expired and stats read 0 (DynamoDB Local never deletes; reads filter expires_at)",
    );
    Ok(())
}

/// Who the demo app's email comes from (its `--ses-from`).
const DEMO_FROM: &str = "Demo Shop <news@shop.example>";

/// One SES event as the EventBridge rule on `source: aws.ses` delivers it (the shape of AWS's
/// examples), tagged as the email sender tags every email.
fn ses_event(detail_type: &str, app_id: &str, message_id: &str, sub: &str, extra: Value) -> Value {
    let mut detail = json!({
        "mail": {
            "timestamp": retarget_shared::clock::rfc3339(Utc::now()),
            "source": DEMO_FROM,
            "messageId": format!("demo-{sub}"),
            "destination": ["shopper@example.com"],
            "tags": {"ses:configuration-set": ["retarget-local-email"], "app_id": [app_id],
                     "message_id": [message_id], "subscription_id": [sub]}
        }
    });
    if let (Some(detail), Some(extra)) = (detail.as_object_mut(), extra.as_object()) {
        detail.extend(extra.clone());
    }
    json!({"detail-type": detail_type, "source": "aws.ses", "detail": detail})
}

/// The email leg: the push's non-clickers who gave an email address get an email (SES, the
/// emulator's), then SES's events come back — deliveries, opens, a permanent bounce.
async fn email(demo: &mut Demo, app_id: &str, push_message: &str) -> anyhow::Result<()> {
    demo.heading("Three of the shoppers who did not click the push also gave an email address");
    let mut email_subs = Vec::new();
    for i in 3..=5 {
        let (status, _, body) = demo
            .post(
                "/v1/subscriptions",
                json!({"channel":"email","email":format!("Shopper.{i}@Example.com"),"external_user_id":format!("shopper-{i}")}),
            )
            .await?;
        ensure!(status == 201, "email subscription answered {status}: {body}");
        email_subs.push(body["subscription_id"].as_str().context("no id")?.to_owned());
    }
    let (_, _, count) = demo
        .get(&format!("/v1/messages/{push_message}/audience/count?action=not_clicked&channel=email"))
        .await?;
    ensure!(count["count"] == 3 && count["unreachable"] == 1, "not_clicked by email: {count}");
    ok(format!("not_clicked, reached by email: {} (unreachable: {})", count["count"], count["unreachable"]));

    demo.heading("Email those who did not click the push: SES sends it, one per person");
    let (status, _, body) = demo
        .post(
            "/v1/retargets",
            json!({"source_message_id": push_message, "action": "not_clicked", "channel": "email",
                "contents": {"title": "Your sneakers are waiting", "body": "10% off the blue sneakers today: https://shop.example/sneakers?c=email",
                             "html": "<p>10% off the <a href=\"https://shop.example/sneakers?c=email\">blue sneakers</a> today.</p>"}}),
        )
        .await?;
    ensure!(status == 201, "email retarget answered {status}: {body}");
    let retarget_id = body["retarget_id"].as_str().context("no retarget id")?.to_owned();
    let email_message = body["message_id"].as_str().context("no message id")?.to_owned();
    let started = Instant::now();
    let view = loop {
        let (_, _, view) = demo.get(&format!("/v1/retargets/{retarget_id}")).await?;
        if view["status"] == "dispatched" {
            break view;
        }
        ensure!(started.elapsed() < StdDuration::from_secs(60), "email retarget still {}", view["status"]);
        tokio::time::sleep(StdDuration::from_millis(250)).await;
    };
    ensure!(
        view["audience_size"] == 3 && view["enqueued"] == 3 && view["unreachable"] == 1,
        "retarget {view}"
    );
    ok(format!(
        "dispatched: audience_size {}, enqueued {}, unreachable {}",
        view["audience_size"], view["enqueued"], view["unreachable"]
    ));
    demo.message_when(&email_message, StdDuration::from_secs(30), |s| s["sent"] == 3).await?;
    ok("SES (the emulator's SendEmail) accepted the three: `sent` recorded for each");

    demo.heading("SES's events come back through the EventBridge rule's handler: deliveries, opens, a bounce (each twice)");
    let bounce = json!({"bounce": {"bounceType": "Permanent", "bounceSubType": "General",
        "bouncedRecipients": [{"emailAddress": "shopper@example.com", "action": "failed", "status": "5.1.1"}],
        "timestamp": retarget_shared::clock::rfc3339(Utc::now())}});
    let events = vec![
        ses_event("Email Delivered", app_id, &email_message, &email_subs[0], json!({})),
        ses_event("Email Delivered", app_id, &email_message, &email_subs[1], json!({})),
        ses_event("Email Opened", app_id, &email_message, &email_subs[0], json!({})),
        ses_event("Email Opened", app_id, &email_message, &email_subs[1], json!({})),
        ses_event("Email Bounced", app_id, &email_message, &email_subs[2], bounce),
        ses_event("Email Delivery Delayed", app_id, &email_message, &email_subs[2], json!({})),
    ];
    for _ in 0..2 {
        let (status, _, body) = demo.post("/dev/ses-events", json!({ "events": events })).await?;
        ensure!(status == 200, "POST /dev/ses-events answered {status}: {body}");
    }
    let (body, _) = demo
        .message_when(&email_message, STATS_LAG, |s| {
            s["sent"] == 3 && s["delivered"] == 2 && s["opened"] == 2 && s["bounced"] == 1
        })
        .await?;
    let stats = &body["stats"];
    ok(format!(
        "the email's stats: sent {}, delivered {}, opened {}, bounced {} (a delay records nothing)",
        stats["sent"], stats["delivered"], stats["opened"], stats["bounced"]
    ));
    let (_, _, not_opened) =
        demo.get(&format!("/v1/messages/{email_message}/audience/count?action=not_opened")).await?;
    // The one who did not open bounced: unsubscribed now, so in no audience any more.
    ensure!(not_opened["count"] == 0, "not_opened: {not_opened}");
    let (_, _, bounced) = demo.get(&format!("/v1/subscriptions/{}", email_subs[2])).await?;
    ensure!(
        bounced["status"] == "unsubscribed" && bounced["unsubscribed_reason"] == "bounce",
        "after the bounce: {bounced}"
    );
    ok(
        "the permanent bounce unsubscribed its recipient (reason bounce): not_opened is 0, as audiences leave the unsubscribed out",
    );
    Ok(())
}

/// Seconds from `now` to the next `hour`:00 in `zone`'s local time (always ahead, at most a day).
fn until_local(now: DateTime<Utc>, zone: chrono_tz::Tz, hour: u32) -> anyhow::Result<i64> {
    use chrono::TimeZone as _;
    let local = now.with_timezone(&zone);
    for days in 0..=2 {
        let date = local.date_naive() + chrono::Duration::days(days);
        let at = date.and_hms_opt(hour, 0, 0).context("hour")?;
        if let Some(at) = zone.from_local_datetime(&at).earliest()
            && at.with_timezone(&Utc) > now
        {
            return Ok((at.with_timezone(&Utc) - now).num_seconds());
        }
    }
    bail!("no {hour}:00 in {zone} within two days")
}

/// The delivery policy: quiet hours in each recipient's own time zone (a New York number waits
/// for its morning, a Tokyo number does not), one frequency cap per person, STOP and START.
async fn delivery_policy(demo: &mut Demo, app_id: &str) -> anyhow::Result<()> {
    const NEW_YORK: &str = "+12125550107";
    const TOKYO: &str = "+819012345678";
    let new_york: chrono_tz::Tz = "America/New_York".parse().map_err(|e| anyhow::anyhow!("{e}"))?;

    demo.heading("A delivery policy: no SMS 21:00-08:00 in the recipient's own time, at most one message per person per 12 hours");
    let policy = json!({"quiet_hours": {"start": "21:00", "end": "08:00", "channels": ["sms"]},
        "default_timezone": "America/New_York",
        "frequency_cap": {"max": 1, "per_hours": 12, "channels": ["push", "sms"]}});
    let request =
        demo.http.put(format!("{}/v1/app/delivery-policy", demo.api_url)).bearer_auth(&demo.api_key);
    let (status, _, body) = Demo::read(request.json(&policy).send().await?).await?;
    ensure!(status == 200 && body == policy, "PUT /v1/app/delivery-policy answered {status}: {body}");
    ok("PUT /v1/app/delivery-policy: 200, stored as given");

    demo.heading("Two new shoppers sign up for texts: a New York number and a Tokyo one; their zones come from the numbers");
    let mut subs = Vec::new();
    for (user, number, zone) in
        [("shopper-7", NEW_YORK, "America/New_York"), ("shopper-8", TOKYO, "Asia/Tokyo")]
    {
        let (status, _, body) = demo
            .post(
                "/v1/subscriptions",
                json!({"channel": "sms", "phone_number": number, "external_user_id": user}),
            )
            .await?;
        ensure!(status == 201, "sms subscription answered {status}: {body}");
        let id = body["subscription_id"].as_str().context("no id")?.to_owned();
        let (_, _, view) = demo.get(&format!("/v1/subscriptions/{id}")).await?;
        ensure!(view["timezone"] == zone, "{number}: timezone {}", view["timezone"]);
        ok(format!("{user} {number}: timezone {zone}"));
        subs.push(id);
    }
    let texts_to = |d: &Demo, number: &str| {
        d.standin.of(Provider::Twilio).into_iter().filter(|r| r.to.as_deref() == Some(number)).count()
    };

    let wait = until_local(demo.clock().await?, new_york, 19)?;
    let now = demo.advance(wait).await?;
    demo.heading(&format!(
        "At 19:00 in New York ({} in Tokyo) a text goes to both; both are awake",
        now.with_timezone(&chrono_tz::Asia::Tokyo).format("%H:%M")
    ));
    let (status, _, body) = demo
        .post(
            "/v1/messages",
            json!({"channel": "sms", "contents": {"body": "Flash sale tonight: 20% off sneakers"},
            "include_external_user_ids": ["shopper-7", "shopper-8"]}),
        )
        .await?;
    ensure!(status == 202 && body["recipients"] == 2, "message answered {status}: {body}");
    let flash_sale = body["message_id"].as_str().context("no message id")?.to_owned();
    demo.wait_for("a text to each", |d| texts_to(d, NEW_YORK) == 1 && texts_to(d, TOKYO) == 1).await?;
    demo.message_when(&flash_sale, StdDuration::from_secs(30), |s| s["sent"] == 2).await?;
    ok("both texted at once: sent 2");

    let now = demo.advance(7 * 3600).await?;
    demo.heading(&format!(
        "Seven hours later, {} in New York ({} in Tokyo), a retarget to those who did not click",
        now.with_timezone(&new_york).format("%H:%M"),
        now.with_timezone(&chrono_tz::Asia::Tokyo).format("%H:%M")
    ));
    let (status, _, body) = demo
        .post(
            "/v1/retargets",
            json!({"source_message_id": flash_sale, "action": "not_clicked", "channel": "sms",
            "contents": {"body": "Last hours of the flash sale"}}),
        )
        .await?;
    ensure!(status == 201, "retarget answered {status}: {body}");
    let retarget_id = body["retarget_id"].as_str().context("no retarget id")?.to_owned();
    let started = Instant::now();
    let view = loop {
        let (_, _, view) = demo.get(&format!("/v1/retargets/{retarget_id}")).await?;
        if view["status"] == "dispatched" && view["deferred"] == 1 && view["capped"] == 1 {
            break view;
        }
        ensure!(started.elapsed() < StdDuration::from_secs(60), "retarget still {view}");
        tokio::time::sleep(StdDuration::from_millis(250)).await;
    };
    ok(format!(
        "audience_size {}, enqueued {}: deferred {} (New York is asleep), capped {} (Tokyo had its one text of 12 hours)",
        view["audience_size"], view["enqueued"], view["deferred"], view["capped"]
    ));
    tokio::time::sleep(StdDuration::from_secs(2)).await;
    ensure!(
        texts_to(demo, NEW_YORK) == 1 && texts_to(demo, TOKYO) == 1,
        "a text went out at night or over the cap"
    );
    ok("no text sent: neither at night nor over the cap");

    let wait = until_local(demo.clock().await?, new_york, 8)?;
    demo.advance(wait - 60).await?;
    demo.heading("At 07:59 in New York it still waits; at 08:00 it goes");
    tokio::time::sleep(StdDuration::from_secs(3)).await; // a few scheduler ticks
    ensure!(texts_to(demo, NEW_YORK) == 1, "the deferred text went out before 08:00");
    ok("07:59: nothing yet, after three scheduler ticks");
    let now = demo.advance(60).await?;
    demo.wait_for("the deferred text", |d| texts_to(d, NEW_YORK) == 2).await?;
    ok(format!(
        "{}: the New York shopper gets it ({} UTC); Tokyo never does (capped, nothing recorded)",
        now.with_timezone(&new_york).format("%H:%M local"),
        now.format("%H:%M")
    ));
    ensure!(texts_to(demo, TOKYO) == 1, "the capped recipient was texted");
    demo.none_refused()?;

    demo.heading("The New York shopper replies STOP, later START (Twilio's inbound webhook, signed)");
    let public = std::env::var("PUBLIC_BASE_URL").unwrap_or_else(|_| demo.api_url.clone());
    for (reply, status, reason) in [("STOP", "unsubscribed", Some("stop")), ("start", "active", None)] {
        let url = format!("{public}/v1/webhooks/twilio/{app_id}/inbound");
        let params = [
            ("MessageSid", "SMinbound1"),
            ("AccountSid", credentials::TWILIO_ACCOUNT_SID),
            ("From", NEW_YORK),
            ("To", credentials::TWILIO_FROM),
            ("Body", reply),
        ];
        let (code, twiml) = demo.twilio_callback(&url, credentials::TWILIO_AUTH_TOKEN, &params).await?;
        ensure!(code == 200 && twiml == "<Response></Response>", "inbound {reply} answered {code}: {twiml}");
        let (_, _, view) = demo.get(&format!("/v1/subscriptions/{}", subs[0])).await?;
        ensure!(
            view["status"] == status && view["unsubscribed_reason"].as_str() == reason,
            "after {reply}: {view}"
        );
        ok(format!(
            "{reply:?}: empty TwiML; the subscription is {status}{}",
            reason.map(|r| format!(", unsubscribed_reason {r}")).unwrap_or_default()
        ));
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let api_url = std::env::var("API_URL").unwrap_or_else(|_| "http://127.0.0.1:3000".into());
    let (Ok(table), Ok(standin_port)) = (std::env::var("TABLE_NAME"), std::env::var("STANDIN_PORT")) else {
        eprintln!("retarget-demo: TABLE_NAME and STANDIN_PORT are required (make run sets them)");
        return ExitCode::from(2);
    };
    let standin = match StandIn::new(Options::default()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("retarget-demo: the provider stand-ins: {e:#}");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(format!("127.0.0.1:{standin_port}")).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("retarget-demo: cannot bind the provider stand-in on {standin_port}: {e}");
            return ExitCode::from(2);
        }
    };
    tokio::spawn(standin.clone().serve(listener));
    let sdk = aws::load().await;
    let mut demo = Demo {
        api_url: api_url.trim_end_matches('/').to_owned(),
        api_key: String::new(),
        // Tracked links answer 302: the demo looks at the redirect rather than follow it offline.
        http: match reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build() {
            Ok(http) => http,
            Err(e) => {
                eprintln!("retarget-demo: HTTP client: {e}");
                return ExitCode::from(2);
            }
        },
        store: Store::new(aws::dynamodb(&sdk), table, Arc::new(SystemClock)),
        standin,
        step: 0,
    };
    println!("retarget demo against {} (provider stand-ins on 127.0.0.1:{standin_port})", demo.api_url);
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

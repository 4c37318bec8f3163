//! `retarget-bench`: figures, not assertions. Run through `scripts/bench-audience.sh`, which
//! starts DynamoDB Local and runs seeding and measuring as separate processes, so the peak RSS
//! reported is that of the process computing the audience alone.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use retarget_shared::audience::{AudienceSpec, Cursor, Predicate, count, page};
use retarget_shared::domain::{AppId, Channel, EventKind, ExternalUserId, MessageId, Plan, SubscriptionId};
use retarget_shared::store::{Contents, Interaction, Message, NewApp, Subscription, SubscriptionStatus};
use retarget_shared::{Store, SystemClock, aws, resources};
use serde_json::json;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Seeds a push message with N recipients: all sent, 80 % delivered, 10 % clicked; half of
    /// them linked to an SMS subscription of the same person.
    SeedAudience {
        #[arg(long)]
        recipients: usize,
    },
    /// Counts and exports an audience, printing times and this process's peak RSS.
    Audience {
        #[arg(long)]
        app_id: AppId,
        #[arg(long)]
        message_id: MessageId,
        #[arg(long, default_value = "not_clicked")]
        action: String,
        #[arg(long)]
        channel: Option<Channel>,
        #[arg(long, default_value_t = 1000)]
        page_size: usize,
    },
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let table = std::env::var("TABLE_NAME").context("TABLE_NAME")?;
    let sdk = aws::load().await;
    let dynamodb = aws::dynamodb(&sdk);
    let store = Store::new(dynamodb.clone(), table.clone(), Arc::new(SystemClock));
    match cli.command {
        Command::SeedAudience { recipients } => {
            if dynamodb.describe_table().table_name(&table).send().await.is_err() {
                resources::create_table(&dynamodb, &table).await?;
            }
            let started = Instant::now();
            let app = store
                .create_app(NewApp {
                    name: "bench".into(),
                    plan: Plan::Pro,
                    twilio: None,
                    fcm: None,
                    apns: None,
                })
                .await?;
            let now = store.clock().now();
            let contents = Contents { title: None, body: "bench".into(), url: None };
            let mut message = Message::new(app.app_id, Channel::Push, contents, now);
            message.retargetable = true;
            message.recipients = recipients as u64;
            store.create_message(&message).await?;
            for chunk_start in (0..recipients).step_by(5000) {
                let chunk_end = (chunk_start + 5000).min(recipients);
                let mut subs = Vec::new();
                let mut events = Vec::new();
                for i in chunk_start..chunk_end {
                    let user = ExternalUserId::parse(&format!("person-{i}")).ok();
                    let push =
                        subscription(app.app_id, Channel::Push, format!("token-{i}"), user.clone(), now);
                    if i % 2 == 0 {
                        subs.push(subscription(
                            app.app_id,
                            Channel::Sms,
                            format!("+1{:010}", 2_000_000_000 + i),
                            user.clone(),
                            now,
                        ));
                    }
                    let mut kinds = vec![EventKind::Sent];
                    if i % 10 < 8 {
                        kinds.push(EventKind::Delivered);
                    }
                    if i % 10 == 0 {
                        kinds.push(EventKind::Clicked);
                    }
                    for kind in kinds {
                        events.push(Interaction {
                            subscription_id: push.subscription_id,
                            kind,
                            external_user_id: user.clone(),
                            event_id: None,
                            occurred_at: now,
                        });
                    }
                    subs.push(push);
                }
                store.bulk_load_subscriptions(&subs).await?;
                for batch in events.chunks(1000) {
                    store.record_interactions(&message.scope(), batch).await?;
                }
                eprintln!("seeded {chunk_end}/{recipients} ({:.0} s)", started.elapsed().as_secs_f64());
            }
            let [writes, written, gets, retries] = store.stats().snapshot();
            println!(
                "{}",
                json!({"app_id": app.app_id, "message_id": message.message_id, "recipients": recipients,
                    "seed_seconds": started.elapsed().as_secs_f64(), "batch_writes": writes, "items_written": written,
                    "batch_gets": gets, "unprocessed_retries": retries})
            );
        }
        Command::Audience { app_id, message_id, action, channel, page_size } => {
            let source = store.get_message(app_id, message_id).await?.context("no such message")?;
            let predicate = Predicate::action(&action, source.channel)?;
            let spec = AudienceSpec { target: channel.unwrap_or(source.channel), source, predicate };
            let rss_before = peak_rss_mib();
            let started = Instant::now();
            let counts = count(&store, spec.clone()).await?;
            let count_seconds = started.elapsed().as_secs_f64();
            let started = Instant::now();
            let mut cursor: Option<Cursor> = None;
            let (mut exported, mut pages) = (0usize, 0usize);
            loop {
                let p = page(&store, spec.clone(), cursor, page_size).await?;
                exported += p.members.len();
                pages += 1;
                match p.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
            println!(
                "{}",
                json!({"action": action, "target": spec.target, "count": counts.count, "unreachable": counts.unreachable,
                    "count_seconds": count_seconds, "exported": exported, "pages": pages,
                    "export_seconds": started.elapsed().as_secs_f64(),
                    "peak_rss_mib_before": rss_before, "peak_rss_mib": peak_rss_mib()})
            );
        }
    }
    Ok(())
}

fn subscription(
    app_id: AppId,
    channel: Channel,
    address: String,
    external_user_id: Option<ExternalUserId>,
    now: chrono::DateTime<chrono::Utc>,
) -> Subscription {
    let (platform, token, phone_number) = match channel {
        Channel::Push => (Some(retarget_shared::domain::Platform::Android), Some(address), None),
        Channel::Sms => (None, None, retarget_shared::domain::PhoneNumber::parse(&address).ok()),
    };
    Subscription {
        subscription_id: SubscriptionId::at(now),
        app_id,
        channel,
        platform,
        token,
        phone_number,
        external_user_id,
        status: SubscriptionStatus::Active,
        created_at: now,
        updated_at: now,
    }
}

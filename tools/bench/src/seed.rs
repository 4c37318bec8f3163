//! Seeding through the store's own write paths (a separate process from any measurement).

use std::time::Instant;

use futures::{StreamExt, TryStreamExt, stream};
use retarget_shared::Store;
use retarget_shared::adapters::store::Interaction;
use retarget_shared::domain::{
    Address, AppId, Channel, Contents, Credentials, EmailAddress, EventKind, ExternalUserId, Message, NewApp,
    PhoneNumber, Plan, Platform, SesConfig, Subscription,
};
use serde_json::json;

/// Subscriptions seeded per round.
const CHUNK: usize = 5000;

pub async fn app(store: &Store) -> anyhow::Result<retarget_shared::domain::App> {
    let new = NewApp { name: "bench".into(), plan: Plan::Pro, credentials: Default::default() };
    Ok(store.create_app(new).await?.app)
}

/// A retargetable `channel` message of `app`, created now.
pub async fn message(
    store: &Store,
    app_id: AppId,
    recipients: usize,
    channel: Channel,
) -> anyhow::Result<Message> {
    let now = store.clock().now();
    let contents = Contents { title: Some("bench".into()), body: "bench".into(), url: None, html: None };
    let mut message = Message::new(app_id, channel, contents, now);
    message.retargetable = true;
    message.recipients = recipients as u64;
    store.create_message(&message).await?;
    Ok(message)
}

/// The kinds person `i` has: all sent, 80 % delivered, 10 % clicked.
pub fn kinds_of(i: usize) -> Vec<EventKind> {
    let mut kinds = vec![EventKind::Sent];
    if i % 10 < 8 {
        kinds.push(EventKind::Delivered);
    }
    if i.is_multiple_of(10) {
        kinds.push(EventKind::Clicked);
    }
    kinds
}

/// Person `i`'s push subscription, and for even `i` an SMS subscription of the same person.
pub fn person(
    app_id: AppId,
    i: usize,
    now: chrono::DateTime<chrono::Utc>,
) -> (Subscription, Option<Subscription>) {
    let user = ExternalUserId::parse(&format!("person-{i}")).ok();
    let token = Address::Push { platform: Platform::Android, token: format!("token-{i}") };
    let push = Subscription::new(app_id, token, user.clone(), now);
    let phone = PhoneNumber::parse(&format!("+1{:010}", 2_000_000_000 + i)).ok();
    let sms = phone
        .filter(|_| i.is_multiple_of(2))
        .map(|phone_number| Subscription::new(app_id, Address::Sms { phone_number }, user, now));
    (push, sms)
}

/// Person `i`'s email subscription (the email bench's audience: no second channel).
pub fn email_person(app_id: AppId, i: usize, now: chrono::DateTime<chrono::Utc>) -> Subscription {
    let user = ExternalUserId::parse(&format!("person-{i}")).ok();
    let email = EmailAddress::parse(&format!("person-{i}@bench.example.com"));
    let address = match email {
        Ok(email) => Address::Email { email },
        Err(_) => Address::Push { platform: Platform::Android, token: format!("token-{i}") },
    };
    Subscription::new(app_id, address, user, now)
}

/// Seeds a `channel` message (push or email) with `recipients` recipients: all sent, 80 %
/// delivered, 10 % clicked; for push, half of them linked to an SMS subscription of the same
/// person; for email, an app sending through SES. Prints one JSON line.
pub async fn audience(store: &Store, recipients: usize, channel: Channel) -> anyhow::Result<()> {
    let started = Instant::now();
    let app = match channel {
        Channel::Email => {
            let ses = SesConfig::new("Bench <bench@bench.example.com>", Some("bench"))?;
            let credentials = Credentials { ses: Some(ses), ..Default::default() };
            let new = NewApp { name: "bench".into(), plan: Plan::Pro, credentials };
            store.create_app(new).await?.app
        }
        _ => app(store).await?,
    };
    let message = message(store, app.app_id, recipients, channel).await?;
    let now = store.clock().now();
    for chunk_start in (0..recipients).step_by(CHUNK) {
        let chunk_end = (chunk_start + CHUNK).min(recipients);
        let mut subs = Vec::new();
        let mut events = Vec::new();
        for i in chunk_start..chunk_end {
            let (push, sms) = match channel {
                Channel::Email => (email_person(app.app_id, i, now), None),
                _ => person(app.app_id, i, now),
            };
            for kind in kinds_of(i) {
                events.push(Interaction {
                    subscription_id: push.subscription_id,
                    kind,
                    external_user_id: push.external_user_id.clone(),
                    event_id: None,
                    occurred_at: now,
                });
            }
            subs.push(push);
            subs.extend(sms);
        }
        // Interaction items do not depend on the subscription items: both go at once.
        let scope = message.scope();
        let interactions = stream::iter(events.chunks(1000))
            .map(|batch| store.bulk_load_interactions(&scope, batch))
            .buffer_unordered(2)
            .try_collect::<Vec<_>>();
        tokio::try_join!(store.bulk_load_subscriptions(&subs), interactions)?;
        if chunk_end.is_multiple_of(100_000) || chunk_end == recipients {
            eprintln!("seeded {chunk_end}/{recipients} ({:.0} s)", started.elapsed().as_secs_f64());
        }
    }
    let [writes, written, gets, retries] = store.stats().snapshot();
    println!(
        "{}",
        json!({"bench": "seed", "app_id": app.app_id, "message_id": message.message_id, "recipients": recipients,
            "seed_seconds": started.elapsed().as_secs_f64(), "batch_writes": writes, "items_written": written,
            "batch_gets": gets, "unprocessed_retries": retries})
    );
    Ok(())
}

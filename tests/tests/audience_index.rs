//! Audiences without a lookup per member (issue 19): what a same-channel audience reads (the
//! app's inactive set, once, beside the interactions; never a subscription per member), what a
//! cross-channel one reads (the people replicas of the source channel, streamed beside the
//! interactions: never a person per member), what a page sees of a subscription that changes
//! while the audience is read, and that the derived items — the inactive set, the person items
//! and their replicas — agree with the subscriptions after concurrent changes,
//! through lost write answers, and after the migration of data stored before they existed.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_dynamodb::types::AttributeValue;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use retarget_shared::Store;
use retarget_shared::domain::{
    Address, AppId, Channel, EventKind, ExternalUserId, Message, Plan, Platform, Predicate, Subscription,
    SubscriptionId, SubscriptionStatus, UnsubscribeReason,
};
use retarget_shared::keys;
use retarget_shared::services::audience::{AudienceSpec, Counts, Cursor, count, page};
use retarget_tests::faults::{FaultProxy, FaultRates, Service, test_retry};
use retarget_tests::{TestApp, World};

fn user(i: usize) -> ExternalUserId {
    ExternalUserId::parse(&format!("person-{i}")).expect("a user id")
}

fn push(i: usize) -> Address {
    Address::Push { platform: Platform::Android, token: format!("token-{i}") }
}

fn sms(i: usize) -> Address {
    Address::Sms {
        phone_number: retarget_shared::domain::PhoneNumber::parse(&format!("+1555020{i:04}")).expect("E.164"),
    }
}

async fn upsert(store: &Store, app: AppId, address: Address, user: Option<ExternalUserId>) -> Subscription {
    store.upsert_subscription(app, address, user, None).await.expect("upsert").0
}

/// A push message sent to `subs` (its `sent` interactions recorded with each one's user, as the
/// sender records them).
async fn sent_to(world: &World, app: &TestApp, subs: &[Subscription]) -> Message {
    let message = world.message(app, Channel::Push).await;
    let users: Vec<Option<String>> =
        subs.iter().map(|s| s.external_user_id.as_ref().map(|u| u.as_str().to_owned())).collect();
    let events: Vec<(SubscriptionId, EventKind, Option<&str>)> =
        subs.iter().zip(&users).map(|(s, u)| (s.subscription_id, EventKind::Sent, u.as_deref())).collect();
    world.record(&message, &events).await;
    message
}

fn spec(message: &Message, target: Channel) -> AudienceSpec {
    AudienceSpec {
        source: message.clone(),
        predicate: Predicate::action("sent", message.channel).expect("a predicate"),
        target,
    }
}

/// BatchGetItem requests the store has made so far.
fn batch_gets(store: &Store) -> u64 {
    store.stats().snapshot()[2]
}

#[tokio::test]
async fn a_same_channel_audience_reads_no_subscription_per_member() {
    let (world, app) = World::with_app(Plan::Pro).await;
    let subs = world.bulk_subscriptions(&app, 250, push).await;
    let message = sent_to(&world, &app, &subs).await;
    let gone: Vec<SubscriptionId> = subs.iter().step_by(25).map(|s| s.subscription_id).collect();
    for id in &gone {
        world.store.unsubscribe(app.app.app_id, *id, UnsubscribeReason::Api).await.expect("unsubscribe");
    }

    let before = batch_gets(&world.store);
    let counts = count(&world.store, spec(&message, Channel::Push)).await.expect("count");
    assert_eq!(counts, Counts { count: 240, unreachable: 0 });
    assert_eq!(batch_gets(&world.store) - before, 0, "no subscription fetched per member");

    // The export: every active one once, none of the unsubscribed.
    let mut exported = Vec::new();
    let mut cursor = None;
    loop {
        let p = page(&world.store, spec(&message, Channel::Push), cursor, 70).await.expect("page");
        exported.extend(p.members.iter().map(|m| m.subscription_id));
        match p.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let mut expected: Vec<SubscriptionId> =
        subs.iter().map(|s| s.subscription_id).filter(|id| !gone.contains(id)).collect();
    expected.sort();
    assert_eq!(exported, expected);
    assert_eq!(batch_gets(&world.store) - before, 0);
}

#[tokio::test]
async fn a_cross_channel_audience_reads_no_person_per_member() {
    let (world, app) = World::with_app(Plan::Pro).await;
    let id = app.app.app_id;
    let mut pushes = Vec::new();
    let mut texts = Vec::new();
    for i in 0..250 {
        pushes.push(upsert(&world.store, id, push(i), Some(user(i))).await);
        // Every 50th person has no phone; the others one, and person 7 two.
        if i % 50 != 49 {
            texts.push(upsert(&world.store, id, sms(i), Some(user(i))).await);
        }
    }
    texts.push(upsert(&world.store, id, sms(1000 + 7), Some(user(7))).await);
    // Person 3's phone unsubscribed: unreachable on SMS.
    let phone_of_3 = texts.iter().find(|s| s.external_user_id == Some(user(3))).expect("a phone");
    world
        .store
        .unsubscribe(id, phone_of_3.subscription_id, UnsubscribeReason::Stop)
        .await
        .expect("unsubscribe");
    let message = sent_to(&world, &app, &pushes).await;

    let before = batch_gets(&world.store);
    let counts = count(&world.store, spec(&message, Channel::Sms)).await.expect("count");
    // 245 people with a phone, one of them unsubscribed, person 7 with two: 244 + 1.
    assert_eq!(counts, Counts { count: 245, unreachable: 6 });
    assert_eq!(batch_gets(&world.store) - before, 0, "no person fetched per member: their replicas stream");
    // And every page of it, in pages of 7, is the same audience, each member once.
    let mut exported = Vec::new();
    let mut cursor = None;
    loop {
        let p = page(&world.store, spec(&message, Channel::Sms), cursor, 7).await.expect("page");
        exported.extend(p.members.into_iter().map(|m| m.subscription_id));
        match p.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let distinct: BTreeSet<SubscriptionId> = exported.iter().copied().collect();
    assert_eq!((exported.len(), distinct.len()), (245, 245));
    assert_eq!(batch_gets(&world.store) - before, 0);
}

#[tokio::test]
async fn a_page_read_after_a_subscription_changes_sees_the_change() {
    let (world, app) = World::with_app(Plan::Pro).await;
    let id = app.app.app_id;
    let subs = world.bulk_subscriptions(&app, 200, push).await;
    let mut ids: Vec<SubscriptionId> = subs.iter().map(|s| s.subscription_id).collect();
    ids.sort();
    let message = sent_to(&world, &app, &subs).await;
    // Opted out before the export began; opts in again while it runs.
    world.store.unsubscribe(id, ids[120], UnsubscribeReason::Stop).await.expect("unsubscribe");

    let first = page(&world.store, spec(&message, Channel::Push), None, 50).await.expect("page 1");
    assert_eq!(first.members.len(), 50);
    // While the export is between pages: one further on unsubscribes, one comes back.
    world.store.unsubscribe(id, ids[170], UnsubscribeReason::Api).await.expect("unsubscribe");
    world.store.resubscribe_opted_out(id, ids[120]).await.expect("resubscribe").expect("was opted out");
    // And one already exported unsubscribes: it stays exported (its page was read before).
    world.store.unsubscribe(id, ids[10], UnsubscribeReason::Api).await.expect("unsubscribe");

    let mut exported: Vec<SubscriptionId> = first.members.iter().map(|m| m.subscription_id).collect();
    let mut cursor: Option<Cursor> = first.next_cursor;
    while let Some(c) = cursor {
        let p = page(&world.store, spec(&message, Channel::Push), Some(c), 50).await.expect("page");
        exported.extend(p.members.iter().map(|m| m.subscription_id));
        cursor = p.next_cursor;
    }
    let expected: Vec<SubscriptionId> = ids.iter().copied().filter(|s| *s != ids[170]).collect();
    assert_eq!(exported, expected, "each page as the subscriptions stood when it was read");
    let distinct: BTreeSet<_> = exported.iter().collect();
    assert_eq!(distinct.len(), exported.len(), "each member once");
}

/// What the derived items should be for the app's subscriptions, and what they are.
async fn index_of(world: &World, app: AppId) -> (Index, Index) {
    let mut expected = Index::default();
    let mut actual = Index::default();
    let mut pages = world
        .dynamodb
        .scan()
        .table_name(&world.table)
        .consistent_read(true)
        .filter_expression("begins_with(pk, :app)")
        .expression_attribute_values(":app", AttributeValue::S(format!("{}#", keys::app(app))))
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for item in page.expect("scan").items.unwrap_or_default() {
            let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned().unwrap_or_default();
            let set = |name: &str| -> BTreeSet<String> {
                item.get(name)
                    .and_then(|v| v.as_ss().ok())
                    .map(|v| v.iter().cloned().collect())
                    .unwrap_or_default()
            };
            let (pk, sk) = (text(keys::PK), text(keys::SK));
            if sk == keys::SK_SUB {
                let entry = format!("{}#{}", text("channel"), text("subscription_id"));
                let active = text("status") == SubscriptionStatus::Active.as_str();
                if !active {
                    expected.inactive.insert(entry.clone());
                }
                let user = text("external_user_id");
                if !user.is_empty() {
                    let person = expected.people.entry(user).or_default();
                    person.0.insert(entry.clone());
                    if active {
                        person.1.insert(entry);
                    }
                }
            } else if sk == keys::SK_PERSON {
                let user = pk.rsplit_once("#EXT#").map(|(_, u)| u.to_owned()).unwrap_or_default();
                let (subs, active) = (set(keys::PERSON_SUBS), set(keys::PERSON_ACTIVE));
                if !subs.is_empty() || !active.is_empty() {
                    actual.people.insert(user, (subs, active));
                }
            } else if let Some((_, channel)) = pk.rsplit_once("#OFF#") {
                actual.inactive.insert(format!("{channel}#{sk}"));
            } else if let Some((_, shard)) = pk.rsplit_once("#RPL#") {
                let channel = shard.split('#').next().unwrap_or_default();
                let entries = |name: &str| -> BTreeSet<String> {
                    item.get(name)
                        .and_then(|v| v.as_bs().ok())
                        .map(|v| {
                            v.iter()
                                .filter_map(|e| keys::parse_replica_entry(e.as_ref()))
                                .map(|(c, id)| format!("{c}#{id}"))
                                .collect()
                        })
                        .unwrap_or_default()
                };
                let replica =
                    (text(keys::REPLICA_USER), entries(keys::REPLICA_SUBS), entries(keys::REPLICA_ACTIVE));
                actual.replicas.insert(format!("{channel}#{sk}"), replica);
            }
        }
    }
    // Every subscription of a person holds a replica of that person.
    for (user, (subs, active)) in &expected.people {
        for entry in subs {
            expected.replicas.insert(entry.clone(), (user.clone(), subs.clone(), active.clone()));
        }
    }
    (expected, actual)
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Index {
    /// `{channel}#{sub}` of every subscription not active.
    inactive: BTreeSet<String>,
    /// Per user: every subscription's entry, and the active ones'.
    people: BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)>,
    /// Per subscription with a person (`{channel}#{sub}`): its replica's user and sets.
    replicas: BTreeMap<String, (String, BTreeSet<String>, BTreeSet<String>)>,
}

/// Random changes of a few subscriptions (three people, two addresses on each of two channels),
/// from `tasks` tasks at once: upserts with another person or none, unsubscribes, opt-outs and
/// opt-ins again. With `faulty`, a call may fail (its retries exhausted: the API answers 500),
/// and how many did is returned; every write is one item or one transaction, so a failed
/// call leaves nothing half done.
async fn churn(store: &Store, app: AppId, tasks: u64, rounds: usize, seed: u64, faulty: bool) -> u64 {
    let addresses: Vec<Address> = (0..2).flat_map(|i| [push(i), sms(i)]).collect();
    let addresses = Arc::new(addresses);
    let failures = Arc::new(AtomicU64::new(0));
    let mut running = Vec::new();
    for t in 0..tasks {
        let (store, addresses, failures) = (store.clone(), addresses.clone(), failures.clone());
        running.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed + t);
            for _ in 0..rounds {
                let address = addresses[rng.random_range(0..addresses.len())].clone();
                let who = match rng.random_range(0..4) {
                    0 => None,
                    n => Some(user(n)),
                };
                let mut failed = 0;
                let sub = match store.upsert_subscription(app, address, who, None).await {
                    Ok((sub, _)) => sub,
                    Err(_) if faulty => {
                        failures.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    Err(e) => panic!("upsert: {e:?}"),
                };
                match rng.random_range(0..3) {
                    0 => {
                        let reason = if rng.random_bool(0.5) {
                            UnsubscribeReason::Stop
                        } else {
                            UnsubscribeReason::Api
                        };
                        if let Err(e) = store.unsubscribe(app, sub.subscription_id, reason).await {
                            assert!(faulty, "unsubscribe: {e:?}");
                            failed += 1;
                        }
                    }
                    1 => {
                        if let Err(e) = store.resubscribe_opted_out(app, sub.subscription_id).await {
                            assert!(faulty, "resubscribe: {e:?}");
                            failed += 1;
                        }
                    }
                    _ => {}
                }
                failures.fetch_add(failed, Ordering::Relaxed);
            }
        }));
    }
    for task in running {
        task.await.expect("a churning task");
    }
    failures.load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_derived_items_agree_with_the_subscriptions_after_concurrent_changes() {
    let (world, app) = World::with_app(Plan::Pro).await;
    churn(&world.store, app.app.app_id, 8, 25, 19, false).await;
    let (expected, actual) = index_of(&world, app.app.app_id).await;
    assert!(!expected.people.is_empty());
    assert_eq!(actual, expected);
}

/// The same through a DynamoDB that throttles and loses the answers of writes it applied (the
/// SDK retries them: a transaction applied twice, or a retry meeting its own condition).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_derived_items_agree_through_lost_answers_and_throttling() {
    let (world, app) = World::with_app(Plan::Pro).await;
    let upstream = std::env::var("AWS_ENDPOINT_URL_DYNAMODB").expect("set by the services");
    let rates = FaultRates { throttle: 0.05, dynamo_lost_answer: 0.2, ..FaultRates::default() };
    let proxy = FaultProxy::start(Service::DynamoDb, &upstream, rates, 23).await;
    let sdk = retarget_tests::sdk().await;
    let client = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(sdk)
            .endpoint_url(&proxy.url)
            .retry_config(test_retry())
            .build(),
    );
    let faulty = Store::new(client, world.table.clone(), world.clock.clone());
    let failed = churn(&faulty, app.app.app_id, 6, 20, 29, true).await;
    let lost = proxy.counts.dynamo_lost_answers.load(Ordering::Relaxed);
    println!("{{\"lost_answers\": {lost}, \"calls_failed\": {failed}, \"faults\": {}}}", proxy.counts.json());
    assert!(lost > 0, "no answer was lost: {}", proxy.counts.json());
    let (expected, actual) = index_of(&world, app.app.app_id).await;
    assert_eq!(actual, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_migration_indexes_old_subscriptions_while_they_change() {
    let (world, app) = World::with_app(Plan::Pro).await;
    let id = app.app.app_id;
    // Subscriptions as an earlier version stored them: the derived items deleted.
    let mut subs = Vec::new();
    for i in 0..40 {
        let who = (i % 5 != 0).then(|| user(i % 7));
        subs.push(upsert(&world.store, id, if i % 2 == 0 { push(i) } else { sms(i) }, who).await);
    }
    for s in subs.iter().step_by(3) {
        world.store.unsubscribe(id, s.subscription_id, UnsubscribeReason::Api).await.expect("unsubscribe");
    }
    let (expected, _) = index_of(&world, id).await;
    delete_derived(&world, id).await;
    let (_, wiped) = index_of(&world, id).await;
    assert_eq!(wiped, Index::default());

    // The migration, with changes racing it.
    let (report, _) = tokio::join!(
        async { world.store.migrate_audience_index().await.expect("migration") },
        churn(&world.store, id, 4, 15, 31, false)
    );
    assert!(report.subscriptions >= 40, "{report:?}");
    let (expected_now, actual) = index_of(&world, id).await;
    assert_eq!(actual, expected_now);
    assert_ne!(expected_now, Index::default());
    // Run again: nothing changes.
    world.store.migrate_audience_index().await.expect("migration again");
    assert_eq!(index_of(&world, id).await.1, expected_now);
    let _ = expected;
}

/// Deletes every person item, people replica and inactive-set item of the app.
async fn delete_derived(world: &World, app: AppId) {
    let mut pages = world
        .dynamodb
        .scan()
        .table_name(&world.table)
        .consistent_read(true)
        .filter_expression("begins_with(pk, :people) OR begins_with(pk, :off) OR begins_with(pk, :replicas)")
        .expression_attribute_values(":people", AttributeValue::S(format!("{}#EXT#", keys::app(app))))
        .expression_attribute_values(":off", AttributeValue::S(format!("{}#OFF#", keys::app(app))))
        .expression_attribute_values(":replicas", AttributeValue::S(format!("{}#RPL#", keys::app(app))))
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for item in page.expect("scan").items.unwrap_or_default() {
            world
                .dynamodb
                .delete_item()
                .table_name(&world.table)
                .key(keys::PK, item[keys::PK].clone())
                .key(keys::SK, item[keys::SK].clone())
                .send()
                .await
                .expect("delete");
        }
    }
}

/// Pages smaller than a run of unsubscribed subscriptions: the inactive set is read in pages
/// sized for the audience page, and a page reads on through as many of them as it needs.
#[tokio::test]
async fn small_pages_read_on_through_a_long_run_of_unsubscribed() {
    let (world, app) = World::with_app(Plan::Pro).await;
    let subs = world.bulk_subscriptions(&app, 60, push).await;
    let mut ids: Vec<SubscriptionId> = subs.iter().map(|s| s.subscription_id).collect();
    ids.sort();
    let message = sent_to(&world, &app, &subs).await;
    // 30 in a row, from the 11th.
    for id in &ids[10..40] {
        world.store.unsubscribe(app.app.app_id, *id, UnsubscribeReason::Api).await.expect("unsubscribe");
    }
    let mut exported = Vec::new();
    let mut cursor = None;
    loop {
        let p = page(&world.store, spec(&message, Channel::Push), cursor, 4).await.expect("page");
        exported.extend(p.members.iter().map(|m| m.subscription_id));
        match p.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let expected: Vec<SubscriptionId> = ids[..10].iter().chain(&ids[40..]).copied().collect();
    assert_eq!(exported, expected);
    let counts = count(&world.store, spec(&message, Channel::Push)).await.expect("count");
    assert_eq!(counts.count, 30);
}

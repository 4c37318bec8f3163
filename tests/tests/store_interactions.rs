//! The interaction store against DynamoDB Local: idempotent, order-independent writes,
//! expiry on read, and the shard fan-in.

use std::collections::BTreeSet;

use chrono::Duration;
use rand::seq::SliceRandom;
use retarget_shared::adapters::store::{Interaction, InteractionRow};
use retarget_shared::domain::{
    AppId, EventId, EventKind, ExternalUserId, MessageId, MessageScope, SubscriptionId,
};
use retarget_shared::{Clock, keys};
use retarget_tests::World;

fn scope(world: &World) -> MessageScope {
    MessageScope {
        app_id: AppId::new(),
        message_id: MessageId::at(world.clock.now()),
        expires_at: (world.clock.now() + Duration::days(keys::RETENTION_DAYS)).timestamp(),
        shards: keys::DEFAULT_SHARDS,
    }
}

fn event(sub: SubscriptionId, kind: EventKind) -> Interaction {
    Interaction {
        subscription_id: sub,
        kind,
        external_user_id: Some(ExternalUserId::parse(&format!("user-{sub}")).unwrap()),
        event_id: Some(EventId::parse(&format!("{sub}-{kind}")).unwrap()),
        occurred_at: retarget_tests::epoch(),
    }
}

/// `n` new subscriptions, and for each an event of both `kinds`.
fn each_twice(n: usize, kinds: [EventKind; 2]) -> (Vec<SubscriptionId>, Vec<Interaction>) {
    let subs: Vec<_> = (0..n).map(|_| SubscriptionId::new()).collect();
    let events = subs.iter().flat_map(|s| kinds.map(|kind| event(*s, kind))).collect();
    (subs, events)
}

/// A fresh world and message scope, with `sent` recorded for `n` new subscriptions in one call.
async fn with_sent(n: usize) -> (World, MessageScope) {
    let world = World::new().await;
    let scope = scope(&world);
    let events: Vec<_> = (0..n).map(|_| event(SubscriptionId::new(), EventKind::Sent)).collect();
    world.store.record_interactions(&scope, &events).await.unwrap();
    (world, scope)
}

async fn read_all(world: &World, scope: &MessageScope, after: Option<SubscriptionId>) -> Vec<InteractionRow> {
    let mut stream = world.store.interactions(scope, after);
    let mut rows = Vec::new();
    while let Some(row) = stream.next().await {
        rows.push(row.expect("read interactions"));
    }
    rows
}

fn as_set(rows: &[InteractionRow]) -> BTreeSet<(SubscriptionId, EventKind)> {
    rows.iter().map(|r| (r.subscription_id, r.kind)).collect()
}

#[tokio::test]
async fn a_replay_changes_nothing() {
    let world = World::new().await;
    let scope = scope(&world);
    let (_, events) = each_twice(60, [EventKind::Sent, EventKind::Clicked]);

    let first = world.store.record_interactions(&scope, &events).await.unwrap();
    assert_eq!((first.accepted(), first.duplicates()), (120, 0));
    world.settle().await;
    let items_after_first = world.scan_all().await;
    let stats_after_first = world.store.message_stats(&scope).await.unwrap();

    let replay = world.store.record_interactions(&scope, &events).await.unwrap();
    assert_eq!((replay.accepted(), replay.duplicates()), (0, 120));
    assert_eq!(world.scan_all().await, items_after_first, "a replay rewrote items");
    world.settle().await;
    assert_eq!(world.scan_all().await, items_after_first, "a replay changed the counters");
    assert_eq!(world.store.message_stats(&scope).await.unwrap(), stats_after_first);
    assert_eq!(stats_after_first[&EventKind::Sent], 60);
    assert_eq!(stats_after_first[&EventKind::Clicked], 60);
    assert_eq!(stats_after_first[&EventKind::Delivered], 0);
}

#[tokio::test]
async fn duplicates_within_one_call_count_once() {
    let world = World::new().await;
    let scope = scope(&world);
    let sub = SubscriptionId::new();
    let events =
        vec![event(sub, EventKind::Delivered), event(sub, EventKind::Delivered), event(sub, EventKind::Sent)];
    let outcome = world.store.record_interactions(&scope, &events).await.unwrap();
    assert_eq!(outcome.newly_recorded, vec![true, false, true]);
    world.settle().await;
    assert_eq!(world.store.message_stats(&scope).await.unwrap()[&EventKind::Delivered], 1);
}

#[tokio::test]
async fn any_order_and_any_batching_gives_the_same_state() {
    let world = World::new().await;
    let subs: Vec<_> = (0..40).map(|_| SubscriptionId::new()).collect();
    let mut events: Vec<_> = subs
        .iter()
        .enumerate()
        .flat_map(|(i, s)| {
            let mut kinds = vec![EventKind::Sent];
            if i % 2 == 0 {
                kinds.push(EventKind::Delivered);
            }
            if i % 5 == 0 {
                kinds.push(EventKind::Clicked);
            }
            kinds.into_iter().map(|k| event(*s, k)).collect::<Vec<_>>()
        })
        .collect();
    // Every event delivered twice, as at-least-once delivery does.
    events.extend(events.clone());

    let in_order = scope(&world);
    world.store.record_interactions(&in_order, &events).await.unwrap();

    let shuffled = scope(&world);
    let mut rng = rand::rng();
    let mut mixed = events.clone();
    mixed.shuffle(&mut rng);
    for chunk in mixed.chunks(7) {
        world.store.record_interactions(&shuffled, chunk).await.unwrap();
    }

    let a = read_all(&world, &in_order, None).await;
    let b = read_all(&world, &shuffled, None).await;
    assert_eq!(a, b);
    assert_eq!(a.len(), 40 + 20 + 8);
    world.settle().await;
    assert_eq!(
        world.store.message_stats(&in_order).await.unwrap(),
        world.store.message_stats(&shuffled).await.unwrap()
    );
}

#[tokio::test]
async fn the_shard_fan_in_returns_every_item_once_in_order() {
    let world = World::new().await;
    let scope = scope(&world);
    let (subs, events) = each_twice(1500, [EventKind::Sent, EventKind::Delivered]);
    for chunk in events.chunks(1000) {
        world.store.record_interactions(&scope, chunk).await.unwrap();
    }

    let rows = read_all(&world, &scope, None).await;
    assert_eq!(rows.len(), 3000, "each item exactly once");
    assert_eq!(as_set(&rows).len(), 3000);
    let keys: Vec<_> = rows.iter().map(|r| (r.subscription_id, r.kind.code())).collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "merged stream is not in (subscription, kind) order");
    assert!(rows.iter().all(|r| r.external_user_id.is_some()));

    // The items really are spread over every shard's partition.
    let mut used_shards = BTreeSet::new();
    for item in world.scan_all().await {
        if let Some(pk) = item.get("pk").and_then(|v| v.as_s().ok())
            && pk.starts_with("MSG#")
        {
            used_shards.insert(pk.clone());
        }
    }
    assert_eq!(used_shards.len(), keys::DEFAULT_SHARDS as usize);

    // Resuming after any subscription returns exactly the rest.
    let mut sorted_subs = subs.clone();
    sorted_subs.sort();
    let cut = sorted_subs[700];
    let rest = read_all(&world, &scope, Some(cut)).await;
    assert_eq!(rest.len(), (1500 - 701) * 2);
    assert!(rest.iter().all(|r| r.subscription_id > cut));
}

#[tokio::test]
async fn expired_data_is_never_returned() {
    let world = World::new().await;
    let scope = scope(&world);
    let sub = SubscriptionId::new();
    world.store.record_interactions(&scope, &[event(sub, EventKind::Sent)]).await.unwrap();
    world.settle().await;

    // One second before expiry: still there.
    world.clock.advance(Duration::days(keys::RETENTION_DAYS) - Duration::seconds(1));
    assert_eq!(read_all(&world, &scope, None).await.len(), 1);
    assert_eq!(world.store.message_stats(&scope).await.unwrap()[&EventKind::Sent], 1);

    // At expires_at: gone, although DynamoDB Local never deletes anything.
    world.clock.advance(Duration::seconds(1));
    assert!(read_all(&world, &scope, None).await.is_empty());
    assert_eq!(world.store.message_stats(&scope).await.unwrap()[&EventKind::Sent], 0);
    assert!(!world.scan_all().await.is_empty(), "the item itself is still stored");
}

#[tokio::test]
async fn every_item_carries_the_ttl_attribute() {
    let (world, scope) = with_sent(30).await;
    world.settle().await;
    let items = world.scan_all().await;
    assert!(items.len() > 30, "interaction items plus a stats item");
    for item in items {
        let ttl = item.get(keys::EXPIRES_AT).and_then(|v| v.as_n().ok()).expect("expires_at is a number");
        assert_eq!(ttl.parse::<i64>().unwrap(), scope.expires_at);
    }
}

#[tokio::test]
async fn a_thousand_events_take_two_puts_each_and_ten_batch_reads() {
    let (world, _) = with_sent(1000).await;
    let [writes, written, gets, _retries] = world.store.stats().snapshot();
    let puts = world.store.stats().put_requests.load(std::sync::atomic::Ordering::Relaxed);
    // Each of these events has an event id: its claim is one more conditional put.
    assert_eq!(puts, 2 * 1000, "per new event: its event id's claim and its item, one PutItem each");
    assert_eq!((writes, written), (0, 0), "no blind batch write");
    assert_eq!(gets, 10, "100 keys per BatchGetItem");
}

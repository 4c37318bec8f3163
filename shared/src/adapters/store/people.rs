//! What audiences read instead of one lookup per member (keys.rs: "person", "people replica",
//! "inactive subscription"):
//!
//! - the **person item** of each external user id: string sets of the person's subscriptions
//!   (`subs`) and of the active ones (`active`), entries `{channel}#{sub}`, and a version `v`
//!   that every change of the sets bumps;
//! - its **replicas**: one item per subscription of the person, in partitions per app and
//!   channel sharded like the interactions, sorted by subscription id, holding the person's sets
//!   (binary entries of 17 bytes) and the external user id. A cross-channel audience reads the
//!   replicas of its source channel in the order of the source's interactions, merged with
//!   them, instead of an item per member: 4 KB of replicas serve about thirty members;
//! - the **inactive set** of each app and channel: one key-only item per unsubscribed
//!   subscription, in id order. A same-channel audience reads it once, alongside the
//!   interaction stream (which is in the same order), instead of fetching every candidate's
//!   subscription: unsubscribes are few.
//!
//! All change only inside the transaction that changes the subscription's status or person,
//! conditioned on the subscription's previous status and person (`subscriptions.rs`) and on
//! each person's version as read (the replicas are written from that state: a concurrent change
//! of the person fails the condition, and the caller reads again), so they always agree with the
//! subscriptions; [`Store::index_subscription`] builds them for data written before they existed
//! (`retarget-admin migrate audience-index`).

use std::collections::{HashMap, HashSet};

use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Delete, Put, TransactWriteItem, Update};
use futures::{Stream, TryStreamExt, stream};

use super::batch::{Item, key, s};
use super::sharded::{self, Sharded, ShardedStream};
use super::subscriptions::subscription_of;
use super::{Store, StoreError};
use crate::domain::{AppId, Channel, ExternalUserId, Subscription, SubscriptionId, SubscriptionStatus};
use crate::keys;

/// What [`Store::migrate_audience_index`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct MigrationReport {
    /// Subscriptions indexed.
    pub subscriptions: u64,
    /// Indexings tried again because the subscription changed meanwhile.
    pub retried: u64,
}

/// A person's subscriptions, from the person item.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Person {
    /// Every subscription of the person, any status: (channel, id, active).
    pub subscriptions: Vec<(Channel, SubscriptionId, bool)>,
}

impl Person {
    /// The person's active subscriptions on `channel`, in id order.
    pub fn active_on(&self, channel: Channel) -> Vec<SubscriptionId> {
        let mut ids: Vec<SubscriptionId> = self
            .subscriptions
            .iter()
            .filter(|(c, _, active)| *c == channel && *active)
            .map(|(_, id, _)| *id)
            .collect();
        ids.sort();
        ids
    }

    /// The person's subscriptions on `channel` (any status) with an id below `below`.
    pub fn earlier_on(&self, channel: Channel, below: SubscriptionId) -> Vec<SubscriptionId> {
        let mut ids: Vec<SubscriptionId> = self
            .subscriptions
            .iter()
            .filter(|(c, id, _)| *c == channel && *id < below)
            .map(|(_, id, _)| *id)
            .collect();
        ids.sort();
        ids
    }
}

/// A person-set entry: `{channel}#{sub}`.
fn entry(channel: Channel, sub: SubscriptionId) -> String {
    keys::person_sort(channel, sub)
}

fn parse_entry(entry: &str) -> Option<(Channel, SubscriptionId)> {
    let (channel, sub) = entry.split_once('#')?;
    Some((channel.parse().ok()?, SubscriptionId::parse(sub).ok()?))
}

fn string_set(item: &HashMap<String, AttributeValue>, name: &str) -> Vec<String> {
    match item.get(name) {
        Some(AttributeValue::Ss(values)) => values.clone(),
        _ => Vec::new(),
    }
}

/// A person item as read: the sets and the version the writes derived from it are conditioned on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PersonAsRead {
    pub person: Person,
    /// `None`: no item, or one written before versions.
    pub version: Option<u64>,
}

/// The people whose items a change of `before` into `after` writes, as read now (strongly
/// consistent): none when neither its person nor whether it is active changes.
pub(crate) async fn read_people(
    store: &Store,
    before: Option<&Subscription>,
    after: &Subscription,
) -> Result<HashMap<ExternalUserId, PersonAsRead>, StoreError> {
    let mut people = HashMap::new();
    if before
        .is_some_and(|b| b.external_user_id == after.external_user_id && b.is_active() == after.is_active())
    {
        return Ok(people);
    }
    for user in
        before.and_then(|b| b.external_user_id.as_ref()).into_iter().chain(after.external_user_id.as_ref())
    {
        if !people.contains_key(user) {
            people.insert(user.clone(), store.person_as_read(after.app_id, user).await?);
        }
    }
    Ok(people)
}

/// A transaction holds at most 100 items; the derived changes of one subscription need two per
/// subscription of its person, and a few more.
const MAX_PERSON_SUBSCRIPTIONS: usize = 90;

/// How a change of one subscription moves the derived items, as transaction items: from its
/// state `before` (`None`: it did not exist) to `after`, with its people (old and new) `as read`
/// ([`read_people`]). Every person write is conditioned on the version it was read with, so
/// the replicas, written from that state, can never miss a concurrent change of the person.
pub(crate) fn derived_changes(
    store: &Store,
    before: Option<&Subscription>,
    after: &Subscription,
    people: &HashMap<ExternalUserId, PersonAsRead>,
) -> Result<Vec<TransactWriteItem>, StoreError> {
    let (app, channel, id) = (after.app_id, after.channel, after.subscription_id);
    let was_active = before.map(Subscription::is_active);
    let mut items = Vec::new();
    // The inactive set.
    match (was_active, after.is_active()) {
        (Some(true) | None, false) => items.push(put_inactive(store, app, channel, id)?),
        (Some(false), true) => items.push(delete_inactive(store, app, channel, id)?),
        _ => {}
    }
    let unknown = PersonAsRead::default();
    let as_read = |user: &ExternalUserId| people.get(user).unwrap_or(&unknown);
    // The person items and their replicas.
    let old_user = before.and_then(|b| b.external_user_id.as_ref());
    let new_user = after.external_user_id.as_ref();
    // Each replica written once: two people read at different moments can both list one
    // subscription (it moved between the reads); one of those reads is then stale, its version
    // condition fails, and the caller reads again.
    let mut touched = HashSet::new();
    let mut change = |user: &ExternalUserId, add: &[Set], delete: &[Set], skip_own: bool| {
        if skip_own {
            touched.insert(id);
        }
        person_change(store, app, user, as_read(user), add, delete, (channel, id), &mut touched)
    };
    let own_sets: &[Set] = if after.is_active() { &[Set::Subs, Set::Active] } else { &[Set::Subs] };
    if old_user != new_user {
        if let Some(old) = old_user {
            items.extend(change(old, &[], &[Set::Subs, Set::Active], true)?);
        }
        match new_user {
            Some(new) => {
                items.extend(change(new, own_sets, &[], true)?);
                items.push(put_replica(store, after, &as_read(new).person)?);
            }
            None => items.push(delete_replica(store, app, channel, id)?),
        }
    } else if let Some(user) = new_user {
        match (was_active, after.is_active()) {
            (Some(true), false) => items.extend(change(user, &[], &[Set::Active], false)?),
            (Some(false), true) => items.extend(change(user, &[Set::Active], &[], false)?),
            (None, _) => {
                items.extend(change(user, own_sets, &[], true)?);
                items.push(put_replica(store, after, &as_read(user).person)?);
            }
            _ => {}
        }
    }
    Ok(items)
}

/// The two sets of a person (and of each of its replicas).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Set {
    /// Every subscription of the person.
    Subs,
    /// Its active ones.
    Active,
}

impl Set {
    fn person_attribute(self) -> &'static str {
        match self {
            Set::Subs => keys::PERSON_SUBS,
            Set::Active => keys::PERSON_ACTIVE,
        }
    }

    fn replica_attribute(self) -> &'static str {
        match self {
            Set::Subs => keys::REPLICA_SUBS,
            Set::Active => keys::REPLICA_ACTIVE,
        }
    }
}

/// Adds `entry` to the sets `add` of the person and takes it out of `delete` — on the person
/// item (conditioned on its version as read, which it bumps) and on the replica of every
/// subscription of the person as read but those already `touched` (the changed one's own when
/// it is put or deleted whole), which it adds to `touched`.
#[allow(clippy::too_many_arguments)]
fn person_change(
    store: &Store,
    app: AppId,
    user: &ExternalUserId,
    as_read: &PersonAsRead,
    add: &[Set],
    delete: &[Set],
    (channel, sub): (Channel, SubscriptionId),
    touched: &mut HashSet<SubscriptionId>,
) -> Result<Vec<TransactWriteItem>, StoreError> {
    if as_read.person.subscriptions.len() >= MAX_PERSON_SUBSCRIPTIONS {
        return Err(StoreError::Request(format!(
            "an external user id can have at most {MAX_PERSON_SUBSCRIPTIONS} subscriptions"
        )));
    }
    let mut items =
        vec![person_update(store, app, user, as_read.version, add, delete, &entry(channel, sub))?];
    let binary = AttributeValue::Bs(vec![Blob::new(keys::replica_entry(channel, sub))]);
    for (other_channel, other, _) in &as_read.person.subscriptions {
        if !touched.insert(*other) {
            continue;
        }
        let mut update = Update::builder()
            .table_name(store.table())
            .set_key(Some(replica_key(app, *other_channel, *other)))
            .expression_attribute_values(":e", binary.clone());
        update = update.update_expression(set_clauses(add, delete, Set::replica_attribute));
        for set in add.iter().chain(delete) {
            update = update
                .expression_attribute_names(format!("#{}", set.replica_attribute()), set.replica_attribute());
        }
        items.push(TransactWriteItem::builder().update(StoreError::request(update.build())?).build());
    }
    Ok(items)
}

/// `ADD #a :e, #b :e DELETE #c :e` for the sets named.
fn set_clauses(add: &[Set], delete: &[Set], attribute: fn(Set) -> &'static str) -> String {
    let mut clauses = Vec::new();
    for (verb, sets) in [("ADD", add), ("DELETE", delete)] {
        if sets.is_empty() {
            continue;
        }
        let parts: Vec<String> = sets.iter().map(|set| format!("#{} :e", attribute(*set))).collect();
        clauses.push(format!("{verb} {}", parts.join(", ")));
    }
    clauses.join(" ")
}

fn replica_key(app: AppId, channel: Channel, sub: SubscriptionId) -> HashMap<String, AttributeValue> {
    key(keys::replica(app, channel, keys::shard_of(sub, keys::REPLICA_SHARDS)), sub.to_string())
}

/// The whole replica of `sub`: its person's sets `as read`, with `sub` itself as it is now.
fn put_replica(store: &Store, sub: &Subscription, as_read: &Person) -> Result<TransactWriteItem, StoreError> {
    let item = replica_item(sub, as_read)?;
    let put = Put::builder().table_name(store.table()).set_item(Some(item));
    Ok(TransactWriteItem::builder().put(StoreError::request(put.build())?).build())
}

fn replica_item(sub: &Subscription, as_read: &Person) -> Result<HashMap<String, AttributeValue>, StoreError> {
    let user = sub
        .external_user_id
        .as_ref()
        .ok_or_else(|| StoreError::Corrupt("a replica of a subscription without a person".into()))?;
    let mut all = Vec::new();
    let mut active = Vec::new();
    for (channel, id, is_active) in &as_read.subscriptions {
        if *id == sub.subscription_id {
            continue;
        }
        all.push(Blob::new(keys::replica_entry(*channel, *id)));
        if *is_active {
            active.push(Blob::new(keys::replica_entry(*channel, *id)));
        }
    }
    all.push(Blob::new(keys::replica_entry(sub.channel, sub.subscription_id)));
    if sub.is_active() {
        active.push(Blob::new(keys::replica_entry(sub.channel, sub.subscription_id)));
    }
    let mut item = replica_key(sub.app_id, sub.channel, sub.subscription_id);
    item.insert(keys::REPLICA_USER.into(), s(user.as_str()));
    item.insert(keys::REPLICA_SUBS.into(), AttributeValue::Bs(all));
    if !active.is_empty() {
        item.insert(keys::REPLICA_ACTIVE.into(), AttributeValue::Bs(active));
    }
    Ok(item)
}

fn delete_replica(
    store: &Store,
    app: AppId,
    channel: Channel,
    sub: SubscriptionId,
) -> Result<TransactWriteItem, StoreError> {
    let delete = Delete::builder().table_name(store.table()).set_key(Some(replica_key(app, channel, sub)));
    Ok(TransactWriteItem::builder().delete(StoreError::request(delete.build())?).build())
}

fn put_inactive(
    store: &Store,
    app: AppId,
    channel: Channel,
    id: SubscriptionId,
) -> Result<TransactWriteItem, StoreError> {
    let item = key(keys::inactive(app, channel), id.to_string());
    let put = Put::builder().table_name(store.table()).set_item(Some(item));
    Ok(TransactWriteItem::builder().put(StoreError::request(put.build())?).build())
}

fn delete_inactive(
    store: &Store,
    app: AppId,
    channel: Channel,
    id: SubscriptionId,
) -> Result<TransactWriteItem, StoreError> {
    let item = key(keys::inactive(app, channel), id.to_string());
    let delete = Delete::builder().table_name(store.table()).set_key(Some(item));
    Ok(TransactWriteItem::builder().delete(StoreError::request(delete.build())?).build())
}

/// Adds `entry` to the person's sets in `add` and takes it out of those in `delete`
/// (string-set ADD and DELETE: idempotent, and the item is created by the first ADD), bumps the
/// version, and only if the version is still `seen`.
fn person_update(
    store: &Store,
    app: AppId,
    user: &ExternalUserId,
    seen: Option<u64>,
    add: &[Set],
    delete: &[Set],
    entry: &str,
) -> Result<TransactWriteItem, StoreError> {
    let mut update = Update::builder()
        .table_name(store.table())
        .set_key(Some(key(keys::person(app, user), keys::SK_PERSON)))
        .expression_attribute_values(":e", AttributeValue::Ss(vec![entry.to_owned()]))
        .expression_attribute_values(":one", AttributeValue::N("1".into()))
        .expression_attribute_names("#v", keys::PERSON_VERSION);
    update = match seen {
        Some(v) => update
            .condition_expression("#v = :seen_v")
            .expression_attribute_values(":seen_v", AttributeValue::N(v.to_string())),
        None => update.condition_expression("attribute_not_exists(#v)"),
    };
    let sets = set_clauses(add, delete, Set::person_attribute);
    let expression = match sets.strip_prefix("ADD ") {
        Some(added) => format!("ADD #v :one, {added}"),
        None => format!("ADD #v :one {sets}"),
    };
    for set in add.iter().chain(delete) {
        update =
            update.expression_attribute_names(format!("#{}", set.person_attribute()), set.person_attribute());
    }
    let update = update.update_expression(expression);
    Ok(TransactWriteItem::builder().update(StoreError::request(update.build())?).build())
}

/// "The subscription still has the status and person it was read with": the condition of
/// every write whose derived items were computed from that state, and its values.
pub(crate) fn as_read(sub: &Subscription) -> (String, Vec<(&'static str, AttributeValue)>) {
    let mut values = vec![(":seen_status", s(sub.status.as_str()))];
    let expression = match &sub.external_user_id {
        Some(user) => {
            values.push((":seen_user", s(user.as_str())));
            "#status = :seen_status AND external_user_id = :seen_user"
        }
        None => "#status = :seen_status AND attribute_not_exists(external_user_id)",
    };
    (expression.to_owned(), values)
}

/// A transaction item holding the subscription to the state it was read with.
fn unchanged_since(store: &Store, sub: &Subscription) -> Result<TransactWriteItem, StoreError> {
    let (expression, values) = as_read(sub);
    let mut check = ConditionCheck::builder()
        .table_name(store.table())
        .set_key(Some(key(keys::subscription(sub.app_id, sub.subscription_id), keys::SK_SUB)))
        .condition_expression(expression)
        .expression_attribute_names("#status", "status");
    for (name, value) in values {
        check = check.expression_attribute_values(name, value);
    }
    Ok(TransactWriteItem::builder().condition_check(StoreError::request(check.build())?).build())
}

impl Store {
    /// A person item as it is now (strongly consistent): what derived writes are computed from.
    pub(crate) async fn person_as_read(
        &self,
        app_id: AppId,
        user: &ExternalUserId,
    ) -> Result<PersonAsRead, StoreError> {
        let output = self
            .client()
            .get_item()
            .table_name(self.table())
            .set_key(Some(key(keys::person(app_id, user), keys::SK_PERSON)))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::dynamo("GetItem person"))?;
        let Some(item) = output.item else { return Ok(PersonAsRead::default()) };
        let version = match item.get(keys::PERSON_VERSION) {
            Some(AttributeValue::N(v)) => {
                Some(v.parse().map_err(|_| StoreError::Corrupt(format!("person version `{v}`")))?)
            }
            _ => None,
        };
        let active: Vec<String> = string_set(&item, keys::PERSON_ACTIVE);
        let subscriptions = string_set(&item, keys::PERSON_SUBS)
            .iter()
            .filter_map(|e| parse_entry(e).map(|(c, id)| (c, id, active.contains(e))))
            .collect();
        Ok(PersonAsRead { person: Person { subscriptions }, version })
    }

    /// The people replicas of the app's subscriptions on `channel` (those with an external user
    /// id), from `start` on, in id order: every shard read in parallel and merged. `first_page`:
    /// a read that will likely stop early (one page of an audience) asks for that many items per
    /// shard first, and for the next page of a shard only once it is mostly used.
    pub fn replicas(
        &self,
        app_id: AppId,
        channel: Channel,
        start: Option<SubscriptionId>,
        first_page: Option<i32>,
    ) -> ReplicaStream {
        let collection = Replicas { app_id, channel, start };
        match first_page {
            Some(first) => sharded::read(self, collection, keys::REPLICA_SHARDS, first, true),
            None => sharded::read(self, collection, keys::REPLICA_SHARDS, sharded::PAGE_ITEMS, false),
        }
    }

    /// The app's inactive subscriptions on `channel` from `start` on, in id order, read a
    /// page at a time as the stream is consumed: pages of `page_items` ids (`None`: DynamoDB's
    /// own, up to 1 MB), so that a read that stops early (one page of an audience) reads little.
    pub fn inactive_subscriptions(
        &self,
        app_id: AppId,
        channel: Channel,
        start: Option<SubscriptionId>,
        page_items: Option<i32>,
    ) -> impl Stream<Item = Result<SubscriptionId, StoreError>> + Send + 'static {
        let query = self
            .client()
            .query()
            .table_name(self.table())
            .set_limit(page_items)
            .expression_attribute_values(":pk", s(keys::inactive(app_id, channel)));
        let query = match start {
            Some(start) => query
                .key_condition_expression("pk = :pk AND sk >= :start")
                .expression_attribute_values(":start", s(start.to_string())),
            None => query.key_condition_expression("pk = :pk"),
        };
        let pages = query.into_paginator().send();
        stream::unfold(pages, |mut pages| async move {
            let page = pages.next().await?;
            Some((page, pages))
        })
        .map_err(|e| StoreError::dynamo("Query inactive subscriptions")(e))
        .map_ok(|page| {
            let ids: Vec<Result<SubscriptionId, StoreError>> = page
                .items
                .unwrap_or_default()
                .iter()
                .map(|item| match item.get(keys::SK) {
                    Some(AttributeValue::S(sk)) => {
                        SubscriptionId::parse(sk.as_str()).map_err(|e| StoreError::Corrupt(e.to_string()))
                    }
                    _ => Err(StoreError::Corrupt("inactive subscription without a sort key".into())),
                })
                .collect();
            stream::iter(ids)
        })
        .try_flatten()
    }

    /// Builds the inactive set and the person items of every subscription in the table, for
    /// data written before they existed (`retarget-admin migrate audience-index`): a Scan of
    /// the subscription items, each indexed by [`Store::index_subscription`]. Idempotent, and
    /// safe while the API runs: a subscription that changes between the Scan and its indexing
    /// is read again (its change already kept the derived items right from then on).
    pub async fn migrate_audience_index(&self) -> Result<MigrationReport, StoreError> {
        let mut report = MigrationReport::default();
        let mut pages = self
            .client()
            .scan()
            .table_name(self.table())
            .filter_expression("sk = :sub")
            .expression_attribute_values(":sub", s(keys::SK_SUB))
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| StoreError::dynamo("Scan subscriptions")(e))?;
            for item in page.items.unwrap_or_default() {
                let mut sub = subscription_of(item)?;
                loop {
                    match self.index_subscription(&sub).await {
                        Ok(()) => break,
                        Err(e) if e.is_transaction_race() => {
                            report.retried += 1;
                            match self.get_subscription_consistent(sub.app_id, sub.subscription_id).await? {
                                Some(now) => sub = now,
                                None => break,
                            }
                        }
                        Err(e) => return Err(e),
                    }
                }
                report.subscriptions += 1;
            }
        }
        Ok(report)
    }

    /// Builds the derived items of one subscription written before they existed (a migration
    /// step; idempotent): its inactive-set item if it is not active, its entries in its person's
    /// sets and in the replicas of the person's other subscriptions, and its own replica from
    /// the person as read. Conditioned on the subscription still being as read and the person
    /// on its version, so a change racing the migration is never undone (the caller reads again
    /// and retries).
    pub async fn index_subscription(&self, sub: &Subscription) -> Result<(), StoreError> {
        let mut items = vec![unchanged_since(self, sub)?];
        if sub.status != SubscriptionStatus::Active {
            items.push(put_inactive(self, sub.app_id, sub.channel, sub.subscription_id)?);
        }
        if let Some(user) = &sub.external_user_id {
            let as_read = self.person_as_read(sub.app_id, user).await?;
            let (add, delete): (&[Set], &[Set]) = if sub.is_active() {
                (&[Set::Subs, Set::Active], &[])
            } else {
                (&[Set::Subs], &[Set::Active])
            };
            let own = (sub.channel, sub.subscription_id);
            let mut touched = HashSet::from([sub.subscription_id]);
            items.extend(person_change(self, sub.app_id, user, &as_read, add, delete, own, &mut touched)?);
            items.push(put_replica(self, sub, &as_read.person)?);
        }
        self.client()
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
            .map_err(StoreError::dynamo("TransactWriteItems index subscription"))?;
        Ok(())
    }
}

/// The people replicas of one app and channel as a sharded collection.
pub struct Replicas {
    app_id: AppId,
    channel: Channel,
    start: Option<SubscriptionId>,
}

/// A subscription's copy of its person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    pub subscription_id: SubscriptionId,
    pub external_user_id: ExternalUserId,
    pub person: Person,
}

pub type ReplicaStream = ShardedStream<Replicas>;

impl Sharded for Replicas {
    type Row = Replica;
    type Key = SubscriptionId;
    const OPERATION: &'static str = "Query people replicas";

    fn query(&self, store: &Store, shard: u8) -> QueryFluentBuilder {
        let query = store
            .client()
            .query()
            .table_name(store.table())
            .expression_attribute_values(":pk", s(keys::replica(self.app_id, self.channel, shard)));
        match self.start {
            Some(start) => query
                .key_condition_expression("pk = :pk AND sk >= :start")
                .expression_attribute_values(":start", s(start.to_string())),
            None => query.key_condition_expression("pk = :pk"),
        }
    }

    fn decode(&self, item: &Item) -> Result<Replica, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("people replica: {what}"));
        let subscription_id = match item.get(keys::SK) {
            Some(AttributeValue::S(sk)) => SubscriptionId::parse(sk).map_err(|_| corrupt("sort key"))?,
            _ => return Err(corrupt("no sort key")),
        };
        let external_user_id = match item.get(keys::REPLICA_USER) {
            Some(AttributeValue::S(u)) => {
                ExternalUserId::parse(u).map_err(|_| corrupt("external user id"))?
            }
            _ => return Err(corrupt("no external user id")),
        };
        let set = |name: &str| -> Vec<(Channel, SubscriptionId)> {
            match item.get(name) {
                Some(AttributeValue::Bs(entries)) => {
                    entries.iter().filter_map(|e| keys::parse_replica_entry(e.as_ref())).collect()
                }
                _ => Vec::new(),
            }
        };
        let active = set(keys::REPLICA_ACTIVE);
        let subscriptions =
            set(keys::REPLICA_SUBS).into_iter().map(|(c, id)| (c, id, active.contains(&(c, id)))).collect();
        Ok(Replica { subscription_id, external_user_id, person: Person { subscriptions } })
    }

    fn order_key(row: &Replica) -> SubscriptionId {
        row.subscription_id
    }
}

/// The replica items of the subscriptions of a person written whole (bulk loads): one per
/// subscription with the person's sets.
pub(crate) fn replica_items(
    subscriptions: &[&Subscription],
) -> Result<Vec<HashMap<String, AttributeValue>>, StoreError> {
    let person = Person {
        subscriptions: subscriptions.iter().map(|s| (s.channel, s.subscription_id, s.is_active())).collect(),
    };
    subscriptions.iter().map(|sub| replica_item(sub, &person)).collect()
}

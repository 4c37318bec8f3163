//! What audiences read instead of one lookup per member (keys.rs: "person", "inactive
//! subscription"):
//!
//! - the **person item** of each external user id: string sets of the person's subscriptions
//!   (`subs`) and of the active ones (`active`), entries `{channel}#{sub}`. A cross-channel
//!   audience reads the people of 100 matching recipients in one BatchGetItem (half a read unit
//!   each, eventually consistent) instead of one GSI Query per person;
//! - the **inactive set** of each app and channel: one key-only item per unsubscribed
//!   subscription, in id order. A same-channel audience reads it once, alongside the
//!   interaction stream (which is in the same order), instead of fetching every candidate's
//!   subscription: unsubscribes are few.
//!
//! Both change only inside the transaction that changes the subscription's status or person,
//! conditioned on the subscription's previous status and person (`subscriptions.rs`), so they
//! always agree with the subscriptions; [`Store::index_subscription`] builds them for data
//! written before they existed (`retarget-admin migrate audience-index`).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, ConditionCheck, Delete, Put, TransactWriteItem, Update};
use futures::{Stream, TryStreamExt, stream};

use super::batch::{key, s};
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

/// How a change of one subscription moves the derived items, as transaction items: from its
/// state `before` (`None`: it did not exist) to `after`.
pub(crate) fn derived_changes(
    store: &Store,
    before: Option<&Subscription>,
    after: &Subscription,
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
    // The person items.
    let old_user = before.and_then(|b| b.external_user_id.as_ref());
    let new_user = after.external_user_id.as_ref();
    let e = entry(channel, id);
    let (subs, active) = (keys::PERSON_SUBS, keys::PERSON_ACTIVE);
    if old_user != new_user {
        if let Some(old) = old_user {
            items.push(person_update(store, app, old, &[], &[subs, active], &e)?);
        }
        if let Some(new) = new_user {
            let add: &[&str] = if after.is_active() { &[subs, active] } else { &[subs] };
            items.push(person_update(store, app, new, add, &[], &e)?);
        }
    } else if let Some(user) = new_user {
        match (was_active, after.is_active()) {
            (Some(true), false) => items.push(person_update(store, app, user, &[], &[active], &e)?),
            (Some(false), true) => items.push(person_update(store, app, user, &[active], &[], &e)?),
            (None, is_active) => {
                let add: &[&str] = if is_active { &[subs, active] } else { &[subs] };
                items.push(person_update(store, app, user, add, &[], &e)?);
            }
            _ => {}
        }
    }
    Ok(items)
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

/// Adds `entry` to the person's sets named in `add` and takes it out of those in `delete`
/// (string-set ADD and DELETE: idempotent, and the item is created by the first ADD).
fn person_update(
    store: &Store,
    app: AppId,
    user: &ExternalUserId,
    add: &[&str],
    delete: &[&str],
    entry: &str,
) -> Result<TransactWriteItem, StoreError> {
    let mut update = Update::builder()
        .table_name(store.table())
        .set_key(Some(key(keys::person(app, user), keys::SK_PERSON)))
        .expression_attribute_values(":e", AttributeValue::Ss(vec![entry.to_owned()]));
    let mut clauses = Vec::new();
    for (verb, names) in [("ADD", add), ("DELETE", delete)] {
        if names.is_empty() {
            continue;
        }
        let parts: Vec<String> = names.iter().map(|n| format!("#{n} :e")).collect();
        clauses.push(format!("{verb} {}", parts.join(", ")));
    }
    for name in add.iter().chain(delete) {
        update = update.expression_attribute_names(format!("#{name}"), *name);
    }
    let update = update.update_expression(clauses.join(" "));
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
    /// The person items of `users` (100 per BatchGetItem, eventually consistent); a user
    /// without one is absent.
    pub async fn people(
        &self,
        app_id: AppId,
        users: impl IntoIterator<Item = ExternalUserId>,
    ) -> Result<HashMap<ExternalUserId, Person>, StoreError> {
        let mut unique: Vec<ExternalUserId> = users.into_iter().collect();
        unique.sort();
        unique.dedup();
        let by_pk: HashMap<String, ExternalUserId> =
            unique.into_iter().map(|u| (keys::person(app_id, &u), u)).collect();
        let keys = by_pk.keys().map(|pk| key(pk.clone(), keys::SK_PERSON)).collect();
        let mut people = HashMap::new();
        for item in self.batch_get(keys, None, false).await? {
            let Some(AttributeValue::S(pk)) = item.get(keys::PK) else { continue };
            let Some(user) = by_pk.get(pk) else { continue };
            let active: Vec<String> = string_set(&item, keys::PERSON_ACTIVE);
            let subscriptions = string_set(&item, keys::PERSON_SUBS)
                .iter()
                .filter_map(|e| parse_entry(e).map(|(c, id)| (c, id, active.contains(e))))
                .collect();
            people.insert(user.clone(), Person { subscriptions });
        }
        Ok(people)
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
    /// step; idempotent): its inactive-set item if it is not active, and its entries in its
    /// person's sets. Conditioned on the subscription still being as read, so a change racing
    /// the migration is never undone (the caller reads it again and retries).
    pub async fn index_subscription(&self, sub: &Subscription) -> Result<(), StoreError> {
        let mut items = vec![unchanged_since(self, sub)?];
        if sub.status != SubscriptionStatus::Active {
            items.push(put_inactive(self, sub.app_id, sub.channel, sub.subscription_id)?);
        }
        if let Some(user) = &sub.external_user_id {
            let e = entry(sub.channel, sub.subscription_id);
            let (subs, active) = (keys::PERSON_SUBS, keys::PERSON_ACTIVE);
            let update = if sub.is_active() {
                person_update(self, sub.app_id, user, &[subs, active], &[], &e)?
            } else {
                person_update(self, sub.app_id, user, &[subs], &[active], &e)?
            };
            items.push(update);
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

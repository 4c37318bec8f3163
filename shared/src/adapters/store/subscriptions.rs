//! Subscriptions: one push token or phone number of an app, optionally linked to a person
//! (`external_user_id`) across channels.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, TransactWriteItem, Update};
use serde::{Deserialize, Serialize};

use super::batch::{key, put_request, s};
use super::{
    Store, StoreError, condition_failed_anywhere, condition_failed_at, people, transaction_conflict,
    unless_condition_failed,
};
use crate::domain::{
    Address, AppId, Channel, ExternalUserId, Subscription, SubscriptionId, SubscriptionStatus, TimeZone,
    UnsubscribeReason,
};
use crate::keys;

/// A subscription item as stored.
pub(crate) fn subscription_of(item: super::batch::Item) -> Result<Subscription, StoreError> {
    Ok(serde_dynamo::from_item::<_, SubscriptionItem>(item)?.subscription)
}

#[derive(Serialize, Deserialize)]
struct SubscriptionItem {
    pk: String,
    sk: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gsi1pk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gsi1sk: Option<String>,
    #[serde(flatten)]
    subscription: Subscription,
}

impl SubscriptionItem {
    fn new(subscription: Subscription) -> Self {
        let person = subscription.external_user_id.as_ref().map(|u| keys::person(subscription.app_id, u));
        Self {
            pk: keys::subscription(subscription.app_id, subscription.subscription_id),
            sk: keys::SK_SUB.into(),
            gsi1sk: person
                .as_ref()
                .map(|_| keys::person_sort(subscription.channel, subscription.subscription_id)),
            gsi1pk: person,
            subscription,
        }
    }
}

/// Tries of a transaction that met another one writing the same person item.
const CONFLICT_ATTEMPTS: u32 = 10;

/// An update of a subscription item: its expression, names and values.
struct Change {
    expression: String,
    names: Vec<(&'static str, &'static str)>,
    values: Vec<(&'static str, AttributeValue)>,
}

/// Whether an upsert created the subscription or found it by its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    Created,
    Updated,
}

impl Store {
    /// Creates the subscription of an address, or — when the app already has that token or
    /// phone number — updates and reactivates the existing one, keeping its id (and its zone
    /// when none is given). Races between two upserts of one address resolve to one
    /// subscription (the address claim is a conditional put in the same transaction as the
    /// subscription).
    pub async fn upsert_subscription(
        &self,
        app_id: AppId,
        address: Address,
        external_user_id: Option<ExternalUserId>,
        timezone: Option<TimeZone>,
    ) -> Result<(Subscription, Upserted), StoreError> {
        let now = self.clock().now();
        let channel = address.channel();
        let claim_pk = keys::address(app_id, channel, &address.identity());
        let mut subscription = Subscription::new(app_id, address.clone(), external_user_id.clone(), now);
        subscription.timezone = timezone;
        let mut claim = key(claim_pk.clone(), keys::SK_ADDR);
        claim.insert("subscription_id".into(), s(subscription.subscription_id.to_string()));
        let mut attempt = 0;
        loop {
            // The claim first: its failed condition (index 0) is what says the address is taken.
            let mut items = vec![
                self.transact_put_new(claim.clone())?,
                self.transact_put_new(serde_dynamo::to_item(SubscriptionItem::new(subscription.clone()))?)?,
            ];
            let people = people::read_people(self, None, &subscription).await?;
            items.extend(people::derived_changes(self, None, &subscription, &people)?);
            let result = self.client().transact_write_items().set_transact_items(Some(items)).send().await;
            let e = match result {
                Ok(_) => return Ok((subscription, Upserted::Created)),
                Err(e) => aws_sdk_dynamodb::Error::from(e),
            };
            let taken = condition_failed_at(&e, 0);
            // Another write of the same person at the same moment (a conflict, or its version
            // moved since it was read): nothing was written; read it again.
            attempt += 1;
            if !taken
                && (transaction_conflict(&e) || condition_failed_anywhere(&e))
                && attempt < CONFLICT_ATTEMPTS
            {
                self.inner.retry.wait(attempt).await;
                continue;
            }
            if !taken {
                return Err(StoreError::Dynamo {
                    operation: "TransactWriteItems subscription",
                    source: Box::new(e),
                });
            }
            let existing = self
                .claimed_subscription(&claim_pk)
                .await?
                .ok_or_else(|| StoreError::Corrupt(format!("address claim {claim_pk} vanished")))?;
            let updated =
                self.refresh_subscription(app_id, existing, &address, external_user_id, timezone).await?;
            return Ok((updated, Upserted::Updated));
        }
    }

    /// The subscription that holds an address claim, if any.
    async fn claimed_subscription(&self, claim_pk: &str) -> Result<Option<SubscriptionId>, StoreError> {
        let output = self
            .client()
            .get_item()
            .table_name(self.table())
            .set_key(Some(key(claim_pk, keys::SK_ADDR)))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::dynamo("GetItem address claim"))?;
        let Some(item) = output.item else { return Ok(None) };
        match item.get("subscription_id") {
            Some(AttributeValue::S(id)) => {
                SubscriptionId::parse(id).map(Some).map_err(|e| StoreError::Corrupt(e.to_string()))
            }
            _ => Err(StoreError::Corrupt(format!("address claim {claim_pk} without subscription"))),
        }
    }

    /// The app's subscription of this address on its channel, if it has one (any status).
    pub async fn subscription_of_address(
        &self,
        app_id: AppId,
        channel: Channel,
        address: &str,
    ) -> Result<Option<SubscriptionId>, StoreError> {
        self.claimed_subscription(&keys::address(app_id, channel, address)).await
    }

    /// Updates and reactivates an existing subscription. Its inactive-set item and person
    /// items change in the same transaction when its status or person does, conditioned on the
    /// state they were computed from; a race with another change reads again and retries.
    async fn refresh_subscription(
        &self,
        app_id: AppId,
        id: SubscriptionId,
        address: &Address,
        external_user_id: Option<ExternalUserId>,
        timezone: Option<TimeZone>,
    ) -> Result<Subscription, StoreError> {
        let mut sets = vec!["#status = :active", "updated_at = :now"];
        let mut values = vec![
            (":active", s(SubscriptionStatus::Active.as_str())),
            (":now", s(crate::clock::rfc3339(self.clock().now()))),
        ];
        let mut names = vec![("#status", "status")];
        if let Address::Push { platform, .. } = address {
            sets.push("platform = :platform");
            let platform = serde_json::to_value(platform).ok().and_then(|v| v.as_str().map(str::to_owned));
            values.push((":platform", s(platform.unwrap_or_default())));
        }
        if let Some(user) = &external_user_id {
            sets.extend(["external_user_id = :user", "gsi1pk = :person", "gsi1sk = :person_sort"]);
            values.push((":user", s(user.as_str())));
            values.push((":person", s(keys::person(app_id, user))));
            values.push((":person_sort", s(keys::person_sort(address.channel(), id))));
        }
        if let Some(zone) = timezone {
            // TIMEZONE is one of DynamoDB's reserved words.
            sets.push("#zone = :zone");
            names.push(("#zone", "timezone"));
            values.push((":zone", s(zone.name())));
        }
        let change = Change {
            expression: format!("SET {} REMOVE unsubscribed_reason", sets.join(", ")),
            names,
            values,
        };
        // The usual case first, as one UpdateItem: already active, and the person unchanged.
        let unchanged = match &external_user_id {
            Some(_) => "#status = :active AND external_user_id = :user",
            None => "#status = :active",
        };
        if let Some(updated) = self.update_subscription(app_id, id, &change, unchanged, &[]).await? {
            return Ok(updated);
        }
        loop {
            let before = self.get_subscription_consistent(app_id, id).await?.ok_or(StoreError::NotFound)?;
            let mut after = before.clone();
            after.status = SubscriptionStatus::Active;
            after.external_user_id = external_user_id.clone().or(before.external_user_id.clone());
            if let Some(updated) = self.change_subscription(&before, &after, &change).await? {
                return Ok(updated);
            }
        }
    }

    /// Reads a subscription as it is now (strongly consistent).
    pub async fn get_subscription_consistent(
        &self,
        app_id: AppId,
        id: SubscriptionId,
    ) -> Result<Option<Subscription>, StoreError> {
        self.read_subscription(app_id, id, true).await
    }

    async fn read_subscription(
        &self,
        app_id: AppId,
        id: SubscriptionId,
        consistent: bool,
    ) -> Result<Option<Subscription>, StoreError> {
        let output = self
            .client()
            .get_item()
            .table_name(self.table())
            .set_key(Some(key(keys::subscription(app_id, id), keys::SK_SUB)))
            .consistent_read(consistent)
            .send()
            .await
            .map_err(StoreError::dynamo("GetItem subscription"))?;
        output.item.map(subscription_of).transpose()
    }

    /// One UpdateItem of the subscription under `condition` (and its values): the subscription
    /// as it is afterwards, `None` when the condition failed.
    async fn update_subscription(
        &self,
        app_id: AppId,
        id: SubscriptionId,
        change: &Change,
        condition: &str,
        condition_values: &[(&'static str, AttributeValue)],
    ) -> Result<Option<Subscription>, StoreError> {
        let mut update = self
            .client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(key(keys::subscription(app_id, id), keys::SK_SUB)))
            .condition_expression(condition)
            .update_expression(&change.expression)
            .return_values(ReturnValue::AllNew);
        for (name, value) in &change.names {
            update = update.expression_attribute_names(*name, *value);
        }
        for (name, value) in change.values.iter().chain(condition_values) {
            update = update.expression_attribute_values(*name, value.clone());
        }
        let result = update.send().await.map_err(StoreError::dynamo("UpdateItem subscription"));
        unless_condition_failed(result)?
            .and_then(|output| output.attributes)
            .map(|i| Ok(serde_dynamo::from_item::<_, SubscriptionItem>(i)?.subscription))
            .transpose()
    }

    /// Applies `change` to a subscription read as `before`, whose status and person become
    /// those of `after`: alone when nothing derived moves, else in one transaction with the
    /// inactive-set and person items, either way only if the subscription is still as read.
    /// The subscription afterwards; `None` when it changed since it was read.
    async fn change_subscription(
        &self,
        before: &Subscription,
        after: &Subscription,
        change: &Change,
    ) -> Result<Option<Subscription>, StoreError> {
        let (app_id, id) = (before.app_id, before.subscription_id);
        let (condition, condition_values) = people::as_read(before);
        let people = people::read_people(self, Some(before), after).await?;
        let derived = people::derived_changes(self, Some(before), after, &people)?;
        if derived.is_empty() {
            return self.update_subscription(app_id, id, change, &condition, &condition_values).await;
        }
        let mut update = Update::builder()
            .table_name(self.table())
            .set_key(Some(key(keys::subscription(app_id, id), keys::SK_SUB)))
            .condition_expression(condition)
            .update_expression(&change.expression);
        for (name, value) in &change.names {
            update = update.expression_attribute_names(*name, *value);
        }
        for (name, value) in change.values.iter().chain(&condition_values) {
            update = update.expression_attribute_values(*name, value.clone());
        }
        let mut items =
            vec![TransactWriteItem::builder().update(StoreError::request(update.build())?).build()];
        items.extend(derived);
        let result = self.client().transact_write_items().set_transact_items(Some(items)).send().await;
        match result {
            Ok(_) => self.get_subscription_consistent(app_id, id).await,
            Err(e) => {
                let e = aws_sdk_dynamodb::Error::from(e);
                // The subscription or one of its people changed since read: read again.
                if condition_failed_anywhere(&e) || transaction_conflict(&e) {
                    return Ok(None);
                }
                Err(StoreError::Dynamo { operation: "TransactWriteItems subscription", source: Box::new(e) })
            }
        }
    }

    pub async fn get_subscription(
        &self,
        app_id: AppId,
        id: SubscriptionId,
    ) -> Result<Option<Subscription>, StoreError> {
        self.read_subscription(app_id, id, false).await
    }

    /// Bulk load for benchmarks and tests: writes subscriptions, their address claims and their
    /// derived items (inactive set, person items) with BatchWriteItem, without the upsert's
    /// transactions. The caller guarantees the addresses are new, and so are the people: a
    /// person item and its replicas are written whole from the subscriptions of this call.
    pub async fn bulk_load_subscriptions(&self, subscriptions: &[Subscription]) -> Result<(), StoreError> {
        let mut writes = Vec::with_capacity(subscriptions.len() * 2);
        // Per person: every subscription's set entry, the active ones', and the subscriptions
        // (each gets a replica of the person).
        type Sets<'a> = (Vec<String>, Vec<String>, Vec<&'a Subscription>);
        let mut people: HashMap<(AppId, &ExternalUserId), Sets> = HashMap::new();
        for sub in subscriptions {
            let entry = keys::person_sort(sub.channel, sub.subscription_id);
            if let Some(user) = &sub.external_user_id {
                let (all, active, subs) = people.entry((sub.app_id, user)).or_default();
                if sub.is_active() {
                    active.push(entry.clone());
                }
                all.push(entry);
                subs.push(sub);
            }
            if !sub.is_active() {
                writes.push(put_request(key(
                    keys::inactive(sub.app_id, sub.channel),
                    sub.subscription_id.to_string(),
                ))?);
            }
            let address = sub
                .identity()
                .ok_or_else(|| StoreError::Corrupt("subscription without an address".into()))?;
            let mut claim = key(keys::address(sub.app_id, sub.channel, &address), keys::SK_ADDR);
            claim.insert("subscription_id".into(), s(sub.subscription_id.to_string()));
            for item in [claim, serde_dynamo::to_item(SubscriptionItem::new(sub.clone()))?] {
                writes.push(put_request(item)?);
            }
        }
        for ((app_id, user), (all, active, subs)) in people {
            for replica in people::replica_items(&subs)? {
                writes.push(put_request(replica)?);
            }
            let mut item = key(keys::person(app_id, user), keys::SK_PERSON);
            item.insert(keys::PERSON_SUBS.into(), AttributeValue::Ss(all));
            if !active.is_empty() {
                item.insert(keys::PERSON_ACTIVE.into(), AttributeValue::Ss(active));
            }
            writes.push(put_request(item)?);
        }
        self.batch_write(writes).await
    }

    /// The subscriptions of this app among `ids` (others' and missing ones are simply absent).
    pub async fn get_subscriptions(
        &self,
        app_id: AppId,
        ids: impl IntoIterator<Item = SubscriptionId>,
    ) -> Result<HashMap<SubscriptionId, Subscription>, StoreError> {
        let mut unique: Vec<SubscriptionId> = ids.into_iter().collect();
        unique.sort();
        unique.dedup();
        let keys = unique.iter().map(|id| key(keys::subscription(app_id, *id), keys::SK_SUB)).collect();
        self.batch_get(keys, None, false)
            .await?
            .into_iter()
            .map(|item| {
                let sub = serde_dynamo::from_item::<_, SubscriptionItem>(item)?.subscription;
                Ok((sub.subscription_id, sub))
            })
            .collect()
    }

    /// Marks a subscription unsubscribed, for `reason`; `None` when the app has no such
    /// subscription. Unsubscribing one already unsubscribed keeps its first reason: an
    /// opt-out stays undoable by START however often the app unsubscribes it too, and the
    /// app's own unsubscribe is never turned into an opt-out by a later STOP.
    pub async fn unsubscribe(
        &self,
        app_id: AppId,
        id: SubscriptionId,
        reason: UnsubscribeReason,
    ) -> Result<Option<Subscription>, StoreError> {
        let change = Change {
            expression: "SET #status = :unsubscribed, updated_at = :now, \
                 unsubscribed_reason = if_not_exists(unsubscribed_reason, :reason)"
                .into(),
            names: vec![("#status", "status")],
            values: vec![
                (":unsubscribed", s(SubscriptionStatus::Unsubscribed.as_str())),
                (":reason", s(reason.as_str())),
                (":now", s(crate::clock::rfc3339(self.clock().now()))),
            ],
        };
        loop {
            let Some(before) = self.get_subscription_consistent(app_id, id).await? else { return Ok(None) };
            let mut after = before.clone();
            after.status = SubscriptionStatus::Unsubscribed;
            if let Some(updated) = self.change_subscription(&before, &after, &change).await? {
                return Ok(Some(updated));
            }
        }
    }

    /// Turns a subscription unsubscribed for `from` into one unsubscribed for `to` (email: a
    /// complaint outranks a bounce, so that the two, in either order, leave `complaint`);
    /// whether it changed.
    pub async fn replace_unsubscribe_reason(
        &self,
        app_id: AppId,
        id: SubscriptionId,
        from: UnsubscribeReason,
        to: UnsubscribeReason,
    ) -> Result<bool, StoreError> {
        let result = self
            .client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(key(keys::subscription(app_id, id), keys::SK_SUB)))
            .condition_expression("#status = :unsubscribed AND unsubscribed_reason = :from")
            .update_expression("SET unsubscribed_reason = :to, updated_at = :now")
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":unsubscribed", s(SubscriptionStatus::Unsubscribed.as_str()))
            .expression_attribute_values(":from", s(from.as_str()))
            .expression_attribute_values(":to", s(to.as_str()))
            .expression_attribute_values(":now", s(crate::clock::rfc3339(self.clock().now())))
            .send()
            .await
            .map_err(StoreError::dynamo("UpdateItem unsubscribe reason"));
        Ok(unless_condition_failed(result)?.is_some())
    }

    /// Reactivates a subscription the recipient opted out of (an inbound START): only one
    /// unsubscribed for [`UnsubscribeReason::Stop`], never one the app unsubscribed. `None`
    /// when there is no such subscription or it is not opted out.
    pub async fn resubscribe_opted_out(
        &self,
        app_id: AppId,
        id: SubscriptionId,
    ) -> Result<Option<Subscription>, StoreError> {
        let change = Change {
            expression: "SET #status = :active, updated_at = :now REMOVE unsubscribed_reason".into(),
            names: vec![("#status", "status")],
            values: vec![
                (":active", s(SubscriptionStatus::Active.as_str())),
                (":now", s(crate::clock::rfc3339(self.clock().now()))),
            ],
        };
        loop {
            let Some(before) = self.get_subscription_consistent(app_id, id).await? else { return Ok(None) };
            if before.is_active() || before.unsubscribed_reason != Some(UnsubscribeReason::Stop) {
                return Ok(None);
            }
            let mut after = before.clone();
            after.status = SubscriptionStatus::Active;
            if let Some(updated) = self.change_subscription(&before, &after, &change).await? {
                return Ok(Some(updated));
            }
        }
    }

    /// A person's subscriptions on one channel (any status), through GSI1.
    pub async fn subscriptions_of_person(
        &self,
        app_id: AppId,
        user: &ExternalUserId,
        channel: Channel,
    ) -> Result<Vec<Subscription>, StoreError> {
        self.query_person(app_id, user, channel).await
    }

    async fn query_person(
        &self,
        app_id: AppId,
        user: &ExternalUserId,
        channel: Channel,
    ) -> Result<Vec<Subscription>, StoreError> {
        let query = self
            .client()
            .query()
            .table_name(self.table())
            .index_name(keys::GSI1)
            .expression_attribute_values(":person", s(keys::person(app_id, user)))
            .key_condition_expression("gsi1pk = :person AND begins_with(gsi1sk, :channel)")
            .expression_attribute_values(":channel", s(format!("{channel}#")));
        let mut pages = query.into_paginator().send();
        let mut found = Vec::new();
        while let Some(page) = pages.next().await {
            for item in page.map_err(StoreError::dynamo("Query person"))?.items.unwrap_or_default() {
                found.push(serde_dynamo::from_item::<_, SubscriptionItem>(item)?.subscription);
            }
        }
        Ok(found)
    }
}

//! Deferred sends ([`Deferral`]): one item per group of recipients of a message that wait for
//! the same instant, in the due index until the scheduler puts them back on their queue.
//!
//! Exactly once: a deferral's id is derived from what it holds, so a redelivered send job
//! writes the same item again — the put is conditional and the retarget's `deferred` counter
//! is added to in the same transaction, hence counted once. Released like a scheduled message:
//! the claim moves the due entry to a lease, the item is deleted once its job is on the queue;
//! a run that dies in between lets the lease run out and releases it again, and the senders'
//! idempotency records make the second job harmless.

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, TransactWriteItem, Update};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::batch::{Item, key, n, s};
use super::{Store, StoreError, condition_failed_at, unless_condition_failed};
use crate::domain::{AppId, Channel, Deferral, DeferralId, MessageId, RetargetId, SubscriptionId};
use crate::keys;

#[derive(Serialize, Deserialize)]
struct DeferralItem {
    pk: String,
    sk: String,
    gsi2pk: String,
    gsi2sk: String,
    deferral_id: String,
    app_id: AppId,
    message_id: MessageId,
    channel: Channel,
    release: DateTime<Utc>,
    /// Comma-separated (26 bytes and a comma per recipient: 500 fit in 14 KB).
    subscription_ids: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retarget_id: Option<RetargetId>,
    data_expires_at: DateTime<Utc>,
    /// The TTL: the message's data expiry, or a day after the release when that comes later —
    /// DynamoDB may delete an item any time after its TTL, and a deferral must outlive its
    /// release (the message item outlives its data by 90 days, so it can still be sent).
    expires_at: i64,
}

impl DeferralItem {
    fn new(d: &Deferral) -> Self {
        let ids: Vec<String> = d.subscription_ids.iter().map(ToString::to_string).collect();
        Self {
            pk: keys::deferral(d.app_id, &d.deferral_id),
            sk: keys::SK_DEFER.into(),
            gsi2pk: keys::DUE_DEFERRED.into(),
            gsi2sk: keys::due_sort(d.release, d.app_id, &d.deferral_id),
            deferral_id: d.deferral_id.to_string(),
            app_id: d.app_id,
            message_id: d.message_id,
            channel: d.channel,
            release: d.release,
            subscription_ids: ids.join(","),
            retarget_id: d.retarget_id,
            data_expires_at: d.expires_at,
            expires_at: d.expires_at.max(d.release + chrono::Duration::days(1)).timestamp(),
        }
    }

    fn deferral(self) -> Result<Deferral, StoreError> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("deferral {}: {what}", self.deferral_id));
        let deferral_id = self.deferral_id.parse().map_err(|_| corrupt("bad id"))?;
        let subscription_ids = self
            .subscription_ids
            .split(',')
            .filter(|id| !id.is_empty())
            .map(|id| SubscriptionId::parse(id).map_err(|_| corrupt("bad subscription id")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Deferral {
            deferral_id,
            app_id: self.app_id,
            message_id: self.message_id,
            channel: self.channel,
            release: self.release,
            subscription_ids,
            retarget_id: self.retarget_id,
            expires_at: self.data_expires_at,
        })
    }
}

impl Store {
    /// Stores a deferral; when `count` and it belongs to a retarget, adds its recipients to the
    /// retarget's `deferred` in the same transaction. `false` when it was stored already (a
    /// redelivered job): nothing is written or counted again.
    pub async fn defer(&self, deferral: &Deferral, count: bool) -> Result<bool, StoreError> {
        let item: Item = serde_dynamo::to_item(DeferralItem::new(deferral))?;
        let retarget = deferral.retarget_id.filter(|_| count);
        let Some(retarget_id) = retarget else {
            let result = self
                .client()
                .put_item()
                .table_name(self.table())
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(pk)")
                .send()
                .await
                .map_err(StoreError::dynamo("PutItem deferral"));
            return Ok(unless_condition_failed(result)?.is_some());
        };
        let put = self.transact_put_new(item)?;
        let counter = StoreError::request(
            Update::builder()
                .table_name(self.table())
                .set_key(Some(key(keys::retarget(deferral.app_id, retarget_id), keys::SK_RT)))
                .condition_expression("attribute_exists(pk)")
                // DEFERRED is one of DynamoDB's reserved words.
                .update_expression("ADD #deferred :n")
                .expression_attribute_names("#deferred", "deferred")
                .expression_attribute_values(":n", n(deferral.subscription_ids.len()))
                .build(),
        )?;
        let result = self
            .client()
            .transact_write_items()
            .transact_items(put)
            .transact_items(TransactWriteItem::builder().update(counter).build())
            .send()
            .await;
        let Err(e) = result else { return Ok(true) };
        let e = aws_sdk_dynamodb::Error::from(e);
        let failed = |i: usize| condition_failed_at(&e, i);
        if failed(0) {
            return Ok(false);
        }
        if failed(1) {
            // The retarget is gone: the recipients still wait, with nothing to count them on.
            let mut alone = deferral.clone();
            alone.retarget_id = None;
            return Box::pin(self.defer(&alone, false)).await;
        }
        Err(StoreError::Dynamo { operation: "TransactWriteItems deferral", source: Box::new(e) })
    }

    /// Up to `limit` deferrals whose release has come (or whose lease ran out), earliest first.
    pub async fn due_deferrals(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(AppId, DeferralId)>, StoreError> {
        self.due_entries(keys::DUE_DEFERRED, now, limit).await
    }

    /// Takes a due deferral: its due entry moves to the lease expiry. `None` when another run
    /// holds it, it is not due, or it is gone.
    pub async fn claim_deferral(
        &self,
        app_id: AppId,
        id: &DeferralId,
        now: DateTime<Utc>,
    ) -> Result<Option<Deferral>, StoreError> {
        let result = self
            .client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(key(keys::deferral(app_id, id), keys::SK_DEFER)))
            .condition_expression("gsi2pk = :due AND gsi2sk <= :now")
            .update_expression("SET gsi2sk = :lease")
            .expression_attribute_values(":due", s(keys::DUE_DEFERRED))
            .expression_attribute_values(":now", s(keys::due_bound(now)))
            .expression_attribute_values(":lease", s(keys::due_lease(now, app_id, id)))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(StoreError::dynamo("UpdateItem claim deferral"));
        unless_condition_failed(result)?
            .and_then(|output| output.attributes)
            .map(|item| serde_dynamo::from_item::<_, DeferralItem>(item)?.deferral())
            .transpose()
    }

    /// A released deferral is on its queue: the item goes.
    pub async fn finish_deferral(&self, app_id: AppId, id: &DeferralId) -> Result<(), StoreError> {
        self.client()
            .delete_item()
            .table_name(self.table())
            .set_key(Some(key(keys::deferral(app_id, id), keys::SK_DEFER)))
            .send()
            .await
            .map_err(StoreError::dynamo("DeleteItem deferral"))?;
        Ok(())
    }

    /// An app's deferrals still waiting, through the whole due partition: for tests and checks
    /// on small tables, not for a request path.
    pub async fn pending_deferrals(&self, app_id: AppId) -> Result<Vec<Deferral>, StoreError> {
        let mut pages = self
            .client()
            .query()
            .table_name(self.table())
            .index_name(keys::GSI2)
            .key_condition_expression("gsi2pk = :due")
            .expression_attribute_values(":due", s(keys::DUE_DEFERRED))
            .into_paginator()
            .send();
        let mut found = Vec::new();
        while let Some(page) = pages.next().await {
            for entry in page.map_err(StoreError::dynamo("Query deferrals"))?.items.unwrap_or_default() {
                let Some(AttributeValue::S(sk)) = entry.get(keys::GSI2_SK) else { continue };
                let Some((app, id)) = keys::parse_due_sort::<DeferralId>(sk) else { continue };
                if app != app_id {
                    continue;
                }
                let output = self
                    .client()
                    .get_item()
                    .table_name(self.table())
                    .set_key(Some(key(keys::deferral(app, &id), keys::SK_DEFER)))
                    .consistent_read(true)
                    .send()
                    .await
                    .map_err(StoreError::dynamo("GetItem deferral"))?;
                if let Some(item) = output.item {
                    found.push(serde_dynamo::from_item::<_, DeferralItem>(item)?.deferral()?);
                }
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deferral_outlives_its_release_even_past_the_message_data() {
        let expires = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let group = |release: DateTime<Utc>| {
            Deferral::group(
                AppId::new(),
                MessageId::new(),
                Channel::Sms,
                None,
                expires,
                vec![(SubscriptionId::new(), release)],
            )
            .remove(0)
        };
        // Released 9 hours after the message's data expired: its TTL is a day after the release.
        let late = group(expires + chrono::Duration::hours(9));
        assert_eq!(
            DeferralItem::new(&late).expires_at,
            (late.release + chrono::Duration::days(1)).timestamp()
        );
        // Released well before: the data's expiry, as every item of the message.
        let early = group(expires - chrono::Duration::days(3));
        assert_eq!(DeferralItem::new(&early).expires_at, expires.timestamp());
        assert_eq!(
            DeferralItem::new(&late).deferral().unwrap().expires_at,
            expires,
            "the data expiry is kept"
        );
    }
}

//! Idempotency records of the senders (Powertools-style): one per (message, subscription),
//! written `in_progress` with a lease before the provider call and `completed` after it, so
//! whatever SQS redelivers, a recipient reaches the provider at most once.

use aws_sdk_dynamodb::types::{
    AttributeValue, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use chrono::{DateTime, Utc};

use super::batch::{Item, key, n, s};
use super::{Store, StoreError, condition_failed_at, unless_condition_failed};
use crate::domain::{AppId, EventKind, MessageScope, RetargetId, SubscriptionId};
use crate::keys;

/// What a sender may do for one recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendClaim {
    /// Nobody has sent it: go ahead (the lease is ours until it expires).
    Go,
    /// Already sent (or permanently failed): the recorded outcome, to re-record idempotently.
    Done(EventKind),
    /// Another run is sending it right now: try again later.
    InFlight,
    /// Not sent because of the frequency cap (counted once on the retarget, nothing recorded).
    Capped,
}

const IN_PROGRESS: &str = "in_progress";
const COMPLETED: &str = "completed";
/// The outcome of a send the frequency cap stopped (not an interaction kind: nothing is recorded).
const CAPPED: &str = "capped";

impl Store {
    pub async fn claim_send(
        &self,
        scope: &MessageScope,
        sub: SubscriptionId,
        lease_until: DateTime<Utc>,
    ) -> Result<SendClaim, StoreError> {
        let mut item = key(keys::send(scope.message_id, sub), keys::SK_SEND);
        item.insert("state".into(), s(IN_PROGRESS));
        item.insert("lease_until".into(), n(lease_until.timestamp()));
        // The record only has to outlive redeliveries; it goes with the message's data.
        item.insert(keys::EXPIRES_AT.into(), n(scope.expires_at));
        let result = self
            .client()
            .put_item()
            .table_name(self.table())
            .set_item(Some(item))
            .condition_expression(
                "attribute_not_exists(pk) OR (#state = :in_progress AND lease_until < :now)",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":in_progress", s(IN_PROGRESS))
            .expression_attribute_values(":now", n(self.clock().now_epoch()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(SendClaim::Go),
            Err(e) => {
                let e = aws_sdk_dynamodb::Error::from(e);
                let existing = match &e {
                    aws_sdk_dynamodb::Error::ConditionalCheckFailedException(c) => c.item().cloned(),
                    _ => {
                        return Err(StoreError::Dynamo {
                            operation: "PutItem send claim",
                            source: Box::new(e),
                        });
                    }
                };
                let existing = match existing {
                    Some(item) => item,
                    None => self.read_send(scope, sub).await?.unwrap_or_default(),
                };
                Ok(claim_of(&existing))
            }
        }
    }

    async fn read_send(&self, scope: &MessageScope, sub: SubscriptionId) -> Result<Option<Item>, StoreError> {
        let output = self
            .client()
            .get_item()
            .table_name(self.table())
            .set_key(Some(key(keys::send(scope.message_id, sub), keys::SK_SEND)))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::dynamo("GetItem send record"))?;
        Ok(output.item)
    }

    /// Marks a send done with its outcome (`sent` or `failed`).
    pub async fn complete_send(
        &self,
        scope: &MessageScope,
        sub: SubscriptionId,
        outcome: EventKind,
    ) -> Result<(), StoreError> {
        self.client()
            .update_item()
            .table_name(self.table())
            .set_key(Some(key(keys::send(scope.message_id, sub), keys::SK_SEND)))
            .update_expression("SET #state = :completed, outcome = :outcome REMOVE lease_until")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":completed", s(COMPLETED))
            .expression_attribute_values(":outcome", s(outcome.as_str()))
            .send()
            .await
            .map_err(StoreError::dynamo("UpdateItem complete send"))?;
        Ok(())
    }

    /// Marks a claimed send stopped by the frequency cap and, for a retarget's message, adds it
    /// to the retarget's `capped` in the same transaction: counted once whatever redelivers.
    pub async fn complete_send_capped(
        &self,
        scope: &MessageScope,
        sub: SubscriptionId,
        retarget: Option<(AppId, RetargetId)>,
    ) -> Result<(), StoreError> {
        let record = StoreError::request(
            Update::builder()
                .table_name(self.table())
                .set_key(Some(key(keys::send(scope.message_id, sub), keys::SK_SEND)))
                .condition_expression("#state = :in_progress")
                .update_expression("SET #state = :completed, outcome = :capped REMOVE lease_until")
                .expression_attribute_names("#state", "state")
                .expression_attribute_values(":in_progress", s(IN_PROGRESS))
                .expression_attribute_values(":completed", s(COMPLETED))
                .expression_attribute_values(":capped", s(CAPPED))
                .build(),
        )?;
        let mut transaction = self
            .client()
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(record).build());
        if let Some((app_id, retarget_id)) = retarget {
            let counter = StoreError::request(
                Update::builder()
                    .table_name(self.table())
                    .set_key(Some(key(keys::retarget(app_id, retarget_id), keys::SK_RT)))
                    .condition_expression("attribute_exists(pk)")
                    .update_expression("ADD #capped :one")
                    .expression_attribute_names("#capped", "capped")
                    .expression_attribute_values(":one", n(1))
                    .build(),
            )?;
            transaction = transaction.transact_items(TransactWriteItem::builder().update(counter).build());
        }
        let Err(e) = transaction.send().await else { return Ok(()) };
        let e = aws_sdk_dynamodb::Error::from(e);
        let failed = |i: usize| condition_failed_at(&e, i);
        if failed(0) {
            // No longer ours (its lease ran out and another run took it): that run decides.
            return Ok(());
        }
        if failed(1) {
            // The retarget is gone: nothing to count on.
            return Box::pin(self.complete_send_capped(scope, sub, None)).await;
        }
        Err(StoreError::Dynamo { operation: "TransactWriteItems capped send", source: Box::new(e) })
    }

    /// Gives a send back after a transient failure, so a redelivery may try it again.
    pub async fn release_send(&self, scope: &MessageScope, sub: SubscriptionId) -> Result<(), StoreError> {
        let result = self
            .client()
            .delete_item()
            .table_name(self.table())
            .set_key(Some(key(keys::send(scope.message_id, sub), keys::SK_SEND)))
            .condition_expression("#state = :in_progress")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":in_progress", s(IN_PROGRESS))
            .send()
            .await
            .map_err(StoreError::dynamo("DeleteItem release send"));
        // Not in progress (already completed, or released by another run): nothing to release.
        unless_condition_failed(result).map(drop)
    }
}

fn claim_of(item: &Item) -> SendClaim {
    let text = |name: &str| match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v.as_str()),
        _ => None,
    };
    if text("state") == Some(COMPLETED) && text("outcome") == Some(CAPPED) {
        return SendClaim::Capped;
    }
    match (text("state"), text("outcome").and_then(|o| o.parse().ok())) {
        (Some(COMPLETED), Some(outcome)) => SendClaim::Done(outcome),
        (Some(COMPLETED), None) => SendClaim::Done(EventKind::Sent),
        _ => SendClaim::InFlight,
    }
}

//! A message's stats: per-kind counts of distinct subscriptions, derived from the table's own
//! DynamoDB Stream rather than kept by the writers.
//!
//! Why: an interaction item is written by a conditional put, whose success is the one exact
//! "this triple is new" signal; a counter bumped by the writer after it would leave a crash
//! window (item stored, count lost) and make one hot item of every campaign. Instead the stream's
//! `INSERT` records of interaction items — one per new item, never one for a put that changed
//! nothing — are counted by the stats aggregator, one batch at a time per stream shard.
//!
//! Counter items: `STATS#{msg}` / `{stream shard id}`, holding the per-kind counts of that shard's
//! inserts for the message and `seq`, the highest sequence number applied (fixed width, see
//! [`keys::stream_sequence`]). An update adds only records above `seq` and moves `seq` in the
//! same conditional write, so a batch delivered again (Lambda retries a failed batch, and may
//! replay records after a partial failure) is never counted twice, and a crash between two
//! messages' updates leaves each either applied or not. A shard's records reach one invocation
//! at a time, in order (the event source mapping's `ParallelizationFactor` is 1), so each counter
//! item has a single writer: a hot campaign's counters take a few writes per second per stream
//! shard whatever its event rate, far from any item's 1,000 WCU/s.
//!
//! Reads sum a message's counter items: one Query of a small partition.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use super::batch::{Item, key, n, s};
use super::{Store, StoreError};
use crate::domain::{EventKind, KindCounts, MessageId};
use crate::keys;

const ATTR_SEQ: &str = "seq";

/// One counted insert: the stream record of a new interaction item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CountedInsert {
    /// Fixed width ([`keys::stream_sequence`]).
    pub sequence: String,
    pub kind: EventKind,
    /// The item's own TTL (the message's data expiry).
    pub expires_at: i64,
}

/// What one counter update did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// Records added to the counts.
    pub counted: usize,
    /// Records already applied by an earlier delivery of the same records.
    pub replayed: usize,
}

impl Store {
    /// Adds one stream shard's inserts of one message to its counter item, exactly once per
    /// record whatever was applied before. `inserts` may be in any order.
    pub async fn apply_stream_counts(
        &self,
        message: MessageId,
        shard_id: &str,
        inserts: &[CountedInsert],
    ) -> Result<Applied, StoreError> {
        let mut inserts: Vec<&CountedInsert> = inserts.iter().collect();
        inserts.sort_by(|a, b| a.sequence.cmp(&b.sequence));
        inserts.dedup_by(|a, b| a.sequence == b.sequence);
        let Some(first) = inserts.first() else { return Ok(Applied::default()) };
        // Optimistic: nothing of these records applied yet (the common case, one write).
        let mut applied_up_to: Option<String> = None;
        let mut expect_absent_or_below = first.sequence.clone();
        // At most two rounds in practice: the optimistic write, then one after reading `seq`
        // (the item has a single writer, so `seq` does not move under us); bounded anyway.
        for _ in 0..4 {
            let pending: Vec<&CountedInsert> = match &applied_up_to {
                None => inserts.clone(),
                Some(seq) => inserts.iter().copied().filter(|i| i.sequence.as_str() > seq.as_str()).collect(),
            };
            let replayed = inserts.len() - pending.len();
            let Some(last) = pending.last() else { return Ok(Applied { counted: 0, replayed }) };
            let mut counts = KindCounts::default();
            let mut expires_at = 0;
            for insert in &pending {
                counts.add(insert.kind, 1);
                expires_at = expires_at.max(insert.expires_at);
            }
            let mut update = self
                .client()
                .update_item()
                .table_name(self.table())
                .set_key(Some(key(keys::stats(message), shard_id)))
                .expression_attribute_names("#seq", ATTR_SEQ)
                .expression_attribute_names("#exp", keys::EXPIRES_AT)
                .expression_attribute_values(":last", s(&last.sequence))
                .expression_attribute_values(":exp", n(expires_at));
            let mut adds = Vec::new();
            for (kind, count) in counts.iter().filter(|(_, c)| *c > 0) {
                adds.push(format!("#{k} :{k}", k = kind.as_str()));
                update = update
                    .expression_attribute_names(format!("#{}", kind.as_str()), kind.as_str())
                    .expression_attribute_values(format!(":{}", kind.as_str()), n(count));
            }
            update = match &applied_up_to {
                None => update
                    .condition_expression("attribute_not_exists(#seq) OR #seq < :first")
                    .expression_attribute_values(":first", s(&expect_absent_or_below)),
                Some(seq) => {
                    update.condition_expression("#seq = :seen").expression_attribute_values(":seen", s(seq))
                }
            };
            let result = update
                .update_expression(format!("SET #seq = :last, #exp = :exp ADD {}", adds.join(", ")))
                .send()
                .await
                .map_err(StoreError::dynamo("UpdateItem stats counter"));
            match super::unless_condition_failed(result)? {
                Some(_) => return Ok(Applied { counted: pending.len(), replayed }),
                None => {
                    // Some of these records were applied before: count only those above `seq`.
                    let seq = self.counter_sequence(message, shard_id).await?;
                    match seq {
                        Some(seq) => applied_up_to = Some(seq),
                        // Gone since (it cannot be: nothing deletes counters but TTL): start over.
                        None => expect_absent_or_below = first.sequence.clone(),
                    }
                }
            }
        }
        Err(StoreError::Corrupt(format!("stats counter of {message} on {shard_id} keeps changing")))
    }

    async fn counter_sequence(
        &self,
        message: MessageId,
        shard_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let item = self
            .client()
            .get_item()
            .table_name(self.table())
            .set_key(Some(key(keys::stats(message), shard_id)))
            .projection_expression("#seq")
            .expression_attribute_names("#seq", ATTR_SEQ)
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::dynamo("GetItem stats counter"))?
            .item;
        Ok(item.and_then(|item| match item.get(ATTR_SEQ) {
            Some(AttributeValue::S(seq)) => Some(seq.clone()),
            _ => None,
        }))
    }

    /// A message's counts, summed over its counter items (zero for expired ones).
    pub(crate) async fn read_stats(&self, message: MessageId) -> Result<KindCounts, StoreError> {
        let now = self.clock().now_epoch();
        let mut pages = self
            .client()
            .query()
            .table_name(self.table())
            .key_condition_expression("pk = :pk")
            .filter_expression("#exp > :now")
            .expression_attribute_names("#exp", keys::EXPIRES_AT)
            .expression_attribute_values(":pk", s(keys::stats(message)))
            .expression_attribute_values(":now", n(now))
            .into_paginator()
            .send();
        let mut totals = KindCounts::default();
        while let Some(page) = pages.next().await {
            for item in page.map_err(StoreError::dynamo("Query stats"))?.items.unwrap_or_default() {
                add_counts(&mut totals, &item);
            }
        }
        Ok(totals)
    }
}

fn add_counts(totals: &mut KindCounts, item: &Item) {
    for kind in EventKind::ALL {
        if let Some(AttributeValue::N(v)) = item.get(kind.as_str()) {
            totals.add(kind, v.parse::<u64>().unwrap_or(0));
        }
    }
}

/// Groups a batch's inserts by message.
pub fn by_message(
    inserts: impl IntoIterator<Item = (MessageId, CountedInsert)>,
) -> HashMap<MessageId, Vec<CountedInsert>> {
    let mut grouped: HashMap<MessageId, Vec<CountedInsert>> = HashMap::new();
    for (message, insert) in inserts {
        grouped.entry(message).or_default().push(insert);
    }
    grouped
}

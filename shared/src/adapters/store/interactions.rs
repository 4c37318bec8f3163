//! Interaction events: one item per (message, subscription, kind), spread over the message's
//! shards, each written by a conditional put, read back as one stream merged across shards.
//!
//! Why one item per kind: a write is then one put that exists or not (no read-modify-write),
//! its condition is the exact answer to "is this event new" under any concurrency, replays and
//! any order leave the same items, and a subscription's kinds sit next to each other in its
//! shard (sort key `{sub}#{kind code}`), so an audience is decided one subscription at a time
//! while streaming.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt, stream};

use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;

use super::batch::{Item, key, n, put_request, s};
use super::sharded::{self, PAGE_ITEMS, Sharded, ShardedStream};
use super::{Store, StoreError};
use crate::domain::{EventId, EventKind, ExternalUserId, MessageScope, SubscriptionId};
use crate::keys;

/// One event to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interaction {
    pub subscription_id: SubscriptionId,
    pub kind: EventKind,
    /// Copied onto the item so cross-channel audiences need no per-member lookup.
    pub external_user_id: Option<ExternalUserId>,
    pub event_id: Option<EventId>,
    pub occurred_at: DateTime<Utc>,
}

/// Per input event: whether it was newly recorded (`true`) or a duplicate (`false`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecordOutcome {
    pub newly_recorded: Vec<bool>,
}

impl RecordOutcome {
    pub fn accepted(&self) -> usize {
        self.newly_recorded.iter().filter(|n| **n).count()
    }

    pub fn duplicates(&self) -> usize {
        self.newly_recorded.len() - self.accepted()
    }
}

/// Where a read of a message's interactions starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Beginning,
    /// After every interaction of this subscription.
    After(SubscriptionId),
    /// At this subscription's first interaction.
    At(SubscriptionId),
}

/// One stored interaction as audiences read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InteractionRow {
    pub subscription_id: SubscriptionId,
    pub kind: EventKind,
    pub external_user_id: Option<ExternalUserId>,
}

const ATTR_EXTERNAL_USER: &str = "ext";
const ATTR_EVENT_ID: &str = "eid";
const ATTR_OCCURRED_AT: &str = "at";
/// A token unique to the write that put the item ([`super::new_write_token`]).
const ATTR_WRITE_TOKEN: &str = "w";
/// On an event-id record: the triple it named (`{msg}#{sub}#{kind code}`).
const ATTR_EVENT_TRIPLE: &str = "names";
/// Conditional puts in flight for one call.
const PUTS_IN_FLIGHT: usize = 32;

fn interaction_key(scope: &MessageScope, sub: SubscriptionId, kind: EventKind) -> Item {
    key(
        keys::interaction_partition(scope.message_id, keys::shard_of(sub, scope.shards)),
        keys::interaction_sort(sub, kind),
    )
}

impl Store {
    /// Records events of one message. Idempotent, order-independent and exact under any
    /// concurrency: an event whose (subscription, kind) is already stored — by anyone, earlier
    /// or at this same moment, or earlier in this call — is a duplicate and changes nothing, and
    /// so is an event whose `event_id` the app has used before (for whatever triple). Exactly
    /// one of concurrent writers of a new triple gets `true`: the conditional put decides.
    ///
    /// The stats are not touched here: they count the stream's inserts (see `stats.rs`), so a
    /// crash after any write leaves nothing to repair.
    ///
    /// Requests: one BatchGetItem per 100 events (eventually consistent: it only spares the
    /// writes of known duplicates, the conditional put is what decides), then one conditional
    /// PutItem per remaining event, several in flight; events with an `event_id` add one
    /// conditional PutItem for it.
    pub async fn record_interactions(
        &self,
        scope: &MessageScope,
        events: &[Interaction],
    ) -> Result<RecordOutcome, StoreError> {
        let mut seen = HashSet::with_capacity(events.len());
        let mut seen_event_ids = HashSet::new();
        let mut candidates = Vec::with_capacity(events.len());
        for (i, e) in events.iter().enumerate() {
            let fresh_id = e.event_id.as_ref().is_none_or(|id| seen_event_ids.insert(id.as_str()));
            if fresh_id && seen.insert((e.subscription_id, e.kind)) {
                candidates.push(i);
            }
        }

        let lookup = candidates
            .iter()
            .map(|&i| interaction_key(scope, events[i].subscription_id, events[i].kind))
            .collect();
        let existing: HashSet<(String, String)> = self
            .batch_get(lookup, Some("pk, sk"), false)
            .await?
            .into_iter()
            .filter_map(|item| Some((string_attr(&item, keys::PK)?, string_attr(&item, keys::SK)?)))
            .collect();
        let (to_write, known): (Vec<usize>, Vec<usize>) = candidates.into_iter().partition(|&i| {
            let item = interaction_key(scope, events[i].subscription_id, events[i].kind);
            let pk_sk = (
                string_attr(&item, keys::PK).unwrap_or_default(),
                string_attr(&item, keys::SK).unwrap_or_default(),
            );
            !existing.contains(&pk_sk)
        });
        // A known triple is a duplicate, but its `event_id` is still seen: claimed, so that the
        // same id again is a duplicate whatever it names then.
        let claims = known.into_iter().filter(|&i| events[i].event_id.is_some()).map(|i| async move {
            match &events[i].event_id {
                Some(id) => self.claim_event_id(scope, &events[i], id).await.map(|_| ()),
                None => Ok(()),
            }
        });
        let claims = stream::iter(claims).buffer_unordered(PUTS_IN_FLIGHT).try_collect::<Vec<()>>();

        let written = stream::iter(to_write)
            .map(|i| async move { self.record_one(scope, &events[i]).await.map(|new| (i, new)) })
            .buffer_unordered(PUTS_IN_FLIGHT)
            .try_collect::<Vec<(usize, bool)>>();
        let (written, _) = tokio::try_join!(written, claims)?;
        let mut newly_recorded = vec![false; events.len()];
        for (i, new) in written {
            newly_recorded[i] = new;
        }
        Ok(RecordOutcome { newly_recorded })
    }

    /// Writes interactions nobody else is writing (a bulk import, a benchmark's seed) with blind
    /// BatchWriteItem, 25 per request: no duplicate answers, no event ids. The stats still count
    /// each new item exactly once (from the stream); an item already there is rewritten and not
    /// counted again. Never for live events: use [`Store::record_interactions`].
    pub async fn bulk_load_interactions(
        &self,
        scope: &MessageScope,
        events: &[Interaction],
    ) -> Result<(), StoreError> {
        let mut seen = HashSet::with_capacity(events.len());
        let mut writes = Vec::with_capacity(events.len());
        for e in events.iter().filter(|e| seen.insert((e.subscription_id, e.kind))) {
            writes.push(put_request(interaction_item(scope, e))?);
        }
        self.batch_write(writes).await
    }

    /// One event: its `event_id` claimed first (if any), then its item put unless it exists.
    /// A crash between the two is healed by the retry: the claim names this same triple, so the
    /// retry goes on to the put.
    async fn record_one(&self, scope: &MessageScope, e: &Interaction) -> Result<bool, StoreError> {
        if let Some(event_id) = &e.event_id
            && !self.claim_event_id(scope, e, event_id).await?
        {
            return Ok(false);
        }
        self.stats().put_requests.fetch_add(1, Ordering::Relaxed);
        let mut item = interaction_item(scope, e);
        // Racing writers of one triple can write equal items (same second, same fields): the
        // token lets only the writer whose put landed recognise it after a lost answer.
        item.insert(ATTR_WRITE_TOKEN.into(), s(super::new_write_token()));
        let put = self.put_new(item, "PutItem interaction").await;
        Ok(super::unless_condition_failed(put)?.is_some())
    }

    /// Claims `event_id` for this event's triple: `true` when it is new to the app, or was
    /// claimed before for this very triple (a retry after a crash); `false` when it named
    /// another triple (the event is a duplicate).
    async fn claim_event_id(
        &self,
        scope: &MessageScope,
        e: &Interaction,
        event_id: &EventId,
    ) -> Result<bool, StoreError> {
        let mut item = key(keys::event_id(scope.app_id, event_id.as_str()), keys::SK_EVENT_ID);
        let names = event_id_triple(scope, e);
        item.insert(ATTR_EVENT_TRIPLE.into(), s(&names));
        // The event id is remembered as long as the data it could duplicate.
        let remember_until = self.clock().now_epoch() + keys::RETENTION_DAYS * 24 * 3600;
        item.insert(keys::EXPIRES_AT.into(), n(remember_until.max(scope.expires_at)));
        self.stats().put_requests.fetch_add(1, Ordering::Relaxed);
        let result = self
            .client()
            .put_item()
            .table_name(self.table())
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR #exp <= :now")
            .expression_attribute_names("#exp", keys::EXPIRES_AT)
            .expression_attribute_values(":now", n(self.clock().now_epoch()))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) => match aws_sdk_dynamodb::Error::from(e) {
                aws_sdk_dynamodb::Error::ConditionalCheckFailedException(c) => {
                    let existing = match c.item() {
                        Some(item) => string_attr(item, ATTR_EVENT_TRIPLE),
                        None => self.event_id_claim(scope, event_id).await?,
                    };
                    Ok(existing.as_deref() == Some(names.as_str()))
                }
                other => Err(StoreError::Dynamo { operation: "PutItem event id", source: Box::new(other) }),
            },
        }
    }

    async fn event_id_claim(
        &self,
        scope: &MessageScope,
        event_id: &EventId,
    ) -> Result<Option<String>, StoreError> {
        let item = self
            .client()
            .get_item()
            .table_name(self.table())
            .set_key(Some(key(keys::event_id(scope.app_id, event_id.as_str()), keys::SK_EVENT_ID)))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::dynamo("GetItem event id"))?
            .item;
        Ok(item.and_then(|item| string_attr(&item, ATTR_EVENT_TRIPLE)))
    }

    /// Per-kind counts of distinct subscriptions (see `stats.rs`); zero once the message's data
    /// has expired.
    pub async fn message_stats(&self, scope: &MessageScope) -> Result<HashMap<EventKind, u64>, StoreError> {
        let mut totals: HashMap<EventKind, u64> = EventKind::ALL.into_iter().map(|k| (k, 0)).collect();
        if self.clock().now_epoch() >= scope.expires_at {
            return Ok(totals);
        }
        for (kind, count) in self.read_stats(scope.message_id).await?.iter() {
            totals.insert(kind, count);
        }
        Ok(totals)
    }

    /// The kinds recorded for each of `subscriptions` (absent: nothing recorded); empty once the
    /// message's data has expired.
    pub async fn kinds_of(
        &self,
        scope: &MessageScope,
        channel: crate::domain::Channel,
        subscriptions: &[SubscriptionId],
    ) -> Result<HashMap<SubscriptionId, Vec<EventKind>>, StoreError> {
        let mut found: HashMap<SubscriptionId, Vec<EventKind>> = HashMap::new();
        if self.clock().now_epoch() >= scope.expires_at {
            return Ok(found);
        }
        let keys = subscriptions
            .iter()
            .flat_map(|sub| channel.event_kinds().iter().map(|kind| interaction_key(scope, *sub, *kind)))
            .collect();
        for item in self.batch_get(keys, Some("sk"), false).await? {
            if let Some((sub, kind)) =
                string_attr(&item, keys::SK).and_then(|sk| keys::parse_interaction_sort(&sk))
            {
                found.entry(sub).or_default().push(kind);
            }
        }
        Ok(found)
    }

    /// Every unexpired interaction of a message, in (subscription, kind) order, each exactly
    /// once: all shards are queried in parallel (each prefetching at most one page ahead) and
    /// merged. `start_after` resumes after a subscription (an audience cursor).
    pub fn interactions(
        &self,
        scope: &MessageScope,
        start_after: Option<SubscriptionId>,
    ) -> InteractionStream {
        self.interactions_from(scope, start_after.map_or(Start::Beginning, Start::After))
    }

    /// As [`Store::interactions`], from any [`Start`].
    pub fn interactions_from(&self, scope: &MessageScope, start: Start) -> InteractionStream {
        self.shard_streams(scope, start, PAGE_ITEMS, false)
    }

    /// As [`Store::interactions_from`], for a read that will likely stop early (one page of an
    /// audience): each shard's first Query page is limited to `first_page` items, and a shard's
    /// next page is only asked for once the reader has used three quarters of the previous one.
    pub fn interactions_paged(
        &self,
        scope: &MessageScope,
        start: Start,
        first_page: i32,
    ) -> InteractionStream {
        self.shard_streams(scope, start, first_page, true)
    }

    fn shard_streams(
        &self,
        scope: &MessageScope,
        start: Start,
        first_page: i32,
        on_demand: bool,
    ) -> InteractionStream {
        let now = self.clock().now_epoch();
        if now >= scope.expires_at {
            return sharded::empty();
        }
        sharded::read(self, Interactions { scope: *scope, start, now }, scope.shards, first_page, on_demand)
    }
}

/// A message's interactions as a sharded collection, from `start`, unexpired at `now`.
pub struct Interactions {
    scope: MessageScope,
    start: Start,
    now: i64,
}

impl Sharded for Interactions {
    type Row = InteractionRow;
    type Key = (SubscriptionId, char);
    const OPERATION: &'static str = "Query interactions";

    fn query(&self, store: &Store, shard: u8) -> QueryFluentBuilder {
        let query = store
            .client()
            .query()
            .table_name(store.table())
            .filter_expression("#exp > :now")
            .projection_expression("sk, #ext")
            .expression_attribute_names("#exp", keys::EXPIRES_AT)
            .expression_attribute_names("#ext", ATTR_EXTERNAL_USER)
            .expression_attribute_values(":pk", s(keys::interaction_partition(self.scope.message_id, shard)))
            .expression_attribute_values(":now", n(self.now));
        match self.start {
            Start::Beginning => query.key_condition_expression("pk = :pk"),
            // Past the upper bound of that subscription's keys: all of its kinds are skipped.
            Start::After(sub) => query
                .key_condition_expression("pk = :pk AND sk > :from")
                .expression_attribute_values(":from", s(keys::interaction_bounds(sub).1)),
            Start::At(sub) => query
                .key_condition_expression("pk = :pk AND sk >= :from")
                .expression_attribute_values(":from", s(keys::interaction_bounds(sub).0)),
        }
    }

    fn decode(&self, item: &Item) -> Result<InteractionRow, StoreError> {
        decode_row(item)
    }

    fn order_key(row: &InteractionRow) -> (SubscriptionId, char) {
        (row.subscription_id, row.kind.code())
    }
}

/// The merged, ordered stream of a message's interactions.
pub type InteractionStream = ShardedStream<Interactions>;

fn interaction_item(scope: &MessageScope, e: &Interaction) -> Item {
    let mut item = interaction_key(scope, e.subscription_id, e.kind);
    item.insert(keys::EXPIRES_AT.into(), n(scope.expires_at));
    item.insert(ATTR_OCCURRED_AT.into(), n(e.occurred_at.timestamp()));
    if let Some(user) = &e.external_user_id {
        item.insert(ATTR_EXTERNAL_USER.into(), s(user.as_str()));
    }
    if let Some(event_id) = &e.event_id {
        item.insert(ATTR_EVENT_ID.into(), s(event_id.as_str()));
    }
    item
}

fn event_id_triple(scope: &MessageScope, e: &Interaction) -> String {
    format!("{}#{}", scope.message_id, keys::interaction_sort(e.subscription_id, e.kind))
}

fn string_attr(item: &Item, name: &str) -> Option<String> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v.clone()),
        _ => None,
    }
}

fn decode_row(item: &Item) -> Result<InteractionRow, StoreError> {
    let sk =
        string_attr(item, keys::SK).ok_or_else(|| StoreError::Corrupt("interaction without sk".into()))?;
    let (subscription_id, kind) = keys::parse_interaction_sort(&sk)
        .ok_or_else(|| StoreError::Corrupt(format!("interaction sk `{sk}`")))?;
    let external_user_id = string_attr(item, ATTR_EXTERNAL_USER).and_then(|u| ExternalUserId::parse(&u).ok());
    Ok(InteractionRow { subscription_id, kind, external_user_id })
}

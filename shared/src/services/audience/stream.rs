//! The audience as a stream. The source message's interactions arrive merged from every shard
//! in (subscription, kind) order, so each source subscription's kinds are decided together;
//! matching subscriptions are resolved to target subscriptions a batch at a time. Nothing is
//! held beyond one batch and the shards' prefetch, whatever the audience size.
//!
//! No lookup per member (`adapters::store::people`): on the source's channel, the app's
//! inactive subscriptions of that channel are read once, in id order like the interactions,
//! and merged with them; across channels, the people of 100 matching recipients are one
//! BatchGetItem. A subscription that changes while an audience is read: the audience counts
//! it as the inactive set stood when its page of the set was read (an unsubscribe after that
//! is caught by the sender, which reads every recipient's subscription before it sends, so an
//! unsubscribe always wins over a running dispatch; a resubscribe after it waits for the next
//! audience). The member's `external_user_id` is the one recorded with its interactions.
//!
//! Exactly once without memory: a target subscription belongs to the *first* matching source
//! subscription (in id order) of its person. A later matching source subscription of the same
//! person looks up that person's earlier source subscriptions and stands back if one matched.
//! The order is a pure function of the data, so pages resumed from a cursor agree with it too.

use std::collections::VecDeque;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde::Serialize;

use crate::Store;
use crate::adapters::store::{InteractionRow, InteractionStream, Replica, ReplicaStream, Start, StoreError};
use crate::domain::{Channel, ExternalUserId, KindSet, Message, Predicate, SubscriptionId};
use crate::keys;

/// Matching source subscriptions resolved per batch.
const BATCH: usize = 100;
/// A bounded stream's first Query page per shard: interaction items per candidate (a push
/// recipient has sent, delivered and sometimes clicked or opened)…
const ITEMS_PER_CANDIDATE: usize = 3;
/// …plus this many, so that a shard with more than its share rarely needs a second request.
const FIRST_PAGE_SLACK: usize = 16;

/// What to compute: who of `source`'s recipients match `predicate`, reached on `target`.
#[derive(Debug, Clone)]
pub struct AudienceSpec {
    pub source: Message,
    pub predicate: Predicate,
    pub target: Channel,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Member {
    pub subscription_id: SubscriptionId,
    pub external_user_id: Option<ExternalUserId>,
}

/// One matching source subscription and the target subscriptions it contributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub source: SubscriptionId,
    /// In id order; empty when unsubscribed (same channel), unreachable, or already
    /// contributed by an earlier source subscription of the same person.
    pub targets: Vec<Member>,
    /// Cross-channel only: no external user id, or no active subscription on the target channel.
    pub unreachable: bool,
}

/// Where a page starts: at source subscription `source`, skipping its first `skip` targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub source: SubscriptionId,
    pub skip: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cursor is not one this service issued")]
pub struct BadCursor;

impl Cursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("1:{}:{}", self.source, self.skip))
    }

    pub fn decode(s: &str) -> Result<Self, BadCursor> {
        if s.len() > 128 {
            return Err(BadCursor);
        }
        let raw = URL_SAFE_NO_PAD.decode(s).map_err(|_| BadCursor)?;
        let text = std::str::from_utf8(&raw).map_err(|_| BadCursor)?;
        let mut parts = text.split(':');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("1"), Some(source), Some(skip), None) => Ok(Cursor {
                source: SubscriptionId::parse(source).map_err(|_| BadCursor)?,
                skip: skip.parse().map_err(|_| BadCursor)?,
            }),
            _ => Err(BadCursor),
        }
    }
}

/// Source subscriptions with their recorded kinds, one at a time.
struct SourceGroups {
    rows: InteractionStream,
    pending: Option<InteractionRow>,
}

impl SourceGroups {
    async fn next(
        &mut self,
    ) -> Option<Result<(SubscriptionId, KindSet, Option<ExternalUserId>), StoreError>> {
        let first = match self.pending.take() {
            Some(row) => row,
            None => match self.rows.next().await? {
                Ok(row) => row,
                Err(e) => return Some(Err(e)),
            },
        };
        let mut kinds = KindSet::default();
        kinds.insert(first.kind);
        let mut user = first.external_user_id;
        loop {
            match self.rows.next().await {
                Some(Ok(row)) if row.subscription_id == first.subscription_id => {
                    kinds.insert(row.kind);
                    user = user.or(row.external_user_id);
                }
                Some(Ok(row)) => {
                    self.pending = Some(row);
                    break;
                }
                Some(Err(e)) => return Some(Err(e)),
                None => break,
            }
        }
        Some(Ok((first.subscription_id, kinds, user)))
    }
}

/// The app's inactive subscriptions on the source's channel, from the stream's start on, read
/// page by page as the candidates (in the same id order) pass them.
struct InactiveSet {
    ids: BoxStream<'static, Result<SubscriptionId, StoreError>>,
    /// The smallest inactive id not yet passed, once read.
    next: Option<SubscriptionId>,
    done: bool,
}

impl InactiveSet {
    /// Whether `id` is inactive; ids must be asked in increasing order.
    async fn contains(&mut self, id: SubscriptionId) -> Result<bool, StoreError> {
        loop {
            match self.next {
                Some(next) if next >= id => return Ok(next == id),
                _ if self.done => return Ok(false),
                _ => {}
            }
            match self.ids.next().await {
                Some(Ok(next)) => self.next = Some(next),
                Some(Err(e)) => return Err(e),
                None => {
                    self.next = None;
                    self.done = true;
                }
            }
        }
    }
}

/// The people replicas of the source channel's subscriptions, from the stream's start on, read
/// as the candidates (in the same id order) pass them.
struct ReplicaSet {
    rows: ReplicaStream,
    /// The replica with the smallest id not yet passed, once read.
    next: Option<Replica>,
    done: bool,
}

impl ReplicaSet {
    /// The replica of `id` (`None`: the subscription has no person); ids must be asked in
    /// increasing order.
    async fn take(&mut self, id: SubscriptionId) -> Result<Option<Replica>, StoreError> {
        loop {
            match &self.next {
                Some(next) if next.subscription_id > id => return Ok(None),
                Some(next) if next.subscription_id == id => return Ok(self.next.take()),
                _ if self.done => return Ok(None),
                _ => {}
            }
            match self.rows.next().await {
                Some(Ok(next)) => self.next = Some(next),
                Some(Err(e)) => return Err(e),
                None => {
                    self.next = None;
                    self.done = true;
                }
            }
        }
    }
}

/// What a candidate is resolved against: its own channel's inactive set, or its people.
enum Against {
    SameChannel(InactiveSet),
    CrossChannel(ReplicaSet),
}

/// The audience, resolved source subscription by source subscription, in their id order: each
/// matching candidate against the inactive set (same channel) or the people replicas (across
/// channels), both streamed beside the interactions.
pub struct AudienceStream {
    store: Store,
    spec: AudienceSpec,
    groups: SourceGroups,
    against: Against,
    resolved: VecDeque<Resolved>,
    /// Matching source subscriptions still to be resolved ahead of the reader; `None`: no limit.
    budget: Option<usize>,
    /// No source subscription left to read.
    exhausted: bool,
    failed: bool,
}

impl AudienceStream {
    pub fn new(store: &Store, spec: AudienceSpec, start: Start) -> Self {
        let rows = store.interactions_from(&spec.source.scope(), start);
        Self::with_rows(store, spec, rows, start, None)
    }

    /// A stream that resolves at most `candidates` matching source subscriptions until more
    /// are granted with [`AudienceStream::grant`], and reads the shards in first pages sized
    /// for that many: what one page of an export needs, and not much more.
    pub fn bounded(store: &Store, spec: AudienceSpec, start: Start, candidates: usize) -> Self {
        // Each source subscription has a few interaction items (one per kind recorded), spread
        // over the shards; the first page of each shard covers about its share of the
        // candidates with room to spare, later pages grow.
        let shards = usize::from(spec.source.scope().shards.max(1));
        let per_shard = (candidates * ITEMS_PER_CANDIDATE).div_ceil(shards) + FIRST_PAGE_SLACK;
        let rows = store.interactions_paged(
            &spec.source.scope(),
            start,
            i32::try_from(per_shard).unwrap_or(i32::MAX),
        );
        Self::with_rows(store, spec, rows, start, Some(candidates))
    }

    fn with_rows(
        store: &Store,
        spec: AudienceSpec,
        rows: InteractionStream,
        start: Start,
        budget: Option<usize>,
    ) -> Self {
        let from = match start {
            Start::Beginning => None,
            Start::At(sub) | Start::After(sub) => Some(sub),
        };
        let (app, channel) = (spec.source.app_id, spec.source.channel);
        let against = if spec.target == channel {
            // A bounded read pages the inactive set as it pages the shards: about its candidates.
            let page_items = budget.map(|b| i32::try_from(b.max(1)).unwrap_or(i32::MAX));
            let ids = store.inactive_subscriptions(app, channel, from, page_items).boxed();
            Against::SameChannel(InactiveSet { ids, next: None, done: false })
        } else {
            let per_shard = budget.map(|b| {
                let per_shard = b.div_ceil(usize::from(keys::REPLICA_SHARDS)) + FIRST_PAGE_SLACK;
                i32::try_from(per_shard).unwrap_or(i32::MAX)
            });
            let rows = store.replicas(app, channel, from, per_shard);
            Against::CrossChannel(ReplicaSet { rows, next: None, done: false })
        };
        Self {
            store: store.clone(),
            spec,
            groups: SourceGroups { rows, pending: None },
            against,
            resolved: VecDeque::new(),
            budget,
            exhausted: false,
            failed: false,
        }
    }

    /// Allows `n` more matching source subscriptions to be resolved (a bounded stream).
    pub fn grant(&mut self, n: usize) {
        if let Some(budget) = self.budget.as_mut() {
            *budget += n;
        }
    }

    pub async fn next(&mut self) -> Option<Result<Resolved, StoreError>> {
        if self.failed {
            return None;
        }
        loop {
            if let Some(resolved) = self.resolved.pop_front() {
                return Some(Ok(resolved));
            }
            if self.exhausted {
                return None;
            }
            // A bounded stream out of budget still reads on when nothing is resolved: the
            // budget limits how far it reads ahead, never what it yields.
            if let Err(e) = self.gather().await {
                self.failed = true;
                return Some(Err(e));
            }
        }
    }

    /// Reads the next batch of matching source subscriptions and resolves it.
    async fn gather(&mut self) -> Result<(), StoreError> {
        let channel = self.spec.source.channel;
        let size = self.budget.map_or(BATCH, |b| b.clamp(1, BATCH));
        let mut batch = Vec::with_capacity(size);
        while batch.len() < size {
            match self.groups.next().await {
                Some(group) => {
                    let (sub, kinds, user) = group?;
                    if self.spec.predicate.matches(channel, kinds) {
                        batch.push((sub, user));
                    }
                }
                None => {
                    self.exhausted = true;
                    break;
                }
            }
        }
        if let Some(budget) = self.budget.as_mut() {
            *budget = budget.saturating_sub(batch.len());
        }
        for (source, user) in batch {
            let resolved = match &mut self.against {
                Against::SameChannel(inactive) => {
                    let targets = if inactive.contains(source).await? {
                        Vec::new()
                    } else {
                        vec![Member { subscription_id: source, external_user_id: user }]
                    };
                    Resolved { source, targets, unreachable: false }
                }
                Against::CrossChannel(replicas) => {
                    let replica = replicas.take(source).await?;
                    cross_channel(&self.store, &self.spec, source, replica).await?
                }
            };
            self.resolved.push_back(resolved);
        }
        Ok(())
    }
}

/// A matching source subscription mapped to the target channel through its person's replica
/// (and, for a person with an earlier subscription on the source's channel, that one's kinds:
/// the person's targets go to the first match).
async fn cross_channel(
    store: &Store,
    spec: &AudienceSpec,
    source: SubscriptionId,
    replica: Option<Replica>,
) -> Result<Resolved, StoreError> {
    let message = &spec.source;
    let unreachable = Resolved { source, targets: Vec::new(), unreachable: true };
    let Some(Replica { external_user_id: user, person, .. }) = replica else { return Ok(unreachable) };
    let targets: Vec<Member> = person
        .active_on(spec.target)
        .into_iter()
        .map(|subscription_id| Member { subscription_id, external_user_id: Some(user.clone()) })
        .collect();
    if targets.is_empty() {
        return Ok(unreachable);
    }
    // An earlier matching source subscription of this person already contributed them.
    let earlier = person.earlier_on(message.channel, source);
    if !earlier.is_empty() {
        let kinds = store.kinds_of(&message.scope(), message.channel, &earlier).await?;
        let taken =
            kinds.values().any(|k| spec.predicate.matches(message.channel, k.iter().copied().collect()));
        if taken {
            return Ok(Resolved { source, targets: Vec::new(), unreachable: false });
        }
    }
    Ok(Resolved { source, targets, unreachable: false })
}

/// One page of an audience and where the next one starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub members: Vec<Member>,
    pub next_cursor: Option<Cursor>,
}

pub async fn page(
    store: &Store,
    spec: AudienceSpec,
    cursor: Option<Cursor>,
    limit: usize,
) -> Result<Page, StoreError> {
    let start = cursor.map_or(Start::Beginning, |c| Start::At(c.source));
    // The page ends at its (limit + 1)-th member, and every matching source subscription
    // contributes at least one member unless it turns out to contribute none to this page:
    // that many candidates, one more for each that contributes none, are all it can need.
    let mut audience = AudienceStream::bounded(store, spec, start, limit.saturating_add(1));
    let mut members = Vec::with_capacity(limit);
    while let Some(resolved) = audience.next().await {
        let resolved = resolved?;
        let skip = match cursor {
            Some(c) if c.source == resolved.source => c.skip as usize,
            _ => 0,
        };
        if resolved.targets.len() <= skip {
            audience.grant(1);
        }
        for (i, member) in resolved.targets.into_iter().enumerate().skip(skip) {
            if members.len() == limit {
                let next = Cursor { source: resolved.source, skip: u32::try_from(i).unwrap_or(u32::MAX) };
                return Ok(Page { members, next_cursor: Some(next) });
            }
            members.push(member);
        }
    }
    Ok(Page { members, next_cursor: None })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Counts {
    pub count: u64,
    pub unreachable: u64,
}

/// Walks the whole audience without keeping it.
pub async fn count(store: &Store, spec: AudienceSpec) -> Result<Counts, StoreError> {
    let mut audience = AudienceStream::new(store, spec, Start::Beginning);
    let mut counts = Counts::default();
    while let Some(resolved) = audience.next().await {
        let resolved = resolved?;
        counts.count += resolved.targets.len() as u64;
        counts.unreachable += u64::from(resolved.unreachable);
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_forgeries() {
        let c = Cursor { source: SubscriptionId::new(), skip: 3 };
        assert_eq!(Cursor::decode(&c.encode()), Ok(c));
        for bad in
            ["", "x", "MTp4OjE", &"A".repeat(200), &URL_SAFE_NO_PAD.encode("2:01ARZ3NDEKTSV4RRFFQ69G5FAV:0")]
        {
            assert_eq!(Cursor::decode(bad), Err(BadCursor), "{bad}");
        }
    }
}

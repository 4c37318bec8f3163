//! The audience as a stream. The source message's interactions arrive merged from every shard
//! in (subscription, kind) order, so each source subscription's kinds are decided together;
//! matching subscriptions are resolved to target subscriptions a batch at a time. Nothing is
//! held beyond one batch and the shards' prefetch, whatever the audience size.
//!
//! Exactly once without memory: a target subscription belongs to the *first* matching source
//! subscription (in id order) of its person. A later matching source subscription of the same
//! person looks up that person's earlier source subscriptions and stands back if one matched.
//! The order is a pure function of the data, so pages resumed from a cursor agree with it too.

use std::collections::VecDeque;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::{StreamExt, TryStreamExt, stream};
use serde::Serialize;

use super::predicate::{KindSet, Predicate};
use crate::Store;
use crate::domain::{Channel, ExternalUserId, SubscriptionId};
use crate::store::{InteractionRow, InteractionStream, Message, Start, StoreError};

/// Matching source subscriptions resolved per batch (one BatchGetItem for same-channel).
const BATCH: usize = 100;
/// Person lookups in flight for cross-channel audiences.
const PERSON_LOOKUPS: usize = 16;

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

/// The audience, resolved source subscription by source subscription.
pub struct AudienceStream {
    store: Store,
    spec: AudienceSpec,
    groups: SourceGroups,
    resolved: VecDeque<Resolved>,
    done: bool,
}

impl AudienceStream {
    pub fn new(store: &Store, spec: AudienceSpec, start: Start) -> Self {
        let rows = store.interactions_from(&spec.source.scope(), start);
        Self {
            store: store.clone(),
            spec,
            groups: SourceGroups { rows, pending: None },
            resolved: VecDeque::new(),
            done: false,
        }
    }

    pub async fn next(&mut self) -> Option<Result<Resolved, StoreError>> {
        if self.resolved.is_empty()
            && !self.done
            && let Err(e) = self.fill().await
        {
            self.done = true;
            return Some(Err(e));
        }
        self.resolved.pop_front().map(Ok)
    }

    async fn fill(&mut self) -> Result<(), StoreError> {
        let channel = self.spec.source.channel;
        let mut batch = Vec::with_capacity(BATCH);
        while batch.len() < BATCH {
            match self.groups.next().await {
                Some(group) => {
                    let (sub, kinds, user) = group?;
                    if self.spec.predicate.matches(channel, kinds) {
                        batch.push((sub, user));
                    }
                }
                None => {
                    self.done = true;
                    break;
                }
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        let resolved = if self.spec.target == channel {
            self.same_channel(batch).await?
        } else {
            self.cross_channel(batch).await?
        };
        self.resolved.extend(resolved);
        Ok(())
    }

    async fn same_channel(
        &self,
        batch: Vec<(SubscriptionId, Option<ExternalUserId>)>,
    ) -> Result<Vec<Resolved>, StoreError> {
        let app = self.spec.source.app_id;
        let subscriptions = self.store.get_subscriptions(app, batch.iter().map(|(s, _)| *s)).await?;
        Ok(batch
            .into_iter()
            .map(|(source, _)| {
                let targets = subscriptions
                    .get(&source)
                    .filter(|s| s.is_active())
                    .map(|s| Member {
                        subscription_id: s.subscription_id,
                        external_user_id: s.external_user_id.clone(),
                    })
                    .into_iter()
                    .collect();
                Resolved { source, targets, unreachable: false }
            })
            .collect())
    }

    async fn cross_channel(
        &self,
        batch: Vec<(SubscriptionId, Option<ExternalUserId>)>,
    ) -> Result<Vec<Resolved>, StoreError> {
        stream::iter(batch)
            .map(|(source, user)| self.resolve_person(source, user))
            .buffered(PERSON_LOOKUPS)
            .try_collect()
            .await
    }

    async fn resolve_person(
        &self,
        source: SubscriptionId,
        user: Option<ExternalUserId>,
    ) -> Result<Resolved, StoreError> {
        let unreachable = Resolved { source, targets: Vec::new(), unreachable: true };
        let Some(user) = user else { return Ok(unreachable) };
        let message = &self.spec.source;
        let person = self.store.person_subscriptions(message.app_id, &user).await?;
        let mut targets: Vec<Member> = person
            .iter()
            .filter(|s| s.channel == self.spec.target && s.is_active())
            .map(|s| Member { subscription_id: s.subscription_id, external_user_id: Some(user.clone()) })
            .collect();
        if targets.is_empty() {
            return Ok(unreachable);
        }
        targets.sort_by_key(|m| m.subscription_id);
        // An earlier matching source subscription of this person already contributed them.
        let earlier: Vec<SubscriptionId> = person
            .iter()
            .filter(|s| s.channel == message.channel && s.subscription_id < source)
            .map(|s| s.subscription_id)
            .collect();
        if !earlier.is_empty() {
            let kinds = self.store.kinds_of(&message.scope(), message.channel, &earlier).await?;
            let taken = kinds
                .values()
                .any(|k| self.spec.predicate.matches(message.channel, k.iter().copied().collect()));
            if taken {
                return Ok(Resolved { source, targets: Vec::new(), unreachable: false });
            }
        }
        Ok(Resolved { source, targets, unreachable: false })
    }
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
    let mut audience = AudienceStream::new(store, spec, start);
    let mut members = Vec::with_capacity(limit);
    while let Some(resolved) = audience.next().await {
        let resolved = resolved?;
        let skip = match cursor {
            Some(c) if c.source == resolved.source => c.skip as usize,
            _ => 0,
        };
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

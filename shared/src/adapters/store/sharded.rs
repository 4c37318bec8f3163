//! A collection spread over shard partitions, each sorted by its sort key, read back as one
//! stream in sort-key order: every shard is queried in parallel (each prefetching at most one
//! page ahead) and the shards are merged. The message's interactions and the people replicas of
//! an app's channel (`people.rs`) are read this way.

use std::collections::VecDeque;
use std::sync::Arc;

use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use tokio::sync::{Notify, mpsc};

use super::batch::Item;
use super::{Store, StoreError};

/// Items per Query page of a full read at first; each next page of a shard doubles, up to
/// [`PAGE_ITEMS_MAX`]: small pages keep each shard's prefetch buffer small, larger ones save
/// requests on a long read.
pub(crate) const PAGE_ITEMS: i32 = 500;
pub(crate) const PAGE_ITEMS_MAX: i32 = 2000;

/// What a sharded read needs to know about its collection.
pub trait Sharded: Send + Sync + 'static {
    type Row: Send + 'static;
    type Key: Ord;
    /// The Query of one shard, from where the read starts, key condition and all.
    fn query(&self, store: &Store, shard: u8) -> QueryFluentBuilder;
    fn decode(&self, item: &Item) -> Result<Self::Row, StoreError>;
    fn order_key(row: &Self::Row) -> Self::Key;
    /// For errors: "Query interactions".
    const OPERATION: &'static str;
}

type Page<R> = Result<Vec<R>, StoreError>;

/// Reads `shards` shards of `collection`; pages after the first are read ahead (`on_demand`:
/// only once the reader has used three quarters of the previous one).
pub(crate) fn read<S: Sharded>(
    store: &Store,
    collection: S,
    shards: u8,
    first_page: i32,
    on_demand: bool,
) -> ShardedStream<S> {
    let first_page = first_page.clamp(1, PAGE_ITEMS_MAX);
    let collection = Arc::new(collection);
    let mut cursors = Vec::with_capacity(usize::from(shards));
    for shard in 0..shards {
        let (tx, rx) = mpsc::channel(1);
        let demand = on_demand.then(|| Arc::new(Notify::new()));
        let query = collection.query(store, shard);
        tokio::spawn(query_shard(Arc::clone(&collection), query, first_page, demand.clone(), tx));
        cursors.push(ShardCursor { page: VecDeque::new(), rx: Some(rx), demand, low_water: 0, asked: true });
    }
    ShardedStream { shards: cursors }
}

/// A stream of nothing (a collection known to be empty, e.g. expired).
pub(crate) fn empty<S: Sharded>() -> ShardedStream<S> {
    ShardedStream { shards: Vec::new() }
}

async fn query_shard<S: Sharded>(
    collection: Arc<S>,
    query: QueryFluentBuilder,
    first_page: i32,
    demand: Option<Arc<Notify>>,
    tx: mpsc::Sender<Page<S::Row>>,
) {
    let mut limit = first_page;
    let mut exclusive_start = None;
    loop {
        let page = query.clone().limit(limit).set_exclusive_start_key(exclusive_start.take()).send().await;
        let (rows, last_key) = match page.map_err(StoreError::dynamo(S::OPERATION)) {
            Ok(p) => {
                let rows = p
                    .items
                    .unwrap_or_default()
                    .iter()
                    .map(|i| collection.decode(i))
                    .collect::<Result<Vec<_>, _>>();
                (rows, p.last_evaluated_key)
            }
            Err(e) => (Err(e), None),
        };
        let failed = rows.is_err();
        if tx.send(rows).await.is_err() || failed {
            return; // the reader is gone, or has been told of the error
        }
        match last_key {
            Some(key) if !key.is_empty() => exclusive_start = Some(key),
            _ => return,
        }
        if let Some(demand) = &demand {
            tokio::select! {
                () = demand.notified() => {}
                () = tx.closed() => return,
            }
        }
        limit = limit.saturating_mul(2).min(PAGE_ITEMS_MAX);
    }
}

struct ShardCursor<R> {
    page: VecDeque<R>,
    /// `None` once the shard is exhausted.
    rx: Option<mpsc::Receiver<Page<R>>>,
    /// On-demand reads: told when the next page is wanted, at most once per page received
    /// (`asked` starts true: the first page is read without being asked for).
    demand: Option<Arc<Notify>>,
    low_water: usize,
    asked: bool,
}

impl<R> ShardCursor<R> {
    fn ask(&mut self) {
        if let Some(demand) = &self.demand
            && !self.asked
        {
            self.asked = true;
            demand.notify_one();
        }
    }
}

/// The merged, ordered stream. Memory: at most two pages (of at most [`PAGE_ITEMS_MAX`] items)
/// per shard, whatever the collection's size.
pub struct ShardedStream<S: Sharded> {
    shards: Vec<ShardCursor<S::Row>>,
}

impl<S: Sharded> ShardedStream<S> {
    pub async fn next(&mut self) -> Option<Result<S::Row, StoreError>> {
        for shard in &mut self.shards {
            while shard.page.is_empty() {
                shard.ask();
                let Some(rx) = shard.rx.as_mut() else { break };
                match rx.recv().await {
                    Some(Ok(rows)) => {
                        shard.low_water = rows.len() / 4;
                        shard.asked = false;
                        shard.page.extend(rows);
                    }
                    Some(Err(e)) => {
                        shard.rx = None;
                        return Some(Err(e));
                    }
                    None => shard.rx = None,
                }
            }
        }
        let next = self
            .shards
            .iter_mut()
            .filter(|s| !s.page.is_empty())
            .min_by_key(|s| s.page.front().map(S::order_key))?;
        let row = next.page.pop_front();
        if next.page.len() <= next.low_water {
            next.ask();
        }
        row.map(Ok)
    }

    pub fn into_stream(self) -> impl futures::Stream<Item = Result<S::Row, StoreError>> {
        futures::stream::unfold(self, |mut s| async move { s.next().await.map(|row| (row, s)) })
    }
}

//! Counting what a run asks of the AWS stand-ins, per operation: requests (every attempt that
//! got an answer), and for DynamoDB the capacity units the engine itself reports
//! (`ReturnConsumedCapacity=TOTAL` is added to every request), items scanned and returned.
//!
//! DynamoDB Local charges nothing for a key a BatchGetItem asks for and does not find; AWS
//! charges a read of a missing item like a read of a small one. Those keys are counted apart
//! (`missing_key_units`) so the cost can be stated both ways.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::operation::batch_get_item::{BatchGetItemInput, BatchGetItemOutput};
use aws_sdk_dynamodb::operation::batch_write_item::{BatchWriteItemInput, BatchWriteItemOutput};
use aws_sdk_dynamodb::operation::delete_item::{DeleteItemInput, DeleteItemOutput};
use aws_sdk_dynamodb::operation::get_item::{GetItemInput, GetItemOutput};
use aws_sdk_dynamodb::operation::put_item::{PutItemInput, PutItemOutput};
use aws_sdk_dynamodb::operation::query::{QueryInput, QueryOutput};
use aws_sdk_dynamodb::operation::scan::{ScanInput, ScanOutput};
use aws_sdk_dynamodb::operation::transact_write_items::{TransactWriteItemsInput, TransactWriteItemsOutput};
use aws_sdk_dynamodb::operation::update_item::{UpdateItemInput, UpdateItemOutput};
use aws_sdk_dynamodb::types::{AttributeValue, ConsumedCapacity, ReturnConsumedCapacity};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    AfterDeserializationInterceptorContextRef, BeforeSerializationInterceptorContextMut,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use serde::Serialize;

/// What one operation was asked and charged.
#[derive(Debug, Default, Clone, Serialize, PartialEq)]
pub struct OpTally {
    pub requests: u64,
    /// Capacity units as DynamoDB Local reports them.
    pub units: f64,
    /// Read units AWS would add for BatchGetItem keys that were not found.
    pub missing_key_units: f64,
    /// Query/Scan: items read before the filter; BatchGetItem: keys asked for.
    pub scanned: u64,
    /// Items returned (Query/Scan/BatchGetItem) or written (BatchWriteItem).
    pub items: u64,
}

/// Tallies per operation name, shared by the clients of one process; and the writes asked of
/// each item (every PutItem, UpdateItem, DeleteItem, and each request of a BatchWriteItem or a
/// TransactWriteItems, counted once per call whatever its outcome: a write whose condition
/// fails consumes a write unit too), to find the hottest.
#[derive(Debug, Default)]
pub struct Tally {
    ops: Mutex<BTreeMap<String, OpTally>>,
    item_writes: Mutex<HashMap<(String, String), u64>>,
}

/// The most written item and partition key of a phase.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Hottest {
    /// Items written at least once.
    pub items: usize,
    /// `pk` / `sk` of the most written item, and its writes.
    pub item: String,
    pub item_writes: u64,
    /// The partition key with the most writes over all its items, and those writes.
    pub partition_key: String,
    pub partition_key_writes: u64,
}

impl Tally {
    pub fn snapshot(&self) -> Snapshot {
        Snapshot { ops: self.ops.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone() }
    }

    /// The hottest item and partition key since the last call (the item counts start afresh).
    pub fn take_hottest(&self) -> Hottest {
        let writes =
            std::mem::take(&mut *self.item_writes.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        let mut per_pk: HashMap<&str, u64> = HashMap::new();
        for ((pk, _), n) in &writes {
            *per_pk.entry(pk.as_str()).or_default() += n;
        }
        let mut hottest = Hottest { items: writes.len(), ..Hottest::default() };
        if let Some(((pk, sk), n)) = writes.iter().max_by_key(|(key, n)| (**n, std::cmp::Reverse(*key))) {
            (hottest.item, hottest.item_writes) = (format!("{pk} / {sk}"), *n);
        }
        if let Some((pk, n)) = per_pk.iter().max_by_key(|(pk, n)| (**n, std::cmp::Reverse(**pk))) {
            (hottest.partition_key, hottest.partition_key_writes) = ((*pk).to_owned(), *n);
        }
        hottest
    }

    fn wrote(&self, keys: impl IntoIterator<Item = Option<(String, String)>>) {
        let mut writes = self.item_writes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for key in keys.into_iter().flatten() {
            *writes.entry(key).or_default() += 1;
        }
    }

    fn add(&self, op: &str, f: impl FnOnce(&mut OpTally)) {
        let mut ops = self.ops.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(ops.entry(op.to_owned()).or_default());
    }
}

/// Tallies at one moment; `since` gives what a phase did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Snapshot {
    pub ops: BTreeMap<String, OpTally>,
}

const READS: [&str; 5] = ["GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"];
const WRITES: [&str; 5] = ["PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"];

impl Snapshot {
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        let mut ops = BTreeMap::new();
        for (name, now) in &self.ops {
            let before = earlier.ops.get(name).cloned().unwrap_or_default();
            let diff = OpTally {
                requests: now.requests - before.requests,
                units: now.units - before.units,
                missing_key_units: now.missing_key_units - before.missing_key_units,
                scanned: now.scanned - before.scanned,
                items: now.items - before.items,
            };
            if diff != OpTally::default() {
                ops.insert(name.clone(), diff);
            }
        }
        Snapshot { ops }
    }

    /// Both phases' tallies added up.
    pub fn plus(&self, other: &Snapshot) -> Snapshot {
        let mut ops = self.ops.clone();
        for (name, t) in &other.ops {
            let sum = ops.entry(name.clone()).or_default();
            sum.requests += t.requests;
            sum.units += t.units;
            sum.missing_key_units += t.missing_key_units;
            sum.scanned += t.scanned;
            sum.items += t.items;
        }
        Snapshot { ops }
    }

    pub fn op(&self, name: &str) -> OpTally {
        self.ops.get(name).cloned().unwrap_or_default()
    }

    fn sum(&self, names: &[&str], f: impl Fn(&OpTally) -> f64) -> f64 {
        names.iter().map(|n| self.ops.get(*n).map_or(0.0, &f)).sum()
    }

    /// DynamoDB requests only (reads and writes), not table management.
    pub fn dynamodb_requests(&self) -> u64 {
        READS.iter().chain(WRITES.iter()).map(|n| self.op(n).requests).sum()
    }

    /// Read units as DynamoDB Local reports them.
    pub fn read_units(&self) -> f64 {
        self.sum(&READS, |o| o.units)
    }

    /// Read units as AWS bills them (missing BatchGetItem keys included).
    pub fn billed_read_units(&self) -> f64 {
        self.read_units() + self.sum(&READS, |o| o.missing_key_units)
    }

    pub fn write_units(&self) -> f64 {
        self.sum(&WRITES, |o| o.units)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "requests": self.dynamodb_requests(),
            "read_units": self.read_units(),
            "billed_read_units": self.billed_read_units(),
            "write_units": self.write_units(),
            "ops": self.ops,
        })
    }
}

/// What a BatchGetItem asked for, kept from serialization to deserialization.
#[derive(Debug, Clone, Copy)]
struct AskedKeys {
    keys: u64,
    /// Read units per missing key: 1 strongly consistent, 0.5 eventually consistent.
    unit: f64,
}

impl Storable for AskedKeys {
    type Storer = StoreReplace<Self>;
}

/// The interceptor; add it to each client whose requests should be counted.
#[derive(Debug, Clone)]
pub struct Counting(pub Arc<Tally>);

/// An item's (`pk`, `sk`) as text, from its key or the whole item.
fn item_key(item: Option<&HashMap<String, AttributeValue>>) -> Option<(String, String)> {
    let text = |v: &AttributeValue| match v {
        AttributeValue::S(s) => s.clone(),
        AttributeValue::N(n) => n.clone(),
        other => format!("{other:?}"),
    };
    let item = item?;
    Some((text(item.get("pk")?), item.get("sk").map(text).unwrap_or_default()))
}

fn total(capacity: Option<&ConsumedCapacity>) -> f64 {
    capacity.and_then(ConsumedCapacity::capacity_units).unwrap_or(0.0)
}

fn totals(capacity: &[ConsumedCapacity]) -> f64 {
    capacity.iter().filter_map(ConsumedCapacity::capacity_units).sum()
}

impl Intercept for Counting {
    fn name(&self) -> &'static str {
        "retarget-bench-counting"
    }

    fn modify_before_serialization(
        &self,
        context: &mut BeforeSerializationInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let input = context.input_mut();
        let total = Some(ReturnConsumedCapacity::Total);
        if let Some(i) = input.downcast_mut::<QueryInput>() {
            i.return_consumed_capacity = total;
        } else if let Some(i) = input.downcast_mut::<ScanInput>() {
            i.return_consumed_capacity = total;
        } else if let Some(i) = input.downcast_mut::<GetItemInput>() {
            i.return_consumed_capacity = total;
        } else if let Some(i) = input.downcast_mut::<PutItemInput>() {
            i.return_consumed_capacity = total;
            self.0.wrote([item_key(i.item.as_ref())]);
        } else if let Some(i) = input.downcast_mut::<UpdateItemInput>() {
            i.return_consumed_capacity = total;
            self.0.wrote([item_key(i.key.as_ref())]);
        } else if let Some(i) = input.downcast_mut::<DeleteItemInput>() {
            i.return_consumed_capacity = total;
            self.0.wrote([item_key(i.key.as_ref())]);
        } else if let Some(i) = input.downcast_mut::<BatchWriteItemInput>() {
            i.return_consumed_capacity = total;
            let requests = i.request_items.iter().flat_map(|m| m.values()).flatten();
            self.0.wrote(requests.map(|r| match (&r.put_request, &r.delete_request) {
                (Some(put), _) => item_key(Some(&put.item)),
                (None, Some(delete)) => item_key(Some(&delete.key)),
                (None, None) => None,
            }));
        } else if let Some(i) = input.downcast_mut::<TransactWriteItemsInput>() {
            i.return_consumed_capacity = total;
            self.0.wrote(i.transact_items.iter().flatten().map(|t| {
                if let Some(put) = &t.put {
                    item_key(Some(&put.item))
                } else if let Some(update) = &t.update {
                    item_key(Some(&update.key))
                } else if let Some(delete) = &t.delete {
                    item_key(Some(&delete.key))
                } else {
                    t.condition_check.as_ref().and_then(|c| item_key(Some(&c.key)))
                }
            }));
        } else if let Some(i) = input.downcast_mut::<BatchGetItemInput>() {
            i.return_consumed_capacity = total;
            let (mut keys, mut unit) = (0u64, 0.5);
            for table in i.request_items.iter().flat_map(|m| m.values()) {
                keys += table.keys.len() as u64;
                if table.consistent_read == Some(true) {
                    unit = 1.0;
                }
            }
            cfg.interceptor_state().store_put(AskedKeys { keys, unit });
        }
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let op = cfg.load::<Metadata>().map_or("unknown", |m| m.name()).to_owned();
        let output = match context.output_or_error() {
            Ok(output) => output,
            Err(_) => {
                self.0.add(&format!("{op} (error)"), |t| t.requests += 1);
                return Ok(());
            }
        };
        let asked = cfg.load::<AskedKeys>().copied();
        self.0.add(&op, |t| {
            t.requests += 1;
            if let Some(o) = output.downcast_ref::<QueryOutput>() {
                t.units += total(o.consumed_capacity.as_ref());
                t.scanned += o.scanned_count.max(0) as u64;
                t.items += o.count.max(0) as u64;
            } else if let Some(o) = output.downcast_ref::<ScanOutput>() {
                t.units += total(o.consumed_capacity.as_ref());
                t.scanned += o.scanned_count.max(0) as u64;
                t.items += o.count.max(0) as u64;
            } else if let Some(o) = output.downcast_ref::<GetItemOutput>() {
                t.units += total(o.consumed_capacity.as_ref());
                t.items += u64::from(o.item.is_some());
            } else if let Some(o) = output.downcast_ref::<PutItemOutput>() {
                t.units += total(o.consumed_capacity.as_ref());
            } else if let Some(o) = output.downcast_ref::<UpdateItemOutput>() {
                t.units += total(o.consumed_capacity.as_ref());
            } else if let Some(o) = output.downcast_ref::<DeleteItemOutput>() {
                t.units += total(o.consumed_capacity.as_ref());
            } else if let Some(o) = output.downcast_ref::<TransactWriteItemsOutput>() {
                t.units += totals(o.consumed_capacity.as_deref().unwrap_or_default());
            } else if let Some(o) = output.downcast_ref::<BatchWriteItemOutput>() {
                t.units += totals(o.consumed_capacity.as_deref().unwrap_or_default());
            } else if let Some(o) = output.downcast_ref::<BatchGetItemOutput>() {
                t.units += totals(o.consumed_capacity.as_deref().unwrap_or_default());
                let found: u64 = o.responses.iter().flat_map(|m| m.values()).map(|v| v.len() as u64).sum();
                let unprocessed: u64 =
                    o.unprocessed_keys.iter().flat_map(|m| m.values()).map(|k| k.keys.len() as u64).sum();
                t.items += found;
                if let Some(asked) = asked {
                    t.scanned += asked.keys;
                    let missing = asked.keys.saturating_sub(found + unprocessed);
                    t.missing_key_units += missing as f64 * asked.unit;
                }
            }
        });
        Ok(())
    }
}

/// The AWS clients of one bench process, all counted into one tally.
pub struct Clients {
    pub sdk: aws_config::SdkConfig,
    pub tally: Arc<Tally>,
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub eventbridge: aws_sdk_eventbridge::Client,
}

impl Clients {
    pub async fn load() -> Self {
        let sdk = retarget_shared::adapters::aws::load().await;
        let tally = Arc::new(Tally::default());
        let counting = Counting(tally.clone());
        let dynamodb = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&sdk).interceptor(counting.clone()).build(),
        );
        let sqs = aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(&sdk).interceptor(counting.clone()).build(),
        );
        let eventbridge = aws_sdk_eventbridge::Client::from_conf(
            aws_sdk_eventbridge::config::Builder::from(&sdk).interceptor(counting).build(),
        );
        Self { sdk, tally, dynamodb, sqs, eventbridge }
    }
}

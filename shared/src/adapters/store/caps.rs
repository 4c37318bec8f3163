//! Frequency-cap ledgers: one item per person and app, holding the messages counted toward the
//! cap within its window ([`Ledger`]). Taking a slot reads the ledger, decides ([`admit`]) and
//! writes it back on condition that its version did not move: two senders racing for the last
//! slot of one person cannot both win — the loser reads again and finds the window full. Cost
//! per capped recipient: one strongly consistent read (1 RCU) and, when sent, one write (1 WCU
//! for a ledger under 1 KB: 20 entries or so).

use std::collections::BTreeMap;

use aws_sdk_dynamodb::types::AttributeValue;
use serde::{Deserialize, Serialize};

use super::batch::{key, n};
use super::{Store, StoreError};
use crate::domain::{Admission, AppId, FrequencyCap, Ledger, admit};
use crate::keys;

/// How many times a slot is tried when other sends to the same person keep winning the race.
const RACES: usize = 20;

#[derive(Serialize, Deserialize, Default)]
struct LedgerItem {
    #[serde(default)]
    sends: BTreeMap<String, i64>,
    #[serde(default)]
    version: u64,
}

impl Store {
    /// Counts `message` toward `person`'s cap if there is room (or it is counted already):
    /// `true` to send, `false` when the cap is reached.
    pub async fn take_cap_slot(
        &self,
        app_id: AppId,
        person: &str,
        message: &str,
        cap: &FrequencyCap,
    ) -> Result<bool, StoreError> {
        let pk = keys::cap(app_id, person);
        for _ in 0..RACES {
            let output = self
                .client()
                .get_item()
                .table_name(self.table())
                .set_key(Some(key(pk.clone(), keys::SK_CAP)))
                .consistent_read(true)
                .send()
                .await
                .map_err(StoreError::dynamo("GetItem cap ledger"))?;
            let current: LedgerItem = match output.item {
                Some(item) => serde_dynamo::from_item(item)?,
                None => LedgerItem::default(),
            };
            let now = self.clock().now_epoch();
            let next: Ledger = match admit(&current.sends, message, now, cap) {
                Admission::Counted => return Ok(true),
                Admission::Capped => return Ok(false),
                Admission::Take(next) => next,
            };
            let mut write = self.client().put_item().table_name(self.table()).set_item(Some({
                let mut item = key(pk.clone(), keys::SK_CAP);
                let sends = next.iter().map(|(m, at)| (m.clone(), n(*at))).collect();
                item.insert("sends".into(), AttributeValue::M(sends));
                item.insert("version".into(), n(current.version + 1));
                // Nothing in it matters once the window has passed.
                item.insert(keys::EXPIRES_AT.into(), n(now + cap.window().num_seconds()));
                item
            }));
            write = if current.version == 0 {
                write.condition_expression("attribute_not_exists(pk)")
            } else {
                write
                    .condition_expression("version = :v")
                    .expression_attribute_values(":v", n(current.version))
            };
            match write.send().await.map_err(StoreError::dynamo("PutItem cap ledger")) {
                Ok(_) => return Ok(true),
                // Another send to this person won the race: decide again on what it wrote.
                Err(e) if e.is_condition_failed() => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Request(format!("cap ledger of one person contended {RACES} times in a row")))
    }
}

//! The single-table key schema. Every item the service stores, its keys and the access
//! pattern each serves are defined here and nowhere else (docs/table.md repeats this table).
//!
//! Attributes: `pk`, `sk` (table keys), `gsi1pk`/`gsi1sk` (GSI1, projection ALL),
//! `gsi2pk`/`gsi2sk` (GSI2, keys only), `expires_at` (TTL, epoch seconds).
//!
//! | item                 | pk                                   | sk                  | GSI                                                  | serves |
//! |----------------------|--------------------------------------|---------------------|------------------------------------------------------|--------|
//! | app                  | `APP#{app}`                          | `APP`               |                                                      | app by id (admin, webhooks) |
//! | API key              | `KEY#{sha256(key) hex}`              | `KEY`               |                                                      | auth: one GetItem by hash |
//! | app secret           | `SECRET#{app}#{scope}` (`SMS`, `PUSH`, `HOOKS`) | `SECRET` |                                               | the senders' and webhooks' provider secrets; IAM (`dynamodb:LeadingKeys`) lets only them read their scope |
//! | tracking keyring     | `SECRET#TRACKING`                    | `SECRET`            |                                                      | the deployment's tracking-token keys (push sender signs, webhooks verify; IAM as for app secrets) |
//! | subscription         | `APP#{app}#SUB#{sub}`                | `SUB`               | 1: `APP#{app}#EXT#{external_user_id}` / `{channel}#{sub}` | by id; person's subscriptions per channel |
//! | person               | `APP#{app}#EXT#{external_user_id}`   | `PERSON`            |                                                      | a person's subscriptions (`subs`) and the active ones (`active`), string sets of `{channel}#{sub}`, and a version `v`; the source of its replicas; kept in the same transaction as every subscription change |
//! | inactive subscription| `APP#{app}#OFF#{channel}`            | `{sub}`             |                                                      | audiences: an app's unsubscribed subscriptions of one channel in id order, merged with the interaction stream (no lookup per member); kept in the same transaction as the status |
//! | people replica       | `APP#{app}#RPL#{channel}#{shard:02}` | `{sub}`             |                                                      | cross-channel audiences: per subscription with an external user id, a copy of its person's sets (binary, `s`, `a`) and the id (`u`), read in id order beside the interactions; kept in the same transaction as the person item, conditioned on its version `v` |
//! | address claim        | `APP#{app}#ADDR#{channel}#{sha256(token or phone)}` | `ADDR` |                                                      | upsert by channel+token/phone |
//! | message              | `APP#{app}#MSG#{msg}`                | `MSG`               | 1: `APP#{app}#MSGS` / `{msg}`; 2 while scheduled (originals only): `DUE#MSG` / `{send_at:010}#{app}#{msg}` | message by id; an app's messages newest first; due scheduled messages |
//! | recipient chunk      | `APP#{app}#MSG#{msg}`                | `RCPT#{nnnn}`       |                                                      | a scheduled message's recipients, 500 per item |
//! | interaction          | `MSG#{msg}#I#{nn}`                   | `{sub}#{kind code}` |                                                      | audiences: Query every shard, merge by sk; its INSERT on the table's stream is what the stats count |
//! | stats counter        | `STATS#{msg}`                        | `{stream shard id}` |                                                      | per-kind counts of one stream shard's inserts + the last sequence number applied; summed on read |
//! | event id             | `APP#{app}#EVT#{sha256(event_id)}`   | `EVT`               |                                                      | an app's `event_id`s, remembered 30 days, with the triple each named |
//! | tracked link         | `LINK#{code}`                        | `LINK`              |                                                      | `GET /r/{code}`: one SMS recipient's link (URL, message, subscription), with the message's TTL |
//! | send record          | `SEND#{msg}#{sub}`                   | `SEND`              |                                                      | senders: at most one provider call per (message, subscription) |
//! | retarget             | `APP#{app}#RT#{rt}`                  | `RT`                | 1: `APP#{app}#MSG#{source}#RTS` / `{rt}`; 2 while scheduled: `DUE` / `{send_at epoch:010}#{app}#{rt}` | by id; per source; due ones |
//! | frequency-cap ledger | `APP#{app}#CAP#{sha256(person)[..16] hex}` | `CAP`       |                                                      | the messages a person was sent within the cap's window (TTL: the window) |
//! | deferred send        | `APP#{app}#DEFER#{msg}.{release}.{digest}` | `DEFER`       | 2 until released: `DUE#DEFER` / `{release:010}#{app}#{id}` | recipients of one message waiting for their quiet hours to end, with the message's TTL |
//!
//! Ids are ULIDs (fixed length, `#`-free), so every key splits unambiguously.
//! `{nn}` is a two-digit shard number in `0..shards` (the message records its shard count).
//! Items of a message's interaction data (interactions, stats counters) and event ids carry
//! `expires_at = created_at + 30 days`. The message item itself outlives its data by
//! [`MESSAGE_TOMBSTONE_DAYS`] so that a late audience request answers 410 `source_expired`
//! rather than 404.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::domain::{
    AppId, Channel, EventKind, ExternalUserId, MessageId, RetargetId, SecretScope, SubscriptionId,
};

pub const PK: &str = "pk";
pub const SK: &str = "sk";
pub const GSI1: &str = "gsi1";
pub const GSI1_PK: &str = "gsi1pk";
pub const GSI1_SK: &str = "gsi1sk";
pub const GSI2: &str = "gsi2";
pub const GSI2_PK: &str = "gsi2pk";
pub const GSI2_SK: &str = "gsi2sk";
/// The table's TTL attribute (epoch seconds).
pub const EXPIRES_AT: &str = "expires_at";

/// How long a message's interaction data lives.
pub const RETENTION_DAYS: i64 = 30;
/// How long a message item is kept after its data expired, to answer `source_expired`.
pub const MESSAGE_TOMBSTONE_DAYS: i64 = 90;
/// Interaction partitions per message. 16 × 1,000 WCU/s per partition leaves a 1 M campaign's
/// burst of `sent` events far from any single partition's limit.
pub const DEFAULT_SHARDS: u8 = 16;

/// When the interaction data of a message created at `created_at` expires.
pub fn data_expires_at(created_at: DateTime<Utc>) -> DateTime<Utc> {
    created_at + chrono::Duration::days(RETENTION_DAYS)
}

pub const SK_APP: &str = "APP";
pub const SK_KEY: &str = "KEY";
pub const SK_SECRET: &str = "SECRET";
/// The partition-key prefix of every secret item and of nothing else: the IAM policies'
/// `dynamodb:LeadingKeys` patterns (`SECRET#*`, `SECRET#*#SMS`, …) are built on it.
pub const SECRET_PREFIX: &str = "SECRET#";
pub const SK_SUB: &str = "SUB";
pub const SK_ADDR: &str = "ADDR";
pub const SK_MSG: &str = "MSG";
pub const SK_EVENT_ID: &str = "EVT";
/// The partition-key prefix of interaction items: what the stats aggregator's stream filter
/// lets through (with `INSERT`), and nothing else the table holds starts with it.
pub const INTERACTION_PREFIX: &str = "MSG#";
pub const SK_RT: &str = "RT";
pub const DUE: &str = "DUE";
/// The due index partition of scheduled original messages (retargets use [`DUE`]).
pub const DUE_MESSAGES: &str = "DUE#MSG";
/// The due index partition of deferred sends (recipients waiting for their quiet hours to end).
pub const DUE_DEFERRED: &str = "DUE#DEFER";
pub const SK_DEFER: &str = "DEFER";
/// Sort-key prefix of a scheduled message's recipient chunks (under the message's partition).
pub const SK_RECIPIENTS_PREFIX: &str = "RCPT#";

pub const SK_CAP: &str = "CAP";

/// A person's frequency-cap ledger: `person` is `u:{external_user_id}` or `s:{subscription}`,
/// hashed so any external id makes a fixed-length, `#`-free key.
pub fn cap(app: AppId, person: &str) -> String {
    format!("APP#{app}#CAP#{}", hex::encode(&Sha256::digest(person.as_bytes())[..16]))
}

/// A deferred send's item.
pub fn deferral(app: AppId, id: &crate::domain::DeferralId) -> String {
    format!("APP#{app}#DEFER#{id}")
}

pub fn app(app: AppId) -> String {
    format!("APP#{app}")
}

/// The item holding one scope of an app's secrets.
pub fn secret(app: AppId, scope: SecretScope) -> String {
    format!("{SECRET_PREFIX}{app}#{}", scope.as_str())
}

/// The IAM `dynamodb:LeadingKeys` pattern matching one scope's secret items of every app.
pub fn secret_pattern(scope: SecretScope) -> String {
    format!("{SECRET_PREFIX}*#{}", scope.as_str())
}

/// The deployment's tracking keyring (one item; see `domain::Keyring`). Under
/// [`SECRET_PREFIX`], so every `SECRET#*` deny covers it; it matches no `SECRET#*#{scope}`.
pub const TRACKING_KEYRING: &str = "SECRET#TRACKING";

pub const SK_LINK: &str = "LINK";

/// One tracked SMS link (`domain::Link`).
pub fn link(code: &crate::domain::LinkCode) -> String {
    format!("LINK#{code}")
}

pub fn api_key(hash_hex: &str) -> String {
    format!("KEY#{hash_hex}")
}

pub fn subscription(app: AppId, sub: SubscriptionId) -> String {
    format!("APP#{app}#SUB#{sub}")
}

/// The person index (GSI1) of a subscription with an external user id; also the partition of
/// the person item (sort key [`SK_PERSON`]).
pub fn person(app: AppId, user: &ExternalUserId) -> String {
    format!("APP#{app}#EXT#{user}")
}

pub const SK_PERSON: &str = "PERSON";

/// The person item's set of every subscription of the person, `{channel}#{sub}` each.
pub const PERSON_SUBS: &str = "subs";
/// The person item's set of the person's active subscriptions.
pub const PERSON_ACTIVE: &str = "active";

/// The partition of an app's inactive subscriptions of one channel (sort key: the id).
pub fn inactive(app: AppId, channel: Channel) -> String {
    format!("APP#{app}#OFF#{channel}")
}

/// A person item's version, bumped by every change of the person's sets: the writes derived
/// from the person as read (its replicas) are conditioned on it.
pub const PERSON_VERSION: &str = "v";

/// Shards of an app's people replicas on one channel.
pub const REPLICA_SHARDS: u8 = 16;

/// The people replicas of an app's subscriptions on one channel, shard `shard` (sort key: the
/// subscription id): one item per subscription with an external user id, holding that person's
/// sets, so that a cross-channel audience reads them in the order of its source's interactions.
pub fn replica(app: AppId, channel: Channel, shard: u8) -> String {
    format!("APP#{app}#RPL#{channel}#{shard:02}")
}

/// A replica's copy of the person's sets (binary: [`replica_entry`]) and its external user id.
pub const REPLICA_SUBS: &str = "s";
pub const REPLICA_ACTIVE: &str = "a";
pub const REPLICA_USER: &str = "u";

/// A replica set entry: one byte for the channel, then the subscription id's 16 bytes (17
/// bytes, where `{channel}#{sub}` takes 30 to 32: the replicas are read whole by audiences).
pub fn replica_entry(channel: Channel, sub: SubscriptionId) -> Vec<u8> {
    let mut entry = Vec::with_capacity(17);
    entry.push(match channel {
        Channel::Push => b'p',
        Channel::Sms => b's',
        Channel::Email => b'e',
    });
    entry.extend_from_slice(&sub.to_bytes());
    entry
}

pub fn parse_replica_entry(entry: &[u8]) -> Option<(Channel, SubscriptionId)> {
    let (&code, id) = entry.split_first()?;
    let channel = match code {
        b'p' => Channel::Push,
        b's' => Channel::Sms,
        b'e' => Channel::Email,
        _ => return None,
    };
    Some((channel, SubscriptionId::from_bytes(id.try_into().ok()?)))
}

pub fn person_sort(channel: Channel, sub: SubscriptionId) -> String {
    format!("{channel}#{sub}")
}

/// The uniqueness claim of a push token or phone number. Hashed: addresses can be long
/// (key size limits) and phone numbers must not sit in keys in clear.
pub fn address(app: AppId, channel: Channel, address: &str) -> String {
    format!("APP#{app}#ADDR#{channel}#{}", hex::encode(Sha256::digest(address.as_bytes())))
}

pub fn message(app: AppId, msg: MessageId) -> String {
    format!("APP#{app}#MSG#{msg}")
}

/// The GSI1 partition listing an app's messages (sorted by message id: by creation time).
pub fn message_list(app: AppId) -> String {
    format!("APP#{app}#MSGS")
}

/// The partition of a message's stats counters, one item per stream shard that carried its
/// interactions (sort key: the shard id).
pub fn stats(msg: MessageId) -> String {
    format!("STATS#{msg}")
}

/// The record of an app's `event_id`. Hashed: an event id is the client's string (any length
/// up to its limit, any characters).
pub fn event_id(app: AppId, event_id: &str) -> String {
    format!("APP#{app}#EVT#{}", hex::encode(Sha256::digest(event_id.as_bytes())))
}

/// The shard of a subscription's interactions: stable per subscription, spread uniformly.
pub fn shard_of(sub: SubscriptionId, shards: u8) -> u8 {
    let digest = Sha256::digest(sub.to_string().as_bytes());
    digest[0] % shards.max(1)
}

pub fn interaction_partition(msg: MessageId, shard: u8) -> String {
    format!("{INTERACTION_PREFIX}{msg}#I#{shard:02}")
}

/// The message of an interaction partition key (`None` for any other key).
pub fn parse_interaction_partition(pk: &str) -> Option<MessageId> {
    let rest = pk.strip_prefix(INTERACTION_PREFIX)?;
    let (msg, shard) = rest.split_once("#I#")?;
    if shard.len() != 2 || !shard.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    MessageId::parse(msg).ok()
}

/// A stream sequence number as a fixed-width string, so that DynamoDB's string comparison in a
/// condition orders them as numbers (they are decimal strings of up to 40 digits, compared
/// within one shard only). `None` for anything that is not such a number.
pub fn stream_sequence(seq: &str) -> Option<String> {
    if seq.is_empty() || seq.len() > STREAM_SEQUENCE_WIDTH || !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(format!("{seq:0>STREAM_SEQUENCE_WIDTH$}"))
}

const STREAM_SEQUENCE_WIDTH: usize = 40;

pub fn interaction_sort(sub: SubscriptionId, kind: EventKind) -> String {
    format!("{sub}#{}", kind.code())
}

/// Splits an interaction sort key back into its subscription and kind.
pub fn parse_interaction_sort(sk: &str) -> Option<(SubscriptionId, EventKind)> {
    let (sub, code) = sk.split_once('#')?;
    let mut chars = code.chars();
    let kind = EventKind::from_code(chars.next()?)?;
    if chars.next().is_some() {
        return None;
    }
    Some((SubscriptionId::parse(sub).ok()?, kind))
}

pub const SK_SEND: &str = "SEND";

/// The idempotency record of sending one message to one subscription.
pub fn send(msg: MessageId, sub: SubscriptionId) -> String {
    format!("SEND#{msg}#{sub}")
}

pub fn retarget(app: AppId, rt: RetargetId) -> String {
    format!("APP#{app}#RT#{rt}")
}

pub fn retargets_of(app: AppId, source: MessageId) -> String {
    format!("APP#{app}#MSG#{source}#RTS")
}

/// How long a claimed due item (a retarget's dispatch, a scheduled message) is held before
/// another scheduler run may take it over: its due sort key moves to the lease's expiry. The
/// scheduler's own timeout is shorter, so a live run never loses its lease.
pub const DUE_LEASE_SECONDS: i64 = 6 * 60;

/// The due index sort key of a retarget (partition [`DUE`]) or a scheduled message
/// ([`DUE_MESSAGES`]) due at `at`: the first whole second at or after it, so that nothing is
/// ever claimed before its time.
pub fn due_sort(at: DateTime<Utc>, app: AppId, id: impl fmt::Display) -> String {
    let epoch = at.timestamp() + i64::from(at.timestamp_subsec_nanos() > 0);
    format!("{epoch:010}#{app}#{id}")
}

/// The due sort key of an item claimed at `now`: due again when its lease runs out.
pub fn due_lease(now: DateTime<Utc>, app: AppId, id: impl fmt::Display) -> String {
    due_sort(now + chrono::Duration::seconds(DUE_LEASE_SECONDS), app, id)
}

/// The upper bound of the due index at `now`: every sort key of a time up to `now`.
pub fn due_bound(now: DateTime<Utc>) -> String {
    // `~` sorts after every ULID character and `#`, so the bound includes the whole second.
    format!("{:010}#~", now.timestamp())
}

/// Splits a due sort key back into its app and item id.
pub fn parse_due_sort<I: FromStr>(sk: &str) -> Option<(AppId, I)> {
    let mut parts = sk.split('#');
    let (_epoch, app, id) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    Some((AppId::parse(app).ok()?, id.parse().ok()?))
}

/// The sort key of a scheduled message's `index`th recipient chunk.
pub fn recipients_chunk(index: usize) -> String {
    format!("{SK_RECIPIENTS_PREFIX}{index:04}")
}

/// Bounds of one subscription's interaction sort keys: every key of `sub` is `>=` the first
/// and `<` the second (`~` sorts after every kind code).
pub fn interaction_bounds(sub: SubscriptionId) -> (String, String) {
    (format!("{sub}#"), format!("{sub}#~"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interaction_sort_keys_round_trip() {
        let sub = SubscriptionId::new();
        for kind in EventKind::ALL {
            assert_eq!(parse_interaction_sort(&interaction_sort(sub, kind)), Some((sub, kind)));
        }
        assert_eq!(parse_interaction_sort("nope#s"), None);
        assert_eq!(parse_interaction_sort(&format!("{sub}#sx")), None);
    }

    #[test]
    fn interaction_partitions_round_trip_and_nothing_else_parses() {
        let msg = MessageId::new();
        for shard in [0, 7, 15] {
            assert_eq!(parse_interaction_partition(&interaction_partition(msg, shard)), Some(msg));
        }
        assert_eq!(parse_interaction_partition(&stats(msg)), None);
        assert_eq!(parse_interaction_partition(&format!("MSG#{msg}#I#1")), None);
        assert_eq!(parse_interaction_partition(&format!("MSG#{msg}#X#01")), None);
        assert_eq!(parse_interaction_partition("MSG#nope#I#01"), None);
    }

    #[test]
    fn stream_sequences_compare_as_numbers() {
        let (a, b) = (stream_sequence("999").unwrap(), stream_sequence("1000").unwrap());
        assert!(a < b);
        assert_eq!(a.len(), 40);
        assert!(stream_sequence("").is_none());
        assert!(stream_sequence("12a").is_none());
        assert!(stream_sequence(&"9".repeat(41)).is_none());
    }

    #[test]
    fn a_subscriptions_kinds_sort_together() {
        let a = SubscriptionId::new();
        let b = SubscriptionId::new();
        let mut keys: Vec<String> =
            EventKind::ALL.iter().flat_map(|k| [interaction_sort(a, *k), interaction_sort(b, *k)]).collect();
        keys.sort();
        let subs: Vec<_> = keys.iter().map(|k| parse_interaction_sort(k).unwrap().0).collect();
        let changes = subs.windows(2).filter(|w| w[0] != w[1]).count();
        assert_eq!(changes, 1);
    }

    #[test]
    fn replica_entries_round_trip() {
        for channel in Channel::ALL {
            let sub = SubscriptionId::new();
            let entry = replica_entry(channel, sub);
            assert_eq!(entry.len(), 17);
            assert_eq!(parse_replica_entry(&entry), Some((channel, sub)));
        }
        assert_eq!(parse_replica_entry(b""), None);
        assert_eq!(parse_replica_entry(&[b'x'; 17]), None);
        assert_eq!(parse_replica_entry(&[b'p'; 16]), None);
    }

    #[test]
    fn shards_are_stable_and_spread() {
        let subs: Vec<_> = (0..16_000).map(|_| SubscriptionId::new()).collect();
        let mut counts = [0u32; DEFAULT_SHARDS as usize];
        for s in &subs {
            let shard = shard_of(*s, DEFAULT_SHARDS);
            assert_eq!(shard, shard_of(*s, DEFAULT_SHARDS));
            counts[shard as usize] += 1;
        }
        // 1,000 expected per shard; a uniform hash stays well within ±20 %.
        assert!(counts.iter().all(|c| (800..1200).contains(c)), "{counts:?}");
    }

    #[test]
    fn due_keys_sort_by_time() {
        let app = AppId::new();
        let rt = RetargetId::new();
        let at = |epoch| DateTime::from_timestamp(epoch, 0).unwrap();
        assert!(due_sort(at(999_999_999), app, rt) < due_sort(at(1_800_000_000), app, rt));
    }

    #[test]
    fn due_keys_round_trip_and_bound_whole_seconds() {
        let app = AppId::new();
        let rt = RetargetId::new();
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let sk = due_sort(at, app, rt);
        assert_eq!(parse_due_sort(&sk), Some((app, rt)));
        let msg = MessageId::new();
        assert_eq!(parse_due_sort(&due_sort(at, app, msg)), Some((app, msg)));
        assert!(sk.as_str() <= due_bound(at).as_str());
        assert!(sk.as_str() > due_bound(at - chrono::Duration::seconds(1)).as_str());
        // A time inside a second is due only from the next whole second on.
        let later = at + chrono::Duration::milliseconds(300);
        let sk = due_sort(later, app, rt);
        assert!(sk.as_str() > due_bound(later).as_str());
        assert!(sk.as_str() <= due_bound(at + chrono::Duration::seconds(1)).as_str());
        assert_eq!(parse_due_sort::<RetargetId>("nope"), None);
        assert_eq!(parse_due_sort::<RetargetId>(&format!("{sk}#extra")), None);
    }

    #[test]
    fn recipient_chunks_and_interaction_bounds() {
        assert_eq!(recipients_chunk(7), "RCPT#0007");
        assert!(recipients_chunk(9) < recipients_chunk(10));
        let sub = SubscriptionId::new();
        let (from, to) = interaction_bounds(sub);
        for kind in EventKind::ALL {
            let sk = interaction_sort(sub, kind);
            assert!(from <= sk && sk < to, "{sk}");
        }
    }
}

//! Deferred sends: recipients of one message whose quiet hours were on when their send came
//! up, kept together until the moment those hours end for all of them (one item per group,
//! not one timer per recipient), then put back on the channel's queue by the scheduler.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::{AppId, Channel, MessageId, RetargetId, SubscriptionId};

/// A deferral's id: the message, the release second and a digest of the recipients, so the
/// same job deferred twice (SQS redelivers) makes the same deferral — stored and counted once.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeferralId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a deferral id")]
pub struct DeferralIdError;

impl DeferralId {
    /// `{message}.{release epoch}.{first 16 hex digits of SHA-256 of the sorted recipients}`.
    pub fn of(message_id: MessageId, release: DateTime<Utc>, recipients: &[SubscriptionId]) -> Self {
        let mut sorted: Vec<&SubscriptionId> = recipients.iter().collect();
        sorted.sort();
        let mut hash = Sha256::new();
        for sub in sorted {
            hash.update(sub.to_bytes());
        }
        let digest = hex::encode(&hash.finalize()[..8]);
        Self(format!("{message_id}.{}.{digest}", release.timestamp()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DeferralId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for DeferralId {
    type Err = DeferralIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split('.');
        let (Some(message), Some(epoch), Some(digest), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(DeferralIdError);
        };
        let ok = MessageId::parse(message).is_ok()
            && epoch.parse::<i64>().is_ok()
            && digest.len() == 16
            && digest.bytes().all(|b| b.is_ascii_hexdigit());
        if ok { Ok(Self(s.to_owned())) } else { Err(DeferralIdError) }
    }
}

/// Recipients of one message that wait until `release`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deferral {
    pub deferral_id: DeferralId,
    pub app_id: AppId,
    pub message_id: MessageId,
    pub channel: Channel,
    pub release: DateTime<Utc>,
    pub subscription_ids: Vec<SubscriptionId>,
    /// The retarget whose `deferred` counts them, when the message is a retarget's.
    pub retarget_id: Option<RetargetId>,
    /// The message's data expiry: the deferral's TTL (nothing is sent for an expired message).
    pub expires_at: DateTime<Utc>,
}

impl Deferral {
    /// Groups recipients by the instant each may be sent at: one deferral per instant.
    pub fn group(
        app_id: AppId,
        message_id: MessageId,
        channel: Channel,
        retarget_id: Option<RetargetId>,
        expires_at: DateTime<Utc>,
        waits: impl IntoIterator<Item = (SubscriptionId, DateTime<Utc>)>,
    ) -> Vec<Deferral> {
        let mut by_release: std::collections::BTreeMap<DateTime<Utc>, Vec<SubscriptionId>> =
            std::collections::BTreeMap::new();
        for (sub, release) in waits {
            by_release.entry(release).or_default().push(sub);
        }
        by_release
            .into_iter()
            .map(|(release, subscription_ids)| Deferral {
                deferral_id: DeferralId::of(message_id, release, &subscription_ids),
                app_id,
                message_id,
                channel,
                release,
                subscription_ids,
                retarget_id,
                expires_at,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_recipients_make_the_same_id_in_any_order_and_ids_round_trip() {
        let (m, a, b) = (MessageId::new(), SubscriptionId::new(), SubscriptionId::new());
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let id = DeferralId::of(m, at, &[a, b]);
        assert_eq!(id, DeferralId::of(m, at, &[b, a]));
        assert_ne!(id, DeferralId::of(m, at, &[a]));
        assert_ne!(id, DeferralId::of(m, at + chrono::Duration::seconds(1), &[a, b]));
        assert_eq!(id.as_str().parse::<DeferralId>().unwrap(), id);
        assert!(!id.as_str().contains('#'), "fits a due sort key");
        for bad in
            ["", "x.1.0123456789abcdef", "01J.1", &format!("{m}.x.0123456789abcdef"), &format!("{m}.1.01")]
        {
            assert!(bad.parse::<DeferralId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn recipients_are_grouped_by_release() {
        let (app, m) = (AppId::new(), MessageId::new());
        let subs: Vec<SubscriptionId> = (0..5).map(|_| SubscriptionId::new()).collect();
        let t1 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let t2 = t1 + chrono::Duration::hours(3);
        let waits = [(subs[0], t2), (subs[1], t1), (subs[2], t2), (subs[3], t1), (subs[4], t2)];
        let groups = Deferral::group(app, m, Channel::Sms, None, t2, waits);
        assert_eq!(groups.len(), 2);
        assert_eq!((groups[0].release, groups[0].subscription_ids.clone()), (t1, vec![subs[1], subs[3]]));
        assert_eq!(groups[1].subscription_ids, vec![subs[0], subs[2], subs[4]]);
    }
}

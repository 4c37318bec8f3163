use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The three ways a message reaches a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Push,
    Sms,
    Email,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Channel::Push, Channel::Sms, Channel::Email];

    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Push => "push",
            Channel::Sms => "sms",
            Channel::Email => "email",
        }
    }

    /// The interaction kinds a message on this channel can have.
    pub fn event_kinds(self) -> &'static [EventKind] {
        match self {
            Channel::Push => &[
                EventKind::Sent,
                EventKind::Delivered,
                EventKind::Clicked,
                EventKind::Failed,
                EventKind::Converted,
            ],
            // `clicked`: a tracked link was opened.
            Channel::Sms => &[
                EventKind::Sent,
                EventKind::Delivered,
                EventKind::Undelivered,
                EventKind::Failed,
                EventKind::Clicked,
                EventKind::Converted,
            ],
            // SES's events (opens and clicks tracked by the configuration set), and conversions.
            Channel::Email => &[
                EventKind::Sent,
                EventKind::Delivered,
                EventKind::Opened,
                EventKind::Clicked,
                EventKind::Bounced,
                EventKind::Complained,
                EventKind::Failed,
                EventKind::Converted,
            ],
        }
    }

    pub fn accepts(self, kind: EventKind) -> bool {
        self.event_kinds().contains(&kind)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Channel {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "push" => Ok(Channel::Push),
            "sms" => Ok(Channel::Sms),
            "email" => Ok(Channel::Email),
            other => Err(UnknownName(other.chars().take(32).collect())),
        }
    }
}

/// What happened to one message for one subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Sent,
    Delivered,
    Clicked,
    Undelivered,
    Failed,
    /// The recipient did what the message was for (a purchase, a sign-up): reported by the app.
    Converted,
    /// Email: SES saw the open pixel load.
    Opened,
    /// Email: SES reported a bounce (permanent or transient).
    Bounced,
    /// Email: the recipient marked it as spam (a feedback loop complaint).
    Complained,
}

impl EventKind {
    pub const ALL: [EventKind; 9] = [
        EventKind::Sent,
        EventKind::Delivered,
        EventKind::Clicked,
        EventKind::Undelivered,
        EventKind::Failed,
        EventKind::Converted,
        EventKind::Opened,
        EventKind::Bounced,
        EventKind::Complained,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Sent => "sent",
            EventKind::Delivered => "delivered",
            EventKind::Clicked => "clicked",
            EventKind::Undelivered => "undelivered",
            EventKind::Failed => "failed",
            EventKind::Converted => "converted",
            EventKind::Opened => "opened",
            EventKind::Bounced => "bounced",
            EventKind::Complained => "complained",
        }
    }

    /// One character used in sort keys, so a subscription's kinds sort together and stay short.
    pub fn code(self) -> char {
        match self {
            EventKind::Sent => 's',
            EventKind::Delivered => 'd',
            EventKind::Clicked => 'c',
            EventKind::Undelivered => 'u',
            EventKind::Failed => 'f',
            EventKind::Converted => 'v',
            EventKind::Opened => 'o',
            EventKind::Bounced => 'b',
            EventKind::Complained => 'x',
        }
    }

    pub fn from_code(c: char) -> Option<Self> {
        EventKind::ALL.into_iter().find(|k| k.code() == c)
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventKind {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownName(s.chars().take(32).collect()))
    }
}

/// A count per event kind (a message's stats), serialised as `{"sent": n, "delivered": n, …}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindCounts([u64; EventKind::ALL.len()]);

impl KindCounts {
    pub fn get(&self, kind: EventKind) -> u64 {
        self.0[kind as usize]
    }

    pub fn add(&mut self, kind: EventKind, count: u64) {
        self.0[kind as usize] = self.0[kind as usize].saturating_add(count);
    }

    pub fn iter(&self) -> impl Iterator<Item = (EventKind, u64)> + '_ {
        EventKind::ALL.into_iter().map(|k| (k, self.get(k)))
    }
}

impl KindCounts {
    /// The stats of a message on `channel`: the six kinds every message shows (0 where the
    /// channel has none: the contract's shape), and the email-only kinds on email messages.
    pub fn view(&self, channel: Channel) -> KindCountsView<'_> {
        KindCountsView { counts: self, channel }
    }
}

/// Kinds every message's stats show, whatever its channel.
const SHOWN_ON_EVERY_CHANNEL: [EventKind; 6] = [
    EventKind::Sent,
    EventKind::Delivered,
    EventKind::Clicked,
    EventKind::Failed,
    EventKind::Undelivered,
    EventKind::Converted,
];

/// [`KindCounts`] as a message on one channel shows them: `{"sent": n, "delivered": n, …}`.
pub struct KindCountsView<'a> {
    counts: &'a KindCounts,
    channel: Channel,
}

impl Serialize for KindCountsView<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let kinds = EventKind::ALL
            .into_iter()
            .filter(|k| SHOWN_ON_EVERY_CHANNEL.contains(k) || self.channel.accepts(*k));
        serializer.collect_map(kinds.map(|k| (k.as_str(), self.counts.get(k))))
    }
}

/// A push subscription's device platform, which picks the provider (APNs or FCM).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Platform {
    Ios,
    Android,
}

/// An app's plan; only paid plans may retarget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Plan {
    Free,
    Pro,
    Enterprise,
}

impl Plan {
    pub fn allows_retargeting(self) -> bool {
        !matches!(self, Plan::Free)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Free => "free",
            Plan::Pro => "pro",
            Plan::Enterprise => "enterprise",
        }
    }
}

impl FromStr for Plan {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "free" => Ok(Plan::Free),
            "pro" => Ok(Plan::Pro),
            "enterprise" => Ok(Plan::Enterprise),
            other => Err(UnknownName(other.chars().take(32).collect())),
        }
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown value `{0}`")]
pub struct UnknownName(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_valid_per_channel_follow_the_contract() {
        assert!(Channel::Push.accepts(EventKind::Clicked));
        assert!(!Channel::Push.accepts(EventKind::Undelivered));
        assert!(Channel::Sms.accepts(EventKind::Undelivered));
        assert!(Channel::Sms.accepts(EventKind::Clicked), "a tracked link was opened");
        for kind in [EventKind::Opened, EventKind::Bounced, EventKind::Complained] {
            assert!(Channel::Email.accepts(kind), "{kind}");
            assert!(!Channel::Push.accepts(kind) && !Channel::Sms.accepts(kind), "{kind}: email only");
        }
        assert!(!Channel::Email.accepts(EventKind::Undelivered), "SES says bounced");
        for c in Channel::ALL {
            assert!(
                c.accepts(EventKind::Sent) && c.accepts(EventKind::Delivered) && c.accepts(EventKind::Failed)
            );
            assert!(c.accepts(EventKind::Converted));
        }
    }

    #[test]
    fn kinds_round_trip_through_names_and_codes() {
        let mut counts = KindCounts::default();
        for (n, k) in EventKind::ALL.into_iter().enumerate() {
            counts.add(k, n as u64 + 1);
            counts.add(k, 10);
        }
        assert_eq!(counts.get(EventKind::Sent), 11);
        assert_eq!(counts.get(EventKind::Failed), 15);
        for channel in [Channel::Push, Channel::Sms] {
            assert_eq!(
                serde_json::to_value(counts.view(channel)).unwrap(),
                serde_json::json!({"sent": 11, "delivered": 12, "clicked": 13, "undelivered": 14, "failed": 15, "converted": 16}),
                "{channel}: the six kinds every message shows"
            );
        }
        assert_eq!(
            serde_json::to_value(counts.view(Channel::Email)).unwrap(),
            serde_json::json!({"sent": 11, "delivered": 12, "clicked": 13, "undelivered": 14, "failed": 15,
                "converted": 16, "opened": 17, "bounced": 18, "complained": 19}),
            "email adds its own"
        );
        for k in EventKind::ALL {
            assert_eq!(k.as_str().parse::<EventKind>(), Ok(k));
            assert_eq!(EventKind::from_code(k.code()), Some(k));
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{k}\""));
        }
        assert!("open".parse::<EventKind>().is_err());
        let codes: std::collections::BTreeSet<char> = EventKind::ALL.iter().map(|k| k.code()).collect();
        assert_eq!(codes.len(), EventKind::ALL.len(), "one code per kind");
    }

    #[test]
    fn only_paid_plans_retarget() {
        assert!(!Plan::Free.allows_retargeting());
        assert!(Plan::Pro.allows_retargeting() && Plan::Enterprise.allows_retargeting());
        assert_eq!("enterprise".parse::<Plan>(), Ok(Plan::Enterprise));
    }
}

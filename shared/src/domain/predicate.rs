//! Who is in an audience: the contract's actions and the combined `did`/`did_not` form, decided
//! from the set of event kinds recorded for one subscription.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::domain::{Channel, EventKind};

/// The kinds recorded for one subscription of one message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct KindSet(u16);

impl KindSet {
    fn bit(kind: EventKind) -> u16 {
        1 << (kind as u16)
    }

    pub fn insert(&mut self, kind: EventKind) {
        self.0 |= Self::bit(kind);
    }

    pub fn contains(self, kind: EventKind) -> bool {
        self.0 & Self::bit(kind) != 0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl FromIterator<EventKind> for KindSet {
    fn from_iter<I: IntoIterator<Item = EventKind>>(iter: I) -> Self {
        let mut set = KindSet::default();
        iter.into_iter().for_each(|k| set.insert(k));
        set
    }
}

/// The seed's actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Sent,
    Delivered,
    NotDelivered,
    Clicked,
    NotClicked,
    Converted,
    NotConverted,
    /// Email only: opened or clicked (a click proves the open).
    Opened,
    /// Email only: sent, neither opened nor clicked.
    NotOpened,
}

impl Action {
    pub const ALL: [Action; 9] = [
        Action::Sent,
        Action::Delivered,
        Action::NotDelivered,
        Action::Clicked,
        Action::NotClicked,
        Action::Converted,
        Action::NotConverted,
        Action::Opened,
        Action::NotOpened,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Sent => "sent",
            Action::Delivered => "delivered",
            Action::NotDelivered => "not_delivered",
            Action::Clicked => "clicked",
            Action::NotClicked => "not_clicked",
            Action::Converted => "converted",
            Action::NotConverted => "not_converted",
            Action::Opened => "opened",
            Action::NotOpened => "not_opened",
        }
    }

    /// Whether a source on `channel` has this action (`opened` and `not_opened`: email only).
    pub fn applies_to(self, channel: Channel) -> bool {
        !matches!(self, Action::Opened | Action::NotOpened) || channel == Channel::Email
    }

    pub fn parse(s: &str) -> Option<Self> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// Which subscriptions of a source message an audience takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Predicate {
    Action(Action),
    /// Every kind of `did` recorded and no kind of `did_not`.
    Combined {
        did: Vec<EventKind>,
        did_not: Vec<EventKind>,
    },
}

/// Why a predicate does not apply: the contract answers 400 `invalid_action` for all of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PredicateError {
    #[error(
        "action `{0}` is not one of sent, delivered, not_delivered, clicked, not_clicked, converted, not_converted (and for email opened, not_opened)"
    )]
    UnknownAction(String),
    #[error("action `{action}` does not apply to {channel} messages")]
    ActionNotForChannel { action: &'static str, channel: Channel },
    #[error("`{0}` is not an event kind")]
    UnknownKind(String),
    #[error("event kind `{kind}` does not occur on {channel} messages")]
    KindNotForChannel { kind: EventKind, channel: Channel },
    #[error("did and did_not both name `{0}`")]
    Contradiction(EventKind),
}

impl Predicate {
    /// Parses `action=…` for a source on `channel` (an SMS click is a tracked link opened;
    /// `opened` and `not_opened` are email's only).
    pub fn action(action: &str, channel: Channel) -> Result<Self, PredicateError> {
        let parsed = Action::parse(action)
            .ok_or_else(|| PredicateError::UnknownAction(action.chars().take(40).collect()))?;
        if !parsed.applies_to(channel) {
            return Err(PredicateError::ActionNotForChannel { action: parsed.as_str(), channel });
        }
        Ok(Predicate::Action(parsed))
    }

    /// Parses `did=K1,K2&did_not=K3` (comma-separated kinds; either may be empty).
    pub fn combined(did: &[String], did_not: &[String], channel: Channel) -> Result<Self, PredicateError> {
        let parse = |names: &[String]| -> Result<Vec<EventKind>, PredicateError> {
            let mut kinds = Vec::new();
            for name in names.iter().flat_map(|n| n.split(',')).map(str::trim).filter(|n| !n.is_empty()) {
                let kind: EventKind =
                    name.parse().map_err(|_| PredicateError::UnknownKind(name.chars().take(40).collect()))?;
                if !channel.accepts(kind) {
                    return Err(PredicateError::KindNotForChannel { kind, channel });
                }
                if !kinds.contains(&kind) {
                    kinds.push(kind);
                }
            }
            kinds.sort();
            Ok(kinds)
        };
        let (did, did_not) = (parse(did)?, parse(did_not)?);
        if let Some(k) = did.iter().find(|k| did_not.contains(k)) {
            return Err(PredicateError::Contradiction(*k));
        }
        Ok(Predicate::Combined { did, did_not })
    }

    /// Whether a subscription with these recorded kinds (of a message on `channel`) is in.
    /// A subscription with nothing recorded never is: the audience is drawn from the message's
    /// recipients as seen through their events.
    pub fn matches(&self, channel: Channel, kinds: KindSet) -> bool {
        use EventKind::*;
        if kinds.is_empty() {
            return false;
        }
        match (self, channel) {
            (Predicate::Action(Action::Sent), _) => true,
            (Predicate::Action(Action::Delivered), Channel::Push) => {
                kinds.contains(Delivered) || kinds.contains(Clicked)
            }
            (Predicate::Action(Action::Delivered), Channel::Sms) => kinds.contains(Delivered),
            // Email: an open or a click proves the delivery too.
            (Predicate::Action(Action::Delivered), Channel::Email) => {
                kinds.contains(Delivered) || kinds.contains(Opened) || kinds.contains(Clicked)
            }
            (Predicate::Action(Action::NotDelivered), Channel::Push) => {
                !kinds.contains(Delivered) && !kinds.contains(Clicked)
            }
            (Predicate::Action(Action::NotDelivered), Channel::Sms) => {
                (kinds.contains(Undelivered) || kinds.contains(Failed)) && !kinds.contains(Delivered)
            }
            (Predicate::Action(Action::NotDelivered), Channel::Email) => {
                (kinds.contains(Bounced) || kinds.contains(Failed))
                    && !(kinds.contains(Delivered) || kinds.contains(Opened) || kinds.contains(Clicked))
            }
            (Predicate::Action(Action::Opened), _) => kinds.contains(Opened) || kinds.contains(Clicked),
            (Predicate::Action(Action::NotOpened), _) => !kinds.contains(Opened) && !kinds.contains(Clicked),
            (Predicate::Action(Action::Clicked), _) => kinds.contains(Clicked),
            (Predicate::Action(Action::NotClicked), _) => !kinds.contains(Clicked),
            (Predicate::Action(Action::Converted), _) => kinds.contains(Converted),
            (Predicate::Action(Action::NotConverted), _) => !kinds.contains(Converted),
            (Predicate::Combined { did, did_not }, _) => {
                did.iter().all(|k| kinds.contains(*k)) && !did_not.iter().any(|k| kinds.contains(*k))
            }
        }
    }
}

impl fmt::Display for Predicate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Predicate::Action(a) => f.write_str(a.as_str()),
            Predicate::Combined { did, did_not } => {
                let join = |ks: &[EventKind]| ks.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(",");
                write!(f, "did={}&did_not={}", join(did), join(did_not))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use EventKind::*;

    fn set(kinds: &[EventKind]) -> KindSet {
        kinds.iter().copied().collect()
    }

    #[test]
    fn push_actions_follow_the_seed_table() {
        let p = |a| Predicate::action(a, Channel::Push).unwrap();
        let cases: &[(&[EventKind], [bool; 5])] = &[
            // kinds                   sent  delivered not_delivered clicked not_clicked
            (&[Sent], [true, false, true, false, true]),
            (&[Sent, Delivered], [true, true, false, false, true]),
            (&[Sent, Clicked], [true, true, false, true, false]),
            (&[Clicked], [true, true, false, true, false]),
            (&[Sent, Failed], [true, false, true, false, true]),
            (&[], [false, false, false, false, false]),
        ];
        for (kinds, expected) in cases {
            let got = ["sent", "delivered", "not_delivered", "clicked", "not_clicked"]
                .map(|a| p(a).matches(Channel::Push, set(kinds)));
            assert_eq!(&got, expected, "{kinds:?}");
        }
    }

    #[test]
    fn sms_actions_follow_the_seed_table() {
        let p = |a| Predicate::action(a, Channel::Sms).unwrap();
        let cases: &[(&[EventKind], [bool; 5])] = &[
            // kinds                        sent delivered not_delivered clicked not_clicked
            (&[Sent], [true, false, false, false, true]),
            (&[Sent, Delivered], [true, true, false, false, true]),
            (&[Sent, Undelivered], [true, false, true, false, true]),
            (&[Failed], [true, false, true, false, true]),
            (&[Undelivered, Delivered], [true, true, false, false, true]),
            // A link opened proves nothing about the delivery report: it is a click only.
            (&[Sent, Clicked], [true, false, false, true, false]),
        ];
        for (kinds, expected) in cases {
            let got = ["sent", "delivered", "not_delivered", "clicked", "not_clicked"]
                .map(|a| p(a).matches(Channel::Sms, set(kinds)));
            assert_eq!(&got, expected, "{kinds:?}");
        }
        for channel in [Channel::Push, Channel::Sms] {
            for action in ["opened", "not_opened"] {
                assert!(
                    matches!(
                        Predicate::action(action, channel),
                        Err(PredicateError::ActionNotForChannel { .. })
                    ),
                    "{action} on {channel}"
                );
            }
        }
        assert!(matches!(Predicate::action("open", Channel::Email), Err(PredicateError::UnknownAction(_))));
    }

    #[test]
    fn email_actions_follow_the_contract() {
        use EventKind::*;
        let p = |a: &str| Predicate::action(a, Channel::Email).unwrap();
        let actions =
            ["sent", "delivered", "not_delivered", "opened", "not_opened", "clicked", "not_clicked"];
        // sent, delivered, not_delivered, opened, not_opened, clicked, not_clicked
        let cases: &[(&[EventKind], [bool; 7])] = &[
            (&[Sent], [true, false, false, false, true, false, true]),
            (&[Sent, Delivered], [true, true, false, false, true, false, true]),
            // An open proves the delivery; a click proves the open.
            (&[Sent, Opened], [true, true, false, true, false, false, true]),
            (&[Sent, Clicked], [true, true, false, true, false, true, false]),
            (&[Sent, Bounced], [true, false, true, false, true, false, true]),
            (&[Sent, Failed], [true, false, true, false, true, false, true]),
            // A bounce after an open (a later message to a full mailbox) is not "not delivered".
            (&[Sent, Opened, Bounced], [true, true, false, true, false, false, true]),
            (&[Sent, Delivered, Complained], [true, true, false, false, true, false, true]),
        ];
        for (kinds, expected) in cases {
            let got = actions.map(|a| p(a).matches(Channel::Email, set(kinds)));
            assert_eq!(&got, expected, "{kinds:?}");
        }
        assert!(p("converted").matches(Channel::Email, set(&[Sent, Converted])));
        assert!(p("not_converted").matches(Channel::Email, set(&[Sent, Opened])));
        let combined = Predicate::combined(&["opened".into()], &["clicked".into()], Channel::Email).unwrap();
        assert!(combined.matches(Channel::Email, set(&[Sent, Opened])));
        assert!(!combined.matches(Channel::Email, set(&[Sent, Opened, Clicked])));
        assert!(Predicate::combined(&["opened".into()], &[], Channel::Push).is_err(), "no opens on push");
        assert!(Predicate::combined(&["undelivered".into()], &[], Channel::Email).is_err(), "SES bounces");
    }

    #[test]
    fn conversions_on_every_channel() {
        for channel in Channel::ALL {
            let p = |a| Predicate::action(a, channel).unwrap();
            let cases: &[(&[EventKind], [bool; 2])] = &[
                // kinds                     converted not_converted
                (&[Sent], [false, true]),
                (&[Sent, Converted], [true, false]),
                (&[Converted], [true, false]),
                (&[], [false, false]),
            ];
            for (kinds, expected) in cases {
                let got = ["converted", "not_converted"].map(|a| p(a).matches(channel, set(kinds)));
                assert_eq!(&got, expected, "{channel} {kinds:?}");
            }
            let sent_not_converted =
                Predicate::combined(&["sent".into()], &["converted".into()], channel).unwrap();
            assert!(sent_not_converted.matches(channel, set(&[Sent, Delivered])));
            assert!(!sent_not_converted.matches(channel, set(&[Sent, Converted])));
        }
    }

    #[test]
    fn combined_predicates_are_over_raw_kinds() {
        let p = Predicate::combined(&["delivered".into()], &["clicked".into()], Channel::Push).unwrap();
        assert!(p.matches(Channel::Push, set(&[Sent, Delivered])));
        assert!(!p.matches(Channel::Push, set(&[Delivered, Clicked])));
        assert!(!p.matches(Channel::Push, set(&[Sent])));
        let only_not = Predicate::combined(&[], &["clicked".into()], Channel::Push).unwrap();
        assert!(only_not.matches(Channel::Push, set(&[Sent])));
        let two = Predicate::combined(&["sent,delivered".into()], &[], Channel::Sms).unwrap();
        assert_eq!(two, Predicate::Combined { did: vec![Sent, Delivered], did_not: vec![] });
        assert!(Predicate::combined(&["undelivered".into()], &[], Channel::Push).is_err());
        assert!(Predicate::combined(&["clicked".into()], &[], Channel::Sms).is_ok());
        assert!(Predicate::combined(&["opened".into()], &[], Channel::Push).is_err());
        assert!(Predicate::combined(&["sent".into()], &["sent".into()], Channel::Push).is_err());
        assert_eq!(p.to_string(), "did=delivered&did_not=clicked");
    }
}

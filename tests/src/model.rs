//! The contract's audience rules as a plain in-memory model, shared by the property tests.

use std::collections::BTreeSet;

use retarget_shared::domain::Channel;

/// Every event kind of the contract: push and SMS, then email's own.
pub const KINDS: [&str; 9] =
    ["sent", "delivered", "clicked", "undelivered", "failed", "converted", "opened", "bounced", "complained"];

/// The number of predicates [`predicate`] knows; the last one applies to every channel.
pub const PREDICATES: usize = 13;

/// The model's rule for one predicate: which recorded kinds put a source subscription in.
pub type Rule = Box<dyn Fn(&BTreeSet<&str>) -> bool>;

/// Whether `kind` is an event of `channel`.
pub fn valid_for(channel: Channel, kind: &str) -> bool {
    let email_only = ["opened", "bounced", "complained"].contains(&kind);
    match channel {
        Channel::Push => kind != "undelivered" && !email_only,
        // An SMS click is a tracked link opened.
        Channel::Sms => !email_only,
        // SES reports bounces, not "undelivered".
        Channel::Email => kind != "undelivered",
    }
}

/// The query string of predicate `i` on a source of `channel` and the model's rule for it, or
/// `None` when the contract refuses the action for that channel (400 `invalid_action`).
pub fn predicate(i: usize, channel: Channel) -> (String, Option<Rule>) {
    let has = |k: &'static str| move |s: &BTreeSet<&str>| s.contains(k);
    let (query, rule): (&str, Option<Rule>) = match (i % PREDICATES, channel) {
        (0, _) => ("action=sent", Some(Box::new(|s: &BTreeSet<&str>| !s.is_empty()))),
        (1, Channel::Push) => (
            "action=delivered",
            Some(Box::new(move |s: &BTreeSet<&str>| has("delivered")(s) || has("clicked")(s))),
        ),
        (1, Channel::Sms) => ("action=delivered", Some(Box::new(has("delivered")))),
        // Email: an open or a click proves the delivery.
        (1, Channel::Email) => (
            "action=delivered",
            Some(Box::new(move |s: &BTreeSet<&str>| {
                has("delivered")(s) || has("opened")(s) || has("clicked")(s)
            })),
        ),
        (2, Channel::Push) => (
            "action=not_delivered",
            Some(Box::new(move |s: &BTreeSet<&str>| {
                !s.is_empty() && !has("delivered")(s) && !has("clicked")(s)
            })),
        ),
        (2, Channel::Sms) => (
            "action=not_delivered",
            Some(Box::new(move |s: &BTreeSet<&str>| {
                (has("undelivered")(s) || has("failed")(s)) && !has("delivered")(s)
            })),
        ),
        (2, Channel::Email) => (
            "action=not_delivered",
            Some(Box::new(move |s: &BTreeSet<&str>| {
                (has("bounced")(s) || has("failed")(s))
                    && !has("delivered")(s)
                    && !has("opened")(s)
                    && !has("clicked")(s)
            })),
        ),
        (10, Channel::Email) => {
            ("action=opened", Some(Box::new(move |s: &BTreeSet<&str>| has("opened")(s) || has("clicked")(s))))
        }
        (10, _) => ("action=opened", None),
        (11, Channel::Email) => (
            "action=not_opened",
            Some(Box::new(move |s: &BTreeSet<&str>| {
                !s.is_empty() && !has("opened")(s) && !has("clicked")(s)
            })),
        ),
        (11, _) => ("action=not_opened", None),
        (3, _) => ("action=clicked", Some(Box::new(has("clicked")))),
        (4, _) => (
            "action=not_clicked",
            Some(Box::new(move |s: &BTreeSet<&str>| !s.is_empty() && !has("clicked")(s))),
        ),
        (8, _) => ("action=converted", Some(Box::new(has("converted")))),
        (9, _) => (
            "action=not_converted",
            Some(Box::new(move |s: &BTreeSet<&str>| !s.is_empty() && !has("converted")(s))),
        ),
        (12, _) => (
            "did=sent&did_not=converted",
            Some(Box::new(move |s: &BTreeSet<&str>| has("sent")(s) && !has("converted")(s))),
        ),
        (5, _) => (
            "did=sent&did_not=delivered",
            Some(Box::new(move |s: &BTreeSet<&str>| has("sent")(s) && !has("delivered")(s))),
        ),
        (6, _) => {
            ("did_not=failed", Some(Box::new(move |s: &BTreeSet<&str>| !s.is_empty() && !has("failed")(s))))
        }
        _ => (
            "did=delivered,sent",
            Some(Box::new(move |s: &BTreeSet<&str>| has("delivered")(s) && has("sent")(s))),
        ),
    };
    (query.to_owned(), rule)
}

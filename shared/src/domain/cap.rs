//! The frequency cap's ledger for one person: which messages they were sent within the window
//! and when. Pure: the store keeps it in one item, updated conditionally on its version, so
//! concurrent sends to one person decide one after the other (see `adapters::store::caps`).

use std::collections::BTreeMap;

use super::FrequencyCap;

/// The sends counted toward a person's cap: message id → when (epoch seconds).
pub type Ledger = BTreeMap<String, i64>;

/// What the cap says about one more send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// This message is already counted for this person (a retry, a redelivery): send.
    Counted,
    /// Room left: send, and store this ledger (the sends still in the window and this one).
    Take(Ledger),
    /// `max` sends within the window already: do not send.
    Capped,
}

/// Whether `message` may be sent to a person whose ledger is `ledger`, at `now`.
pub fn admit(ledger: &Ledger, message: &str, now: i64, cap: &FrequencyCap) -> Admission {
    let since = now - cap.window().num_seconds();
    // Counted within the window: a retry or a redelivery of that send, or the same message to
    // another of the person's numbers. Sent longer ago, it counts anew.
    if ledger.get(message).is_some_and(|at| *at > since) {
        return Admission::Counted;
    }
    let mut recent: Ledger =
        ledger.iter().filter(|(_, at)| **at > since).map(|(m, at)| (m.clone(), *at)).collect();
    if recent.len() >= cap.max as usize {
        return Admission::Capped;
    }
    recent.insert(message.to_owned(), now);
    Admission::Take(recent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Channel;
    use proptest::prelude::*;

    fn cap(max: u32, per_hours: u32) -> FrequencyCap {
        FrequencyCap::new(max, per_hours, vec![Channel::Sms]).unwrap()
    }

    #[test]
    fn a_window_of_max_sends_then_room_again_as_it_slides() {
        let c = cap(2, 1);
        let mut ledger = Ledger::new();
        for (m, t) in [("a", 0), ("b", 10)] {
            match admit(&ledger, m, t, &c) {
                Admission::Take(next) => ledger = next,
                other => panic!("{m}: {other:?}"),
            }
        }
        assert_eq!(admit(&ledger, "c", 20, &c), Admission::Capped);
        assert_eq!(admit(&ledger, "a", 20, &c), Admission::Counted, "a retry of a counted send");
        // 3600 s after "a": it has left the window.
        assert_eq!(admit(&ledger, "c", 3599, &c), Admission::Capped);
        let Admission::Take(next) = admit(&ledger, "c", 3600, &c) else { panic!("room after the window") };
        assert_eq!(next.keys().collect::<Vec<_>>(), ["b", "c"], "sends outside the window are dropped");
    }

    #[test]
    fn a_message_counted_before_the_window_counts_anew() {
        // A message sent to one of a person's numbers, then — its quiet hours over a day later —
        // to another: the window has moved on, so it takes a slot (or is capped) like any send.
        let c = cap(1, 1);
        let ledger = Ledger::from([("a".to_owned(), 0)]);
        assert_eq!(admit(&ledger, "a", 3599, &c), Admission::Counted);
        let Admission::Take(next) = admit(&ledger, "a", 3600, &c) else { panic!("a new slot") };
        assert_eq!(next, Ledger::from([("a".to_owned(), 3600)]));
        let full = Ledger::from([("a".to_owned(), 0), ("b".to_owned(), 3000)]);
        assert_eq!(admit(&full, "a", 3600, &c), Admission::Capped, "the window is full with b");
    }

    proptest! {
        /// Whatever the order and spacing of attempts, no window of `per_hours` holds more than
        /// `max` admitted sends, and an attempt is only refused when the window is full.
        #[test]
        fn never_more_than_max_in_any_window(
            max in 1u32..5, per_hours in 1u32..48,
            gaps in prop::collection::vec(0i64..20_000, 1..60),
        ) {
            let c = cap(max, per_hours);
            let window = i64::from(per_hours) * 3600;
            let mut ledger = Ledger::new();
            let mut sent: Vec<i64> = Vec::new();
            let mut now = 0;
            for (i, gap) in gaps.iter().enumerate() {
                now += gap;
                let in_window = sent.iter().filter(|t| **t > now - window).count();
                match admit(&ledger, &format!("m{i}"), now, &c) {
                    Admission::Take(next) => { ledger = next; sent.push(now); }
                    Admission::Capped => prop_assert!(in_window >= max as usize),
                    Admission::Counted => prop_assert!(false, "a new message counted"),
                }
                for &t in &sent {
                    let n = sent.iter().filter(|s| **s >= t && **s < t + window).count();
                    prop_assert!(n <= max as usize, "{n} sends in the window from {t}");
                }
            }
        }
    }
}

//! The delivery policy as a model: random quiet hours and frequency caps, people with one to
//! three SMS numbers in zones all over the world (given, implied by the number, or the app's
//! default; half-hour and 45-minute offsets, Lord Howe's half-hour DST, start dates next to the
//! DST changes), messages at random instants, some transactional — through the real messages
//! API, the real SMS sender (every job handed to concurrent senders twice) and the real
//! scheduler, ticking at every instant a deferral is due and one second before it.
//!
//! The model does not guess how racing senders break ties; it checks each instant's texts
//! against the contract:
//! - a text goes out only for a request of that instant: a new message's recipient, or a
//!   deferred one whose quiet hours end then (never a second early, never late);
//! - a non-transactional request inside the recipient's quiet hours is deferred to the first
//!   instant their local clock is outside them, and sent only then;
//! - per person, at most `max` distinct messages within any `per_hours` (the ledger's window:
//!   a send exactly `per_hours` ago no longer counts); a message already counted for a person
//!   goes to their other numbers too; a request is refused only when the window is full;
//! - transactional messages are never deferred, never capped and never counted;
//! - each (subscription, message) texted at most once, and by the end every request was either
//!   texted once or capped; no deferral is left.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Duration, NaiveTime, Timelike, Utc};
use chrono_tz::Tz;
use proptest::prelude::*;
use retarget_shared::Clock;
use retarget_shared::domain::SubscriptionId;
use retarget_tests::sending::SmsHarness;
use retarget_tests::{block_on, proptest_cases};
use serde_json::json;

/// Number prefixes (+ four digits) and the zone each implies (None: several zones, so the
/// app's default).
const NUMBERS: [(&str, Option<&str>); 5] = [
    ("+1212555", Some("America/New_York")),
    ("+1415555", Some("America/Los_Angeles")),
    ("+3361234", Some("Europe/Paris")),
    ("+8190123", Some("Asia/Tokyo")),
    ("+1555555", None),
];
/// Zones given explicitly.
const GIVEN: [&str; 6] = [
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Australia/Lord_Howe",
    "Pacific/Apia",
    "America/St_Johns",
    "Europe/London",
];
const DEFAULTS: [&str; 3] = ["UTC", "America/Chicago", "Australia/Sydney"];
/// Days after the test clock's start (2026-11-28) just before DST changes: the US
/// (2027-03-14), the EU (2027-03-28), Lord Howe and Sydney (2027-04-04), the US again
/// (2027-11-07).
const DST_DAYS: [i64; 4] = [105, 119, 126, 343];

#[derive(Debug, Clone)]
struct SubSpec {
    number: usize,
    given: Option<usize>,
}

#[derive(Debug, Clone)]
struct PersonSpec {
    subs: Vec<SubSpec>,
    /// Linked by an external user id (else each subscription counts alone).
    linked: bool,
}

#[derive(Debug, Clone)]
struct StepSpec {
    /// Minutes after the previous step.
    after_minutes: i64,
    /// Seconds on top, so sends fall between whole minutes too.
    seconds: i64,
    /// Which subscriptions (bits over the flattened list; at least one is taken).
    recipients: u64,
    transactional: bool,
}

#[derive(Debug, Clone)]
struct Scenario {
    /// (start, end) in minutes of the day, 30-minute steps; start ≠ end.
    quiet: Option<(u32, u32)>,
    /// (max, per_hours).
    cap: Option<(u32, u32)>,
    default_zone: usize,
    start_day: i64,
    start_minute: i64,
    people: Vec<PersonSpec>,
    steps: Vec<StepSpec>,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let sub = (0..NUMBERS.len(), prop::option::of(0..GIVEN.len()))
        .prop_map(|(number, given)| SubSpec { number, given });
    let person = (prop::collection::vec(sub, 1..=3), any::<bool>())
        .prop_map(|(subs, linked)| PersonSpec { subs, linked });
    let step = (0i64..=900, 0i64..60, any::<u64>(), prop::bool::weighted(0.2)).prop_map(
        |(after_minutes, seconds, recipients, transactional)| StepSpec {
            after_minutes,
            seconds,
            recipients,
            transactional,
        },
    );
    let quiet =
        prop::option::weighted(0.85, (0u32..48, 1u32..48).prop_map(|(s, len)| (s * 30, (s + len) % 48 * 30)));
    let cap = prop::option::weighted(0.75, (1u32..=3, 1u32..=30));
    let start_day = prop_oneof![0i64..200, prop::sample::select(DST_DAYS.to_vec())];
    (
        quiet,
        cap,
        0..DEFAULTS.len(),
        start_day,
        0i64..1440,
        prop::collection::vec(person, 1..=4),
        prop::collection::vec(step, 2..=5),
    )
        .prop_map(|(quiet, cap, default_zone, start_day, start_minute, people, steps)| Scenario {
            quiet,
            cap,
            default_zone,
            start_day,
            start_minute,
            people,
            steps,
        })
}

fn hhmm(minutes: u32) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

fn tz(name: &str) -> Tz {
    name.parse().expect("a zone")
}

/// One subscription of the scenario, as the model sees it.
struct Sub {
    id: SubscriptionId,
    phone: String,
    person: usize,
    zone: Tz,
}

struct Model {
    quiet: Option<(NaiveTime, NaiveTime)>,
    cap: Option<(usize, Duration)>,
    subs: Vec<Sub>,
    /// Which messages are transactional, by index.
    transactional: Vec<bool>,
    /// Deferred requests: (due, subscription, message).
    pending: BTreeSet<(DateTime<Utc>, usize, usize)>,
    /// Per person: message → when it was first counted.
    ledgers: HashMap<usize, BTreeMap<usize, DateTime<Utc>>>,
    /// Every (subscription, message) texted so far.
    texted: BTreeSet<(usize, usize)>,
    /// Requests refused by the cap.
    capped: BTreeSet<(usize, usize)>,
    /// How many requests there were (deferred ones once).
    requests: usize,
}

impl Model {
    fn inside(&self, zone: Tz, at: DateTime<Utc>) -> bool {
        let Some((start, end)) = self.quiet else { return false };
        let local = at.with_timezone(&zone).time();
        if start < end { start <= local && local < end } else { local >= start || local < end }
    }

    /// The first instant at or after `at` outside the quiet hours, a minute at a time (the
    /// local clock crosses a window's edge only on a whole minute).
    fn release(&self, zone: Tz, at: DateTime<Utc>) -> DateTime<Utc> {
        let mut t =
            at.with_second(0).expect("second 0").with_nanosecond(0).expect("nanos 0") + Duration::minutes(1);
        for _ in 0..(27 * 60) {
            if !self.inside(zone, t) {
                return t;
            }
            t += Duration::minutes(1);
        }
        panic!("quiet hours that never end in {zone}");
    }

    /// Checks the texts of one instant against its requests (fresh ones: subject to quiet hours;
    /// released ones: not), then counts them in the ledgers. Fresh requests inside the quiet
    /// hours become pending.
    fn instant(
        &mut self,
        now: DateTime<Utc>,
        fresh: &[(usize, usize)],
        released: &[(usize, usize)],
        texts: &[(usize, usize)],
        what: &str,
    ) {
        let mut requests: Vec<(usize, usize)> = released.to_vec();
        for &(s, m) in fresh {
            self.requests += 1;
            if !self.transactional[m] && self.inside(self.subs[s].zone, now) {
                let due = self.release(self.subs[s].zone, now);
                assert!(due > now);
                self.pending.insert((due, s, m));
            } else {
                requests.push((s, m));
            }
        }
        let texts_set: BTreeSet<(usize, usize)> = texts.iter().copied().collect();
        assert_eq!(texts_set.len(), texts.len(), "{what}: a text went twice at {now}: {texts:?}");
        for t in texts {
            assert!(
                requests.contains(t),
                "{what}: at {now} text {t:?} not requested now (requests {requests:?})"
            );
            assert!(self.texted.insert(*t), "{what}: at {now} text {t:?} sent before");
        }
        // Per person: the transactional ones all go; the others within the cap.
        let mut by_person: BTreeMap<usize, Vec<(usize, usize)>> = BTreeMap::new();
        for r in &requests {
            by_person.entry(self.subs[r.0].person).or_default().push(*r);
        }
        for (person, reqs) in by_person {
            let ledger = self.ledgers.entry(person).or_default();
            let mut new_messages: BTreeSet<usize> = BTreeSet::new();
            let Some((max, window)) = self.cap else {
                for r in &reqs {
                    assert!(texts_set.contains(r), "{what}: at {now} {r:?} was not sent");
                }
                continue;
            };
            // Counted: this message was sent to this person within the window (a send of it
            // longer ago counts anew).
            let counted = |ledger: &BTreeMap<usize, DateTime<Utc>>, m: usize| {
                ledger.get(&m).is_some_and(|at| *at > now - window)
            };
            for &(s, m) in &reqs {
                if self.transactional[m] {
                    assert!(
                        texts_set.contains(&(s, m)),
                        "{what}: at {now} transactional {:?} was not sent",
                        (s, m)
                    );
                } else if !counted(ledger, m) {
                    new_messages.insert(m);
                }
            }
            let in_window = ledger.values().filter(|at| **at > now - window).count();
            let room = max.saturating_sub(in_window);
            let admitted: BTreeSet<usize> = new_messages
                .iter()
                .copied()
                .filter(|m| reqs.iter().any(|&(s, m2)| m2 == *m && texts_set.contains(&(s, m2))))
                .collect();
            assert!(
                admitted.len() <= room,
                "{what}: at {now} person {person} got {admitted:?} with room for {room}"
            );
            assert_eq!(
                admitted.len(),
                room.min(new_messages.len()),
                "{what}: at {now} person {person}: requests {new_messages:?}, room {room}, admitted {admitted:?}"
            );
            for &(s, m) in &reqs {
                if self.transactional[m] {
                    continue;
                }
                let counted = counted(ledger, m) || admitted.contains(&m);
                assert_eq!(
                    texts_set.contains(&(s, m)),
                    counted,
                    "{what}: at {now} {:?}: a counted message goes to every number of the person, a capped one to none",
                    (s, m)
                );
                if !counted {
                    self.capped.insert((s, m));
                }
            }
            for m in admitted {
                ledger.insert(m, now);
            }
        }
    }
}

/// The texts Twilio received since `seen` of them, as (subscription, message).
async fn new_texts(h: &SmsHarness, seen: &mut usize, subs: &[Sub]) -> Vec<(usize, usize)> {
    let texts = h.texts().await;
    let fresh: Vec<(usize, usize)> = texts[*seen..]
        .iter()
        .map(|(to, body)| {
            let s = subs.iter().position(|sub| &sub.phone == to).unwrap_or_else(|| panic!("a text to {to}"));
            let m =
                body.strip_prefix('m').and_then(|i| i.parse().ok()).unwrap_or_else(|| panic!("body {body}"));
            (s, m)
        })
        .collect();
    *seen = texts.len();
    fresh
}

async fn check(scenario: Scenario) {
    let mut policy = json!({"default_timezone": DEFAULTS[scenario.default_zone], "quiet_hours": null, "frequency_cap": null});
    if let Some((start, end)) = scenario.quiet {
        policy["quiet_hours"] = json!({"start": hhmm(start), "end": hhmm(end), "channels": ["sms"]});
    }
    if let Some((max, per_hours)) = scenario.cap {
        policy["frequency_cap"] = json!({"max": max, "per_hours": per_hours, "channels": ["push", "sms"]});
    }
    let h = SmsHarness::new(&policy).await;
    h.world.clock.advance(Duration::days(scenario.start_day) + Duration::minutes(scenario.start_minute));

    let mut subs = Vec::new();
    for (p, person) in scenario.people.iter().enumerate() {
        let user = person.linked.then(|| format!("person-{p}"));
        for spec in &person.subs {
            // Unlinked numbers of one spec are distinct people to the app.
            let person = if person.linked { p } else { 1000 + subs.len() };
            let phone = format!("{}{:04}", NUMBERS[spec.number].0, subs.len());
            let given = spec.given.map(|g| GIVEN[g]);
            let zone = given.or(NUMBERS[spec.number].1).unwrap_or(DEFAULTS[scenario.default_zone]);
            let id = h.subscribe(&phone, user.as_deref(), given).await;
            subs.push(Sub { id, phone, person, zone: tz(zone) });
        }
    }
    let minutes = |m: u32| NaiveTime::from_hms_opt(m / 60, m % 60, 0).expect("a time");
    let mut model = Model {
        quiet: scenario.quiet.map(|(s, e)| (minutes(s), minutes(e))),
        cap: scenario.cap.map(|(max, per)| (max as usize, Duration::hours(i64::from(per)))),
        subs,
        transactional: Vec::new(),
        pending: BTreeSet::new(),
        ledgers: HashMap::new(),
        texted: BTreeSet::new(),
        capped: BTreeSet::new(),
        requests: 0,
    };
    let mut seen = 0;
    let what = format!("{scenario:?}");

    // Visits every due instant up to `until` (and the second before each), ticking there.
    async fn settle(h: &SmsHarness, model: &mut Model, seen: &mut usize, until: DateTime<Utc>, what: &str) {
        while let Some(&(due, _, _)) = model.pending.iter().next() {
            if due > until {
                break;
            }
            let early = due - Duration::seconds(1);
            if early > h.world.clock.now() {
                h.advance_to(early);
                h.tick().await;
                h.send_all_concurrently().await;
                let texts = new_texts(h, seen, &model.subs).await;
                assert!(texts.is_empty(), "{what}: texted at {early}, a second before a release: {texts:?}");
            }
            h.advance_to(due);
            let released: Vec<(usize, usize)> =
                model.pending.iter().filter(|(d, _, _)| *d == due).map(|(_, s, m)| (*s, *m)).collect();
            model.pending.retain(|(d, _, _)| *d != due);
            h.tick().await;
            h.send_all_concurrently().await;
            let texts = new_texts(h, seen, &model.subs).await;
            model.instant(due, &[], &released, &texts, what);
        }
    }

    for (m, step) in scenario.steps.iter().enumerate() {
        let at =
            h.world.clock.now() + Duration::minutes(step.after_minutes) + Duration::seconds(step.seconds);
        settle(&h, &mut model, &mut seen, at - Duration::seconds(1), &what).await;
        h.advance_to(at);
        let mut recipients: Vec<usize> =
            (0..model.subs.len()).filter(|i| step.recipients & (1 << (i % 64)) != 0).collect();
        if recipients.is_empty() {
            recipients.push(m % model.subs.len());
        }
        model.transactional.push(step.transactional);
        let ids: Vec<SubscriptionId> = recipients.iter().map(|&s| model.subs[s].id).collect();
        // Releases due now go in the same tick as the new message's jobs.
        let released: Vec<(usize, usize)> =
            model.pending.iter().filter(|(d, _, _)| *d == at).map(|(_, s, m)| (*s, *m)).collect();
        model.pending.retain(|(d, _, _)| *d != at);
        h.tick().await;
        h.message(&ids, &format!("m{m}"), step.transactional).await;
        h.send_all_concurrently().await;
        let texts = new_texts(&h, &mut seen, &model.subs).await;
        let fresh: Vec<(usize, usize)> = recipients.iter().map(|&s| (s, m)).collect();
        model.instant(at, &fresh, &released, &texts, &what);
    }
    // Everything still deferred goes at its instant; then two quiet days: nothing more.
    settle(&h, &mut model, &mut seen, DateTime::<Utc>::MAX_UTC, &what).await;
    h.advance_to(h.world.clock.now() + Duration::days(2));
    h.tick().await;
    h.send_all_concurrently().await;
    assert!(
        new_texts(&h, &mut seen, &model.subs).await.is_empty(),
        "{what}: a text after everything was due"
    );
    assert!(h.world.store.pending_deferrals(h.app.app.app_id).await.expect("deferrals").is_empty(), "{what}");
    assert_eq!(
        model.texted.len() + model.capped.len(),
        model.requests,
        "{what}: every request texted or capped, once"
    );
}

/// A fixed scenario next to the US DST change (the property's cases are random).
fn dst_scenario() -> Scenario {
    let sub = |number, given| SubSpec { number, given };
    Scenario {
        quiet: Some((21 * 60, 2 * 60 + 30)),
        cap: Some((1, 12)),
        default_zone: 1,
        start_day: 105,
        start_minute: 23 * 60,
        people: vec![
            PersonSpec { subs: vec![sub(0, None), sub(4, None)], linked: true },
            PersonSpec { subs: vec![sub(1, None), sub(0, Some(2))], linked: false },
        ],
        steps: vec![
            StepSpec { after_minutes: 60, seconds: 17, recipients: u64::MAX, transactional: false },
            StepSpec { after_minutes: 30, seconds: 0, recipients: 0b0101, transactional: false },
            StepSpec { after_minutes: 0, seconds: 5, recipients: 0b0011, transactional: true },
        ],
    }
}

#[test]
fn a_night_across_the_us_dst_change() {
    block_on(check(dst_scenario()));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(proptest_cases(16)))]

    #[test]
    fn texts_follow_the_delivery_policy(scenario in scenario()) {
        block_on(check(scenario));
    }
}

//! Audiences through the audiences function (API Gateway events) against DynamoDB Local,
//! checked against a plain in-memory model of the contract's rules.

use std::collections::{BTreeMap, BTreeSet};

use chrono::Duration;
use proptest::prelude::*;
use rand::seq::SliceRandom;
use retarget_shared::domain::{Channel, EventKind, Plan, SubscriptionId, UnsubscribeReason};
use retarget_shared::keys;
use retarget_tests::model::{KINDS, PREDICATES, predicate, valid_for};
use retarget_tests::{TestApp, World, block_on, proptest_cases};
use serde_json::Value;

/// Every member of an audience, paging with `limit`; asserts no member comes twice.
async fn all_pages(world: &World, t: &TestApp, base: &str, limit: usize) -> Vec<String> {
    let mut members = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10_000 {
        let mut target = format!("{base}&limit={limit}");
        if let Some(c) = &cursor {
            target.push_str(&format!("&cursor={c}"));
        }
        let r = world.call(t.get(&target)).await;
        assert_eq!(r.status, 200, "{r:?}");
        let page = r.body["subscriptions"].as_array().unwrap();
        assert!(page.len() <= limit);
        members.extend(page.iter().map(|m| m["subscription_id"].as_str().unwrap().to_owned()));
        match r.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let unique: BTreeSet<_> = members.iter().collect();
    assert_eq!(unique.len(), members.len(), "a member came twice: {members:?}");
    members
}

fn ids(subs: &[SubscriptionId]) -> BTreeSet<String> {
    subs.iter().map(ToString::to_string).collect()
}

#[tokio::test]
async fn push_actions_on_the_same_channel() {
    use EventKind::*;
    let (world, t) = World::with_app(Plan::Pro).await;
    let message = world.message(&t, Channel::Push).await;
    let s = world.subscriptions(&t, Channel::Push, 6).await;
    world
        .record(
            &message,
            &[
                (s[0], Sent, None),
                (s[1], Sent, None),
                (s[1], Delivered, None),
                (s[2], Sent, None),
                (s[2], Delivered, None),
                (s[2], Clicked, None),
                (s[3], Clicked, None),
                (s[4], Failed, None),
                (s[5], Sent, None),
                (s[5], Clicked, None),
            ],
        )
        .await;
    world.store.unsubscribe(t.app.app_id, s[5], UnsubscribeReason::Api).await.unwrap();
    let m = message.message_id;
    for (action, expected) in [
        ("sent", vec![s[0], s[1], s[2], s[3], s[4]]),
        ("delivered", vec![s[1], s[2], s[3]]),
        ("not_delivered", vec![s[0], s[4]]),
        ("clicked", vec![s[2], s[3]]),
        ("not_clicked", vec![s[0], s[1], s[4]]),
    ] {
        let base = format!("/v1/messages/{m}/audience?action={action}");
        let members: BTreeSet<String> = all_pages(&world, &t, &base, 2).await.into_iter().collect();
        assert_eq!(members, ids(&expected), "{action}");
        let count = world.call(t.get(&format!("/v1/messages/{m}/audience/count?action={action}"))).await;
        assert_eq!(
            (count.body["count"].as_u64(), count.body["unreachable"].as_u64()),
            (Some(expected.len() as u64), Some(0)),
            "{action}"
        );
    }
    let combined =
        all_pages(&world, &t, &format!("/v1/messages/{m}/audience?did=delivered&did_not=clicked"), 10).await;
    assert_eq!(combined.into_iter().collect::<BTreeSet<_>>(), ids(&[s[1]]));
}

#[tokio::test]
async fn sms_to_push_through_external_user_ids() {
    use EventKind::*;
    let (world, t) = World::with_app(Plan::Pro).await;
    let message = world.message(&t, Channel::Sms).await;
    // Person a: two phones (both undelivered) and two devices → each device once.
    let a1 = world.subscription(&t, Channel::Sms, "+15550000001", Some("a")).await;
    let a2 = world.subscription(&t, Channel::Sms, "+15550000002", Some("a")).await;
    let a_push1 = world.subscription(&t, Channel::Push, "a-1", Some("a")).await;
    let a_push2 = world.subscription(&t, Channel::Push, "a-2", Some("a")).await;
    // Person b: one phone, device unsubscribed → unreachable.
    let b1 = world.subscription(&t, Channel::Sms, "+15550000003", Some("b")).await;
    let b_push = world.subscription(&t, Channel::Push, "b-1", Some("b")).await;
    world.store.unsubscribe(t.app.app_id, b_push, UnsubscribeReason::Api).await.unwrap();
    // No external user id → unreachable.
    let c1 = world.subscription(&t, Channel::Sms, "+15550000004", None).await;
    // Person d: delivered → not in not_delivered.
    let d1 = world.subscription(&t, Channel::Sms, "+15550000005", Some("d")).await;
    world.subscription(&t, Channel::Push, "d-1", Some("d")).await;
    world
        .record(
            &message,
            &[
                (a1, Sent, Some("a")),
                (a1, Undelivered, Some("a")),
                (a2, Failed, Some("a")),
                (b1, Undelivered, Some("b")),
                (c1, Failed, None),
                (d1, Sent, Some("d")),
                (d1, Delivered, Some("d")),
            ],
        )
        .await;
    let m = message.message_id;
    for limit in [1, 2, 5] {
        let members = all_pages(
            &world,
            &t,
            &format!("/v1/messages/{m}/audience?action=not_delivered&channel=push"),
            limit,
        )
        .await;
        assert_eq!(members.into_iter().collect::<BTreeSet<_>>(), ids(&[a_push1, a_push2]), "limit {limit}");
    }
    let count = world
        .call(t.get(&format!("/v1/messages/{m}/audience/count?action=not_delivered&channel=push")))
        .await;
    assert_eq!((count.body["count"].as_u64(), count.body["unreachable"].as_u64()), (Some(2), Some(2)));
    let page =
        world.call(t.get(&format!("/v1/messages/{m}/audience?action=not_delivered&channel=push"))).await;
    assert_eq!(page.body["channel"], "push");
    assert_eq!(page.body["action"], "not_delivered");
    assert!(page.body["subscriptions"].as_array().unwrap().iter().all(|m| m["external_user_id"] == "a"));
}

#[tokio::test]
async fn source_rules_and_error_precedence() {
    let (world, pro) = World::with_app(Plan::Pro).await;
    let sms = world.message(&pro, Channel::Sms).await;
    let m = sms.message_id;
    let q = |path: &str| format!("/v1/messages/{m}{path}");

    for (path, status, code) in [
        ("/audience?did=clicked,opened", 400, "invalid_action"),
        ("/audience?did=sent&did_not=clicked,opened", 400, "invalid_action"),
        ("/audience?action=opened", 400, "invalid_action"),
        ("/audience", 400, "invalid_request"),
        ("/audience?action=sent&did=sent", 400, "invalid_request"),
        ("/audience?action=sent&limit=0", 400, "invalid_request"),
        ("/audience?action=sent&limit=1001", 400, "invalid_request"),
        ("/audience?action=sent&cursor=forged", 400, "invalid_request"),
        ("/audience?action=sent&channel=fax", 400, "invalid_request"),
    ] {
        world.call(pro.get(&q(path))).await.assert_problem(status, code);
    }
    let missing = retarget_shared::domain::MessageId::new();
    world
        .call(pro.get(&format!("/v1/messages/{missing}/audience?action=clicked")))
        .await
        .assert_problem(404, "not_found");
    let other = world.app(Plan::Pro).await;
    world.call(other.get(&q("/audience?action=sent"))).await.assert_problem(404, "not_found");

    // Free plan: 403 before anything about the action.
    let free = world.app(Plan::Free).await;
    let free_message = world.message(&free, Channel::Push).await;
    world
        .call(free.get(&format!("/v1/messages/{}/audience?action=opened", free_message.message_id)))
        .await
        .assert_problem(403, "plan_required");
    // Upgraded later: the old message stays unretargetable.
    world.clock.advance(Duration::seconds(1));
    world.store.set_plan(free.app.app_id, Plan::Pro).await.unwrap();
    world
        .call(free.get(&format!("/v1/messages/{}/audience/count?action=sent", free_message.message_id)))
        .await
        .assert_problem(422, "source_not_retargetable");

    // The 30-day edge, exactly.
    world.clock.advance(Duration::days(keys::RETENTION_DAYS) - Duration::seconds(2));
    assert_eq!(world.call(pro.get(&q("/audience/count?action=sent"))).await.status, 200);
    world.clock.advance(Duration::seconds(1));
    world.call(pro.get(&q("/audience/count?action=sent"))).await.assert_problem(410, "source_expired");
    world.call(pro.get(&q("/audience?action=clicked"))).await.assert_problem(410, "source_expired");
}

// ---- The reference model ----------------------------------------------------------------

#[derive(Debug, Clone)]
struct Scenario {
    /// (channel, person index or none, unsubscribed)
    subscriptions: Vec<(Channel, Option<usize>, bool)>,
    /// (subscription index, kind index) — duplicates and invalid-for-channel kinds are dropped.
    events: Vec<(usize, usize)>,
    source: Channel,
    target: Channel,
    predicate: usize,
    limit: usize,
    /// Query after the source's 30 days (everything must be refused with 410).
    expired: bool,
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let sub = (
        prop_oneof![Just(Channel::Push), Just(Channel::Sms), Just(Channel::Email)],
        proptest::option::of(0..5usize),
        proptest::bool::weighted(0.2),
    );
    (
        proptest::collection::vec(sub, 1..18),
        proptest::collection::vec((0..18usize, 0..KINDS.len()), 0..50),
        prop_oneof![Just(Channel::Push), Just(Channel::Sms), Just(Channel::Email)],
        prop_oneof![Just(Channel::Push), Just(Channel::Sms), Just(Channel::Email)],
        0..PREDICATES,
        1..4usize,
        proptest::bool::weighted(0.15),
    )
        .prop_map(|(subscriptions, events, source, target, predicate, limit, expired)| Scenario {
            subscriptions,
            events,
            source,
            target,
            predicate,
            limit,
            expired,
        })
}

async fn check(scenario: Scenario) {
    let (world, t) = World::with_app(Plan::Pro).await;
    let message = world.message(&t, scenario.source).await;
    let mut subs = Vec::new();
    for (i, (channel, person, _)) in scenario.subscriptions.iter().enumerate() {
        let address = match channel {
            Channel::Push => format!("token-{i}"),
            Channel::Sms => format!("+1555000{i:04}"),
            Channel::Email => format!("Person.{i}@Example.com"),
        };
        let user = person.map(|p| format!("person-{p}"));
        subs.push(world.subscription(&t, *channel, &address, user.as_deref()).await);
    }
    for (i, (_, _, unsubscribed)) in scenario.subscriptions.iter().enumerate() {
        if *unsubscribed {
            world.store.unsubscribe(t.app.app_id, subs[i], UnsubscribeReason::Api).await.unwrap();
        }
    }
    // Events: only for source-channel subscriptions and kinds valid there; duplicated, shuffled.
    let mut events = Vec::new();
    let mut model_kinds: BTreeMap<usize, BTreeSet<&str>> = BTreeMap::new();
    for (s, k) in &scenario.events {
        let s = s % subs.len();
        let (channel, person, _) = scenario.subscriptions[s];
        if channel != scenario.source || !valid_for(channel, KINDS[*k]) {
            continue;
        }
        model_kinds.entry(s).or_default().insert(KINDS[*k]);
        let user = person.map(|p| format!("person-{p}"));
        events.push((subs[s], KINDS[*k].parse::<EventKind>().unwrap(), user.clone()));
        events.push((subs[s], KINDS[*k].parse::<EventKind>().unwrap(), user));
    }
    events.shuffle(&mut rand::rng());
    let as_refs: Vec<(SubscriptionId, EventKind, Option<&str>)> =
        events.iter().map(|(s, k, u)| (*s, *k, u.as_deref())).collect();
    for chunk in as_refs.chunks(9) {
        world.record(&message, chunk).await;
    }

    // The model.
    // Actions the source's channel refuses are the audiences tests' business, not the model's.
    let (query, rule) = match predicate(scenario.predicate, scenario.source) {
        (query, Some(rule)) => (query, rule),
        (_, None) => {
            let (query, rule) = predicate(PREDICATES - 1, scenario.source);
            (query, rule.expect("the last predicate applies to every channel"))
        }
    };
    let mut expected = BTreeSet::new();
    let mut unreachable = 0u64;
    for (s, kinds) in &model_kinds {
        if !rule(kinds) {
            continue;
        }
        let (_, person, unsubscribed) = scenario.subscriptions[*s];
        if scenario.target == scenario.source {
            if !unsubscribed {
                expected.insert(subs[*s].to_string());
            }
            continue;
        }
        let targets: Vec<String> = scenario
            .subscriptions
            .iter()
            .enumerate()
            .filter(|(_, (c, p, u))| *c == scenario.target && !u && person.is_some() && *p == person)
            .map(|(i, _)| subs[i].to_string())
            .collect();
        if targets.is_empty() {
            unreachable += 1;
        }
        expected.extend(targets);
    }

    let m = message.message_id;
    let channel = scenario.target.as_str();
    if scenario.expired {
        world.clock.advance(chrono::Duration::days(keys::RETENTION_DAYS));
        world
            .call(t.get(&format!("/v1/messages/{m}/audience/count?{query}&channel={channel}")))
            .await
            .assert_problem(410, "source_expired");
        world
            .call(t.get(&format!("/v1/messages/{m}/audience?{query}&channel={channel}")))
            .await
            .assert_problem(410, "source_expired");
        return;
    }
    let count =
        world.call(t.get(&format!("/v1/messages/{m}/audience/count?{query}&channel={channel}"))).await;
    assert_eq!(count.status, 200, "{count:?}");
    assert_eq!(count.body["count"].as_u64(), Some(expected.len() as u64), "{query} {scenario:?}");
    assert_eq!(count.body["unreachable"].as_u64(), Some(unreachable), "{query} {scenario:?}");
    let members = all_pages(
        &world,
        &t,
        &format!("/v1/messages/{m}/audience?{query}&channel={channel}"),
        scenario.limit,
    )
    .await;
    assert_eq!(members.into_iter().collect::<BTreeSet<_>>(), expected, "{query} {scenario:?}");
    let _: Value = count.body;
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(proptest_cases(24)))]

    #[test]
    fn audiences_equal_the_model(scenario in scenario()) {
        block_on(check(scenario));
    }
}

/// Issue 15 (conversions, SMS clicks): `converted` is recorded on both channels through the
/// events API, counted in the stats, and selects `converted` / `not_converted` and
/// `did=sent&did_not=converted`; an SMS `clicked` (a link the app tracks itself) selects
/// `clicked` / `not_clicked` on an SMS source.
#[tokio::test]
async fn conversions_and_sms_clicks_select_their_audiences() {
    let (world, t) = World::with_app(Plan::Pro).await;
    for channel in Channel::ALL {
        let message = world.message(&t, channel).await;
        let subs = world.subscriptions(&t, channel, 4).await;
        world.record_each(&message, EventKind::Sent, &subs).await;
        let m = message.message_id;
        let events: Vec<Value> = [(0, "converted"), (1, "converted"), (1, "clicked"), (2, "clicked")]
            .iter()
            .map(|(i, kind)| serde_json::json!({"message_id": m, "subscription_id": subs[*i], "kind": kind}))
            .collect();
        let r = world.call(t.post("/v1/events", &serde_json::json!({ "events": events }))).await;
        assert_eq!((r.status, r.body["accepted"].as_u64()), (200, Some(4)), "{channel}: {r:?}");

        let stats = world.stats(&message).await;
        assert_eq!((stats[&EventKind::Converted], stats[&EventKind::Clicked]), (2, 2), "{channel}");
        let got = world.call(t.get(&format!("/v1/messages/{m}"))).await;
        assert_eq!(got.body["stats"]["converted"], 2, "{got:?}");

        let members = async |query: &str| -> BTreeSet<String> {
            all_pages(&world, &t, &format!("/v1/messages/{m}/audience?{query}"), 2)
                .await
                .into_iter()
                .collect()
        };
        assert_eq!(members("action=converted").await, ids(&subs[..2]), "{channel}");
        assert_eq!(members("action=not_converted").await, ids(&subs[2..]), "{channel}");
        assert_eq!(members("did=sent&did_not=converted").await, ids(&subs[2..]), "{channel}");
        assert_eq!(members("action=clicked").await, ids(&subs[1..3]), "{channel}");
        assert_eq!(members("action=not_clicked").await, ids(&[subs[0], subs[3]]), "{channel}");
        let count = world.call(t.get(&format!("/v1/messages/{m}/audience/count?action=not_converted"))).await;
        assert_eq!(count.body["count"], 2, "{count:?}");
    }
}

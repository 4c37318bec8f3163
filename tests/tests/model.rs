//! The whole interaction model through the real handlers, against DynamoDB Local and the SQS
//! emulator, checked against a plain in-memory model of the contract's rules.
//!
//! Each case is a random world: two or three tenants (sharing addresses and external user ids, so
//! any leak between them shows), subscriptions on all three channels linked by external user ids
//! and upserted more than once, messages on every channel (some old enough to expire before the
//! end), events duplicated, shuffled and batched through `POST /v1/events` and the signed push
//! webhook, some of them for another tenant's ids, for kinds the channel does not have, or too
//! late; then unsubscribes. Every events response, every message's stats, and every audience
//! count, `unreachable` and paged export must equal the model's.

use std::collections::{BTreeMap, BTreeSet};

use chrono::Duration;
use proptest::prelude::*;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use retarget_shared::Clock;
use retarget_shared::domain::Channel;
use retarget_shared::edge::signatures::push_signature;
use retarget_shared::keys;
use retarget_tests::model::{KINDS, PREDICATES, predicate, valid_for};
use retarget_tests::{ApiRequest, TestApp, World, block_on, placeholder_credentials, proptest_cases};
use serde_json::{Value, json};

#[derive(Debug, Clone)]
struct SubSpec {
    channel: Channel,
    /// An index into a small pool of addresses, so some subscriptions are upserted twice.
    address: usize,
}

#[derive(Debug, Clone)]
struct EventSpec {
    message: usize,
    subscription: usize,
    kind: usize,
    /// 0: this tenant's ids; 1: another tenant's subscription; 2: another tenant's message.
    foreign: usize,
    /// Delivered twice (in any order, possibly in the same request).
    twice: bool,
    /// Through the push webhook instead of the events API (push delivered/clicked only).
    webhook: bool,
    with_event_id: bool,
}

#[derive(Debug, Clone)]
struct TenantSpec {
    subscriptions: Vec<SubSpec>,
    /// (channel, old): old messages are created 31 days before the queries.
    messages: Vec<(Channel, bool)>,
    /// Events recorded while every message is young.
    early: Vec<EventSpec>,
    /// Events recorded after the old messages expired.
    late: Vec<EventSpec>,
    /// Indices of subscriptions unsubscribed at the end.
    unsubscribe: Vec<usize>,
}

#[derive(Debug, Clone)]
struct Query {
    tenant: usize,
    message: usize,
    predicate: usize,
    target: Channel,
    limit: usize,
}

#[derive(Debug, Clone)]
struct Scenario {
    tenants: Vec<TenantSpec>,
    batch: usize,
    queries: Vec<Query>,
    shuffle_seed: u64,
}

fn channel() -> impl Strategy<Value = Channel> {
    prop_oneof![Just(Channel::Push), Just(Channel::Sms), Just(Channel::Email)]
}

fn event() -> impl Strategy<Value = EventSpec> {
    (
        0..4usize,
        0..10usize,
        0..KINDS.len(),
        prop_oneof![8 => Just(0usize), 1 => Just(1usize), 1 => Just(2usize)],
        proptest::bool::weighted(0.4),
        proptest::bool::weighted(0.3),
        proptest::bool::ANY,
    )
        .prop_map(|(message, subscription, kind, foreign, twice, webhook, with_event_id)| EventSpec {
            message,
            subscription,
            kind,
            foreign,
            twice,
            webhook,
            with_event_id,
        })
}

fn tenant() -> impl Strategy<Value = TenantSpec> {
    (
        proptest::collection::vec((channel(), 0..6usize), 1..10),
        proptest::collection::vec((channel(), proptest::bool::weighted(0.3)), 1..4),
        proptest::collection::vec(event(), 0..30),
        proptest::collection::vec(event(), 0..12),
        proptest::collection::vec(0..10usize, 0..3),
    )
        .prop_map(|(subscriptions, messages, early, late, unsubscribe)| TenantSpec {
            subscriptions: subscriptions
                .into_iter()
                .map(|(channel, address)| SubSpec { channel, address })
                .collect(),
            messages,
            early,
            late,
            unsubscribe,
        })
}

fn scenario() -> impl Strategy<Value = Scenario> {
    let query = (0..3usize, 0..4usize, 0..PREDICATES, channel(), 1..4usize).prop_map(
        |(tenant, message, predicate, target, limit)| Query { tenant, message, predicate, target, limit },
    );
    (
        proptest::collection::vec(tenant(), 2..4),
        1..8usize,
        proptest::collection::vec(query, 1..6),
        any::<u64>(),
    )
        .prop_map(|(tenants, batch, queries, shuffle_seed)| Scenario {
            tenants,
            batch,
            queries,
            shuffle_seed,
        })
}

/// A tenant as the model sees it.
struct Tenant {
    app: TestApp,
    /// Distinct subscriptions: id, channel, external user id.
    subs: Vec<(String, Channel, Option<String>)>,
    /// Spec index → index into `subs` (upserts of the same address share one).
    sub_of_spec: Vec<usize>,
    /// Message ids with channel and age.
    messages: Vec<(String, Channel, bool)>,
    unsubscribed: BTreeSet<usize>,
    /// (message index, subscription index) → recorded kinds.
    recorded: BTreeMap<(usize, usize), BTreeSet<&'static str>>,
}

/// The address of pool slot `slot`, identical in every tenant.
fn address(channel: Channel, slot: usize) -> Value {
    match channel {
        Channel::Push => json!({"channel": "push", "token": format!("token-{slot}"), "platform": "android"}),
        Channel::Sms => json!({"channel": "sms", "phone_number": format!("+1555010{slot:04}")}),
        Channel::Email => json!({"channel": "email", "email": format!("Person.{slot}@Example.com")}),
    }
}

/// The person behind pool slot `slot` (both channels' slot s belong to the same person; slot 5
/// has none), identical in every tenant.
fn person(slot: usize) -> Option<String> {
    (slot != 5).then(|| format!("person-{}", slot % 3))
}

async fn create_tenant(world: &World, spec: &TenantSpec) -> Tenant {
    // Placeholder providers on every channel, SES included, so messages of all three are taken.
    let ses = retarget_shared::domain::SesConfig::new("news@shop.example.com", None).expect("SES settings");
    let credentials = retarget_shared::domain::Credentials { ses: Some(ses), ..placeholder_credentials() };
    let app = world.create_app("Model App", retarget_shared::domain::Plan::Pro, credentials).await;
    let mut subs: Vec<(String, Channel, Option<String>)> = Vec::new();
    let mut sub_of_spec = Vec::new();
    let mut by_address: BTreeMap<(Channel, usize), usize> = BTreeMap::new();
    // Every tenant gets one subscription per channel so each message has a recipient.
    let specs = spec.subscriptions.iter().cloned().chain([
        SubSpec { channel: Channel::Push, address: 9 },
        SubSpec { channel: Channel::Sms, address: 9 },
        SubSpec { channel: Channel::Email, address: 9 },
    ]);
    for s in specs {
        let mut body = address(s.channel, s.address);
        let user = person(s.address);
        if let Some(user) = &user {
            body["external_user_id"] = user.clone().into();
        }
        let r = world.call(app.post("/v1/subscriptions", &body)).await;
        let id = r.body["subscription_id"].as_str().map(str::to_owned);
        match by_address.get(&(s.channel, s.address)) {
            Some(&i) => {
                assert_eq!(
                    (r.status, id.as_deref()),
                    (200, Some(subs[i].0.as_str())),
                    "upsert {body}: {r:?}"
                );
                sub_of_spec.push(i);
            }
            None => {
                assert_eq!(r.status, 201, "create {body}: {r:?}");
                assert_eq!(r.body["status"], "active", "{r:?}");
                by_address.insert((s.channel, s.address), subs.len());
                sub_of_spec.push(subs.len());
                subs.push((id.expect("a subscription id"), s.channel, user));
            }
        }
    }
    Tenant {
        app,
        subs,
        sub_of_spec,
        messages: Vec::new(),
        unsubscribed: BTreeSet::new(),
        recorded: BTreeMap::new(),
    }
}

async fn create_message(world: &World, t: &mut Tenant, channel: Channel, old: bool) {
    let recipients: Vec<&str> =
        t.subs.iter().filter(|(_, c, _)| *c == channel).map(|(id, _, _)| id.as_str()).collect();
    let body = json!({
        "channel": channel.as_str(),
        "contents": {"title": "Hi", "body": "hello"},
        "include_subscription_ids": recipients,
    });
    let r = world.call(t.app.post("/v1/messages", &body)).await;
    assert_eq!(r.status, 202, "{r:?}");
    assert_eq!(r.body["recipients"].as_u64(), Some(recipients.len() as u64), "{r:?}");
    t.messages.push((r.body["message_id"].as_str().expect("a message id").to_owned(), channel, old));
}

/// One event as sent, with what the model expects of it.
struct Outgoing {
    tenant: usize,
    body: Value,
    webhook: bool,
    /// `Err(code)` for a rejection; `Ok(Some(key))` for an event the model records.
    expect: Result<(usize, usize, &'static str), &'static str>,
}

/// The events of one phase: those whose message is alive in this phase, or, late, every one.
fn outgoing(tenants: &[Tenant], specs: &[TenantSpec], late: bool) -> Vec<Outgoing> {
    let mut out = Vec::new();
    for (ti, spec) in specs.iter().enumerate() {
        let t = &tenants[ti];
        let other = &tenants[(ti + 1) % tenants.len()];
        if t.messages.is_empty() {
            continue; // no old message yet: nothing to say early
        }
        for e in if late { &spec.late } else { &spec.early } {
            let mi = e.message % t.messages.len();
            let (message_id, channel, old) = &t.messages[mi];
            // Early events only concern the old messages (the young ones do not exist yet).
            if !late && !old {
                continue;
            }
            let si = t.sub_of_spec[e.subscription % t.sub_of_spec.len()];
            let (sub_id, sub_channel, _) = &t.subs[si];
            let kind = KINDS[e.kind];
            let (message_id, sub_id, expect) = match e.foreign {
                2 if !other.messages.is_empty() => {
                    (other.messages[0].0.clone(), sub_id.clone(), Err("unknown_message"))
                }
                1 => {
                    let foreign = &other.subs[e.subscription % other.subs.len()].0;
                    (message_id.clone(), foreign.clone(), Err("unknown_subscription"))
                }
                _ if sub_channel != channel => {
                    (message_id.clone(), sub_id.clone(), Err("unknown_subscription"))
                }
                _ if !valid_for(*channel, kind) => (message_id.clone(), sub_id.clone(), Err("invalid_kind")),
                _ if late && *old => (message_id.clone(), sub_id.clone(), Err("message_expired")),
                _ => (message_id.clone(), sub_id.clone(), Ok((mi, si, kind))),
            };
            let webhook = e.webhook
                && *channel == Channel::Push
                && matches!(kind, "delivered" | "clicked")
                && expect.is_ok();
            let mut body = json!({"message_id": message_id, "subscription_id": sub_id, "kind": kind});
            if e.with_event_id || webhook {
                body["event_id"] = format!("{message_id}:{sub_id}:{kind}").into();
            }
            if webhook {
                body["occurred_at"] = "2026-11-28T14:00:00Z".into();
            }
            for _ in 0..if e.twice { 2 } else { 1 } {
                out.push(Outgoing { tenant: ti, body: body.clone(), webhook, expect });
            }
        }
    }
    out
}

/// Sends one phase's events through the events API (batches of `batch`, per tenant) and the
/// push webhook, checking every response against the model, which records what it accepts.
async fn deliver(world: &World, tenants: &mut [Tenant], mut events: Vec<Outgoing>, batch: usize, seed: u64) {
    events.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    for (ti, t) in tenants.iter_mut().enumerate() {
        let mine: Vec<&Outgoing> = events.iter().filter(|o| o.tenant == ti).collect();
        let mut pending: Vec<&Outgoing> = Vec::new();
        let flush = |pending: Vec<&Outgoing>, t: &mut Tenant| {
            let mut accepted = 0;
            let mut duplicates = 0;
            let mut rejected = Vec::new();
            for (i, o) in pending.iter().enumerate() {
                match o.expect {
                    Err(code) => rejected.push(json!({"index": i, "code": code})),
                    Ok((mi, si, kind)) => {
                        if t.recorded.entry((mi, si)).or_default().insert(kind) {
                            accepted += 1;
                        } else {
                            duplicates += 1;
                        }
                    }
                }
            }
            let body = json!({"events": pending.iter().map(|o| o.body.clone()).collect::<Vec<_>>()});
            (body, json!({"accepted": accepted, "duplicates": duplicates, "rejected": rejected}))
        };
        for o in mine {
            if o.webhook {
                if let Ok((mi, si, kind)) = o.expect {
                    t.recorded.entry((mi, si)).or_default().insert(kind);
                }
                let raw = o.body.to_string();
                let now = world.clock.now_epoch();
                let secret = &t.app.push_webhook_secret;
                let signature = format!("t={now},v1={}", push_signature(secret, now, raw.as_bytes()));
                let r = world
                    .call(
                        ApiRequest::post(&format!("/v1/webhooks/push/{}", t.app.app.app_id))
                            .header("content-type", "application/json")
                            .header("Retarget-Signature", &signature)
                            .raw_body(raw.as_bytes()),
                    )
                    .await;
                assert_eq!(r.status, 204, "push webhook {raw}: {r:?}");
                continue;
            }
            pending.push(o);
            if pending.len() == batch {
                let (body, expected) = flush(std::mem::take(&mut pending), t);
                post_events(world, t, body, expected).await;
            }
        }
        if !pending.is_empty() {
            let (body, expected) = flush(pending, t);
            post_events(world, t, body, expected).await;
        }
    }
}

async fn post_events(world: &World, t: &Tenant, body: Value, expected: Value) {
    let r = world.call(t.app.post("/v1/events", &body)).await;
    assert_eq!(r.status, 200, "{body}: {r:?}");
    assert_eq!(r.body, expected, "events response for {body}");
}

/// The model's audience of message `mi` of tenant `t`: (members, unreachable).
fn model_audience(
    t: &Tenant,
    mi: usize,
    rule: &dyn Fn(&BTreeSet<&str>) -> bool,
    target: Channel,
) -> (BTreeSet<String>, u64) {
    let (_, source, _) = t.messages[mi];
    let mut members = BTreeSet::new();
    let mut unreachable = 0;
    for ((m, si), kinds) in &t.recorded {
        if *m != mi || !rule(kinds) {
            continue;
        }
        if target == source {
            if !t.unsubscribed.contains(si) {
                members.insert(t.subs[*si].0.clone());
            }
            continue;
        }
        let person = &t.subs[*si].2;
        let targets: Vec<String> = t
            .subs
            .iter()
            .enumerate()
            .filter(|(i, (_, c, p))| {
                *c == target && person.is_some() && p == person && !t.unsubscribed.contains(i)
            })
            .map(|(_, (id, _, _))| id.clone())
            .collect();
        if targets.is_empty() {
            unreachable += 1;
        }
        members.extend(targets);
    }
    (members, unreachable)
}

async fn check(scenario: Scenario) {
    let world = World::new().await;
    let mut tenants = Vec::new();
    for spec in &scenario.tenants {
        tenants.push(create_tenant(&world, spec).await);
    }

    // Old messages first; their early events while they are young.
    for (t, spec) in tenants.iter_mut().zip(&scenario.tenants) {
        for (channel, _) in spec.messages.iter().filter(|(_, old)| *old) {
            create_message(&world, t, *channel, true).await;
        }
    }
    world.clock.advance(Duration::hours(1));
    let early = outgoing(&tenants, &scenario.tenants, false);
    deliver(&world, &mut tenants, early, scenario.batch, scenario.shuffle_seed).await;

    world.clock.advance(Duration::days(keys::RETENTION_DAYS) + Duration::hours(1));
    for (t, spec) in tenants.iter_mut().zip(&scenario.tenants) {
        for (channel, _) in spec.messages.iter().filter(|(_, old)| !old) {
            create_message(&world, t, *channel, false).await;
        }
    }
    let late = outgoing(&tenants, &scenario.tenants, true);
    deliver(&world, &mut tenants, late, scenario.batch, scenario.shuffle_seed ^ 1).await;

    for (t, spec) in tenants.iter_mut().zip(&scenario.tenants) {
        for u in &spec.unsubscribe {
            let si = t.sub_of_spec[u % t.sub_of_spec.len()];
            let r = world
                .call(
                    ApiRequest::post(&format!("/v1/subscriptions/{}/unsubscribe", t.subs[si].0))
                        .bearer(&t.app.api_key),
                )
                .await;
            assert_eq!((r.status, r.body["status"].as_str()), (200, Some("unsubscribed")), "{r:?}");
            t.unsubscribed.insert(si);
        }
    }

    // Stats: distinct subscriptions per kind; nothing of an expired message.
    world.settle().await;
    for (ti, t) in tenants.iter().enumerate() {
        for (mi, (id, channel, old)) in t.messages.iter().enumerate() {
            let r = world.call(t.app.get(&format!("/v1/messages/{id}"))).await;
            assert_eq!(r.status, 200, "{r:?}");
            for kind in KINDS {
                if ["opened", "bounced", "complained"].contains(&kind) && *channel != Channel::Email {
                    assert_eq!(r.body["stats"].get(kind), None, "email's own kinds only on email: {r:?}");
                    continue;
                }
                let expected = if *old {
                    0
                } else {
                    t.recorded.iter().filter(|((m, _), k)| *m == mi && k.contains(kind)).count() as u64
                };
                assert_eq!(
                    r.body["stats"][kind].as_u64(),
                    Some(expected),
                    "tenant {ti} message {mi} {kind}: {r:?}"
                );
            }
            // Another tenant's key sees nothing of it.
            let other = &tenants[(ti + 1) % tenants.len()];
            for target in
                [format!("/v1/messages/{id}"), format!("/v1/messages/{id}/audience/count?action=sent")]
            {
                world.call(other.app.get(&target)).await.assert_problem(404, "not_found");
            }
        }
    }

    for q in &scenario.queries {
        let t = &tenants[q.tenant % tenants.len()];
        let mi = q.message % t.messages.len();
        let (id, source, old) = &t.messages[mi];
        let (query, rule) = predicate(q.predicate, *source);
        let channel = q.target.as_str();
        let count_url = format!("/v1/messages/{id}/audience/count?{query}&channel={channel}");
        let count = world.call(t.app.get(&count_url)).await;
        if *old {
            count.assert_problem(410, "source_expired");
            continue;
        }
        let Some(rule) = rule else {
            count.assert_problem(400, "invalid_action");
            continue;
        };
        let (expected, unreachable) = model_audience(t, mi, &rule, q.target);
        assert_eq!(count.status, 200, "{count:?}");
        assert_eq!(
            (count.body["count"].as_u64(), count.body["unreachable"].as_u64()),
            (Some(expected.len() as u64), Some(unreachable)),
            "{count_url}"
        );
        let mut members = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = format!("/v1/messages/{id}/audience?{query}&channel={channel}&limit={}", q.limit);
            if let Some(c) = &cursor {
                url.push_str(&format!("&cursor={c}"));
            }
            let r = world.call(t.app.get(&url)).await;
            assert_eq!(r.status, 200, "{url}: {r:?}");
            let page = r.body["subscriptions"].as_array().expect("a page");
            assert!(page.len() <= q.limit, "{url}: {r:?}");
            members.extend(page.iter().map(|m| m["subscription_id"].as_str().unwrap_or_default().to_owned()));
            match r.body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
            assert!(members.len() <= expected.len() + q.limit, "{url}: runaway paging");
        }
        let unique: BTreeSet<String> = members.iter().cloned().collect();
        assert_eq!(unique.len(), members.len(), "{count_url}: a member came twice");
        assert_eq!(unique, expected, "{count_url}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(proptest_cases(12)))]

    #[test]
    fn handlers_agree_with_the_model(scenario in scenario()) {
        block_on(check(scenario));
    }
}

//! The bad-input catalogue: for every route of the routing table (`ROUTES`, iterated so a new
//! route cannot be forgotten), each served by its own function's handler with API Gateway
//! events against DynamoDB Local and the SQS emulator: malformed JSON, wrong types, missing
//! fields, huge arrays, oversized bodies, invalid UTF-8, hostile unicode, garbage and traversal
//! in path ids, bad query strings and cursors, bad API keys, forged and replayed webhook
//! signatures. Every case must answer its 4xx `application/problem+json` with the contract's
//! code and write nothing: the whole table is scanned after each case and compared with the
//! scan taken before, and the send queues must stay empty.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::Method;
use retarget_shared::edge::routes::{Function, ROUTES, Route};
use retarget_shared::edge::signatures::{push_signature, twilio_signature};
use retarget_tests::bad_input::{
    Fixture, OVER_LIMIT, TOKEN_A, TOKEN_B, allow_of, fill, label, merge, needs_api_key, route_entry,
    template_of,
};
use retarget_tests::{ApiRequest, PUBLIC_BASE_URL as PUBLIC};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn every_route_refuses_missing_and_wrong_api_keys() {
    let f = Fixture::new().await;
    let revoked = f.world.store.create_api_key(f.a.app.app_id).await.unwrap();
    f.world.store.revoke_api_key(f.a.app.app_id, &revoked).await.unwrap();
    for (_, _, route, _) in ROUTES.iter().filter(|r| needs_api_key(r.2)) {
        let target = f.valid_target(*route);
        let body = f.valid_body(*route);
        let base = || {
            let (method, _, _, _) = route_entry(*route);
            let r = ApiRequest::new(method.as_str(), &target);
            match &body {
                Some(b) => r.header("content-type", "application/json").raw_body(b),
                None => r,
            }
        };
        let mut almost = f.a.api_key.clone();
        let last = almost.pop().expect("non-empty key");
        almost.push(if last == 'A' { 'B' } else { 'A' });
        let authorizations: Vec<(&str, Option<String>)> = vec![
            ("no Authorization header", None),
            ("unknown key", Some("Bearer rk_live_not_a_key".into())),
            ("the key with its last character changed", Some(format!("Bearer {almost}"))),
            ("the key in upper case", Some(format!("Bearer {}", f.a.api_key.to_uppercase()))),
            ("a revoked key", Some(format!("Bearer {}", revoked.reveal()))),
            ("Basic scheme", Some(format!("Basic {}", f.a.api_key))),
            ("the key without a scheme", Some(f.a.api_key.clone())),
            ("empty bearer", Some("Bearer ".into())),
            ("bearer of 10k characters", Some(format!("Bearer {}", "k".repeat(10_000)))),
            ("the key with a zero-width space", Some(format!("Bearer {}\u{200b}", f.a.api_key))),
            ("two keys", Some(format!("Bearer {} {}", f.a.api_key, f.b.api_key))),
        ];
        for (what, authorization) in authorizations {
            let request = match authorization {
                Some(value) => base().header("authorization", &value),
                None => base(),
            };
            f.expect(format!("{}: {what}", label(*route)), *route, request, 401, "unauthorized");
        }
    }
    f.run().await;
}

#[tokio::test]
async fn every_templated_route_answers_404_for_garbage_and_traversal_in_its_id() {
    let f = Fixture::new().await;
    for (_, template, route, _) in ROUTES.iter().filter(|r| r.1.contains('{')) {
        let real = f.id_for(*route).expect("templated routes have an id");
        let body = f.valid_body(*route);
        let query = f.valid_target(*route).split_once('?').map(|(_, q)| format!("?{q}")).unwrap_or_default();
        let ids: Vec<(&str, String)> = vec![
            ("dot-dot", "..".into()),
            ("percent-encoded dot-dot", "%2e%2e".into()),
            ("encoded traversal", "..%2f..%2fetc%2fpasswd".into()),
            ("backslash traversal", "..%5c..%5cwindows".into()),
            ("not a ULID", "not-an-id".into()),
            ("lower-case ULID", real.to_lowercase()),
            ("ULID past 128 bits", format!("8{}", &real[1..])),
            ("ULID plus a character", format!("{real}0")),
            ("ULID minus a character", real[1..].to_owned()),
            ("10k characters", "A".repeat(10_000)),
            ("percent-encoded NUL", format!("{real}%00")),
            ("RTL override", format!("%E2%80%AE{real}")),
            ("zero-width space", format!("{real}%E2%80%8B")),
            ("encoded space", format!("{real}%20")),
            ("a random ULID", ulid::Ulid::new().to_string()),
            (
                "an id of another kind",
                if real == f.sms_subscription { f.push_message.clone() } else { f.sms_subscription.clone() },
            ),
        ];
        for (what, id) in ids {
            let target = format!("{}{query}", fill(template, Some(&id)));
            let request = f.request(*route, &target, body.as_deref());
            f.expect(format!("{}: id {what}", label(*route)), *route, request, 404, "not_found");
        }
        // Traversal across segments never reaches another route.
        for (what, path) in [
            ("../ segment", fill(template, Some("../subscriptions"))),
            ("/.. suffix", format!("{}/..", fill(template, Some(&real)))),
            ("double slash", fill(template, Some(&format!("/{real}")))),
        ] {
            let request = f.request(*route, &path, body.as_deref());
            f.expect(format!("{}: {what}", label(*route)), *route, request, 404, "not_found");
        }
    }
    f.run().await;
}

#[tokio::test]
async fn every_route_refuses_bodies_over_one_mebibyte() {
    let f = Fixture::new().await;
    for (_, _, route, _) in ROUTES {
        let target = f.valid_target(*route);
        let padding = "x".repeat(OVER_LIMIT);
        let json_big = format!(r#"{{"padding":"{padding}"}}"#).into_bytes();
        let form_big = format!("MessageStatus=delivered&Body={padding}").into_bytes();
        let big =
            if matches!(route, Route::TwilioWebhook | Route::TwilioInbound) { form_big } else { json_big };
        let request = f.request(*route, &target, Some(&big));
        let name = format!("{}: body of {} bytes", label(*route), big.len());
        f.expect(name, *route, request, 413, "payload_too_large");
    }
    // Huge arrays that do not fit either.
    let ids: Vec<String> = (0..100_000).map(|_| ulid::Ulid::new().to_string()).collect();
    let messages = json!({"channel": "sms", "contents": {"body": "x"}, "include_subscription_ids": ids});
    let event = json!({"message_id": f.sms_message, "subscription_id": f.sms_subscription, "kind": "sent"});
    let events = json!({"events": vec![event; 20_000]});
    for (name, route, target, body) in [
        ("POST /v1/messages: 100k subscription ids", Route::CreateMessage, "/v1/messages", messages),
        ("POST /v1/events: 20k events", Route::RecordEvents, "/v1/events", events),
    ] {
        let request = f.request(route, target, Some(body.to_string().as_bytes()));
        f.expect(name, route, request, 413, "payload_too_large");
    }
    f.run().await;
}

/// Bodies that are not the JSON object a route expects, for every JSON route.
fn garbage_json() -> Vec<(&'static str, Vec<u8>)> {
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    vec![
        ("empty body", b"".to_vec()),
        ("whitespace", b"  \n\t ".to_vec()),
        ("truncated object", b"{".to_vec()),
        ("truncated member", br#"{"channel":"#.to_vec()),
        ("array", b"[]".to_vec()),
        ("null", b"null".to_vec()),
        ("number", b"42".to_vec()),
        ("string", br#""hello""#.to_vec()),
        ("trailing garbage", b"{} trailing".to_vec()),
        ("two objects", b"{}{}".to_vec()),
        ("single quotes", b"{'channel':'sms'}".to_vec()),
        ("trailing comma", br#"{"a":1,}"#.to_vec()),
        ("invalid UTF-8 bytes", vec![0xff, 0xfe, b'{', b'}']),
        ("invalid UTF-8 inside a string", b"{\"channel\":\"\xc3\x28\"}".to_vec()),
        ("UTF-16 byte order mark", b"\xfe\xff\x00{\x00}".to_vec()),
        ("UTF-8 byte order mark", b"\xef\xbb\xbf{}".to_vec()),
        ("NaN", br#"{"x":NaN}"#.to_vec()),
        ("nested 10k deep", deep.into_bytes()),
        ("form encoding", b"channel=sms&phone_number=%2B15550000001".to_vec()),
        ("raw NUL", b"\x00".to_vec()),
    ]
}

/// Invalid bodies per JSON route: wrong types, missing fields, hostile unicode, huge arrays.
fn route_cases(f: &Fixture, route: Route) -> Vec<(String, Value, u16, &'static str)> {
    let long = "x".repeat(10_000);
    let subscription = |o: Value| {
        let mut v =
            json!({"channel": "push", "token": "tok-1", "platform": "ios", "external_user_id": "bob"});
        merge(&mut v, o);
        v
    };
    let message = |o: Value| {
        let mut v = json!({"channel": "sms", "contents": {"body": "hi"}, "include_subscription_ids": [f.sms_subscription]});
        merge(&mut v, o);
        v
    };
    let event = |o: Value| {
        let mut e =
            json!({"message_id": f.sms_message, "subscription_id": f.sms_subscription, "kind": "sent"});
        merge(&mut e, o);
        json!({ "events": [e] })
    };
    let retarget = |o: Value| {
        let mut v = json!({"source_message_id": f.push_message, "action": "sent", "contents": {"body": "Come back!"}});
        merge(&mut v, o);
        v
    };
    let bad = |name: &str, body: Value| (name.to_owned(), body, 400, "invalid_request");
    match route {
        Route::CreateSubscription => vec![
            bad("channel missing", subscription(json!({"channel": null}))),
            bad("channel a number", subscription(json!({"channel": 1}))),
            bad("channel unknown", subscription(json!({"channel": "fax"}))),
            bad("channel in upper case", subscription(json!({"channel": "PUSH"}))),
            bad("token missing", subscription(json!({"token": null}))),
            bad("token an array", subscription(json!({"token": ["a"]}))),
            bad("token empty", subscription(json!({"token": ""}))),
            bad("token with a space", subscription(json!({"token": "a b"}))),
            bad("token of 10k characters", subscription(json!({"token": long}))),
            bad("token with NUL", subscription(json!({"token": "tok\u{0}en"}))),
            bad("token with RTL override", subscription(json!({"token": "tok\u{202e}en"}))),
            bad("token with zero-width space", subscription(json!({"token": "tok\u{200b}en"}))),
            bad("token with byte order mark", subscription(json!({"token": "\u{feff}token"}))),
            bad("platform missing", subscription(json!({"platform": null}))),
            bad("platform unknown", subscription(json!({"platform": "windows"}))),
            bad("push with a phone number", subscription(json!({"phone_number": "+15550000001"}))),
            bad("unknown field", subscription(json!({"admin": true}))),
            bad("external_user_id a number", subscription(json!({"external_user_id": 42}))),
            bad("external_user_id empty", subscription(json!({"external_user_id": ""}))),
            bad("external_user_id of 10k characters", subscription(json!({"external_user_id": long}))),
            bad("external_user_id with NUL", subscription(json!({"external_user_id": "bo\u{0}b"}))),
            bad(
                "external_user_id with RTL override",
                subscription(json!({"external_user_id": "bob\u{202e}gpj.exe"})),
            ),
            bad(
                "external_user_id with zero-width joiner",
                subscription(json!({"external_user_id": "bo\u{200d}b"})),
            ),
            bad("external_user_id with newline", subscription(json!({"external_user_id": "bob\nadmin"}))),
            bad("timezone a number", subscription(json!({"timezone": 2}))),
            (
                "timezone unknown".into(),
                subscription(json!({"timezone": "Europe/Atlantis"})),
                400,
                "invalid_timezone",
            ),
            (
                "timezone of 10k characters".into(),
                subscription(json!({"timezone": long})),
                400,
                "invalid_timezone",
            ),
            (
                "timezone with NUL".into(),
                subscription(json!({"timezone": "UTC\u{0}"})),
                400,
                "invalid_timezone",
            ),
            bad("sms without a phone number", json!({"channel": "sms"})),
            bad("sms with a token", json!({"channel": "sms", "phone_number": "+15550000001", "token": "t"})),
            bad("phone number a number", json!({"channel": "sms", "phone_number": 15550000001_u64})),
            (
                "phone number not E.164".into(),
                json!({"channel": "sms", "phone_number": "555-0100"}),
                400,
                "invalid_phone_number",
            ),
            (
                "phone number of 10k digits".into(),
                json!({"channel": "sms", "phone_number": format!("+{}", "1".repeat(10_000))}),
                400,
                "invalid_phone_number",
            ),
            (
                "phone number with RTL override".into(),
                json!({"channel": "sms", "phone_number": "+1555\u{202e}0000001"}),
                400,
                "invalid_phone_number",
            ),
            (
                "phone number with NUL".into(),
                json!({"channel": "sms", "phone_number": "+1555000\u{0}0001"}),
                400,
                "invalid_phone_number",
            ),
            (
                "phone number in full-width digits".into(),
                json!({"channel": "sms", "phone_number": "+１５５５００００００１"}),
                400,
                "invalid_phone_number",
            ),
        ],
        Route::CreateMessage => vec![
            bad("channel missing", message(json!({"channel": null}))),
            bad("channel unknown", message(json!({"channel": "fax"}))),
            bad("contents missing", message(json!({"contents": null}))),
            bad("contents a string", message(json!({"contents": "hi"}))),
            bad("contents.body missing", message(json!({"contents": {"body": null, "title": "t"}}))),
            bad("contents.body blank", message(json!({"contents": {"body": "  "}}))),
            bad("contents.body a number", message(json!({"contents": {"body": 1}}))),
            bad("contents.body of 10k characters", message(json!({"contents": {"body": long}}))),
            bad("contents.title of 10k characters", message(json!({"contents": {"title": long}}))),
            bad("contents.url javascript:", message(json!({"contents": {"url": "javascript:alert(1)"}}))),
            bad("contents.url with NUL", message(json!({"contents": {"url": "https://a.example/\u{0}"}}))),
            bad("contents unknown field", message(json!({"contents": {"html": "<b>"}}))),
            bad("no recipients given", message(json!({"include_subscription_ids": null}))),
            bad("both recipient lists", message(json!({"include_external_user_ids": ["alice"]}))),
            bad(
                "subscription ids a string",
                message(json!({"include_subscription_ids": f.sms_subscription})),
            ),
            bad("subscription ids empty", message(json!({"include_subscription_ids": []}))),
            bad("subscription id not a ULID", message(json!({"include_subscription_ids": ["../x"]}))),
            bad(
                "subscription id in lower case",
                message(json!({"include_subscription_ids": [f.sms_subscription.to_lowercase()]})),
            ),
            bad(
                "20,001 subscription ids",
                message(json!({"include_subscription_ids": vec![f.sms_subscription.clone(); 20_001]})),
            ),
            bad(
                "20,001 external user ids",
                message(
                    json!({"include_subscription_ids": null, "include_external_user_ids": vec!["alice"; 20_001]}),
                ),
            ),
            bad(
                "external user id with NUL",
                message(
                    json!({"include_subscription_ids": null, "include_external_user_ids": ["ali\u{0}ce"]}),
                ),
            ),
            bad(
                "external user id with RTL override",
                message(
                    json!({"include_subscription_ids": null, "include_external_user_ids": ["\u{202e}alice"]}),
                ),
            ),
            bad("send_at not a time", message(json!({"send_at": "tomorrow"}))),
            bad("send_at a number", message(json!({"send_at": 1_795_874_400}))),
            bad("send_at 31 days ahead", message(json!({"send_at": "2026-12-29T14:00:01Z"}))),
            bad("unknown field", message(json!({"priority": 10}))),
        ],
        Route::RecordEvents => vec![
            bad("events missing", json!({})),
            bad("events an object", json!({"events": {}})),
            bad("events empty", json!({"events": []})),
            bad(
                "1001 events",
                json!({"events": vec![json!({"message_id": f.sms_message, "subscription_id": f.sms_subscription, "kind": "sent"}); 1001]}),
            ),
            bad("kind missing", event(json!({"kind": null}))),
            bad("kind unknown", event(json!({"kind": "opend"}))),
            bad("kind a number", event(json!({"kind": 3}))),
            bad("kind with zero-width space", event(json!({"kind": "sent\u{200b}"}))),
            bad("message_id missing", event(json!({"message_id": null}))),
            bad("message_id a number", event(json!({"message_id": 7}))),
            bad("subscription_id an object", event(json!({"subscription_id": {"$ne": ""}}))),
            bad("event_id empty", event(json!({"event_id": ""}))),
            bad("event_id of 10k characters", event(json!({"event_id": long}))),
            bad("event_id with NUL", event(json!({"event_id": "e\u{0}1"}))),
            bad("event_id with RTL override", event(json!({"event_id": "e\u{202e}1"}))),
            bad("occurred_at not a time", event(json!({"occurred_at": "yesterday"}))),
            bad("occurred_at without a zone", event(json!({"occurred_at": "2026-11-28T14:00:00"}))),
            bad("unknown field in an event", event(json!({"app_id": f.b.app.app_id.to_string()}))),
            bad("unknown top-level field", json!({"events": [], "force": true})),
        ],
        Route::CreateRetarget => vec![
            bad("source_message_id missing", retarget(json!({"source_message_id": null}))),
            bad("source_message_id a number", retarget(json!({"source_message_id": 1}))),
            bad("contents missing", retarget(json!({"contents": null}))),
            bad("contents.body of 10k characters", retarget(json!({"contents": {"body": long}}))),
            bad("action a number", retarget(json!({"action": 1}))),
            bad("action and did together", retarget(json!({"did": ["sent"]}))),
            bad("did a number", retarget(json!({"action": null, "did": 5}))),
            bad("channel unknown", retarget(json!({"channel": "fax"}))),
            (
                "did with 10k unknown names".into(),
                retarget(json!({"action": null, "did": vec!["opened"; 10_000]})),
                400,
                "invalid_action",
            ),
            bad("send_at not a time", retarget(json!({"send_at": "soon"}))),
            bad("unknown field", retarget(json!({"priority": 1}))),
            (
                "segments with a retarget audience".into(),
                retarget(json!({"included_segments": ["All"]})),
                422,
                "segments_not_combinable",
            ),
            ("source id not a ULID".into(), retarget(json!({"source_message_id": "../x"})), 404, "not_found"),
            (
                "source id of 10k characters".into(),
                retarget(json!({"source_message_id": long})),
                404,
                "not_found",
            ),
            ("action unknown".into(), retarget(json!({"action": "opened"})), 400, "invalid_action"),
            (
                "action with RTL override".into(),
                retarget(json!({"action": "\u{202e}clicked"})),
                400,
                "invalid_action",
            ),
            ("action of 10k characters".into(), retarget(json!({"action": long})), 400, "invalid_action"),
            (
                "send_at past the window".into(),
                retarget(json!({"send_at": "2027-01-30T00:00:00Z"})),
                422,
                "send_at_out_of_window",
            ),
        ],
        Route::PushWebhook => vec![
            bad("kind unknown", f.push_event(json!({"kind": "opened"}))),
            bad("kind sent (not a push webhook kind)", f.push_event(json!({"kind": "sent"}))),
            bad("kind missing", f.push_event(json!({"kind": null}))),
            bad("event_id missing", f.push_event(json!({"event_id": null}))),
            bad("event_id of 10k characters", f.push_event(json!({"event_id": long}))),
            bad("event_id with NUL", f.push_event(json!({"event_id": "e\u{0}"}))),
            bad("occurred_at missing", f.push_event(json!({"occurred_at": null}))),
            bad("occurred_at not a time", f.push_event(json!({"occurred_at": "now"}))),
            bad("message_id a number", f.push_event(json!({"message_id": 1}))),
            ("message_id not a ULID".into(), f.push_event(json!({"message_id": "../x"})), 404, "not_found"),
            (
                "subscription of another app".into(),
                f.push_event(json!({"subscription_id": ulid::Ulid::new().to_string()})),
                404,
                "not_found",
            ),
        ],
        Route::PutDeliveryPolicy => {
            let quiet = |o: Value| {
                let mut q = json!({"start": "21:00", "end": "08:00", "channels": ["sms"]});
                merge(&mut q, o);
                json!({ "quiet_hours": q })
            };
            let cap = |o: Value| {
                let mut c = json!({"max": 3, "per_hours": 24, "channels": ["push"]});
                merge(&mut c, o);
                json!({ "frequency_cap": c })
            };
            vec![
                bad("start not HH:MM", quiet(json!({"start": "9pm"}))),
                bad("end 24:00", quiet(json!({"end": "24:00"}))),
                bad("start with NUL", quiet(json!({"start": "21:\u{0}0"}))),
                bad("start = end", quiet(json!({"end": "21:00"}))),
                bad("no channels", quiet(json!({"channels": []}))),
                bad("channel twice", quiet(json!({"channels": ["sms", "sms"]}))),
                bad("channel unknown", quiet(json!({"channels": ["pigeon"]}))),
                bad("quiet hours unknown field", quiet(json!({"days": "mon"}))),
                bad("default zone unknown", json!({"default_timezone": "Atlantis/Capital"})),
                bad("default zone of 10k characters", json!({"default_timezone": long})),
                bad("default zone with NUL", json!({"default_timezone": "Europe/Par\u{0}is"})),
                bad("max 0", cap(json!({"max": 0}))),
                bad("max a string", cap(json!({"max": "3"}))),
                bad("max 2^64", cap(json!({"max": 18_446_744_073_709_551_615_u64}))),
                bad("per_hours 721", cap(json!({"per_hours": 721}))),
                bad("per_hours negative", cap(json!({"per_hours": -24}))),
                bad("cap without channels", cap(json!({"channels": null}))),
                bad("unknown field", json!({"quiet": null})),
            ]
        }
        Route::Track => {
            let token = f.track_token.clone();
            let track = |token: &str, kind: Value| json!({"token": token, "kind": kind});
            let invalid = |name: &str, token: String| {
                (name.to_owned(), track(&token, json!("clicked")), 401, "invalid_token")
            };
            let mut flipped = token.clone().into_bytes();
            flipped[40] = if flipped[40] == b'A' { b'B' } else { b'A' };
            vec![
                bad("token missing", json!({"kind": "clicked"})),
                bad("token a number", json!({"token": 1, "kind": "clicked"})),
                bad("kind missing", json!({"token": token})),
                bad("kind a number", track(&token, json!(3))),
                bad(
                    "occurred_at not a time",
                    json!({"token": token, "kind": "clicked", "occurred_at": "now"}),
                ),
                bad("an unknown field", json!({"token": token, "kind": "clicked", "app_id": "x"})),
                invalid("token empty", String::new()),
                invalid("token truncated", token[..token.len() - 1].to_owned()),
                invalid("token with a character changed", String::from_utf8(flipped).unwrap_or_default()),
                invalid("token of 10k characters", long.clone()),
                invalid("token with NUL", format!("{}\u{0}", &token[..token.len() - 1])),
                (
                    "kind sent (not reported by devices)".into(),
                    track(&token, json!("sent")),
                    400,
                    "invalid_kind",
                ),
                ("kind unknown".into(), track(&token, json!("opened")), 400, "invalid_kind"),
                ("kind of 10k characters".into(), track(&token, json!(long)), 400, "invalid_kind"),
            ]
        }
        // The routes without a JSON body (every JSON route must have cases: checked where used).
        _ => vec![],
    }
}

#[tokio::test]
async fn every_json_route_refuses_malformed_wrongly_typed_and_hostile_bodies() {
    let f = Fixture::new().await;
    for (_, _, route, _) in ROUTES {
        // Routes whose valid body is JSON.
        let Some(valid) = f.valid_body(*route) else { continue };
        if serde_json::from_slice::<Value>(&valid).is_err() {
            continue;
        }
        let target = f.valid_target(*route);
        for (what, body) in garbage_json() {
            let request = f.request(*route, &target, Some(&body));
            f.expect(format!("{}: {what}", label(*route)), *route, request, 400, "invalid_request");
        }
        // Lone surrogates, escaped, in a string of an otherwise valid body.
        let text = String::from_utf8(valid).expect("utf-8");
        let surrogate = text.replacen(":\"", ":\"\\ud800", 1);
        assert_ne!(surrogate, text);
        let request = f.request(*route, &target, Some(surrogate.as_bytes()));
        f.expect(format!("{}: lone surrogate", label(*route)), *route, request, 400, "invalid_request");
        let low = text.replacen(":\"", ":\"\\udc00x", 1);
        let request = f.request(*route, &target, Some(low.as_bytes()));
        f.expect(format!("{}: lone low surrogate", label(*route)), *route, request, 400, "invalid_request");

        let specific = route_cases(&f, *route);
        assert!(!specific.is_empty(), "{}: no route-specific cases", label(*route));
        for (what, body, status, code) in specific {
            let body = body.to_string();
            let request = f.request(*route, &target, Some(body.as_bytes()));
            f.expect(format!("{}: {what}", label(*route)), *route, request, status, code);
        }
    }
    f.run().await;
}

#[tokio::test]
async fn audience_query_strings_and_cursors_are_checked() {
    let f = Fixture::new().await;
    let forged = |raw: &str| URL_SAFE_NO_PAD.encode(raw);
    let sub = &f.push_subscription;
    let queries: Vec<(&str, String, u16, &str)> = vec![
        ("no query", String::new(), 400, "invalid_request"),
        ("no action", "?limit=10".into(), 400, "invalid_request"),
        ("action and did", "?action=sent&did=sent".into(), 400, "invalid_request"),
        ("limit zero", "?action=sent&limit=0".into(), 400, "invalid_request"),
        ("limit negative", "?action=sent&limit=-1".into(), 400, "invalid_request"),
        ("limit not a number", "?action=sent&limit=ten".into(), 400, "invalid_request"),
        ("limit 1001", "?action=sent&limit=1001".into(), 400, "invalid_request"),
        ("limit past u64", "?action=sent&limit=99999999999999999999999".into(), 400, "invalid_request"),
        ("channel unknown", "?action=sent&channel=fax".into(), 400, "invalid_request"),
        ("channel with NUL", "?action=sent&channel=push%00".into(), 400, "invalid_request"),
        ("cursor not base64", "?action=sent&cursor=!!!***".into(), 400, "invalid_request"),
        (
            "cursor standard base64 padding",
            format!("?action=sent&cursor={}=", forged("1:x:0")),
            400,
            "invalid_request",
        ),
        (
            "cursor of 10k characters",
            format!("?action=sent&cursor={}", "A".repeat(10_000)),
            400,
            "invalid_request",
        ),
        ("cursor empty", "?action=sent&cursor=".into(), 400, "invalid_request"),
        (
            "forged cursor: other version",
            format!("?action=sent&cursor={}", forged(&format!("2:{sub}:0"))),
            400,
            "invalid_request",
        ),
        (
            "forged cursor: not a ULID",
            format!("?action=sent&cursor={}", forged("1:../../x:0")),
            400,
            "invalid_request",
        ),
        (
            "forged cursor: negative skip",
            format!("?action=sent&cursor={}", forged(&format!("1:{sub}:-1"))),
            400,
            "invalid_request",
        ),
        (
            "forged cursor: skip past u32",
            format!("?action=sent&cursor={}", forged(&format!("1:{sub}:4294967296"))),
            400,
            "invalid_request",
        ),
        (
            "forged cursor: extra part",
            format!("?action=sent&cursor={}", forged(&format!("1:{sub}:0:x"))),
            400,
            "invalid_request",
        ),
        (
            "forged cursor: JSON",
            format!("?action=sent&cursor={}", forged(r#"{"app_id":"x"}"#)),
            400,
            "invalid_request",
        ),
        (
            "forged cursor: invalid UTF-8",
            format!("?action=sent&cursor={}", URL_SAFE_NO_PAD.encode([0xff, 0xfe])),
            400,
            "invalid_request",
        ),
        ("action unknown", "?action=opened".into(), 400, "invalid_action"),
        ("action of another channel", "?action=undelivered".into(), 400, "invalid_action"),
        ("action with NUL", "?action=sent%00".into(), 400, "invalid_action"),
        ("action with RTL override", "?action=%E2%80%AEsent".into(), 400, "invalid_action"),
        ("action of 10k characters", format!("?action={}", "a".repeat(10_000)), 400, "invalid_action"),
        ("did unknown", "?did=opened".into(), 400, "invalid_action"),
        ("did_not of invalid UTF-8", "?did_not=%FF%FE".into(), 400, "invalid_action"),
    ];
    for route in [Route::Audience, Route::AudienceCount] {
        let path = fill(template_of(route), Some(&f.push_message));
        for (what, query, status, code) in &queries {
            let request = f.request(route, &format!("{path}{query}"), None);
            f.expect(format!("{}: {what}", label(route)), route, request, *status, code);
        }
    }
    f.run().await;
}

/// A cursor is only a position in the subscription-id order; one issued for another app or
/// message (or forged, well-formed) pages this message's own audience and shows nothing else.
#[tokio::test]
async fn foreign_cursors_only_position_the_callers_own_audience() {
    let f = Fixture::new().await;
    let forged = URL_SAFE_NO_PAD.encode(format!("1:{}:0", "0".repeat(26)));
    let before = f.snapshot().await;
    for cursor in [f.b_cursor.clone(), forged] {
        let target = format!("/v1/messages/{}/audience?action=sent&cursor={cursor}", f.push_message);
        let r = f.call(Function::Audiences, f.request(Route::Audience, &target, None)).await;
        assert_eq!(r.status, 200, "{r:?}");
        for member in r.body["subscriptions"].as_array().expect("members") {
            // App A's only audience member; never one of app B's.
            let id = member["subscription_id"].as_str().unwrap_or_default();
            assert_eq!(id, f.push_subscription, "cursor {cursor} showed {member}");
        }
    }
    assert_eq!(f.snapshot().await, before);
}

#[tokio::test]
async fn push_webhook_refuses_forged_replayed_and_foreign_signatures() {
    let f = Fixture::new().await;
    let route = Route::PushWebhook;
    let target = f.valid_target(route);
    let body = f.push_event(json!({})).to_string().into_bytes();
    let now = f.now();
    let good = push_signature(&f.a.push_webhook_secret, now, &body);
    let headers: Vec<(&str, Option<String>)> = vec![
        ("no Retarget-Signature", None),
        ("empty header", Some(String::new())),
        ("forged v1", Some(format!("t={now},v1={}", "ab".repeat(32)))),
        ("v1 of the wrong length", Some(format!("t={now},v1={}", &good[..62]))),
        ("v1 not hex", Some(format!("t={now},v1={}", "zz".repeat(32)))),
        ("replayed: t 301 s old", Some(f.push_header(&f.a, now - 301, &body))),
        ("replayed: t a day old", Some(f.push_header(&f.a, now - 86_400, &body))),
        ("t 301 s ahead", Some(f.push_header(&f.a, now + 301, &body))),
        ("the valid v1 with another t", Some(format!("t={},v1={good}", now - 1))),
        ("the other app's secret", Some(f.push_header(&f.b, now, &body))),
        ("signed for another body", Some(f.push_header(&f.a, now, b"{}"))),
        ("no t", Some(format!("v1={good}"))),
        ("two t", Some(format!("t={now},t={now},v1={good}"))),
        ("negative t", Some(format!("t=-{now},v1={good}"))),
        ("t past i64", Some(format!("t=99999999999999999999,v1={good}"))),
        ("v0 only", Some(format!("t={now},v0={good}"))),
        ("header of 10k characters", Some(format!("t={now},{}", "v1=00,".repeat(1700)))),
        ("API key instead", Some(format!("Bearer {}", f.a.api_key))),
        ("non-ASCII header", Some(format!("t={now},v1={good}\u{202e}"))),
    ];
    for (what, header) in headers {
        let mut request =
            ApiRequest::post(&target).header("content-type", "application/json").raw_body(&body);
        if let Some(h) = header {
            request = request.header("retarget-signature", &h);
        }
        f.expect(format!("push webhook: {what}"), route, request, 401, "invalid_signature");
    }
    // A valid signature of app A sent to app B's URL.
    let request = ApiRequest::post(&format!("/v1/webhooks/push/{}", f.b.app.app_id))
        .header("retarget-signature", &f.push_header(&f.a, now, &body))
        .raw_body(&body);
    f.expect("push webhook: app A's signature on app B's URL", route, request, 401, "invalid_signature");
    // Invalid UTF-8, validly signed: the body is not JSON.
    let raw = [b"{\"event_id\":\"".as_slice(), &[0xff, 0xfe], b"\"}"].concat();
    let request = ApiRequest::post(&target)
        .header("retarget-signature", &f.push_header(&f.a, now, &raw))
        .raw_body(&raw);
    f.expect("push webhook: signed invalid UTF-8", route, request, 400, "invalid_request");
    f.run().await;
}

#[tokio::test]
async fn twilio_webhook_refuses_forged_foreign_and_misdirected_signatures() {
    let f = Fixture::new().await;
    let route = Route::TwilioWebhook;
    let target = f.valid_target(route);
    let form = "MessageSid=SM1&MessageStatus=delivered&To=%2B15550000001";
    let params = retarget_shared::edge::request::url_decode_pairs(form.as_bytes());
    let sign = |token: &str, url: &str, params: &[(String, String)]| twilio_signature(token, url, params);
    let signed_url = format!("{PUBLIC}{target}");
    let (path, query) = target.split_once('?').expect("query");
    let mut tampered = params.clone();
    tampered[1].1 = "sent".into();
    let signatures: Vec<(&str, Option<String>)> = vec![
        ("no X-Twilio-Signature", None),
        ("empty signature", Some(String::new())),
        ("not base64", Some("!!!not base64!!!".into())),
        ("forged signature", Some(base64::engine::general_purpose::STANDARD.encode([7u8; 20]))),
        ("a SHA-256 sized signature", Some(base64::engine::general_purpose::STANDARD.encode([7u8; 32]))),
        ("the other app's token", Some(sign(TOKEN_B, &signed_url, &params))),
        (
            "signed for another host",
            Some(sign(TOKEN_A, &format!("https://evil.example.com{target}"), &params)),
        ),
        (
            "signed for http instead of https",
            Some(sign(TOKEN_A, &signed_url.replacen("https", "http", 1), &params)),
        ),
        (
            "signed for a non-default port",
            Some(sign(TOKEN_A, &format!("https://hooks.example.com:8443{target}"), &params)),
        ),
        (
            "signed for another path",
            Some(sign(TOKEN_A, &format!("{PUBLIC}/v1/webhooks/twilio/{}?{query}", f.b.app.app_id), &params)),
        ),
        ("signed without the query", Some(sign(TOKEN_A, &format!("{PUBLIC}{path}"), &params))),
        (
            "signed for another subscription in the query",
            Some(sign(
                TOKEN_A,
                &format!(
                    "{PUBLIC}{path}?message_id={}&subscription_id={}",
                    f.sms_message, f.push_subscription
                ),
                &params,
            )),
        ),
        ("signed over other parameters", Some(sign(TOKEN_A, &signed_url, &tampered))),
        ("signed with no parameters", Some(sign(TOKEN_A, &signed_url, &[]))),
        ("signature of 10k characters", Some("A".repeat(10_000))),
        ("valid signature with a suffix", Some(format!("{}x", sign(TOKEN_A, &signed_url, &params)))),
    ];
    for (what, signature) in signatures {
        let mut request = ApiRequest::post(&target)
            .header("content-type", "application/x-www-form-urlencoded")
            .raw_body(form.as_bytes());
        if let Some(s) = signature {
            request = request.header("x-twilio-signature", &s);
        }
        f.expect(format!("twilio webhook: {what}"), route, request, 403, "invalid_signature");
    }
    // App B's URL with a signature by app A's token, and an app without Twilio at all.
    for (what, app_id, token) in [
        ("app A's token on app B's URL", f.b.app.app_id.to_string(), TOKEN_A),
        ("an app without Twilio", f.free.app.app_id.to_string(), TOKEN_A),
    ] {
        let other = format!("/v1/webhooks/twilio/{app_id}?{query}");
        let request = ApiRequest::post(&other)
            .header("x-twilio-signature", &sign(token, &format!("{PUBLIC}{other}"), &params))
            .raw_body(form.as_bytes());
        f.expect(format!("twilio webhook: {what}"), route, request, 403, "invalid_signature");
    }
    // Validly signed, but not a callback the service sent for.
    for (what, target, form, status, code) in [
        ("no MessageStatus", target.clone(), "MessageSid=SM1".to_owned(), 400, "invalid_request"),
        (
            "no message_id in the URL",
            format!("{path}?subscription_id={}", f.sms_subscription),
            form.to_owned(),
            400,
            "invalid_request",
        ),
        ("no query", path.to_owned(), form.to_owned(), 400, "invalid_request"),
        (
            "message_id traversal",
            format!("{path}?message_id=..%2F..&subscription_id={}", f.sms_subscription),
            form.to_owned(),
            404,
            "not_found",
        ),
        (
            "message_id lower case",
            format!(
                "{path}?message_id={}&subscription_id={}",
                f.sms_message.to_lowercase(),
                f.sms_subscription
            ),
            form.to_owned(),
            404,
            "not_found",
        ),
        (
            "push subscription on an sms message",
            format!("{path}?message_id={}&subscription_id={}", f.sms_message, f.push_subscription),
            form.to_owned(),
            404,
            "not_found",
        ),
        (
            "another app's message",
            format!("{path}?message_id={}&subscription_id={}", ulid::Ulid::new(), f.sms_subscription),
            form.to_owned(),
            404,
            "not_found",
        ),
    ] {
        let params = retarget_shared::edge::request::url_decode_pairs(form.as_bytes());
        let request = ApiRequest::post(&target)
            .header("x-twilio-signature", &sign(TOKEN_A, &format!("{PUBLIC}{target}"), &params))
            .raw_body(form.as_bytes());
        f.expect(format!("twilio webhook: signed, {what}"), route, request, status, code);
    }
    f.run().await;
}

#[tokio::test]
async fn every_path_answers_405_for_the_methods_it_does_not_serve() {
    let f = Fixture::new().await;
    for (_, template, route, _) in ROUTES {
        let served: Vec<&Method> = ROUTES.iter().filter(|r| r.1 == *template).map(|r| &r.0).collect();
        let target = f.valid_target(*route);
        let body = f.valid_body(*route);
        for method in [Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::OPTIONS]
        {
            if served.contains(&&method) || f.has_case(&format!("{method} {template}:")) {
                continue;
            }
            let request = f.request_as(method.as_str(), *route, &target, body.as_deref());
            f.expect_405(format!("{method} {template}: not served"), *route, request, allow_of(template));
        }
    }
    f.run().await;
}

/// As API Gateway routes them (the local API's router, `Handlers::route`): a 405 for a path
/// served with other methods lists exactly those, whichever function owns the path.
#[tokio::test]
async fn the_router_answers_405_with_exactly_the_allowed_methods() {
    let f = Fixture::new().await;
    let handlers = f.world.handlers().await;
    let id = ulid::Ulid::new().to_string();
    let cases = [
        ("PUT", "/v1/subscriptions".to_owned(), "POST"),
        ("DELETE", format!("/v1/subscriptions/{id}"), "GET"),
        ("GET", format!("/v1/subscriptions/{id}/unsubscribe"), "POST"),
        ("PATCH", "/v1/messages".to_owned(), "POST, GET"),
        ("GET", "/v1/track".to_owned(), "POST, OPTIONS"),
        ("POST", "/r/AbCdEfGhIj".to_owned(), "GET"),
        ("POST", format!("/v1/messages/{id}"), "GET"),
        ("DELETE", format!("/v1/messages/{id}/audience/count"), "GET"),
        ("GET", "/v1/events".to_owned(), "POST"),
        ("GET", format!("/v1/webhooks/twilio/{id}"), "POST"),
        ("PUT", format!("/v1/webhooks/push/{id}"), "POST"),
        ("DELETE", "/v1/retargets".to_owned(), "POST"),
        ("POST", format!("/v1/retargets/{id}"), "GET, DELETE"),
        ("PATCH", format!("/v1/retargets/{}", f.retarget), "GET, DELETE"),
    ];
    let before = f.snapshot().await;
    for (method, path, allow) in cases {
        let request = ApiRequest::new(method, &path).bearer(&f.a.api_key);
        let response = handlers.route(request.build()).await;
        let got = response.headers().get(http::header::ALLOW).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(got.as_deref(), Some(allow), "{method} {path}");
        retarget_tests::ApiResponse::from(response).assert_problem(405, "method_not_allowed");
    }
    let unknown = handlers.route(ApiRequest::new("DELETE", "/v1/nope").build()).await;
    assert_eq!(unknown.status(), 404);
    assert!(unknown.headers().get(http::header::ALLOW).is_none(), "a 404 lists no methods");
    assert_eq!(f.snapshot().await, before, "nothing written");
}

/// The media types a JSON route refuses: anything that is not `application/json` or
/// `application/*+json`.
const NOT_JSON: [&str; 8] = [
    "text/plain",
    "text/plain; charset=utf-8",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=xyz",
    "application/xml",
    "text/json",
    "application/jsonp",
    "application/octet-stream",
];

#[tokio::test]
async fn every_json_route_refuses_bodies_of_another_media_type_with_415() {
    let f = Fixture::new().await;
    let json_routes: Vec<Route> = ROUTES.iter().map(|r| r.2).filter(|r| r.takes_json()).collect();
    assert_eq!(json_routes.len(), 5, "the JSON routes: {json_routes:?}");
    for route in json_routes {
        let target = f.valid_target(route);
        let valid = f.valid_body(route).expect("a JSON route has a JSON body");
        for content_type in NOT_JSON {
            // A body that would be accepted as JSON is refused for what it says it is.
            let request = f.request(route, &target, Some(&valid)).header("content-type", content_type);
            let name = format!("{}: valid JSON sent as {content_type}", label(route));
            f.expect(name, route, request, 415, "unsupported_media_type");
        }
        // What a form or a text client really sends.
        let form = b"channel=sms&phone_number=%2B15550000009&contents=hello";
        let request =
            f.request(route, &target, Some(form)).header("content-type", "application/x-www-form-urlencoded");
        f.expect(format!("{}: a form", label(route)), route, request, 415, "unsupported_media_type");
        let request = f.request(route, &target, Some(b"hello")).header("content-type", "text/plain");
        f.expect(format!("{}: plain text", label(route)), route, request, 415, "unsupported_media_type");
    }
    f.run().await;
}

#[tokio::test]
async fn json_routes_take_json_in_any_spelling_and_without_a_content_type() {
    let f = Fixture::new().await;
    let subscription = |n: u32| {
        json!({"channel": "sms", "phone_number": format!("+1555010{n:04}")}).to_string().into_bytes()
    };
    let spellings = [
        Some("application/json"),
        Some("application/json; charset=utf-8"),
        Some("Application/JSON;charset=UTF-8"),
        Some("application/vnd.retarget+json"),
        // Lenient on purpose: curl without -H and many small clients send JSON unlabelled.
        None,
    ];
    for (n, content_type) in spellings.into_iter().enumerate() {
        let mut request = ApiRequest::post("/v1/subscriptions").bearer(&f.a.api_key);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = f.call(Function::Subscriptions, request.raw_body(&subscription(n as u32))).await;
        assert_eq!(response.status, 201, "{content_type:?}: {response:?}");
    }
    // Routes that are not JSON routes are not held to it: a GET with a text body is a GET.
    let target = f.valid_target(Route::GetMessage);
    let request = f.a.get(&target).header("content-type", "text/plain").raw_body(b"hello");
    assert_eq!(f.call(Function::Messages, request).await.status, 200);
}

/// The local API over real HTTP (`make dev`'s server, `/dev/clock` included) answers the same.
#[tokio::test]
async fn the_local_api_over_http_sends_allow_and_415() {
    use retarget_local::{LocalApi, LocalConfig, provision, serve};
    use std::sync::Arc;
    let sdk = retarget_tests::sdk().await;
    let name = retarget_tests::unique_name("local");
    let mut env = retarget_shared::config::EnvReader::from_pairs([
        ("TABLE_NAME", name.as_str()),
        ("RESOURCE_PREFIX", name.as_str()),
        ("EVENT_BUS_NAME", name.as_str()),
    ]);
    let config = LocalConfig::read(&mut env);
    env.finish().unwrap();
    let resources = provision(sdk, &config).await.expect("provision");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let api = Arc::new(LocalApi::new(sdk, config, resources).expect("local api"));
    let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, api, async move {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::new();
    let id = ulid::Ulid::new();
    for (method, path, allow) in [
        (reqwest::Method::PATCH, "/v1/events".to_owned(), "POST"),
        (reqwest::Method::PUT, format!("/v1/retargets/{id}"), "GET, DELETE"),
        (reqwest::Method::DELETE, "/dev/clock".to_owned(), "GET, POST"),
    ] {
        let response = client.request(method.clone(), format!("{url}{path}")).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 405, "{method} {path}");
        assert_eq!(response.headers()["allow"], allow, "{method} {path}");
        assert_eq!(response.headers()["content-type"], "application/problem+json");
    }
    for path in ["/v1/events", "/dev/clock"] {
        let response = client
            .post(format!("{url}{path}"))
            .header("content-type", "text/plain")
            .body(r#"{"advance_seconds":1}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 415, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], "unsupported_media_type", "{path}");
    }
}

#[test]
fn the_catalogue_covers_every_route() {
    // Each route must have a body shape and, when templated, an id: adding a route to ROUTES
    // without extending this catalogue fails to compile (exhaustive matches above) or here.
    for (method, template, route, _) in ROUTES {
        assert_eq!(template.contains('{'), route_has_id(*route), "{method} {template}");
    }
}

fn route_has_id(route: Route) -> bool {
    !matches!(
        route,
        Route::CreateSubscription
            | Route::CreateMessage
            | Route::RecordEvents
            | Route::CreateRetarget
            | Route::Track
            | Route::TrackPreflight
            | Route::ListMessages
            | Route::GetDeliveryPolicy
            | Route::PutDeliveryPolicy
    )
}

#!/usr/bin/env python3
"""Writes the committed seed corpus fuzz/corpus/<target>/ (a few valid inputs per target).

Signatures are computed here with the standard library's hmac, independently of the Rust code:
Twilio's X-Twilio-Signature (base64 HMAC-SHA1 over the URL and the sorted form fields) and
Retarget-Signature (hex HMAC-SHA256 over "{t}." + body). Deterministic: rerunning rewrites the
same files. The framing of each target is described at the top of its fuzz_targets/*.rs file.
"""
import base64
import hashlib
import hmac
import json
import pathlib
import urllib.parse

CORPUS = pathlib.Path(__file__).resolve().parent / "corpus"
BASE = "https://api.example.com"  # PUBLIC_BASE_URL in fuzz_targets/twilio_callback.rs
APP = "01JDQ8ZP3X5VY8M7K2T4N6R9WA"
MESSAGE = "01JDQ90A1B2C3D4E5F6G7H8J9K"
SUBSCRIPTION = "01JDQ91M2N3P4Q5R6S7T8V9W0X"
SUBSCRIPTION2 = "01JDQ92YZ0123456789ABCDEFG"
TOKEN = "f3c0a9d4e2b1c8a7f6e5d4c3b2a19080"
SECRET = "whsec_4f1c2b7a9e8d6c5b4a3f2e1d0c9b8a7f"
NOW = 1764356400  # 2025-11-28T19:00:00Z


def write(target, name, data):
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(data if isinstance(data, bytes) else data.encode())


def twilio_sig(token, url, params):
    payload = url + "".join(k + v for k, v in sorted(set(params)))
    mac = hmac.new(token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(mac).decode()


def push_sig(secret, t, body):
    return hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def cursor(source, skip):
    return base64.urlsafe_b64encode(f"1:{source}:{skip}".encode()).decode().rstrip("=")


def twilio_form(status, sid="SM0123456789abcdef0123456789abcdef", extra=()):
    params = [
        ("ApiVersion", "2010-04-01"),
        ("MessageStatus", status),
        ("SmsSid", sid),
        ("SmsStatus", status),
        ("To", "+15558675310"),
        ("MessageSid", sid),
        ("AccountSid", "AC00000000000000000000000000000000"),
        ("From", "+15017122661"),
        *extra,
    ]
    return params


# --- twilio_callback: token \n path?query \n signature \n form body --------------------------
path = f"/v1/webhooks/twilio/{APP}"
query = urllib.parse.urlencode({"message_id": MESSAGE, "subscription_id": SUBSCRIPTION})
for name, status, extra in [
    ("delivered", "delivered", ()),
    ("sent", "sent", ()),
    ("read", "read", ()),
    ("undelivered", "undelivered", (("ErrorCode", "30003"),)),
    ("failed", "failed", (("ErrorCode", "30008"), ("ErrorMessage", "Unknown error"))),
    ("queued", "queued", ()),
]:
    params = twilio_form(status, extra=extra)
    body = urllib.parse.urlencode(params)
    sig = twilio_sig(TOKEN, f"{BASE}{path}?{query}", params)
    write("twilio_callback", f"{name}.txt", f"{TOKEN}\n{path}?{query}\n{sig}\n{body}")
params = twilio_form("delivered")
write("twilio_callback", "bad-signature.txt",
      f"{TOKEN}\n{path}?{query}\n0/KCTR6DLpKmkAf8muzZqo1nDgQ=\n{urllib.parse.urlencode(params)}")
params = [("MessageSid", "SM1"), ("Body", "Grüße 👋")]
sig = twilio_sig(TOKEN, f"{BASE}{path}", params)
write("twilio_callback", "no-status-no-query.txt", f"{TOKEN}\n{path}\n{sig}\n{urllib.parse.urlencode(params)}")

# --- push_webhook: secret \n now \n Retarget-Signature \n body -------------------------------
def push_body(kind, event_id="evt_01JDQ93", occurred="2025-11-28T18:59:30Z"):
    return json.dumps({
        "event_id": event_id,
        "kind": kind,
        "message_id": MESSAGE,
        "subscription_id": SUBSCRIPTION,
        "occurred_at": occurred,
    }, separators=(",", ":")).encode()


for name, kind in [("delivered", "delivered"), ("clicked", "clicked")]:
    body = push_body(kind, event_id=f"evt_{name}")
    header = f"t={NOW},v1={push_sig(SECRET, NOW, body)}"
    write("push_webhook", f"{name}.txt", f"{SECRET}\n{NOW}\n{header}\n".encode() + body)
body = push_body("delivered", occurred="2025-11-28T19:00:00.123+01:00")
header = f"t={NOW}, v1={push_sig('whsec_old', NOW, body)}, v1={push_sig(SECRET, NOW, body)}"
write("push_webhook", "rotation.txt", f"{SECRET}\n{NOW + 120}\n{header}\n".encode() + body)
body = push_body("clicked")
header = f"t={NOW},v1={push_sig(SECRET, NOW, body)}"
write("push_webhook", "stale.txt", f"{SECRET}\n{NOW + 301}\n{header}\n".encode() + body)
body = b'{"event_id":"e1","kind":"opened","message_id":"x","subscription_id":"y","occurred_at":"now"}'
header = f"t={NOW},v0=deadbeef,v1={push_sig(SECRET, NOW, body)}"
write("push_webhook", "bad-kind.txt", f"{SECRET}\n{NOW}\n{header}\n".encode() + body)

# --- events_json: the POST /v1/events body ----------------------------------------------------
write("events_json", "one.json", json.dumps({"events": [
    {"message_id": MESSAGE, "subscription_id": SUBSCRIPTION, "kind": "clicked"}]}))
write("events_json", "several.json", json.dumps({"events": [
    {"event_id": "sdk-1", "message_id": MESSAGE, "subscription_id": SUBSCRIPTION, "kind": "delivered",
     "occurred_at": "2025-11-28T18:00:00Z"},
    {"event_id": "sdk-2", "message_id": MESSAGE, "subscription_id": SUBSCRIPTION2, "kind": "sent"},
    {"message_id": MESSAGE, "subscription_id": SUBSCRIPTION2, "kind": "undelivered",
     "occurred_at": "2025-11-28T18:00:00.5+02:00"},
    {"message_id": "not-an-id", "subscription_id": SUBSCRIPTION, "kind": "failed"},
]}, indent=2))
write("events_json", "unknown-field.json", '{"events":[{"message_id":"a","subscription_id":"b","kind":"sent","x":1}]}')
write("events_json", "empty.json", '{"events":[]}')

# --- audience_query: the raw query string -----------------------------------------------------
write("audience_query", "action.txt", "action=clicked")
write("audience_query", "combined.txt", "did=delivered,sent&did_not=clicked&limit=50")
write("audience_query", "cursor.txt", f"action=not_clicked&channel=sms&limit=1000&cursor={cursor(SUBSCRIPTION, 3)}")
write("audience_query", "combined-cursor.txt",
      f"did=sent&did_not=delivered&did_not=undelivered&channel=push&cursor={cursor(SUBSCRIPTION2, 0)}")
write("audience_query", "cursor-only.txt", cursor(SUBSCRIPTION, 4294967295))

# --- request_helpers: METHOD \n path?query \n headers \n\n body ------------------------------
events = json.dumps({"events": [{"message_id": MESSAGE, "subscription_id": SUBSCRIPTION, "kind": "sent"}]})
write("request_helpers", "events.txt",
      f"POST\n/v1/events\ncontent-type: application/json\nauthorization: Bearer rk_live_x\n\n{events}")
write("request_helpers", "audience.txt", f"GET\n/v1/messages/{MESSAGE}/audience?action=clicked&limit=10\n\n")
write("request_helpers", "count.txt", f"GET\n/v1/messages/{MESSAGE}/audience/count?did=sent\n\n")
params = twilio_form("delivered")
write("request_helpers", "twilio.txt",
      f"POST\n{path}?{query}\ncontent-type: application/x-www-form-urlencoded\n"
      f"x-twilio-signature: {twilio_sig(TOKEN, f'{BASE}{path}?{query}', params)}\n\n"
      f"{urllib.parse.urlencode(params)}")
write("request_helpers", "cancel.txt", f"DELETE\n/v1/retargets/{MESSAGE}\n\n")
write("request_helpers", "wrong-method.txt", f"PUT\n/v1/subscriptions/{SUBSCRIPTION}\n\n{{}}")
write("request_helpers", "too-large.txt", "POST\n/v1/messages\nx-fuzz-repeat: 1100000\n\n[")


# --- track_token: key (hex) \n token \n body ------------------------------------------------
# The token is computed here from its definition (shared/src/domain/tracking.rs), independently.
def ulid_bytes(ulid):
    alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
    value = 0
    for c in ulid:
        value = value * 32 + alphabet.index(c)
    return value.to_bytes(16, "big")


def track_token(key, app, message, subscription, kid=1):
    signed = bytes([kid]) + ulid_bytes(app) + ulid_bytes(message) + ulid_bytes(subscription)
    app_key = hmac.new(key, b"retarget tracking key v1" + ulid_bytes(app), hashlib.sha256).digest()
    mac = hmac.new(app_key, b"rt1" + signed, hashlib.sha256).digest()[:16]
    return base64.urlsafe_b64encode(signed + mac).decode().rstrip("=")


TRACK_KEY = bytes(range(32))
GOOD = track_token(TRACK_KEY, APP, MESSAGE, SUBSCRIPTION)
for name, token, body in [
    ("clicked", GOOD, {"token": GOOD, "kind": "clicked"}),
    ("converted-at", GOOD, {"token": GOOD, "kind": "converted", "occurred_at": "2025-11-28T19:00:00Z"}),
    ("bad-kind", GOOD, {"token": GOOD, "kind": "sent"}),
    ("other-kid", track_token(TRACK_KEY, APP, MESSAGE, SUBSCRIPTION, kid=2), {"kind": "clicked"}),
    ("truncated", GOOD[:-1], {"token": GOOD[:-1], "kind": "delivered"}),
]:
    write("track_token", f"{name}.txt", f"{TRACK_KEY.hex()}\n{token}\n{json.dumps(body)}".encode())

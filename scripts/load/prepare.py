#!/usr/bin/env python3
"""Fixtures for scripts/load.sh, through the local API (standard library only).

Creates push and SMS subscriptions and scheduled messages (send_at weeks ahead, so no sender
touches them and every stored interaction comes from the load), then writes into OUT_DIR:

- events-data.lua: the ids the events script combines into unique (message, subscription,
  kind) triples, so each accepted event is exactly one stored item;
- twilio.tsv and push.tsv: pre-signed webhook requests (wrk's Lua has no HMAC), one per line:
  path TAB header value TAB body — each a distinct (message, subscription, kind);
- track.tsv and track-forged.tsv (with STANDIN_URL, the provider stand-ins): POST /v1/track
  requests with the tracking tokens the push sender really minted — pushes sent now to
  LOAD_TRACK_MESSAGES x the push subscriptions, their tokens read back from the stand-ins'
  GET /received — one line per (token, kind); and the same for one more message with every
  token altered inside its MAC (each must be refused 401, record nothing and read nothing);
- fixtures.json: the message ids of each phase, for counting what was stored, and each
  phase's baseline (the `sent` items the pushes of the track phases recorded before the load).

Usage: prepare.py APP_JSON OUT_DIR SECONDS
Env: API_URL, PUBLIC_BASE_URL (defaults to API_URL), LOAD_SUBSCRIPTIONS (default 500),
LOAD_MAX_RATE (requests/s the generated webhook files are sized for, default 3000),
STANDIN_URL (the stand-ins; without it no track phase), LOAD_TRACK_MESSAGES (default 4).
"""

import base64
import concurrent.futures
import hashlib
import hmac
import json
import math
import os
import sys
import time
import urllib.parse
import urllib.request
from datetime import datetime, timedelta

from api import API_URL, call

PUBLIC_BASE_URL = os.environ.get("PUBLIC_BASE_URL", API_URL)
SUBSCRIPTIONS = int(os.environ.get("LOAD_SUBSCRIPTIONS", "500"))
MAX_RATE = int(os.environ.get("LOAD_MAX_RATE", "3000"))
PUSH_KINDS = ["sent", "delivered", "clicked", "failed"]
TWILIO_STATUSES = ["sent", "delivered", "undelivered", "failed"]
PUSH_WEBHOOK_KINDS = ["delivered", "clicked"]
TWILIO_AUTH_TOKEN = "load-twilio-auth-token"
STANDIN_URL = os.environ.get("STANDIN_URL", "")
TRACK_MESSAGES = int(os.environ.get("LOAD_TRACK_MESSAGES", "4"))
TRACK_KINDS = ["delivered", "clicked", "converted"]
# How long the pushes of the track phases may take to be sent (and their `sent` recorded).
SEND_TIMEOUT_S = 300
BASE64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def parallel(fn, items):
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        return list(pool.map(fn, items))


def received_tokens(message_ids):
    """The tracking tokens the stand-ins received for these messages, once every push is in."""
    wanted = set(message_ids)
    with urllib.request.urlopen(f"{STANDIN_URL}/received", timeout=30) as response:
        received = json.loads(response.read())["received"]
    tokens = {}
    for r in received:
        if r.get("channel") == "push" and r.get("message_id") in wanted and r.get("answered") == 200:
            tokens.setdefault(r["message_id"], set()).add(r["tracking_token"])
    return tokens


def send_and_collect(key, subs, count):
    """Push messages sent now to subs: their ids and every recipient's tracking token, after
    each message's `sent` is counted for every recipient (the baseline of its phase)."""
    ids = []
    for _ in range(count):
        reply = call("POST", "/v1/messages", key,
                     {"channel": "push", "contents": {"title": "load", "body": "tracked"},
                      "include_subscription_ids": subs})
        ids.append(reply["message_id"])
    deadline = time.monotonic() + SEND_TIMEOUT_S
    while True:
        tokens = received_tokens(ids)
        sent = [call("GET", f"/v1/messages/{m}", key)["stats"] for m in ids]
        if all(len(tokens.get(m, ())) == len(subs) for m in ids) and all(
                st.get("sent", 0) == len(subs) for st in sent):
            baseline = sum(sum(st.values()) for st in sent)
            return ids, [t for m in ids for t in sorted(tokens[m])], baseline
        if time.monotonic() > deadline:
            got = sum(len(tokens.get(m, ())) for m in ids)
            raise SystemExit(f"prepare: after {SEND_TIMEOUT_S} s the stand-ins got {got} of "
                             f"{len(ids) * len(subs)} pushes (stats: {sent})")
        time.sleep(0.5)


def forged(token):
    """The token with one character of its MAC changed: same shape, same key id, bad MAC."""
    at = len(token) - 10
    swapped = BASE64URL[(BASE64URL.index(token[at]) + 1) % len(BASE64URL)]
    return token[:at] + swapped + token[at + 1:]


def write_track(path, tokens, alter=lambda t: t):
    with open(path, "w") as f:
        for token in tokens:
            for kind in TRACK_KINDS:
                body = json.dumps({"token": alter(token), "kind": kind}, separators=(",", ":"))
                f.write(f"/v1/track\t\t{body}\n")


def main():
    app_file, out_dir, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    app = json.load(open(app_file))
    key, app_id, secret = app["api_key"], app["app_id"], app["push_webhook_secret"]
    os.makedirs(out_dir, exist_ok=True)

    now = datetime.fromisoformat(call("GET", "/dev/clock", key)["now"].replace("Z", "+00:00"))
    send_at = (now + timedelta(days=20)).strftime("%Y-%m-%dT%H:%M:%SZ")

    push_subs = parallel(
        lambda i: call(
            "POST",
            "/v1/subscriptions",
            key,
            {"channel": "push", "token": f"load-token-{i}", "platform": "android",
             "external_user_id": f"load-user-{i}"},
        )["subscription_id"],
        range(SUBSCRIPTIONS),
    )
    sms_subs = parallel(
        lambda i: call(
            "POST",
            "/v1/subscriptions",
            key,
            {"channel": "sms", "phone_number": f"+1555{i:07d}", "external_user_id": f"load-user-{i}"},
        )["subscription_id"],
        range(SUBSCRIPTIONS),
    )

    def messages(channel, subs, count):
        def create(_):
            reply = call(
                "POST",
                "/v1/messages",
                key,
                {"channel": channel, "contents": {"body": "load"},
                 "include_subscription_ids": subs[:1], "send_at": send_at},
            )
            assert reply["status"] == "scheduled", reply
            return reply["message_id"]

        return parallel(create, range(count))

    budget = max(seconds, 1) * MAX_RATE
    # Events: batches of 1..10 events, so up to 10x the request budget; triples cycle beyond it.
    event_msgs = messages("push", push_subs, math.ceil(budget * 5 / (SUBSCRIPTIONS * len(PUSH_KINDS))))
    twilio_msgs = messages("sms", sms_subs, math.ceil(budget / (SUBSCRIPTIONS * len(TWILIO_STATUSES))))
    push_msgs = messages("push", push_subs, math.ceil(budget / (SUBSCRIPTIONS * len(PUSH_WEBHOOK_KINDS))))

    def lua_list(ids):
        return "{" + ",".join(f'"{i}"' for i in ids) + "}"

    with open(os.path.join(out_dir, "events-data.lua"), "w") as f:
        f.write(
            f"return {{messages={lua_list(event_msgs)}, subscriptions={lua_list(push_subs)}, "
            f"kinds={lua_list(PUSH_KINDS)}}}\n"
        )

    # Twilio: the callback URL the SMS sender would give, form fields signed as Twilio signs.
    with open(os.path.join(out_dir, "twilio.tsv"), "w") as f:
        n = 0
        for m in twilio_msgs:
            for s in sms_subs:
                for status in TWILIO_STATUSES:
                    path = f"/v1/webhooks/twilio/{app_id}?" + urllib.parse.urlencode(
                        {"message_id": m, "subscription_id": s})
                    params = {"MessageSid": f"SMload{n:010d}", "MessageStatus": status,
                              "AccountSid": "ACload"}
                    signed = PUBLIC_BASE_URL + path + "".join(k + params[k] for k in sorted(params))
                    signature = base64.b64encode(
                        hmac.new(TWILIO_AUTH_TOKEN.encode(), signed.encode(), hashlib.sha1).digest()
                    ).decode()
                    f.write(f"{path}\t{signature}\t{urllib.parse.urlencode(params)}\n")
                    n += 1

    # Push: t from the stack's clock; a run lasts minutes, well inside the 300 s tolerance.
    t = int(now.timestamp())
    occurred = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    with open(os.path.join(out_dir, "push.tsv"), "w") as f:
        n = 0
        for m in push_msgs:
            for s in push_subs:
                for kind in PUSH_WEBHOOK_KINDS:
                    body = json.dumps(
                        {"event_id": f"load-push-{n}", "kind": kind, "message_id": m,
                         "subscription_id": s, "occurred_at": occurred},
                        separators=(",", ":"),
                    )
                    mac = hmac.new(secret.encode(), f"{t}.{body}".encode(), hashlib.sha256).hexdigest()
                    f.write(f"/v1/webhooks/push/{app_id}\tt={t},v1={mac}\t{body}\n")
                    n += 1

    fixtures = {"app_id": app_id, "events": event_msgs, "twilio": twilio_msgs, "push": push_msgs,
                "baseline": {}}
    if STANDIN_URL:
        track_msgs, tokens, baseline = send_and_collect(key, push_subs, TRACK_MESSAGES)
        write_track(os.path.join(out_dir, "track.tsv"), tokens)
        forged_msgs, forged_tokens, forged_baseline = send_and_collect(key, push_subs, 1)
        write_track(os.path.join(out_dir, "track-forged.tsv"), forged_tokens, forged)
        fixtures.update(track=track_msgs, track_forged=forged_msgs)
        fixtures["baseline"].update(track=baseline, track_forged=forged_baseline)
        print(f"track: {len(tokens)} tokens of {len(track_msgs)} pushes sent now, "
              f"{len(forged_tokens)} more altered", file=sys.stderr)
    json.dump(fixtures, open(os.path.join(out_dir, "fixtures.json"), "w"))
    print(
        f"{len(push_subs)} push + {len(sms_subs)} SMS subscriptions; messages: {len(event_msgs)} for "
        f"events, {len(twilio_msgs)} for Twilio callbacks, {len(push_msgs)} for push webhooks",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Fixtures for scripts/schemathesis.sh, through the local API (standard library only): a push
and an SMS subscription of one person, a push message to them with a few events (so its
audiences are not empty), and a retarget of it. Prints JSON with the ids that
schemathesis_hooks.py puts into path parameters.

Usage: schemathesis_fixtures.py APP_JSON   (env API_URL)
"""

import json
import sys
from datetime import datetime, timedelta

from api import call


def main():
    app = json.load(open(sys.argv[1]))
    key = app["api_key"]
    push = call("POST", "/v1/subscriptions", key, {"channel": "push", "token": "schema-token-1",
                                                   "platform": "android", "external_user_id": "schema-user"})
    sms = call("POST", "/v1/subscriptions", key, {"channel": "sms", "phone_number": "+15550002222",
                                                  "external_user_id": "schema-user"})
    # Scheduled a day ahead: no sender touches it while the checks run.
    now = call("GET", "/dev/clock", key)["now"]
    send_at = (datetime.fromisoformat(now.replace("Z", "+00:00")) + timedelta(days=1)).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    message = call("POST", "/v1/messages", key, {"channel": "push", "contents": {"body": "schema"},
                                                "include_subscription_ids": [push["subscription_id"]],
                                                "send_at": send_at})
    events = [{"message_id": message["message_id"], "subscription_id": push["subscription_id"], "kind": k}
              for k in ("sent", "delivered")]
    recorded = call("POST", "/v1/events", key, {"events": events})
    assert recorded["accepted"] == 2, recorded
    retarget = call("POST", "/v1/retargets", key, {"source_message_id": message["message_id"],
                                                  "action": "not_clicked", "channel": "sms",
                                                  "contents": {"body": "schema retarget"},
                                                  "send_at": send_at})
    print(json.dumps({
        "app_id": app["app_id"],
        "subscription_id": push["subscription_id"],
        "sms_subscription_id": sms["subscription_id"],
        "message_id": message["message_id"],
        "retarget_id": retarget["retarget_id"],
    }))


if __name__ == "__main__":
    main()

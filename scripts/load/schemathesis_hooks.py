"""schemathesis hooks (SCHEMATHESIS_HOOKS=schemathesis_hooks, PYTHONPATH=scripts/load):

- half the generated path parameters are replaced by ids that exist (SCHEMATHESIS_FIXTURES, the
  JSON schemathesis_fixtures.py prints), so routes with ids are exercised beyond 404s;
- webhook requests to the fixture app are mostly signed with its secrets
  (SCHEMATHESIS_APP_FILE: retarget-admin's JSON; SCHEMATHESIS_TWILIO_AUTH_TOKEN;
  SCHEMATHESIS_PUBLIC_BASE_URL), so their bodies are exercised beyond 401/403.
"""

import base64
import hashlib
import hmac
import json
import os
import time
import urllib.parse
import zlib

import schemathesis
from hypothesis import strategies as st
import requests
from hypothesis.internal import lambda_sources
from schemathesis.core import NotSet

# Hypothesis describes filter lambdas by re-parsing their module's source; on CPython 3.11 that
# parse can fail deep in schemathesis' coverage phase with "SystemError: AST constructor
# recursion depth mismatch" (a CPython bug), aborting the operation. The description is only
# cosmetic (a repr), so fall back to a generic one.
_lambda_description = lambda_sources.lambda_description


def _safe_lambda_description(f):
    try:
        return _lambda_description(f)
    except SystemError:
        return "lambda: <source unavailable>"


lambda_sources.lambda_description = _safe_lambda_description

FIXTURES = json.loads(os.environ["SCHEMATHESIS_FIXTURES"])


def existing_id(path):
    if "/webhooks/" in path:
        return "app_id", FIXTURES["app_id"]
    if path.startswith("/v1/subscriptions/"):
        return "id", FIXTURES["subscription_id"]
    if path.startswith("/v1/messages/"):
        return "id", FIXTURES["message_id"]
    if path.startswith("/v1/retargets/"):
        return "id", FIXTURES["retarget_id"]
    return None


@schemathesis.hook
def flatmap_path_parameters(ctx, path_parameters):
    found = existing_id(ctx.operation.path)
    if found is None or path_parameters is None:
        return st.just(path_parameters)
    name, value = found
    return st.sampled_from([path_parameters, {**path_parameters, name: value}])


# Webhooks: most cases for the fixture app are signed the way the provider signs, so bodies are
# checked beyond the signature (the rest keep schemathesis' own header and answer 401/403).
APP = json.load(open(os.environ["SCHEMATHESIS_APP_FILE"]))
TWILIO_AUTH_TOKEN = os.environ["SCHEMATHESIS_TWILIO_AUTH_TOKEN"]
PUBLIC_BASE_URL = os.environ["SCHEMATHESIS_PUBLIC_BASE_URL"]


def _form_pairs(body):
    pairs = []
    for name, value in body.items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, bool):
                item = "true" if item else "false"
            pairs.append((str(name), "" if item is None else str(item)))
    return pairs


@schemathesis.hook
def before_call(ctx, case, kwargs):
    path = case.operation.path
    if "/webhooks/" not in path or (case.path_parameters or {}).get("app_id") != FIXTURES["app_id"]:
        return
    if isinstance(case.body, NotSet) or zlib.crc32(repr(case.body).encode()) % 4 == 0:
        return
    headers = dict(case.headers or {})
    if path.startswith("/v1/webhooks/push/"):
        raw = case.body if isinstance(case.body, bytes) else json.dumps(case.body).encode()
        t = int(time.time())
        mac = hmac.new(APP["push_webhook_secret"].encode(), f"{t}.".encode() + raw, hashlib.sha256).hexdigest()
        headers["Retarget-Signature"] = f"t={t},v1={mac}"
    else:
        if not isinstance(case.body, dict):
            return
        pairs = _form_pairs(case.body)
        raw = urllib.parse.urlencode(pairs).encode()
        # The URL exactly as it goes out (query encoding included), under the public base URL.
        sent = case.as_transport_kwargs(base_url=PUBLIC_BASE_URL)
        url = requests.Request("POST", sent["url"], params=sent.get("params")).prepare().url
        signed = url + "".join(k + v for k, v in sorted(pairs))
        headers["X-Twilio-Signature"] = base64.b64encode(
            hmac.new(TWILIO_AUTH_TOKEN.encode(), signed.encode(), hashlib.sha1).digest()
        ).decode()
    case.body = raw
    case.headers = headers

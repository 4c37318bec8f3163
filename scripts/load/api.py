"""The local API as the load and schemathesis fixtures call it: JSON in and out, a bearer key."""

import json
import os
import urllib.request

API_URL = os.environ["API_URL"]


def call(method, path, api_key, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{API_URL}{path}", data=data, method=method)
    request.add_header("Authorization", f"Bearer {api_key}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")

#!/usr/bin/env python3
"""Per-operation status codes from schemathesis' HAR report, so a run shows which routes were
exercised beyond 401/404 (the figures for docs/reliability.md).

Usage: schemathesis_summary.py HAR_FILE
"""

import collections
import json
import re
import sys
import urllib.parse

ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")


def operation(method, url):
    path = urllib.parse.urlsplit(url).path
    parts = path.split("/")
    # Name the operation by its template: ids and anything generated in an id slot.
    templ = []
    for i, p in enumerate(parts):
        prev = parts[i - 1] if i else ""
        if prev in ("subscriptions", "messages", "retargets") and i == 3:
            templ.append("{id}")
        elif prev in ("twilio", "push") and i == 4:
            templ.append("{app_id}")
        else:
            templ.append(p)
    return f"{method} {'/'.join(templ)}"


def main():
    har = json.load(open(sys.argv[1]))
    counts = collections.defaultdict(collections.Counter)
    for entry in har["log"]["entries"]:
        counts[operation(entry["request"]["method"], entry["request"]["url"])][entry["response"]["status"]] += 1
    total = sum(sum(c.values()) for c in counts.values())
    print(f"\n== requests per operation and status ({total} requests) ==")
    # Methods a path does not serve (schemathesis' unsupported-method probes): one line.
    probes = [op for op, c in counts.items() if set(c) == {405}]
    if probes:
        print(f"  {len(probes)} method/path pairs the API does not serve: 405 each")
    for op in sorted(set(counts) - set(probes)):
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(counts[op].items()))
        print(f"  {op:45} {statuses}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Figures of scripts/load.sh: for each phase, wrk's numbers (from the Lua done() summaries)
and what was actually stored — interaction items (one per (message, subscription, kind)) of
the phase's messages counted by Query with Select=COUNT over every shard straight from
DynamoDB Local, and the messages' stats counters through the API as a second witness. The
stats are counted from the table's stream and may trail the stored items by 5 s at most (the
contract): they are read again until they agree or those 5 s have passed, and how long they
took is reported.

Lost events = events the API acknowledged that are not stored. Requests in flight when wrk
stopped may have been stored without wrk seeing the answer: those show up as "stored beyond
acknowledged" and must stay within what was sent.

The track phases' messages were really sent before the load: the `sent` items (and counters)
of those sends are their baseline, subtracted. Forged tokens must all be answered 401 and store
nothing.

Usage: report.py OUT_DIR API_KEY   (run with .local/venv/bin/python: boto3)
Exit 0 only with 0 errors and 0 lost events. Writes OUT_DIR/figures.json.
"""

import concurrent.futures
import json
import os
import sys
import time
import urllib.request

import boto3

# The contract: stats trail the stored events by at most 5 seconds.
STATS_LAG_S = 5.0

PHASES = [("events", "POST /v1/events"), ("twilio", "POST /v1/webhooks/twilio/{app_id}"),
          ("push", "POST /v1/webhooks/push/{app_id}"), ("track", "POST /v1/track"),
          ("track_forged", "POST /v1/track, forged tokens (401)")]


def count_stored(app_id, messages, api_key):
    table = os.environ["TABLE_NAME"]
    ddb = boto3.client("dynamodb", endpoint_url=os.environ["AWS_ENDPOINT_URL_DYNAMODB"],
                       region_name=os.environ.get("AWS_REGION", "us-east-1"))

    def items(message_id):
        item = ddb.get_item(TableName=table, Key={"pk": {"S": f"APP#{app_id}#MSG#{message_id}"},
                                                  "sk": {"S": "MSG"}})["Item"]
        shards = int(item.get("shards", {"N": "16"})["N"])
        total = 0
        for shard in range(shards):
            kwargs = {"TableName": table, "Select": "COUNT", "ConsistentRead": True,
                      "KeyConditionExpression": "pk = :pk",
                      "ExpressionAttributeValues": {":pk": {"S": f"MSG#{message_id}#I#{shard:02d}"}}}
            while True:
                page = ddb.query(**kwargs)
                total += page["Count"]
                if "LastEvaluatedKey" not in page:
                    break
                kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return total

    def stats(message_id):
        request = urllib.request.Request(f"{os.environ['API_URL']}/v1/messages/{message_id}")
        request.add_header("Authorization", f"Bearer {api_key}")
        with urllib.request.urlopen(request, timeout=30) as response:
            return sum(json.loads(response.read())["stats"].values())

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        stored = sum(pool.map(items, messages))
        started = time.monotonic()
        while True:
            counted = sum(pool.map(stats, messages))
            waited = time.monotonic() - started
            if counted == stored or waited >= STATS_LAG_S:
                return stored, counted, round(waited, 2)
            time.sleep(0.1)


def main():
    out_dir, api_key = sys.argv[1], sys.argv[2]
    fixtures = json.load(open(os.path.join(out_dir, "fixtures.json")))
    figures, failures = {}, []
    for phase, route in PHASES:
        path = os.path.join(out_dir, f"{phase}.json")
        if not os.path.exists(path):
            continue
        w = json.load(open(path))
        items, stats, stats_wait_s = count_stored(fixtures["app_id"], fixtures[phase], api_key)
        baseline = fixtures.get("baseline", {}).get(phase, 0)
        items, stats = items - baseline, stats - baseline
        forged = phase == "track_forged"
        socket_errors = w["connect_errors"] + w["read_errors"] + w["write_errors"] + w["timeouts"]
        if phase == "events":
            acknowledged, upper = w["accepted"], w["sent_events"]
        elif forged:
            acknowledged, upper = 0, 0
        else:
            acknowledged, upper = w["acked_distinct"], w["sent_distinct"]
        lost = max(0, acknowledged - items)
        f = {
            "route": route,
            "requests": w["requests"],
            "seconds": round(w["duration_us"] / 1e6, 1),
            "requests_per_s": round(w["requests"] / (w["duration_us"] / 1e6), 1),
            "p50_ms": round(w["p50_us"] / 1000, 2),
            "p90_ms": round(w["p90_us"] / 1000, 2),
            "p99_ms": round(w["p99_us"] / 1000, 2),
            "max_ms": round(w["max_us"] / 1000, 2),
            "non_2xx": w["non_2xx"],
            "expected_answers": w.get("ok_responses", w["requests"] - w["non_2xx"]),
            "socket_errors": socket_errors,
            "acknowledged_events": acknowledged,
            "stored_items": items,
            "stats_counters": stats,
            "stats_wait_s": stats_wait_s,
            "lost_events": lost,
            "stored_beyond_acknowledged": items - acknowledged,
        }
        if phase == "events":
            f.update(events_sent=w["sent_events"], duplicates=w["duplicates"], rejected=w["rejected"],
                     events_per_s=round(w["accepted"] / (w["duration_us"] / 1e6), 1))
            if w["rejected"]:
                failures.append(f"{phase}: {w['rejected']} events rejected")
        figures[phase] = f
        if forged:
            if w["other_status"]:
                failures.append(f"{phase}: {w['other_status']} answers other than 401")
        elif w["non_2xx"] or w["other_status"]:
            failures.append(f"{phase}: {max(w['non_2xx'], w['other_status'])} non-2xx responses")
        if socket_errors:
            failures.append(f"{phase}: {socket_errors} socket errors")
        if lost:
            failures.append(f"{phase}: {lost} acknowledged events not stored")
        if items > upper:
            failures.append(f"{phase}: {items} items stored but only {upper} distinct events sent")
        if stats != items:
            failures.append(f"{phase}: stats counters say {stats}, stored items {items}, "
                            f"still after {STATS_LAG_S} s")
        if w["requests"] == 0:
            failures.append(f"{phase}: no request completed")
    json.dump(figures, open(os.path.join(out_dir, "figures.json"), "w"), indent=2)

    print("\n== load figures (wrk on loopback) ==")
    for phase, f in figures.items():
        print(f"{f['route']}")
        print(f"  {f['requests']} requests in {f['seconds']} s = {f['requests_per_s']} req/s; latency p50 "
              f"{f['p50_ms']} ms, p90 {f['p90_ms']} ms, p99 {f['p99_ms']} ms, max {f['max_ms']} ms")
        if phase == "events":
            print(f"  events: {f['events_sent']} sent, {f['acknowledged_events']} accepted "
                  f"({f['events_per_s']}/s), {f['duplicates']} duplicates, {f['rejected']} rejected")
        if phase == "track_forged":
            print(f"  answered 401: {f['expected_answers']} of {f['requests']}; "
                  f"{f['socket_errors']} socket errors")
        else:
            print(f"  errors: {f['non_2xx']} non-2xx, {f['socket_errors']} socket errors")
        print(f"  acknowledged {f['acknowledged_events']}, stored items {f['stored_items']} "
              f"(stats counters {f['stats_counters']}, agreeing after {f['stats_wait_s']} s), lost {f['lost_events']}, in flight at stop and "
              f"stored anyway {f['stored_beyond_acknowledged']}")
    if failures:
        print("\nFAILED:\n  " + "\n  ".join(failures))
        return 1
    print("\nOK: 0 errors, 0 lost events")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# Benchmarks (docs/benchmarks.md): ingest, audiences, fan-out and their naive counterparts,
# against a fresh DynamoDB Local + moto of its own, then a table of figures and PNG plots.
#
#   scripts/bench.sh --quick   # CI: 5k events, audiences of 2k and 10k, quiet hours at 5k
#   scripts/bench.sh           # documented run: 100k events, audiences of 10k, 100k and 1M,
#                              # quiet hours at 1M
#
# Both also time the cold start of the thirteen functions' x86_64 release binaries (built here)
# against a local Runtime API stub, 20 starts each.
#
# Ingest, audiences (same channel and cross-channel) and fan-out run twice on the same data:
# raw against the emulators, then under the latency model — every DynamoDB and SQS call through
# a retarget-proxy process that holds each answer until AWS's in-region latency for it has passed
# (tools/proxy/src/latency.rs: defaults and sources; LATENCY_ARGS passes its options, e.g.
# "--item-ms 3 --sigma 0"). A modelled line carries "model": "latency" and the proxies' figures
# (how many requests the emulator itself was slower than the model, and by how much).
#
# Options: --out DIR (default .local/bench/quick, or docs/bench for the full run),
#          --sizes "N N ...", --events N, --rounds N, --writers N (default 16), --no-build;
#          --quiet "N ..." the quiet-hours bench's sizes ("" skips it; env QUIET too),
#          --email "N ..." the email fan-out's sizes ("" skips it; env EMAIL too), TRACK=N
#          the /v1/track requests.
# Exit status: non-zero only when something crashed; a figure missing its target is reported
# in the table ("**short**"), not an error.
#
# Every measurement runs in its own process (seeding in another), so each peak RSS is the
# measuring process's own. BENCH_JAVA_OPTS reaches DynamoDB Local's JVM (as JAVA_TOOL_OPTIONS).
# BENCH_PROFILE (default release) is the cargo profile of the bench and the functions: CI's quick
# run uses dev, which reuses the test build's artifacts; its figures only prove the bench runs
# (cold start and CPU share mean nothing for a debug build), the documented run is release.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

MODE=full
OUT=""
SIZES=""
EVENTS=""
ROUNDS=""
WRITERS=16
BUILD=1
while (($#)); do
  case "$1" in
    --quick) MODE=quick ;;
    --out) OUT=$2; shift ;;
    --sizes) SIZES=$2; shift ;;
    --events) EVENTS=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --writers) WRITERS=$2; shift ;;
    --quiet) QUIET=$2; shift ;;
    --email) EMAIL=$2; shift ;;
    --no-build) BUILD=0 ;;
    -h | --help) sed -n '2,20p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
  shift
done

if [[ $MODE == quick ]]; then
  : "${OUT:=.local/bench/quick}" "${SIZES:=2000 10000}" "${EVENTS:=5000}" "${ROUNDS:=1}" "${TRACK:=500}" "${QUIET=5000}" "${EMAIL=5000}"
  SENDER_JOBS=1
  JAVA_OPTS_DEFAULT=""
else
  : "${OUT:=docs/bench}" "${SIZES:=10000 100000 1000000}" "${EVENTS:=100000}" "${ROUNDS:=2}" "${TRACK:=20000}" "${QUIET=1000000}" "${EMAIL=100000}"
  SENDER_JOBS=4
  # A million recipients is about 5 M items in DynamoDB Local's in-memory store.
  JAVA_OPTS_DEFAULT="-Xms1g -Xmx8g"
fi
mkdir -p "$OUT"
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"

export SERVICES_DIR="${BENCH_SERVICES_DIR:-.local/bench-services}"
PROFILE="${BENCH_PROFILE:-release}"
case "$PROFILE" in
  dev) PROFILE_DIR=debug ;;
  *) PROFILE_DIR=$PROFILE ;;
esac
BIN="$ROOT/target/$PROFILE_DIR/retarget-bench"
PROXY_BIN="$ROOT/target/$PROFILE_DIR/retarget-proxy"
FUNCTIONS=(audiences email-events email-sender events messages push-sender retargets scheduler sms-sender stats subscriptions webhooks)

PROXY_PIDS=()
stop_proxies() {
  local pid
  for pid in "${PROXY_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  PROXY_PIDS=()
}
# shellcheck disable=SC2317 # only called from the EXIT trap
on_exit() {
  local rc=$?
  stop_proxies
  bash "$ROOT/scripts/services.sh" stop || true
  exit "$rc"
}
trap on_exit EXIT

bash scripts/services.sh install
if ((BUILD)); then
  packages=(-p retarget-bench -p retarget-proxy)
  for f in "${FUNCTIONS[@]}"; do packages+=(-p "retarget-$f"); done
  log "cargo build --profile $PROFILE ${packages[*]}"
  cargo build --profile "$PROFILE" "${packages[@]}"
fi
[[ -x "$BIN" ]] || die "$BIN not built"
[[ -x "$PROXY_BIN" ]] || die "$PROXY_BIN not built"

# Before the services start, so the emulators' JVM and Python do not share the cores.
log "cold start: the thirteen functions' $PROFILE binaries, 20 starts each, against a Runtime API stub"
"$BIN" cold-start --bin-dir "$ROOT/target/$PROFILE_DIR" --zip-dir "$ROOT/target/lambda" --starts 20 |
  tee -a "$RESULTS"

STARTED=$SECONDS
# Progress lines carry the seconds since the services started.
step() { log "[$((SECONDS - STARTED)) s] $*"; }
JAVA_OPTS="${BENCH_JAVA_OPTS-$JAVA_OPTS_DEFAULT}"
[[ -z $JAVA_OPTS ]] || log "DynamoDB Local JVM options: $JAVA_OPTS"
# fresh_services: DynamoDB Local + moto started afresh. DynamoDB Local slows down as the
# stream records of its tables pile up (the table streams to the stats function): seeding
# 2,000 recipients after an ingest of 10,000 events took 143 s instead of a few, so each
# ingest and each audience size gets a fresh instance.
fresh_services() {
  stop_proxies
  bash scripts/services.sh stop >/dev/null 2>&1 || true
  if [[ -n $JAVA_OPTS ]]; then
    JAVA_TOOL_OPTIONS="$JAVA_OPTS" bash scripts/services.sh start
  else
    bash scripts/services.sh start
  fi
  # shellcheck source=/dev/null
  . "$SERVICES_DIR/services.env"
  MODEL_DYNAMODB=$(start_proxy dynamodb "$AWS_ENDPOINT_URL_DYNAMODB")
  MODEL_SQS=$(start_proxy sqs "$AWS_ENDPOINT_URL_SQS")
}

# start_proxy SERVICE UPSTREAM: a latency-model proxy in front of UPSTREAM; prints its URL.
start_proxy() {
  local service=$1 upstream=$2 out="$SERVICES_DIR/proxy-$1.json" url=""
  # shellcheck disable=SC2086 # LATENCY_ARGS is a list of options
  "$PROXY_BIN" --service "$service" --upstream "$upstream" ${LATENCY_ARGS:-} >"$out" 2>&1 &
  PROXY_PIDS+=($!)
  for _ in $(seq 100); do
    url=$(python3 -c 'import json, sys; print(json.loads(open(sys.argv[1]).readline())["url"])' "$out" 2>/dev/null) && break
    sleep 0.1
  done
  [[ -n $url ]] || die "the $service latency proxy did not start: $(cat "$out")"
  printf '%s\n' "$url"
}

# bench TABLE ARGS...: one measuring process; its JSON line goes to the results and stdout.
bench() {
  local table=$1 line
  shift
  line=$(TABLE_NAME="$table" "$BIN" "$@") || die "retarget-bench $* failed"
  printf '%s\n' "$line" | tee -a "$RESULTS"
}

# bench_model TABLE ARGS...: the same measurement under the latency model (DynamoDB and SQS
# through the proxies); its line gets "model": "latency" and the proxies' figures.
bench_model() {
  local table=$1 line stats_ddb stats_sqs
  shift
  curl -fsS -X POST "$MODEL_DYNAMODB/_proxy/reset" >/dev/null
  curl -fsS -X POST "$MODEL_SQS/_proxy/reset" >/dev/null
  line=$(AWS_ENDPOINT_URL_DYNAMODB="$MODEL_DYNAMODB" AWS_ENDPOINT_URL_SQS="$MODEL_SQS" BENCH_LATENCY_PROXY="$MODEL_DYNAMODB" \
    TABLE_NAME="$table" "$BIN" "$@") || die "retarget-bench $* (latency model) failed"
  stats_ddb=$(curl -fsS "$MODEL_DYNAMODB/_proxy/stats")
  stats_sqs=$(curl -fsS "$MODEL_SQS/_proxy/stats")
  python3 -c '
import json, sys
line = json.loads(sys.argv[1])
line["model"] = "latency"
line["latency"] = {"dynamodb": json.loads(sys.argv[2])["latency"], "sqs": json.loads(sys.argv[3])["latency"]}
print(json.dumps(line))' "$line" "$stats_ddb" "$stats_sqs" | tee -a "$RESULTS"
}

# field JSON NAME: a top-level field of a JSON line.
field() {
  python3 -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"
}

fresh_services
step "ingest: $EVENTS events through the events handler, then one UpdateItem per event"
bench bench-ingest ingest --events "$EVENTS"
TABLE_NAME=bench-ingest "$BIN" drop-table
fresh_services
step "ingest: $EVENTS events under the latency model"
bench_model bench-ingest-model ingest --events "$EVENTS"
TABLE_NAME=bench-ingest-model "$BIN" drop-table
fresh_services
step "ingest: $EVENTS events of one message through $WRITERS concurrent writers"
bench bench-ingest-writers ingest --events "$EVENTS" --writers "$WRITERS" --naive-concurrency 0
TABLE_NAME=bench-ingest-writers "$BIN" drop-table
fresh_services
step "POST /v1/track: $TRACK forged tokens, $TRACK genuine ones, the same reports through /v1/events"
bench bench-track track --requests "$TRACK"
TABLE_NAME=bench-track "$BIN" drop-table

for size in $QUIET; do
  table="bench-quiet-$size"
  fresh_services
  step "quiet hours, $size SMS recipients over ten zones: seeding (its own process)"
  seeded=$(TABLE_NAME="$table" "$BIN" quiet-hours-seed --recipients "$size") || die "seeding $size failed"
  printf '%s\n' "$seeded" >>"$RESULTS"
  step "quiet hours, $size: dispatch, deferral by the sender, release a tick a minute on the test clock"
  bench "$table" quiet-hours --app-id "$(field "$seeded" app_id)" --message-id "$(field "$seeded" message_id)"
  TABLE_NAME="$table" "$BIN" drop-table
done

for size in $EMAIL; do
  table="bench-email-$size"
  fresh_services
  step "email fan-out, $size: seeding an email message and its audience (its own process)"
  seeded=$(TABLE_NAME="$table" "$BIN" seed-audience --recipients "$size" --channel email) || die "seeding $size failed"
  printf '%s\n' "$seeded" >>"$RESULTS"
  step "email fan-out, $size: not_clicked dispatched into SQS; a sample sent by the email sender against an SES stand-in"
  bench "$table" fanout --app-id "$(field "$seeded" app_id)" --message-id "$(field "$seeded" message_id)" \
    --action not_clicked --sender-jobs "$SENDER_JOBS"
  TABLE_NAME="$table" "$BIN" drop-table
done

for size in $SIZES; do
  table="bench-audience-$size"
  fresh_services
  step "audience of $size: seeding (its own process)"
  seeded=$(TABLE_NAME="$table" "$BIN" seed-audience --recipients "$size") || die "seeding $size failed"
  printf '%s\n' "$seeded" >>"$RESULTS"
  app=$(field "$seeded" app_id)
  message=$(field "$seeded" message_id)
  rounds=$ROUNDS
  ((size < 1000000)) || rounds=1
  step "audience of $size: count and export vs raw Query vs naive Scan ($rounds round(s))"
  bench "$table" audience --app-id "$app" --message-id "$message" --rounds "$rounds"
  step "audience of $size: count and export vs raw Query, under the latency model"
  bench_model "$table" audience --app-id "$app" --message-id "$message" --rounds "$rounds" --skip-naive
  step "audience of $size, push → sms: count and export vs raw Query, raw then under the latency model"
  bench "$table" audience --app-id "$app" --message-id "$message" --rounds "$rounds" --channel sms --skip-naive
  bench_model "$table" audience --app-id "$app" --message-id "$message" --rounds "$rounds" --channel sms --skip-naive
  step "audience of $size: fan-out through the scheduler into SQS, raw then under the latency model"
  bench "$table" fanout --app-id "$app" --message-id "$message" --sender-jobs "$SENDER_JOBS"
  bench_model "$table" fanout --app-id "$app" --message-id "$message" --sender-jobs "$SENDER_JOBS"
  TABLE_NAME="$table" "$BIN" drop-table
done
log "measured in $((SECONDS - STARTED)) s (services included); results in $RESULTS"

"$BIN" report --results "$RESULTS" --out "$OUT" | tee "$OUT/summary.md"
if [[ $PROFILE != release ]]; then
  note="Built with the $PROFILE profile: these figures only show that the bench runs; timings, CPU share and cold start are meaningful for release builds only."
  printf '\n%s\n' "$note" | tee -a "$OUT/summary.md"
fi
log "table in $OUT/summary.md, plots in $OUT/*.png"

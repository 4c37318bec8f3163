#!/usr/bin/env bash
# Load on loopback with wrk: POST /v1/events, then the Twilio status callback, then the push
# webhook, then POST /v1/track with the tokens real pushes carried (sent through the provider
# stand-ins) and with forged ones, each for --seconds (default 60) against the local API built
# in release, with its own services. Prints requests/s, latency percentiles, error counts and lost events (events
# the API acknowledged vs interaction items actually stored); exits non-zero on any error or
# lost event.
#
#   scripts/load.sh [--seconds N] [--connections N] [--threads N]
#
# Installs wrk with apt-get when missing. Everything it starts is stopped on exit.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=scripts/load/stack.sh
. "$ROOT/scripts/load/stack.sh"
cd "$ROOT"

SECONDS_PER_PHASE=60
CONNECTIONS="${LOAD_CONNECTIONS:-32}"
THREADS="${LOAD_THREADS:-2}"
while (($#)); do
  case "$1" in
    --seconds) SECONDS_PER_PHASE="${2:?--seconds needs a value}"; shift 2 ;;
    --connections) CONNECTIONS="${2:?}"; shift 2 ;;
    --threads) THREADS="${2:?}"; shift 2 ;;
    -h | --help) sed -n '2,10p' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (try --help)" ;;
  esac
done
[[ "$SECONDS_PER_PHASE" =~ ^[1-9][0-9]*$ ]] || die "--seconds must be a positive integer"

# LOAD_PROFILE=debug reuses the test build for a quick check of the script itself; the figures
# are only meaningful in release.
PROFILE="${LOAD_PROFILE:-release}"
[[ "$PROFILE" == release || "$PROFILE" == debug ]] || die "LOAD_PROFILE must be release or debug"
BIN_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE"
stack_files load
OUT="$ROOT/.local/load"

if ! command -v wrk >/dev/null 2>&1; then
  log "wrk not found: installing it with apt-get"
  run_as_root apt-get update -qq
  run_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi

bash scripts/services.sh install
log "building retarget-local, retarget-admin and retarget-standin ($PROFILE)"
if [[ "$PROFILE" == release ]]; then
  cargo build --release -p retarget-local -p retarget-admin -p retarget-standin
else
  cargo build -p retarget-local -p retarget-admin -p retarget-standin
fi

# The provider stand-ins: the track phase needs pushes really sent, to get their tokens. No
# Twilio callbacks: no SMS is sent now (the load's messages are scheduled weeks ahead).
STANDIN_PID=""
load_exit() {
  local rc=$?
  [[ -z "$STANDIN_PID" ]] || stop_group "$STANDIN_PID"
  stack_stop
  exit "$rc"
}
trap load_exit EXIT
STANDIN_URL="http://127.0.0.1:$(free_port)"
export STANDIN_URL
spawn "$BIN_DIR/retarget-standin" serve --port "${STANDIN_URL##*:}" --no-status-callbacks \
  </dev/null >"$OUT.standin.log" 2>&1
STANDIN_PID=$SPAWNED_PID
deadline=$((SECONDS + 20))
until curl --noproxy '*' -fsS -o /dev/null --max-time 2 "$STANDIN_URL/received" 2>/dev/null; do
  proc_alive "$STANDIN_PID" || die "retarget-standin exited during startup; see ${OUT#"$ROOT"/}.standin.log"
  ((SECONDS < deadline)) || die "retarget-standin not answering on $STANDIN_URL after 20s"
  sleep 0.1
done

stack_start_app "$OUT"
log "provisioning subscriptions and scheduled messages; signing webhook requests"
python3 scripts/load/prepare.py "$OUT/app.json" "$OUT" "$SECONDS_PER_PHASE"

run_wrk() {
  local phase=$1 script=$2
  shift 2
  log "wrk: $phase for ${SECONDS_PER_PHASE}s ($THREADS threads, $CONNECTIONS connections)"
  run_fg env LOAD_SUMMARY="$OUT/$phase.json" wrk --threads "$THREADS" --connections "$CONNECTIONS" \
    --duration "${SECONDS_PER_PHASE}s" --timeout 10s --latency \
    --script "scripts/load/$script" "$API_URL" -- "$@"
  ((FG_STATUS == 0)) || die "wrk ($phase) exited with status $FG_STATUS"
  # Let requests that were in flight when wrk stopped finish before counting.
  sleep 2
}

run_wrk events events.lua "$OUT/events-data.lua" "$THREADS" "$API_KEY"
run_wrk twilio webhooks.lua "$OUT/twilio.tsv" "$THREADS" twilio
run_wrk push webhooks.lua "$OUT/push.tsv" "$THREADS" push
run_wrk track webhooks.lua "$OUT/track.tsv" "$THREADS" track
run_wrk track_forged webhooks.lua "$OUT/track-forged.tsv" "$THREADS" track 401

proc_alive "$STACK_PID" || die "retarget-local died during the load; see ${STACK_LOG#"$ROOT"/}"
if grep -q 'panicked' "$STACK_LOG"; then
  die "retarget-local panicked during the load; see ${STACK_LOG#"$ROOT"/}"
fi
run_fg .local/venv/bin/python scripts/load/report.py "$OUT" "$API_KEY"
exit "$FG_STATUS"

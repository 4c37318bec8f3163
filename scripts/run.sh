#!/usr/bin/env bash
# make run: the end-to-end demo. Starts its own services and local stack (on a free API port
# unless API_PORT is given), runs retarget-demo against it, stops everything, and exits with
# the demo's status.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

# Own state and env file names, so make run works while make dev is running.
stack_files run
READY_TIMEOUT="${RUN_READY_TIMEOUT:-120}"
STACK_PID=""

# shellcheck disable=SC2317 # only called from the EXIT trap
cleanup() {
  local rc=$?
  if [[ -n "$STACK_PID" ]]; then
    stop_group "$STACK_PID"
  fi
  bash scripts/services.sh stop || true
  rm -f "$STACK_ENV_FILE"
  exit "$rc"
}
trap cleanup EXIT

bash scripts/services.sh install
cargo build -p retarget-local -p retarget-demo

API_PORT="${API_PORT:-$(free_port)}"
export API_PORT
# The demo serves local stand-ins for Twilio, FCM and APNs; the stack's senders call them.
STANDIN_PORT="$(free_port)"
export STANDIN_PORT STANDIN_URL="http://127.0.0.1:$STANDIN_PORT"
export TWILIO_API_BASE="${TWILIO_API_BASE:-$STANDIN_URL}"
export FCM_API_BASE="${FCM_API_BASE:-$STANDIN_URL}"
export APNS_API_BASE="${APNS_API_BASE:-$STANDIN_URL}"
# A quick schedule so the demo need not wait a minute for the scheduler.
export SCHEDULE_TICK_SECONDS="${SCHEDULE_TICK_SECONDS:-1}"
bash scripts/services.sh start
# shellcheck source=/dev/null
. "$SERVICES_DIR/services.env"

rm -f "$STACK_ENV_FILE"
mkdir -p "$(dirname "$STACK_LOG")"
log "starting retarget-local on 127.0.0.1:$API_PORT; its log: ${STACK_LOG#"$ROOT"/}"
spawn target/debug/retarget-local </dev/null >"$STACK_LOG" 2>&1
STACK_PID=$SPAWNED_PID

# Ready = the env file is written (table, queues and bus exist) and the API answers.
deadline=$((SECONDS + READY_TIMEOUT))
until [[ -s "$STACK_ENV_FILE" ]] &&
  curl --noproxy '*' -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$API_PORT/dev/clock" 2>/dev/null; do
  if ! proc_alive "$STACK_PID"; then
    log "retarget-local exited during startup; last lines of ${STACK_LOG#"$ROOT"/}:"
    tail -n 40 "$STACK_LOG" >&2 || true
    exit 1
  fi
  if ((SECONDS >= deadline)); then
    log "retarget-local not ready after ${READY_TIMEOUT}s; last lines of ${STACK_LOG#"$ROOT"/}:"
    tail -n 40 "$STACK_LOG" >&2 || true
    exit 1
  fi
  sleep 0.2
done
log "stack ready at http://127.0.0.1:$API_PORT"

# shellcheck source=/dev/null
. "$STACK_ENV_FILE"
export API_URL="http://127.0.0.1:$API_PORT"

log "running retarget-demo"
run_fg target/debug/retarget-demo
if ((FG_STATUS == 0)); then
  log "demo passed"
else
  log "demo FAILED (exit $FG_STATUS); stack log: ${STACK_LOG#"$ROOT"/}"
fi
exit "$FG_STATUS"

#!/usr/bin/env bash
# make dev: the local stack in the foreground until SIGINT/SIGTERM, then everything it started
# is stopped. API_PORT, TWILIO_API_BASE, FCM_API_BASE, APNS_API_BASE, PUBLIC_BASE_URL and
# SCHEDULE_TICK_SECONDS are simply inherited by retarget-local.
#
# Next to it run the local Twilio, FCM and APNs stand-ins (retarget-standin, on STANDIN_PORT or a
# free port): each of TWILIO_API_BASE, FCM_API_BASE and APNS_API_BASE not given points at them,
# their address goes into .local/stack.env as STANDIN_URL, GET $STANDIN_URL/received lists what
# they got, and the Twilio one posts each SMS's status callbacks (sent, delivered) to the local
# API. `make dev-app` creates an app wired to them.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

# DEV_SERVICES_DIR and DEV_STACK_ENV_FILE let a script run a stack of its own next to a running
# make dev (scripts/dashboard-test.sh).
export SERVICES_DIR="${DEV_SERVICES_DIR:-.local/dev-services}"
# retarget-local writes this once the table, queues and bus exist.
export STACK_ENV_FILE="${DEV_STACK_ENV_FILE:-$ROOT/.local/stack.env}"

STANDIN_PID=""
ANNOUNCE_PID=""

# shellcheck disable=SC2317 # only called from the EXIT trap
cleanup() {
  local rc=$?
  if [[ -n "$ANNOUNCE_PID" ]]; then
    kill "$ANNOUNCE_PID" 2>/dev/null || true
  fi
  if [[ -n "$STANDIN_PID" ]]; then
    stop_group "$STANDIN_PID"
  fi
  bash scripts/services.sh stop || true
  rm -f "$STACK_ENV_FILE"
  exit "$rc"
}
trap cleanup EXIT

bash scripts/services.sh install
# Build before starting the services: a failed build then leaves nothing to clean up.
cargo build -p retarget-local -p retarget-standin
bash scripts/services.sh start
# shellcheck source=/dev/null
. "$SERVICES_DIR/services.env"

export API_PORT="${API_PORT:-3000}"
STANDIN_PORT="${STANDIN_PORT:-$(free_port)}"
export STANDIN_URL="http://127.0.0.1:$STANDIN_PORT"
standing_in=()
for base in TWILIO_API_BASE FCM_API_BASE APNS_API_BASE; do
  if [[ -z "${!base:-}" ]]; then
    export "$base=$STANDIN_URL"
    standing_in+=("$base")
  fi
done
spawn "${CARGO_TARGET_DIR:-target}/debug/retarget-standin" serve --port "$STANDIN_PORT" \
  --callback-origin "http://127.0.0.1:$API_PORT" </dev/null
STANDIN_PID=$SPAWNED_PID
deadline=$((SECONDS + 20))
until curl --noproxy '*' -fsS -o /dev/null --max-time 2 "$STANDIN_URL/received" 2>/dev/null; do
  proc_alive "$STANDIN_PID" || die "retarget-standin exited during startup (is port $STANDIN_PORT taken?)"
  ((SECONDS < deadline)) || die "retarget-standin not answering on $STANDIN_URL after 20s"
  sleep 0.1
done
log "provider stand-ins on $STANDIN_URL, for ${standing_in[*]:-none of the providers (all three bases given)}"

rm -f "$STACK_ENV_FILE"
# Once the stack is up (retarget-local writes the env file then), say where the dashboard is.
(
  until [[ -s "$STACK_ENV_FILE" ]]; do sleep 0.2; done
  log "stack up: API on http://127.0.0.1:$API_PORT, dashboard on http://127.0.0.1:$API_PORT/dashboard (sign in with an app's api_key: make dev-app)"
) &
ANNOUNCE_PID=$!
log "starting retarget-local: API on http://127.0.0.1:${API_PORT:-3000}, env in ${STACK_ENV_FILE#"$ROOT"/} (Ctrl-C stops everything)"
run_fg "${CARGO_TARGET_DIR:-target}/debug/retarget-local"
log "retarget-local exited with status $FG_STATUS"
exit "$FG_STATUS"

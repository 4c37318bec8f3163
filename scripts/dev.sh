#!/usr/bin/env bash
# make dev: the local stack in the foreground until SIGINT/SIGTERM, then everything it started
# is stopped. API_PORT, TWILIO_API_BASE, FCM_API_BASE, APNS_API_BASE, PUBLIC_BASE_URL and
# SCHEDULE_TICK_SECONDS are simply inherited by retarget-local.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

export SERVICES_DIR=.local/dev-services
# retarget-local writes this once the table, queues and bus exist.
export STACK_ENV_FILE="$ROOT/.local/stack.env"

# shellcheck disable=SC2317 # only called from the EXIT trap
cleanup() {
  local rc=$?
  bash scripts/services.sh stop || true
  rm -f "$STACK_ENV_FILE"
  exit "$rc"
}
trap cleanup EXIT

bash scripts/services.sh install
# Build before starting the services: a failed build then leaves nothing to clean up.
cargo build -p retarget-local
bash scripts/services.sh start
# shellcheck source=/dev/null
. "$SERVICES_DIR/services.env"

rm -f "$STACK_ENV_FILE"
log "starting retarget-local: API on http://127.0.0.1:${API_PORT:-3000}, env in .local/stack.env (Ctrl-C stops everything)"
run_fg target/debug/retarget-local
log "retarget-local exited with status $FG_STATUS"
exit "$FG_STATUS"

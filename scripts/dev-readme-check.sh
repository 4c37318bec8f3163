#!/usr/bin/env bash
# Runs the README's `make dev` walkthrough as written: starts make dev (scripts/dev.sh) on a free
# API port with a 2-second scheduler tick, runs the README's second-terminal block verbatim with
# bash -e, checks what the provider stand-ins received, and stops make dev (and with it the
# stand-ins, DynamoDB Local and moto). Exits 0 only if every step checked out. It uses make dev's
# own files (.local/stack.env), so it refuses to run while a make dev is up.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

STACK_ENV="$ROOT/.local/stack.env"
DEV_LOG="$ROOT/.local/dev-readme-check.log"
READY_TIMEOUT="${DEV_READY_TIMEOUT:-300}" # make dev builds and installs first
DEV_PID=""

[[ ! -e "$STACK_ENV" ]] || die "${STACK_ENV#"$ROOT"/} exists: stop the running make dev first"
for tool in curl jq; do
  command -v "$tool" >/dev/null || die "$tool is needed (the README's walkthrough uses it)"
done

# shellcheck disable=SC2317 # only called from the EXIT trap
cleanup() {
  local rc=$?
  if [[ -n "$DEV_PID" ]]; then
    # make dev's own cleanup stops the stand-ins and the services on SIGTERM.
    stop_group "$DEV_PID" 60
  fi
  ((rc == 0)) || { log "make dev's log, last lines:"; tail -n 30 "$DEV_LOG" >&2 || true; }
  exit "$rc"
}
trap cleanup EXIT

# The walkthrough: the first ```sh block after the line that sends the reader to a second terminal.
walkthrough=$(awk '/In a second terminal/ { found = 1 } found && /^```sh$/ { inside = 1; next }
  inside && /^```$/ { exit } inside { print }' README.md)
[[ -n "$walkthrough" ]] || die "no walkthrough block found in README.md"

mkdir -p "$(dirname "$DEV_LOG")"
API_PORT="$(free_port)"
log "starting make dev on 127.0.0.1:$API_PORT (log: ${DEV_LOG#"$ROOT"/})"
spawn env API_PORT="$API_PORT" SCHEDULE_TICK_SECONDS=2 bash scripts/dev.sh </dev/null >"$DEV_LOG" 2>&1
DEV_PID=$SPAWNED_PID
deadline=$((SECONDS + READY_TIMEOUT))
until [[ -s "$STACK_ENV" ]] &&
  curl --noproxy '*' -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$API_PORT/dev/clock" 2>/dev/null; do
  proc_alive "$DEV_PID" || die "make dev exited during startup"
  ((SECONDS < deadline)) || die "make dev not ready after ${READY_TIMEOUT}s"
  sleep 0.5
done

log "running the README's walkthrough"
# Through a pipe: a command of the walkthrough that opens /dev/stderr itself (`tee /dev/stderr`)
# would truncate a log file this script's stderr is redirected to (CI's whole log, up to here).
timeout 300 bash -e -o pipefail -c "$walkthrough" 2>&1 | cat || die "the walkthrough failed (exit $?)"

# The scheduled retarget: the clock was moved past its send_at; the next ticks send it.
# shellcheck source=/dev/null
. "$STACK_ENV"
received() { curl --noproxy '*' -fsS "$STANDIN_URL/received"; }
deadline=$((SECONDS + 60))
until received | jq -e '[.received[] | select(.body == "Last chance")] | length == 1' >/dev/null; do
  ((SECONDS < deadline)) || die "the scheduled retarget never reached the Twilio stand-in"
  sleep 1
done
sleep 2 # its status callbacks

check() {
  received | jq -e "$2" >/dev/null || { log "FAILED: $1"; received | jq . >&2; exit 1; }
  log "ok: $1"
}
check "FCM got tok-1's push and APNs tok-2's" \
  '[.received[] | select(.channel == "push" and .answered == 200) | "\(.provider) \(.to)"] | sort == ["apns tok-2", "fcm tok-1"]'
check "only u2 (who did not click) got the texts, both accepted" \
  '[.received[] | select(.provider == "twilio") | "\(.to) \(.answered)"] == ["+15551234562 201", "+15551234562 201"]'
check "every text's status callbacks (sent, delivered) answered 204" \
  '[.received[] | select(.provider == "twilio") | .callbacks | map("\(.status) \(.answered)")] | all(. == ["sent 204", "delivered 204"])'
check "the first text's link went as a tracked link, not as the URL" \
  '[.received[] | select(.provider == "twilio")][0].body | (contains("/r/") and (contains("shop.example") | not))'
check "nothing was refused" '[.received[] | select(.refused)] == []'
log "the README's make dev walkthrough checked out"

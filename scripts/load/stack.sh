# shellcheck shell=bash
# The local stack for scripts/load.sh and scripts/schemathesis.sh (sourced after scripts/lib.sh,
# never run): own services, retarget-local on a free port, an app from retarget-admin. The
# caller's EXIT trap is stack_exit (or calls stack_stop). Expects ROOT and, before stack_start,
# SERVICES_DIR, STACK_ENV_FILE, STACK_LOG (see stack_files in lib.sh) and BIN_DIR (where
# retarget-local and retarget-admin were built).

STACK_PID=""

# shellcheck disable=SC2317 # called from the caller's EXIT trap
stack_stop() {
  if [[ -n "$STACK_PID" ]]; then
    stop_group "$STACK_PID"
    STACK_PID=""
  fi
  bash "$ROOT/scripts/services.sh" stop || true
  rm -f "$STACK_ENV_FILE"
}

# stack_exit: an EXIT trap: stack_stop, keeping the script's exit status.
# shellcheck disable=SC2317 # only called from the EXIT trap
stack_exit() {
  local rc=$?
  stack_stop
  exit "$rc"
}

# stack_start: services, then retarget-local on a free API_PORT; returns once the API answers.
# Exports API_PORT, API_URL and the stack env (TABLE_NAME, AWS endpoints…).
stack_start() {
  local ready_timeout="${STACK_READY_TIMEOUT:-120}" deadline
  bash "$ROOT/scripts/services.sh" start
  # shellcheck source=/dev/null
  . "$SERVICES_DIR/services.env"
  API_PORT="$(free_port)"
  export API_PORT STACK_ENV_FILE
  # Far-off scheduler ticks: nothing is due during a run, but keep the default behaviour.
  export SCHEDULE_TICK_SECONDS="${SCHEDULE_TICK_SECONDS:-60}"
  # Providers: the stand-ins at STANDIN_URL when the caller runs them, else a closed loopback
  # port. Either way nothing may ever leave the machine.
  local providers="${STANDIN_URL:-}"
  [[ -n "$providers" ]] || providers="http://127.0.0.1:$(free_port)"
  export TWILIO_API_BASE="$providers" FCM_API_BASE="$providers" APNS_API_BASE="$providers"
  # Info logs per request would cost more than the requests themselves under load.
  export RUST_LOG="${RUST_LOG:-warn}"
  rm -f "$STACK_ENV_FILE"
  mkdir -p "$(dirname "$STACK_LOG")"
  log "starting retarget-local on 127.0.0.1:$API_PORT; its log: ${STACK_LOG#"$ROOT"/}"
  spawn "$BIN_DIR/retarget-local" </dev/null >"$STACK_LOG" 2>&1
  STACK_PID=$SPAWNED_PID
  deadline=$((SECONDS + ready_timeout))
  until [[ -s "$STACK_ENV_FILE" ]] &&
    curl --noproxy '*' -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$API_PORT/dev/clock" 2>/dev/null; do
    if ! proc_alive "$STACK_PID"; then
      log "retarget-local exited during startup; last lines of its log:"
      tail -n 40 "$STACK_LOG" >&2 || true
      return 1
    fi
    if ((SECONDS >= deadline)); then
      log "retarget-local not ready after ${ready_timeout}s; last lines of its log:"
      tail -n 40 "$STACK_LOG" >&2 || true
      return 1
    fi
    sleep 0.2
  done
  # shellcheck source=/dev/null
  . "$STACK_ENV_FILE"
  export API_URL="http://127.0.0.1:$API_PORT"
  log "stack ready at $API_URL"
}

# The Twilio auth token of the app stack_create_app makes (a local throwaway).
# shellcheck disable=SC2034 # read by the scripts that source this file
STACK_TWILIO_AUTH_TOKEN=load-twilio-auth-token

# stack_create_app FILE: a pro app with Twilio, FCM and APNs credentials; writes retarget-admin's
# JSON to FILE. Twilio's are always the throwaway ones above (the load's callbacks are signed
# with them). FCM and APNs: with STANDIN_URL, the stand-ins' own credentials (retarget-standin
# app-flags, from BIN_DIR), so pushes are really sent and their tracking tokens minted; else the
# demo's test-only keys (push messages are accepted, not 422 channel_not_configured).
stack_create_app() {
  local dir fixtures="$ROOT/tools/demo/fixtures" account push_flags=() all i
  dir="$(dirname "$1")"
  if [[ -n "${STANDIN_URL:-}" ]]; then
    all="$("$BIN_DIR/retarget-standin" app-flags --standin-url "$STANDIN_URL" --dir "$dir")"
    mapfile -t all <<<"$all"
    # Flag, value pairs: keep all but the stand-ins' Twilio ones.
    for ((i = 0; i + 1 < ${#all[@]}; i += 2)); do
      [[ "${all[i]}" == --twilio-* ]] || push_flags+=("${all[i]}" "${all[i + 1]}")
    done
  else
    account="$dir/fcm-service-account.json"
    sed "s|REPLACED_AT_RUNTIME|${FCM_API_BASE:-http://127.0.0.1:9}/token|" \
      "$fixtures/fcm-demo-service-account.json" >"$account"
    push_flags=(--fcm-service-account "$account"
      --apns-key "$fixtures/apns-demo-key.p8" --apns-key-id KEYID12345 --apns-team-id TEAMID1234
      --apns-topic com.example.app)
  fi
  "$BIN_DIR/retarget-admin" app create --name "load and schema checks" --plan pro \
    --twilio-account-sid ACload --twilio-auth-token "$STACK_TWILIO_AUTH_TOKEN" \
    --twilio-from +15550001111 "${push_flags[@]}" >"$1"
}

# stack_start_app DIR: stack_start, then DIR emptied and DIR/app.json from stack_create_app.
# Sets API_KEY (the app's).
# shellcheck disable=SC2034 # API_KEY is read by the scripts that source this file
stack_start_app() {
  local dir=$1
  stack_start
  rm -rf "$dir"
  mkdir -p "$dir"
  stack_create_app "$dir/app.json"
  API_KEY="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["api_key"])' "$dir/app.json")"
}

#!/usr/bin/env bash
# schemathesis against docs/openapi.yaml on the local stack (own services, free port): every
# operation, generated and boundary inputs, with an app's API key and, for half the cases of
# routes with ids, ids that exist, and most webhook requests signed with the app's secrets
# (scripts/load/schemathesis_hooks.py). Checks: no server
# error, and status codes, content types, headers and bodies as the document says. Exits
# non-zero on any failure.
#
#   scripts/schemathesis.sh [--max-examples N] [--seed N]   (default 10 examples per operation)
#
# Installs schemathesis (pinned) into .local/venv-schemathesis. Everything it starts is
# stopped on exit. Its report (JUnit XML, failures reproducible with curl) goes to
# .local/schemathesis/.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# shellcheck source=scripts/load/stack.sh
. "$ROOT/scripts/load/stack.sh"
cd "$ROOT"

SCHEMATHESIS_PIN="schemathesis==4.32.5"
VENV="$ROOT/.local/venv-schemathesis"
MAX_EXAMPLES=10
SEED="${SCHEMATHESIS_SEED:-}"
while (($#)); do
  case "$1" in
    --max-examples) MAX_EXAMPLES="${2:?--max-examples needs a value}"; shift 2 ;;
    --seed) SEED="${2:?--seed needs a value}"; shift 2 ;;
    -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
    *) die "unknown argument: $1 (try --help)" ;;
  esac
done
[[ "$MAX_EXAMPLES" =~ ^[1-9][0-9]*$ ]] || die "--max-examples must be a positive integer"

stack_files schemathesis
OUT="$ROOT/.local/schemathesis"
# Debug build: the same one the tests use, so no extra release build just for this.
BIN_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/debug"

trap stack_exit EXIT

if ! "$VENV/bin/schemathesis" --version 2>/dev/null | grep -qF "${SCHEMATHESIS_PIN#*==}"; then
  log "installing $SCHEMATHESIS_PIN into .local/venv-schemathesis"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "$SCHEMATHESIS_PIN"
fi

bash scripts/services.sh install
cargo build -p retarget-local -p retarget-admin

stack_start_app "$OUT"
SCHEMATHESIS_FIXTURES="$(python3 scripts/load/schemathesis_fixtures.py "$OUT/app.json")"
export SCHEMATHESIS_FIXTURES SCHEMATHESIS_APP_FILE="$OUT/app.json"
export SCHEMATHESIS_TWILIO_AUTH_TOKEN="$STACK_TWILIO_AUTH_TOKEN"
export SCHEMATHESIS_PUBLIC_BASE_URL="${PUBLIC_BASE_URL:-$API_URL}"
log "fixtures: $SCHEMATHESIS_FIXTURES"

CHECKS="${SCHEMATHESIS_CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance}"
[[ -n "${SCHEMATHESIS_CHECKS:-}" ]] || CHECKS+=",response_headers_conformance,response_schema_conformance"
HEALTH_CHECKS_OFF="too_slow,filter_too_much"
REPORTS="junit,har"
args=(run docs/openapi.yaml --url "$API_URL" -H "Authorization: Bearer $API_KEY" --checks "$CHECKS"
  --max-examples "$MAX_EXAMPLES" --workers 2 --request-timeout 30
  --suppress-health-check "$HEALTH_CHECKS_OFF"
  --generation-database "$ROOT/.local/schemathesis-db"
  --report "$REPORTS" --report-dir "$OUT" --report-har-path "$OUT/requests.har")
[[ -n "$SEED" ]] && args+=(--seed "$SEED")
log "schemathesis ${args[*]//$API_KEY/<key>}"
started=$SECONDS
run_fg env NO_COLOR=1 SCHEMATHESIS_HOOKS=schemathesis_hooks PYTHONPATH="$ROOT/scripts/load" \
  "$VENV/bin/schemathesis" "${args[@]}"
log "schemathesis finished in $((SECONDS - started))s with status $FG_STATUS"
if [[ -s "$OUT/requests.har" ]]; then
  python3 scripts/load/schemathesis_summary.py "$OUT/requests.har" || true
fi
if grep -q 'panicked' "$STACK_LOG"; then
  log "retarget-local panicked; see ${STACK_LOG#"$ROOT"/}"
  exit 1
fi
exit "$FG_STATUS"

#!/usr/bin/env bash
# make dev-app (or bash scripts/dev-app.sh [NAME]), in another terminal while make dev runs: an
# app on the pro plan whose Twilio, FCM and APNs are make dev's local stand-ins. Prints
# retarget-admin's JSON {"app_id","api_key","push_webhook_secret","plan"} on stdout, so
# `APP=$(make dev-app)` keeps it. The name is $1, else APP_NAME, else "Dev App". The service
# account (its token_uri the stand-ins') and the APNs key it registers are written to
# .local/dev-app/ by retarget-standin app-flags, the same credentials make run's demo uses.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

ENV_FILE="${STACK_ENV_FILE:-$ROOT/.local/stack.env}"
[[ -s "$ENV_FILE" ]] ||
  die "no ${ENV_FILE#"$ROOT"/}: start make dev first (in another terminal) and wait until its API is up"
# shellcheck source=/dev/null
. "$ENV_FILE"
[[ -n "${STANDIN_URL:-}" ]] || die "${ENV_FILE#"$ROOT"/} names no STANDIN_URL: restart make dev"
curl --noproxy '*' -fsS -o /dev/null --max-time 2 "$STANDIN_URL/received" ||
  die "the provider stand-ins do not answer on $STANDIN_URL: is make dev still running?"

flags=$(cargo run -q -p retarget-standin -- app-flags --standin-url "$STANDIN_URL" --dir .local/dev-app)
mapfile -t flags <<<"$flags"
cargo run -q -p retarget-admin -- app create --name "${1:-${APP_NAME:-Dev App}}" --plan pro "${flags[@]}"
log "its Twilio, FCM and APNs are the stand-ins; what they receive: curl -s $STANDIN_URL/received"

#!/usr/bin/env bash
# The dashboard's tests (make test's last step; docs/dashboard.md): the API types generated from
# docs/openapi.yaml are current, the type check, Vitest, the production build (its gzip size
# reported), then the end-to-end run in headless Chromium (dashboard/e2e/run.mjs) against the
# local stack exactly as make dev starts it (scripts/dev.sh, on a free port, with a 1-second
# scheduler tick, its own services and env file so that it runs next to a make dev), with an
# app made by make dev-app. Everything it started is stopped at the end.
# Installs what it needs: Debian's chromium when /usr/bin/chromium is missing, the npm packages
# of dashboard/package-lock.json (npm ci) when node_modules is missing or older than the lock.
# DASHBOARD_SCREENSHOTS=docs/dashboard writes the README's screenshots (default: .local/).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 # playwright-core drives Debian's chromium; never download one
STACK_ENV="$ROOT/.local/dashboard-test-stack.env"
DEV_LOG="$ROOT/.local/dashboard-test-dev.log"
SHOTS="$ROOT/${DASHBOARD_SCREENSHOTS:-.local/dashboard-screenshots}"
READY_TIMEOUT="${DEV_READY_TIMEOUT:-300}"
DEV_PID=""

command -v node >/dev/null && command -v npm >/dev/null || die "Node 20 and npm are needed (dashboard/)"
if [[ ! -x /usr/bin/chromium ]]; then
  log "installing Debian's chromium"
  run_as_root apt-get update -qq
  run_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

cd dashboard
if [[ ! -e node_modules/.package-lock.json || package-lock.json -nt node_modules/.package-lock.json ]]; then
  log "npm ci (dashboard/package-lock.json)"
  npm ci --no-audit --no-fund
fi
npm run --silent check:api
log "type check, unit tests (Vitest), build"
npm run --silent typecheck
npx vitest run
npx vite build --logLevel warn
js=$(cat dist/assets/*.js | wc -c)
js_gz=$(cat dist/assets/*.js | gzip -9 | wc -c)
css_gz=$(cat dist/assets/*.css | gzip -9 | wc -c)
html_gz=$(gzip -9 <dist/index.html | wc -c)
log "bundle: JS $js bytes, gzip: JS $js_gz + CSS $css_gz + HTML $html_gz = $((js_gz + css_gz + html_gz)) bytes"
cd "$ROOT"

# shellcheck disable=SC2317 # only called from the EXIT trap
cleanup() {
  local rc=$?
  if [[ -n "$DEV_PID" ]]; then
    stop_group "$DEV_PID" 60 # make dev's own cleanup stops the stand-ins and the services
  fi
  ((rc == 0)) || { log "make dev's log, last lines:"; tail -n 40 "$DEV_LOG" >&2 || true; }
  exit "$rc"
}
trap cleanup EXIT

mkdir -p .local
rm -f "$STACK_ENV"
API_PORT="$(free_port)"
log "starting make dev (scripts/dev.sh) on 127.0.0.1:$API_PORT (log: ${DEV_LOG#"$ROOT"/})"
spawn env API_PORT="$API_PORT" SCHEDULE_TICK_SECONDS=1 DEV_SERVICES_DIR=.local/dashboard-test-services \
  DEV_STACK_ENV_FILE="$STACK_ENV" bash scripts/dev.sh </dev/null >"$DEV_LOG" 2>&1
DEV_PID=$SPAWNED_PID
deadline=$((SECONDS + READY_TIMEOUT))
until [[ -s "$STACK_ENV" ]] &&
  curl --noproxy '*' -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$API_PORT/dev/clock" 2>/dev/null; do
  proc_alive "$DEV_PID" || die "make dev exited during startup"
  ((SECONDS < deadline)) || die "make dev not ready after ${READY_TIMEOUT}s"
  sleep 0.5
done
grep -q "dashboard on http://127.0.0.1:$API_PORT/dashboard" "$DEV_LOG" ||
  { sleep 1; grep -q "dashboard on http://127.0.0.1:$API_PORT/dashboard" "$DEV_LOG"; } ||
  die "make dev did not print the dashboard's URL"

app=$(STACK_ENV_FILE="$STACK_ENV" bash scripts/dev-app.sh "Dashboard e2e" </dev/null)
key=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["api_key"])' <<<"$app")

log "end to end in headless Chromium (screenshots: ${SHOTS#"$ROOT"/})"
started=$SECONDS
(cd dashboard && API_URL="http://127.0.0.1:$API_PORT" API_KEY="$key" SHOTS="$SHOTS" timeout 300 node e2e/run.mjs)
log "e2e passed in $((SECONDS - started)) s"

#!/usr/bin/env bash
# Runs the tests in two tiers:
#   1. the fast tier: every crate's unit and handler-level tests that need no AWS stand-in
#      (cargo test --workspace --exclude retarget-tests), run with no endpoint configured;
#   2. the integration tier (the retarget-tests crate) against a private DynamoDB Local + moto,
#      then the dashboard's tests (scripts/dashboard-test.sh: Vitest, and the end-to-end run in
#      headless Chromium against a stack started as make dev starts it).
# TEST_TIER=fast runs the first only (make test-fast). Extra arguments replace both tiers with one
# cargo test against the services, e.g. scripts/test.sh -p retarget-shared -- --nocapture.
# Its own SERVICES_DIR lets it run next to make dev / make run.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

export SERVICES_DIR=.local/test-services

# Every cargo test's output also goes to $TALLY; the script ends with the total of its
# "test result:" lines (how many tests ran, passed, failed), so a run that executed no test shows.
mkdir -p .local
TALLY=.local/test-tally.log
: >"$TALLY"
# tallied CMD...: run_fg CMD, its output shown and kept in $TALLY.
tallied() {
  run_fg bash -o pipefail -c '"$@" 2>&1 | tee -a "$0"' "$TALLY" "$@"
}
# tally: print the total of $TALLY's "test result:" lines; false if there is none.
tally() {
  awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^(passed|failed|ignored)/) t[$(i+1)] += $i }; n++ }
       END { printf "test: %d test targets ran: %d passed, %d failed, %d ignored\n", n, t["passed;"], t["failed;"], t["ignored;"] }' "$TALLY" >&2
  grep -q '^test result:' "$TALLY" && return 0
  log "error: no test ran"
  return 1
}
# finish: the EXIT trap of the integration tier: the tally (no test ran is a failure), then the
# services stopped, keeping the exit status.
# shellcheck disable=SC2317 # only called from the EXIT trap
finish() {
  local rc=$?
  tally || ((rc != 0)) || rc=1
  bash scripts/services.sh stop || true
  exit "$rc"
}

if (($# == 0)); then
  log "fast tier: cargo test --workspace --all-targets --exclude retarget-tests (no AWS stand-ins)"
  started=$SECONDS
  tallied env -u AWS_ENDPOINT_URL -u AWS_ENDPOINT_URL_DYNAMODB -u AWS_ENDPOINT_URL_SQS \
    -u AWS_ENDPOINT_URL_EVENTBRIDGE cargo test --workspace --all-targets --exclude retarget-tests
  if ((FG_STATUS != 0)); then
    tally || true
    exit "$FG_STATUS"
  fi
  log "fast tier passed in $((SECONDS - started)) s"
  if [[ ${TEST_TIER:-all} == fast ]]; then
    tally
    exit
  fi
fi

trap finish EXIT

bash scripts/services.sh install

if (($# == 0)); then
  # DynamoDB Local slows down as the streams of its tables pile up records (a put to a
  # stream-enabled table: 3-6 ms on a fresh instance, about 100 ms after a whole tier), so each
  # test binary gets fresh stand-ins; a restart costs a few seconds.
  log "integration tier: cargo test -p retarget-tests, one test binary at a time on fresh stand-ins"
  run_fg cargo test -p retarget-tests --all-targets --no-run
  ((FG_STATUS == 0)) || exit "$FG_STATUS"
  targets=(--lib)
  for file in tests/tests/*.rs; do
    name=$(basename "$file" .rs)
    targets+=("--test=$name")
  done
  status=0
  for target in "${targets[@]}"; do
    bash scripts/services.sh stop >/dev/null 2>&1 || true
    bash scripts/services.sh start
    # shellcheck source=/dev/null
    . "$SERVICES_DIR/services.env"
    started=$SECONDS
    tallied cargo test -p retarget-tests "$target"
    log "$target: exit $FG_STATUS in $((SECONDS - started)) s"
    ((FG_SIGNALLED == 0)) || exit "$FG_STATUS"
    ((FG_STATUS == 0)) || status=$FG_STATUS
  done
  # Last, the dashboard in a real browser against make dev's stack (its own services).
  bash scripts/services.sh stop >/dev/null 2>&1 || true
  log "dashboard: Vitest, then the end-to-end run in headless Chromium (scripts/dashboard-test.sh)"
  started=$SECONDS
  run_fg bash scripts/dashboard-test.sh
  log "dashboard: exit $FG_STATUS in $((SECONDS - started)) s"
  ((FG_SIGNALLED == 0)) || exit "$FG_STATUS"
  ((FG_STATUS == 0)) || status=$FG_STATUS
  exit "$status"
fi

bash scripts/services.sh start
# shellcheck source=/dev/null
. "$SERVICES_DIR/services.env"

log "cargo test --workspace --all-targets $*"
tallied cargo test --workspace --all-targets "$@"
exit "$FG_STATUS"

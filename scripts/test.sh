#!/usr/bin/env bash
# Runs every test of the workspace against a private DynamoDB Local + moto server.
# Extra arguments go to cargo test, e.g. scripts/test.sh -p retarget-shared -- --nocapture
# Its own SERVICES_DIR lets it run next to make dev / make run.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

export SERVICES_DIR=.local/test-services

trap stop_services_on_exit EXIT

bash scripts/services.sh install
bash scripts/services.sh start
# shellcheck source=/dev/null
. "$SERVICES_DIR/services.env"

log "cargo test --workspace --all-targets $*"
run_fg cargo test --workspace --all-targets "$@"
exit "$FG_STATUS"

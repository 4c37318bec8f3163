#!/usr/bin/env bash
# Issue 13's before/after ingest figures (docs/benchmarks.md, "Exact ingest: before and after"):
# the bench of the code before (e09dc37, with docs/bench/issue13-before.patch: the --writers mode
# and the hottest-item counts, nothing else) and of this checkout, release builds, each run on
# fresh DynamoDB Local + moto, one after the other:
#   1 writer, 20k events (with the naive UpdateItem-per-event baseline), then
#   16 concurrent writers, 100k events of one message.
# Output: one JSON line per run (with "label") in $OUT (default .local/bench/issue13.jsonl).
# Builds in a git worktree under .local/before and its own target dir (a cold release build of
# the bench takes 5-10 minutes here).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

BEFORE_REV=${BEFORE_REV:-e09dc37}
OUT=${OUT:-.local/bench/issue13.jsonl}
export SERVICES_DIR=.local/bench-issue13
mkdir -p "$(dirname "$OUT")"
: >"$OUT"

WORKTREE=.local/before
if [[ ! -d $WORKTREE ]]; then
  git worktree add --detach "$WORKTREE" "$BEFORE_REV"
  git -C "$WORKTREE" apply "$ROOT/docs/bench/issue13-before.patch"
fi
log "building the bench before ($BEFORE_REV) and now (release)"
(cd "$WORKTREE" && CARGO_TARGET_DIR="$ROOT/.local/target-before" cargo build --release -p retarget-bench)
cargo build --release -p retarget-bench
BEFORE="$ROOT/.local/target-before/release/retarget-bench"
AFTER="$ROOT/target/release/retarget-bench"

trap stop_services_on_exit EXIT
bash scripts/services.sh install
run() { # label binary args...
  local label=$1 bin=$2 line
  shift 2
  bash scripts/services.sh stop >/dev/null 2>&1 || true
  bash scripts/services.sh start
  # shellcheck source=/dev/null
  . "$SERVICES_DIR/services.env"
  log "$label: $*"
  line=$(TABLE_NAME=bench-issue13 "$bin" "$@") || die "$label failed"
  python3 -c 'import json, sys; d = json.loads(sys.argv[1]); d["label"] = sys.argv[2]; print(json.dumps(d))' \
    "$line" "$label" | tee -a "$OUT"
}
run before-1 "$BEFORE" ingest --events 20000
run after-1 "$AFTER" ingest --events 20000
run before-16 "$BEFORE" ingest --events 100000 --writers 16 --naive-concurrency 0
run after-16 "$AFTER" ingest --events 100000 --writers 16 --naive-concurrency 0
log "figures in $OUT"

#!/usr/bin/env bash
# Coverage-guided fuzzing of the request parsers with cargo-fuzz (libFuzzer).
#
#   scripts/fuzz.sh [--seconds N] [--build-only] [--dev] [target...]
#
# Installs what is missing (idempotent, no prompts): a C++ compiler for libFuzzer (apt-get) and
# cargo-fuzz into .local/cargo-fuzz. Builds every target in fuzz/ (its own crate, own target dir
# fuzz/target), runs each given target (default: all) for N seconds (default 60) starting from the
# committed seeds in fuzz/corpus/<target>/ (new inputs go to the git-ignored fuzz/target/corpus/),
# and prints one summary line per target. Exits non-zero if any target crashed (a panic, an
# assertion of the harness, a timeout or out-of-memory); the input is in fuzz/artifacts/<target>/.
#
# cargo-fuzz needs nightly flags (-Zsanitizer, -Cpasses): stable rustc takes them with
# RUSTC_BOOTSTRAP=1. The sanitizer is off by default (safe Rust; FUZZ_SANITIZER=address turns ASan
# on) and debug assertions are on, so an integer overflow panics as it would in a debug build.
# --dev builds without optimizations (a fraction of the release build's time, several times fewer
# executions a second): what CI uses, where the run proves the targets build and hold for a few
# seconds; real fuzzing (docs/reliability.md) uses the default release build.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
trap - INT TERM HUP # keep bash's default signal handling (see lib.sh)

CARGO_FUZZ_VERSION="0.13.2"
CARGO_FUZZ_ROOT="$ROOT/.local/cargo-fuzz"
CARGO_FUZZ="$CARGO_FUZZ_ROOT/bin/cargo-fuzz"
FUZZ_DIR="$ROOT/fuzz"
SANITIZER="${FUZZ_SANITIZER:-none}"

seconds=60
build_only=false
dev=false
targets=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --seconds) [[ $# -ge 2 && "$2" =~ ^[0-9]+$ ]] || die "--seconds needs a number"; seconds="$2"; shift 2 ;;
        --seconds=*) seconds="${1#--seconds=}"; [[ "$seconds" =~ ^[0-9]+$ ]] || die "--seconds needs a number"; shift ;;
        --build-only) build_only=true; shift ;;
        --dev) dev=true; shift ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        -*) die "unknown option $1" ;;
        *) targets+=("$1"); shift ;;
    esac
done

# --- install -------------------------------------------------------------------------------------
if ! command -v c++ >/dev/null 2>&1; then
    log "installing a C++ compiler for libFuzzer (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q g++ >/dev/null
fi
if ! [[ -x "$CARGO_FUZZ" ]] || ! "$CARGO_FUZZ" --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    log "installing cargo-fuzz $CARGO_FUZZ_VERSION into .local/cargo-fuzz"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --root "$CARGO_FUZZ_ROOT" --quiet
fi
export PATH="$CARGO_FUZZ_ROOT/bin:$PATH"
export RUSTC_BOOTSTRAP=1

cd "$ROOT"
all_targets=()
while IFS= read -r t; do all_targets+=("$t"); done < <(cargo fuzz list --fuzz-dir "$FUZZ_DIR")
[[ ${#all_targets[@]} -gt 0 ]] || die "no fuzz targets found in fuzz/"
if [[ ${#targets[@]} -eq 0 ]]; then
    targets=("${all_targets[@]}")
fi
for t in "${targets[@]}"; do
    printf '%s\n' "${all_targets[@]}" | grep -qx "$t" || die "unknown target $t (have: ${all_targets[*]})"
done

# --- build ---------------------------------------------------------------------------------------
if $dev; then
    fuzz_flags=(--fuzz-dir "$FUZZ_DIR" --dev --sanitizer "$SANITIZER")
else
    fuzz_flags=(--fuzz-dir "$FUZZ_DIR" --release --debug-assertions --sanitizer "$SANITIZER")
fi
build_kind=release
$dev && build_kind=dev
log "building ${#all_targets[@]} targets (sanitizer: $SANITIZER, $build_kind build)"
build_start=$SECONDS
cargo fuzz build "${fuzz_flags[@]}"
log "built in $((SECONDS - build_start)) s"
$build_only && exit 0

# --- run -----------------------------------------------------------------------------------------
logs="$FUZZ_DIR/target/logs"
mkdir -p "$logs"
summary=()
failed=0
for t in "${targets[@]}"; do
    work="$FUZZ_DIR/target/corpus/$t"
    artifacts="$FUZZ_DIR/artifacts/$t"
    mkdir -p "$work" "$artifacts" "$FUZZ_DIR/corpus/$t"
    before=$(find "$artifacts" -type f | sort)
    log "running $t for ${seconds} s"
    status=0
    # The first corpus dir receives new inputs (git-ignored); the committed seeds are read only.
    cargo fuzz run "${fuzz_flags[@]}" "$t" "$work" "$FUZZ_DIR/corpus/$t" -- \
        -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
        >"$logs/$t.log" 2>&1 || status=$?
    new_artifacts=$(comm -13 <(printf '%s\n' "$before") <(find "$artifacts" -type f | sort) | sed '/^$/d')
    crashes=$(printf '%s' "$new_artifacts" | grep -c . || true)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$t.log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$logs/$t.log" | tail -1)
    corpus=$(find "$work" -type f | wc -l)
    if [[ $status -ne 0 && $crashes -eq 0 ]]; then
        crashes=1 # died without an artifact (e.g. a build or harness error): count it
    fi
    line=$(printf '%-18s executions=%-10s exec/s=%-7s corpus=%-5s crashes=%s' \
        "$t" "${execs:-?}" "${rate:-?}" "$corpus" "$crashes")
    summary+=("$line")
    if [[ $crashes -ne 0 ]]; then
        failed=1
        log "$t crashed (exit $status); from $logs/$t.log:"
        grep -v -e '^ *[0-9]*: ' -e '^ *at ' "$logs/$t.log" | grep -A 12 -m 1 -e 'panicked at' -e 'ERROR: libFuzzer' >&2 || tail -n 30 "$logs/$t.log" >&2
        if [[ -n "$new_artifacts" ]]; then log "input(s): $new_artifacts"; fi
    fi
done

echo "fuzz summary (${seconds} s per target):"
for line in "${summary[@]}"; do echo "  $line"; done
exit $failed

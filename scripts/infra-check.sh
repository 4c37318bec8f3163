#!/usr/bin/env bash
# Checks the deployable bundle, offline once the tools are installed:
#   1. installs cargo-lambda, zig, the AWS SAM CLI and cfn-lint into .local/venv (one venv:
#      cargo-lambda finds zig through the first python3 on PATH); skipped when present;
#   2. cfn-lint infra/template.yaml, then sam validate --lint;
#   3. checks that every crate under functions/ is a function of the template and vice versa;
#   4. cargo lambda build --release --arm64 of every function package, one at a time (as sam build),
#      zipped under target/lambda/<package>/bootstrap.zip;
#   5. prints every function's binary and zip size.
# Exits non-zero on the first failure. Usage: bash scripts/infra-check.sh
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
trap - INT TERM HUP # keep bash's default signal handling (see lib.sh)
cd "$ROOT"
LOCAL="$ROOT/.local"
VENV="$LOCAL/venv"
TEMPLATE="infra/template.yaml"
TARGET_TRIPLE="aarch64-unknown-linux-gnu"
LAMBDA_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/lambda"

STARTED=$SECONDS
STEP_STARTED=$SECONDS
step() { STEP_STARTED=$SECONDS; log "== $*"; }
done_step() { log "   done in $((SECONDS - STEP_STARTED))s"; }
on_exit() {
  local rc=$?
  ((rc == 0)) || log "FAILED (exit $rc) after $((SECONDS - STARTED))s"
}
trap on_exit EXIT

# --- 1. tools ---------------------------------------------------------------------------
# pip package -> how to tell it is installed.
tool_present() {
  case "$1" in
    cargo-lambda) [[ -x "$VENV/bin/cargo-lambda" ]] ;;
    ziglang) "$VENV/bin/python" -c 'import ziglang' 2>/dev/null ;;
    aws-sam-cli) [[ -x "$VENV/bin/sam" ]] ;;
    cfn-lint) [[ -x "$VENV/bin/cfn-lint" ]] ;;
  esac
}

install_tools() {
  mkdir -p "$LOCAL"
  # The same lock scripts/services.sh takes: one pip at a time in the shared venv.
  exec 9>"$LOCAL/install.lock"
  flock 9
  ensure_venv "$VENV"
  local missing=() pkg
  for pkg in cargo-lambda ziglang aws-sam-cli cfn-lint; do
    tool_present "$pkg" || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    log "installing ${missing[*]} into .local/venv"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${missing[@]}" >&2
    for pkg in "${missing[@]}"; do
      tool_present "$pkg" || die "$pkg is still missing after pip install"
    done
  else
    log "cargo-lambda, ziglang, aws-sam-cli and cfn-lint already installed"
  fi
  flock -u 9
  exec 9>&-

  if ! rustup target list --installed 2>/dev/null | grep -qx "$TARGET_TRIPLE"; then
    log "adding the Rust target $TARGET_TRIPLE"
    rustup target add "$TARGET_TRIPLE" >&2
  fi
}

step "tools"
install_tools
export PATH="$VENV/bin:$PATH"
export SAM_CLI_TELEMETRY=0
log "   $(cargo lambda --version 2>&1 | head -n1); zig $(python3 -m ziglang version 2>&1);" \
  "$(sam --version 2>&1); $(cfn-lint --version 2>&1)"
done_step

# --- 2. template checks -------------------------------------------------------------------
step "cfn-lint $TEMPLATE"
cfn-lint "$TEMPLATE"
done_step

step "sam validate --lint"
sam validate --lint --region us-east-1 -t "$TEMPLATE"
done_step

# --- 3. function packages = template functions ---------------------------------------------
step "function packages"
packages=()
for manifest in functions/*/Cargo.toml; do
  name=$(sed -n 's/^name *= *"\([^"]*\)".*/\1/p' "$manifest" | head -n1)
  [[ -n "$name" ]] || die "$manifest has no package name"
  packages+=("$name")
done
((${#packages[@]})) || die "no crates under functions/"
mapfile -t binaries < <(sed -n 's/^ *Binary: *\([^ #]*\).*/\1/p' "$TEMPLATE" | sort)
mapfile -t sorted_packages < <(printf '%s\n' "${packages[@]}" | sort)
if [[ "${binaries[*]}" != "${sorted_packages[*]}" ]]; then
  die "the template's function binaries (${binaries[*]}) differ from the crates under functions/ (${sorted_packages[*]})"
fi
log "   ${#packages[@]} functions: ${packages[*]}"
done_step

# --- 4. build ---------------------------------------------------------------------------------
# One package at a time, as `sam build` builds each function: cargo unifies the features of the
# packages it builds together, and each function must link only the clients it enables.
step "cargo lambda build --release --arm64 (${#packages[@]} packages, one at a time)"
for name in "${packages[@]}"; do
  cargo lambda build --release --arm64 --output-format zip -p "$name"
done
BUILD_SECONDS=$((SECONDS - STEP_STARTED))
done_step

# --- 5. sizes ---------------------------------------------------------------------------------
size_of() { stat -c %s "$1"; }
human() { numfmt --to=iec-i --suffix=B --format='%.1f' "$1"; }
printf '\n%-24s %12s %12s\n' "function" "bootstrap" "zip"
total_zip=0
for name in "${packages[@]}"; do
  dir="$LAMBDA_DIR/$name"
  [[ -f "$dir/bootstrap.zip" ]] || die "$dir/bootstrap.zip was not produced"
  zip_size=$(size_of "$dir/bootstrap.zip")
  # The zip holds the binary; unzip -l tells its size even when no bootstrap was left beside it.
  if [[ -f "$dir/bootstrap" ]]; then
    bin_size=$(size_of "$dir/bootstrap")
  else
    bin_size=$(python3 -c 'import sys, zipfile; print(zipfile.ZipFile(sys.argv[1]).getinfo("bootstrap").file_size)' "$dir/bootstrap.zip")
  fi
  total_zip=$((total_zip + zip_size))
  printf '%-24s %12s %12s\n' "$name" "$(human "$bin_size")" "$(human "$zip_size")"
done
printf '%-24s %12s %12s\n\n' "total" "" "$(human "$total_zip")"
log "all checks passed in $((SECONDS - STARTED))s (build ${BUILD_SECONDS}s)"

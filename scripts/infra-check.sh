#!/usr/bin/env bash
# Checks the deployable bundle, offline once the tools are installed:
#   1. installs cargo-lambda, zig, the AWS SAM CLI and cfn-lint into .local/venv (one venv:
#      cargo-lambda finds zig through the first python3 on PATH); skipped when present;
#   2. cfn-lint infra/template.yaml, sam validate --lint, and a deploy rehearsal on SAM's own
#      transform of the template, the stack created in moto's CloudFormation
#      (scripts/deploy-rehearsal.py; its own DynamoDB Local + moto in .local/infra-services);
#   3. checks that every crate under functions/ is a function of the template and vice versa;
#   4. `sam build`, exactly the README's command (samconfig.toml: BuildMethod rust-cargolambda,
#      a SAM beta feature turned on there, so it asks nothing): every function built by
#      cargo-lambda for arm64 into .aws-sam/build/<LogicalId>/bootstrap, and the built template;
#   5. prints every function's binary and zipped size (what Lambda is given).
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

STARTED=$SECONDS
STEP_STARTED=$SECONDS
step() { STEP_STARTED=$SECONDS; log "== $*"; }
done_step() { log "   done in $((SECONDS - STEP_STARTED))s"; }
STARTED_SERVICES=0
on_exit() {
  local rc=$?
  ((STARTED_SERVICES == 0)) || bash scripts/services.sh stop || true
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

step "deploy rehearsal: SAM's transform; references, defaults, routes, roles; the stack in moto's CloudFormation"
export SERVICES_DIR=.local/infra-services
bash scripts/services.sh install
bash scripts/services.sh start
STARTED_SERVICES=1
# shellcheck source=/dev/null
. "$SERVICES_DIR/services.env"
python3 scripts/deploy-rehearsal.py --moto "$AWS_ENDPOINT_URL_SQS" "$TEMPLATE"
bash scripts/services.sh stop
STARTED_SERVICES=0
done_step

# --- 3. function packages = template functions ---------------------------------------------
step "function packages"
# Each crate's own binary (its package name) and any [[bin]] it declares (the audiences crate
# builds two functions).
packages=()
for manifest in functions/*/Cargo.toml; do
  mapfile -t names < <(awk '/^\[/ { section = $0; next }
    (section == "[package]" || section == "[[bin]]") && $1 == "name" {
      sub(/^[^"]*"/, ""); sub(/".*$/, ""); print }' "$manifest" | sort -u)
  ((${#names[@]})) || die "$manifest has no package name"
  packages+=("${names[@]}")
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
# The README's command, from the repository root, with nothing on stdin: a question would abort.
step "sam build (${#packages[@]} functions)"
rm -rf .aws-sam/build
sam build </dev/null
BUILD_SECONDS=$((SECONDS - STEP_STARTED))
[[ -f .aws-sam/build/template.yaml ]] || die "sam build wrote no .aws-sam/build/template.yaml"
done_step

# --- 5. sizes ---------------------------------------------------------------------------------
# Each function's bootstrap as sam build left it, and its size zipped (deflate), as `sam deploy`
# uploads it.
mapfile -t functions < <(sed -n 's/^  \([A-Z][A-Za-z]*Function\):$/\1/p' "$TEMPLATE")
((${#functions[@]} == ${#packages[@]})) || die "${#functions[@]} template functions for ${#packages[@]} packages"
python3 - "${functions[@]}" <<'PY'
import io, os, sys, zipfile
def human(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f}{unit}" if unit != "B" else f"{n}B"
        n /= 1024
print(f"\n{'function':<24} {'bootstrap':>12} {'zip':>12}")
total = 0
for name in sys.argv[1:]:
    path = os.path.join(".aws-sam", "build", name, "bootstrap")
    if not os.path.isfile(path):
        sys.exit(f"{path} was not built")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(path, "bootstrap")
    size, zipped = os.path.getsize(path), len(buf.getvalue())
    total += zipped
    print(f"{name:<24} {human(size):>12} {human(zipped):>12}")
print(f"{'total':<24} {'':>12} {human(total):>12}\n")
PY
log "all checks passed in $((SECONDS - STARTED))s (build ${BUILD_SECONDS}s)"

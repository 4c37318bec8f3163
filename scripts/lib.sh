# shellcheck shell=bash
# Helpers shared by the scripts in scripts/ (sourced, not run). It defines ROOT, log and die
# (prefixed with the script's name) and changes neither the directory nor the shell options.
# Sourcing it installs INT/TERM/HUP traps: while a command started with run_fg is running the
# signal is forwarded to it; otherwise the script exits (130/143/129) and its EXIT trap cleans up.
# A script that keeps bash's default signal handling (services.sh, infra-check.sh, fuzz.sh)
# undoes them with `trap - INT TERM HUP` before it starts any work.

# shellcheck disable=SC2034 # used by the scripts that source this file
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOG_NAME="$(basename "$0" .sh)"

log() { printf '%s: %s\n' "$LOG_NAME" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# stack_files NAME: a script's own services and local-stack files, so that it can run next to
# the others: SERVICES_DIR=.local/NAME-services and STACK_ENV_FILE=$ROOT/.local/NAME-stack.env
# (both exported: services.sh and retarget-local read them), STACK_LOG=$ROOT/.local/NAME-stack.log.
# shellcheck disable=SC2034 # STACK_LOG is used by the caller
stack_files() {
  export SERVICES_DIR=".local/$1-services"
  export STACK_ENV_FILE="$ROOT/.local/$1-stack.env"
  STACK_LOG="$ROOT/.local/$1-stack.log"
}

run_as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

# ensure_venv DIR: a Python venv in DIR unless DIR/bin/python is already there.
ensure_venv() {
  local venv=$1
  [[ ! -x "$venv/bin/python" ]] || return 0
  log "creating Python venv ${venv#"$ROOT"/}"
  rm -rf "$venv"
  if ! python3 -m venv "$venv" >&2; then
    # Debian's system python3 ships venv/ensurepip separately.
    log "python3 -m venv failed: installing python3-venv"
    rm -rf "$venv"
    run_as_root apt-get update -qq
    run_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$venv" >&2
  fi
}

# A free TCP port (bound on all interfaces, so it is free on 127.0.0.1 too).
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])'
}

# True while pid $1 exists and is not a zombie.
proc_alive() {
  local line
  read -r line 2>/dev/null <"/proc/$1/stat" || return 1
  line=${line##*) }
  [[ "${line:0:1}" != Z ]]
}

# spawn CMD...: start CMD in the background in its own session, so its pid is also its
# process-group id (children included when we signal it) and a terminal Ctrl-C reaches only
# us, not it. bash ignores SIGINT/SIGQUIT in background jobs: env puts them back to default.
# Sets SPAWNED_PID. (setsid does not fork here: a background job is never a group leader.)
spawn() {
  setsid env --default-signal=INT,QUIT "$@" &
  SPAWNED_PID=$!
}

# wait_gone ALIVE PID TIMEOUT: wait up to TIMEOUT s while `ALIVE PID` is true (polled every
# 0.1 s); false if it still is.
wait_gone() {
  local alive=$1 pid=$2 timeout=$3 i
  for ((i = 0; i < timeout * 10; i++)); do
    "$alive" "$pid" || return 0
    sleep 0.1
  done
  ! "$alive" "$pid"
}

# term_group PID TIMEOUT ALIVE MESSAGE: SIGTERM process group PID and wait_gone ALIVE PID
# TIMEOUT; if it is still alive, log "MESSAGE: sending SIGKILL", SIGKILL the group and return 1.
term_group() {
  local pid=$1 timeout=$2 alive=$3 message=$4
  kill -TERM -- "-$pid" 2>/dev/null || true
  wait_gone "$alive" "$pid" "$timeout" && return 0
  log "$message: sending SIGKILL"
  kill -KILL -- "-$pid" 2>/dev/null || true
  return 1
}

# stop_group PID [TIMEOUT]: SIGTERM the process group, SIGKILL it after TIMEOUT s (default 15).
stop_group() {
  local pid=$1 timeout=${2:-15}
  [[ "$pid" =~ ^[0-9]+$ && "$pid" -gt 1 ]] || return 0
  if proc_alive "$pid"; then
    term_group "$pid" "$timeout" proc_alive "pid $pid still running after ${timeout}s" || true
  fi
  wait "$pid" 2>/dev/null || true # reap it (and return at once if it is not our child)
}

# stop_services_on_exit: an EXIT trap that stops the services of $SERVICES_DIR
# (scripts/services.sh stop) and keeps the script's exit status.
# shellcheck disable=SC2317 # only called from the EXIT trap
stop_services_on_exit() {
  local rc=$?
  bash "$ROOT/scripts/services.sh" stop || true
  exit "$rc"
}

FG_PID=""
FG_SIGNALLED=0

_on_signal() {
  local sig=$1 code=$2
  if [[ -n "$FG_PID" ]]; then
    FG_SIGNALLED=1
    log "got SIG$sig: passing it on"
    kill -s "$sig" -- "-$FG_PID" 2>/dev/null || true
  else
    exit "$code"
  fi
}
trap '_on_signal INT 130' INT
trap '_on_signal TERM 143' TERM
trap '_on_signal HUP 129' HUP

# run_fg CMD...: run CMD like a foreground command, but in its own process group so that
# INT/TERM/HUP sent to this script are forwarded to it (bash would otherwise hold a trap until
# the command ends). Sets FG_STATUS to CMD's exit status; returns 0.
# shellcheck disable=SC2034 # FG_STATUS is read by the caller
run_fg() {
  spawn "$@"
  FG_PID=$SPAWNED_PID
  while :; do
    FG_SIGNALLED=0
    FG_STATUS=0
    wait "$FG_PID" || FG_STATUS=$?
    # wait returns early when a trap ran; then wait again for the real exit status.
    ((FG_SIGNALLED)) || break
  done
  FG_PID=""
}

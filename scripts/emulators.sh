#!/usr/bin/env bash
# Runs the AWS emulators the integration tests talk to:
#   LocalStack (CloudWatch CBOR, REST API Gateway, Logs, STS; CloudFormation, IAM, S3,
#     Firehose, Secrets Manager for deploy/aws/)             on 127.0.0.1:$LOCALSTACK_PORT
#   moto server (apigatewayv2)                                on 127.0.0.1:$MOTO_PORT
#
# Usage: scripts/emulators.sh start|stop|status|env
#   start   start both in the background (or reuse healthy ones) and wait until healthy
#   stop    stop the ones this script started (whole process groups)
#   status  report each one; exit 0 only when both are healthy
#   env     print `export APIGW_TEST_...=...` lines: eval "$(scripts/emulators.sh env)"
#
# Env: LOCALSTACK_PORT (4566), MOTO_PORT (5055), APIGW_EMULATOR_DIR (/tmp/apigw-emulators:
# logs, pid files, LocalStack's scratch files), APIGW_TOOLS_DIR (as in setup-tools.sh),
# APIGW_EMULATOR_TIMEOUT (120 s to become healthy), LOCALSTACK_GATEWAY_SERVER (hypercorn;
# `twisted` is LocalStack's default but listens on all interfaces).
set -euo pipefail

TOOLS="${APIGW_TOOLS_DIR:-$HOME/.cache/apigateway-exporter-tools}"
EMU_DIR="${APIGW_EMULATOR_DIR:-/tmp/apigw-emulators}"
LOCALSTACK_PORT="${LOCALSTACK_PORT:-4566}"
MOTO_PORT="${MOTO_PORT:-5055}"
TIMEOUT="${APIGW_EMULATOR_TIMEOUT:-120}"
HOST=127.0.0.1
LS_URL="http://$HOST:$LOCALSTACK_PORT"
MOTO_URL="http://$HOST:$MOTO_PORT"

log() { printf '[emulators] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

port_of() { if [ "$1" = localstack ]; then echo "$LOCALSTACK_PORT"; else echo "$MOTO_PORT"; fi; }
pid_file() { echo "$EMU_DIR/$1.pid"; }
log_file() { echo "$EMU_DIR/$1.log"; }

# Health probes: each checks that the port answers *as that emulator*.
healthy() {
  local body
  case $1 in
    localstack)
      body="$(curl -fsS --max-time 3 "$LS_URL/_localstack/health" 2>/dev/null)" || return 1
      # Services listed as "running" (loaded) or "available" (loads on first call).
      [[ $body =~ \"cloudwatch\":\ \"(running|available)\" ]] \
        && [[ $body =~ \"apigateway\":\ \"(running|available)\" ]]
      ;;
    moto)
      body="$(curl -fsS --max-time 3 "$MOTO_URL/moto-api/config" 2>/dev/null)" || return 1
      [[ $body == *'"batch"'* ]]
      ;;
  esac
}

# True when something accepts TCP connections on the port.
port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# PID (= process group = session id, via setsid) recorded by `start`, if still running.
# Zombies don't count: an orphan's parent may be slow to reap it.
live_pid() {
  local f pid states
  f="$(pid_file "$1")"
  [ -f "$f" ] || return 1
  pid="$(cat "$f")"
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  states="$(ps -o stat= -s "$pid" 2>/dev/null || true)"
  awk 'NF && $1 !~ /^Z/ { alive = 1 } END { exit !alive }' <<<"$states" || return 1
  echo "$pid"
}

launch() {
  local name=$1 lf
  lf="$(log_file "$name")"
  : >"$lf"
  case $name in
    localstack)
      # Host mode, loopback only, and nothing that reaches out at startup:
      # OVERRIDE_IN_DOCKER=0 (else it thinks it's in a container and pings Docker bridge
      # IPs), DNS_ADDRESS=0 (no DNS server on :53), SKIP_SSL_CERT_DOWNLOAD=1,
      # DISABLE_EVENTS=1 (no analytics), scratch files kept under $EMU_DIR.
      # hypercorn honours the host in GATEWAY_LISTEN; the default (twisted) binds 0.0.0.0.
      (cd "$EMU_DIR" && exec setsid env \
        GATEWAY_SERVER="${LOCALSTACK_GATEWAY_SERVER:-hypercorn}" \
        GATEWAY_LISTEN="$HOST:$LOCALSTACK_PORT" \
        LOCALSTACK_HOST="$HOST:$LOCALSTACK_PORT" \
        SERVICES=cloudwatch,apigateway,logs,sts,cloudformation,iam,s3,firehose,secretsmanager \
        EAGER_SERVICE_LOADING=1 \
        OVERRIDE_IN_DOCKER=0 \
        DOCKER_BRIDGE_IP=127.0.0.1 \
        DNS_ADDRESS=0 \
        SKIP_SSL_CERT_DOWNLOAD=1 \
        DISABLE_EVENTS=1 \
        DISABLE_CORS_CHECKS=1 \
        PERSISTENCE=0 \
        FILESYSTEM_ROOT="$EMU_DIR/localstack-fs" \
        "$TOOLS/localstack-venv/bin/python" -m localstack.runtime.main) \
        >"$lf" 2>&1 </dev/null &
      ;;
    moto)
      (cd "$EMU_DIR" && exec setsid "$TOOLS/moto-venv/bin/moto_server" \
        -H "$HOST" -p "$MOTO_PORT") >"$lf" 2>&1 </dev/null &
      ;;
  esac
  echo $! >"$(pid_file "$name")"
  log "$name: started pid $! on port $(port_of "$name") (log: $lf)"
}

# Decides per emulator: reuse, keep waiting, launch, or refuse.
# Prints "wait" when start must wait for it to become healthy.
prepare() {
  local name=$1 port pid
  port="$(port_of "$name")"
  if healthy "$name"; then
    if pid="$(live_pid "$name")"; then
      log "$name: already running (pid $pid) on port $port"
    else
      log "$name: reusing the healthy $name already on port $port (not started by this script)"
    fi
    return 0
  fi
  if pid="$(live_pid "$name")"; then
    log "$name: pid $pid is still starting"
    echo wait
    return 0
  fi
  if port_open "$port"; then
    die "port $port is in use by something that is not a healthy $name; stop it or set $([ "$name" = localstack ] && echo LOCALSTACK_PORT || echo MOTO_PORT)"
  fi
  launch "$name"
  echo wait
}

show_tail() {
  local lf
  lf="$(log_file "$1")"
  log "---- last 40 lines of $lf ----"
  tail -n 40 "$lf" >&2 2>/dev/null || true
  log "----"
}

stop_one() {
  local name=$1 pid i
  if ! pid="$(live_pid "$name")"; then
    rm -f "$(pid_file "$name")"
    if healthy "$name"; then
      log "$name: not running under this script, but one answers on port $(port_of "$name") (left alone)"
    else
      log "$name: not running"
    fi
    return 0
  fi
  kill -TERM -- "-$pid" 2>/dev/null || true
  for i in $(seq 1 50); do
    live_pid "$name" >/dev/null || break
    [ "$i" -lt 50 ] || { log "$name: still alive after 10 s, sending SIGKILL"; kill -KILL -- "-$pid" 2>/dev/null || true; }
    sleep 0.2
  done
  sleep 0.2
  if live_pid "$name" >/dev/null; then
    die "$name: process group $pid survived SIGKILL"
  fi
  rm -f "$(pid_file "$name")"
  log "$name: stopped (pid $pid)"
}

cmd_start() {
  if [ ! -x "$TOOLS/localstack-venv/bin/python" ] || [ ! -x "$TOOLS/moto-venv/bin/moto_server" ]; then
    die "tools missing in $TOOLS: run scripts/setup-tools.sh first"
  fi
  command -v setsid >/dev/null || die "setsid (util-linux) is required"
  mkdir -p "$EMU_DIR"
  local t0=$SECONDS pending=() name plux_retried=0 waited what
  for name in localstack moto; do
    what="$(prepare "$name")" || exit 1
    [ "$what" != wait ] || pending+=("$name")
  done
  while [ "${#pending[@]}" -gt 0 ]; do
    local still=()
    for name in "${pending[@]}"; do
      if healthy "$name"; then
        log "$name: healthy after $((SECONDS - t0)) s"
        continue
      fi
      # A stale plux entry-point cache (after a reinstall) leaves LocalStack without
      # plugins: clear it and restart once.
      if [ "$name" = localstack ] && [ "$plux_retried" -eq 0 ] \
        && grep -q 'No component plugins found' "$(log_file localstack)" 2>/dev/null; then
        log "localstack: stale plugin cache; clearing ~/.cache/plux and restarting"
        plux_retried=1
        stop_one localstack
        rm -rf "$HOME/.cache/plux"
        launch localstack
        still+=("$name")
        continue
      fi
      if ! live_pid "$name" >/dev/null; then
        show_tail "$name"
        cmd_stop
        die "$name exited before becoming healthy"
      fi
      still+=("$name")
    done
    pending=("${still[@]+"${still[@]}"}")
    [ "${#pending[@]}" -gt 0 ] || break
    waited=$((SECONDS - t0))
    if [ "$waited" -ge "$TIMEOUT" ]; then
      for name in "${pending[@]}"; do show_tail "$name"; done
      cmd_stop
      die "not healthy after ${TIMEOUT} s: ${pending[*]}"
    fi
    sleep 0.5
  done
  log "ready: LocalStack $LS_URL, moto $MOTO_URL ($((SECONDS - t0)) s)"
}

cmd_stop() {
  stop_one localstack
  stop_one moto
}

cmd_status() {
  local name pid ok=0
  for name in localstack moto; do
    pid="$(live_pid "$name" || echo -)"
    if healthy "$name"; then
      echo "$name: healthy on port $(port_of "$name") (pid $pid)"
    else
      echo "$name: not healthy (pid $pid)"
      ok=1
    fi
  done
  return "$ok"
}

cmd_env() {
  local promtool prometheus
  promtool="$(command -v promtool || echo /usr/bin/promtool)"
  prometheus="$(command -v prometheus || echo /usr/bin/prometheus)"
  printf 'export APIGW_TEST_LOCALSTACK=%q\n' "$LS_URL"
  printf 'export APIGW_TEST_MOTO=%q\n' "$MOTO_URL"
  printf 'export APIGW_TEST_PROMTOOL=%q\n' "$promtool"
  printf 'export APIGW_TEST_PROMETHEUS=%q\n' "$prometheus"
  printf 'export APIGW_TEST_HADOLINT=%q\n' "$TOOLS/lint-venv/bin/hadolint"
  printf 'export APIGW_TEST_KUBERNETES_VALIDATE=%q\n' "$TOOLS/lint-venv/bin/kubernetes-validate"
  printf 'export APIGW_TEST_CFN_LINT=%q\n' "$TOOLS/lint-venv/bin/cfn-lint"
  printf 'export APIGW_TEST_HELM_PYTHON=%q\n' "$TOOLS/lint-venv/bin/python"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  env) cmd_env ;;
  *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac

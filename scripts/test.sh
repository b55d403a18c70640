#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs the tools (Prometheus/promtool,
# LocalStack, moto, linters), starts the emulators, checks formatting and lints, runs every
# test, and stops the emulators again. Tests that need an emulator fail, never skip.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-tools.sh
scripts/emulators.sh start
trap 'scripts/emulators.sh stop' EXIT
eval "$(scripts/emulators.sh env)"

cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked

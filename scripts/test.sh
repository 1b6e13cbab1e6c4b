#!/usr/bin/env bash
# The project's test command (README.md, "Tests"): formatting, lints, then every test.
set -euo pipefail
cd "$(dirname "$0")/.."
# tests/integration/restic_compat.rs compares cista's JSON with a real restic's; install
# Debian's restic when it is missing and we can (root with apt), else that test says it skipped.
if ! command -v restic >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq restic >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -qq restic >/dev/null; } ||
    echo "scripts/test.sh: could not install restic; the restic JSON comparison will be skipped"
fi
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked
cargo test --doc --locked

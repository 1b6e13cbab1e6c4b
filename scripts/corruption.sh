#!/usr/bin/env bash
# The full corruption harness (tests/integration/corruption.rs): TRIALS random changes (a
# flipped byte, a truncation or a deleted file) to copies of a small repository; asserts that
# `check --read-data` reports each one, that restore never writes a wrong byte, and that
# `repair index` recovers every index-only damage. Prints the tally on its last line.
#   scripts/corruption.sh [TRIALS [SEED]]     (default 300 trials, seed 24301)
# CISTA_CORRUPTION_PROFILE=release builds optimised (faster trials, a longer first build).
set -euo pipefail
cd "$(dirname "$0")/.."
export CISTA_CORRUPTION_TRIALS="${1:-300}"
export CISTA_CORRUPTION_SEED="${2:-24301}"
profile=()
[ "${CISTA_CORRUPTION_PROFILE:-debug}" = release ] && profile=(--release)
cargo test "${profile[@]}" --locked --test integration corruption:: -- --nocapture 2>&1 |
  grep -E '^corruption: |panicked|FAILED|^test result' 

#!/usr/bin/env bash
# The full-size crash, concurrency and corruption harnesses of issue 8 (CI runs the same tests
# with small counts inside `cargo test`). Usage:
#   scripts/harness.sh [KILLS] [SECONDS] [CORRUPTIONS]
# defaults: 150 SIGKILLs, 180 s of four concurrent backups beside a prune loop, 300 corruptions.
# Runs the tests one at a time (they start many processes each) with optimised code.
set -euo pipefail
cd "$(dirname "$0")/.."
kills=${1:-150}
seconds=${2:-180}
corruptions=${3:-300}
export CISTA_HARNESS_KILLS=$kills CISTA_HARNESS_SECONDS=$seconds CISTA_CORRUPTION_TRIALS=$corruptions
log=$(mktemp /var/tmp/cista-harness.XXXXXX)
status=0
cargo test --release --locked --test integration -- --test-threads=1 --nocapture \
    prune_harness corruption >"$log" 2>&1 || status=$?
grep -E 'harness|trials|test result|panicked|FAILED|^test ' "$log" || true
echo "full log: $log"
exit "$status"

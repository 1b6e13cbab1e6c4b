#!/usr/bin/env bash
# What each storage service adds to cista: crates in the dependency graph, release build time
# and the size of the release binary (stripped). Builds a local-only cista first
# (`--no-default-features`), then each service alone, then the default set, all in one
# target folder, so every build after the first compiles only what its service adds plus
# OpenDAL, cista and the link (the "incremental" column; the first row is a cold build).
#
# usage: benches/service_cost.sh [TARGET_DIR]   (default: a fresh ${TMPDIR:-/tmp}/cista-service-cost,
#                                                removed first)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
T=${1:-${TMPDIR:-/tmp}/cista-service-cost}
case "$T" in ""|/|"$ROOT"|"$ROOT"/|"$ROOT/target") echo "refusing target $T" >&2; exit 2 ;; esac
rm -rf "$T"
cd "$ROOT"

crates() { # FEATURE-ARGS...: distinct crates cista depends on (normal edges) with these features
  cargo tree -q -e normal --prefix none "$@" | sed 's/ (\*)//' | sort -u | wc -l
}

echo "| services | crates | release build s (incremental) | binary MiB (stripped) |"
echo "|---|---:|---:|---:|"
for set in none s3 gcs azblob sftp webdav default; do
  case $set in
    none) args=(--no-default-features) ;;
    default) args=() ;;
    *) args=(--no-default-features --features "$set") ;;
  esac
  start=$(date +%s.%N)
  CARGO_TARGET_DIR=$T cargo build --release --quiet --bin cista "${args[@]}"
  secs=$(echo "$(date +%s.%N) - $start" | bc)
  strip -o "$T/cista-$set" "$T/release/cista"
  bytes=$(stat -c %s "$T/cista-$set")
  printf '| %s | %d | %.0f | %.1f |\n' "$set" "$(crates "${args[@]}")" "$secs" "$(echo "$bytes / 1048576" | bc -l)"
done

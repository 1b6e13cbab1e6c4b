#!/usr/bin/env bash
# Restore in place (docs/DESIGN.md, "Restore pipeline"): a full restore of the 1.26 GB corpus of
# examples/corpus.rs into an empty folder, against an in-place restore onto a restored copy in
# which 1% of the files were changed (same size, other bytes, new mtime), with
# `--overwrite if-changed` and `--overwrite always`. Medians are read off the three runs each;
# every run is timed with /usr/bin/time. Page cache warm (nothing is dropped).
#
# usage: benches/inplace.sh [SCRATCH [--scale N]]
#   SCRATCH defaults to ${TMPDIR:-/tmp}/cista-inplace and is deleted at the end; --scale divides
#   the corpus (for trying the script).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin cista --example corpus
B=$PWD/target/release/cista
W=${1:-${TMPDIR:-/tmp}/cista-inplace}
shift || true
rm -rf "$W"; mkdir -p "$W"
trap 'rm -rf "$W"' EXIT
export CISTA_REPOSITORY=$W/repo CISTA_PASSWORD=measure
SRC=$W/src
T() { /usr/bin/time -f "%e s elapsed, %U user %S sys, %M KB max RSS" "$@"; }
target/release/examples/corpus night1 "$SRC" "$@"
# A cheap KDF, so opening the repository does not count.
$B init --kdf-params 1024,1,1 >/dev/null
$B backup -q "$SRC"
SPEC="latest:$SRC"
echo "== full restore into an empty folder"
for i in 1 2 3; do
  rm -rf "$W/full"; sync
  T $B restore -q "$SPEC" --target "$W/full"
done
rm -rf "$W/full"
rm -rf "$W/live"; $B restore -q "$SPEC" --target "$W/live"
mapfile -t FILES < <(cd "$W/live" && find . -type f | sort)
N=${#FILES[@]}
STEP=100
echo "files: $N, changing every ${STEP}th: $(( (N + STEP - 1) / STEP ))"
change() {
  for ((k = 0; k < N; k += STEP)); do
    f=$W/live/${FILES[$k]}
    sz=$(stat -c %s "$f")
    printf 'changed-by-the-bad-deploy' | dd of="$f" bs=1 seek=$((sz / 2)) conv=notrunc status=none
  done
  sync
}
for mode in if-changed always; do
  echo "== in place, --overwrite $mode, 1% of the files changed"
  for i in 1 2 3; do
    change
    T $B restore -q "$SPEC" --target "$W/live" --overwrite "$mode"
  done
  diff -r "$SRC" "$W/live" && echo "identical to the source after $mode"
done

#!/usr/bin/env bash
# Off-site copy, cista beside restic in one run, on the nightly corpus of examples/corpus.rs:
# back up night 1 into a source repository, copy it into a second one (initialised to share
# the source's chunker parameters: cista's `init --copy-chunker-params-from`, restic's
# `init --copy-chunker-params`), switch the tree to night 2, back it up, copy again. Reports
# each copy's wall and CPU seconds, peak RSS, the bytes the target grew by, and cista's own
# counts (blobs, bytes and read requests moved, from `copy --json`). Also cista's copy into a
# target that does NOT share keys (re-chunking), which restic cannot do.
#
# usage: benches/copy.sh [--scale N] [--scratch DIR] [--seed S]
#   --scale N    divide the 1.26 GB corpus by N (default 4)
#   --scratch D  where corpus and repositories go (default ${TMPDIR:-/tmp}/cista-copy-bench);
#                its contents are deleted
# Needs restic on PATH. Every figure is from this run; ratios are restic / cista.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCALE=4
SEED=1
SCRATCH=${TMPDIR:-/tmp}/cista-copy-bench
while [ $# -gt 0 ]; do
  case $1 in
    --scale) SCALE=$2; shift ;;
    --seed) SEED=$2; shift ;;
    --scratch) SCRATCH=$2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
case "$SCRATCH" in
  ""|/|/home|/home/|/root|/root/|"$ROOT"|"$ROOT"/) echo "refusing scratch $SCRATCH" >&2; exit 2 ;;
esac

(cd "$ROOT" && cargo build --release --quiet --bin cista --example corpus)
TARGET=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
CISTA=$TARGET/release/cista
GEN=$TARGET/release/examples/corpus
command -v restic >/dev/null || { echo "restic is not on PATH" >&2; exit 2; }

rm -rf "$SCRATCH"
mkdir -p "$SCRATCH"
DATA=$SCRATCH/data
export CISTA_PASSWORD=source-pw CISTA_TO_PASSWORD=target-pw CISTA_FROM_PASSWORD=source-pw
export RESTIC_PASSWORD=source-pw RESTIC_FROM_PASSWORD=source-pw
KDF=(--kdf-params 65536,3,4)

# timed LABEL CMD...: runs CMD, prints "LABEL wall cpu rss_kib" to $SCRATCH/times.
timed() {
  local label=$1; shift
  /usr/bin/time -f "$label %e %U %S %M" -a -o "$SCRATCH/times" "$@"
}
size() { du -sb "$1" | cut -f1; }

"$GEN" night1 "$DATA" --scale "$SCALE" --seed "$SEED" 2>/dev/null
echo "corpus night 1: $(size "$DATA") bytes" >&2

# cista
"$CISTA" -r "$SCRATCH/c-src" init "${KDF[@]}" -q
"$CISTA" -r "$SCRATCH/c-src" backup -q "$DATA"
CISTA_PASSWORD=target-pw "$CISTA" -r "$SCRATCH/c-dst" init "${KDF[@]}" -q --copy-chunker-params-from "$SCRATCH/c-src"
CISTA_PASSWORD=target-pw "$CISTA" -r "$SCRATCH/c-other" init "${KDF[@]}" -q --chunk-sizes 262144,1048576,4194304
# restic
restic -r "$SCRATCH/r-src" init -q
restic -r "$SCRATCH/r-src" backup -q "$DATA"
RESTIC_PASSWORD=target-pw restic -r "$SCRATCH/r-dst" init -q --copy-chunker-params --from-repo "$SCRATCH/r-src"

for night in 1 2; do
  if [ $night = 2 ]; then
    "$GEN" night2 "$DATA" --scale "$SCALE" --seed "$SEED" 2>/dev/null
    "$CISTA" -r "$SCRATCH/c-src" backup -q "$DATA"
    restic -r "$SCRATCH/r-src" backup -q "$DATA"
  fi
  sync
  before=$(size "$SCRATCH/c-dst")
  timed "cista-night$night" "$CISTA" -r "$SCRATCH/c-src" copy --json --to "$SCRATCH/c-dst" \
    | tail -1 > "$SCRATCH/cista-night$night.json"
  echo "cista-night$night grew $(( $(size "$SCRATCH/c-dst") - before ))" >> "$SCRATCH/growth"
  before=$(size "$SCRATCH/c-other")
  timed "cista-rechunk-night$night" "$CISTA" -r "$SCRATCH/c-src" copy --json --to "$SCRATCH/c-other" \
    | tail -1 > "$SCRATCH/cista-rechunk-night$night.json"
  echo "cista-rechunk-night$night grew $(( $(size "$SCRATCH/c-other") - before ))" >> "$SCRATCH/growth"
  before=$(size "$SCRATCH/r-dst")
  RESTIC_PASSWORD=target-pw timed "restic-night$night" restic -r "$SCRATCH/r-dst" copy -q --from-repo "$SCRATCH/r-src"
  echo "restic-night$night grew $(( $(size "$SCRATCH/r-dst") - before ))" >> "$SCRATCH/growth"
done

# Requests: every object a copy opens is one request on an object store (a GET, ranged or
# not, or a PUT), so the files each tool opens in the source and the target stand in for its
# request counts. Counted in a second, traced pass into fresh targets (tracing slows a run,
# so these runs are not timed), night 2 after night 1 as above.
count_opens() {
  local label=$1 src=$2 dst=$3; shift 3
  strace -f -qq -e trace=openat -o "$SCRATCH/strace.$label" "$@" >/dev/null
  # Files only: opening a folder to list it is not a request of its own (a listing is one
  # request per 1,000 names on an object store).
  grep -v O_DIRECTORY "$SCRATCH/strace.$label" > "$SCRATCH/strace.$label.files" || true
  echo "$label $(grep -c "\"$src/" "$SCRATCH/strace.$label.files" || true) $(grep -c "\"$dst/" "$SCRATCH/strace.$label.files" || true)" >> "$SCRATCH/opens"
}
CISTA_PASSWORD=target-pw "$CISTA" -r "$SCRATCH/c-dst2" init "${KDF[@]}" -q --copy-chunker-params-from "$SCRATCH/c-src"
RESTIC_PASSWORD=target-pw restic -r "$SCRATCH/r-dst2" init -q --copy-chunker-params --from-repo "$SCRATCH/r-src"
# night 1 alone: copy the first snapshot only
c1=$("$CISTA" -r "$SCRATCH/c-src" snapshots --json | tr ',' '\n' | sed -n 's/^.*"id":"\([0-9a-f]*\)"$/\1/p' | head -1)
r1=$(restic -r "$SCRATCH/r-src" snapshots --json | tr ',' '\n' | sed -n 's/^.*"id":"\([0-9a-f]*\)"$/\1/p' | head -1)
count_opens cista-night1 "$SCRATCH/c-src" "$SCRATCH/c-dst2" "$CISTA" -r "$SCRATCH/c-src" copy -q --to "$SCRATCH/c-dst2" "$c1"
count_opens cista-night2 "$SCRATCH/c-src" "$SCRATCH/c-dst2" "$CISTA" -r "$SCRATCH/c-src" copy -q --to "$SCRATCH/c-dst2"
RESTIC_PASSWORD=target-pw count_opens restic-night1 "$SCRATCH/r-src" "$SCRATCH/r-dst2" restic -r "$SCRATCH/r-dst2" copy -q --from-repo "$SCRATCH/r-src" "$r1"
RESTIC_PASSWORD=target-pw count_opens restic-night2 "$SCRATCH/r-src" "$SCRATCH/r-dst2" restic -r "$SCRATCH/r-dst2" copy -q --from-repo "$SCRATCH/r-src"

echo
echo "| copy | wall s | CPU s | peak RSS MiB | target grew (bytes) |"
echo "|---|---|---|---|---|"
while read -r label wall user sys rss; do
  grew=$(awk -v l="$label" '$1 == l { print $3 }' "$SCRATCH/growth")
  printf '| %s | %s | %.2f | %d | %s |\n' "$label" "$wall" "$(echo "$user + $sys" | bc)" $((rss / 1024)) "$grew"
done < "$SCRATCH/times"
echo
for n in 1 2; do
  cw=$(awk -v l="cista-night$n" '$1 == l { print $2 }' "$SCRATCH/times")
  rw=$(awk -v l="restic-night$n" '$1 == l { print $2 }' "$SCRATCH/times")
  echo "night $n: restic/cista wall = $(echo "scale=2; $rw / $cw" | bc)"
done
echo
echo "| copy | files opened in the source | in the target |"
echo "|---|---|---|"
while read -r label a b; do echo "| $label | $a | $b |"; done < "$SCRATCH/opens"
echo
for f in "$SCRATCH"/cista-*.json; do echo "$(basename "$f" .json): $(cat "$f")"; done
"$CISTA" -r "$SCRATCH/c-src" check -q >/dev/null
CISTA_PASSWORD=target-pw "$CISTA" -r "$SCRATCH/c-dst" check -q --read-data >/dev/null
CISTA_PASSWORD=target-pw "$CISTA" -r "$SCRATCH/c-other" check -q --read-data >/dev/null
echo "check --read-data passed on both targets"

#!/usr/bin/env bash
# Requests to storage with and without the metadata cache (docs/DESIGN.md, "Cache"): the
# counts CISTA_DEBUG_BACKEND_STATS=1 prints for `snapshots`, `ls --recursive` and an incremental
# backup, uncached, with a cold cache and with a warm one; then the cache's size per kind.
# Counts, not timings: they do not depend on the machine's load. The repository is local with
# the cache forced on (CISTA_CACHE_LOCAL=1), which counts exactly what a remote one would
# be asked.
#
#   benches/cache_requests.sh                   # source: /usr/share/doc
#   SRC=/some/tree NIGHTS_CHANGE=20 benches/cache_requests.sh
set -euo pipefail

cd "$(dirname "$0")/.."
SRC_IN=${SRC:-/usr/share/doc}
CHANGE=${NIGHTS_CHANGE:-10}
WORK=$(mktemp -d /var/tmp/cista-cache-XXXXXX)
trap 'rm -rf "$WORK"' EXIT

cargo build --quiet --bin cista
BIN=$PWD/target/debug/cista
export CISTA_PASSWORD=bench CISTA_REPOSITORY=$WORK/repo CISTA_CACHE_DIR=$WORK/cache
export CISTA_CACHE_LOCAL=1 CISTA_DEBUG_BACKEND_STATS=1

cp -a "$SRC_IN" "$WORK/src"
SRC=$WORK/src
"$BIN" init --kdf-params 1024,1,1 -q > /dev/null 2>&1

# Changes a few files, as a night's work does.
night() {
    find "$SRC" -type f | sort | shuf -n "$CHANGE" --random-source=<(yes "$1") |
        while read -r f; do echo "night $1" >> "$f"; done
}

# Runs a command and prints its stats line under a label.
count() {
    local label=$1
    shift
    local line
    line=$("$BIN" "$@" 2>&1 > /dev/null | grep '^backend stats ' | sed 's/^backend stats .*: //')
    printf '%-34s %s\n' "$label" "$line"
}

"$BIN" --no-cache backup --json "$SRC" 2> /dev/null | tail -1 > "$WORK/summary.json"
for i in 1 2; do "$BIN" --no-cache backup --force -q "$SRC" > /dev/null 2>&1; done
echo "source: $SRC_IN ($(find "$SRC" -type f | wc -l) files), 3 snapshots, $CHANGE files change a night"
echo
count "snapshots, no cache" --no-cache snapshots
count "snapshots, cold cache" snapshots
count "snapshots, warm cache" snapshots
count "ls --recursive, no cache" --no-cache ls --recursive latest
count "ls --recursive, cold cache" ls --recursive latest
count "ls --recursive, warm cache" ls --recursive latest
rm -rf "$WORK/cache"
night 1
count "next-night backup, no cache" --no-cache backup "$SRC"
night 2
count "next-night backup, cold cache" backup "$SRC"
night 3
count "next-night backup, warm cache" backup "$SRC"

echo
cache=$(ls -d "$WORK"/cache/????????????????????????????????????????????????????????????????)
blobs=$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print(s["data_blobs"] + s["tree_blobs"], s["total_files_processed"])' "$WORK/summary.json")
read -r nblobs nfiles <<< "$blobs"
for kind in keys index snapshots data; do
    n=$(find "$cache/$kind" -type f | wc -l)
    b=$(find "$cache/$kind" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
    printf 'cache %-10s %5d files %10d bytes\n' "$kind" "$n" "$b"
done
idx=$(find "$cache/index" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
trees=$(find "$cache/data" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
snaps=$(find "$cache/snapshots" -type f -printf '%s\n' | awk '{s += $1; n++} END {print int(s / n)}')
echo "per blob of the first backup ($nblobs blobs): index $((idx / nblobs)) bytes;" \
    "per file ($nfiles files): tree packs $((trees / nfiles)) bytes; per snapshot: $snaps bytes"

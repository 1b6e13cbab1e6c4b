#!/usr/bin/env bash
# Peak RSS of `cista check`, `cista backup` (a small new backup into the repository) and,
# `cista prune`, on synthetic repositories of 1 million and 5 million blobs
# (docs/DESIGN.md, "Index"). The repositories are written by the generator `benches/synth.rs`
# (real packs, index files, trees and a snapshot; `check` passes on them) under $WORK
# (default /var/tmp/cista-memory) and removed afterwards.
#
#   benches/memory.sh                 # 1M and 5M blobs
#   SIZES="1000000 2000000" benches/memory.sh
#   KEEP=1 benches/memory.sh          # leave the repositories in place
#   RESTIC_SIZES="250000 1000000" benches/memory.sh   # also restic, on trees of small files
#   SIZES=" " RESTIC_SIZES=1000000 benches/memory.sh  # only cista beside restic
#
# Prints one line per command and size, then bytes per blob between the two largest sizes:
# (RSS(large) - RSS(small)) / (large - small blobs). That difference is what the index costs
# per blob; everything else a command holds is the same at both sizes.
set -euo pipefail

cd "$(dirname "$0")/.."
WORK=${WORK:-/var/tmp/cista-memory}
SIZES=${SIZES:-"1000000 5000000"}
export CISTA_PASSWORD=synth

cargo build --release --bin cista --bench synth --quiet
T=${CARGO_TARGET_DIR:-target}
BIN=$T/release/cista
SYNTH=$(ls -t "$T"/release/deps/synth-* | grep -v '\.d$' | head -1)

mkdir -p "$WORK"
# Removes only what this script writes there (WORK may be a folder of the caller's).
cleanup() {
    [ -n "${KEEP:-}" ] && return
    rm -rf "$WORK"/repo-* "$WORK"/restic-* "$WORK"/tree-* "$WORK/src" "$WORK/time.out" "$WORK/cmd.err"
    rmdir "$WORK" 2> /dev/null || true
}
trap cleanup EXIT

# A small source for the "new backup into it" measurement: 64 files of 64 KiB.
SRC=$WORK/src
mkdir -p "$SRC"
for i in $(seq 1 64); do head -c 65536 /dev/urandom > "$SRC/f$i"; done

# peak COMMAND...: runs it under /usr/bin/time -v (report to a file, apart from the command's
# stderr) and prints its peak RSS in KiB and its wall time.
peak() {
    /usr/bin/time -v -o "$WORK/time.out" "$@" > /dev/null 2> "$WORK/cmd.err" || {
        cat "$WORK/cmd.err" >&2
        echo "failed: $*" >&2
        exit 1
    }
    local kib secs
    kib=$(awk '/Maximum resident set size/ {print $NF}' "$WORK/time.out")
    secs=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$WORK/time.out")
    echo "$kib $secs"
}

declare -A RSS
for n in $SIZES; do
    repo=$WORK/repo-$n
    rm -rf "$repo"
    "$SYNTH" --repo "$repo" --blobs "$n" --password "$CISTA_PASSWORD"
    du -sh "$repo" | awk '{print "  size on disk: " $1}'
    export CISTA_REPOSITORY=$repo
    read -r kib secs < <(peak "$BIN" check)
    RSS[check-$n]=$kib
    echo "  check   $n blobs: peak RSS $kib KiB, $secs"
    read -r kib secs < <(peak "$BIN" backup -q "$SRC")
    RSS[backup-$n]=$kib
    echo "  backup  $n blobs: peak RSS $kib KiB, $secs"
    # Every blob is used, so prune walks everything and changes nothing: its peak is the
    # index, the used bits and the walk.
    read -r kib secs < <(peak "$BIN" prune)
    RSS[prune-$n]=$kib
    echo "  prune   $n blobs: peak RSS $kib KiB, $secs"
    [ -n "${KEEP:-}" ] || rm -rf "$repo"
done

# restic on the same logical content: restic cannot be handed blobs, and its chunks are at
# least 512 KiB, so N blobs means N small files of distinct content (16 bytes each; one
# 4 KiB block each on disk, so 5 million take 20 GB and most of an hour: run it at smaller
# sizes and compare bytes per blob).
for n in ${RESTIC_SIZES:-}; do
    tree=$WORK/tree-$n
    rrepo=$WORK/restic-$n
    rm -rf "$tree" "$rrepo"
    python3 - "$tree" "$n" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, "d%04d" % (i // 1000))
    if i % 1000 == 0:
        os.makedirs(d)
    with open(os.path.join(d, "f%07d" % i), "wb") as f:
        f.write(b"synth:" + i.to_bytes(8, "little") + b"\n\n")
PY
    export RESTIC_PASSWORD=synth RESTIC_REPOSITORY=$rrepo
    restic init -q > /dev/null
    read -r kib secs < <(peak restic backup -q "$tree")
    echo "  restic backup  $n blobs: peak RSS $kib KiB, $secs"
    # cista on the same tree, beside restic.
    export CISTA_REPOSITORY=$WORK/cista-$n
    crepo=$CISTA_REPOSITORY
    "$BIN" init -q --kdf-params 1024,1,1 > /dev/null
    read -r kib secs < <(peak "$BIN" backup -q "$tree")
    echo "  cista backup   $n blobs: peak RSS $kib KiB, $secs"
    read -r kib secs < <(peak "$BIN" check)
    echo "  cista check    $n blobs: peak RSS $kib KiB, $secs"
    read -r kib secs < <(peak "$BIN" prune --dry-run)
    echo "  cista prune --dry-run $n blobs: peak RSS $kib KiB, $secs"
    rm -rf "$tree" "$crepo"
    read -r kib secs < <(peak restic check)
    RSS[restic_check-$n]=$kib
    echo "  restic check   $n blobs: peak RSS $kib KiB, $secs"
    read -r kib secs < <(peak restic prune --dry-run)
    RSS[restic_prune-$n]=$kib
    echo "  restic prune --dry-run $n blobs: peak RSS $kib KiB, $secs"
    [ -n "${KEEP:-}" ] || rm -rf "$rrepo"
done

per_blob() { # COMMAND SMALL LARGE
    [ -n "${RSS[$1-$3]:-}" ] && [ "$2" != "$3" ] || return 0
    awk -v a="${RSS[$1-$2]}" -v b="${RSS[$1-$3]}" -v s="$2" -v l="$3" -v c="$1" \
        'BEGIN { printf "%s: %.1f bytes per blob ((%d - %d KiB) * 1024 / (%d - %d))\n", c, (b - a) * 1024 / (l - s), b, a, l, s }'
}

read -r -a sizes <<< "$SIZES"
if [ ${#sizes[@]} -gt 0 ]; then
    for cmd in check backup prune; do per_blob "$cmd" "${sizes[0]}" "${sizes[${#sizes[@]}-1]}"; done
fi
if [ -n "${RESTIC_SIZES:-}" ]; then
    read -r -a rsizes <<< "$RESTIC_SIZES"
    for cmd in restic_check restic_prune; do
        per_blob "$cmd" "${rsizes[0]}" "${rsizes[${#rsizes[@]}-1]}"
    done
fi

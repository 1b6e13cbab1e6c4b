#!/usr/bin/env bash
# Peer comparison: cista against restic and borg (and, on request, rustic and bupstash) on the
# nightly-application corpus of examples/corpus.rs. What it measures and why: docs/PERFORMANCE.md.
#
# usage: benches/compare.sh [options]
#   --runs N          runs per tool (default 3); medians are reported
#   --tools "A B"     tools to compare (default "cista restic borg"); ratios are against cista
#   --with-rustic     add rustic (cargo install --locked rustic-rs into the tool dir if missing)
#   --with-bupstash   add bupstash (cargo install --locked bupstash; needs libsodium-dev)
#   --corpus DIR      the tree that is backed up; written anew for every tool and run
#                     (default SCRATCH/data); its contents are deleted
#   --scratch DIR     repositories, restores, caches and logs (default ${TMPDIR:-/tmp}/cista-compare);
#                     put it on the disk you want to measure
#   --tool-dir DIR    where --with-* tools are installed (default SCRATCH/tools)
#   --out DIR         results.csv (every run) and results.md (the tables) (default SCRATCH/results)
#   --scale N         divide the corpus by N (e.g. 20 while developing); default 1 = 1.26 GB
#   --seed S          corpus seed (default 1)
#   --no-verify       do not compare restored files with the corpus
#   --settle SECS     pause after deleting the previous turn's files (default 65; see below)
#
# Every tool runs with encryption and compression on: cista's defaults; restic repository v2
# with --compression auto; borg repokey with --compression zstd,3; rustic's defaults (v2,
# compression on); bupstash's defaults. Within each run the tools take turns (order below),
# each doing: init, backup of night 1, switch the tree to night 2 in place, backup of night 2,
# full restore of the latest snapshot, restore of one vault file, check reading all data.
# Each command is timed with /usr/bin/time (wall seconds, peak RSS). Nothing is dropped from the
# page cache: the corpus was just written, so every tool reads it warm. The tools' order
# rotates from run to run, so none always follows the same neighbour. Each turn starts by
# deleting the previous turn's corpus, repository and restore, then syncs and waits --settle
# seconds before writing the new corpus: ext4 without a journal (this VM's root filesystem)
# avoids reusing an inode freed less than 60 s ago (fs/ext4/ialloc.c, recently_deleted:
# RECENTCY_MIN, plus 300 s while the inode's table block is dirty, hence the sync) and scans
# past every such inode on each file it creates, which made whichever tool restored soonest
# after the deletions pay up to half of its restore CPU in the kernel (perf: ext4_create ->
# recently_deleted; a 40 s pause was not enough).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUNS=3
TOOLS="cista restic borg"
EXTRA=""
SCRATCH=${TMPDIR:-/tmp}/cista-compare
CORPUS=""
TOOL_DIR=""
OUT=""
SCALE=1
SEED=1
VERIFY=1
SETTLE=65

die() { echo "compare.sh: $*" >&2; exit 1; }
usage() { sed -n '5,20p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

while (($#)); do
  case $1 in
    --runs) RUNS=$2; shift ;;
    --tools) TOOLS=$2; shift ;;
    --with-rustic) EXTRA+=" rustic" ;;
    --with-bupstash) EXTRA+=" bupstash" ;;
    --corpus) CORPUS=$2; shift ;;
    --scratch) SCRATCH=$2; shift ;;
    --tool-dir) TOOL_DIR=$2; shift ;;
    --out) OUT=$2; shift ;;
    --scale) SCALE=$2; shift ;;
    --seed) SEED=$2; shift ;;
    --no-verify) VERIFY=0 ;;
    --settle) SETTLE=$2; shift ;;
    -h|--help) usage ;;
    *) echo "unknown option: $1" >&2; usage ;;
  esac
  shift
done
TOOLS="$TOOLS$EXTRA"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer"
[[ $SCALE =~ ^[1-9][0-9]*$ ]] || die "--scale must be a positive integer"
mkdir -p "$SCRATCH"
SCRATCH=$(cd "$SCRATCH" && pwd)
CORPUS=${CORPUS:-$SCRATCH/data}
TOOL_DIR=${TOOL_DIR:-$SCRATCH/tools}
OUT=${OUT:-$SCRATCH/results}
mkdir -p "$CORPUS" "$TOOL_DIR" "$OUT" "$OUT/logs"
CORPUS=$(cd "$CORPUS" && pwd)
TOOL_DIR=$(cd "$TOOL_DIR" && pwd)
case $CORPUS/ in
  "$ROOT"/*|/|/home/|/root/|/usr/*|/etc/*) die "refusing to use $CORPUS as the corpus: its contents are deleted" ;;
esac

if [[ -n $(ls -A "$CORPUS") && ! -f $CORPUS/CORPUS ]]; then
  die "$CORPUS holds files that are not a corpus of examples/corpus.rs; refusing to delete them"
fi

REPO=$SCRATCH/repo
RESTORE=$SCRATCH/restore
ONE_DIR=$SCRATCH/one-file
CACHE=$SCRATCH/cache
CSV=$OUT/results.csv
MD=$OUT/results.md
[[ -x /usr/bin/time ]] || die "/usr/bin/time is missing (apt-get install time)"

# --- tools --------------------------------------------------------------------------------------

apt_install() {
  echo "installing $* from Debian packages" >&2
  if ! apt-get install -y "$@" >"$OUT/logs/apt.log" 2>&1; then
    apt-get update >>"$OUT/logs/apt.log" 2>&1 && apt-get install -y "$@" >>"$OUT/logs/apt.log" 2>&1 \
      || die "apt-get install $* failed; see $OUT/logs/apt.log"
  fi
}

cargo_install() { # crate binary
  if [[ ! -x $TOOL_DIR/bin/$2 ]]; then
    echo "installing $1 with cargo into $TOOL_DIR (takes a while)" >&2
    cargo install --locked --root "$TOOL_DIR" "$1" >"$OUT/logs/install-$1.log" 2>&1 \
      || die "cargo install $1 failed; see $OUT/logs/install-$1.log"
  fi
}

for t in $TOOLS; do
  case $t in
    cista) ;;
    restic) command -v restic >/dev/null || apt_install restic ;;
    borg) command -v borg >/dev/null || apt_install borgbackup ;;
    rustic) cargo_install rustic-rs rustic ;;
    bupstash)
      dpkg -s libsodium-dev pkg-config >/dev/null 2>&1 || apt_install libsodium-dev pkg-config
      cargo_install bupstash bupstash ;;
    *) die "unknown tool $t (cista, restic, borg, rustic, bupstash)" ;;
  esac
done
PATH=$TOOL_DIR/bin:$PATH

echo "building cista and the corpus generator (release)" >&2
(cd "$ROOT" && cargo build --release --quiet --bin cista --example corpus) || die "cargo build failed"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
CISTA=$TARGET/release/cista
GEN=$TARGET/release/examples/corpus

version() {
  case $1 in
    cista) echo "cista $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo '?')" ;;
    restic) restic version | cut -d' ' -f1,2 ;;
    borg) borg --version ;;
    rustic) rustic --version ;;
    bupstash) bupstash version 2>/dev/null || echo bupstash ;;
  esac
}

# Equivalent settings for every tool; passphrases and repositories through the environment.
export CISTA_REPOSITORY=$REPO CISTA_PASSWORD=compare-pass
export RESTIC_REPOSITORY=$REPO RESTIC_PASSWORD=compare-pass RESTIC_CACHE_DIR=$CACHE/restic
export BORG_REPO=$REPO BORG_PASSPHRASE=compare-pass BORG_BASE_DIR=$CACHE/borg BORG_DISPLAY_PASSPHRASE=no
export RUSTIC_REPOSITORY=$REPO RUSTIC_PASSWORD=compare-pass RUSTIC_CACHE_DIR=$CACHE/rustic
export BUPSTASH_REPOSITORY=$REPO BUPSTASH_KEY=$CACHE/bupstash.key
export XDG_CACHE_HOME=$CACHE/xdg XDG_CONFIG_HOME=$CACHE/xdg-config

# cmd TOOL PHASE: sets CMD (argv), RUN_IN (working directory) and OUTPUT (its stdout) for PHASE.
# Phases: init backup1 backup2 restore onefile check. ONE is the absolute path of the file the
# one-file restore fetches; the other paths are the globals above.
cmd() {
  RUN_IN=$SCRATCH OUTPUT=/dev/null
  local night=${2#backup}
  case $1:$2 in
    cista:init) CMD=("$CISTA" init) ;;
    cista:backup*) CMD=("$CISTA" -q backup "$CORPUS") ;;
    cista:restore) CMD=("$CISTA" -q restore latest --target "$RESTORE") ;;
    cista:onefile) CMD=("$CISTA" dump latest "$ONE") OUTPUT=$ONE_DIR/$(basename "$ONE") ;;
    cista:check) CMD=("$CISTA" -q check --read-data) ;;

    restic:init) CMD=(restic init --repository-version 2) ;;
    restic:backup*) CMD=(restic -q --compression auto backup "$CORPUS") ;;
    restic:restore) CMD=(restic -q restore latest --target "$RESTORE") ;;
    restic:onefile) CMD=(restic dump latest "$ONE") OUTPUT=$ONE_DIR/$(basename "$ONE") ;;
    restic:check) CMD=(restic -q check --read-data) ;;

    borg:init) CMD=(borg init --encryption repokey) ;;
    borg:backup*) CMD=(borg create --compression zstd,3 "::night$night" "$CORPUS") ;;
    borg:restore) CMD=(borg extract ::night2) RUN_IN=$RESTORE ;;
    borg:onefile) CMD=(borg extract ::night2 "${ONE#/}") RUN_IN=$ONE_DIR ;;
    borg:check) CMD=(borg check --verify-data) ;;

    rustic:init) CMD=(rustic init) ;;
    rustic:backup*) CMD=(rustic backup "$CORPUS") ;;
    rustic:restore) CMD=(rustic restore latest "$RESTORE") ;;
    rustic:onefile) CMD=(rustic dump "latest:$ONE") OUTPUT=$ONE_DIR/$(basename "$ONE") ;;
    rustic:check) CMD=(rustic check --read-data) ;;

    bupstash:init) CMD=(bupstash init) ;;
    bupstash:backup*) CMD=(bupstash put --send-log "$CACHE/bupstash.sendlog" "night=$night" "$CORPUS") ;;
    bupstash:restore) CMD=(bupstash restore --into "$RESTORE" night=2) ;;
    bupstash:onefile) CMD=(bupstash get --pick "${ONE#"$CORPUS"/}" night=2) OUTPUT=$ONE_DIR/$(basename "$ONE") ;;
    bupstash:check) CMD=() ;; # bupstash has no command that reads back all data
  esac
}

# Where a full restore puts the corpus.
restored_root() {
  case $1 in
    bupstash) echo "$RESTORE" ;;
    *) echo "$RESTORE$CORPUS" ;;
  esac
}

# measure TOOL RUN PHASE: runs the phase under /usr/bin/time and appends a CSV row.
measure() {
  local tool=$1 run=$2 phase=$3 times log=$OUT/logs/$1-$2-$3.log
  cmd "$tool" "$phase"
  if ((${#CMD[@]} == 0)); then
    echo "$tool,$run,$phase,,,," >>"$CSV"
    return
  fi
  times=$(mktemp)
  sync
  if ! (cd "$RUN_IN" && /usr/bin/time -f '%e %M %U %S' -o "$times" "${CMD[@]}" >"$OUTPUT" 2>"$log" </dev/null); then
    cat "$log" "$times" >&2
    die "$tool $phase failed (run $run): ${CMD[*]}"
  fi
  local secs rss user sys cpu
  read -r secs rss user sys < <(tail -n 1 "$times")
  rm -f "$times"
  cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')
  echo "$tool,$run,$phase,$secs,$rss,$cpu," >>"$CSV"
  printf '  %-8s run %s  %-8s %8.2f s %8.1f MB %8.2f CPU s\n' "$tool" "$run" "$phase" "$secs" \
    "$(awk -v k="$rss" 'BEGIN { print k * 1024 / 1e6 }')" "$cpu" >&2
}

repo_size() { # TOOL RUN NAME
  local bytes
  bytes=$(du -sb "$REPO" | cut -f1)
  echo "$1,$2,$3,,,,$bytes" >>"$CSV"
}

clean() {
  rm -rf "$REPO" "$RESTORE" "$ONE_DIR" "$CACHE"
  mkdir -p "$RESTORE" "$ONE_DIR" "$CACHE"
}

# The vault file closest to 1 MB (a typical upload), for the one-file restore.
pick_one_file() {
  find "$CORPUS/vault" -type f -printf '%s %p\n' | LC_ALL=C sort -k2 \
    | awk '{ d = $1 - 1000000; if (d < 0) d = -d; if (best == "" || d < bd) { best = $2; bd = d } } END { print best }'
}

corpus_bytes() { find "$CORPUS" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }'; }

# --- runs ---------------------------------------------------------------------------------------

echo "tool,run,phase,seconds,peak_rss_kib,cpu_seconds,repo_bytes" >"$CSV"
LOAD_START=$(uptime)
echo "load at start: $LOAD_START" >&2
read -r -a TOOL_LIST <<<"$TOOLS"
for run in $(seq 1 "$RUNS"); do
  # Rotate the order: run 2 starts with the second tool, and so on.
  n=${#TOOL_LIST[@]}
  order=()
  for ((i = 0; i < n; i++)); do order+=("${TOOL_LIST[(i + run - 1) % n]}"); done
  for tool in "${order[@]}"; do
    echo "run $run: $tool" >&2
    clean
    find "$CORPUS" -mindepth 1 -delete
    sync
    sleep "$SETTLE"
    "$GEN" night1 "$CORPUS" --scale "$SCALE" --seed "$SEED" 2>>"$OUT/logs/corpus.log"
    [[ $tool == bupstash ]] && bupstash new-key -o "$BUPSTASH_KEY" >/dev/null
    measure "$tool" "$run" init
    measure "$tool" "$run" backup1
    repo_size "$tool" "$run" repo1
    "$GEN" night2 "$CORPUS" --scale "$SCALE" --seed "$SEED" 2>>"$OUT/logs/corpus.log"
    measure "$tool" "$run" backup2
    repo_size "$tool" "$run" repo2
    measure "$tool" "$run" restore
    if ((VERIFY)) && ! diff -r --no-dereference "$CORPUS" "$(restored_root "$tool")" >"$OUT/logs/$tool-$run-diff.log" 2>&1; then
      head -n 20 "$OUT/logs/$tool-$run-diff.log" >&2
      die "$tool: the restored tree differs from the corpus (run $run)"
    fi
    ONE=$(pick_one_file)
    measure "$tool" "$run" onefile
    if ((VERIFY)) && ! cmp -s "$ONE" "$(find "$ONE_DIR" -type f -name "$(basename "$ONE")" | head -n 1)"; then
      die "$tool: the restored file differs from $ONE (run $run)"
    fi
    measure "$tool" "$run" check
  done
done
BYTES=$(corpus_bytes)
LOAD_END=$(uptime)
clean
find "$CORPUS" -mindepth 1 -delete

# --- report -------------------------------------------------------------------------------------

# median TOOL PHASE COLUMN (4 = seconds, 5 = peak RSS KiB, 6 = CPU seconds, 7 = bytes); empty
# if no values.
median() {
  awk -F, -v t="$1" -v p="$2" -v c="$3" '$1 == t && $3 == p && $c != "" { print $c }' "$CSV" \
    | sort -g | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}

# The larger of the two backups' peak RSS, per run, then the median.
backup_rss() {
  awk -F, -v t="$1" '$1 == t && ($3 == "backup1" || $3 == "backup2") { if ($5 > m[$2]) m[$2] = $5 } END { for (r in m) print m[r] }' "$CSV" \
    | sort -g | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'
}

fmt() { # VALUE DIVISOR DECIMALS -> value/divisor, or n/a
  if [[ -z $1 ]]; then echo "n/a"; else awk -v v="$1" -v d="$2" -v n="$3" 'BEGIN { printf "%.*f", n, v / d }'; fi
}
ratio() { # PEER CISTA -> peer/cista
  if [[ -z $1 || -z $2 ]] || awk -v c="$2" 'BEGIN { exit !(c == 0) }'; then echo "n/a"; else awk -v p="$1" -v c="$2" 'BEGIN { printf "%.2f", p / c }'; fi
}

declare -A M
for tool in $TOOLS; do
  for phase in backup1 backup2 restore onefile check; do
    M[$tool:$phase]=$(median "$tool" "$phase" 4)
    M[$tool:cpu_$phase]=$(median "$tool" "$phase" 6)
  done
  M[$tool:rss_backup]=$(backup_rss "$tool")
  M[$tool:rss_restore]=$(median "$tool" restore 5)
  M[$tool:repo]=$(median "$tool" repo2 7)
  M[$tool:repo1]=$(median "$tool" repo1 7)
  if [[ -n ${M[$tool:repo]} && -n ${M[$tool:repo1]} ]]; then
    M[$tool:added]=$(awk -v a="${M[$tool:repo]}" -v b="${M[$tool:repo1]}" 'BEGIN { print a - b }')
  else
    M[$tool:added]=""
  fi
done

{
  echo "Corpus: $(fmt "$BYTES" 1e6 0) MB (scale 1/$SCALE, seed $SEED), $RUNS run(s), medians. $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo) RAM, warm page cache."
  echo "Load average at start:${LOAD_START##*load average:}; at end:${LOAD_END##*load average:}."
  echo "Versions: $(for t in $TOOLS; do printf '%s; ' "$(version "$t")"; done)"
  echo
  echo "| tool | initial backup s | MB/s | next night s | full restore s | one-file restore s | check --read-data s | backup peak RSS MB | restore peak RSS MB | repo MB | night 2 added MB |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  for tool in $TOOLS; do
    mbps=n/a
    [[ -n ${M[$tool:backup1]} ]] && mbps=$(awk -v b="$BYTES" -v s="${M[$tool:backup1]}" 'BEGIN { printf "%.0f", b / 1e6 / s }')
    echo "| $tool | $(fmt "${M[$tool:backup1]}" 1 2) | $mbps | $(fmt "${M[$tool:backup2]}" 1 2) | $(fmt "${M[$tool:restore]}" 1 2) | $(fmt "${M[$tool:onefile]}" 1 2) | $(fmt "${M[$tool:check]}" 1 2) | $(fmt "${M[$tool:rss_backup]}" 976.5625 0) | $(fmt "${M[$tool:rss_restore]}" 976.5625 0) | $(fmt "${M[$tool:repo]}" 1e6 0) | $(fmt "${M[$tool:added]}" 1e6 1) |"
  done
  echo
  echo "CPU seconds (user + system, all threads), medians: less sensitive than wall time to other load on the machine."
  echo
  echo "| tool | initial backup | next night | full restore | one-file restore | check --read-data |"
  echo "|---|---:|---:|---:|---:|---:|"
  for tool in $TOOLS; do
    row="| $tool"
    for k in backup1 backup2 restore onefile check; do row+=" | $(fmt "${M[$tool:cpu_$k]}" 1 2)"; done
    echo "$row |"
  done
  if [[ " $TOOLS " == *" cista "* ]]; then
    echo
    echo "Ratios, peer / cista: above 1 means cista is faster, uses less memory, or stores less."
    echo
    echo "| tool | initial backup | next night | full restore | one-file restore | check --read-data | backup RSS | restore RSS | repo size |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    for tool in $TOOLS; do
      [[ $tool == cista ]] && continue
      row="| $tool"
      for k in backup1 backup2 restore onefile check rss_backup rss_restore repo; do
        row+=" | $(ratio "${M[$tool:$k]}" "${M[cista:$k]}")"
      done
      echo "$row |"
    done
  fi
} | tee "$MD"
echo >&2
echo "raw results: $CSV; tables: $MD; logs: $OUT/logs" >&2

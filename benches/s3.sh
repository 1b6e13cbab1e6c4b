#!/usr/bin/env bash
# cista beside restic against a real S3 server on 127.0.0.1 (moto, from the pinned
# `.venv-test` that scripts/test.sh installs), in one run, on the nightly corpus of
# examples/corpus.rs: backup of night 1, backup of night 2 (the next night), restore of the
# latest snapshot, `check --read-data`; each beside cista again with 50 ms added to every
# request (CISTA_TEST_FAULTS=latency=50ms, a build with the `testing` feature), to show that
# memory does not grow with the backend's latency. Restore and check run three times,
# interleaved, and each row is the run of median wall time: they take a second or two, so
# one sample is mostly the machine's noise.
#
# usage: benches/s3.sh [--scale N] [--scratch DIR] [--seed S]
#   --scale N    divide the 1.26 GB corpus by N (default 4)
#   --scratch D  where the corpus, restores and moto's log go (default
#                ${TMPDIR:-/tmp}/cista-s3-bench); its contents are deleted
# Both tools use a fresh cache folder of their own. Every figure is from this run; ratios
# are restic / cista (above 1: cista faster or smaller).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCALE=4
SEED=1
SCRATCH=${TMPDIR:-/tmp}/cista-s3-bench
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
command -v restic >/dev/null || { echo "restic is not on PATH" >&2; exit 2; }
MOTO=$ROOT/.venv-test/bin/moto_server
[ -x "$MOTO" ] || { echo "no $MOTO: run scripts/test.sh once (it installs moto)" >&2; exit 2; }

TARGET=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
# The latency build first, kept aside: the plain build below overwrites the same path.
(cd "$ROOT" && cargo build --release --quiet --bin cista --features testing)
rm -rf "$SCRATCH"
mkdir -p "$SCRATCH"
cp "$TARGET/release/cista" "$SCRATCH/cista-testing"
(cd "$ROOT" && cargo build --release --quiet --bin cista --example corpus)
CISTA=$TARGET/release/cista
GEN=$TARGET/release/examples/corpus

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# Unbuffered, so its request log is complete when read.
PYTHONUNBUFFERED=1 "$MOTO" -H 127.0.0.1 -p "$PORT" > "$SCRATCH/moto.log" 2>&1 &
MOTO_PID=$!
trap 'kill $MOTO_PID 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break
  sleep 0.1
done
for b in restic cista cista-latency; do curl -s -X PUT -o /dev/null "http://127.0.0.1:$PORT/$b"; done

export AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
unset AWS_PROFILE AWS_ENDPOINT_URL AWS_ENDPOINT_URL_S3
export CISTA_PASSWORD=bench RESTIC_PASSWORD=bench
OPTS=(-o s3.disable-config-load=true -o s3.disable-ec2-metadata=true)
KDF=(--kdf-params 65536,3,4)
DATA=$SCRATCH/data
R_REPO=s3:http://127.0.0.1:$PORT/restic
C_REPO=s3:http://127.0.0.1:$PORT/cista
L_REPO=s3:http://127.0.0.1:$PORT/cista-latency

# Commands as arrays (so /usr/bin/time can run them): restic, cista, cista with latency.
RESTIC=(restic -r "$R_REPO" --cache-dir "$SCRATCH/restic-cache")
CISTA_S3=("$CISTA" -r "$C_REPO" "${OPTS[@]}" --cache-dir "$SCRATCH/cista-cache")
LATENCY=(env CISTA_TEST_FAULTS=latency=50ms "$SCRATCH/cista-testing" -r "$L_REPO" "${OPTS[@]}"
  --cache-dir "$SCRATCH/latency-cache")
# The S3 server's CPU seconds so far (user + system): it runs on the same 2 cores, so a
# command's wall time is bounded by its own CPU plus what it makes the server spend.
server_cpu() {
  awk -v t="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / t }' "/proc/$MOTO_PID/stat"
}
# timed LABEL CMD...: runs CMD, appends "LABEL wall user sys rss_kib server_cpu" to
# $SCRATCH/times.
timed() {
  local label=$1 before; shift
  sync
  before=$(server_cpu)
  /usr/bin/time -f "$label %e %U %S %M" -o "$SCRATCH/time.one" "$@" > /dev/null
  echo "$(cat "$SCRATCH/time.one") $(echo "$(server_cpu) - $before" | bc)" >> "$SCRATCH/times"
}
bucket_bytes() { # BUCKET: bytes stored, summed from moto's listing (1,000 keys a page)
  python3 - "$PORT" "$1" <<'PY'
import re, sys, urllib.request
port, bucket = sys.argv[1], sys.argv[2]
total, token = 0, None
while True:
    url = f"http://127.0.0.1:{port}/{bucket}?list-type=2"
    if token:
        url += "&continuation-token=" + urllib.parse.quote(token)
    body = urllib.request.urlopen(url).read().decode()
    total += sum(int(s) for s in re.findall(r"<Size>(\d+)</Size>", body))
    m = re.search(r"<NextContinuationToken>([^<]+)</NextContinuationToken>", body)
    if not m:
        break
    token = m.group(1)
print(total)
PY
}

"$GEN" night1 "$DATA" --scale "$SCALE" --seed "$SEED" 2> /dev/null
echo "corpus night 1: $(du -sb "$DATA" | cut -f1) bytes" >&2
"${RESTIC[@]}" init -q > /dev/null
"${CISTA_S3[@]}" init -q "${KDF[@]}"
"${LATENCY[@]}" init -q "${KDF[@]}"

timed restic-backup "${RESTIC[@]}" backup -q "$DATA"
timed cista-backup "${CISTA_S3[@]}" backup -q "$DATA"
timed latency-backup "${LATENCY[@]}" backup -q "$DATA"
"$GEN" night2 "$DATA" --scale "$SCALE" --seed "$SEED" 2> /dev/null
timed restic-night2 "${RESTIC[@]}" backup -q "$DATA"
timed cista-night2 "${CISTA_S3[@]}" backup -q "$DATA"
timed latency-night2 "${LATENCY[@]}" backup -q "$DATA"
restore() { # LABEL CMD...: restore latest, timed, from a cold page cache where allowed
  local label=$1; shift
  rm -rf "$SCRATCH/restore-$label"
  sync
  echo 3 > /proc/sys/vm/drop_caches 2> /dev/null || true
  timed "$label-restore" "$@" restore latest --target "$SCRATCH/restore-$label"
  diff -r "$DATA" "$SCRATCH/restore-$label$DATA" > /dev/null || { echo "$label restore differs" >&2; exit 1; }
  rm -rf "$SCRATCH/restore-$label"
}
for _ in 1 2 3; do
  restore restic "${RESTIC[@]}"
  restore cista "${CISTA_S3[@]}"
  restore latency "${LATENCY[@]}"
done
for _ in 1 2 3; do
  timed restic-check "${RESTIC[@]}" check --read-data
  timed cista-check "${CISTA_S3[@]}" check --read-data
  timed latency-check "${LATENCY[@]}" check --read-data
done
# One row per label: the run of median wall time (the only one for single runs).
sort -k1,1 -k2,2n "$SCRATCH/times" | awk '
  { rows[$1, ++n[$1]] = $0; if (!($1 in first)) { first[$1] = 1; order[++k] = $1 } }
  END { for (i = 1; i <= k; i++) { l = order[i]; print rows[l, int((n[l] + 1) / 2)] } }' \
  > "$SCRATCH/medians"
echo "stored: restic $(bucket_bytes restic) bytes, cista $(bucket_bytes cista) bytes"

echo
echo "| run | wall s | CPU s | peak RSS MiB | server CPU s |"
echo "|---|---:|---:|---:|---:|"
while read -r label wall user sys rss server; do
  printf '| %s | %s | %.2f | %d | %s |\n' "$label" "$wall" "$(echo "$user + $sys" | bc)" $((rss / 1024)) "$server"
done < <(for l in $(awk '!seen[$1]++ { print $1 }' "$SCRATCH/times"); do grep "^$l " "$SCRATCH/medians"; done)
echo
field() { awk -v l="$1" -v f="$2" '$1 == l { print $f }' "$SCRATCH/medians"; }
for step in backup night2 restore check; do
  rw=$(field "restic-$step" 2); cw=$(field "cista-$step" 2)
  rc=$(echo "$(field "restic-$step" 3) + $(field "restic-$step" 4)" | bc)
  cc=$(echo "$(field "cista-$step" 3) + $(field "cista-$step" 4)" | bc)
  echo "$step: restic/cista wall $(echo "scale=2; $rw / $cw" | bc), CPU $(echo "scale=2; $rc / $cc" | bc);" \
    "cista RSS $(( $(field "cista-$step" 5) / 1024 )) MiB, with 50 ms latency $(( $(field "latency-$step" 5) / 1024 )) MiB"
done

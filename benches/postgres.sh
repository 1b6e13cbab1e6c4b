#!/usr/bin/env bash
# `cista pg backup` / `pg restore` on a pgbench database, beside pg_dump and pg_restore of the
# same data (issue 10, docs/POSTGRES.md "Measurements"). A private PostgreSQL server from
# Debian's packages (the newest /usr/lib/postgresql/*/bin, or $CISTA_PG_BIN) in the scratch
# folder on 127.0.0.1, started and stopped by pid.
#
# Two workloads (--workload):
# - pgbench: night 1 `pgbench -i -s SCALE`; night 2 after `pgbench -t TX` from 2 clients
#   (random updates all over one 5-million-row table: the worst case for any dump's dedup).
# - app: an application's database, append-mostly as the ones cista is for: 50,000 clients,
#   200,000 documents of 1.3 KB text, 1,000,000 events; night 2 after a day of work (1% more
#   documents and events, 500 clients and 200 recent documents updated).
# Reported: what the second backup added as a share of the database's size and of a
# `pg_dump | zstd` file of night 2, for `pg backup` (-Fc -Z0), `pg backup --jobs 2` (split),
# `pg_dump -Fc` with its default compression and plain SQL (both through `backup
# --stdin-from-command`); backup time against `pg_dump -Fc` alone; restore time against
# `pg_restore -j 2` of a -Fc file; one-table restore; peak RSS.
#
# usage: benches/postgres.sh [--workload pgbench|app] [--scale N] [--transactions N] [--scratch DIR]
#   --workload W      pgbench (default) or app
#   --scale N         pgbench scale (default 50: about 750 MB); app: thousands of documents
#                     (default 200)
#   --transactions N  pgbench transactions per client on night 2 (default 10000)
#   --scratch D       where the server, repositories and dumps go (default
#                     ${TMPDIR:-/tmp}/cista-pg-bench); its contents are deleted
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCALE=
TX=10000
WORKLOAD=pgbench
SCRATCH=${TMPDIR:-/tmp}/cista-pg-bench
while [ $# -gt 0 ]; do
  case $1 in
    --workload) WORKLOAD=$2; shift ;;
    --scale) SCALE=$2; shift ;;
    --transactions) TX=$2; shift ;;
    --scratch) SCRATCH=$2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
case $WORKLOAD in
  pgbench) SCALE=${SCALE:-50}; BIG_TABLE=pgbench_accounts ;;
  app) SCALE=${SCALE:-200}; BIG_TABLE=dokumente ;;
  *) echo "unknown workload $WORKLOAD" >&2; exit 2 ;;
esac
case "$SCRATCH" in
  ""|/|/home|/home/|/root|/root/|"$ROOT"|"$ROOT"/) echo "refusing scratch $SCRATCH" >&2; exit 2 ;;
esac
BIN=${CISTA_PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2> /dev/null | sort -V | tail -1)}
[ -x "$BIN/postgres" ] || { echo "no PostgreSQL server under /usr/lib/postgresql (apt-get install postgresql)" >&2; exit 2; }
command -v zstd > /dev/null || { echo "zstd is not on PATH" >&2; exit 2; }

(cd "$ROOT" && cargo build --release --quiet --bin cista)
TARGET=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
CISTA=$TARGET/release/cista

rm -rf "$SCRATCH"
mkdir -p "$SCRATCH"
chmod 755 "$SCRATCH"
PGDATA=$SCRATCH/pgdata
mkdir "$PGDATA"
# The server refuses to run as root: as the postgres user when root.
if [ "$(id -u)" = 0 ]; then
  chown postgres: "$PGDATA"
  AS_PG=(setpriv --reuid=postgres --regid=postgres --init-groups)
else
  AS_PG=()
fi
"${AS_PG[@]}" "$BIN/initdb" -D "$PGDATA" -U postgres -A trust > "$SCRATCH/initdb.log"
PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"${AS_PG[@]}" "$BIN/postgres" -D "$PGDATA" -p "$PORT" -k '' -c listen_addresses=127.0.0.1 \
  -c fsync=off -c full_page_writes=off > "$SCRATCH/server.log" 2>&1 &
PG_PID=$!
trap 'kill $PG_PID 2> /dev/null || true' EXIT
export PGHOST=127.0.0.1 PGPORT=$PORT PGUSER=postgres
for _ in $(seq 1 100); do "$BIN/pg_isready" -q && break; sleep 0.1; done
export CISTA_PASSWORD=bench
unset PGDATABASE

sql() { "$BIN/psql" -X -q -At -d "$1" -c "$2"; }
# timed LABEL CMD...: "LABEL wall_s rss_kib" appended to $SCRATCH/times; stdout to $SCRATCH/LABEL.out.
timed() {
  local label=$1; shift
  sync
  /usr/bin/time -f "$label %e %M" -o "$SCRATCH/time.one" "$@" > "$SCRATCH/$label.out"
  cat "$SCRATCH/time.one" >> "$SCRATCH/times"
}
field() { awk -v l="$1" -v f="$2" '$1 == l { print $f }' "$SCRATCH/times"; }
added() { # REPO: data_added_packed of its latest backup's --json summary
  python3 -c 'import json, sys
for line in open(sys.argv[1]):
    try: v = json.loads(line)
    except ValueError: continue
    if v.get("message_type") == "summary": print(v["data_added_packed"])' "$1"
}

sql postgres "CREATE DATABASE bench"
if [ "$WORKLOAD" = pgbench ]; then
  "$BIN/pgbench" -q -i -s "$SCALE" bench > "$SCRATCH/pgbench-init.log" 2>&1
else
  "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -d bench > /dev/null <<SQL
CREATE TABLE kunden (id int PRIMARY KEY, name text NOT NULL, email text, updated timestamptz);
INSERT INTO kunden SELECT g, 'Kunde ' || g, 'k' || g || '@example.org', now() FROM generate_series(1, 50000) g;
CREATE TABLE dokumente (id bigserial PRIMARY KEY, kunde int NOT NULL REFERENCES kunden,
  created timestamptz NOT NULL DEFAULT now(), titel text NOT NULL, body text NOT NULL);
CREATE FUNCTION text_of(n bigint) RETURNS text LANGUAGE sql AS
  \$\$ SELECT string_agg(md5(n::text || '.' || i), ' ') FROM generate_series(1, 40) i \$\$;
INSERT INTO dokumente (kunde, titel, body)
  SELECT 1 + g % 50000, 'Akte ' || g, text_of(g) FROM generate_series(1, $SCALE * 1000) g;
CREATE INDEX ON dokumente (kunde);
CREATE TABLE ereignisse (id bigserial PRIMARY KEY, kunde int NOT NULL, at timestamptz NOT NULL,
  art text NOT NULL, daten jsonb);
INSERT INTO ereignisse (kunde, at, art, daten)
  SELECT 1 + g % 50000, now() - (g || ' s')::interval, (ARRAY['login','upload','view','edit'])[1 + g % 4],
         jsonb_build_object('ip', '10.0.' || (g % 256) || '.' || (g % 199), 'n', g)
  FROM generate_series(1, $SCALE * 5000) g;
CREATE INDEX ON ereignisse (kunde); CREATE INDEX ON ereignisse (at);
VACUUM ANALYZE;
SQL
fi
DB_SIZE=$(sql bench "SELECT pg_database_size('bench')")
echo "database: $WORKLOAD scale $SCALE, $DB_SIZE bytes" >&2

for repo in pg pgj fc plain; do "$CISTA" -r "$SCRATCH/repo-$repo" init -q --kdf-params 65536,3,4; done
night() { # N
  timed "pgdump-fc-$1" "$BIN/pg_dump" -Fc -f "$SCRATCH/night$1.fc" bench
  "$BIN/pg_dump" bench | zstd -q -3 > "$SCRATCH/night$1.sql.zst"
  timed "cista-pg-$1" "$CISTA" -r "$SCRATCH/repo-pg" --json pg backup --dbname bench --no-globals --pg-bin "$BIN"
  cp "$SCRATCH/cista-pg-$1.out" "$SCRATCH/summary-pg-$1"
  timed "cista-pgj-$1" "$CISTA" -r "$SCRATCH/repo-pgj" --json pg backup --dbname bench --no-globals --jobs 2 --pg-bin "$BIN"
  cp "$SCRATCH/cista-pgj-$1.out" "$SCRATCH/summary-pgj-$1"
  "$CISTA" -r "$SCRATCH/repo-fc" --json backup --stdin-from-command --stdin-filename bench.fc -- \
    "$BIN/pg_dump" -Fc bench > "$SCRATCH/summary-fc-$1"
  "$CISTA" -r "$SCRATCH/repo-plain" --json backup --stdin-from-command --stdin-filename bench.sql -- \
    "$BIN/pg_dump" bench > "$SCRATCH/summary-plain-$1"
}
night 1
if [ "$WORKLOAD" = pgbench ]; then
  "$BIN/pgbench" -n -c 2 -t "$TX" bench > "$SCRATCH/pgbench-run.log" 2>&1
else
  "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -d bench > /dev/null <<SQL
INSERT INTO dokumente (kunde, titel, body)
  SELECT 1 + g % 50000, 'Akte neu ' || g, text_of(g + 10000000) FROM generate_series(1, $SCALE * 10) g;
INSERT INTO ereignisse (kunde, at, art, daten)
  SELECT 1 + g % 50000, now(), 'upload', jsonb_build_object('n', g) FROM generate_series(1, $SCALE * 50) g;
UPDATE kunden SET updated = now(), email = 'neu' || id || '@example.org' WHERE id % 100 = 7;
UPDATE dokumente SET titel = titel || ' (geändert)' WHERE id > (SELECT max(id) - 2000 FROM dokumente) AND id % 10 = 0;
SQL
fi
sql bench "VACUUM ANALYZE" > /dev/null
night 2

# Restores of night 2, each into a new database.
sql postgres "CREATE DATABASE r_cista"
timed cista-restore "$CISTA" -r "$SCRATCH/repo-pg" pg restore latest --dbname r_cista --pg-bin "$BIN"
sql postgres "CREATE DATABASE r_cista_j2"
timed cista-restore-j2 "$CISTA" -r "$SCRATCH/repo-pg" pg restore latest --dbname r_cista_j2 --jobs 2 --pg-bin "$BIN"
sql postgres "CREATE DATABASE r_split"
timed cista-split-restore "$CISTA" -r "$SCRATCH/repo-pgj" pg restore latest --dbname r_split --pg-bin "$BIN"
sql postgres "CREATE DATABASE r_split_j2"
timed cista-split-restore-j2 "$CISTA" -r "$SCRATCH/repo-pgj" pg restore latest --dbname r_split_j2 --jobs 2 --pg-bin "$BIN"
sql postgres "CREATE DATABASE r_split_table"
timed cista-split-restore-table "$CISTA" -r "$SCRATCH/repo-pgj" pg restore latest --dbname r_split_table --table "$BIG_TABLE" --pg-bin "$BIN"
sql postgres "CREATE DATABASE r_pgrestore"
timed pgrestore-j2 "$BIN/pg_restore" -j 2 -d r_pgrestore "$SCRATCH/night2.fc"
sql postgres "CREATE DATABASE r_table"
timed cista-restore-table "$CISTA" -r "$SCRATCH/repo-pg" pg restore latest --dbname r_table --table "$BIG_TABLE" --pg-bin "$BIN"
# Every restore holds the same data as the database.
"$BIN/pg_dump" --no-owner bench | grep -v '^\\\(un\)\?restrict' | md5sum > "$SCRATCH/bench.md5"
for db in r_cista r_cista_j2 r_split r_split_j2 r_pgrestore; do
  "$BIN/pg_dump" --no-owner "$db" | grep -v '^\\\(un\)\?restrict' | md5sum | cmp -s - "$SCRATCH/bench.md5" \
    || { echo "restored database $db differs" >&2; exit 1; }
done

ZST2=$(stat -c %s "$SCRATCH/night2.sql.zst")
pct() { echo "scale=2; 100 * $1 / $2" | bc; }
echo
echo "| form | night 1 stored | night 2 added | added / database | added / pg_dump \\| zstd of night 2 |"
echo "|---|---:|---:|---:|---:|"
for f in pg pgj fc plain; do
  n1=$(added "$SCRATCH/summary-$f-1"); n2=$(added "$SCRATCH/summary-$f-2")
  case $f in pg) name="pg backup (-Fc -Z0)";; pgj) name="pg backup --jobs 2 (split)";; fc) name="pg_dump -Fc (default compression)";; plain) name="plain SQL";; esac
  echo "| $name | $n1 | $n2 | $(pct "$n2" "$DB_SIZE")% | $(pct "$n2" "$ZST2")% |"
done
echo
echo "pg_dump | zstd -3 of night 2: $ZST2 bytes; night 2 -Fc file: $(stat -c %s "$SCRATCH/night2.fc") bytes"
echo
echo "| step | wall s | peak RSS MiB |"
echo "|---|---:|---:|"
for l in pgdump-fc-1 cista-pg-1 cista-pgj-1 pgdump-fc-2 cista-pg-2 cista-pgj-2 pgrestore-j2 cista-restore \
    cista-restore-j2 cista-split-restore cista-split-restore-j2 cista-restore-table cista-split-restore-table; do
  printf '| %s | %s | %d |\n' "$l" "$(field "$l" 2)" $(( $(field "$l" 3) / 1024 ))
done

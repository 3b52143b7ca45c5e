#!/usr/bin/env bash
# Side by side on this machine, in one run: predlog's durable ingest (the
# embedded default, --sync on) against the PostgreSQL 15 audit table a team
# would build (JSONB payload, indexes on prediction id, (subject, served_at),
# (model, version, served_at); COPY and batched INSERT of 500 rows a
# transaction, synchronous_commit on). Same generated ~1 KB predictions, 50k
# subjects. Writes a Markdown table (with the machine and this command) to
# stdout; paste it into bench/RESULTS.md.
#
#   bench/compare/run.sh            # 1M events
#   bench/compare/run.sh --quick    # 100k events
#
# It initdb's its own cluster in a temp dir, on a Unix socket only, and removes
# it afterwards. Needs Debian's postgresql-15 (installed here if missing).
# Not measured yet: LogBatch, unary at fixed rates, disk per event and export.
set -euo pipefail
cd "$(dirname "$0")/../.."
EVENTS=1000000
if [ "${1:-}" = "--quick" ]; then EVENTS=100000; fi

if [ ! -x /usr/lib/postgresql/15/bin/initdb ]; then
  SUDO=""; if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get install -y -qq --no-install-recommends postgresql-15 >/dev/null
fi
deploy/build.sh >/dev/null

PG=/usr/lib/postgresql/15/bin
WORK=$(mktemp -d /tmp/predlog-compare.XXXXXX)
AS=()
if [ "$(id -u)" -eq 0 ]; then  # initdb refuses to run as root
  chown postgres "$WORK"
  AS=(runuser -u postgres --)
fi
cleanup() {
  "${AS[@]}" "$PG/pg_ctl" -D "$WORK/pg" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
"${AS[@]}" "$PG/initdb" -D "$WORK/pg" -A trust -U postgres >/dev/null
"${AS[@]}" "$PG/pg_ctl" -D "$WORK/pg" -l "$WORK/pg.log" -w \
  -o "-c listen_addresses='' -k $WORK -c shared_buffers=1GB -c max_wal_size=4GB" start >/dev/null
CONN="host=$WORK user=postgres dbname=postgres"

# predlogd in the embedded default (--sync on), its shards in the temp dir.
build/services/predlogd --data_dir="$WORK/predlog" --grpc_listen=127.0.0.1:0 --http_listen= \
  >"$WORK/predlogd.out" 2>"$WORK/predlogd.err" &
PREDLOGD=$!
trap 'kill $PREDLOGD 2>/dev/null || true; wait $PREDLOGD 2>/dev/null || true; cleanup' EXIT
for _ in $(seq 100); do grep -q "predlogd listening" "$WORK/predlogd.out" && break; sleep 0.1; done
TARGET=$(grep -o 'grpc=[^ ]*' "$WORK/predlogd.out" | cut -d= -f2)

# Ingest: predlog, COPY, INSERT; then reads of what each holds.
predlog_stream=$(build/bench/loadgen --target="$TARGET" --mode=stream --events="$EVENTS" --subjects=50000 \
  | grep -o '[0-9]* events/s' | grep -o '[0-9]*')
pg_copy=$(build/bench/pg_ingest --conninfo="$CONN" --mode=copy --events="$EVENTS")
pg_insert=$(build/bench/pg_ingest --conninfo="$CONN" --mode=insert --events="$EVENTS")
predlog_reads=$(build/bench/grpc_reads --target="$TARGET" --events="$EVENTS")
pg_reads=$(build/bench/pg_ingest --conninfo="$CONN" --mode=reads --events="$EVENTS")
field() { sed -E "s/.*$1=([0-9.]+).*/\1/" <<<"$2"; }
copy_rate=$(sed -E 's/.*events_per_s=([0-9]+).*/\1/' <<<"$pg_copy")
insert_rate=$(sed -E 's/.*events_per_s=([0-9]+).*/\1/' <<<"$pg_insert")

echo "Machine: $(nproc) vCPU $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB; $(date -u +%F)"
echo "Command: bench/compare/run.sh $*  ($EVENTS events, ~1 KB, 50k subjects, every ack/commit synced)"
echo
echo "| system | durable ingest, events/s | predlog / it |"
echo "|---|---:|---:|"
echo "| predlog LogStream (predlogd, embedded default, --sync) | $predlog_stream | 1.00 |"
awk -v p="$predlog_stream" -v c="$copy_rate" -v i="$insert_rate" 'BEGIN {
  printf "| PostgreSQL 15 COPY, 500 rows a transaction | %d | %.2f |\n", c, p / c;
  printf "| PostgreSQL 15 INSERT, 500 rows a transaction | %d | %.2f |\n", i, p / i }'
echo
echo "PostgreSQL backend CPU per event: COPY $(field backend_cpu_us_per_event "$pg_copy") µs, INSERT $(field backend_cpu_us_per_event "$pg_insert") µs"
echo
echo "Reads, one client, one call at a time, $(field rows_per_trail "$predlog_reads") rows per trail (gRPC for predlog, libpq prepared statements for PostgreSQL):"
echo
echo "| read | predlog p50 / p99 µs | PostgreSQL p50 / p99 µs |"
echo "|---|---:|---:|"
echo "| get by prediction id | $(field get_p50_us "$predlog_reads") / $(field get_p99_us "$predlog_reads") | $(field get_p50_us "$pg_reads") / $(field get_p99_us "$pg_reads") |"
echo "| subject trail | $(field trail_p50_us "$predlog_reads") / $(field trail_p99_us "$predlog_reads") | $(field trail_p50_us "$pg_reads") / $(field trail_p99_us "$pg_reads") |"

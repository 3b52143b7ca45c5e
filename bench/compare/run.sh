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
# Not measured yet: reads, disk per event and export (see bench/RESULTS.md).
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

# Interleaved: predlog, COPY, INSERT.
predlog_stream=$(build/bench/loadgen --mode=stream --events="$EVENTS" --raw_baseline=false \
  | grep -o '[0-9]* events/s' | grep -o '[0-9]*')
pg_copy=$(build/bench/pg_ingest --conninfo="$CONN" --mode=copy --events="$EVENTS")
pg_insert=$(build/bench/pg_ingest --conninfo="$CONN" --mode=insert --events="$EVENTS")
copy_rate=$(sed -E 's/.*events_per_s=([0-9]+).*/\1/' <<<"$pg_copy")
insert_rate=$(sed -E 's/.*events_per_s=([0-9]+).*/\1/' <<<"$pg_insert")

echo "Machine: $(nproc) vCPU $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB; $(date -u +%F)"
echo "Command: bench/compare/run.sh $*  ($EVENTS events, ~1 KB, 50k subjects, every ack/commit synced)"
echo
echo "| system | durable ingest, events/s | predlog / it |"
echo "|---|---:|---:|"
echo "| predlog LogStream (embedded default, --sync) | $predlog_stream | 1.00 |"
awk -v p="$predlog_stream" -v c="$copy_rate" -v i="$insert_rate" 'BEGIN {
  printf "| PostgreSQL 15 COPY, 500 rows a transaction | %d | %.2f |\n", c, p / c;
  printf "| PostgreSQL 15 INSERT, 500 rows a transaction | %d | %.2f |\n", i, p / i }'
echo
echo "PostgreSQL backend CPU per event: COPY $(sed -E 's/.*us_per_event=([0-9.]+).*/\1/' <<<"$pg_copy") µs, INSERT $(sed -E 's/.*us_per_event=([0-9.]+).*/\1/' <<<"$pg_insert") µs"

#!/usr/bin/env bash
# Side by side on this machine, in one run: predlog in the embedded default
# (predlogd with --sync on: every ack after a WAL fsync) against the
# PostgreSQL 15 audit table a team would build (JSONB payload, indexes on
# prediction id, (subject, served_at), (model, version, served_at);
# synchronous_commit on), and against RocksDB alone (the raw limit). The same
# generated ~1 KB predictions (30 features), 50k subjects. Measures durable
# ingest (LogStream, LogBatch; COPY, batched INSERT), unary Log at fixed rates,
# reads through each system's own client, disk per event after compaction /
# VACUUM, and export of everything to JSON lines. Prints a Markdown report
# (with the machine and this command) to stdout; bench/RESULTS.md holds it.
#
#   bench/compare/run.sh            # 1M events (about 15 minutes here)
#   bench/compare/run.sh --quick    # 100k events
#
# It initdb's its own cluster in a temp dir, on a Unix socket only, and removes
# it afterwards. Needs Debian's postgresql-15 (installed here if missing).
set -euo pipefail
cd "$(dirname "$0")/../.."
EVENTS=1000000
if [ "${1:-}" = "--quick" ]; then EVENTS=100000; fi
SUBJECTS=50000
UNARY_RATES=(1000 5000)
UNARY_SECONDS=20
# The same memory for caching to both: PostgreSQL's shared_buffers, and
# predlog's block caches (4 event shards and the registry's).
PG_BUFFERS_MB=1024
SHARD_CACHE_MB=$((PG_BUFFERS_MB / 5))

if [ ! -x /usr/lib/postgresql/15/bin/initdb ]; then
  SUDO=""; if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get install -y -qq --no-install-recommends postgresql-15 >/dev/null
fi
deploy/build.sh >/dev/null

PG=/usr/lib/postgresql/15/bin
WORK=$(mktemp -d /tmp/predlog-compare.XXXXXX)
chmod 755 "$WORK"
AS=()
if [ "$(id -u)" -eq 0 ]; then  # initdb refuses to run as root
  mkdir "$WORK/pg" && chown postgres "$WORK/pg"
  AS=(runuser -u postgres --)
fi
PREDLOGD=""
cleanup() {
  if [ -n "$PREDLOGD" ]; then kill "$PREDLOGD" 2>/dev/null || true; wait "$PREDLOGD" 2>/dev/null || true; fi
  "${AS[@]}" "$PG/pg_ctl" -D "$WORK/pg" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT
"${AS[@]}" "$PG/initdb" -D "$WORK/pg" -A trust -U postgres >/dev/null
"${AS[@]}" "$PG/pg_ctl" -D "$WORK/pg" -l "$WORK/pg/log" -w \
  -o "-c listen_addresses='' -k $WORK/pg -c shared_buffers=${PG_BUFFERS_MB}MB -c max_wal_size=4GB" start >/dev/null
CONN="host=$WORK/pg user=postgres dbname=postgres"

# predlogd in the embedded default (--sync is on by default), on an empty
# data directory under $WORK/$1; sets PREDLOGD (pid), TARGET and HTTP.
start_predlogd() {
  build/services/predlogd --data_dir="$WORK/$1" --grpc_listen=127.0.0.1:0 --shard_cache_mb=$SHARD_CACHE_MB \
    --http_listen=127.0.0.1:0 >"$WORK/$1.out" 2>"$WORK/$1.err" &
  PREDLOGD=$!
  for _ in $(seq 200); do grep -q "predlogd listening" "$WORK/$1.out" && break; sleep 0.1; done
  TARGET=$(grep -o 'grpc=[^ ]*' "$WORK/$1.out" | cut -d= -f2)
  HTTP=$(grep -o 'http=[^ ]*' "$WORK/$1.out" | cut -d= -f2)
}
stop_predlogd() { kill "$PREDLOGD"; wait "$PREDLOGD" || true; PREDLOGD=""; }
# CPU seconds (user + system) the process $1 has used so far.
cpu_seconds() { awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"; }
# Waits (at most 3 minutes) until process $1 used under 5% of a core over 2 s:
# reads are measured against a settled store, not beside the load's
# compactions.
wait_idle() {
  local a b
  for _ in $(seq 90); do
    a=$(cpu_seconds "$1"); sleep 2; b=$(cpu_seconds "$1")
    if awk -v a="$a" -v b="$b" 'BEGIN { exit !(b - a < 0.1) }'; then return; fi
  done
}
# The value of key=$1 in the line $2.
field() { sed -E "s/.*(^| )$1=([0-9.]+).*/\2/" <<<"$2"; }
# Sum over the event shards of the /metrics series $1.
metric_sum() {
  curl -s "http://$HTTP/metrics" | awk -v s="$1{shard=\"predlog.events-" 'index($0, s) == 1 { t += $2 } END { print t + 0 }'
}
# loadgen against $TARGET; prints "rate cpu_us_per_event p50 p99 p999" (CPU
# of predlogd plus loadgen's clients, per acked event).
run_loadgen() {
  local before out after client
  before=$(cpu_seconds "$PREDLOGD")
  out=$(build/bench/loadgen --target="$TARGET" --subjects=$SUBJECTS --raw_baseline=false "$@")
  after=$(cpu_seconds "$PREDLOGD")
  client=$(grep -o 'CPU of this process while logging: [0-9.]*' <<<"$out" | grep -o '[0-9.]*$')
  OUT="$out" awk -v b="$before" -v a="$after" -v c="$client" 'BEGIN {
    o = ENVIRON["OUT"]; match(o, /in [0-9.]+ s: [0-9]+ events\/s/); split(substr(o, RSTART, RLENGTH), r, " ");
    n = split(o, w, /[ \n]+/); acked = 0;
    for (i = 1; i <= n; ++i) if (w[i] == "(folded)") acked = w[i + 1];
    for (i = 1; i <= n; ++i) if (w[i] == "p50") { p50 = w[i + 1]; p99 = w[i + 3]; p999 = w[i + 5] }
    printf "%d %.0f %s %s %s\n", r[4], (a - b) * 1e6 / acked + c, p50, p99, p999 }'
}

# --- predlog: LogBatch, then unary at fixed rates, each on an empty store.
start_predlogd batch
read -r batch_rate batch_cpu _ <<<"$(run_loadgen --mode=batch --batch_size=500 --events=$EVENTS)"
stop_predlogd
unary_rows=()
for rate in "${UNARY_RATES[@]}"; do
  start_predlogd "unary$rate"
  read -r got _ p50 p99 p999 <<<"$(run_loadgen --mode=unary --rate="$rate" --clients=4 \
    --events=$((rate * UNARY_SECONDS)))"
  unary_rows+=("| unary Log at $rate/s, $UNARY_SECONDS s (open loop, 4 clients) | $got/s acked | $p50 | $p99 | $p999 |")
  stop_predlogd
done

# --- predlog: LogStream; the reads, the export and the disk figure use its store.
start_predlogd stream
read -r stream_rate stream_cpu _ <<<"$(run_loadgen --mode=stream --events=$EVENTS)"
group=$(awk -v e="$(metric_sum predlog_events_folded_total)" \
  -v g="$(metric_sum predlog_shard_group_commits_total)" 'BEGIN { printf "%.0f", e / g }')
wait_idle "$PREDLOGD"
predlog_reads=$(build/bench/grpc_reads --target="$TARGET" --events=$EVENTS --subjects=$SUBJECTS)
start=$(date +%s.%N)
build/services/predlog --server="$TARGET" export --all --format jsonl --out="$WORK/predlog.jsonl" >/dev/null
predlog_export=$(awk -v s="$start" -v e="$(date +%s.%N)" -v n=$EVENTS 'BEGIN { printf "%.0f", n / (e - s) }')
rm -f "$WORK"/predlog.jsonl*
stop_predlogd
predlog_disk=$(build/bench/shard_disk --data_dir="$WORK/stream")
rm -rf "$WORK/stream"

# --- RocksDB alone, in groups of the size predlog's group commits reached.
raw=$(build/bench/raw_rocksdb --dir="$WORK/raw" --events=$EVENTS --group="$group" --subjects=$SUBJECTS)
rm -rf "$WORK/raw"

# --- PostgreSQL: INSERT, then COPY (whose table the reads, size and export use).
pg_insert=$(build/bench/pg_audit --conninfo="$CONN" --mode=insert --events=$EVENTS --subjects=$SUBJECTS)
pg_copy=$(build/bench/pg_audit --conninfo="$CONN" --mode=copy --events=$EVENTS --subjects=$SUBJECTS)
"$PG/psql" "$CONN" -qc CHECKPOINT
pg_reads=$(build/bench/pg_audit --conninfo="$CONN" --mode=reads --events=$EVENTS --subjects=$SUBJECTS)
pg_export=$(build/bench/pg_audit --conninfo="$CONN" --mode=export --out="$WORK/pg.jsonl")
rm -f "$WORK/pg.jsonl"
pg_size=$(build/bench/pg_audit --conninfo="$CONN" --mode=size)

# --- The report.
best=$((stream_rate > batch_rate ? stream_rate : batch_rate))
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
copy_rate=$(field events_per_s "$pg_copy")
insert_rate=$(field events_per_s "$pg_insert")
echo "Machine: $(nproc) vCPU $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB, $(df -T "$WORK" | awk 'NR==2{print $2}') at $(dirname "$WORK"); $(date -u +%F)"
echo "Command: bench/compare/run.sh $*  ($EVENTS events of ~1 KB, $SUBJECTS subjects; every ack/commit after a WAL fsync)"
echo
echo "| durable ingest | events/s | CPU µs per event | predlog (best) / it |"
echo "|---|---:|---:|---:|"
echo "| predlog LogStream (4 streams) | $stream_rate | $stream_cpu | |"
echo "| predlog LogBatch (4 clients, 500 a call) | $batch_rate | $batch_cpu | |"
echo "| PostgreSQL COPY, 500 rows a transaction | $copy_rate | $(field backend_cpu_us_per_event "$pg_copy") (backend only) | **$(ratio "$best" "$copy_rate")** |"
echo "| PostgreSQL INSERT, 500 rows a transaction | $insert_rate | $(field backend_cpu_us_per_event "$pg_insert") (backend only) | **$(ratio "$best" "$insert_rate")** |"
echo "| RocksDB alone: Put of the same bytes, 4 DBs, groups of $group, sync | $(field events_per_s "$raw") | $(field cpu_us_per_event "$raw") | $(ratio "$best" "$(field events_per_s "$raw")") |"
echo
echo "predlog's CPU is predlogd's plus the load generator's clients; PostgreSQL's is its backend's alone (not its WAL writer, not the client)."
echo
echo "| unary Log (predlog) | acked | p50 ms | p99 ms | p999 ms |"
echo "|---|---:|---:|---:|---:|"
printf '%s\n' "${unary_rows[@]}"
echo
echo "Reads, one client, one call at a time, $(field rows_per_trail "$predlog_reads") rows per trail (gRPC for predlog, libpq prepared statements for PostgreSQL), each store settled (predlogd idle after its compactions, PostgreSQL after a CHECKPOINT):"
echo
echo "| read | predlog p50 / p99 µs | PostgreSQL p50 / p99 µs | p99 predlog / PostgreSQL |"
echo "|---|---:|---:|---:|"
echo "| get by prediction id | $(field get_p50_us "$predlog_reads") / $(field get_p99_us "$predlog_reads") | $(field get_p50_us "$pg_reads") / $(field get_p99_us "$pg_reads") | $(ratio "$(field get_p99_us "$predlog_reads")" "$(field get_p99_us "$pg_reads")") |"
echo "| subject trail | $(field trail_p50_us "$predlog_reads") / $(field trail_p99_us "$predlog_reads") | $(field trail_p50_us "$pg_reads") / $(field trail_p99_us "$pg_reads") | $(ratio "$(field trail_p99_us "$predlog_reads")" "$(field trail_p99_us "$pg_reads")") |"
echo "| the floor: gRPC's health check (no work behind it), same client | $(field health_p50_us "$predlog_reads") / $(field health_p99_us "$predlog_reads") | | $(ratio "$(field health_p99_us "$predlog_reads")" "$(field get_p99_us "$pg_reads")") |"
echo
echo "| | predlog | PostgreSQL | predlog / PostgreSQL |"
echo "|---|---:|---:|---:|"
echo "| bytes on disk per event (after a full compaction / VACUUM ANALYZE) | $(field bytes_per_event "$predlog_disk") | $(field bytes_per_event "$pg_size") | **$(ratio "$(field bytes_per_event "$predlog_disk")" "$(field bytes_per_event "$pg_size")")** |"
echo "| export of everything to JSON lines, events/s | $predlog_export | $(field events_per_s "$pg_export") | $(ratio "$predlog_export" "$(field events_per_s "$pg_export")") |"
echo
echo "predlog's disk before its compaction: $(awk -v b="$(field bytes_before "$predlog_disk")" -v n="$(field records "$predlog_disk")" 'BEGIN { printf "%.0f", b / n }') bytes per event. predlog's export is \`predlog export --all --format jsonl\` (records with their index, leaf hash and chain, plus a manifest, fsynced); PostgreSQL's is COPY (SELECT payload ...) TO STDOUT through libpq into a file, fsynced."

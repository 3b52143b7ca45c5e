// The PostgreSQL side of bench/compare: the audit table a team would build
// instead of predlog, loaded with the same generated predictions loadgen logs
// (tests/testing/events.h MakeSizedPredictionPayload, as protobuf JSON in a
// JSONB column), by COPY or by batched multi-row INSERT, each batch its own
// transaction with synchronous_commit on (a WAL fsync per commit).
//
// Prints one line: mode, events, seconds, events/s, and the CPU the server
// backend spent per event (µs, from /proc/<backend pid>/stat; PostgreSQL's
// WAL writer and checkpointer are not counted). Against the table a load left:
// --mode=reads measures reads, as bench/compare/grpc_reads.cc does for
// predlog; --mode=size VACUUMs it and prints its bytes on disk (heap, TOAST
// and indexes); --mode=export writes every payload as JSON lines to --out
// (COPY ... TO STDOUT through libpq, then fsync), as `predlog export` does.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "bench/measure.h"
#include "google/protobuf/util/json_util.h"
#include "libpq-fe.h"
#include "predlog/v1/events.pb.h"
#include "storage/timestamps.h"
#include "tests/testing/events.h"

using ::predlog::bench::Percentile;

ABSL_FLAG(std::string, conninfo, "", "libpq connection string (required).");
ABSL_FLAG(std::string, mode, "copy",
          "copy or insert (multi-row INSERT per batch) load the table; against a loaded "
          "table, reads (one client, one query at a time: get by prediction_id and a "
          "subject's trail, prepared statements, p50/p99 in µs), size (bytes on disk after "
          "VACUUM) or export (every payload as JSON lines to --out).");
ABSL_FLAG(int, queries, 20000, "reads: queries of each kind.");
ABSL_FLAG(std::string, out, "", "export: the JSON lines file to write.");
ABSL_FLAG(int64_t, events, 100000, "Rows to load.");
ABSL_FLAG(int, batch, 500, "Rows per transaction.");
ABSL_FLAG(int, event_bytes, 1024, "Approximate serialized event size (as loadgen).");
ABSL_FLAG(int64_t, subjects, 50000, "Distinct subjects.");

namespace {

struct Row {
  std::string prediction_id, subject_id, served_at, model, version, payload;
};

Row MakeRow(int64_t n, int bytes, int64_t subjects) {
  predlog::v1::AuditEvent event;
  event.ParseFromString(predlog::testing::MakeSizedPredictionPayload(
      static_cast<uint64_t>(n), static_cast<size_t>(bytes), static_cast<uint64_t>(subjects)));
  const predlog::v1::PredictionLogged& p = event.prediction_logged();
  Row row;
  row.prediction_id = p.prediction_id();
  row.subject_id = p.subject_id();
  row.served_at = absl::FormatTime(
      "%Y-%m-%dT%H:%M:%E6SZ", predlog::storage::TimeFromProto(p.served_at()), absl::UTCTimeZone());
  row.model = p.model().name();
  row.version = p.model().version();
  (void)google::protobuf::util::MessageToJsonString(event, &row.payload);
  return row;
}

bool Exec(PGconn* conn, const std::string& sql) {
  PGresult* r = PQexec(conn, sql.c_str());
  const bool ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
  if (!ok) std::cerr << "pg_audit: " << sql.substr(0, 80) << ": " << PQerrorMessage(conn);
  PQclear(r);
  return ok;
}

// A field of COPY's text format: backslash, tab, newline and carriage return
// escaped (PostgreSQL 15 docs, COPY, "Text Format").
std::string TextField(const std::string& s) {
  return absl::StrReplaceAll(s, {{"\\", "\\\\"}, {"\t", "\\t"}, {"\n", "\\n"}, {"\r", "\\r"}});
}

// Same ids and subjects as grpc_reads, the same random sequence.
int Reads(PGconn* conn) {
  const int64_t events = absl::GetFlag(FLAGS_events);
  const int64_t subjects = std::min(events, absl::GetFlag(FLAGS_subjects));
  for (const char* sql :
       {"PREPARE get(text) AS SELECT payload FROM predictions WHERE prediction_id = $1",
        "PREPARE trail(text) AS SELECT payload FROM predictions WHERE subject_id = $1 "
        "ORDER BY served_at LIMIT 100"}) {
    if (!Exec(conn, sql)) return 1;
  }
  std::mt19937_64 rng(42);
  std::vector<double> get_us, trail_us;
  size_t trail_rows = 0;
  for (int q = 0; q < absl::GetFlag(FLAGS_queries); ++q) {
    const int64_t n = static_cast<int64_t>(rng() % static_cast<uint64_t>(events));
    const std::string id = absl::StrCat("p", n), subject = absl::StrCat("s", n % subjects);
    for (int kind = 0; kind < 2; ++kind) {
      const char* value = kind == 0 ? id.c_str() : subject.c_str();
      const auto start = std::chrono::steady_clock::now();
      PGresult* r =
          PQexecPrepared(conn, kind == 0 ? "get" : "trail", 1, &value, nullptr, nullptr, 0);
      const double us =
          std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start)
              .count();
      if (PQresultStatus(r) != PGRES_TUPLES_OK || (kind == 0 && PQntuples(r) != 1)) {
        std::cerr << "pg_audit: reads: " << value << ": " << PQerrorMessage(conn);
        return 1;
      }
      if (kind == 1) trail_rows += static_cast<size_t>(PQntuples(r));
      PQclear(r);
      (kind == 0 ? get_us : trail_us).push_back(us);
    }
  }
  std::printf(
      "get_p50_us=%.0f get_p99_us=%.0f trail_p50_us=%.0f trail_p99_us=%.0f rows_per_trail=%.1f\n",
      Percentile(get_us, 0.5), Percentile(get_us, 0.99), Percentile(trail_us, 0.5),
      Percentile(trail_us, 0.99),
      static_cast<double>(trail_rows) / static_cast<double>(trail_us.size()));
  return 0;
}

// VACUUM (nothing to reclaim in an append-only table, but it sets the
// visibility map and statistics as autovacuum eventually would), then the
// table's whole size on disk.
int Size(PGconn* conn) {
  if (!Exec(conn, "VACUUM ANALYZE predictions")) return 1;
  PGresult* r = PQexec(conn,
                       "SELECT pg_total_relation_size('predictions'), "
                       "pg_indexes_size('predictions'), count(*) FROM predictions");
  if (PQresultStatus(r) != PGRES_TUPLES_OK) {
    std::cerr << "pg_audit: size: " << PQerrorMessage(conn);
    return 1;
  }
  const double total = std::stod(PQgetvalue(r, 0, 0));
  const double indexes = std::stod(PQgetvalue(r, 0, 1));
  const double rows = std::stod(PQgetvalue(r, 0, 2));
  PQclear(r);
  std::printf("rows=%.0f bytes=%.0f index_bytes=%.0f bytes_per_event=%.0f\n", rows, total, indexes,
              total / rows);
  return 0;
}

// Every payload, in the primary key's order, one JSON line each.
int Export(PGconn* conn) {
  const std::string path = absl::GetFlag(FLAGS_out);
  FILE* out = std::fopen(path.c_str(), "w");
  if (out == nullptr) {
    std::cerr << "pg_audit: --out: cannot open " << path << "\n";
    return 1;
  }
  const auto start = std::chrono::steady_clock::now();
  PGresult* r = PQexec(conn, "COPY (SELECT payload FROM predictions) TO STDOUT");
  if (PQresultStatus(r) != PGRES_COPY_OUT) {
    std::cerr << "pg_audit: export: " << PQerrorMessage(conn);
    return 1;
  }
  PQclear(r);
  int64_t rows = 0;
  char* line = nullptr;
  int n = 0;
  while ((n = PQgetCopyData(conn, &line, 0)) > 0) {
    std::fwrite(line, 1, static_cast<size_t>(n), out);
    PQfreemem(line);
    ++rows;
  }
  r = PQgetResult(conn);
  if (n != -1 || PQresultStatus(r) != PGRES_COMMAND_OK) {
    std::cerr << "pg_audit: export: " << PQerrorMessage(conn);
    return 1;
  }
  PQclear(r);
  if (std::fflush(out) != 0 || fsync(fileno(out)) != 0 || std::fclose(out) != 0) {
    std::cerr << "pg_audit: --out: write " << path << " failed\n";
    return 1;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("mode=export events=%lld seconds=%.2f events_per_s=%.0f\n",
              static_cast<long long>(rows), seconds, static_cast<double>(rows) / seconds);
  return 0;
}

double BackendCpuSeconds(int pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  std::istringstream in(line.substr(line.rfind(')') + 2));
  std::string field;
  long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && in >> field; ++i) {
    if (i == 14) utime = std::stol(field);
    if (i == 15) stime = std::stol(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const std::string mode = absl::GetFlag(FLAGS_mode);
  if (mode != "copy" && mode != "insert" && mode != "reads" && mode != "size" && mode != "export") {
    std::cerr << "pg_audit: --mode must be copy, insert, reads, size or export\n";
    return 2;
  }
  PGconn* conn = PQconnectdb(absl::GetFlag(FLAGS_conninfo).c_str());
  if (PQstatus(conn) != CONNECTION_OK) {
    std::cerr << "pg_audit: --conninfo: " << PQerrorMessage(conn);
    return 1;
  }
  if (mode == "reads" || mode == "size" || mode == "export") {
    const int status = mode == "reads" ? Reads(conn) : mode == "size" ? Size(conn) : Export(conn);
    PQfinish(conn);
    return status;
  }
  if (!Exec(conn, "SET synchronous_commit = on") ||
      !Exec(conn, "DROP TABLE IF EXISTS predictions") ||
      !Exec(conn,
            "CREATE TABLE predictions (prediction_id text NOT NULL, subject_id text NOT NULL, "
            "served_at timestamptz NOT NULL, model text NOT NULL, version text NOT NULL, "
            "payload jsonb NOT NULL)") ||
      !Exec(conn, "CREATE UNIQUE INDEX ON predictions (prediction_id)") ||
      !Exec(conn, "CREATE INDEX ON predictions (subject_id, served_at)") ||
      !Exec(conn, "CREATE INDEX ON predictions (model, version, served_at)")) {
    return 1;
  }
  const int64_t events = absl::GetFlag(FLAGS_events);
  const int batch = absl::GetFlag(FLAGS_batch);
  // Rows are made before the clock starts, as loadgen makes its requests.
  std::vector<Row> rows;
  rows.reserve(static_cast<size_t>(events));
  for (int64_t n = 0; n < events; ++n) {
    rows.push_back(MakeRow(n, absl::GetFlag(FLAGS_event_bytes), absl::GetFlag(FLAGS_subjects)));
  }
  const int backend = PQbackendPID(conn);
  const double cpu_before = BackendCpuSeconds(backend);
  const auto start = std::chrono::steady_clock::now();
  for (int64_t first = 0; first < events; first += batch) {
    const int64_t last = std::min<int64_t>(events, first + batch);
    if (!Exec(conn, "BEGIN")) return 1;
    if (mode == "copy") {
      PGresult* r = PQexec(conn, "COPY predictions FROM STDIN");
      if (PQresultStatus(r) != PGRES_COPY_IN) {
        std::cerr << "pg_audit: COPY: " << PQerrorMessage(conn);
        return 1;
      }
      PQclear(r);
      std::string data;
      for (int64_t i = first; i < last; ++i) {
        const Row& row = rows[static_cast<size_t>(i)];
        absl::StrAppend(&data, TextField(row.prediction_id), "\t", TextField(row.subject_id), "\t",
                        row.served_at, "\t", TextField(row.model), "\t", TextField(row.version),
                        "\t", TextField(row.payload), "\n");
      }
      if (PQputCopyData(conn, data.data(), static_cast<int>(data.size())) != 1 ||
          PQputCopyEnd(conn, nullptr) != 1) {
        std::cerr << "pg_audit: COPY data: " << PQerrorMessage(conn);
        return 1;
      }
      r = PQgetResult(conn);
      if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        std::cerr << "pg_audit: COPY end: " << PQerrorMessage(conn);
        return 1;
      }
      PQclear(r);
      while ((r = PQgetResult(conn)) != nullptr) PQclear(r);
    } else {
      std::string sql = "INSERT INTO predictions VALUES ";
      std::vector<const char*> params;
      for (int64_t i = first; i < last; ++i) {
        const Row& row = rows[static_cast<size_t>(i)];
        const size_t k = params.size();
        absl::StrAppend(&sql, i > first ? "," : "", "($", k + 1, ",$", k + 2, ",$", k + 3, ",$",
                        k + 4, ",$", k + 5, ",$", k + 6, ")");
        for (const std::string* v : {&row.prediction_id, &row.subject_id, &row.served_at,
                                     &row.model, &row.version, &row.payload}) {
          params.push_back(v->c_str());
        }
      }
      PGresult* r = PQexecParams(conn, sql.c_str(), static_cast<int>(params.size()), nullptr,
                                 params.data(), nullptr, nullptr, 0);
      if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        std::cerr << "pg_audit: INSERT: " << PQerrorMessage(conn);
        return 1;
      }
      PQclear(r);
    }
    if (!Exec(conn, "COMMIT")) return 1;
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double cpu = BackendCpuSeconds(backend) - cpu_before;
  std::printf("mode=%s events=%lld seconds=%.2f events_per_s=%.0f backend_cpu_us_per_event=%.1f\n",
              mode.c_str(), static_cast<long long>(events), seconds,
              static_cast<double>(events) / seconds, cpu * 1e6 / static_cast<double>(events));
  PQfinish(conn);
  return 0;
}

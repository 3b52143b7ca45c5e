// How the predlog CLI shows things to people: aligned tables, ISO 8601 times,
// bars for explanations, a progress bar for long operations. Pure functions
// over strings, so the formats are tested without a server.
#ifndef PREDLOG_SERVICES_CLI_CLI_FORMAT_H_
#define PREDLOG_SERVICES_CLI_CLI_FORMAT_H_

#include <cstdint>
#include <ostream>
#include <streambuf>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/message.h"
#include "google/protobuf/timestamp.pb.h"
#include "predlog/v1/events.pb.h"
#include "predlog/v1/replay.pb.h"

namespace predlog::services {

// `text` as it is safe to show on a terminal. Bytes that a terminal would
// act on instead of showing become escapes: C0 controls (newline and tab
// too) and DEL as \x1b, bytes that are not UTF-8 as \xff, and C1 controls,
// the line/paragraph separators and the bidi overrides (which reorder what an
// auditor reads) as \u009b. Printable UTF-8 (accents, the bars) passes. A
// backslash is left alone, so "\x1b" typed literally reads the same as an
// escaped ESC: --json gives the exact bytes.
std::string Printable(absl::string_view text);

// Writes through to `dest` with Printable's escaping, except that a newline
// passes: the CLI's own lines end with it, so a value that may hold one goes
// through Printable first (Table does). The CLI's human output and all of
// its stderr go through one of these, so no stored byte reaches a terminal
// raw. A UTF-8 sequence split across writes is held until it completes; the
// destructor escapes an unfinished one. Single-threaded; `dest` must outlive it.
class PrintableStreambuf : public std::streambuf {
 public:
  explicit PrintableStreambuf(std::streambuf* dest) : dest_(dest) {}
  ~PrintableStreambuf() override;

 protected:
  int_type overflow(int_type c) override;
  std::streamsize xsputn(const char* s, std::streamsize n) override;
  int sync() override;

 private:
  bool WritePending(bool final);

  std::streambuf* const dest_;
  std::string pending_;
};

// Rows of cells under a header, each column padded to its widest cell. Cells
// are shown through Printable.
class Table {
 public:
  explicit Table(std::vector<std::string> header) : header_(std::move(header)) {}
  void AddRow(std::vector<std::string> cells) { rows_.push_back(std::move(cells)); }
  size_t rows() const { return rows_.size(); }
  // Two spaces between columns; the last column is not padded.
  void Print(std::ostream& out) const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

// "2026-11-27T10:00:00.123Z" (UTC, milliseconds); "-" for an unset time.
std::string IsoTime(absl::Time t);
std::string IsoTime(const google::protobuf::Timestamp& ts);
// Parses RFC 3339 ("2026-11-27T10:00:00Z", with optional fraction and
// offset) or a date ("2026-11-27", midnight UTC). INVALID_ARGUMENT otherwise.
absl::StatusOr<absl::Time> ParseTime(absl::string_view text);

// A feature's or field's value as text: numbers shortest round-trip, "missing"
// when unset.
std::string FeatureValue(const predlog::v1::Feature& feature);
// The shortest decimal text that reads back as `v` ("0.464", not 0.46403110027).
std::string ShortestFloat(float v);
std::string ValueText(const predlog::v1::Value& value);
// Scores joined by ", ", then the label in parentheses when there is one.
std::string OutputText(const predlog::v1::PredictionOutput& output);

// One row of a sorted bar list: "  name = value   +0.8123 ████████".
// `scale` is the largest magnitude in the list (bars are relative to it).
std::string BarRow(absl::string_view name, absl::string_view value, double contribution,
                   double scale, size_t name_width, size_t value_width);

// The protobuf JSON mapping on one line, zeros shown (for an audit trail a
// missing number reads as unknown).
std::string ToJson(const google::protobuf::Message& message);

// A lineage graph (Replay/GetLineage, the graph of GetImpact) for people: an
// indented tree from its root, each line a node with what matters about it
// and the relation it was reached by; a node met again says "(above)"
// instead of repeating its subtree. Edges point upstream: followed as they
// point (a lineage: "trained on: dataset:...") or, with `downstream`, against
// them (an impact: "trained on it: model:...").
void PrintLineageTree(const predlog::v1::Lineage& graph, bool downstream, std::ostream& out);
// The same graph in Graphviz's dot language: shapes by kind, unregistered
// nodes dashed, edges labelled with their relation.
void PrintLineageDot(const predlog::v1::Lineage& graph, std::ostream& out);

// "name@version" -> (name, version); INVALID_ARGUMENT naming `flag`.
absl::StatusOr<std::pair<std::string, std::string>> ParseModelRef(absl::string_view text,
                                                                  absl::string_view flag);

// A progress bar on a terminal (stderr); silent when it is not one.
class Progress {
 public:
  Progress(absl::string_view what, uint64_t total);
  ~Progress();
  void Update(uint64_t done);
  void Done();

 private:
  std::string what_;
  uint64_t total_;
  bool tty_;
  bool done_ = false;
  absl::Time last_draw_ = absl::InfinitePast();
  absl::Time start_;
};

}  // namespace predlog::services

#endif  // PREDLOG_SERVICES_CLI_CLI_FORMAT_H_

// Reading an export back: RecordReader cuts a file into records (lines; in
// CSV, rows whose quoted cells may hold line breaks), and ReadJsonLine and
// ReadCsvRow pick out what a record claims (shard, index, digests, event
// bytes) for the verifier to check. The formats are the grammar at the top of
// trail_export.cc.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/util/time_util.h"
#include "services/export/trail_internal.h"
#include "services/export/trail_json.h"

namespace predlog::services::export_internal {

namespace {

// Bytes read per read(2) when verifying.
constexpr size_t kReadBytes = 4 << 20;

// A strict JSON reader for one line: enough to pick a TrailLine's fields out
// and to check that everything else is well-formed JSON.
class JsonReader {
 public:
  explicit JsonReader(absl::string_view text)
      : p_(text.data()), begin_(text.data()), end_(text.data() + text.size()) {}

  size_t offset() const { return static_cast<size_t>(p_ - begin_); }
  bool AtEnd() const { return p_ == end_; }
  void SkipSpace() {
    while (p_ < end_ && (*p_ == ' ' || *p_ == '\t' || *p_ == '\r' || *p_ == '\n')) ++p_;
  }
  bool Consume(char c) {
    SkipSpace();
    if (p_ < end_ && *p_ == c) {
      ++p_;
      return true;
    }
    return false;
  }
  bool Peek(char c) {
    SkipSpace();
    return p_ < end_ && *p_ == c;
  }

  // A string, unescaped into *out (nullptr: skipped).
  bool String(std::string* out) {
    if (!Consume('"')) return false;
    while (p_ < end_) {
      const char c = *p_++;
      if (c == '"') return true;
      if (static_cast<unsigned char>(c) < 0x20) return false;
      if (c != '\\') {
        if (out != nullptr) out->push_back(c);
        continue;
      }
      if (p_ == end_) return false;
      const char e = *p_++;
      char plain = 0;
      switch (e) {
        case '"':
        case '\\':
        case '/':
          plain = e;
          break;
        case 'b':
          plain = '\b';
          break;
        case 'f':
          plain = '\f';
          break;
        case 'n':
          plain = '\n';
          break;
        case 'r':
          plain = '\r';
          break;
        case 't':
          plain = '\t';
          break;
        case 'u': {
          uint32_t cp;
          if (!Hex4(&cp)) return false;
          if (cp >= 0xd800 && cp < 0xdc00) {
            uint32_t low;
            if (end_ - p_ < 2 || p_[0] != '\\' || p_[1] != 'u') return false;
            p_ += 2;
            if (!Hex4(&low) || low < 0xdc00 || low > 0xdfff) return false;
            cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
          } else if (cp >= 0xdc00 && cp <= 0xdfff) {
            return false;
          }
          if (out != nullptr) AppendUtf8(cp, out);
          continue;
        }
        default:
          return false;
      }
      if (out != nullptr) out->push_back(plain);
    }
    return false;
  }

  bool Value(int depth) {
    if (depth > 64) return false;
    SkipSpace();
    if (p_ == end_) return false;
    switch (*p_) {
      case '"':
        return String(nullptr);
      case '{': {
        ++p_;
        if (Consume('}')) return true;
        do {
          if (!String(nullptr) || !Consume(':') || !Value(depth + 1)) return false;
        } while (Consume(','));
        return Consume('}');
      }
      case '[': {
        ++p_;
        if (Consume(']')) return true;
        do {
          if (!Value(depth + 1)) return false;
        } while (Consume(','));
        return Consume(']');
      }
      case 't':
        return Literal("true");
      case 'f':
        return Literal("false");
      case 'n':
        return Literal("null");
      default:
        return Number(nullptr);
    }
  }

  // A JSON number; its text into *text when not null.
  bool Number(absl::string_view* text) {
    SkipSpace();
    const char* start = p_;
    if (p_ < end_ && *p_ == '-') ++p_;
    if (!Digits()) return false;
    if (p_ < end_ && *p_ == '.') {
      ++p_;
      if (!Digits()) return false;
    }
    if (p_ < end_ && (*p_ == 'e' || *p_ == 'E')) {
      ++p_;
      if (p_ < end_ && (*p_ == '+' || *p_ == '-')) ++p_;
      if (!Digits()) return false;
    }
    if (text != nullptr) *text = absl::string_view(start, static_cast<size_t>(p_ - start));
    return true;
  }

 private:
  bool Digits() {
    const char* start = p_;
    while (p_ < end_ && *p_ >= '0' && *p_ <= '9') ++p_;
    return p_ > start;
  }
  bool Literal(absl::string_view word) {
    if (static_cast<size_t>(end_ - p_) < word.size() ||
        absl::string_view(p_, word.size()) != word) {
      return false;
    }
    p_ += word.size();
    return true;
  }
  bool Hex4(uint32_t* cp) {
    if (end_ - p_ < 4) return false;
    *cp = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = *p_++;
      int v;
      if (c >= '0' && c <= '9') {
        v = c - '0';
      } else if (c >= 'a' && c <= 'f') {
        v = c - 'a' + 10;
      } else if (c >= 'A' && c <= 'F') {
        v = c - 'A' + 10;
      } else {
        return false;
      }
      *cp = (*cp << 4) | static_cast<uint32_t>(v);
    }
    return true;
  }

  const char* p_;
  const char* const begin_;
  const char* const end_;
};

}  // namespace

// ---------------------------------------------------------------------------
// RecordReader

absl::StatusOr<std::unique_ptr<RecordReader>> RecordReader::Open(const std::string& path,
                                                                 bool csv) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(errno, "cannot open", path);
  return std::unique_ptr<RecordReader>(new RecordReader(path, fd, csv));
}

RecordReader::RecordReader(std::string path, int fd, bool csv)
    : path_(std::move(path)), fd_(fd), csv_(csv) {}

RecordReader::~RecordReader() { ::close(fd_); }

absl::StatusOr<bool> RecordReader::Next(absl::string_view* record) {
  while (true) {
    const size_t end = FindEnd();
    if (end != std::string::npos || (eof_ && pos_ < buffer_.size())) {
      const size_t stop = end != std::string::npos ? end : buffer_.size();
      *record = absl::string_view(buffer_.data() + pos_, stop - pos_);
      line_ = next_line_;
      next_line_ += std::count(record->begin(), record->end(), '\n');
      pos_ = stop;
      return true;
    }
    if (eof_) return false;
    buffer_.erase(0, pos_);
    pos_ = 0;
    const size_t old = buffer_.size();
    buffer_.resize(old + kReadBytes);
    ssize_t n;
    do {
      n = ::read(fd_, &buffer_[old], kReadBytes);
    } while (n < 0 && errno == EINTR);
    if (n < 0) return ErrnoStatus(errno, "cannot read", path_);
    buffer_.resize(old + static_cast<size_t>(n));
    hasher_.Update(absl::string_view(buffer_.data() + old, static_cast<size_t>(n)));
    bytes_ += static_cast<uint64_t>(n);
    if (n == 0) eof_ = true;
  }
}

size_t RecordReader::FindEnd() const {
  if (!csv_) {
    const size_t nl = buffer_.find('\n', pos_);
    return nl == std::string::npos ? nl : nl + 1;
  }
  bool quoted = false;
  for (size_t i = pos_; i < buffer_.size(); ++i) {
    const char c = buffer_[i];
    if (c == '"') quoted = !quoted;
    if (c == '\n' && !quoted) return i + 1;
  }
  return std::string::npos;
}

// ---------------------------------------------------------------------------
// Claimed records

// Reads a JSON line's TrailLine fields. On failure returns why.
std::optional<std::string> ReadJsonLine(absl::string_view line, ClaimedRecord* out) {
  if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
  JsonReader json(line);
  const auto fail = [&json](absl::string_view what) {
    return absl::StrCat("does not parse as a TrailLine: ", what, " at byte ", json.offset() + 1);
  };
  if (!json.Consume('{')) return fail("expected '{'");
  absl::flat_hash_set<std::string> seen;
  bool has_shard = false, has_index = false;
  if (!json.Consume('}')) {
    do {
      std::string key;
      if (!json.String(&key) || !json.Consume(':')) return fail("expected a field name");
      if (!seen.insert(key).second) return fail(absl::StrCat("repeated field \"", key, "\""));
      bool ok;
      if (key == "shard") {
        ok = json.String(&out->shard);
        has_shard = true;
      } else if (key == "index") {
        std::string text;
        absl::string_view number;
        if (json.Peek('"')) {
          ok = json.String(&text);
          number = text;
        } else {
          ok = json.Number(&number);
        }
        ok = ok && absl::SimpleAtoi(number, &out->index);
        has_index = true;
      } else if (key == "event") {
        ok = json.Value(0);
      } else if (key == "leafSha256") {
        ok = json.String(&out->leaf_hex);
      } else if (key == "prevChainSha256") {
        ok = json.String(&out->prev_hex);
      } else if (key == "chainSha256") {
        ok = json.String(&out->chain_hex);
      } else if (key == "eventBytes") {
        std::string base64;
        ok = json.String(&base64) && absl::Base64Unescape(base64, &out->event_bytes);
      } else if (key == "appendedAt") {
        std::string time;
        ok = json.String(&time) &&
             google::protobuf::util::TimeUtil::FromString(time, &out->appended_at.emplace());
      } else {
        return fail(absl::StrCat("unknown field \"", key, "\""));
      }
      if (!ok) return fail(absl::StrCat("bad value of \"", key, "\""));
      out->named = out->named || has_shard || has_index;
    } while (json.Consume(','));
    if (!json.Consume('}')) return fail("expected ',' or '}'");
  }
  json.SkipSpace();
  if (!json.AtEnd()) return fail("text after the object");
  return std::nullopt;
}

// Splits one CSV record (with its terminator) into cells. On failure returns why.
std::optional<std::string> SplitCsv(absl::string_view record, std::vector<std::string>* cells) {
  if (!record.empty() && record.back() == '\n') record.remove_suffix(1);
  if (!record.empty() && record.back() == '\r') record.remove_suffix(1);
  cells->clear();
  size_t i = 0;
  while (true) {
    std::string cell;
    if (i < record.size() && record[i] == '"') {
      ++i;
      while (true) {
        if (i >= record.size()) return std::string("unterminated quoted cell");
        if (record[i] == '"') {
          if (i + 1 < record.size() && record[i + 1] == '"') {
            cell.push_back('"');
            i += 2;
            continue;
          }
          ++i;
          break;
        }
        cell.push_back(record[i++]);
      }
      if (i < record.size() && record[i] != ',') {
        return absl::StrCat("text after a quoted cell at byte ", i + 1);
      }
    } else {
      const size_t comma = std::min(record.find(',', i), record.size());
      cell.assign(record.data() + i, comma - i);
      if (cell.find('"') != std::string::npos) {
        return absl::StrCat("a quote inside an unquoted cell near byte ", i + 1);
      }
      i = comma;
    }
    cells->push_back(std::move(cell));
    if (i >= record.size()) return std::nullopt;
    ++i;  // the comma
  }
}

std::optional<std::string> ReadCsvRow(absl::string_view bytes, const CsvColumns& columns,
                                      std::vector<std::string>* cells, ClaimedRecord* claim) {
  if (std::optional<std::string> error = SplitCsv(bytes, cells)) {
    return absl::StrCat("does not parse as a CSV row: ", *error);
  }
  const size_t want = kCsvFixedCount + columns.names().size() + 2;
  if (cells->size() >= 2) {
    claim->shard = (*cells)[0];
    claim->named = absl::SimpleAtoi((*cells)[1], &claim->index);
  }
  if (cells->size() != want) {
    return absl::StrCat("has ", cells->size(), " cells, the header has ", want);
  }
  if (!claim->named) return std::string("index is not a number");
  claim->leaf_hex = (*cells)[2];
  claim->prev_hex = (*cells)[3];
  claim->chain_hex = (*cells)[4];
  const std::string& appended_at = (*cells)[kCsvAppendedAtColumn];
  if (!appended_at.empty() &&
      !google::protobuf::util::TimeUtil::FromString(appended_at, &claim->appended_at.emplace())) {
    return std::string("appended_at is not an RFC 3339 time");
  }
  if (!absl::Base64Unescape(cells->back(), &claim->event_bytes)) {
    return std::string("event_bytes_base64 is not base64");
  }
  return std::nullopt;
}

}  // namespace predlog::services::export_internal

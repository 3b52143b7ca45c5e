// The one logging choice of predlog (Debian's abseil has no absl/log):
//   PREDLOG_LOG(INFO) << "shard " << name << " opened";
//   PREDLOG_CHECK(index < next_index) << "index beyond the log";
// Lines go to stderr as "<ISO-8601 UTC> <I|W|E|F> file:line] message".
// PREDLOG_CHECK guards invariants only, never input: bad input is a Status.
// Thread-safe: each line is written with one write call.
#ifndef PREDLOG_STORAGE_LOGGING_H_
#define PREDLOG_STORAGE_LOGGING_H_

#include <sstream>

namespace predlog {

enum class LogSeverity { kInfo, kWarning, kError, kFatal };

// Builds one log line; writes it (and aborts for kFatal) on destruction.
class LogMessage {
 public:
  LogMessage(LogSeverity severity, const char* file, int line);
  ~LogMessage();
  LogMessage(const LogMessage&) = delete;
  LogMessage& operator=(const LogMessage&) = delete;

  std::ostream& stream() { return stream_; }

 private:
  LogSeverity severity_;
  std::ostringstream stream_;
};

// Lowest severity written; lines below it are discarded. Default kInfo.
void SetMinLogSeverity(LogSeverity severity);
LogSeverity MinLogSeverity();

}  // namespace predlog

#define PREDLOG_LOG_SEVERITY_INFO ::predlog::LogSeverity::kInfo
#define PREDLOG_LOG_SEVERITY_WARNING ::predlog::LogSeverity::kWarning
#define PREDLOG_LOG_SEVERITY_ERROR ::predlog::LogSeverity::kError
#define PREDLOG_LOG_SEVERITY_FATAL ::predlog::LogSeverity::kFatal

#define PREDLOG_LOG(severity)                                          \
  if (PREDLOG_LOG_SEVERITY_##severity < ::predlog::MinLogSeverity()) { \
  } else                                                               \
    ::predlog::LogMessage(PREDLOG_LOG_SEVERITY_##severity, __FILE__, __LINE__).stream()

#define PREDLOG_CHECK(condition)                                                       \
  if (condition) {                                                                     \
  } else                                                                               \
    ::predlog::LogMessage(::predlog::LogSeverity::kFatal, __FILE__, __LINE__).stream() \
        << "Check failed: " #condition " "

#endif  // PREDLOG_STORAGE_LOGGING_H_

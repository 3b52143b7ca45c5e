// RETURN_IF_ERROR / ASSIGN_OR_RETURN: the two status macros Debian's abseil
// (20220623) lacks. Every predlog library uses these; do not write others.
#ifndef PREDLOG_STORAGE_STATUS_MACROS_H_
#define PREDLOG_STORAGE_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define PREDLOG_STATUS_CONCAT_INNER_(a, b) a##b
#define PREDLOG_STATUS_CONCAT_(a, b) PREDLOG_STATUS_CONCAT_INNER_(a, b)

// Evaluates `expr` (an absl::Status); returns it from the enclosing function
// when it is not OK.
#define RETURN_IF_ERROR(expr)                          \
  do {                                                 \
    ::absl::Status predlog_status_ = (expr);           \
    if (!predlog_status_.ok()) return predlog_status_; \
  } while (false)

// `ASSIGN_OR_RETURN(auto x, Foo());` evaluates Foo() (an absl::StatusOr<T>),
// returns its status when not OK, and otherwise moves the value into `x`.
#define ASSIGN_OR_RETURN(lhs, expr) \
  PREDLOG_ASSIGN_OR_RETURN_IMPL_(PREDLOG_STATUS_CONCAT_(predlog_statusor_, __LINE__), lhs, expr)

#define PREDLOG_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                   \
  if (!statusor.ok()) return std::move(statusor).status();  \
  lhs = std::move(statusor).value()

#endif  // PREDLOG_STORAGE_STATUS_MACROS_H_

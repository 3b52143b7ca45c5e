// The predlog command-line client: subcommands, their flags and their
// output. predlog_main.cc only calls RunCli.
//
// Exit codes: 0 success, and --help / `predlog help` (on stdout); 1 not
// found, a failed request or a failed verification, or a `predlog log` line
// refused, CONFLICT or REJECTED; 2 a usage error, with a message naming the
// flag, and bare `predlog` (the subcommand list, on stderr).
#ifndef PREDLOG_SERVICES_CLI_CLI_H_
#define PREDLOG_SERVICES_CLI_CLI_H_

#include <iostream>
#include <string>
#include <vector>

namespace predlog::services {

inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;
inline constexpr int kExitUsage = 2;

// `args` excludes the program name. Output goes to `out`, diagnostics and
// progress to `err`; lines read by `predlog log` come from `in`.
int RunCli(const std::vector<std::string>& args, std::istream& in, std::ostream& out,
           std::ostream& err);

}  // namespace predlog::services

#endif  // PREDLOG_SERVICES_CLI_CLI_H_

// Child processes for end-to-end tests: a predlogd whose startup line gives
// its addresses, and shell commands with their exit code and output.
#ifndef PREDLOG_TESTS_E2E_CHILD_PROCESS_H_
#define PREDLOG_TESTS_E2E_CHILD_PROCESS_H_

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"

namespace predlog::testing {

// One predlogd child process (`binary` with `args`), killed when destroyed.
class Predlogd {
 public:
  Predlogd(const char* binary, std::vector<std::string> args) {
    int fds[2];
    EXPECT_EQ(pipe(fds), 0);
    pid_ = fork();
    if (pid_ == 0) {
      dup2(fds[1], STDOUT_FILENO);
      close(fds[0]);
      close(fds[1]);
      std::vector<char*> argv;
      argv.push_back(const_cast<char*>(binary));
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(binary, argv.data());
      _exit(127);
    }
    close(fds[1]);
    std::string line;
    char c;
    while (read(fds[0], &c, 1) == 1 && c != '\n') line.push_back(c);
    close(fds[0]);
    startup_line_ = line;
    for (absl::string_view field : absl::StrSplit(line, ' ')) {
      if (absl::ConsumePrefix(&field, "grpc=")) grpc_ = std::string(field);
      if (absl::ConsumePrefix(&field, "kafka=")) kafka_ = std::string(field);
    }
  }
  ~Predlogd() {
    if (pid_ > 0) Kill();
  }
  Predlogd(const Predlogd&) = delete;
  Predlogd& operator=(const Predlogd&) = delete;

  void Kill() {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  // SIGTERM; returns the exit code (-1 if it did not exit normally).
  int Stop() {
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  const std::string& grpc() const { return grpc_; }
  const std::string& kafka() const { return kafka_; }
  const std::string& startup_line() const { return startup_line_; }

 private:
  pid_t pid_ = -1;
  std::string startup_line_, grpc_, kafka_;
};

// Runs `command` through the shell; returns its exit code and stdout+stderr.
inline std::pair<int, std::string> RunCommand(const std::string& command) {
  std::string output;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof(buf), pipe)) > 0;) output.append(buf, n);
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

}  // namespace predlog::testing

#endif  // PREDLOG_TESTS_E2E_CHILD_PROCESS_H_

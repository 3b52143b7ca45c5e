// A fresh directory under $TMPDIR, removed with everything in it on destruction.
#ifndef PREDLOG_TESTS_TESTING_TEMP_DIR_H_
#define PREDLOG_TESTS_TESTING_TEMP_DIR_H_

#include <string>

namespace predlog::testing {

class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  // path() + "/" + name.
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// The bytes of the file at `path`; "" when it cannot be read (tests then
// fail on its content).
std::string ReadFile(const std::string& path);

}  // namespace predlog::testing

#endif  // PREDLOG_TESTS_TESTING_TEMP_DIR_H_

// Helpers shared by the tests: fixture paths, temporary directories, and running the
// synthorg binary as a real process.
#pragma once

#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace synthorg::testing {

std::filesystem::path fixture(const std::string& name);  // FIXTURE_DIR/<name>.so

// A directory removed (with its contents) when the object goes.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::filesystem::path& path() const noexcept { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }
  // Symlinks fixture plugins into <dir>/plugins (created on first use); returns that dir.
  std::filesystem::path plugins(const std::vector<std::string>& fixtures) const;
  std::filesystem::path write(const std::string& name, const std::string& text) const;

 private:
  std::filesystem::path path_;
};

// A synthorg process with its output collected in the background.
class Process {
 public:
  // `wrapper`: a command that runs synthorg in its place (e.g. {"prlimit", "--nofile=512", "--"}).
  Process(const std::vector<std::string>& args, const std::map<std::string, std::string>& env = {},
          const std::vector<std::string>& wrapper = {});
  ~Process();
  // Waits until the combined output contains `text`; false on timeout or exit.
  bool wait_for_output(const std::string& text, std::chrono::milliseconds timeout);
  void signal(int signal_number);
  int pid() const;
  // The exit code, or -1 (after killing it) when it does not exit in time.
  int wait(std::chrono::milliseconds timeout);
  std::string output() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Sets (or, given nullptr, unsets) an environment variable for one scope, and puts back what
// was there.
class ScopedEnv {
 public:
  ScopedEnv(std::string name, const char* value);
  ScopedEnv(std::string name, const std::string& value) : ScopedEnv(std::move(name), value.c_str()) {}
  ~ScopedEnv();
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
  std::optional<std::string> old_;
};

struct Result {
  int exit_code;
  std::string output;  // stdout and stderr together
};
Result run_synthorg(const std::vector<std::string>& args, const std::map<std::string, std::string>& env = {},
                    std::chrono::milliseconds timeout = std::chrono::seconds(30));

}  // namespace synthorg::testing

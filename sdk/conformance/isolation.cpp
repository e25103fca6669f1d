#include "isolation.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "kit.hpp"
#include "orchestrator_kit_support.hpp"
#include "synthorg/host/call_in_flight.hpp"

extern char** environ;

namespace synthorg::conformance {
namespace {

constexpr const char* progress_environment = "SYNTHORG_KIT_PROGRESS";
constexpr const char* after_crash_environment = "SYNTHORG_KIT_AFTER_CRASH";
constexpr const char* cleanup_environment = "SYNTHORG_KIT_CLEANUP";  // run only the clean-up test
constexpr std::string_view crash_prefix = "crash: ";

std::string full_name(const ::testing::TestInfo& test) {
  return std::string(test.test_suite_name()) + "." + test.name();
}

// The child's side: one line per event, written at once (the process may die any moment).
class ProgressReport final : public ::testing::EmptyTestEventListener {
 public:
  explicit ProgressReport(int fd) : fd_(fd) {}
  void OnTestSuiteStart(const ::testing::TestSuite& suite) override { line("suite", suite.name()); }
  void OnTestStart(const ::testing::TestInfo& test) override { line("start", full_name(test)); }
  void OnTestEnd(const ::testing::TestInfo& test) override { line("end", full_name(test)); }

 private:
  void line(std::string_view kind, const std::string& name) {
    std::string text = std::string(kind) + " " + name + "\n";
    if (::write(fd_, text.data(), text.size()) < 0) std::perror("synthorg-conformance: progress file");
  }
  int fd_;
};

struct Progress {
  std::vector<std::string> ended;
  std::string in_flight_test;   // started and not ended
  std::string in_flight_suite;  // set up and no test started yet (a crash in SetUpTestSuite)
  std::vector<std::string> crash_lines;
};

Progress read_progress(const std::string& path) {
  Progress progress;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(crash_prefix, 0) == 0) {
      progress.crash_lines.push_back(line.substr(crash_prefix.size()));
    } else if (line.rfind("suite ", 0) == 0) {
      progress.in_flight_suite = line.substr(6);
    } else if (line.rfind("start ", 0) == 0) {
      progress.in_flight_test = line.substr(6);
      progress.in_flight_suite.clear();
    } else if (line.rfind("end ", 0) == 0) {
      progress.ended.push_back(line.substr(4));
      progress.in_flight_test.clear();
    }
  }
  return progress;
}

// Runs argv with `extra` added to the environment and stdout going to `stdout_path` (or the
// runner's own); returns the wait status.
int run_child(const std::vector<std::string>& argv, const std::map<std::string, std::string>& extra,
              const std::string& stdout_path = {}) {
  std::vector<std::string> environment;
  for (char** entry = environ; *entry; ++entry) {
    std::string_view text(*entry);
    auto name = text.substr(0, text.find('='));
    if (!extra.contains(std::string(name))) environment.emplace_back(text);
  }
  for (const auto& [name, value] : extra) environment.push_back(name + "=" + value);
  std::vector<char*> envp, args;
  for (auto& entry : environment) envp.push_back(entry.data());
  envp.push_back(nullptr);
  std::vector<std::string> copy = argv;
  for (auto& arg : copy) args.push_back(arg.data());
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  if (!stdout_path.empty())
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, stdout_path.c_str(), O_WRONLY | O_TRUNC, 0);
  std::fflush(nullptr);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, "/proc/self/exe", &actions, nullptr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    std::fprintf(stderr, "synthorg-conformance: cannot start a child process: %s\n", std::strerror(rc));
    std::exit(2);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

std::string temporary_file(const char* what) {
  const char* dir = std::getenv("TMPDIR");
  std::string path = std::string(dir && *dir ? dir : "/tmp") + "/synthorg-kit-" + what + "-XXXXXX";
  int fd = ::mkstemp(path.data());
  if (fd < 0) {
    std::perror("synthorg-conformance: cannot create a temporary file");
    std::exit(2);
  }
  ::close(fd);
  return path;
}

// The tests the filters select, in the order GoogleTest runs them (--gtest_list_tests).
std::vector<std::string> selected_tests(const std::vector<std::string>& argv, const std::string& progress) {
  auto listing = temporary_file("list");
  auto list_argv = argv;
  list_argv.push_back("--gtest_list_tests");
  int status = run_child(list_argv, {{progress_environment, progress}}, listing);
  std::ifstream in(listing);
  std::vector<std::string> tests;
  std::string line, suite;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto name = line.substr(0, line.find("  #", 2));
    if (line[0] != ' ') {
      suite = name;  // "OrchestratorKit." or "Plugins/GenericKit."
    } else {
      tests.push_back(suite + name.substr(2));
    }
  }
  ::unlink(listing.c_str());
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "synthorg-conformance: listing the tests failed (wait status %d)\n", status);
    std::exit(2);
  }
  return tests;
}

std::string describe_death(int status) {
  if (WIFSIGNALED(status)) {
    int signal = WTERMSIG(status);
    return std::string("killed by signal ") + std::to_string(signal) + " (" + strsignal(signal) + ")";
  }
  return "exited with code " + std::to_string(WEXITSTATUS(status));
}

std::string suite_of(const std::string& test) { return test.substr(0, test.rfind('.')); }

}  // namespace

bool report_progress_if_child() {
  const char* path = std::getenv(progress_environment);
  if (!path || !*path) return false;
  int fd = ::open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
  if (fd < 0) {
    std::perror("synthorg-conformance: cannot open the progress file");
    std::exit(2);
  }
  options().after_crash = std::getenv(after_crash_environment) != nullptr;
  // Whatever the test printed reaches the report even if the plugin kills the process next.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  host::report_fatal_signals(fd, crash_prefix);
  ::testing::UnitTest::GetInstance()->listeners().Append(new ProgressReport(fd));
  if (std::getenv(cleanup_environment)) register_crash_cleanup();
  return true;
}

int run_isolated(const std::vector<std::string>& argv) {
  auto progress_path = temporary_file("progress");
  std::vector<std::string> pending = selected_tests(argv, progress_path);
  std::map<std::string, std::string> environment{{progress_environment, progress_path},
                                                 {std::string(run_environment), "r" + kit_support::random_hex(12)}};
  std::vector<std::string> crashes;
  bool failed = false, orchestrator_left_behind = false;
  int processes = 0;
  std::size_t total = pending.size();
  while (!pending.empty()) {
    { std::ofstream truncate(progress_path, std::ios::trunc); }
    auto child_argv = argv;
    if (processes > 0) {  // the first child runs the selection as given; later ones what is left
      std::string filter = "--gtest_filter=";
      for (const auto& test : pending) filter += (filter.back() == '=' ? "" : ":") + test;
      child_argv.push_back(filter);
    }
    int status = run_child(child_argv, environment);
    ++processes;
    auto progress = read_progress(progress_path);
    std::set<std::string> done(progress.ended.begin(), progress.ended.end());
    std::erase_if(pending, [&](const std::string& test) { return done.contains(test); });
    // Once an orchestrator test ran after a crash, its set-up removed what the crash left.
    for (const auto& test : done) orchestrator_left_behind &= suite_of(test) != "OrchestratorKit";
    bool crashed = WIFSIGNALED(status) || !progress.crash_lines.empty();
    if (!crashed) {
      if (WIFEXITED(status) && WEXITSTATUS(status) == abandoned_exit_code) return 1;  // already said why
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) failed = true;
      if (!pending.empty() && done.empty()) {
        std::printf("synthorg-conformance: FAILED: the kit's process %s before running %zu test(s), starting with %s\n",
                    describe_death(status).c_str(), pending.size(), pending.front().c_str());
        return 1;
      }
      continue;
    }
    failed = true;
    // Where the process was when it died, and what the plugin was asked to do.
    std::string where;
    if (!progress.in_flight_test.empty()) {
      where = "test " + progress.in_flight_test;
      std::erase(pending, progress.in_flight_test);
      orchestrator_left_behind |= suite_of(progress.in_flight_test) == "OrchestratorKit";
    } else if (!progress.in_flight_suite.empty()) {
      where = "the set-up of " + progress.in_flight_suite + " (its tests cannot run)";
      std::erase_if(pending, [&](const std::string& test) { return suite_of(test) == progress.in_flight_suite; });
    } else if (!progress.ended.empty()) {
      where = "the clean-up after test " + progress.ended.back();
    } else {
      where = "the kit's start";
    }
    std::string report = "synthorg-conformance: CRASHED in " + where + ": the process was " + describe_death(status);
    for (const auto& line : progress.crash_lines) report += "\n    " + line;
    if (progress.crash_lines.empty()) report += "\n    (no plugin call was in flight that the kit marks)";
    std::printf("\n%s\n", report.c_str());
    crashes.push_back(report);
    if (done.empty() && progress.in_flight_test.empty() && progress.in_flight_suite.empty()) break;  // no way forward
    environment[after_crash_environment] = "1";
  }
  // A crash in the last orchestrator test left its workloads with nobody to remove them.
  if (orchestrator_left_behind && pending.empty()) {
    auto child_argv = argv;
    child_argv.push_back("--gtest_filter=OrchestratorKit.CleanUpAfterACrash");
    environment[after_crash_environment] = "1";
    environment[cleanup_environment] = "1";
    run_child(child_argv, environment);
  }
  ::unlink(progress_path.c_str());
  if (!crashes.empty()) {
    std::printf("\nsynthorg-conformance: FAILED: the plugin crashed the kit's process %zu time(s) (the call in "
                "flight is named below); the kit went on in a new process each time: %zu test(s) in %d process(es)\n",
                crashes.size(), total, processes);
    for (const auto& report : crashes) std::printf("%s\n", report.c_str());
  }
  return failed || !pending.empty() ? 1 : 0;
}

}  // namespace synthorg::conformance

// Crash isolation for the conformance runner: a plugin that kills the process (a segfault in
// spawn(), an abort in stop()) must not take the kit's report with it. The runner supervises:
// it runs the selected tests in a child process, which writes each test's start and end, and
// the call in flight when a fatal signal arrives, to a progress file. When the child dies the
// supervisor names the test, the signal and the call, and runs the tests not yet run in a new
// child (which first removes what the crashed test spawned). Not installed.
#pragma once

#include <string>
#include <vector>

namespace synthorg::conformance {

// In a child (the supervisor set SYNTHORG_KIT_PROGRESS): reports progress and fatal signals to
// that file and returns true. Elsewhere returns false and does nothing.
bool report_progress_if_child();

// Runs the runner again as `argv` in children until every selected test has run; prints a crash
// report for each child a signal killed. Returns the runner's exit code.
int run_isolated(const std::vector<std::string>& argv);

}  // namespace synthorg::conformance

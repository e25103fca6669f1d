#!/usr/bin/python3
"""The conformance kit's own test: every flawed variant of an orchestrator plugin is failed, with a
message that names the flaw, and the kit survives it (a report, a summary, nothing left running).

  negative_fixtures_test.py SYNTHORG RUNNER FIXTURE FLAW

FIXTURE is flawed-orchestrator.so (tests/fixtures/plugins/flawed_orchestrator.cpp), FLAW one of
the keys below. `failed_for_not_found` goes through `synthorg plugins check FILE` with no --kind,
as an author would run it; the others run the tests that concern them through the runner.
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time

# flaw: (tests to run or None for every kit, extra runner arguments, what the output must say, seconds allowed)
CASES = {
    "segfault_in_spawn": (
        "OrchestratorKit.SpawnServeLogStopWaitRemove:OrchestratorKit.HealthIsUp:OrchestratorKit.NothingIsLeftBehind", [],
        [r"CRASHED in test OrchestratorKit\.SpawnServeLogStopWaitRemove: the process was killed by signal 11",
         r"fatal SIGSEGV \(invalid memory access\) while spawn\(kit-lifecycle-[0-9a-f]+\) was in flight on the crashing thread",
         r"removed \d+ workload\(s\) that a crashed test left behind",
         r"\[       OK \] OrchestratorKit\.NothingIsLeftBehind",
         r"the plugin crashed the kit's process 1 time\(s\)"], 120),
    "hang_in_start": (None, ["--call-timeout", "2000"],
        [r"start\(\) of plugin 'flawed-orchestrator' did not return within 2000 ms"], 60),
    "failed_for_not_found": (None, [],
        [r"running the orchestrator kit, from the plugins' manifests",
         r"should throw OrchestratorError\(not_found\); it threw OrchestratorError\(failed\)"], 300),
    "lists_unmanaged": ("OrchestratorKit.LabelsAndListFilters", [],
        [r"list\(\{\}\) returned not-ours-1 without synthorg\.managed"], 120),
    "drops_env": ("OrchestratorKit.SpecEnvReachesTheWorkload", [],
        [r"spec\.env did not reach the workload as given",
         r"(?m)^synthorg/conformance/orchestrator_kit\.cpp:\d+: Failure"], 120),
    "ignores_hardening": ("OrchestratorKit.HardeningIsAppliedOrDeclared", [],
        [r"spec\.user 65534:65534 \(real and effective uid and gid\) was not applied to .*does not declare \"user\"",
         r"spec\.no_new_privileges \(NoNewPrivs: 1\) was not applied"], 120),
    "ignores_memory_limit": ("OrchestratorKit.AMemoryLimitIsEnforced", [],
        [r"allocated 256 MiB at once under a memory limit of 64 MiB and ran to completion: the limit is not enforced"],
        120),
    "returns_existing_on_name": ("OrchestratorKit.ANameInUseIsAConflictOrASecondWorkload", [],
        [r"with a name in use handed back the first workload"], 120),
    "stop_returns_early": ("OrchestratorKit.StopReturnsOnceTheWorkloadHasExited", [],
        [r"returned while the workload was still running: stop\(\) must return once it has exited"], 120),
    "follow_ignores_token": ("OrchestratorKit.FollowHonoursItsStopToken", [],
        [r"did not return within 5 s of its stop_token being triggered"], 120),
}


def main():
    synthorg, runner, fixture, flaw = sys.argv[1:5]
    tests, extra, expected, allowed = CASES[flaw]
    # Workload records: a kit process the plugin crashed leaves its workloads running, and the
    # next one must find and stop them (the process backend's own orphan reaping).
    state_dir = tempfile.mkdtemp(prefix="synthorg-flawed-")
    config = json.dumps({"flaw": flaw, "state_dir": state_dir})
    if tests is None and not extra:
        command = [synthorg, "plugins", "check", fixture, "--config", config]
    else:
        command = [runner, "--plugin", fixture, "--config", config, *extra]
        if tests:
            command.append("--gtest_filter=" + tests)
    began = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=allowed + 60)
    took = time.monotonic() - began
    output = done.stdout + done.stderr
    problems = []
    if done.returncode != 1:
        problems.append(f"exit code {done.returncode}, expected 1 (the kit fails the plugin)")
    for pattern in expected:
        if not re.search(pattern, output):
            problems.append(f"the output does not say /{pattern}/")
    if "/sdk/conformance/" in output:
        problems.append("a failure location names the build machine's source tree, not the installed kit file")
    left = os.listdir(state_dir)
    if left:
        problems.append(f"workload records left in {state_dir}: {left} (workloads still running after the kit)")
    if took > allowed:
        problems.append(f"took {took:.0f} s, more than {allowed} s")
    if problems:
        print(output)
        print(f"\nFAILED: the kit on flaw '{flaw}' ({' '.join(command)}):")
        for problem in problems:
            print("  - " + problem)
        return 1
    print(f"ok: the kit failed flaw '{flaw}' in {took:.1f} s, saying what it should")
    return 0


if __name__ == "__main__":
    sys.exit(main())

// How a workload's command line is built: the command, wrapped in the util-linux and coreutils
// tools that apply what hardening a plain process can have. Every wrapper execs the next one,
// so the workload's pid is the pid we launched:
//
//   setsid                         its own session and process group (stop() signals the group)
//   prlimit --as=M --nproc=P       memory_bytes as address space, pids_limit as RLIMIT_NPROC
//   setpriv --no-new-privs --reuid=U --regid=G --clear-groups --inh-caps=-all --bounding-set=-all
//   env -u NAME...                 drops the host's environment (values never reach argv)
//   COMMAND...
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "synthorg/services/orchestrator.hpp"

namespace synthorg::orchestrator_process {

// The wrapper tools found on this host; empty where one is missing.
struct HostTools {
  std::string setsid;   // util-linux: required
  std::string env;      // coreutils: required
  std::string setpriv;  // util-linux: no-new-privileges, user, capabilities
  std::string prlimit;  // util-linux: memory and pids limits
  bool root = false;    // we may switch users and clear the capability bounding set
};
HostTools find_host_tools();

struct UserIds {
  uid_t uid = 0;
  gid_t gid = 0;
};
// "uid[:gid]" or "name[:group]"; throws invalid_spec when a name is unknown on this host.
UserIds resolve_user(const std::string& user);

// Where the launched process writes its own PATH lookups: the spec's PATH, else Docker's default.
inline constexpr const char* default_path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

struct LaunchPlan {
  std::string program;              // what Poco::Process::launch runs (setsid)
  std::vector<std::string> args;    // its arguments: the wrappers, then the command
  std::map<std::string, std::string> env;  // exactly what the workload sees
  std::int64_t memory_bytes = 0;    // limits actually applied (0: not applied)
  std::int64_t pids_limit = 0;
  std::optional<UserIds> user;      // the user it runs as, when switched
  std::vector<std::string> skipped; // hardening asked for that this host cannot give
};

// Builds the plan for `spec`, whose environment gets SYNTHORG_LISTEN_HOST=`listen_host`.
// Throws invalid_spec when the command is missing or not executable.
LaunchPlan plan_launch(const WorkloadSpec& spec, const HostTools& tools, const std::string& listen_host);

}  // namespace synthorg::orchestrator_process

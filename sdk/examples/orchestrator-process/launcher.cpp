#include "launcher.hpp"

#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <charconv>
#include <set>
#include <sstream>

extern char** environ;

namespace synthorg::orchestrator_process {
namespace {

[[noreturn]] void invalid(const std::string& message) {
  throw OrchestratorError(OrchestratorErrc::invalid_spec, "invalid workload spec: " + message);
}

bool executable_file(const std::string& path) {
  struct stat info {};
  return ::stat(path.c_str(), &info) == 0 && S_ISREG(info.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

std::string first_executable(std::initializer_list<const char*> candidates) {
  for (const char* candidate : candidates)
    if (executable_file(candidate)) return candidate;
  return {};
}

std::optional<std::uint32_t> number(std::string_view text) {
  std::uint32_t value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || error != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// command[0] as an absolute path, looked up in `path` the way execvp would.
std::string resolve_command(const std::string& command, const std::string& path) {
  if (command.find('/') != std::string::npos) {
    if (command.front() != '/') invalid("command[0] '" + command + "' must be absolute or a name found in PATH");
    if (!executable_file(command)) invalid("command[0] '" + command + "' is not an executable file on this host");
    return command;
  }
  std::stringstream directories(path);
  for (std::string directory; std::getline(directories, directory, ':');) {
    if (directory.empty()) continue;
    auto candidate = directory + "/" + command;
    if (executable_file(candidate)) return candidate;
  }
  invalid("command[0] '" + command + "' is not found in PATH " + path);
}

}  // namespace

HostTools find_host_tools() {
  HostTools tools;
  tools.setsid = first_executable({"/usr/bin/setsid", "/bin/setsid"});
  tools.env = first_executable({"/usr/bin/env", "/bin/env"});
  tools.setpriv = first_executable({"/usr/bin/setpriv", "/bin/setpriv"});
  tools.prlimit = first_executable({"/usr/bin/prlimit", "/bin/prlimit"});
  tools.root = ::geteuid() == 0;
  return tools;
}

UserIds resolve_user(const std::string& user) {
  auto colon = user.find(':');
  std::string who = user.substr(0, colon);
  std::optional<std::string> group;
  if (colon != std::string::npos) group = user.substr(colon + 1);
  if (who.empty() || (group && group->empty())) invalid("user '" + user + "' must be uid[:gid] or name[:group]");

  UserIds ids;
  std::optional<gid_t> primary_gid;
  std::vector<char> buffer(16384);
  passwd entry {};
  passwd* found = nullptr;
  if (auto uid = number(who)) {
    ids.uid = *uid;
    if (::getpwuid_r(ids.uid, &entry, buffer.data(), buffer.size(), &found) == 0 && found) primary_gid = found->pw_gid;
  } else {
    if (::getpwnam_r(who.c_str(), &entry, buffer.data(), buffer.size(), &found) != 0 || !found)
      invalid("user '" + who + "' does not exist on this host (the process backend runs workloads as host users)");
    ids.uid = found->pw_uid;
    primary_gid = found->pw_gid;
  }
  if (group) {
    if (auto gid = number(*group)) {
      ids.gid = *gid;
    } else {
      ::group group_entry {};
      ::group* group_found = nullptr;
      if (::getgrnam_r(group->c_str(), &group_entry, buffer.data(), buffer.size(), &group_found) != 0 || !group_found)
        invalid("group '" + *group + "' does not exist on this host");
      ids.gid = group_found->gr_gid;
    }
  } else {
    // Like Docker: a uid alone runs with that user's primary group, else the gid of the same number.
    ids.gid = primary_gid.value_or(static_cast<gid_t>(ids.uid));
  }
  return ids;
}

LaunchPlan plan_launch(const WorkloadSpec& spec, const HostTools& tools, const std::string& listen_host) {
  if (spec.command.empty())
    invalid("command is empty: the process backend has no image to take a default command from");

  LaunchPlan plan;
  // The workload sees its spec's environment and nothing of the host's, as in a container.
  plan.env = spec.env;
  plan.env.try_emplace("PATH", default_path);
  plan.env.try_emplace("HOME", "/");
  plan.env["SYNTHORG_LISTEN_HOST"] = listen_host;
  auto command = resolve_command(spec.command.front(), plan.env.at("PATH"));
  if (command.find('=') != std::string::npos) invalid("command[0] '" + command + "' contains '='");

  plan.program = tools.setsid;
  auto& args = plan.args;

  if (!spec.user.empty()) {
    auto wanted = resolve_user(spec.user);
    bool already = wanted.uid == ::getuid() && wanted.gid == ::getgid();
    if (!already && tools.root && !tools.setpriv.empty()) {
      plan.user = wanted;
    } else if (!already) {
      plan.skipped.push_back("user");
    }
  }
  // Whom the workload's processes count against for RLIMIT_NPROC: a per-user limit, which the
  // kernel does not apply to root at all. Only a switched-to user makes it meaningful.
  bool own_user = plan.user && plan.user->uid != 0 && plan.user->uid != ::getuid();

  if (spec.memory_bytes > 0 || spec.pids_limit > 0) {
    if (tools.prlimit.empty()) {
      plan.skipped.push_back("limits");
    } else {
      std::vector<std::string> limits;
      if (spec.memory_bytes > 0) {
        limits.push_back("--as=" + std::to_string(spec.memory_bytes));
        plan.memory_bytes = spec.memory_bytes;
      }
      if (spec.pids_limit > 0) {
        if (own_user) {
          limits.push_back("--nproc=" + std::to_string(spec.pids_limit));
          plan.pids_limit = spec.pids_limit;
        } else {
          plan.skipped.push_back("pids_limit");
        }
      }
      if (!limits.empty()) {
        args.push_back(tools.prlimit);
        args.insert(args.end(), limits.begin(), limits.end());
      }
    }
  }

  bool want_setpriv = spec.no_new_privileges || spec.drop_all_capabilities || plan.user;
  if (want_setpriv && tools.setpriv.empty()) {
    plan.skipped.push_back("no_new_privileges, drop_all_capabilities");
  } else if (want_setpriv) {
    args.push_back(tools.setpriv);
    if (spec.no_new_privileges) args.push_back("--no-new-privs");
    if (plan.user) {
      args.push_back("--reuid=" + std::to_string(plan.user->uid));
      args.push_back("--regid=" + std::to_string(plan.user->gid));
      args.push_back("--clear-groups");
    }
    if (spec.drop_all_capabilities) {
      args.push_back("--inh-caps=-all");
      // Clearing the bounding set needs CAP_SETPCAP; without root there is nothing in it to use.
      if (tools.root) args.push_back("--bounding-set=-all");
    }
  }

  args.push_back(tools.env);
  std::set<std::string> inherited;
  for (char** entry = environ; entry && *entry; ++entry) {
    std::string_view variable(*entry);
    auto name = std::string(variable.substr(0, variable.find('=')));
    if (!name.empty() && !plan.env.count(name)) inherited.insert(name);
  }
  for (const auto& name : inherited) {
    args.push_back("-u");
    args.push_back(name);
  }
  args.push_back("--");
  args.push_back(command);
  args.insert(args.end(), spec.command.begin() + 1, spec.command.end());
  return plan;
}

}  // namespace synthorg::orchestrator_process

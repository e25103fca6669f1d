// `synthorg backup create | list | restore ID --confirm`: starts only the Store plugin (and
// what it needs), never the whole server, so it can run beside a stopped or a running kernel.
#include "backup_command.hpp"

#include <cstdio>
#include <iostream>

#include <fmt/format.h>

#include "backup.hpp"
#include "store_only.hpp"

namespace synthorg::kernel {
namespace {

constexpr int exit_ok = 0;
constexpr int exit_error = 1;
constexpr int exit_usage = 2;

std::string human_bytes(std::uint64_t bytes) {
  if (bytes >= (1u << 20)) return fmt::format("{:.1f} MiB", static_cast<double>(bytes) / (1 << 20));
  if (bytes >= (1u << 10)) return fmt::format("{:.1f} KiB", static_cast<double>(bytes) / (1 << 10));
  return fmt::format("{} B", bytes);
}

}  // namespace

int backup_command(const BackupRequest& request) {
  try {
    StoreOnly running(request.config_path, request.plugin_dir);
    auto backups = running.backups();
    if (request.action == BackupRequest::Action::create) {
      auto info = backups.create(running.store());
      if (request.json) {
        std::cout << info.to_json().dump(2) << '\n';
      } else {
        std::cout << fmt::format("backup {} created in {}: {} file(s), {}\n", info.id, backups.directory().string(),
                                 info.files.size(), human_bytes(info.bytes()));
      }
      return exit_ok;
    }
    if (request.action == BackupRequest::Action::list) {
      auto all = backups.list();
      if (request.json) {
        auto out = nlohmann::json::array();
        for (const auto& info : all) out.push_back(info.to_json());
        std::cout << out.dump(2) << '\n';
      } else if (all.empty()) {
        std::cout << "no backups in " << backups.directory().string() << '\n';
      } else {
        std::cout << fmt::format("{:<12}  {:<24}  {:<8}  {:>10}\n", "ID", "CREATED", "BACKEND", "SIZE");
        for (const auto& info : all) {
          if (!info.problem.empty())
            std::cout << fmt::format("{:<12}  DAMAGED: {}\n", info.id, info.problem);
          else
            std::cout << fmt::format("{:<12}  {:<24}  {:<8}  {:>10}\n", info.id, info.created_at, info.backend,
                                     human_bytes(info.bytes()));
        }
      }
      return exit_ok;
    }
    // restore: verify first, whether or not confirmed, so a damaged backup is reported either way.
    auto info = backups.verify(request.id);
    if (!request.confirm) {
      std::cerr << fmt::format("synthorg backup restore: this replaces the whole {} database with backup {} taken at "
                               "{}; everything written since is lost. Run again with --confirm to go ahead.\n",
                               info.backend, info.id, info.created_at);
      return exit_usage;
    }
    backups.restore(running.store(), request.id);
    std::cout << fmt::format("restored backup {} (taken at {})\n", info.id, info.created_at);
    return exit_ok;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "synthorg backup: %s\n", error.what());
    return exit_error;
  }
}

}  // namespace synthorg::kernel

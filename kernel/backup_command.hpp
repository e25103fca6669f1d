// The `synthorg backup` command, apart from main.cpp so the CLI file stays a table of commands.
#pragma once

#include <filesystem>
#include <optional>
#include <string>

namespace synthorg::kernel {

struct BackupRequest {
  enum class Action { create, list, restore };
  Action action = Action::list;
  std::optional<std::filesystem::path> config_path;
  std::filesystem::path plugin_dir;
  std::string id;        // restore
  bool confirm = false;  // restore
  bool json = false;
};

// Returns the process exit code: 0 done, 1 failed, 2 restore without --confirm.
int backup_command(const BackupRequest& request);

}  // namespace synthorg::kernel

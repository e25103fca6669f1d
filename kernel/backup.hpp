// Backups of the Store: a directory per backup under backup.dir, named by a 12-hex id, holding
// the backend's snapshot files and a manifest with each file's SHA-256. A backup is verified in
// full before a restore touches the live database.
#pragma once

#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "synthorg/services/settings.hpp"
#include "synthorg/services/store.hpp"

namespace synthorg::kernel {

class BackupError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct BackupFile {
  std::string name;
  std::uint64_t bytes = 0;
  std::string sha256;
};

struct BackupInfo {
  std::string id;
  std::string created_at;
  std::string backend;
  std::string format;
  std::string synthorg_version;
  std::vector<BackupFile> files;
  std::string problem;  // set by list() for a backup that is incomplete or unreadable

  std::uint64_t bytes() const;
  nlohmann::json to_json() const;
};

// The kernel's own settings: backup.dir and backup.keep.
std::vector<SettingDefinition> kernel_setting_definitions();

class Backups {
 public:
  // `keep`: how many backups retention leaves (the newest); 0 keeps all.
  Backups(std::filesystem::path directory, std::int64_t keep);

  // Snapshots the live store (which keeps serving), writes the manifest, applies retention.
  BackupInfo create(Store& store);
  // Newest first; damaged backups are listed with their problem rather than hidden.
  std::vector<BackupInfo> list() const;
  // Reads the manifest and checks every file's size and SHA-256; throws BackupError saying
  // which file is wrong.
  BackupInfo verify(const std::string& id) const;
  // verify(), then replaces the live database with the backup, all or nothing.
  BackupInfo restore(Store& store, const std::string& id);

  const std::filesystem::path& directory() const noexcept { return directory_; }

 private:
  std::filesystem::path directory_;
  std::int64_t keep_;
};

}  // namespace synthorg::kernel

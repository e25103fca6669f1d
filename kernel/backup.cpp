#include "backup.hpp"

#include <algorithm>
#include <fstream>

#include <fmt/format.h>

#include "synthorg/crypto.hpp"
#include "synthorg/version.hpp"

namespace synthorg::kernel {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr const char* kManifest = "manifest.json";

bool valid_id(const std::string& id) {
  return id.size() == 12 && std::all_of(id.begin(), id.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

BackupInfo read_manifest(const fs::path& directory, const std::string& id) {
  std::ifstream in(directory / kManifest);
  if (!in) throw BackupError(fmt::format("backup {}: {} is missing; the backup is incomplete", id, kManifest));
  json manifest = json::parse(in, nullptr, false);
  BackupInfo info;
  try {
    if (manifest.is_discarded()) throw std::runtime_error("not JSON");
    info.id = manifest.at("id").get<std::string>();
    info.created_at = manifest.at("created_at").get<std::string>();
    info.backend = manifest.at("backend").get<std::string>();
    info.format = manifest.at("format").get<std::string>();
    info.synthorg_version = manifest.value("synthorg_version", "");
    for (const auto& file : manifest.at("files"))
      info.files.push_back({file.at("name").get<std::string>(), file.at("bytes").get<std::uint64_t>(),
                            file.at("sha256").get<std::string>()});
  } catch (const std::exception& error) {
    throw BackupError(fmt::format("backup {}: the manifest is damaged ({}); this backup cannot be restored", id,
                                  error.what()));
  }
  if (info.id != id) throw BackupError(fmt::format("backup {}: the manifest names a different backup ({})", id, info.id));
  if (info.files.empty()) throw BackupError(fmt::format("backup {}: the manifest lists no files", id));
  for (const auto& file : info.files)
    if (file.name.empty() || file.name.find('/') != std::string::npos || file.name == "." || file.name == ".." ||
        file.name == kManifest)
      throw BackupError(fmt::format("backup {}: the manifest lists an unsafe file name '{}'", id, file.name));
  return info;
}

}  // namespace

std::uint64_t BackupInfo::bytes() const {
  std::uint64_t total = 0;
  for (const auto& file : files) total += file.bytes;
  return total;
}

json BackupInfo::to_json() const {
  json out = {{"id", id}, {"created_at", created_at}, {"backend", backend}, {"format", format},
              {"synthorg_version", synthorg_version}, {"bytes", bytes()}, {"files", json::array()}};
  for (const auto& file : files) out["files"].push_back({{"name", file.name}, {"bytes", file.bytes}, {"sha256", file.sha256}});
  if (!problem.empty()) out["problem"] = problem;
  return out;
}

std::vector<SettingDefinition> kernel_setting_definitions() {
  SettingDefinition dir;
  dir.space = "backup";
  dir.key = "dir";
  dir.type = SettingType::string;
  dir.default_value = "/data/backups";
  dir.description = "Where `synthorg backup create` writes backups, one directory each";
  dir.pattern = ".+";
  SettingDefinition keep;
  keep.space = "backup";
  keep.key = "keep";
  keep.type = SettingType::integer;
  keep.default_value = 7;
  keep.description = "How many backups to keep; older ones are removed after each new backup (0 keeps all)";
  keep.minimum = 0;
  keep.maximum = 10000;
  SettingDefinition interval;
  interval.space = "backup";
  interval.key = "interval";
  interval.type = SettingType::string;
  interval.default_value = "0";
  interval.description =
      "How often the running server takes a backup itself (6h, 1d, 1h30m), with the retention of backup.keep; "
      "0: never (backups only by `synthorg backup create`)";
  interval.pattern = "0|([0-9]{1,9}[smhd])+";
  return {dir, keep, interval};
}

Backups::Backups(fs::path directory, std::int64_t keep) : directory_(std::move(directory)), keep_(keep) {}

BackupInfo Backups::create(Store& store) {
  std::error_code error;
  fs::create_directories(directory_, error);
  if (error)
    throw BackupError(fmt::format("cannot create the backup directory {}: {} (fix: set backup.dir, or "
                                  "SYNTHORG_BACKUP_DIR, to a writable directory)",
                                  directory_.string(), error.message()));
  BackupInfo info;
  info.id = crypto::to_hex(crypto::random_bytes(6));
  info.created_at = store::now_timestamp();
  // Written under a temporary name and renamed when complete: a crash never leaves a backup
  // that looks whole.
  auto partial = directory_ / (".partial-" + info.id);
  auto final_dir = directory_ / info.id;
  fs::create_directories(partial);
  try {
    fs::permissions(partial, fs::perms::owner_all, fs::perm_options::replace);
    auto snapshot = store.snapshot(partial);
    info.backend = store.info().backend;
    info.format = snapshot.format;
    info.synthorg_version = SYNTHORG_SDK_VERSION;
    for (const auto& file : snapshot.files)
      info.files.push_back({file.filename().string(), fs::file_size(file), crypto::sha256_file(file)});
    json manifest = info.to_json();
    manifest.erase("bytes");
    std::ofstream out(partial / kManifest);
    out << manifest.dump(2) << '\n';
    out.close();
    if (!out) throw BackupError("cannot write the manifest");
    fs::rename(partial, final_dir);
  } catch (...) {
    fs::remove_all(partial, error);
    throw;
  }

  if (keep_ > 0) {
    auto all = list();
    for (std::size_t i = static_cast<std::size_t>(keep_); i < all.size(); ++i)
      if (all[i].problem.empty()) fs::remove_all(directory_ / all[i].id, error);
  }
  return info;
}

std::vector<BackupInfo> Backups::list() const {
  std::vector<BackupInfo> all;
  std::error_code error;
  if (!fs::is_directory(directory_, error)) return all;
  for (const auto& entry : fs::directory_iterator(directory_, error)) {
    auto id = entry.path().filename().string();
    if (!entry.is_directory() || !valid_id(id)) continue;
    try {
      all.push_back(read_manifest(entry.path(), id));
    } catch (const BackupError& problem) {
      BackupInfo damaged;
      damaged.id = id;
      damaged.problem = problem.what();
      all.push_back(damaged);
    }
  }
  std::sort(all.begin(), all.end(), [](const BackupInfo& a, const BackupInfo& b) {
    return a.created_at != b.created_at ? a.created_at > b.created_at : a.id > b.id;
  });
  return all;
}

BackupInfo Backups::verify(const std::string& id) const {
  if (!valid_id(id))
    throw BackupError(fmt::format("'{}' is not a backup id (12 hex digits); see `synthorg backup list`", id));
  auto directory = directory_ / id;
  if (!fs::is_directory(directory))
    throw BackupError(fmt::format("there is no backup {} in {}; see `synthorg backup list`", id, directory_.string()));
  auto info = read_manifest(directory, id);
  for (const auto& file : info.files) {
    auto path = directory / file.name;
    std::error_code error;
    auto size = fs::file_size(path, error);
    if (error) throw BackupError(fmt::format("backup {}: {} is missing", id, file.name));
    if (size != file.bytes)
      throw BackupError(fmt::format("backup {}: {} is {} bytes, the manifest says {}: the backup is truncated or "
                                    "damaged",
                                    id, file.name, size, file.bytes));
    if (!crypto::constant_time_equal(crypto::sha256_file(path), file.sha256))
      throw BackupError(fmt::format("backup {}: {} does not match its SHA-256 in the manifest: the backup is "
                                    "damaged or was altered",
                                    id, file.name));
  }
  return info;
}

BackupInfo Backups::restore(Store& store, const std::string& id) {
  auto info = verify(id);
  auto backend = store.info().backend;
  if (info.backend != backend)
    throw BackupError(fmt::format("backup {} was taken from {} and the running store is {}; restore it into a {} "
                                  "store",
                                  id, info.backend, backend, info.backend));
  Snapshot snapshot{{}, info.format};
  for (const auto& file : info.files) snapshot.files.push_back(directory_ / id / file.name);
  store.restore(snapshot);
  return info;
}

}  // namespace synthorg::kernel

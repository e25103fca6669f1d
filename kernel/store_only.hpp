// A kernel running only the Store plugin (and what it needs), never the whole server: for
// commands such as `synthorg backup` and `synthorg doctor` that must work beside a running or
// a stopped server.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>

#include "backup.hpp"
#include "kernel.hpp"

namespace synthorg::kernel {

// Started in the constructor (throws what the kernel throws), stopped when it goes.
class StoreOnly {
 public:
  StoreOnly(const std::optional<std::filesystem::path>& config_path, const std::filesystem::path& plugin_dir);
  StoreOnly(const StoreOnly&) = delete;
  StoreOnly& operator=(const StoreOnly&) = delete;
  ~StoreOnly();

  Store& store() { return *store_; }
  Backups backups();
  Kernel& kernel() { return kernel_; }

 private:
  Kernel kernel_;
  std::shared_ptr<Store> store_;
};

}  // namespace synthorg::kernel

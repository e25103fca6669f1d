#include "store_only.hpp"

namespace synthorg::kernel {

StoreOnly::StoreOnly(const std::optional<std::filesystem::path>& config_path, const std::filesystem::path& plugin_dir)
    : kernel_(load_company_config(config_path, plugin_dir)) {
  kernel_.restrict_to(std::string(Store::service_id));
  kernel_.discover();
  kernel_.prepare();
  kernel_.start();
  store_ = kernel_.registry().get<Store>();
  if (!store_) throw KernelError("the store plugin started but registered no Store");
}

StoreOnly::~StoreOnly() {
  store_.reset();
  kernel_.stop();
}

Backups StoreOnly::backups() {
  auto& settings = kernel_.settings();
  return Backups(settings.get("backup", "dir").value.get<std::string>(),
                 settings.get("backup", "keep").value.get<std::int64_t>());
}

}  // namespace synthorg::kernel

// The kernel's Settings service: definitions from plugins, values from the environment, the
// Store, company.yaml and defaults; sensitive values encrypted with Fernet at rest.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>

#include "synthorg/bus.hpp"
#include "synthorg/crypto.hpp"
#include "synthorg/log.hpp"
#include "synthorg/services/settings.hpp"
#include "synthorg/services/store.hpp"

namespace synthorg::kernel {

// Checks `value` against a definition; the message names the setting and the rule broken.
void validate_setting(const SettingDefinition& definition, const nlohmann::json& value);
// Turns environment text into a value of the setting's type; throws SettingsError(invalid).
nlohmann::json parse_setting_text(const SettingDefinition& definition, std::string_view text);

class SettingsService final : public Settings, public std::enable_shared_from_this<SettingsService> {
 public:
  static constexpr std::string_view collection = "kernel_settings";

  // `from_config` is company.yaml's settings section; the key comes from SYNTHORG_SETTINGS_KEY.
  SettingsService(std::map<std::string, nlohmann::json> from_config, EventBus& bus);

  Token define(SettingDefinition definition) override;
  SettingValue get(std::string_view space, std::string_view key) const override;
  void set(std::string_view space, std::string_view key, const nlohmann::json& value,
           std::string_view actor) override;
  void reset(std::string_view space, std::string_view key, std::string_view actor) override;
  std::vector<SettingView> list() const override;

  // The Store came or went (the kernel tracks it). Loading reads every stored value once.
  void attach_store(std::shared_ptr<Store> store);
  void detach_store();
  // company.yaml settings that no plugin defined: probably typos, reported after start.
  std::vector<std::string> undefined_config_settings() const;
  // Stored values the current key cannot decrypt, by "space.key".
  std::vector<std::string> undecryptable() const;

 private:
  struct Stored {
    std::optional<nlohmann::json> value;  // empty when it could not be decrypted
    std::string problem;
  };
  struct Entry {
    SettingDefinition definition;
    std::optional<nlohmann::json> env_value;
    std::optional<nlohmann::json> config_value;
  };

  SettingValue resolve(const Entry& entry) const;  // callers hold mutex_
  void write(std::string_view space, std::string_view key, const std::optional<nlohmann::json>& value,
             std::string_view actor);
  void publish_if_changed(const std::string& name, const SettingValue& before, std::string_view actor);

  std::map<std::string, nlohmann::json> from_config_;
  EventBus& bus_;
  log::Logger log_;
  std::optional<crypto::Fernet> fernet_;
  std::string key_problem_;  // why SYNTHORG_SETTINGS_KEY cannot be used, if it cannot

  mutable std::shared_mutex mutex_;
  std::map<std::string, Entry, std::less<>> entries_;    // "space.key"
  std::map<std::string, Stored, std::less<>> stored_;    // "space.key", whatever is defined
  std::shared_ptr<Store> store_;
  std::mutex write_mutex_;  // one set/reset at a time, so read-modify-write on the Store is simple
};

}  // namespace synthorg::kernel

#include "settings_service.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <optional>
#include <regex>

#include <fmt/format.h>

namespace synthorg::kernel {
namespace {

using nlohmann::json;

constexpr std::string_view kRedacted = "********";

[[noreturn]] void fail(SettingsErrc code, const std::string& message) { throw SettingsError(code, message); }

bool valid_name(std::string_view name) {
  if (name.empty() || name.size() > 64 || !(name.front() >= 'a' && name.front() <= 'z')) return false;
  return std::all_of(name.begin(), name.end(),
                     [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'; });
}

std::string full_name(std::string_view space, std::string_view key) { return fmt::format("{}.{}", space, key); }

// A value as it may appear in a message: never a sensitive one.
std::string shown(const SettingDefinition& definition, const json& value) {
  return definition.sensitive ? std::string(kRedacted) : value.dump();
}

std::string lower(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

void validate_setting(const SettingDefinition& d, const json& value) {
  auto name = full_name(d.space, d.key);
  auto wrong = [&](const std::string& rule) {
    fail(SettingsErrc::invalid, fmt::format("setting {}: {} {}", name, shown(d, value), rule));
  };
  switch (d.type) {
    case SettingType::string:
      if (!value.is_string()) wrong("is not a string");
      if (!d.pattern.empty() && !std::regex_match(value.get<std::string>(), std::regex(d.pattern)))
        wrong(fmt::format("does not match the pattern {}", d.pattern));
      return;
    case SettingType::enumeration:
      if (!value.is_string() || std::find(d.choices.begin(), d.choices.end(), value.get<std::string>()) == d.choices.end())
        wrong(fmt::format("is not one of: {}", fmt::join(d.choices, ", ")));
      return;
    case SettingType::boolean:
      if (!value.is_boolean()) wrong("is not true or false");
      return;
    case SettingType::integer:
    case SettingType::number: {
      if (d.type == SettingType::integer ? !value.is_number_integer() : !value.is_number())
        wrong(d.type == SettingType::integer ? "is not a whole number" : "is not a number");
      double number = value.get<double>();
      if (d.minimum && number < *d.minimum) wrong(fmt::format("is below the minimum {}", *d.minimum));
      if (d.maximum && number > *d.maximum) wrong(fmt::format("is above the maximum {}", *d.maximum));
      return;
    }
    case SettingType::json: return;
    case SettingType::list: {
      if (!value.is_array()) wrong("is not a list of strings (a JSON array)");
      std::optional<std::regex> item_pattern;
      if (!d.pattern.empty()) item_pattern.emplace(d.pattern);
      for (std::size_t i = 0; i < value.size(); ++i) {
        const auto& item = value[i];
        if (!item.is_string()) wrong(fmt::format("has item {} that is not a string", i + 1));
        if (item_pattern && !std::regex_match(item.get_ref<const std::string&>(), *item_pattern))
          wrong(fmt::format("has item {} ({}) that is not of the form {} ({})", i + 1, item.dump(), d.pattern,
                            d.description));
      }
      return;
    }
  }
}

json parse_setting_text(const SettingDefinition& d, std::string_view text) {
  auto refuse = [&](std::string_view expected) -> json {
    fail(SettingsErrc::invalid,
         fmt::format("{}={}: expected {} for setting {}.{}", d.env_name(), d.sensitive ? kRedacted : text, expected,
                     d.space, d.key));
  };
  switch (d.type) {
    case SettingType::string:
    case SettingType::enumeration: return std::string(text);
    case SettingType::boolean: {
      auto word = lower(text);
      if (word == "true" || word == "1" || word == "yes" || word == "on") return true;
      if (word == "false" || word == "0" || word == "no" || word == "off") return false;
      return refuse("true or false");
    }
    case SettingType::integer: {
      std::int64_t number = 0;
      auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), number);
      if (error != std::errc() || end != text.data() + text.size() || text.empty()) return refuse("a whole number");
      return number;
    }
    case SettingType::number: {
      std::string copy(text);
      char* end = nullptr;
      errno = 0;
      double number = std::strtod(copy.c_str(), &end);
      if (copy.empty() || errno != 0 || *end != '\0') return refuse("a number");
      return number;
    }
    case SettingType::json: {
      auto parsed = json::parse(text, nullptr, false);
      if (parsed.is_discarded()) return refuse("JSON");
      return parsed;
    }
    case SettingType::list: {
      // The JSON array the settings API shows, or plain comma-separated words (blanks dropped).
      auto first = text.find_first_not_of(" \t");
      if (first != std::string_view::npos && text[first] == '[') {
        auto parsed = json::parse(text, nullptr, false);
        if (parsed.is_discarded() || !parsed.is_array())
          return refuse("a JSON array of strings, such as [\"a\",\"b\"], or the strings separated by commas");
        return parsed;
      }
      json items = json::array();
      std::size_t start = 0;
      while (start <= text.size()) {
        auto end = std::min(text.find(',', start), text.size());
        auto item = text.substr(start, end - start);
        auto from = item.find_first_not_of(" \t"), to = item.find_last_not_of(" \t");
        if (from != std::string_view::npos) items.push_back(std::string(item.substr(from, to - from + 1)));
        start = end + 1;
      }
      return items;
    }
  }
  return refuse("a value");
}

SettingsService::SettingsService(std::map<std::string, json> from_config, EventBus& bus)
    : from_config_(std::move(from_config)), bus_(bus), log_("settings") {
  const char* key = std::getenv("SYNTHORG_SETTINGS_KEY");
  if (!key || !*key) {
    key_problem_ = "SYNTHORG_SETTINGS_KEY is not set";
    return;
  }
  try {
    fernet_.emplace(key);
  } catch (const crypto::FernetError& error) {
    key_problem_ = fmt::format("SYNTHORG_SETTINGS_KEY is malformed: {}", error.what());
    log_.warn("SYNTHORG_SETTINGS_KEY cannot be used; sensitive settings will be refused",
              {{"reason", error.what()}});
  }
}

Token SettingsService::define(SettingDefinition definition) {
  auto name = full_name(definition.space, definition.key);
  if (!valid_name(definition.space) || !valid_name(definition.key))
    fail(SettingsErrc::invalid, fmt::format("setting '{}': namespace and key must match ^[a-z][a-z0-9_]*$", name));
  if (definition.type == SettingType::enumeration && definition.choices.empty())
    fail(SettingsErrc::invalid, fmt::format("setting {}: an enumeration needs its choices", name));
  if (definition.sensitive && !fernet_)
    fail(SettingsErrc::invalid,
         fmt::format("setting {} is sensitive and must be encrypted at rest, but {}; generate a key with `synthorg "
                     "keygen fernet` and set SYNTHORG_SETTINGS_KEY to it (keep it: values encrypted with it are "
                     "unreadable without it)",
                     name, key_problem_));
  try {
    validate_setting(definition, definition.default_value);
  } catch (const SettingsError& error) {
    fail(SettingsErrc::invalid, fmt::format("{} (the default is wrong: fix the plugin)", error.what()));
  }

  Entry entry{definition, std::nullopt, std::nullopt};
  if (const char* text = std::getenv(definition.env_name().c_str())) {
    entry.env_value = parse_setting_text(definition, text);
    try {
      validate_setting(definition, *entry.env_value);
    } catch (const SettingsError& error) {
      fail(SettingsErrc::invalid, fmt::format("{} in the environment: {} (fix: correct it, or unset it to use the "
                                              "stored value or the default)",
                                              definition.env_name(), error.what()));
    }
  }
  if (auto space = from_config_.find(definition.space); space != from_config_.end() && space->second.contains(definition.key)) {
    entry.config_value = space->second[definition.key];
    try {
      validate_setting(definition, *entry.config_value);
    } catch (const SettingsError& error) {
      fail(SettingsErrc::invalid,
           fmt::format("company.yaml settings.{}: {} (fix: correct it or remove it to use the default)", name,
                       error.what()));
    }
  }

  {
    std::unique_lock lock(mutex_);
    if (entries_.contains(name))
      fail(SettingsErrc::invalid, fmt::format("setting {} is defined twice; each setting has one owner", name));
    entries_.emplace(name, std::move(entry));
  }
  std::weak_ptr<SettingsService> self = weak_from_this();
  return Token([self, name] {
    if (auto service = self.lock()) {
      std::unique_lock lock(service->mutex_);
      service->entries_.erase(name);
    }
  });
}

SettingValue SettingsService::resolve(const Entry& entry) const {
  SettingValue result;
  if (entry.env_value) return {*entry.env_value, SettingSource::env, {}};
  auto name = full_name(entry.definition.space, entry.definition.key);
  if (auto stored = stored_.find(name); stored != stored_.end()) {
    if (stored->second.value) {
      try {
        validate_setting(entry.definition, *stored->second.value);
        return {*stored->second.value, SettingSource::database, {}};
      } catch (const SettingsError& error) {
        result.problem = fmt::format("the stored value no longer fits: {}; set it again", error.what());
      }
    } else {
      result.problem = stored->second.problem;
    }
  }
  if (entry.config_value) {
    result.value = *entry.config_value;
    result.source = SettingSource::config;
  } else {
    result.value = entry.definition.default_value;
    result.source = SettingSource::default_value;
  }
  return result;
}

SettingValue SettingsService::get(std::string_view space, std::string_view key) const {
  std::shared_lock lock(mutex_);
  auto found = entries_.find(full_name(space, key));
  if (found == entries_.end())
    fail(SettingsErrc::unknown, fmt::format("there is no setting {}.{}", space, key));
  return resolve(found->second);
}

std::vector<SettingView> SettingsService::list() const {
  std::shared_lock lock(mutex_);
  std::vector<SettingView> views;
  for (const auto& [name, entry] : entries_) {
    auto value = resolve(entry);
    views.push_back({entry.definition, entry.definition.sensitive ? json(kRedacted) : value.value, value.source,
                     value.problem});
    if (entry.definition.sensitive) views.back().definition.default_value = kRedacted;
  }
  return views;
}

void SettingsService::set(std::string_view space, std::string_view key, const json& value, std::string_view actor) {
  SettingDefinition definition;
  {
    std::shared_lock lock(mutex_);
    auto found = entries_.find(full_name(space, key));
    if (found == entries_.end()) fail(SettingsErrc::unknown, fmt::format("there is no setting {}.{}", space, key));
    if (found->second.env_value)
      fail(SettingsErrc::pinned, fmt::format("setting {}.{} is pinned by the environment variable {}; change or unset "
                                             "it there",
                                             space, key, found->second.definition.env_name()));
    definition = found->second.definition;
  }
  validate_setting(definition, value);
  write(space, key, value, actor);
}

void SettingsService::reset(std::string_view space, std::string_view key, std::string_view actor) {
  {
    std::shared_lock lock(mutex_);
    auto found = entries_.find(full_name(space, key));
    if (found == entries_.end()) fail(SettingsErrc::unknown, fmt::format("there is no setting {}.{}", space, key));
    if (found->second.env_value)
      fail(SettingsErrc::pinned, fmt::format("setting {}.{} is pinned by the environment variable {}", space, key,
                                             found->second.definition.env_name()));
  }
  write(space, key, std::nullopt, actor);
}

void SettingsService::write(std::string_view space, std::string_view key, const std::optional<json>& value,
                            std::string_view actor) {
  std::lock_guard serial(write_mutex_);
  auto name = full_name(space, key);
  std::shared_ptr<Store> store;
  bool sensitive = false;
  SettingValue before;
  {
    std::shared_lock lock(mutex_);
    store = store_;
    auto& entry = entries_.find(name)->second;
    sensitive = entry.definition.sensitive;
    before = resolve(entry);
  }
  if (!store)
    fail(SettingsErrc::unavailable, fmt::format("setting {}: no Store is running to keep the value; enable "
                                                "store-sqlite or store-postgres",
                                                name));
  json document = {{"updated_by", std::string(actor)}};
  if (value) {
    if (sensitive) {
      if (!fernet_) fail(SettingsErrc::unavailable, fmt::format("setting {} is sensitive but {}", name, key_problem_));
      document["encrypted"] = fernet_->encrypt(value->dump());
    } else {
      document["value"] = *value;
    }
  }
  try {
    for (int attempt = 0;; ++attempt) {
      try {
        auto current = store->get(collection, name);
        if (!value) {
          if (current) store->remove(collection, name, current->version);
        } else if (current) {
          store->update(collection, name, document, current->version);
        } else {
          store->insert(collection, document, name);
        }
        break;
      } catch (const StoreError& error) {
        // Another kernel on the same database wrote in between: read again and retry.
        if (error.code() != StoreErrc::conflict || attempt == 3) throw;
      }
    }
  } catch (const StoreError& error) {
    if (error.code() == StoreErrc::full) throw;  // not a retry-shortly: the caller says it is full
    fail(SettingsErrc::unavailable, fmt::format("setting {}: the Store failed: {}", name, error.what()));
  }
  {
    std::unique_lock lock(mutex_);
    if (value)
      stored_[name] = Stored{*value, {}};
    else
      stored_.erase(name);
  }
  publish_if_changed(name, before, actor);
}

void SettingsService::publish_if_changed(const std::string& name, const SettingValue& before, std::string_view actor) {
  SettingChanged event;
  {
    std::shared_lock lock(mutex_);
    auto found = entries_.find(name);
    if (found == entries_.end()) return;
    auto after = resolve(found->second);
    if (after.value == before.value && after.source == before.source) return;
    const auto& definition = found->second.definition;
    event = {definition.space, definition.key, after.source, definition.restart_required, std::string(actor),
             definition.sensitive ? json() : after.value};
  }
  log_.info("setting changed", {{"setting", name}, {"source", to_string(event.source)}, {"actor", event.actor}});
  bus_.publish(event);
}

void SettingsService::attach_store(std::shared_ptr<Store> store) {
  store->ensure_collection({std::string(collection), {}, {}});
  std::map<std::string, Stored, std::less<>> loaded;
  Query query;
  query.limit = 1000;
  do {
    auto page = store->query(collection, query);
    for (const auto& document : page.documents) {
      Stored stored;
      if (document.data.contains("encrypted")) {
        if (!fernet_) {
          stored.problem = fmt::format("the stored value is encrypted and {}; set the key it was written with",
                                       key_problem_);
        } else {
          try {
            stored.value = json::parse(fernet_->decrypt(document.data["encrypted"].get<std::string>()));
          } catch (const std::exception&) {
            stored.problem = "the stored value cannot be decrypted with the current SYNTHORG_SETTINGS_KEY; it is kept "
                             "as it is: set the key it was written with, or set a new value to replace it";
          }
        }
        if (!stored.problem.empty())
          log_.error("a stored setting cannot be read", {{"setting", document.id}, {"problem", stored.problem}});
      } else {
        stored.value = document.data.value("value", json());
      }
      loaded.emplace(document.id, std::move(stored));
    }
    query.cursor = page.next_cursor;
  } while (!query.cursor.empty());

  std::vector<std::pair<std::string, SettingValue>> before;
  {
    std::unique_lock lock(mutex_);
    for (const auto& [name, entry] : entries_) before.emplace_back(name, resolve(entry));
    stored_ = std::move(loaded);
    store_ = std::move(store);
  }
  for (const auto& [name, value] : before) publish_if_changed(name, value, "kernel");
}

void SettingsService::detach_store() {
  std::unique_lock lock(mutex_);
  store_.reset();  // values already read stay in effect; writes wait for a Store
}

std::vector<std::string> SettingsService::undefined_config_settings() const {
  std::shared_lock lock(mutex_);
  std::vector<std::string> names;
  for (const auto& [space, keys] : from_config_)
    for (const auto& [key, value] : keys.items())
      if (!entries_.contains(full_name(space, key))) names.push_back(full_name(space, key));
  return names;
}

std::vector<std::string> SettingsService::undecryptable() const {
  std::shared_lock lock(mutex_);
  std::vector<std::string> names;
  for (const auto& [name, stored] : stored_)
    if (!stored.value) names.push_back(name);
  return names;
}

}  // namespace synthorg::kernel

#include <stdexcept>

#include "synthorg/plugin.hpp"

namespace synthorg {
namespace {
std::atomic<std::uint64_t> next_owner_id{1};
thread_local std::string create_error;
}  // namespace

PluginContext::PluginContext(std::string name, ServiceRegistry& registry, EventBus& bus)
    : owner_(std::make_shared<const Owner>(Owner{next_owner_id.fetch_add(1), name})),
      registry_(registry, *this),
      bus_(bus, *this),
      log_(std::move(name)) {}

Executor& PluginContext::executor() const {
  auto executor = registry_.get<Executor>();
  if (!executor) throw std::logic_error("no synthorg.Executor/1 is registered; the host must provide one");
  return *executor;  // the host's executor outlives every plugin
}

std::size_t PluginContext::sweep() {
  return registry_.shared().sweep(owner_->id) + bus_.shared().sweep(owner_->id);
}
std::size_t PluginContext::live_registrations() const { return registry_.shared().count_owned(owner_->id); }
std::size_t PluginContext::live_subscriptions() const { return bus_.shared().count_owned(owner_->id); }

void PluginContext::before_mutation(std::string_view what) {
  int number = mutations_.fetch_add(1) + 1;
  if (fault_countdown_.load() > 0 && fault_countdown_.fetch_sub(1) == 1)
    throw std::runtime_error("injected fault: the conformance kit refused registration/subscription #" +
                             std::to_string(number) + " (" + std::string(what) + ")");
}

Subscription ScopedBus::subscribe(std::string pattern, EventHandler handler, SubscribeOptions options) {
  context_.before_mutation(pattern);
  return bus_.subscribe(std::move(pattern), std::move(handler), options, context_.owner());
}

void ScopedBus::publish(std::string topic, nlohmann::json payload, std::string trace_id) {
  bus_.publish(std::move(topic), std::move(payload), context_.name(), std::move(trace_id));
}

namespace detail {
namespace {

int32_t guarded(void* instance, const std::function<void(PluginInstance&)>& call) noexcept {
  if (!instance) return SYNTHORG_ERROR;
  auto& self = *static_cast<PluginInstance*>(instance);
  try {
    self.last_error.clear();
    call(self);
    return SYNTHORG_OK;
  } catch (const std::exception& e) {
    try {
      self.last_error = e.what();
    } catch (...) {
    }
  } catch (...) {
    try {
      self.last_error = "unknown exception";
    } catch (...) {
    }
  }
  return SYNTHORG_ERROR;
}

}  // namespace

void* create_instance(void* host, std::unique_ptr<Plugin> (*make)(PluginContext&), const char* config_map_json) noexcept {
  try {
    create_error.clear();
    if (!host) throw std::invalid_argument("create was called without a plugin context");
    auto instance = std::make_unique<PluginInstance>();
    instance->config_map = ConfigMap::from_json(nlohmann::json::parse(config_map_json));
    instance->plugin = make(*static_cast<PluginContext*>(host));
    return instance.release();
  } catch (const std::exception& e) {
    try {
      create_error = e.what();
    } catch (...) {
    }
  } catch (...) {
    try {
      create_error = "unknown exception";
    } catch (...) {
    }
  }
  return nullptr;
}

int32_t configure_instance(void* instance, const char* config_json) noexcept {
  return guarded(instance, [config_json](PluginInstance& self) {
    if (!config_json) throw std::invalid_argument("configure was called without a configuration");
    nlohmann::json given;
    try {
      given = nlohmann::json::parse(config_json);
    } catch (const nlohmann::json::parse_error& e) {
      throw std::invalid_argument(std::string("configuration is not valid JSON: ") + e.what());
    }
    // Checked again here, not only by the host: a plugin never sees a value its map forbids.
    self.plugin->configure(self.config_map.apply(given));
  });
}

int32_t start_instance(void* instance) noexcept {
  return guarded(instance, [](PluginInstance& self) { self.plugin->start(); });
}

int32_t stop_instance(void* instance) noexcept {
  return guarded(instance, [](PluginInstance& self) { self.plugin->stop(); });
}

void destroy_instance(void* instance) noexcept {
  try {
    delete static_cast<PluginInstance*>(instance);
  } catch (...) {  // a destructor that throws terminates anyway; nothing crosses from here
  }
}

const char* instance_error(void* instance) noexcept {
  if (!instance) return create_error.c_str();
  return static_cast<PluginInstance*>(instance)->last_error.c_str();
}

}  // namespace detail
}  // namespace synthorg

// The typed service registry: plugins find each other only through it.
//
// An interface I is an abstract class that declares its id and major version:
//     static constexpr std::string_view service_id = "synthorg.Executor/1";
// Ids, never typeid, name services, so lookups work across shared objects.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "synthorg/token.hpp"

namespace synthorg {

// Who made a registration or subscription: swept together when that plugin stops.
struct Owner {
  std::uint64_t id = 0;
  std::string name = "kernel";
};
using OwnerRef = std::shared_ptr<const Owner>;
OwnerRef kernel_owner();

struct ServiceProperties {
  int ranking = 0;  // the highest ranking wins get<I>(); ties go to the oldest registration
  nlohmann::json attributes = nlohmann::json::object();
};

// What introspection (CLI, /api/v1/services) sees of one registration.
struct ServiceInfo {
  std::uint64_t registration_id = 0;
  std::string service_id;
  std::string owner;
  int ranking = 0;
  nlohmann::json attributes;
};

enum class ServiceEvent { arrived, departed };

// `^[a-z][a-zA-Z0-9_]*(\.[a-zA-Z0-9_]+)*/[1-9][0-9]*$`, e.g. "synthorg.Store/1".
bool valid_service_id(std::string_view id) noexcept;

class ServiceRegistry {
 public:
  ServiceRegistry();
  ~ServiceRegistry();
  ServiceRegistry(const ServiceRegistry&) = delete;
  ServiceRegistry& operator=(const ServiceRegistry&) = delete;

  template <class I>
  Registration provide(std::shared_ptr<I> service, ServiceProperties properties = {},
                       OwnerRef owner = kernel_owner()) {
    I* raw = service.get();
    return provide_erased(key_of<I>(), std::shared_ptr<void>(std::move(service), raw),
                          std::move(properties), std::move(owner));
  }

  // The best provider, or null. The returned pointer is a lease: it keeps the provider (and
  // its owner's context) alive while the caller uses it, even if the provider departs.
  template <class I>
  std::shared_ptr<I> get() const {
    return std::static_pointer_cast<I>(get_erased(key_of<I>()));
  }

  // Every provider, best first.
  template <class I>
  std::vector<std::shared_ptr<I>> all() const {
    std::vector<std::shared_ptr<I>> out;
    for (auto& service : all_erased(key_of<I>())) out.push_back(std::static_pointer_cast<I>(service));
    return out;
  }

  // Calls `listener` for every current provider (as arrived), then on each arrival and
  // departure until the tracker is released. Called with no registry lock held.
  template <class I>
  Tracker track(std::function<void(ServiceEvent, const std::shared_ptr<I>&)> listener,
                OwnerRef owner = kernel_owner()) {
    return track_erased(
        key_of<I>(),
        [listener = std::move(listener)](ServiceEvent event, const std::shared_ptr<void>& service) {
          listener(event, std::static_pointer_cast<I>(service));
        },
        std::move(owner));
  }

  // Has get<I>(), all<I>() and track<I>() hand out `wrap(provider)` instead of each provider of
  // I, until the returned token is released (one decorator per interface; a newer one replaces
  // it). The kernel decorates the Store and the Orchestrator this way while a Tracer runs, so
  // their callers are traced without knowing it. Each provider is wrapped once, when it or the
  // decorator arrives (under the registry's lock: `wrap` must only build an object), and only
  // lookups made afterwards see the wrapper. With no decorator, lookups are what they were.
  template <class I>
  Registration decorate(std::function<std::shared_ptr<I>(std::shared_ptr<I>)> wrap) {
    return decorate_erased(key_of<I>(), [wrap = std::move(wrap)](std::shared_ptr<void> provider) {
      std::shared_ptr<I> wrapped = wrap(std::static_pointer_cast<I>(std::move(provider)));
      I* raw = wrapped.get();
      return std::shared_ptr<void>(std::move(wrapped), raw);
    });
  }

  // Every registration, for introspection; a listener for all of them (the kernel mirrors
  // them onto the bus as service.registered / service.unregistered).
  std::vector<ServiceInfo> list() const;
  bool has(std::string_view service_id) const;
  Tracker watch_all(std::function<void(ServiceEvent, const ServiceInfo&)> listener);

  // Drops every registration and tracker `owner_id` made; returns how many there were.
  std::size_t sweep(std::uint64_t owner_id);
  std::size_t count_owned(std::uint64_t owner_id) const;

  // Interned ids, so that a lookup indexes a vector instead of hashing a string.
  static std::uint32_t intern(std::string_view service_id);
  template <class I>
  static std::uint32_t key_of() {
    static const std::uint32_t key = intern(I::service_id);
    return key;
  }

 private:
  using ErasedListener = std::function<void(ServiceEvent, const std::shared_ptr<void>&)>;
  using ErasedWrap = std::function<std::shared_ptr<void>(std::shared_ptr<void>)>;
  Registration decorate_erased(std::uint32_t key, ErasedWrap wrap);
  Registration provide_erased(std::uint32_t key, std::shared_ptr<void> service,
                              ServiceProperties properties, OwnerRef owner);
  std::shared_ptr<void> get_erased(std::uint32_t key) const;
  std::vector<std::shared_ptr<void>> all_erased(std::uint32_t key) const;
  Tracker track_erased(std::uint32_t key, ErasedListener listener, OwnerRef owner);

  struct Core;
  std::shared_ptr<Core> core_;
};

}  // namespace synthorg

#include "synthorg/registry.hpp"

#include <algorithm>
#include <mutex>
#include <shared_mutex>
#include <stdexcept>
#include <unordered_map>

namespace synthorg {
namespace {

// Process-wide id interning: every shared object that asks for "synthorg.Store/1" gets the
// same small integer, because this table lives once, in libsynthorg-sdk.so.
struct InternTable {
  std::mutex mutex;
  std::unordered_map<std::string, std::uint32_t> keys;
  std::vector<std::string> names;
};
InternTable& intern_table() {
  static InternTable table;
  return table;
}
std::string name_of(std::uint32_t key) {
  auto& table = intern_table();
  std::lock_guard lock(table.mutex);
  return table.names.at(key);
}

bool is_word_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

constexpr std::uint32_t all_keys = UINT32_MAX;

}  // namespace

OwnerRef kernel_owner() {
  static const OwnerRef owner = std::make_shared<const Owner>();
  return owner;
}

bool valid_service_id(std::string_view id) noexcept {
  auto slash = id.rfind('/');
  if (slash == std::string_view::npos || slash == 0) return false;
  auto name = id.substr(0, slash);
  auto major = id.substr(slash + 1);
  if (major.empty() || major[0] < '1' || major[0] > '9' ||
      !std::all_of(major.begin(), major.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return false;
  if (!(name[0] >= 'a' && name[0] <= 'z')) return false;
  bool after_dot = false;
  for (char c : name) {
    if (c == '.') {
      if (after_dot) return false;
      after_dot = true;
    } else if (is_word_char(c)) {
      after_dot = false;
    } else {
      return false;
    }
  }
  return !after_dot;
}

struct ServiceRegistry::Core {
  struct Entry {
    std::uint64_t id;
    std::uint32_t key;
    std::shared_ptr<void> service;
    ServiceProperties properties;
    OwnerRef owner;
    // What lookups hand out while the key has a decorator. It holds a lease on this entry (a
    // cycle), so it is cleared whenever the entry leaves or the decorator goes.
    std::shared_ptr<void> decorated;
  };
  struct Decorator {
    std::uint64_t id = 0;
    ErasedWrap wrap;
  };
  struct Listener {
    std::uint64_t id;
    std::uint32_t key;  // all_keys for watch_all
    ErasedListener typed;
    std::function<void(ServiceEvent, const ServiceInfo&)> untyped;
    OwnerRef owner;
  };
  struct Change {
    ServiceEvent event;
    std::shared_ptr<Entry> entry;
  };

  mutable std::shared_mutex mutex;
  std::vector<std::vector<std::shared_ptr<Entry>>> by_key;  // best first
  std::vector<std::shared_ptr<Listener>> listeners;
  std::vector<Decorator> decorators;  // by key; id 0: none
  std::uint64_t next_id = 1;

  ~Core() {
    for (auto& providers : by_key)
      for (auto& entry : providers) entry->decorated.reset();
  }

  static std::shared_ptr<void> undecorated(const std::shared_ptr<Entry>& entry) {
    return std::shared_ptr<void>(entry, entry->service.get());
  }
  static std::shared_ptr<void> lease(const std::shared_ptr<Entry>& entry) {
    return entry->decorated ? entry->decorated : undecorated(entry);
  }
  // Under the unique lock. The wrapper it replaces goes into `released`, to be freed after the
  // lock: it holds leases (a Tracer's, say) whose last release may call back into the registry.
  void decorate(const std::shared_ptr<Entry>& entry, std::vector<std::shared_ptr<void>>& released) {
    released.push_back(std::move(entry->decorated));
    entry->decorated = nullptr;
    if (entry->key < decorators.size() && decorators[entry->key].id) {
      try {
        entry->decorated = decorators[entry->key].wrap(undecorated(entry));
      } catch (...) {  // a decorator that cannot wrap leaves the provider as it is
      }
    }
  }
  static ServiceInfo info(const Entry& entry) {
    return {entry.id, name_of(entry.key), entry.owner->name, entry.properties.ranking, entry.properties.attributes};
  }

  std::vector<std::shared_ptr<Listener>> listeners_for(std::uint32_t key) const {
    std::vector<std::shared_ptr<Listener>> out;
    for (auto& listener : listeners)
      if (listener->key == key || listener->key == all_keys) out.push_back(listener);
    return out;
  }

  // Runs with no lock held: a listener may call back into the registry.
  void notify(const std::vector<Change>& changes,
              const std::vector<std::vector<std::shared_ptr<Listener>>>& audiences) {
    for (std::size_t i = 0; i < changes.size(); ++i) {
      for (auto& listener : audiences[i]) {
        try {
          if (listener->typed) {
            listener->typed(changes[i].event, lease(changes[i].entry));
          } else {
            listener->untyped(changes[i].event, info(*changes[i].entry));
          }
        } catch (...) {  // one listener's failure must not keep the others uninformed
        }
      }
    }
  }

  void remove_entries(const std::function<bool(const Entry&)>& doomed, std::size_t* removed_count) {
    std::vector<std::shared_ptr<void>> released;  // freed on return, with no lock held
    std::vector<Change> changes;
    std::vector<std::vector<std::shared_ptr<Listener>>> audiences;
    {
      std::unique_lock lock(mutex);
      for (auto& providers : by_key) {
        for (auto it = providers.begin(); it != providers.end();) {
          if (doomed(**it)) {
            released.push_back(std::exchange((*it)->decorated, nullptr));
            changes.push_back({ServiceEvent::departed, *it});
            it = providers.erase(it);
          } else {
            ++it;
          }
        }
      }
      for (auto& change : changes) audiences.push_back(listeners_for(change.entry->key));
    }
    if (removed_count) *removed_count += changes.size();
    notify(changes, audiences);
  }
};

ServiceRegistry::ServiceRegistry() : core_(std::make_shared<Core>()) {}
ServiceRegistry::~ServiceRegistry() = default;

std::uint32_t ServiceRegistry::intern(std::string_view service_id) {
  if (!valid_service_id(service_id))
    throw std::invalid_argument("invalid service id \"" + std::string(service_id) +
                                "\": expected a dotted name and a major version, e.g. \"synthorg.Store/1\"");
  auto& table = intern_table();
  std::lock_guard lock(table.mutex);
  auto [it, inserted] = table.keys.try_emplace(std::string(service_id), static_cast<std::uint32_t>(table.names.size()));
  if (inserted) table.names.emplace_back(service_id);
  return it->second;
}

Registration ServiceRegistry::provide_erased(std::uint32_t key, std::shared_ptr<void> service,
                                             ServiceProperties properties, OwnerRef owner) {
  if (!service) throw std::invalid_argument("cannot register a null " + name_of(key) + " provider");
  if (!owner) owner = kernel_owner();
  std::vector<Core::Change> changes;
  std::vector<std::vector<std::shared_ptr<Core::Listener>>> audiences;
  std::vector<std::shared_ptr<void>> released;
  std::uint64_t id;
  {
    std::unique_lock lock(core_->mutex);
    id = core_->next_id++;
    auto entry = std::make_shared<Core::Entry>(Core::Entry{id, key, std::move(service), std::move(properties), std::move(owner)});
    if (core_->by_key.size() <= key) core_->by_key.resize(key + 1);
    auto& providers = core_->by_key[key];
    // Best first: higher ranking, then older (smaller id). New entries have the largest id.
    auto position = std::find_if(providers.begin(), providers.end(), [&](const auto& other) {
      return other->properties.ranking < entry->properties.ranking;
    });
    providers.insert(position, entry);
    core_->decorate(entry, released);
    changes.push_back({ServiceEvent::arrived, entry});
    audiences.push_back(core_->listeners_for(key));
  }
  core_->notify(changes, audiences);
  return Registration([weak = std::weak_ptr<Core>(core_), id] {
    if (auto core = weak.lock()) core->remove_entries([id](const Core::Entry& e) { return e.id == id; }, nullptr);
  });
}

Registration ServiceRegistry::decorate_erased(std::uint32_t key, ErasedWrap wrap) {
  std::vector<std::shared_ptr<void>> released;
  std::uint64_t id;
  {
    std::unique_lock lock(core_->mutex);
    id = core_->next_id++;
    if (core_->decorators.size() <= key) core_->decorators.resize(key + 1);
    core_->decorators[key] = {id, std::move(wrap)};
    if (key < core_->by_key.size())
      for (auto& entry : core_->by_key[key]) core_->decorate(entry, released);
  }
  return Registration([weak = std::weak_ptr<Core>(core_), key, id] {
    auto core = weak.lock();
    if (!core) return;
    std::vector<std::shared_ptr<void>> released;  // declared first: freed after the lock
    std::unique_lock lock(core->mutex);
    if (core->decorators[key].id != id) return;  // replaced meanwhile
    core->decorators[key] = {};
    if (key < core->by_key.size())
      for (auto& entry : core->by_key[key]) released.push_back(std::exchange(entry->decorated, nullptr));
  });
}

std::shared_ptr<void> ServiceRegistry::get_erased(std::uint32_t key) const {
  std::shared_lock lock(core_->mutex);
  if (key >= core_->by_key.size() || core_->by_key[key].empty()) return nullptr;
  return Core::lease(core_->by_key[key].front());
}

std::vector<std::shared_ptr<void>> ServiceRegistry::all_erased(std::uint32_t key) const {
  std::vector<std::shared_ptr<void>> out;
  std::shared_lock lock(core_->mutex);
  if (key < core_->by_key.size())
    for (auto& entry : core_->by_key[key]) out.push_back(Core::lease(entry));
  return out;
}

Tracker ServiceRegistry::track_erased(std::uint32_t key, ErasedListener listener, OwnerRef owner) {
  if (!owner) owner = kernel_owner();
  std::vector<std::shared_ptr<Core::Entry>> current;
  std::shared_ptr<Core::Listener> added;
  {
    std::unique_lock lock(core_->mutex);
    added = std::make_shared<Core::Listener>(Core::Listener{core_->next_id++, key, std::move(listener), {}, std::move(owner)});
    core_->listeners.push_back(added);
    if (key < core_->by_key.size()) current = core_->by_key[key];
  }
  for (auto& entry : current) added->typed(ServiceEvent::arrived, Core::lease(entry));
  return Tracker([weak = std::weak_ptr<Core>(core_), id = added->id] {
    if (auto core = weak.lock()) {
      std::unique_lock lock(core->mutex);
      std::erase_if(core->listeners, [id](const auto& l) { return l->id == id; });
    }
  });
}

Tracker ServiceRegistry::watch_all(std::function<void(ServiceEvent, const ServiceInfo&)> listener) {
  std::unique_lock lock(core_->mutex);
  auto added = std::make_shared<Core::Listener>(Core::Listener{core_->next_id++, all_keys, {}, std::move(listener), kernel_owner()});
  core_->listeners.push_back(added);
  return Tracker([weak = std::weak_ptr<Core>(core_), id = added->id] {
    if (auto core = weak.lock()) {
      std::unique_lock lock(core->mutex);
      std::erase_if(core->listeners, [id](const auto& l) { return l->id == id; });
    }
  });
}

std::vector<ServiceInfo> ServiceRegistry::list() const {
  std::vector<ServiceInfo> out;
  std::shared_lock lock(core_->mutex);
  for (auto& providers : core_->by_key)
    for (auto& entry : providers) out.push_back(Core::info(*entry));
  return out;
}

bool ServiceRegistry::has(std::string_view service_id) const {
  std::uint32_t key;
  {
    auto& table = intern_table();
    std::lock_guard lock(table.mutex);
    auto it = table.keys.find(std::string(service_id));
    if (it == table.keys.end()) return false;
    key = it->second;
  }
  std::shared_lock lock(core_->mutex);
  return key < core_->by_key.size() && !core_->by_key[key].empty();
}

std::size_t ServiceRegistry::sweep(std::uint64_t owner_id) {
  std::size_t removed = 0;
  {
    std::unique_lock lock(core_->mutex);
    removed += std::erase_if(core_->listeners, [&](const auto& l) { return l->owner->id == owner_id; });
  }
  core_->remove_entries([&](const Core::Entry& e) { return e.owner->id == owner_id; }, &removed);
  return removed;
}

std::size_t ServiceRegistry::count_owned(std::uint64_t owner_id) const {
  std::size_t count = 0;
  std::shared_lock lock(core_->mutex);
  for (auto& providers : core_->by_key)
    count += std::count_if(providers.begin(), providers.end(), [&](const auto& e) { return e->owner->id == owner_id; });
  count += std::count_if(core_->listeners.begin(), core_->listeners.end(),
                         [&](const auto& l) { return l->owner->id == owner_id; });
  return count;
}

}  // namespace synthorg

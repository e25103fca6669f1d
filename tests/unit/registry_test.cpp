#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "synthorg/registry.hpp"

namespace synthorg {
namespace {

struct Speaker {
  static constexpr std::string_view service_id = "test.Speaker/1";
  virtual ~Speaker() = default;
  virtual std::string say() const = 0;
};
struct Named final : Speaker {
  explicit Named(std::string name) : name(std::move(name)) {}
  std::string say() const override { return name; }
  std::string name;
};
struct BadlyNamed {
  static constexpr std::string_view service_id = "no version";
};

OwnerRef owner(std::uint64_t id, std::string name) { return std::make_shared<const Owner>(Owner{id, std::move(name)}); }

TEST(Registry, GetReturnsNothingWhenNoProvider) {
  ServiceRegistry registry;
  EXPECT_EQ(registry.get<Speaker>(), nullptr);
  EXPECT_TRUE(registry.all<Speaker>().empty());
  EXPECT_FALSE(registry.has("test.Speaker/1"));
}

TEST(Registry, HighestRankingWinsThenOldest) {
  ServiceRegistry registry;
  auto a = registry.provide<Speaker>(std::make_shared<Named>("a"));
  auto b = registry.provide<Speaker>(std::make_shared<Named>("b"), {.ranking = 5});
  auto c = registry.provide<Speaker>(std::make_shared<Named>("c"), {.ranking = 5});
  auto d = registry.provide<Speaker>(std::make_shared<Named>("d"), {.ranking = -1});
  EXPECT_EQ(registry.get<Speaker>()->say(), "b");
  std::vector<std::string> order;
  for (auto& s : registry.all<Speaker>()) order.push_back(s->say());
  EXPECT_EQ(order, (std::vector<std::string>{"b", "c", "a", "d"}));
  b.reset();
  EXPECT_EQ(registry.get<Speaker>()->say(), "c");
}

TEST(Registry, RegistrationEndsWithItsToken) {
  ServiceRegistry registry;
  {
    auto registration = registry.provide<Speaker>(std::make_shared<Named>("x"));
    EXPECT_TRUE(registry.has("test.Speaker/1"));
  }
  EXPECT_EQ(registry.get<Speaker>(), nullptr);
}

TEST(Registry, LeaseKeepsProviderAliveAfterItDeparts) {
  ServiceRegistry registry;
  auto provider = std::make_shared<Named>("kept");
  std::weak_ptr<Named> watch = provider;
  auto registration = registry.provide<Speaker>(std::move(provider));
  auto lease = registry.get<Speaker>();
  registration.reset();
  EXPECT_EQ(registry.get<Speaker>(), nullptr);
  ASSERT_FALSE(watch.expired()) << "an in-flight caller's provider must stay alive";
  EXPECT_EQ(lease->say(), "kept");
  lease.reset();
  EXPECT_TRUE(watch.expired());
}

TEST(Registry, TrackerSeesCurrentArrivalsAndDepartures) {
  ServiceRegistry registry;
  auto first = registry.provide<Speaker>(std::make_shared<Named>("first"));
  std::vector<std::string> seen;
  auto tracker = registry.track<Speaker>([&](ServiceEvent event, const std::shared_ptr<Speaker>& s) {
    seen.push_back((event == ServiceEvent::arrived ? "+" : "-") + s->say());
  });
  auto second = registry.provide<Speaker>(std::make_shared<Named>("second"));
  first.reset();
  tracker.reset();
  second.reset();
  EXPECT_EQ(seen, (std::vector<std::string>{"+first", "+second", "-first"}));
}

TEST(Registry, ListenersMayCallBackIntoTheRegistry) {
  ServiceRegistry registry;
  std::size_t providers_seen = 0;
  auto tracker = registry.track<Speaker>([&](ServiceEvent, const std::shared_ptr<Speaker>&) {
    providers_seen = registry.all<Speaker>().size();  // would deadlock if called under the lock
  });
  auto registration = registry.provide<Speaker>(std::make_shared<Named>("x"));
  EXPECT_EQ(providers_seen, 1u);
}

TEST(Registry, SweepRemovesEverythingAnOwnerMade) {
  ServiceRegistry registry;
  auto plugin = owner(77, "plugin");
  std::vector<std::string> departed;
  auto watch = registry.watch_all([&](ServiceEvent event, const ServiceInfo& info) {
    if (event == ServiceEvent::departed) departed.push_back(info.owner + ":" + info.service_id);
  });
  auto kept = registry.provide<Speaker>(std::make_shared<Named>("kernel's"));
  auto leaked = registry.provide<Speaker>(std::make_shared<Named>("plugin's"), {}, plugin);
  auto leaked_tracker = registry.track<Speaker>([](ServiceEvent, const std::shared_ptr<Speaker>&) {}, plugin);
  EXPECT_EQ(registry.count_owned(77), 2u);
  EXPECT_EQ(registry.sweep(77), 2u);
  EXPECT_EQ(registry.count_owned(77), 0u);
  EXPECT_EQ(departed, std::vector<std::string>{"plugin:test.Speaker/1"});
  EXPECT_EQ(registry.get<Speaker>()->say(), "kernel's");
  leaked.reset();  // releasing after a sweep is harmless
  EXPECT_EQ(registry.all<Speaker>().size(), 1u);
}

// What the kernel does with the Store and the Orchestrator while a Tracer runs.
struct Loud final : Speaker {
  explicit Loud(std::shared_ptr<Speaker> inner) : inner(std::move(inner)) {}
  std::string say() const override { return inner->say() + "!"; }
  std::shared_ptr<Speaker> inner;
};

TEST(Registry, DecoratorWrapsEveryProviderWhileItsTokenLives) {
  ServiceRegistry registry;
  std::weak_ptr<Named> watch;
  auto before = registry.provide<Speaker>(std::make_shared<Named>("a"), {.ranking = 1});
  {
    auto decoration = registry.decorate<Speaker>([](std::shared_ptr<Speaker> inner) {
      return std::make_shared<Loud>(std::move(inner));
    });
    auto provider = std::make_shared<Named>("b");
    watch = provider;
    auto after = registry.provide<Speaker>(std::move(provider));
    EXPECT_EQ(registry.get<Speaker>()->say(), "a!") << "a provider already there is wrapped";
    std::vector<std::string> all;
    for (auto& s : registry.all<Speaker>()) all.push_back(s->say());
    EXPECT_EQ(all, (std::vector<std::string>{"a!", "b!"})) << "and one that arrives later";
    std::vector<std::string> tracked;
    auto tracker = registry.track<Speaker>([&](ServiceEvent, const std::shared_ptr<Speaker>& s) { tracked.push_back(s->say()); });
    EXPECT_EQ(tracked, (std::vector<std::string>{"a!", "b!"}));
    EXPECT_EQ(registry.list().size(), 2u) << "a decorator is not a registration";
  }
  EXPECT_TRUE(watch.expired()) << "a departed provider is not kept by its wrapper";
  EXPECT_EQ(registry.get<Speaker>()->say(), "a") << "without the decorator, the provider itself";
}

TEST(Registry, RefusesNullProvidersAndMalformedIds) {
  ServiceRegistry registry;
  EXPECT_THROW(registry.provide<Speaker>(nullptr), std::invalid_argument);
  EXPECT_THROW(registry.provide<BadlyNamed>(std::make_shared<BadlyNamed>()), std::invalid_argument);
  for (auto id : {"synthorg.Store/1", "a/1", "acme.http_router.Cache/12"}) EXPECT_TRUE(valid_service_id(id)) << id;
  for (auto id : {"", "synthorg.Store", "synthorg.Store/0", "Synthorg.Store/1", "a..b/1", "a./1", "a b/1", "a/1x"})
    EXPECT_FALSE(valid_service_id(id)) << id;
}

TEST(Registry, ConcurrentLookupsAndChangesAreSafe) {
  ServiceRegistry registry;
  auto base = registry.provide<Speaker>(std::make_shared<Named>("base"));
  std::atomic<bool> stop{false};
  std::atomic<std::size_t> lookups{0};
  std::vector<std::thread> readers;
  for (int i = 0; i < 3; ++i)
    readers.emplace_back([&] {
      while (!stop) {
        auto s = registry.get<Speaker>();
        ASSERT_NE(s, nullptr);
        EXPECT_FALSE(s->say().empty());
        ++lookups;
      }
    });
  // Churn only once every reader is looking up, so the test always races them.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (lookups.load() < 3000 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  ASSERT_GE(lookups.load(), 3000u) << "reader threads never ran";
  for (int i = 0; i < 2000; ++i) {
    auto r = registry.provide<Speaker>(std::make_shared<Named>("churn"), {.ranking = i % 3});
  }
  stop = true;
  for (auto& t : readers) t.join();
  EXPECT_EQ(registry.all<Speaker>().size(), 1u);
}

}  // namespace
}  // namespace synthorg

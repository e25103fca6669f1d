// Registry lookup cost and bus throughput/latency. Run: build/default/bin/synthorg-bench
#include <benchmark/benchmark.h>

#include <atomic>
#include <thread>

#include "synthorg/bus.hpp"
#include "synthorg/host/thread_pool_executor.hpp"
#include "synthorg/registry.hpp"

namespace {

struct Probe {
  static constexpr std::string_view service_id = "bench.Probe/1";
  virtual ~Probe() = default;
  virtual int value() const = 0;
};
struct ProbeImpl final : Probe {
  int value() const override { return 42; }
};

void RegistryGet(benchmark::State& state) {
  synthorg::ServiceRegistry registry;
  auto registration = registry.provide<Probe>(std::make_shared<ProbeImpl>());
  for (auto _ : state) {
    auto probe = registry.get<Probe>();
    benchmark::DoNotOptimize(probe->value());
  }
}
BENCHMARK(RegistryGet);

// Queued delivery: one publisher thread, N subscribers on a 2-thread executor. Counts events
// delivered per second (items), waiting for the last delivery before the clock stops.
void BusQueuedThroughput(benchmark::State& state) {
  const int subscribers = static_cast<int>(state.range(0));
  const int batch = 200'000;
  synthorg::host::ThreadPoolExecutor executor({2, 1, 16});
  synthorg::EventBus bus([&](std::function<void()> task) { executor.post(std::move(task)); });
  std::atomic<std::int64_t> delivered{0};
  std::vector<synthorg::Subscription> subs;
  for (int i = 0; i < subscribers; ++i)
    subs.push_back(bus.subscribe("bench.tick", [&](const synthorg::Event&) { delivered.fetch_add(1, std::memory_order_relaxed); },
                                 {.queue_capacity = 1 << 22}));
  for (auto _ : state) {
    delivered = 0;
    for (int i = 0; i < batch; ++i) bus.publish("bench.tick", nlohmann::json());
    while (delivered.load(std::memory_order_relaxed) < static_cast<std::int64_t>(batch) * subscribers) std::this_thread::yield();
  }
  state.SetItemsProcessed(state.iterations() * batch * subscribers);
  state.counters["dropped"] = static_cast<double>(bus.stats().dropped);
}
BENCHMARK(BusQueuedThroughput)->Arg(1)->Arg(8)->Unit(benchmark::kMillisecond)->UseRealTime();

// Publish-to-handler latency, one event at a time (the queue is empty each time).
void BusQueuedLatency(benchmark::State& state) {
  const int subscribers = static_cast<int>(state.range(0));
  synthorg::host::ThreadPoolExecutor executor({2, 1, 16});
  synthorg::EventBus bus([&](std::function<void()> task) { executor.post(std::move(task)); });
  std::atomic<int> delivered{0};
  std::vector<synthorg::Subscription> subs;
  for (int i = 0; i < subscribers; ++i)
    subs.push_back(bus.subscribe("bench.tick", [&](const synthorg::Event&) { delivered.fetch_add(1); }));
  for (auto _ : state) {
    delivered = 0;
    bus.publish("bench.tick", nlohmann::json());
    while (delivered.load() < subscribers) {
    }
  }
}
BENCHMARK(BusQueuedLatency)->Arg(1)->Arg(8)->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace



namespace {
// The publisher's own cost: with no subscriber, and with one called inline.
void BusPublishCost(benchmark::State& state) {
  synthorg::host::ThreadPoolExecutor executor({1, 1, 16});
  synthorg::EventBus bus([&](std::function<void()> task) { executor.post(std::move(task)); });
  std::int64_t seen = 0;
  synthorg::Subscription sub;
  if (state.range(0))
    sub = bus.subscribe("bench.tick", [&](const synthorg::Event&) { ++seen; }, {.delivery = synthorg::Delivery::immediate});
  for (auto _ : state) bus.publish("bench.tick", nlohmann::json());
  benchmark::DoNotOptimize(seen);
}
BENCHMARK(BusPublishCost)->Arg(0)->Arg(1);
}  // namespace
BENCHMARK_MAIN();

#include <gtest/gtest.h>

#include <condition_variable>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "synthorg/bus.hpp"
#include "synthorg/events.hpp"
#include "synthorg/host/thread_pool_executor.hpp"
#include "synthorg/trace_context.hpp"

namespace synthorg {
namespace {

// A bus on a real executor, and a way to wait for queued deliveries.
class BusTest : public ::testing::Test {
 protected:
  host::ThreadPoolExecutor executor{{2, 1, 16}};
  EventBus bus{[this](std::function<void()> task) { executor.post(std::move(task)); }};

  template <class Predicate>
  bool eventually(Predicate done, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
  }
};

TEST(Topics, ValidationAndMatching) {
  for (auto t : {"workload.spawned", "a", "fine_tune.progress", "x.y.z9"}) EXPECT_TRUE(valid_topic(t)) << t;
  for (auto t : {"", "Workload.spawned", "workload.", ".x", "a..b", "a b", "a.*", "*"}) EXPECT_FALSE(valid_topic(t)) << t;
  for (auto p : {"*", "workload.*", "workload.spawned", "a.b.*"}) EXPECT_TRUE(valid_pattern(p)) << p;
  for (auto p : {"", "**", "workload*", "*.spawned", "workload.*.x", ".*"}) EXPECT_FALSE(valid_pattern(p)) << p;
  EXPECT_TRUE(topic_matches("workload.*", "workload.spawned"));
  EXPECT_TRUE(topic_matches("workload.*", "workload.a.b"));
  EXPECT_FALSE(topic_matches("workload.*", "workload"));
  EXPECT_FALSE(topic_matches("workload.*", "workloads.spawned"));
  EXPECT_TRUE(topic_matches("*", "anything.at.all"));
  EXPECT_FALSE(topic_matches("workload.spawned", "workload.spawned.more"));
}

TEST_F(BusTest, QueuedDeliveryKeepsOrderAndFillsEveryField) {
  std::mutex mutex;
  std::vector<Event> received;
  auto sub = bus.subscribe("job.*", [&](const Event& e) {
    std::lock_guard lock(mutex);
    received.push_back(e);
  });
  for (int i = 0; i < 1000; ++i) bus.publish("job.step", {{"n", i}}, "tester", i == 0 ? "trace-1" : "");
  bus.publish("other.topic", {});
  ASSERT_TRUE(eventually([&] { std::lock_guard lock(mutex); return received.size() == 1000; }));
  std::set<std::string> ids;
  for (int i = 0; i < 1000; ++i) {
    EXPECT_EQ(received[i].payload["n"], i);
    EXPECT_EQ(received[i].topic, "job.step");
    EXPECT_EQ(received[i].source, "tester");
    ids.insert(received[i].id);
  }
  EXPECT_EQ(ids.size(), 1000u) << "event ids must be unique";
  EXPECT_EQ(received[0].trace_id, "trace-1");
  EXPECT_LE(received[0].time, std::chrono::system_clock::now());
  EXPECT_EQ(bus.stats().published, 1001u);
}

TEST_F(BusTest, EventsPublishedInsideATraceNameIt) {
  std::mutex mutex;
  std::vector<Event> received;
  auto sub = bus.subscribe("job.*", [&](const Event& e) {
    std::lock_guard lock(mutex);
    received.push_back(e);
  });
  bus.publish("job.untraced", {});
  {
    trace::ScopedContext scope(*trace::parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));
    bus.publish("job.traced", {});
    bus.publish("job.explicit", {}, "tester", "given");
  }
  ASSERT_TRUE(eventually([&] { std::lock_guard lock(mutex); return received.size() == 3; }));
  std::map<std::string, std::string> trace_of;
  for (const auto& event : received) trace_of[event.topic] = event.trace_id;
  EXPECT_EQ(trace_of["job.untraced"], "");
  EXPECT_EQ(trace_of["job.traced"], "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_EQ(trace_of["job.explicit"], "given") << "a trace id given by the publisher wins";
}

TEST_F(BusTest, ImmediateDeliveryRunsOnThePublishersThread) {
  std::thread::id ran_on;
  auto sub = bus.subscribe("x", [&](const Event&) { ran_on = std::this_thread::get_id(); }, {.delivery = Delivery::immediate});
  bus.publish("x", {});
  EXPECT_EQ(ran_on, std::this_thread::get_id());
}

TEST_F(BusTest, FullQueueDropsAndCountsWithoutBlockingThePublisher) {
  std::promise<void> release;
  auto released = release.get_future().share();
  std::atomic<int> handled{0};
  std::atomic<bool> entered{false};
  auto sub = bus.subscribe("flood", [&](const Event&) { entered = true; released.wait(); ++handled; }, {.queue_capacity = 4});
  bus.publish("flood", {});
  ASSERT_TRUE(eventually([&] { return entered.load(); }));  // the first event is now in the handler
  auto began = std::chrono::steady_clock::now();
  for (int i = 0; i < 100; ++i) bus.publish("flood", {});
  EXPECT_LT(std::chrono::steady_clock::now() - began, std::chrono::seconds(1)) << "publishing must not wait for a slow subscriber";
  release.set_value();
  ASSERT_TRUE(eventually([&] { return handled + bus.stats().dropped == 101; }));
  EXPECT_GE(bus.stats().dropped, 96u);
  EXPECT_LE(handled.load(), 5);
}

TEST_F(BusTest, ThrowingHandlerIsIsolatedAndReported) {
  std::atomic<int> healthy{0};
  std::mutex mutex;
  std::vector<nlohmann::json> reports;
  OwnerRef bad_owner = std::make_shared<const Owner>(Owner{42, "bad-plugin"});
  auto bad = bus.subscribe("job.done", [](const Event&) { throw std::runtime_error("boom"); }, {}, bad_owner);
  auto good = bus.subscribe("job.done", [&](const Event&) { ++healthy; });
  auto errors = bus.subscribe("bus.handler_error", [&](const Event& e) {
    std::lock_guard lock(mutex);
    reports.push_back(e.payload);
  });
  bus.publish("job.done", {});
  bus.publish("job.done", {});
  ASSERT_TRUE(eventually([&] { std::lock_guard lock(mutex); return healthy == 2 && reports.size() == 2; }));
  EXPECT_EQ(reports[0]["error"], "boom");
  EXPECT_EQ(reports[0]["subscriber"], "bad-plugin");
  EXPECT_EQ(reports[0]["topic"], "job.done");
  EXPECT_EQ(bus.stats().handler_errors, 2u);
}

TEST_F(BusTest, FailingErrorHandlerDoesNotLoop) {
  auto bad = bus.subscribe("*", [](const Event&) { throw std::runtime_error("always"); });
  bus.publish("job.done", {});
  ASSERT_TRUE(eventually([&] { return bus.stats().handler_errors == 2; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(bus.stats().handler_errors, 2u) << "the report of a failure must not itself be reported";
}

TEST_F(BusTest, UnsubscribeWaitsForAHandlerInFlight) {
  std::atomic<bool> entered{false}, finished{false};
  auto sub = bus.subscribe("slow", [&](const Event&) {
    entered = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    finished = true;
  });
  bus.publish("slow", {});
  ASSERT_TRUE(eventually([&] { return entered.load(); }));
  sub.reset();
  EXPECT_TRUE(finished) << "after unsubscribe returns, the handler must not be running";
}

TEST_F(BusTest, HandlerMayUnsubscribeItself) {
  Subscription sub;
  std::atomic<int> calls{0};
  sub = bus.subscribe("once", [&](const Event&) { ++calls; sub.reset(); }, {.delivery = Delivery::immediate});
  bus.publish("once", {});
  bus.publish("once", {});
  EXPECT_EQ(calls, 1);
}

TEST_F(BusTest, SweepEndsAnOwnersSubscriptions) {
  OwnerRef plugin = std::make_shared<const Owner>(Owner{9, "p"});
  std::atomic<int> calls{0};
  auto sub = bus.subscribe("x", [&](const Event&) { ++calls; }, {.delivery = Delivery::immediate}, plugin);
  EXPECT_EQ(bus.count_owned(9), 1u);
  EXPECT_EQ(bus.sweep(9), 1u);
  bus.publish("x", {});
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(bus.stats().subscriptions, 0u);
}

TEST_F(BusTest, MalformedTopicsAndPatternsAreRefused) {
  EXPECT_THROW(bus.publish("Bad Topic", {}), std::invalid_argument);
  EXPECT_THROW(bus.subscribe("a.*.b", [](const Event&) {}), std::invalid_argument);
  EXPECT_THROW(bus.subscribe("ok", nullptr), std::invalid_argument);
  EXPECT_THROW(bus.subscribe("ok", [](const Event&) {}, {.queue_capacity = 0}), std::invalid_argument);
}

TEST_F(BusTest, TypedEventsRoundTrip) {
  std::promise<events::PluginStarted> got;
  auto sub = bus.subscribe("plugin.started", [&](const Event& e) { got.set_value(e.payload.get<events::PluginStarted>()); });
  bus.publish(events::PluginStarted{"web", "1.0.0", 2.5});
  auto future = got.get_future();
  ASSERT_EQ(future.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  auto started = future.get();
  EXPECT_EQ(started.plugin, "web");
  EXPECT_EQ(started.start_ms, 2.5);
}

TEST_F(BusTest, NothingIsDeliveredAfterShutdown) {
  std::atomic<int> calls{0};
  auto sub = bus.subscribe("x", [&](const Event&) { ++calls; }, {.delivery = Delivery::immediate});
  bus.shutdown();
  bus.publish("x", {});
  EXPECT_EQ(calls, 0);
}

}  // namespace
}  // namespace synthorg

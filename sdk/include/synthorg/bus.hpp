// The event bus: dotted topics, JSON payloads, trailing-wildcard subscriptions.
//
// Delivery is queued on the executor by default: each subscription has its own bounded
// queue drained in order by one task at a time, so a slow subscriber delays only itself and
// a full queue drops (and counts) instead of blocking the publisher. Inline delivery calls
// the handler on the publisher's thread. Handlers run with no bus lock held; one that
// throws is isolated and reported as a `bus.handler_error` event.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "synthorg/registry.hpp"
#include "synthorg/token.hpp"
#include "synthorg/trace_context.hpp"

namespace synthorg {

class Tracer;

struct Event {
  std::string id;
  std::string topic;
  std::chrono::system_clock::time_point time;
  std::string source;    // the plugin that published it, or "kernel"
  std::string trace_id;  // optional
  nlohmann::json payload;
  // The span the publisher worked for (invalid when none): each delivery's span is its child.
  // Last, so the fields above keep their places for plugins built before it.
  TraceContext context;
};
nlohmann::json to_json(const Event& event);

using EventHandler = std::function<void(const Event&)>;

enum class Delivery { queued, immediate };

struct SubscribeOptions {
  Delivery delivery = Delivery::queued;
  std::size_t queue_capacity = 65536;  // events waiting for this subscriber; beyond: dropped
};

struct BusStats {
  std::uint64_t published = 0;
  std::uint64_t delivered = 0;
  std::uint64_t dropped = 0;
  std::uint64_t handler_errors = 0;
  std::size_t subscriptions = 0;
};

// Topics: lower-case dotted words, `^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$`.
// Patterns: a topic, a topic followed by `.*` (that prefix and anything below it), or `*`.
bool valid_topic(std::string_view topic) noexcept;
bool valid_pattern(std::string_view pattern) noexcept;
bool topic_matches(std::string_view pattern, std::string_view topic) noexcept;

class EventBus {
 public:
  // `post` schedules a task on the executor that runs queued deliveries.
  using Poster = std::function<void(std::function<void()>)>;
  explicit EventBus(Poster post);
  ~EventBus();
  EventBus(const EventBus&) = delete;
  EventBus& operator=(const EventBus&) = delete;

  // Throws std::invalid_argument for a malformed pattern. Releasing the subscription waits
  // for a handler call in flight on another thread, so that a stopping plugin can free what
  // its handler uses; releasing it from inside its own handler does not wait.
  Subscription subscribe(std::string pattern, EventHandler handler, SubscribeOptions options = {},
                         OwnerRef owner = kernel_owner());

  // Throws std::invalid_argument for a malformed topic. Never blocks on a subscriber.
  void publish(std::string topic, nlohmann::json payload, std::string_view source = "kernel",
               std::string trace_id = {});
  // Typed events declare `static constexpr std::string_view topic` and to_json().
  template <class E>
    requires requires { E::topic; }
  void publish(const E& event, std::string_view source = "kernel", std::string trace_id = {}) {
    publish(std::string(E::topic), nlohmann::json(event), source, std::move(trace_id));
  }

  // While a Tracer is set, each delivery runs in a CONSUMER span `bus.deliver <topic>`, child of
  // the publisher's span when the event carries one, and is the handler's current context. The
  // kernel sets it while a Tracer runs; with none, a delivery costs one relaxed load more.
  void trace_deliveries(std::shared_ptr<Tracer> tracer);

  BusStats stats() const;
  std::size_t sweep(std::uint64_t owner_id);
  std::size_t count_owned(std::uint64_t owner_id) const;
  // After shutdown, publishing is a no-op and queued events are discarded.
  void shutdown();

 private:
  struct Core;
  std::shared_ptr<Core> core_;
};

}  // namespace synthorg

#include "synthorg/bus.hpp"
#include "synthorg/host/call_in_flight.hpp"
#include "synthorg/trace_context.hpp"

#include <atomic>
#include <charconv>
#include <condition_variable>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include "synthorg/log.hpp"
#include "synthorg/services/tracer.hpp"

namespace synthorg {
namespace {

bool valid_dotted(std::string_view text) {
  if (text.empty() || !(text[0] >= 'a' && text[0] <= 'z')) return false;
  bool after_dot = false;
  for (char c : text) {
    if (c == '.') {
      if (after_dot) return false;
      after_dot = true;
    } else if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_') {
      after_dot = false;
    } else {
      return false;
    }
  }
  return !after_dot;
}

constexpr std::string_view handler_error_topic = "bus.handler_error";

// A counter on its own cache line: the publisher and the draining threads write different
// counters, and sharing a line would make every event bounce it between cores.
struct alignas(64) Counter {
  std::atomic<std::uint64_t> value{0};
  void add(std::uint64_t n = 1) noexcept { value.fetch_add(n, std::memory_order_relaxed); }
  std::uint64_t get() const noexcept { return value.load(std::memory_order_relaxed); }
};

}  // namespace

bool valid_topic(std::string_view topic) noexcept { return valid_dotted(topic); }

bool valid_pattern(std::string_view pattern) noexcept {
  if (pattern == "*") return true;
  if (pattern.size() > 2 && pattern.substr(pattern.size() - 2) == ".*")
    return valid_dotted(pattern.substr(0, pattern.size() - 2));
  return valid_dotted(pattern);
}

bool topic_matches(std::string_view pattern, std::string_view topic) noexcept {
  if (pattern == "*") return true;
  if (pattern.size() > 2 && pattern.substr(pattern.size() - 2) == ".*") {
    auto prefix = pattern.substr(0, pattern.size() - 1);  // keeps the dot: "workload."
    return topic.substr(0, prefix.size()) == prefix && topic.size() > prefix.size();
  }
  return pattern == topic;
}

nlohmann::json to_json(const Event& event) {
  auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(event.time.time_since_epoch()).count();
  nlohmann::json out{{"id", event.id}, {"topic", event.topic}, {"time_ms", millis},
                     {"source", event.source}, {"payload", event.payload}};
  if (!event.trace_id.empty()) out["trace_id"] = event.trace_id;
  return out;
}

namespace {

// Guards a subscriber's queue, whose critical sections are a push_back or a swap. A mutex
// that sleeps made the publisher and the drainer wake each other through futex calls on
// nearly every event; spinning briefly, then yielding, keeps both on their cores.
class QueueLock {
 public:
  void lock() noexcept {
    for (int spins = 0; locked_.exchange(true, std::memory_order_acquire); ++spins) {
      while (locked_.load(std::memory_order_relaxed)) {
        if (++spins > 64) std::this_thread::yield();
      }
    }
  }
  bool try_lock() noexcept { return !locked_.exchange(true, std::memory_order_acquire); }
  void unlock() noexcept { locked_.store(false, std::memory_order_release); }

 private:
  std::atomic<bool> locked_{false};
};

struct Subscriber {
  std::uint64_t id;
  std::string pattern;
  EventHandler handler;
  SubscribeOptions options;
  OwnerRef owner;
  std::atomic<bool> active{true};
  std::atomic<int> in_flight{0};

  QueueLock mutex;  // guards queue and scheduled
  std::condition_variable_any idle;
  std::vector<std::shared_ptr<const Event>> queue;
  std::vector<std::shared_ptr<const Event>> draining;  // touched only by the one drain task
  bool scheduled = false;
};

// The subscribers whose handlers this thread is inside, innermost last: releasing one of
// them from its own (possibly nested) handler must not wait for itself.
thread_local std::vector<const Subscriber*> handlers_on_this_thread;

}  // namespace

struct EventBus::Core : std::enable_shared_from_this<EventBus::Core> {
  using Subscribers = std::vector<std::shared_ptr<Subscriber>>;

  Poster post;
  std::string id_prefix;
  Counter next_sequence, published, delivered, dropped, handler_errors;
  std::atomic<bool> closed{false};
  log::Logger log{"bus"};

  // Read once per batch (or per immediate publish); the flag spares the lock when tracing is off.
  std::atomic<bool> tracing{false};
  mutable std::mutex tracer_mutex;
  std::shared_ptr<Tracer> tracer;
  std::shared_ptr<Tracer> current_tracer() const {
    if (!tracing.load(std::memory_order_relaxed)) return nullptr;
    std::lock_guard lock(tracer_mutex);
    return tracer;
  }

  // Spent events are released by the next publisher, not by the draining thread: an event
  // allocated on one thread and freed on another makes both fight over glibc's arena lock,
  // which cost more than everything else the bus does per event (see docs/performance.md).
  static constexpr std::size_t max_spent = 1 << 16;
  std::mutex spent_mutex;
  std::vector<std::shared_ptr<const Event>> spent;

  void retire(std::vector<std::shared_ptr<const Event>>& batch) {
    {
      std::lock_guard lock(spent_mutex);
      if (spent.size() + batch.size() <= max_spent) {
        spent.insert(spent.end(), std::make_move_iterator(batch.begin()), std::make_move_iterator(batch.end()));
      }
    }
    batch.clear();  // what did not fit (rare) is released here
  }

  void release_spent() {
    std::vector<std::shared_ptr<const Event>> released;
    {
      std::unique_lock lock(spent_mutex, std::try_to_lock);
      if (!lock || spent.empty()) return;
      released.swap(spent);
    }
  }

  mutable std::mutex subscribers_mutex;
  std::shared_ptr<const Subscribers> subscribers = std::make_shared<const Subscribers>();
  std::uint64_t next_subscriber_id = 1;

  std::shared_ptr<const Subscribers> snapshot() const {
    std::lock_guard lock(subscribers_mutex);
    return subscribers;
  }

  std::string next_event_id() {
    char digits[17];
    auto [end, ec] = std::to_chars(digits, digits + sizeof digits, next_sequence.value.fetch_add(1, std::memory_order_relaxed) + 1, 16);
    (void)ec;
    std::string id;
    id.reserve(id_prefix.size() + 1 + static_cast<std::size_t>(end - digits));
    id += id_prefix;
    id += '-';
    id.append(digits, end);
    return id;
  }

  // The caller has put `subscriber` on handlers_on_this_thread. True when the handler returned.
  bool call_handler(Subscriber& subscriber, const Event& event) {
    host::CallInFlight in_flight({"the event handler of '", subscriber.owner->name, "' for ", event.topic});
    try {
      subscriber.handler(event);
      return true;
    } catch (const std::exception& e) {
      report_handler_error(subscriber, event, e.what());
    } catch (...) {
      report_handler_error(subscriber, event, "unknown exception");
    }
    return false;
  }

  // call_handler inside the delivery's span, when tracing.
  bool deliver(Subscriber& subscriber, const Event& event, Tracer* tracer) {
    if (!tracer) return call_handler(subscriber, event);
    auto span = tracer->start_span("bus.deliver " + event.topic, SpanKind::consumer, event.context);
    trace::ScopedContext scope(span->context());
    if (span->recording()) {
      span->set_attribute("messaging.system", std::string("synthorg"));
      span->set_attribute("messaging.operation.type", std::string("process"));
      span->set_attribute("messaging.destination.name", event.topic);
      span->set_attribute("messaging.message.id", event.id);
      span->set_attribute("synthorg.bus.subscriber", subscriber.owner->name);
      span->set_attribute("synthorg.bus.pattern", subscriber.pattern);
    }
    bool returned = call_handler(subscriber, event);
    if (!returned) span->set_error("the event handler threw");
    return returned;
  }

  void report_handler_error(const Subscriber& subscriber, const Event& event, std::string_view what) {
    handler_errors.add();
    log.warn("Event handler failed", {{"topic", event.topic}, {"event_id", event.id},
                                      {"subscriber", subscriber.owner->name}, {"pattern", subscriber.pattern},
                                      {"error", what}});
    if (event.topic == handler_error_topic) return;  // never report a report: no loops
    publish(std::string(handler_error_topic),
            {{"topic", event.topic}, {"event_id", event.id}, {"subscriber", subscriber.owner->name},
             {"pattern", subscriber.pattern}, {"error", what}},
            "kernel", event.trace_id, event.context);
  }

  void end_calls(Subscriber& subscriber) {
    if (subscriber.in_flight.fetch_sub(1) == 1 && !subscriber.active.load()) {
      std::lock_guard lock(subscriber.mutex);
      subscriber.idle.notify_all();
    }
  }

  void enqueue(const std::shared_ptr<Subscriber>& subscriber, const std::shared_ptr<const Event>& event) {
    bool schedule = false;
    {
      std::lock_guard lock(subscriber->mutex);
      if (subscriber->queue.size() >= subscriber->options.queue_capacity) {
        dropped.add();
        return;
      }
      subscriber->queue.push_back(event);
      schedule = !std::exchange(subscriber->scheduled, true);
    }
    if (schedule) post([self = shared_from_this(), subscriber] { self->drain(subscriber); });
  }

  // Takes everything queued; false (and marks the subscriber idle) when there was nothing.
  bool take_batch(Subscriber& subscriber, bool may_go_idle) {
    std::lock_guard lock(subscriber.mutex);
    subscriber.draining.swap(subscriber.queue);
    if (!subscriber.draining.empty()) return true;
    if (may_go_idle || !subscriber.active.load()) subscriber.scheduled = false;
    return false;
  }

  // Drains in batches while events keep coming. Going idle costs the next publisher a post
  // and a thread wake-up (a futex round-trip, far more than an event), so before going idle
  // the task yields a few times to let a busy publisher refill the queue. After
  // `batches_per_task` it reposts itself, so that a busy subscriber takes turns with the
  // rest of the executor's work.
  void drain(const std::shared_ptr<Subscriber>& subscriber) {
    constexpr int batches_per_task = 64;
    constexpr int idle_checks = 2;
    auto& batch = subscriber->draining;
    for (int round = 0; round < batches_per_task; ++round) {
      bool got = take_batch(*subscriber, false);
      for (int check = 0; !got && check < idle_checks && subscriber->active.load(); ++check) {
        std::this_thread::yield();
        got = take_batch(*subscriber, check + 1 == idle_checks);
      }
      if (!got) {
        if (subscriber->active.load()) return;  // take_batch marked it idle
        std::lock_guard lock(subscriber->mutex);
        subscriber->scheduled = false;
        return;
      }
      subscriber->in_flight.fetch_add(1);
      handlers_on_this_thread.push_back(subscriber.get());
      std::uint64_t succeeded = 0;
      auto traced_by = current_tracer();
      for (const auto& event : batch) {
        if (!subscriber->active.load(std::memory_order_relaxed) || closed.load(std::memory_order_relaxed)) break;
        succeeded += deliver(*subscriber, *event, traced_by.get());
      }
      handlers_on_this_thread.pop_back();
      delivered.add(succeeded);
      retire(batch);
      end_calls(*subscriber);
      if (!subscriber->active.load()) {
        std::lock_guard lock(subscriber->mutex);
        subscriber->queue.clear();
        subscriber->scheduled = false;
        return;
      }
    }
    post([self = shared_from_this(), subscriber] { self->drain(subscriber); });
  }

  void publish(std::string topic, nlohmann::json payload, std::string_view source, std::string trace_id,
               TraceContext context = {}) {
    if (!valid_dotted(topic))
      throw std::invalid_argument("invalid event topic \"" + topic +
                                  "\": use lower-case dotted words, e.g. \"workload.spawned\"");
    if (closed.load(std::memory_order_relaxed)) return;
    release_spent();
    auto event = std::make_shared<const Event>(Event{next_event_id(), std::move(topic), std::chrono::system_clock::now(),
                                                     std::string(source), std::move(trace_id), std::move(payload),
                                                     std::move(context)});
    published.add();
    auto current = snapshot();
    std::shared_ptr<Tracer> traced_by;  // looked up at the first immediate delivery
    for (const auto& subscriber : *current) {
      if (!topic_matches(subscriber->pattern, event->topic) || !subscriber->active.load(std::memory_order_relaxed))
        continue;
      if (subscriber->options.delivery == Delivery::immediate) {
        subscriber->in_flight.fetch_add(1);
        handlers_on_this_thread.push_back(subscriber.get());
        if (!traced_by) traced_by = current_tracer();
        if (subscriber->active.load() && deliver(*subscriber, *event, traced_by.get())) delivered.add();
        handlers_on_this_thread.pop_back();
        end_calls(*subscriber);
      } else {
        enqueue(subscriber, event);
      }
    }
  }

  void deactivate(const std::shared_ptr<Subscriber>& subscriber) {
    subscriber->active.store(false);
    bool inside_own_handler = false;
    for (auto* running : handlers_on_this_thread) inside_own_handler |= running == subscriber.get();
    std::unique_lock lock(subscriber->mutex);
    subscriber->queue.clear();
    if (!inside_own_handler) subscriber->idle.wait(lock, [&] { return subscriber->in_flight.load() == 0; });
  }

  std::size_t remove_where(const std::function<bool(const Subscriber&)>& doomed) {
    std::vector<std::shared_ptr<Subscriber>> removed;
    {
      std::lock_guard lock(subscribers_mutex);
      auto next = std::make_shared<Subscribers>();
      for (const auto& subscriber : *subscribers) (doomed(*subscriber) ? removed : *next).push_back(subscriber);
      if (!removed.empty()) subscribers = std::move(next);
    }
    for (const auto& subscriber : removed) deactivate(subscriber);
    return removed.size();
  }
};

EventBus::EventBus(Poster post) : core_(std::make_shared<Core>()) {
  if (!post) throw std::invalid_argument("EventBus needs a poster for queued delivery");
  core_->post = std::move(post);
  std::random_device random;
  char prefix[9];
  std::snprintf(prefix, sizeof prefix, "%08x", static_cast<unsigned>(random()));
  core_->id_prefix = prefix;
}

EventBus::~EventBus() { shutdown(); }

Subscription EventBus::subscribe(std::string pattern, EventHandler handler, SubscribeOptions options, OwnerRef owner) {
  if (!valid_pattern(pattern))
    throw std::invalid_argument("invalid subscription pattern \"" + pattern +
                                "\": use a topic (\"workload.spawned\"), a prefix with a trailing wildcard "
                                "(\"workload.*\") or \"*\"");
  if (!handler) throw std::invalid_argument("subscription to \"" + pattern + "\" has no handler");
  if (options.queue_capacity == 0) throw std::invalid_argument("subscription queue_capacity must be at least 1");
  auto subscriber = std::make_shared<Subscriber>();
  subscriber->pattern = std::move(pattern);
  subscriber->handler = std::move(handler);
  subscriber->options = options;
  subscriber->owner = owner ? std::move(owner) : kernel_owner();
  {
    std::lock_guard lock(core_->subscribers_mutex);
    subscriber->id = core_->next_subscriber_id++;
    auto next = std::make_shared<Core::Subscribers>(*core_->subscribers);
    next->push_back(subscriber);
    core_->subscribers = std::move(next);
  }
  return Subscription([weak = std::weak_ptr<Core>(core_), id = subscriber->id] {
    if (auto core = weak.lock()) core->remove_where([id](const Subscriber& s) { return s.id == id; });
  });
}

void EventBus::publish(std::string topic, nlohmann::json payload, std::string_view source, std::string trace_id) {
  // An event published while a traced request is handled names that trace, so the two can be
  // joined up later, and carries the publisher's span for its deliveries to hang under; nothing
  // is added when tracing is off.
  TraceContext context;
  if (const auto& current = trace::current(); current.valid()) {
    auto current_id = trace::to_hex(current.trace_id.data(), current.trace_id.size());
    if (trace_id.empty()) trace_id = current_id;
    if (trace_id == current_id) context = current;  // a trace_id given for another trace keeps its own
  }
  core_->publish(std::move(topic), std::move(payload), source, std::move(trace_id), std::move(context));
}

void EventBus::trace_deliveries(std::shared_ptr<Tracer> tracer) {
  std::lock_guard lock(core_->tracer_mutex);
  core_->tracing.store(tracer != nullptr, std::memory_order_relaxed);
  core_->tracer = std::move(tracer);
}

BusStats EventBus::stats() const {
  return {core_->published.get(), core_->delivered.get(), core_->dropped.get(), core_->handler_errors.get(),
          core_->snapshot()->size()};
}

std::size_t EventBus::sweep(std::uint64_t owner_id) {
  return core_->remove_where([owner_id](const Subscriber& s) { return s.owner->id == owner_id; });
}

std::size_t EventBus::count_owned(std::uint64_t owner_id) const {
  auto current = core_->snapshot();
  return static_cast<std::size_t>(std::count_if(current->begin(), current->end(),
                                                 [&](const auto& s) { return s->owner->id == owner_id; }));
}

void EventBus::shutdown() { core_->closed.store(true); }

}  // namespace synthorg

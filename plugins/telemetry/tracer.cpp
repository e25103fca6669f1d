#include "tracer.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <deque>
#include <mutex>
#include <random>
#include <unordered_map>

#include "synthorg/crypto.hpp"

namespace synthorg::telemetry {
namespace {

using Steady = std::chrono::steady_clock;

// Everything a thread keeps for the spans it makes, in one thread_local: in a plugin (a
// dlopen'ed library) every thread_local is reached through a call to __tls_get_addr, and with one
// each for the id generator, the clock, the spare spans and the key caches a span made a dozen.
struct ThreadState {
  // Ids must be unique and unpredictable enough not to collide across replicas, not secret: a
  // generator seeded once from OpenSSL, as http-api does for request ids.
  std::mt19937_64 ids{[] {
    auto seed = crypto::random_bytes(8);
    std::uint64_t value = 0;
    std::memcpy(&value, seed.data(), sizeof value);
    return value;
  }()};
  // unix_nanos: the wall clock's offset from the steady clock, and when it was read.
  bool anchored = false;
  Steady::time_point anchor;
  std::chrono::nanoseconds wall_minus_steady{};
  // Spans the exporter gave back (recycle_spans), for the next ones (reuse). Bounded:
  // a whole batch comes back at once, and a thread that makes a span now and then must not keep
  // a batch's worth for good.
  static constexpr std::size_t max_spare_spans = 512;
  std::vector<SpanData> spare;
  // intern_attribute_key's caches: by the key's address, then by its bytes.
  struct RecentKey {
    const char* address = nullptr;
    std::string_view given, interned;
  };
  std::array<RecentKey, 64> recent_keys;
  std::unordered_map<std::string_view, std::string_view> keys;

  // A span for start_span: the last one given back, cleared here (its capacity kept), or a new
  // one. Cleared now rather than when the batch came back: freeing a batch's attribute strings
  // at once overflows glibc's per-thread cache of small blocks, and every string allocated
  // after that took malloc's slow path; one free here, just before the span's own strings are
  // allocated, is taken straight back from that cache.
  SpanData reuse() {
    if (spare.empty()) {
      SpanData data;
      data.attributes.reserve(8);  // a server span's five and a few more, without regrowing
      return data;
    }
    SpanData data = std::move(spare.back());
    spare.pop_back();
    if (!spare.empty()) prefetch(spare.back());
    // What a span records; ids, parent, name, kind and start are all set again by the caller.
    data.tracestate.clear();
    data.attributes.clear();
    data.dropped_attributes = 0;
    data.status_code = 0;
    data.status_message.clear();
    data.end_ns = 0;
    return data;
  }

  // The next span to be reused was last read by the exporter on another core: asking for its
  // memory now, for writing, has it here by the next request instead of stalling that one.
  static void prefetch(const SpanData& next) {
    const char* at = reinterpret_cast<const char*>(&next);
    for (std::size_t offset = 0; offset < sizeof(SpanData); offset += 64) __builtin_prefetch(at + offset, 1);
    const char* attributes = reinterpret_cast<const char*>(next.attributes.data());
    for (std::size_t offset = 0; offset < next.attributes.size() * sizeof(next.attributes[0]); offset += 64)
      __builtin_prefetch(attributes + offset, 1);
  }

  template <std::size_t N>
  void fill_id(std::array<std::uint8_t, N>& bytes) {
    for (std::size_t i = 0; i < N; i += 8) {
      std::uint64_t value;
      do value = ids();
      while (value == 0);  // an all-zero id is invalid
      std::memcpy(bytes.data() + i, &value, 8);
    }
  }

  // Unix-epoch nanoseconds at `now`, a steady_clock reading: the wall clock is read once a
  // second and the steady clock carries it forward, so a span reads one clock at each end (two
  // reads, not three) and its duration stays monotonic. A step of the wall clock shows in start
  // times within a second; NTP's slewing moves them by microseconds in that second.
  std::uint64_t unix_nanos(Steady::time_point now) {
    if (!anchored || now - anchor >= std::chrono::seconds(1)) {
      anchored = true;
      anchor = now;
      wall_minus_steady = std::chrono::system_clock::now().time_since_epoch() - now.time_since_epoch();
    }
    return static_cast<std::uint64_t>((now.time_since_epoch() + wall_minus_steady).count());
  }
};

ThreadState* make_thread_state() {
  thread_local std::unique_ptr<ThreadState> owner = std::make_unique<ThreadState>();  // freed with the thread
  return owner.get();
}

ThreadState& this_thread_state() {
  // A pointer with a constant initializer: one __tls_get_addr per use, where an object with a
  // constructor adds a call for its guard in front of every use.
  thread_local ThreadState* state = nullptr;
  if (!state) [[unlikely]] state = make_thread_state();
  return *state;
}

// No byte above 0x7F, eight at a time: every string a span records is this, nearly always.
bool ascii(std::string_view text) {
  std::uint64_t seen = 0;
  std::size_t i = 0;
  for (; i + 8 <= text.size(); i += 8) {
    std::uint64_t word;
    std::memcpy(&word, text.data() + i, 8);
    seen |= word;
  }
  for (; i < text.size(); ++i) seen |= static_cast<unsigned char>(text[i]);
  return (seen & 0x8080808080808080ULL) == 0;
}

bool clean(std::string_view text, std::size_t max_bytes) { return text.size() <= max_bytes && ascii(text); }

// Sampled out: keeps the context (so children and outgoing calls carry "not sampled") and
// records nothing.
class DroppedSpan final : public Span {
 public:
  explicit DroppedSpan(TraceContext context) : context_(std::move(context)) {}
  const TraceContext& context() const noexcept override { return context_; }
  bool recording() const noexcept override { return false; }
  void set_attribute(std::string_view, AttributeValue) override {}
  void set_error(std::string_view) override {}
  void end() noexcept override {}

 private:
  TraceContext context_;
};

class RecordingSpan final : public Span {
 public:
  // `data_` comes from this thread's spare spans and is filled in place (not built and moved in).
  // Every field is set here or was cleared by ThreadState::reuse: a reused span carries nothing over.
  RecordingSpan(std::shared_ptr<TracerImpl> tracer, ThreadState& thread, TraceContext context,
                const TraceContext* parent, std::string_view name, SpanKind kind)
      : tracer_(std::move(tracer)), context_(std::move(context)), data_(thread.reuse()) {
    const auto& limits = tracer_->limits();
    data_.trace_id = context_.trace_id;
    data_.span_id = context_.span_id;
    data_.has_parent = parent != nullptr;
    data_.parent_span_id = parent ? parent->span_id : decltype(data_.parent_span_id){};
    data_.tracestate = context_.tracestate;  // into the kept capacity
    if (clean(name, limits.max_name_bytes)) data_.name = name;
    else data_.name = sanitize_utf8(name, limits.max_name_bytes);
    data_.kind = kind;
    started_ = Steady::now();
    data_.start_ns = thread.unix_nanos(started_);
  }
  ~RecordingSpan() override { end(); }

  const TraceContext& context() const noexcept override { return context_; }
  bool recording() const noexcept override { return !ended_; }

  void set_attribute(std::string_view key, AttributeValue value) override {
    if (ended_) return;
    const auto& limits = tracer_->limits();
    if (auto* text = std::get_if<std::string>(&value); text && !clean(*text, limits.max_attribute_bytes))
      *text = sanitize_utf8(*text, limits.max_attribute_bytes);
    auto clean_key = intern_attribute_key(key);
    if (clean_key.empty()) {
      ++data_.dropped_attributes;
      return;
    }
    for (auto& [existing, old] : data_.attributes)
      if (existing.data() == clean_key.data()) {  // interned: one address per key
        old = std::move(value);
        return;
      }
    if (data_.attributes.size() >= limits.max_attributes) {
      ++data_.dropped_attributes;
      return;
    }
    data_.attributes.emplace_back(clean_key, std::move(value));
  }

  void set_error(std::string_view description) override {
    if (ended_) return;
    data_.status_code = 2;
    data_.status_message = sanitize_utf8(description, tracer_->limits().max_attribute_bytes);
  }

  void end() noexcept override {
    // Atomic: a handler that throws after handing its answer to another thread may see both
    // sides end the span; only one delivers it.
    if (ended_.exchange(true)) return;
    // Wall clock for the start (what the collector shows), a monotonic clock for the duration.
    auto elapsed = std::chrono::duration_cast<std::chrono::nanoseconds>(Steady::now() - started_);
    data_.end_ns = data_.start_ns + static_cast<std::uint64_t>(elapsed.count());
    try {
      tracer_->deliver(std::move(data_));
    } catch (...) {  // an exporter failure never reaches the traced code
    }
  }

 private:
  std::shared_ptr<TracerImpl> tracer_;
  TraceContext context_;
  SpanData data_;
  Steady::time_point started_;
  std::atomic<bool> ended_{false};
};

}  // namespace

TracerImpl::TracerImpl(double sampling_ratio, TracerLimits limits, SpanSink sink)
    : ratio_(sampling_ratio), limits_(limits), sink_(std::move(sink)) {
  // ratio * 2^64, saturated: 1.0 keeps every trace, 0.0 none.
  threshold_ = sampling_ratio >= 1.0 ? UINT64_MAX : static_cast<std::uint64_t>(sampling_ratio * 18446744073709551616.0);
}

bool TracerImpl::sample_root(const std::array<std::uint8_t, 16>& trace_id) const noexcept {
  if (ratio_ >= 1.0) return true;
  if (ratio_ <= 0.0) return false;
  std::uint64_t value = 0;
  for (std::size_t i = 8; i < 16; ++i) value = (value << 8) | trace_id[i];
  return value < threshold_;
}

std::unique_ptr<Span> TracerImpl::start_span(std::string_view name, SpanKind kind, const TraceContext& given) {
  const TraceContext* parent = given.valid() ? &given : &trace::current();
  if (parent != &given && !parent->valid()) parent = nullptr;
  auto& thread = this_thread_state();
  TraceContext context;
  if (parent) {
    context.trace_id = parent->trace_id;
    context.sampled = parent->sampled;  // parent-based: the caller decided for the whole trace
    context.tracestate = parent->tracestate;
  } else {
    thread.fill_id(context.trace_id);
    context.sampled = sample_root(context.trace_id);
  }
  thread.fill_id(context.span_id);
  if (!context.sampled) return std::make_unique<DroppedSpan>(std::move(context));
  return std::make_unique<RecordingSpan>(shared_from_this(), thread, std::move(context), parent, name, kind);
}

void recycle_spans(std::vector<SpanData>& spent) noexcept {
  // Kept as they are: reuse() clears each one when it is taken.
  auto& spare = this_thread_state().spare;
  // The larger of the two vectors is kept as it is (no span moved), the other's spans are moved
  // over up to the bound, and the rest are freed with `spent`.
  if (spare.size() < spent.size()) spare.swap(spent);
  if (spare.size() > ThreadState::max_spare_spans) spare.resize(ThreadState::max_spare_spans);
  for (auto& span : spent) {
    if (spare.size() >= ThreadState::max_spare_spans) break;
    try {
      spare.push_back(std::move(span));
    } catch (...) {  // no memory for the stock: the span is freed with the rest
      break;
    }
  }
  spent.clear();
}

std::string_view intern_attribute_key(std::string_view key) {
  auto& thread = this_thread_state();
  // Keys are nearly always literals, passed from the same address every time: a slot per
  // address answers them with a compare of the address and of the bytes, without hashing.
  // Comparing the bytes too (against the key as first given, which lives as long as the table)
  // makes an address that now holds another key a miss, not a wrong answer.
  auto& slot = thread.recent_keys[(reinterpret_cast<std::uintptr_t>(key.data()) >> 3) % thread.recent_keys.size()];
  if (slot.address == key.data() && slot.given == key) return slot.interned;
  // A per-thread map in front of the shared table: after the first span, no lock and no copy.
  auto cached = thread.keys.find(key);
  if (cached == thread.keys.end()) {
    static std::mutex mutex;
    static std::deque<std::string> storage;  // a deque never moves what it holds
    static std::unordered_map<std::string_view, std::string_view> table;  // as given -> sanitised
    constexpr std::size_t max_keys = 4096;
    std::lock_guard lock(mutex);
    auto it = table.find(key);
    if (it == table.end()) {
      if (table.size() >= max_keys) return {};
      std::string_view raw = storage.emplace_back(key);
      auto clean = sanitize_utf8(key, 128);
      std::string_view interned = clean == raw ? raw : std::string_view(storage.emplace_back(std::move(clean)));
      it = table.emplace(raw, interned).first;
    }
    cached = thread.keys.emplace(it->first, it->second).first;
  }
  slot = {key.data(), cached->first, cached->second};
  return cached->second;
}

std::string sanitize_utf8(std::string_view text, std::size_t max_bytes) {
  // The common case, on the request path: short ASCII, nothing to do but copy.
  if (clean(text, max_bytes)) return std::string(text);
  static constexpr std::string_view replacement = "\xEF\xBF\xBD";
  static constexpr std::string_view ellipsis = "\xE2\x80\xA6";
  std::string out;
  out.reserve(std::min(text.size(), max_bytes));
  auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text[i]); };
  std::size_t i = 0;
  while (i < text.size()) {
    unsigned char c = byte(i);
    std::size_t length = c < 0x80 ? 1 : (c >= 0xC2 && c <= 0xDF) ? 2 : (c >= 0xE0 && c <= 0xEF) ? 3
                                                                  : (c >= 0xF0 && c <= 0xF4) ? 4 : 0;
    bool valid = length > 0 && i + length <= text.size();
    for (std::size_t k = 1; valid && k < length; ++k) valid = (byte(i + k) & 0xC0) == 0x80;
    if (valid && length == 3) {  // no overlong forms, no UTF-16 surrogates
      unsigned char second = byte(i + 1);
      valid = !(c == 0xE0 && second < 0xA0) && !(c == 0xED && second >= 0xA0);
    }
    if (valid && length == 4) {  // no overlong forms, nothing past U+10FFFF
      unsigned char second = byte(i + 1);
      valid = !(c == 0xF0 && second < 0x90) && !(c == 0xF4 && second >= 0x90);
    }
    std::string_view piece = valid ? text.substr(i, length) : replacement;
    if (out.size() + piece.size() > max_bytes) {
      // Cut at a character boundary, leaving room for the ellipsis.
      std::size_t keep = max_bytes >= ellipsis.size() ? max_bytes - ellipsis.size() : 0;
      if (keep < out.size()) {
        while (keep > 0 && (static_cast<unsigned char>(out[keep]) & 0xC0) == 0x80) --keep;
        out.resize(keep);
      }
      if (out.size() + ellipsis.size() <= max_bytes) out += ellipsis;
      return out;
    }
    out += piece;
    i += valid ? length : 1;
  }
  return out;
}

}  // namespace synthorg::telemetry

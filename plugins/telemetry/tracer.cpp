#include "tracer.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <deque>
#include <mutex>
#include <unordered_map>
#include <random>

#include "synthorg/crypto.hpp"

namespace synthorg::telemetry {
namespace {

// Ids must be unique and unpredictable enough not to collide across replicas, not secret: a
// per-thread generator seeded once from OpenSSL, as http-api does for request ids.
std::uint64_t next_random() {
  thread_local std::mt19937_64 generator = [] {
    auto seed = crypto::random_bytes(8);
    std::uint64_t value = 0;
    std::memcpy(&value, seed.data(), sizeof value);
    return std::mt19937_64(value);
  }();
  std::uint64_t value;
  do value = generator();
  while (value == 0);  // an all-zero id is invalid
  return value;
}

template <std::size_t N>
void fill_random(std::array<std::uint8_t, N>& bytes) {
  for (std::size_t i = 0; i < N; i += 8) {
    auto value = next_random();
    std::memcpy(bytes.data() + i, &value, 8);
  }
}

std::uint64_t unix_nanos() {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
}

bool clean(std::string_view text, std::size_t max_bytes) {
  return text.size() <= max_bytes &&
         std::all_of(text.begin(), text.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; });
}

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
  RecordingSpan(std::shared_ptr<TracerImpl> tracer, TraceContext context, SpanData data)
      : tracer_(std::move(tracer)), context_(std::move(context)), data_(std::move(data)),
        started_(std::chrono::steady_clock::now()) {}
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
    auto elapsed = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - started_);
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
  std::chrono::steady_clock::time_point started_;
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
  const TraceContext& parent = given.valid() ? given : trace::current();
  TraceContext context;
  if (parent.valid()) {
    context.trace_id = parent.trace_id;
    context.sampled = parent.sampled;  // parent-based: the caller decided for the whole trace
    context.tracestate = parent.tracestate;
  } else {
    fill_random(context.trace_id);
    context.sampled = sample_root(context.trace_id);
  }
  fill_random(context.span_id);
  if (!context.sampled) return std::make_unique<DroppedSpan>(std::move(context));

  SpanData data;
  data.trace_id = context.trace_id;
  data.span_id = context.span_id;
  if (parent.valid()) {
    data.has_parent = true;
    data.parent_span_id = parent.span_id;
  }
  data.tracestate = context.tracestate;
  data.name = sanitize_utf8(name, limits_.max_name_bytes);
  data.attributes.reserve(8);
  data.kind = kind;
  data.start_ns = unix_nanos();
  return std::make_unique<RecordingSpan>(shared_from_this(), std::move(context), std::move(data));
}

std::string_view intern_attribute_key(std::string_view key) {
  // A per-thread map in front of the shared table: after the first span, no lock and no copy.
  thread_local std::unordered_map<std::string_view, std::string_view> cache;
  if (auto it = cache.find(key); it != cache.end()) return it->second;
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
  cache.emplace(it->first, it->second);
  return it->second;
}

std::string sanitize_utf8(std::string_view text, std::size_t max_bytes) {
  // The common case, on the request path: short ASCII, nothing to do but copy.
  if (text.size() <= max_bytes &&
      std::all_of(text.begin(), text.end(), [](char c) { return static_cast<unsigned char>(c) < 0x80; }))
    return std::string(text);
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

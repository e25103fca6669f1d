// W3C Trace Context (traceparent/tracestate): the value type, its parsing and formatting, and
// the thread's current context. Lives in libsynthorg-sdk.so so the HTTP client, the Executor
// and every plugin see one thread-local, whatever .so they are in.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace synthorg {

struct TraceContext {
  std::array<std::uint8_t, 16> trace_id{};
  std::array<std::uint8_t, 8> span_id{};
  bool sampled = false;
  std::string tracestate;  // passed on as received (bounded), never interpreted

  // All-zero ids are invalid by the W3C rules.
  bool valid() const noexcept;
};

namespace trace {

// "00-<32 hex>-<16 hex>-<2 hex>"; nullopt for anything else, including all-zero ids and the
// reserved version ff. Future versions are read for their first four fields, as the spec asks.
std::optional<TraceContext> parse_traceparent(std::string_view traceparent, std::string_view tracestate = {});
std::string format_traceparent(const TraceContext& context);
std::string to_hex(const std::uint8_t* bytes, std::size_t size);

// The context of the span the calling thread works for; invalid when none.
const TraceContext& current() noexcept;

// Makes `context` the thread's current one until destroyed, then puts back the previous one.
class ScopedContext {
 public:
  explicit ScopedContext(const TraceContext& context);
  ~ScopedContext();
  ScopedContext(const ScopedContext&) = delete;
  ScopedContext& operator=(const ScopedContext&) = delete;

 private:
  TraceContext previous_;
};

}  // namespace trace
}  // namespace synthorg

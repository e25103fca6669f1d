#include "synthorg/trace_context.hpp"

#include <algorithm>

namespace synthorg {
namespace {

// tracestate is opaque to us; bounded so a hostile header cannot make every outgoing call huge
// (the W3C limit is 32 members, and vendors agree on 512 bytes as what must be propagated).
constexpr std::size_t max_tracestate = 512;

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;  // upper case is invalid in traceparent
}

template <std::size_t N>
bool parse_hex(std::string_view text, std::array<std::uint8_t, N>& out) noexcept {
  if (text.size() != 2 * N) return false;
  for (std::size_t i = 0; i < N; ++i) {
    int high = hex_value(text[2 * i]), low = hex_value(text[2 * i + 1]);
    if (high < 0 || low < 0) return false;
    out[i] = static_cast<std::uint8_t>(high * 16 + low);
  }
  return true;
}

template <std::size_t N>
bool all_zero(const std::array<std::uint8_t, N>& bytes) noexcept {
  return std::all_of(bytes.begin(), bytes.end(), [](std::uint8_t b) { return b == 0; });
}

thread_local TraceContext current_context;

}  // namespace

bool TraceContext::valid() const noexcept { return !all_zero(trace_id) && !all_zero(span_id); }

namespace trace {

std::string to_hex(const std::uint8_t* bytes, std::size_t size) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out(size * 2, '0');
  for (std::size_t i = 0; i < size; ++i) {
    out[2 * i] = digits[bytes[i] >> 4];
    out[2 * i + 1] = digits[bytes[i] & 15];
  }
  return out;
}

std::optional<TraceContext> parse_traceparent(std::string_view text, std::string_view tracestate) {
  // version "-" trace-id "-" parent-id "-" flags: 2+1+32+1+16+1+2 = 55 characters.
  if (text.size() < 55 || text[2] != '-' || text[35] != '-' || text[52] != '-') return std::nullopt;
  std::array<std::uint8_t, 1> version{}, flags{};
  if (!parse_hex(text.substr(0, 2), version) || version[0] == 0xff) return std::nullopt;
  // Version 00 is exactly 55 characters; a later version may append fields after a '-'.
  if (version[0] == 0 ? text.size() != 55 : (text.size() > 55 && text[55] != '-')) return std::nullopt;
  TraceContext context;
  if (!parse_hex(text.substr(3, 32), context.trace_id) || !parse_hex(text.substr(36, 16), context.span_id) ||
      !parse_hex(text.substr(53, 2), flags) || !context.valid())
    return std::nullopt;
  context.sampled = (flags[0] & 1) != 0;
  if (tracestate.size() <= max_tracestate &&
      std::all_of(tracestate.begin(), tracestate.end(), [](char c) { return c >= 0x20 && c < 0x7f; }))
    context.tracestate = std::string(tracestate);
  return context;
}

std::string format_traceparent(const TraceContext& context) {
  return "00-" + to_hex(context.trace_id.data(), 16) + "-" + to_hex(context.span_id.data(), 8) +
         (context.sampled ? "-01" : "-00");
}

const TraceContext& current() noexcept { return current_context; }

ScopedContext::ScopedContext(const TraceContext& context) : previous_(std::move(current_context)) {
  current_context = context;
}

ScopedContext::~ScopedContext() { current_context = std::move(previous_); }

}  // namespace trace
}  // namespace synthorg

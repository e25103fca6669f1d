// A finished span as the exporter needs it, and the rules that make any attribute safe to send.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "synthorg/services/tracer.hpp"

namespace synthorg::telemetry {

struct SpanData {
  std::array<std::uint8_t, 16> trace_id{};
  std::array<std::uint8_t, 8> span_id{};
  std::array<std::uint8_t, 8> parent_span_id{};
  bool has_parent = false;
  std::string tracestate;
  std::string name;
  SpanKind kind = SpanKind::internal;
  std::uint64_t start_ns = 0, end_ns = 0;  // Unix epoch
  // Keys are interned (intern_attribute_key): they are few and live as long as the process, and
  // a copy of each, freed on the exporter's thread, was three mallocs a span.
  std::vector<std::pair<std::string_view, AttributeValue>> attributes;
  std::uint32_t dropped_attributes = 0;
  int status_code = 0;  // 0 unset, 1 ok, 2 error (OTLP's StatusCode)
  std::string status_message;
};

// Takes `spent` (left empty) for the calling thread's next spans, up to a bound per thread; the
// rest are freed. Each is kept with its capacity (its attribute vector; its name, tracestate and
// status message) and cleared of what it recorded when it is reused. The exporter hands spans
// back this way once they are sent, on the thread that ends the next span
// (SpanExporter::enqueue), on an I/O thread the one that made them: the request path then
// allocates none of those again.
void recycle_spans(std::vector<SpanData>& spent) noexcept;

// Valid UTF-8 of at most `max_bytes`: each byte that does not start or continue a well-formed
// sequence (overlong forms and surrogates included) becomes U+FFFD, and a long value is cut at
// a character boundary with "…" appended within the limit. JSON encoders and collectors both
// refuse invalid UTF-8, and one huge value must not make a batch too large to accept.
std::string sanitize_utf8(std::string_view text, std::size_t max_bytes);

// The key made valid UTF-8 (at most 128 bytes), as a view that stays valid for the process's
// life; empty once 4096 distinct keys are interned (keys come from code, so that is a bug, and
// the attribute is counted dropped rather than growing the table without end).
std::string_view intern_attribute_key(std::string_view key);

}  // namespace synthorg::telemetry

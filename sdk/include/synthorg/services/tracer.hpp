// Tracer: distributed tracing, provided by the telemetry plugin only while tracing is on
// (SYNTHORG_TRACE_OTLP_ENDPOINT set). When it is off there is no Tracer at all: a consumer
// looks it up once at start and, finding none, pays a null check per request and nothing else.
//
// The current trace context is a thread-local in the SDK (trace_context.hpp), so that the one
// HTTP client and the Executor's blocking pool carry it without every call site passing it on.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <variant>

#include "synthorg/trace_context.hpp"

namespace synthorg {

// OTLP's SpanKind values, so they go on the wire as they are.
enum class SpanKind : int { internal = 1, server = 2, client = 3, producer = 4, consumer = 5 };

using AttributeValue = std::variant<std::string, std::int64_t, double, bool>;

// One operation. Not thread-safe: one owner sets attributes and ends it (or lets it go, which
// ends it). Attribute values are bounded and made valid UTF-8 by the tracer, not the caller.
class Span {
 public:
  virtual ~Span() = default;
  virtual const TraceContext& context() const noexcept = 0;
  // False when the sampler dropped this span: attributes are then not worth computing.
  virtual bool recording() const noexcept = 0;
  virtual void set_attribute(std::string_view key, AttributeValue value) = 0;
  // Marks the span failed (OTLP status code 2) with a short description, never a secret.
  virtual void set_error(std::string_view description) = 0;
  // Ends the span now; later calls do nothing.
  virtual void end() noexcept = 0;
};

class Tracer {
 public:
  static constexpr std::string_view service_id = "synthorg.Tracer/1";
  virtual ~Tracer() = default;

  // Starts a span whose parent is `parent` when it is valid, else the thread's current context
  // (trace::current()), else none (a new trace). Sampling is parent-based: a sampled parent
  // gives a sampled child; a root is sampled by SYNTHORG_TRACE_SAMPLING_RATIO.
  virtual std::unique_ptr<Span> start_span(std::string_view name, SpanKind kind,
                                           const TraceContext& parent = {}) = 0;
};

}  // namespace synthorg

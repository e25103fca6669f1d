// The Tracer the telemetry plugin provides while tracing is on: W3C ids, parent-based ratio
// sampling, spans that hand themselves to the exporter when they end.
#pragma once

#include <functional>
#include <memory>

#include "span_data.hpp"
#include "synthorg/services/tracer.hpp"

namespace synthorg::telemetry {

struct TracerLimits {
  std::size_t max_attribute_bytes = 1024;
  std::size_t max_attributes = 64;
  std::size_t max_name_bytes = 256;
};

// Receives every sampled span as it ends; must not block (the exporter's queue drops instead).
using SpanSink = std::function<void(SpanData&&)>;

class TracerImpl final : public Tracer, public std::enable_shared_from_this<TracerImpl> {
 public:
  TracerImpl(double sampling_ratio, TracerLimits limits, SpanSink sink);
  std::unique_ptr<Span> start_span(std::string_view name, SpanKind kind, const TraceContext& parent = {}) override;

  // Root sampling decision for a new trace id (TraceIdRatioBased: the id's last 8 bytes as a
  // number against ratio * 2^64, so every service with the same ratio agrees on a trace).
  bool sample_root(const std::array<std::uint8_t, 16>& trace_id) const noexcept;
  const TracerLimits& limits() const noexcept { return limits_; }
  void deliver(SpanData&& span) { sink_(std::move(span)); }

 private:
  double ratio_;
  std::uint64_t threshold_;
  TracerLimits limits_;
  SpanSink sink_;
};

}  // namespace synthorg::telemetry

// OTLP/HTTP JSON encoding (opentelemetry-proto's JSON mapping): lowerCamelCase keys, trace and
// span ids as hex, enums as integers, 64-bit integers as decimal strings. Written by hand rather
// than through nlohmann::json: the exporter encodes tens of thousands of spans a second, and
// every string in a span has been made valid UTF-8 already (sanitize_utf8).
#pragma once

#include <span>
#include <string>
#include <utility>
#include <vector>

#include "span_data.hpp"

namespace synthorg::telemetry {

using Attributes = std::vector<std::pair<std::string, AttributeValue>>;

struct Resource {
  Attributes attributes;  // service.name, service.version, host.name, service.instance.id...
};

// One ExportTraceServiceRequest: one resource, one scope ("synthorg", the version), the spans.
std::string encode_traces(const Resource& resource, std::string_view scope_version, std::span<const SpanData> spans);
// The same into `out` (cleared first): the exporter keeps one buffer, sized by the largest batch.
void encode_traces(std::string& out, const Resource& resource, std::string_view scope_version,
                   std::span<const SpanData> spans);

struct LogEvent {
  std::uint64_t time_ns = 0;
  std::string name;  // the body, and the event.name attribute
  Attributes attributes;
};

// One ExportLogsServiceRequest (severity INFO), for product telemetry's events.
std::string encode_logs(const Resource& resource, std::string_view scope_name, std::string_view scope_version,
                        const std::vector<LogEvent>& events);
// The same into `out` (cleared first).
void encode_logs(std::string& out, const Resource& resource, std::string_view scope_name,
                 std::string_view scope_version, const std::vector<LogEvent>& events);

// The JSON string literal for `text` (quotes included); `text` must be valid UTF-8.
void append_json_string(std::string& out, std::string_view text);

}  // namespace synthorg::telemetry

#include "otlp_json.hpp"

#include <charconv>
#include <cmath>

#include <fmt/format.h>

namespace synthorg::telemetry {
namespace {

template <class Integer>
void append_number(std::string& out, Integer value) {
  char buffer[24];
  auto [end, error] = std::to_chars(buffer, buffer + sizeof buffer, value);
  out.append(buffer, end);
}

void append_value(std::string& out, const AttributeValue& value) {
  if (const auto* text = std::get_if<std::string>(&value)) {
    out += "{\"stringValue\":";
    append_json_string(out, *text);
    out += '}';
  } else if (const auto* integer = std::get_if<std::int64_t>(&value)) {
    out += "{\"intValue\":\"";  // int64: a decimal string
    append_number(out, *integer);
    out += "\"}";
  } else if (const auto* number = std::get_if<double>(&value)) {
    // JSON has no NaN or infinity; the proto JSON mapping spells them as strings.
    if (std::isnan(*number)) out += "{\"doubleValue\":\"NaN\"}";
    else if (std::isinf(*number)) out += *number > 0 ? "{\"doubleValue\":\"Infinity\"}" : "{\"doubleValue\":\"-Infinity\"}";
    else out += fmt::format("{{\"doubleValue\":{}}}", *number);
  } else {
    out += std::get<bool>(value) ? "{\"boolValue\":true}" : "{\"boolValue\":false}";
  }
}

// Attributes (a resource's, a log event's) or a span's, whose keys are interned views.
template <class List>
void append_attributes(std::string& out, const List& attributes) {
  out += '[';
  bool first = true;
  for (const auto& [key, value] : attributes) {
    if (!first) out += ',';
    first = false;
    out += "{\"key\":";
    append_json_string(out, key);
    out += ",\"value\":";
    append_value(out, value);
    out += '}';
  }
  out += ']';
}

void append_resource(std::string& out, const Resource& resource) {
  out += "\"resource\":{\"attributes\":";
  append_attributes(out, resource.attributes);
  out += '}';
}

void append_scope(std::string& out, std::string_view name, std::string_view version) {
  out += "\"scope\":{\"name\":";
  append_json_string(out, name);
  out += ",\"version\":";
  append_json_string(out, version);
  out += '}';
}

// Ids straight into the body: a temporary string per id was a malloc and a free per span.
template <std::size_t N>
void append_hex(std::string& out, const std::array<std::uint8_t, N>& bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  char text[2 * N];
  for (std::size_t i = 0; i < N; ++i) {
    text[2 * i] = digits[bytes[i] >> 4];
    text[2 * i + 1] = digits[bytes[i] & 15];
  }
  out.append(text, 2 * N);
}

void append_span(std::string& out, const SpanData& span) {
  out += "{\"traceId\":\"";
  append_hex(out, span.trace_id);
  out += "\",\"spanId\":\"";
  append_hex(out, span.span_id);
  out += '"';
  if (!span.tracestate.empty()) {
    out += ",\"traceState\":";
    append_json_string(out, span.tracestate);
  }
  if (span.has_parent) {
    out += ",\"parentSpanId\":\"";
    append_hex(out, span.parent_span_id);
    out += '"';
  }
  out += ",\"name\":";
  append_json_string(out, span.name);
  out += ",\"kind\":";
  append_number(out, static_cast<int>(span.kind));
  out += ",\"startTimeUnixNano\":\"";
  append_number(out, span.start_ns);
  out += "\",\"endTimeUnixNano\":\"";
  append_number(out, span.end_ns);
  out += "\",\"attributes\":";
  append_attributes(out, span.attributes);
  if (span.dropped_attributes) out += fmt::format(",\"droppedAttributesCount\":{}", span.dropped_attributes);
  if (span.status_code != 0) {
    out += fmt::format(",\"status\":{{\"code\":{}", span.status_code);
    if (!span.status_message.empty()) {
      out += ",\"message\":";
      append_json_string(out, span.status_message);
    }
    out += '}';
  }
  out += '}';
}

}  // namespace

void append_json_string(std::string& out, std::string_view text) {
  out += '"';
  // Runs that need no escaping (nearly everything) are appended whole.
  std::size_t run = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out.append(text.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default: out += fmt::format("\\u{:04x}", c);
    }
  }
  out.append(text.data() + run, text.size() - run);
  out += '"';
}

std::string encode_traces(const Resource& resource, std::string_view scope_version, std::span<const SpanData> spans) {
  std::string out;
  encode_traces(out, resource, scope_version, spans);
  return out;
}

void encode_traces(std::string& out, const Resource& resource, std::string_view scope_version,
                   std::span<const SpanData> spans) {
  out.clear();
  out.reserve(256 + spans.size() * 400);
  out += "{\"resourceSpans\":[{";
  append_resource(out, resource);
  out += ",\"scopeSpans\":[{";
  append_scope(out, "synthorg", scope_version);
  out += ",\"spans\":[";
  for (std::size_t i = 0; i < spans.size(); ++i) {
    if (i) out += ',';
    append_span(out, spans[i]);
  }
  out += "]}]}]}";
}

std::string encode_logs(const Resource& resource, std::string_view scope_name, std::string_view scope_version,
                        const std::vector<LogEvent>& events) {
  std::string out;
  encode_logs(out, resource, scope_name, scope_version, events);
  return out;
}

void encode_logs(std::string& out, const Resource& resource, std::string_view scope_name,
                 std::string_view scope_version, const std::vector<LogEvent>& events) {
  out.clear();
  out += "{\"resourceLogs\":[{";
  append_resource(out, resource);
  out += ",\"scopeLogs\":[{";
  append_scope(out, scope_name, scope_version);
  out += ",\"logRecords\":[";
  for (std::size_t i = 0; i < events.size(); ++i) {
    const auto& event = events[i];
    if (i) out += ',';
    out += fmt::format("{{\"timeUnixNano\":\"{}\",\"observedTimeUnixNano\":\"{}\",\"severityNumber\":9,"
                       "\"severityText\":\"INFO\",\"body\":",
                       event.time_ns, event.time_ns);
    append_value(out, event.name);
    Attributes attributes{{"event.name", event.name}};
    attributes.insert(attributes.end(), event.attributes.begin(), event.attributes.end());
    out += ",\"attributes\":";
    append_attributes(out, attributes);
    out += '}';
  }
  out += "]}]}]}";
}

}  // namespace synthorg::telemetry

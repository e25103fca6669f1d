#include "otlp_protobuf.hpp"

#include <bit>
#include <span>
#include <cstdint>
#include <cstring>
#include <stdexcept>

namespace synthorg::telemetry::protobuf {
namespace {

// Two passes: the sizes first, then the bytes. A nested message is preceded by its length as a
// varint, whose own size depends on that length; knowing every size up front lets the body be
// written front to back, exactly once, into a buffer sized to the byte (no placeholder to patch
// and no bytes to move). The size functions below and the writers after them must agree field
// for field; encode_* checks that they did.

// Wire types.
constexpr unsigned varint_wire = 0, fixed64_wire = 1, length_wire = 2;

// Field numbers, from opentelemetry-proto. Every one is below 16, so each key is one byte.
namespace request {  // collector/{trace,logs}/v1: Export{Trace,Logs}ServiceRequest
constexpr unsigned resource_spans = 1;  // resource_logs: the same
}
namespace resource_spans {  // trace/v1 ResourceSpans, logs/v1 ResourceLogs (same numbers)
constexpr unsigned resource = 1, scope_spans = 2;  // scope_logs: the same
}
namespace scope_spans {  // trace/v1 ScopeSpans, logs/v1 ScopeLogs
constexpr unsigned scope = 1, spans = 2;  // log_records: the same
}
namespace resource {  // resource/v1 Resource
constexpr unsigned attributes = 1;
}
namespace scope {  // common/v1 InstrumentationScope
constexpr unsigned name = 1, version = 2;
}
namespace key_value {  // common/v1 KeyValue
constexpr unsigned key = 1, value = 2;
}
namespace any_value {  // common/v1 AnyValue (a oneof)
constexpr unsigned string_value = 1, bool_value = 2, int_value = 3, double_value = 4;
}
namespace span {  // trace/v1 Span
constexpr unsigned trace_id = 1, span_id = 2, trace_state = 3, parent_span_id = 4, name = 5, kind = 6,
                   start_time = 7, end_time = 8, attributes = 9, dropped_attributes_count = 10, status = 15;
}
namespace status {  // trace/v1 Status
constexpr unsigned message = 2, code = 3;
}
namespace log_record {  // logs/v1 LogRecord
constexpr unsigned time = 1, severity_number = 2, severity_text = 3, body = 5, attributes = 6,
                   observed_time = 11;
}

constexpr int severity_info = 9;  // SEVERITY_NUMBER_INFO
constexpr std::string_view severity_info_text = "INFO";
constexpr std::string_view event_name_key = "event.name";
constexpr std::string_view trace_scope_name = "synthorg";  // as the JSON encoder names it

// ---- sizes ----

constexpr std::size_t varint_size(std::uint64_t value) { return (std::bit_width(value | 1) + 6) / 7; }
// int32 and int64 are sign-extended to 64 bits on the wire: a negative one takes ten bytes.
constexpr std::size_t signed_size(std::int64_t value) { return varint_size(static_cast<std::uint64_t>(value)); }
// A length-delimited field holding `length` bytes: key, length, bytes.
constexpr std::size_t field_size(std::size_t length) { return 1 + varint_size(length) + length; }
// A string or bytes field that proto3 leaves out when empty.
constexpr std::size_t optional_string_size(std::string_view text) { return text.empty() ? 0 : field_size(text.size()); }
constexpr std::size_t fixed64_size(std::uint64_t value) { return value ? 1 + 8 : 0; }
constexpr std::size_t optional_varint_size(std::uint64_t value) { return value ? 1 + varint_size(value) : 0; }
constexpr std::size_t optional_signed_size(std::int64_t value) { return value ? 1 + signed_size(value) : 0; }

// AnyValue. A oneof member is sent even when it holds its default (an empty string, 0, false):
// being set is what says which type the value has.
std::size_t string_value_size(std::string_view text) { return field_size(text.size()); }
std::size_t value_size(const AttributeValue& value) {
  if (const auto* text = std::get_if<std::string>(&value)) return string_value_size(*text);
  if (const auto* integer = std::get_if<std::int64_t>(&value)) return 1 + signed_size(*integer);
  if (std::holds_alternative<double>(value)) return 1 + 8;
  return 1 + 1;  // bool
}

std::size_t key_value_size(std::string_view key, std::size_t value_bytes) {
  return optional_string_size(key) + field_size(value_bytes);
}

// A repeated KeyValue field: a resource's or a log event's attributes, or a span's (interned keys).
template <class List>
std::size_t attributes_size(const List& attributes) {
  std::size_t size = 0;
  for (const auto& [key, value] : attributes) size += field_size(key_value_size(key, value_size(value)));
  return size;
}

std::size_t scope_size(std::string_view name, std::string_view version) {
  return optional_string_size(name) + optional_string_size(version);
}

std::size_t status_size(const SpanData& data) {
  return optional_string_size(data.status_message) + optional_signed_size(data.status_code);
}

std::size_t span_size(const SpanData& data) {
  return field_size(data.trace_id.size()) + field_size(data.span_id.size()) + optional_string_size(data.tracestate) +
         (data.has_parent ? field_size(data.parent_span_id.size()) : 0) + optional_string_size(data.name) +
         optional_signed_size(static_cast<int>(data.kind)) + fixed64_size(data.start_ns) + fixed64_size(data.end_ns) +
         attributes_size(data.attributes) + optional_varint_size(data.dropped_attributes) +
         // Like the JSON encoder: no status at all while it is unset (its message with it).
         (data.status_code != 0 ? field_size(status_size(data)) : 0);
}

std::size_t log_record_size(const LogEvent& event) {
  return fixed64_size(event.time_ns) + optional_signed_size(severity_info) + optional_string_size(severity_info_text) +
         field_size(string_value_size(event.name)) +
         field_size(key_value_size(event_name_key, string_value_size(event.name))) + attributes_size(event.attributes) +
         fixed64_size(event.time_ns);
}

// ---- bytes ----

// Writes into memory already sized by the pass above: no capacity checks, no growth.
class Writer {
 public:
  explicit Writer(char* at) : at_(at) {}
  const char* at() const { return at_; }

  void varint(std::uint64_t value) {
    while (value >= 0x80) {
      *at_++ = static_cast<char>(value | 0x80);
      value >>= 7;
    }
    *at_++ = static_cast<char>(value);
  }
  void key(unsigned field, unsigned wire) { *at_++ = static_cast<char>(field << 3 | wire); }
  // The header of a length-delimited field (a nested message) whose body follows.
  void length(unsigned field, std::size_t length) {
    key(field, length_wire);
    varint(length);
  }
  void bytes(unsigned field, const void* data, std::size_t size) {
    length(field, size);
    std::memcpy(at_, data, size);
    at_ += size;
  }
  void string(unsigned field, std::string_view text) { bytes(field, text.data(), text.size()); }
  void optional_string(unsigned field, std::string_view text) {
    if (!text.empty()) string(field, text);
  }
  // Little-endian whatever the host's order.
  void fixed64(unsigned field, std::uint64_t value) {
    key(field, fixed64_wire);
    for (int i = 0; i < 8; ++i) *at_++ = static_cast<char>(value >> (8 * i));
  }
  void optional_fixed64(unsigned field, std::uint64_t value) {
    if (value) fixed64(field, value);
  }
  void optional_varint(unsigned field, std::uint64_t value) {
    if (!value) return;
    key(field, varint_wire);
    varint(value);
  }
  void optional_signed(unsigned field, std::int64_t value) {
    optional_varint(field, static_cast<std::uint64_t>(value));
  }

 private:
  char* at_;
};

void write_string_value(Writer& out, std::string_view text) { out.string(any_value::string_value, text); }

void write_value(Writer& out, const AttributeValue& value) {
  if (const auto* text = std::get_if<std::string>(&value)) {
    write_string_value(out, *text);
  } else if (const auto* integer = std::get_if<std::int64_t>(&value)) {
    out.key(any_value::int_value, varint_wire);
    out.varint(static_cast<std::uint64_t>(*integer));  // two's complement, ten bytes when negative
  } else if (const auto* number = std::get_if<double>(&value)) {
    out.fixed64(any_value::double_value, std::bit_cast<std::uint64_t>(*number));  // NaN and infinities as they are
  } else {
    out.key(any_value::bool_value, varint_wire);
    out.varint(std::get<bool>(value) ? 1 : 0);
  }
}

template <class List>
void write_attributes(Writer& out, unsigned field, const List& attributes) {
  for (const auto& [key, value] : attributes) {
    auto value_bytes = value_size(value);
    out.length(field, key_value_size(key, value_bytes));
    out.optional_string(key_value::key, key);
    out.length(key_value::value, value_bytes);
    write_value(out, value);
  }
}

void write_scope(Writer& out, std::string_view name, std::string_view version) {
  out.length(scope_spans::scope, scope_size(name, version));
  out.optional_string(scope::name, name);
  out.optional_string(scope::version, version);
}

void write_span(Writer& out, const SpanData& data) {
  out.bytes(span::trace_id, data.trace_id.data(), data.trace_id.size());
  out.bytes(span::span_id, data.span_id.data(), data.span_id.size());
  out.optional_string(span::trace_state, data.tracestate);
  if (data.has_parent) out.bytes(span::parent_span_id, data.parent_span_id.data(), data.parent_span_id.size());
  out.optional_string(span::name, data.name);
  out.optional_signed(span::kind, static_cast<int>(data.kind));
  out.optional_fixed64(span::start_time, data.start_ns);
  out.optional_fixed64(span::end_time, data.end_ns);
  write_attributes(out, span::attributes, data.attributes);
  out.optional_varint(span::dropped_attributes_count, data.dropped_attributes);
  if (data.status_code != 0) {
    out.length(span::status, status_size(data));
    out.optional_string(status::message, data.status_message);
    out.optional_signed(status::code, data.status_code);
  }
}

void write_log_record(Writer& out, const LogEvent& event) {
  out.optional_fixed64(log_record::time, event.time_ns);
  out.optional_signed(log_record::severity_number, severity_info);
  out.optional_string(log_record::severity_text, severity_info_text);
  out.length(log_record::body, string_value_size(event.name));
  write_string_value(out, event.name);
  // event.name first, then the event's own attributes, without building a joined list.
  auto name_bytes = string_value_size(event.name);
  out.length(log_record::attributes, key_value_size(event_name_key, name_bytes));
  out.string(key_value::key, event_name_key);
  out.length(key_value::value, name_bytes);
  write_string_value(out, event.name);
  write_attributes(out, log_record::attributes, event.attributes);
  // Observed when made: the events are built the moment they happen.
  out.optional_fixed64(log_record::observed_time, event.time_ns);
}

// Sizes `out` to exactly `size` bytes (its capacity kept), hands the writer its start, and
// checks the writer ended exactly there: a size function that disagreed with its writer would
// otherwise send a corrupt body.
template <class Write>
void encode_into(std::string& out, std::size_t size, Write&& write) {
  out.clear();
  out.resize(size);
  Writer writer(out.data());
  write(writer);
  if (writer.at() != out.data() + size)
    throw std::logic_error("OTLP protobuf encoder: the size pass and the bytes written disagree");
}

// One Export{Trace,Logs}ServiceRequest: one resource, one scope and its items. The two share
// every field number (ResourceSpans/ResourceLogs, ScopeSpans/ScopeLogs) and differ only in how
// an item is sized and written.
template <class Item, class ItemSize, class WriteItem>
void encode_request(std::string& out, const Resource& resource, std::string_view scope_name,
                    std::string_view scope_version, std::span<const Item> items, ItemSize item_size,
                    WriteItem write_item) {
  std::size_t items_bytes = 0;
  for (const auto& item : items) items_bytes += field_size(item_size(item));
  auto resource_bytes = attributes_size(resource.attributes);
  auto scope_items_bytes = field_size(scope_size(scope_name, scope_version)) + items_bytes;
  auto resource_items_bytes = field_size(resource_bytes) + field_size(scope_items_bytes);
  encode_into(out, field_size(resource_items_bytes), [&](Writer& writer) {
    writer.length(request::resource_spans, resource_items_bytes);
    writer.length(resource_spans::resource, resource_bytes);
    write_attributes(writer, resource::attributes, resource.attributes);
    writer.length(resource_spans::scope_spans, scope_items_bytes);
    write_scope(writer, scope_name, scope_version);
    for (const auto& item : items) {
      writer.length(scope_spans::spans, item_size(item));
      write_item(writer, item);
    }
  });
}

}  // namespace

void encode_traces(std::string& out, const Resource& resource, std::string_view scope_version,
                   std::span<const SpanData> spans) {
  encode_request(out, resource, trace_scope_name, scope_version, spans, span_size, write_span);
}

void encode_logs(std::string& out, const Resource& resource, std::string_view scope_name,
                 std::string_view scope_version, const std::vector<LogEvent>& events) {
  encode_request(out, resource, scope_name, scope_version, std::span<const LogEvent>(events), log_record_size,
                 write_log_record);
}

}  // namespace synthorg::telemetry::protobuf

// libFuzzer target: spans and log events built from the bytes (FuzzedDataProvider) through the
// telemetry plugin's hand-written OTLP protobuf encoder (plugins/telemetry/otlp_protobuf.cpp),
// whose size pass and write pass must agree to the byte. A collector that cannot parse a batch
// drops all of it, so the output is walked here as protobuf wire format, into the messages the
// encoder nests: each field well formed, with minimal varints and in field-number order (the
// canonical form the header promises), and every non-empty string put in is a field of its own.
#include <algorithm>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fuzzer/FuzzedDataProvider.h>

#include "otlp_protobuf.hpp"

namespace {

using namespace synthorg;
using namespace synthorg::telemetry;

// The messages the encoder nests, and which length-delimited field of each holds which.
enum class Kind { request, resource_items, resource, scope_items, scope, item, key_value, any_value, status, leaf };

Kind nested(Kind kind, unsigned field, bool logs) {
  switch (kind) {
    case Kind::request: return field == 1 ? Kind::resource_items : Kind::leaf;
    case Kind::resource_items: return field == 1 ? Kind::resource : field == 2 ? Kind::scope_items : Kind::leaf;
    case Kind::resource: return field == 1 ? Kind::key_value : Kind::leaf;
    case Kind::scope_items: return field == 1 ? Kind::scope : field == 2 ? Kind::item : Kind::leaf;
    case Kind::item:  // Span, or LogRecord
      if (logs) return field == 5 ? Kind::any_value : field == 6 ? Kind::key_value : Kind::leaf;
      return field == 9 ? Kind::key_value : field == 15 ? Kind::status : Kind::leaf;
    case Kind::key_value: return field == 2 ? Kind::any_value : Kind::leaf;
    default: return Kind::leaf;
  }
}

std::optional<std::uint64_t> varint(std::string_view& in) {
  std::uint64_t value = 0;
  for (unsigned i = 0; i < 10 && i < in.size(); ++i) {
    auto byte = static_cast<std::uint8_t>(in[i]);
    value |= static_cast<std::uint64_t>(byte & 0x7f) << (7 * i);
    if (byte & 0x80) continue;
    if (i > 0 && byte == 0) return std::nullopt;  // not minimal
    in.remove_prefix(i + 1);
    return value;
  }
  return std::nullopt;
}

// Walks one message; the leaves' bytes go to `strings`. False on anything malformed.
bool walk(std::string_view in, Kind kind, bool logs, std::vector<std::string_view>& strings) {
  std::uint64_t last = 0;
  while (!in.empty()) {
    auto key = varint(in);
    if (!key || (*key >> 3) == 0 || (*key >> 3) < last) return false;
    last = *key >> 3;
    switch (*key & 7) {
      case 0:
        if (!varint(in)) return false;
        break;
      case 1:
      case 5: {
        std::size_t width = (*key & 7) == 1 ? 8 : 4;
        if (in.size() < width) return false;
        in.remove_prefix(width);
        break;
      }
      case 2: {
        auto length = varint(in);
        if (!length || *length > in.size()) return false;
        auto body = in.substr(0, *length);
        in.remove_prefix(*length);
        auto child = nested(kind, static_cast<unsigned>(last), logs);
        if (child == Kind::leaf) strings.push_back(body);
        else if (!walk(body, child, logs, strings)) return false;
        break;
      }
      default: return false;
    }
  }
  return true;
}

AttributeValue value(FuzzedDataProvider& in) {
  switch (in.ConsumeIntegralInRange(0, 3)) {
    case 0: return in.ConsumeRandomLengthString(64);
    case 1: return in.ConsumeIntegral<std::int64_t>();
    case 2: return in.ConsumeFloatingPoint<double>();
    default: return in.ConsumeBool();
  }
}

void check(const std::string& out, bool logs, const std::vector<std::string_view>& put_in) {
  std::vector<std::string_view> strings;
  if (!walk(out, Kind::request, logs, strings)) __builtin_trap();
  for (auto text : put_in)
    if (!text.empty() && std::find(strings.begin(), strings.end(), text) == strings.end()) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  FuzzedDataProvider in(data, size);
  std::deque<std::string> texts;  // what the views below point at (span attribute keys are views)
  auto text = [&](std::size_t max) -> std::string_view { return texts.emplace_back(in.ConsumeRandomLengthString(max)); };
  auto attribute = [&](auto& list, std::vector<std::string_view>& put_in) {
    auto key = text(32);
    list.emplace_back(key, value(in));
    put_in.push_back(key);
    if (auto* s = std::get_if<std::string>(&list.back().second)) put_in.push_back(texts.emplace_back(*s));
  };

  Resource resource;
  std::vector<std::string_view> common{text(16)};  // the scope version, then the resource's strings
  for (int i = in.ConsumeIntegralInRange(0, 3); i > 0; --i) attribute(resource.attributes, common);
  auto traced = common;
  std::vector<SpanData> spans(in.ConsumeIntegralInRange(0, 4));
  for (auto& span : spans) {
    in.ConsumeData(span.trace_id.data(), span.trace_id.size());
    in.ConsumeData(span.span_id.data(), span.span_id.size());
    span.has_parent = in.ConsumeBool();
    in.ConsumeData(span.parent_span_id.data(), span.parent_span_id.size());
    span.tracestate = in.ConsumeRandomLengthString(64);
    span.name = in.ConsumeRandomLengthString(64);
    span.kind = static_cast<SpanKind>(in.ConsumeIntegralInRange(0, 5));
    span.start_ns = in.ConsumeIntegral<std::uint64_t>();
    span.end_ns = in.ConsumeIntegral<std::uint64_t>();
    for (int i = in.ConsumeIntegralInRange(0, 4); i > 0; --i) attribute(span.attributes, traced);
    span.dropped_attributes = in.ConsumeIntegral<std::uint32_t>();
    span.status_code = in.ConsumeIntegralInRange(0, 2);
    span.status_message = in.ConsumeRandomLengthString(64);
    traced.insert(traced.end(), {span.tracestate, span.name});
    if (span.status_code) traced.push_back(span.status_message);
  }
  std::string out;
  protobuf::encode_traces(out, resource, common[0], spans);
  check(out, false, traced);

  auto logged = common;
  logged.push_back(text(16));  // the scope name
  std::vector<LogEvent> events(in.ConsumeIntegralInRange(0, 4));
  for (auto& event : events) {
    event.time_ns = in.ConsumeIntegral<std::uint64_t>();
    event.name = in.ConsumeRandomLengthString(64);
    logged.push_back(event.name);
    for (int i = in.ConsumeIntegralInRange(0, 4); i > 0; --i) attribute(event.attributes, logged);
  }
  protobuf::encode_logs(out, resource, logged[common.size()], common[0], events);
  check(out, true, logged);
  return 0;
}

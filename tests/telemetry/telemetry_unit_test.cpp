// The telemetry plugin's rules, one case at a time: W3C trace context, the start-up checks on
// the environment, the environment tag chain, attribute sanitising, sampling, the Metrics
// registry's exposition, and what product telemetry lets out.
#include <gtest/gtest.h>

#include <fstream>
#include <map>

#include "options.hpp"
#include "otlp_json.hpp"
#include "otlp_protobuf.hpp"
#include "product.hpp"
#include "synthorg/services/metrics.hpp"
#include "test_support.hpp"
#include "tracer.hpp"

namespace synthorg::telemetry {
namespace {

using nlohmann::json;
using synthorg::testing::TempDir;

Environment env_of(std::map<std::string, std::string> values) {
  return [values = std::move(values)](std::string_view name) -> std::optional<std::string> {
    auto it = values.find(std::string(name));
    if (it == values.end()) return std::nullopt;
    return it->second;
  };
}

TEST(TraceContextTest, ParsesAndFormatsW3cTraceparent) {
  auto parsed = trace::parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "vendor=x");
  ASSERT_TRUE(parsed);
  EXPECT_TRUE(parsed->sampled);
  EXPECT_EQ(parsed->tracestate, "vendor=x");
  EXPECT_EQ(trace::format_traceparent(*parsed), "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
  EXPECT_FALSE(trace::parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00")->sampled);
  // A later version may carry more fields; its first four are still read.
  EXPECT_TRUE(trace::parse_traceparent("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra"));
  for (const char* bad : {"", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
                          "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",  // upper case
                          "00-00000000000000000000000000000000-b7ad6b7169203331-01",  // zero trace id
                          "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  // zero span id
                          "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  // reserved version
                          "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x",
                          "00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
    EXPECT_FALSE(trace::parse_traceparent(bad)) << bad;
  EXPECT_EQ(trace::parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                                     std::string(600, 'a'))->tracestate, "")
      << "an oversized tracestate is not passed on";
}

TEST(TraceContextTest, ScopedContextNestsAndRestores) {
  EXPECT_FALSE(trace::current().valid());
  auto outer = *trace::parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
  {
    trace::ScopedContext first(outer);
    EXPECT_EQ(trace::current().span_id, outer.span_id);
    auto inner = outer;
    inner.span_id[0] ^= 1;
    {
      trace::ScopedContext second(inner);
      EXPECT_EQ(trace::current().span_id, inner.span_id);
    }
    EXPECT_EQ(trace::current().span_id, outer.span_id);
  }
  EXPECT_FALSE(trace::current().valid());
}

TEST(TelemetryOptionsTest, TracingIsOffWithoutAnEndpoint) {
  auto options = trace_options(env_of({}));
  EXPECT_TRUE(options.endpoint.empty());
  EXPECT_EQ(options.sampling_ratio, 1.0);
  EXPECT_EQ(options.service_name, "synthorg");
  options = trace_options(env_of({{"SYNTHORG_TRACE_OTLP_ENDPOINT", "https://collector.example:4318/v1/traces"},
                                  {"SYNTHORG_TRACE_SAMPLING_RATIO", "0.25"},
                                  {"SYNTHORG_TRACE_SERVICE_NAME", "synthorg-eu"}}));
  EXPECT_EQ(options.endpoint, "https://collector.example:4318/v1/traces");
  EXPECT_EQ(options.sampling_ratio, 0.25);
  EXPECT_EQ(options.service_name, "synthorg-eu");
}

TEST(TelemetryOptionsTest, MalformedOrNonHttpEndpointsAreRefusedClearly) {
  for (const char* bad : {"otel-collector:4318", "ftp://collector/v1/traces", "grpc://collector:4317",
                          "http://", "http:///v1/traces", "not a url", "http://collector:99999999/v1/traces",
                          "http://collector/v1/traces#frag", "unix:///run/otel.sock"}) {
    try {
      trace_options(env_of({{"SYNTHORG_TRACE_OTLP_ENDPOINT", bad}}));
      ADD_FAILURE() << bad << " was accepted";
    } catch (const std::invalid_argument& error) {
      std::string message = error.what();
      EXPECT_NE(message.find("SYNTHORG_TRACE_OTLP_ENDPOINT"), std::string::npos) << message;
      EXPECT_NE(message.find("fix:"), std::string::npos) << message;
    }
  }
  try {
    trace_options(env_of({{"SYNTHORG_TRACE_OTLP_ENDPOINT", "http://user:hunter2@collector/v1/traces"}}));
    ADD_FAILURE() << "credentials in the URL were accepted";
  } catch (const std::invalid_argument& error) {
    EXPECT_EQ(std::string(error.what()).find("hunter2"), std::string::npos) << "the secret is echoed: " << error.what();
  }
}

TEST(TelemetryOptionsTest, SamplingRatioOutsideZeroToOneIsRefused) {
  for (const char* bad : {"1.5", "-0.1", "2", "abc", "0.5x", "nan", "inf", "1e3"}) {
    try {
      trace_options(env_of({{"SYNTHORG_TRACE_SAMPLING_RATIO", bad}}));
      ADD_FAILURE() << bad << " was accepted";
    } catch (const std::invalid_argument& error) {
      EXPECT_NE(std::string(error.what()).find("SYNTHORG_TRACE_SAMPLING_RATIO=" + std::string(bad)), std::string::npos)
          << error.what();
    }
  }
  for (auto [text, value] : std::vector<std::pair<const char*, double>>{{"0", 0}, {"1", 1}, {"0.0", 0}, {"1.0", 1}, {"0.001", 0.001}})
    EXPECT_EQ(trace_options(env_of({{"SYNTHORG_TRACE_SAMPLING_RATIO", text}})).sampling_ratio, value) << text;
}

TEST(TelemetryOptionsTest, ProtocolIsTheSettingUnlessTheEnvironmentSaysOtherwise) {
  EXPECT_EQ(otlp_protocol(env_of({}), "http/protobuf"), OtlpProtocol::http_protobuf);
  EXPECT_EQ(otlp_protocol(env_of({}), "http/json"), OtlpProtocol::http_json);
  EXPECT_EQ(otlp_protocol(env_of({{"SYNTHORG_TRACE_OTLP_PROTOCOL", "http/json"}}), "http/protobuf"),
            OtlpProtocol::http_json)
      << "the environment wins";
  EXPECT_EQ(otlp_protocol(env_of({{"SYNTHORG_TRACE_OTLP_PROTOCOL", " HTTP/Protobuf "}}), "http/json"),
            OtlpProtocol::http_protobuf);
  EXPECT_EQ(otlp_protocol(env_of({{"SYNTHORG_TRACE_OTLP_PROTOCOL", ""}}), "http/json"), OtlpProtocol::http_json)
      << "empty is unset";
  for (const char* bad : {"grpc", "json", "protobuf", "http/proto"}) {
    try {
      otlp_protocol(env_of({{"SYNTHORG_TRACE_OTLP_PROTOCOL", bad}}), "http/protobuf");
      ADD_FAILURE() << bad << " was accepted";
    } catch (const std::invalid_argument& error) {
      std::string what = error.what();
      EXPECT_NE(what.find(std::string("SYNTHORG_TRACE_OTLP_PROTOCOL=") + bad), std::string::npos) << what;
      EXPECT_NE(what.find("http/protobuf"), std::string::npos) << what;
      EXPECT_NE(what.find("http/json"), std::string::npos) << what;
    }
  }
  EXPECT_THROW(otlp_protocol(env_of({}), "grpc"), std::invalid_argument);
  EXPECT_EQ(protocol_name(OtlpProtocol::http_protobuf), "http/protobuf");
  EXPECT_EQ(protocol_name(OtlpProtocol::http_json), "http/json");
}

TEST(TelemetryOptionsTest, EnabledFlagCaseByCase) {
  for (const char* on : {"true", "1", "yes", "TRUE", "Yes", " true "})
    EXPECT_TRUE(parse_enabled(std::string(on), "SYNTHORG_TELEMETRY_ENABLED")) << on;
  for (const char* off : {"false", "0", "no", "FALSE", "No", ""})
    EXPECT_FALSE(parse_enabled(std::string(off), "SYNTHORG_TELEMETRY_ENABLED")) << off;
  EXPECT_FALSE(parse_enabled(std::nullopt, "SYNTHORG_TELEMETRY_ENABLED")) << "off by default";
  for (const char* bad : {"on", "off", "2", "enabled", "y"})
    EXPECT_THROW(parse_enabled(std::string(bad), "SYNTHORG_TELEMETRY_ENABLED"), std::invalid_argument) << bad;
}

TEST(TelemetryOptionsTest, EnvironmentTagChainCaseByCase) {
  auto resolve = [](std::map<std::string, std::string> values, std::string_view configured) {
    auto names = values;
    return resolve_environment(env_of(std::move(values)), [names](std::string_view prefix) {
      for (const auto& [name, value] : names)
        if (name.starts_with(prefix)) return true;
      return false;
    }, configured);
  };
  // 1. SYNTHORG_TELEMETRY_ENV beats everything.
  EXPECT_EQ(resolve({{"SYNTHORG_TELEMETRY_ENV", "Staging"}, {"CI", "true"}, {"SYNTHORG_TELEMETRY_ENV_BAKED", "prod"}},
                    "configured"),
            "staging");
  // 2. Any CI marker gives "ci"...
  for (const char* marker : {"CI", "GITLAB_CI", "BUILDKITE", "JENKINS_URL"})
    EXPECT_EQ(resolve({{marker, "true"}, {"SYNTHORG_TELEMETRY_ENV_BAKED", "prod"}}, "configured"), "ci") << marker;
  EXPECT_EQ(resolve({{"JENKINS_URL", "http://jenkins:8080/"}}, ""), "ci");
  EXPECT_EQ(resolve({{"RUNPOD_POD_ID", "abc"}, {"SYNTHORG_TELEMETRY_ENV_BAKED", "prod"}}, ""), "ci") << "any RUNPOD_*";
  EXPECT_EQ(resolve({{"RUNPOD_API_KEY", ""}}, ""), "ci") << "set is enough for RUNPOD_*";
  // ...unless it says no.
  EXPECT_EQ(resolve({{"CI", "false"}}, ""), "dev");
  EXPECT_EQ(resolve({{"CI", "0"}}, ""), "dev");
  // 3. The baked tag, then 4. the configured value, then 5. dev.
  EXPECT_EQ(resolve({{"SYNTHORG_TELEMETRY_ENV_BAKED", "docker"}}, "configured"), "docker");
  EXPECT_EQ(resolve({}, "Production"), "production");
  EXPECT_EQ(resolve({}, ""), "dev");
  EXPECT_EQ(resolve({{"SYNTHORG_TELEMETRY_ENV", "  "}}, ""), "dev") << "blank counts as unset";
  EXPECT_EQ(resolve({{"SYNTHORG_TELEMETRY_ENV", std::string(100, 'x')}}, "").size(), 64u) << "capped";
}

TEST(SanitizeTest, NonUtf8BecomesReplacementCharacters) {
  EXPECT_EQ(sanitize_utf8("plain", 100), "plain");
  EXPECT_EQ(sanitize_utf8("caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80", 100), "caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80");
  EXPECT_EQ(sanitize_utf8("a\xFF" "b", 100), "a\xEF\xBF\xBD" "b");
  EXPECT_EQ(sanitize_utf8("\xC0\xAF", 100), "\xEF\xBF\xBD\xEF\xBF\xBD") << "overlong";
  EXPECT_EQ(sanitize_utf8("\xED\xA0\x80", 100), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD") << "surrogate";
  EXPECT_EQ(sanitize_utf8("\xE2\x82", 100), "\xEF\xBF\xBD\xEF\xBF\xBD") << "truncated sequence";
  EXPECT_EQ(sanitize_utf8("\xF4\x90\x80\x80", 100).substr(0, 3), "\xEF\xBF\xBD") << "past U+10FFFF";
}

TEST(SanitizeTest, HugeValuesAreCutAtACharacterBoundary) {
  auto cut = sanitize_utf8(std::string(1 << 20, 'x'), 1024);
  EXPECT_LE(cut.size(), 1024u);
  EXPECT_TRUE(cut.ends_with("\xE2\x80\xA6"));
  std::string euros;
  for (int i = 0; i < 1000; ++i) euros += "\xE2\x82\xAC";
  auto cut_euros = sanitize_utf8(euros, 100);
  EXPECT_LE(cut_euros.size(), 100u);
  EXPECT_EQ(sanitize_utf8(cut_euros, 1000), cut_euros) << "still valid UTF-8";
}

TEST(TracerTest, SamplingIsParentBasedWithARatioForRoots) {
  std::vector<SpanData> ended;
  auto sink = [&](SpanData&& span) { ended.push_back(std::move(span)); };
  auto none = std::make_shared<TracerImpl>(0.0, TracerLimits{}, sink);
  auto all = std::make_shared<TracerImpl>(1.0, TracerLimits{}, sink);
  auto half = std::make_shared<TracerImpl>(0.5, TracerLimits{}, sink);
  for (int i = 0; i < 100; ++i) none->start_span("root", SpanKind::internal)->end();
  EXPECT_TRUE(ended.empty());
  for (int i = 0; i < 100; ++i) all->start_span("root", SpanKind::internal)->end();
  EXPECT_EQ(ended.size(), 100u);
  ended.clear();
  for (int i = 0; i < 4000; ++i) half->start_span("root", SpanKind::internal);
  EXPECT_GT(ended.size(), 1700u);
  EXPECT_LT(ended.size(), 2300u);

  auto sampled = *trace::parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
  auto unsampled = *trace::parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00");
  ended.clear();
  auto child = none->start_span("child", SpanKind::server, sampled);
  EXPECT_TRUE(child->recording()) << "a sampled parent wins over ratio 0";
  EXPECT_EQ(child->context().trace_id, sampled.trace_id);
  child->end();
  ASSERT_EQ(ended.size(), 1u);
  EXPECT_TRUE(ended[0].has_parent);
  EXPECT_EQ(ended[0].parent_span_id, sampled.span_id);
  auto dropped = all->start_span("child", SpanKind::server, unsampled);
  EXPECT_FALSE(dropped->recording()) << "an unsampled parent wins over ratio 1";
  EXPECT_FALSE(dropped->context().sampled);
  EXPECT_EQ(dropped->context().trace_id, unsampled.trace_id) << "the trace goes on, unrecorded";
  {
    trace::ScopedContext scope(sampled);
    EXPECT_TRUE(none->start_span("implicit", SpanKind::internal)->recording()) << "the thread's context is the parent";
  }
}

TEST(TracerTest, AttributesAreBoundedAndSanitised) {
  std::vector<SpanData> ended;
  TracerLimits limits;
  limits.max_attribute_bytes = 64;
  limits.max_attributes = 3;
  auto tracer = std::make_shared<TracerImpl>(1.0, limits, [&](SpanData&& span) { ended.push_back(std::move(span)); });
  auto span = tracer->start_span("op", SpanKind::internal);
  span->set_attribute("huge", std::string(100000, 'y'));
  span->set_attribute("bad", std::string("\xFF\xFE"));
  span->set_attribute("n", std::int64_t{7});
  span->set_attribute("n", std::int64_t{8});  // replaces, not added
  span->set_attribute("fourth", true);
  span->end();
  span->set_attribute("after", true);
  ASSERT_EQ(ended.size(), 1u);
  const auto& data = ended[0];
  ASSERT_EQ(data.attributes.size(), 3u);
  EXPECT_LE(std::get<std::string>(data.attributes[0].second).size(), 64u);
  EXPECT_EQ(std::get<std::string>(data.attributes[1].second), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(std::get<std::int64_t>(data.attributes[2].second), 8);
  EXPECT_EQ(data.dropped_attributes, 1u);
  EXPECT_GE(data.end_ns, data.start_ns);
  auto body = json::parse(encode_traces({}, "1", ended));  // parses: valid JSON, valid UTF-8
  EXPECT_EQ(body["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["droppedAttributesCount"], 1);
}

// Spans come back from the exporter to be reused (recycle_spans): the next span gets the old
// one's capacity and nothing it recorded, down to the bytes on the wire.
TEST(TracerTest, ARecycledSpanCarriesNothingIntoTheNext) {
  std::vector<SpanData> ended;
  auto tracer = std::make_shared<TracerImpl>(1.0, TracerLimits{}, [&](SpanData&& span) { ended.push_back(std::move(span)); });
  auto parent = *trace::parse_traceparent("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "vendor=value");
  auto first = tracer->start_span("first", SpanKind::server, parent);
  for (int i = 0; i < 70; ++i) first->set_attribute("recycled." + std::to_string(i), std::string(40, 'x'));
  first->set_error("HTTP 500");
  first->end();
  ASSERT_EQ(ended.size(), 1u);
  ASSERT_EQ(ended[0].dropped_attributes, 6u) << "64 kept, the rest counted";
  ASSERT_EQ(ended[0].tracestate, "vendor=value");
  const auto* storage = ended[0].attributes.data();
  recycle_spans(ended);
  EXPECT_TRUE(ended.empty());

  auto second = tracer->start_span("second", SpanKind::internal);
  second->end();
  ASSERT_EQ(ended.size(), 1u);
  const auto& data = ended[0];
  EXPECT_EQ(data.attributes.data(), storage) << "the first span's attribute vector, reused";
  EXPECT_TRUE(data.attributes.empty());
  EXPECT_EQ(data.dropped_attributes, 0u);
  EXPECT_EQ(data.status_code, 0);
  EXPECT_TRUE(data.status_message.empty());
  EXPECT_FALSE(data.has_parent);
  EXPECT_TRUE(data.tracestate.empty());
  EXPECT_NE(data.trace_id, parent.trace_id) << "a new trace";
  EXPECT_GE(data.end_ns, data.start_ns);
  // Every field a fresh span has, byte for byte: a field recycle_spans forgot would show here.
  SpanData fresh;
  fresh.trace_id = data.trace_id;
  fresh.span_id = data.span_id;
  fresh.name = "second";
  fresh.kind = SpanKind::internal;
  fresh.start_ns = data.start_ns;
  fresh.end_ns = data.end_ns;
  std::vector<SpanData> expected;
  expected.push_back(std::move(fresh));
  std::string got, want;
  protobuf::encode_traces(got, {}, "1", ended);
  protobuf::encode_traces(want, {}, "1", expected);
  EXPECT_EQ(got, want);
  EXPECT_EQ(encode_traces({}, "1", ended), encode_traces({}, "1", expected));
}

// The wire bytes of a small request, spelled out field by field from opentelemetry-proto's
// numbers, so a change to the encoder's output shows here even where node (and the receiver
// that decodes with the official schema, in telemetry_otlp_test.cpp) is absent.
TEST(OtlpProtobufTest, ASmallRequestIsExactlyTheseBytes) {
  SpanData span;
  span.trace_id[0] = 1;
  span.span_id[0] = 2;
  span.name = "a";
  span.kind = SpanKind::internal;
  span.start_ns = 1;
  span.end_ns = 2;
  span.attributes = {{"k", std::int64_t{-1}}};
  auto bytes = [](std::initializer_list<int> values) {
    std::string out;
    for (int value : values) out += static_cast<char>(value);
    return out;
  };
  auto zeros = [](std::size_t count) { return std::string(count, '\0'); };
  // intValue (3): -1, as ten varint bytes.
  std::string any_value = bytes({0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01});
  std::string key_value = bytes({0x0a, 0x01, 'k', 0x12, 0x0b}) + any_value;  // key (1), value (2)
  std::string span_bytes = bytes({0x0a, 0x10, 0x01}) + zeros(15) +  // traceId (1)
                           bytes({0x12, 0x08, 0x02}) + zeros(7) +    // spanId (2)
                           bytes({0x2a, 0x01, 'a'}) +                // name (5)
                           bytes({0x30, 0x01}) +                     // kind (6): SPAN_KIND_INTERNAL
                           bytes({0x39, 0x01}) + zeros(7) +          // startTimeUnixNano (7), fixed64
                           bytes({0x41, 0x02}) + zeros(7) +          // endTimeUnixNano (8), fixed64
                           bytes({0x4a, 0x10}) + key_value;          // attributes (9)
  ASSERT_EQ(span_bytes.size(), 69u);
  std::string scope = bytes({0x0a, 0x08}) + "synthorg" + bytes({0x12, 0x01}) + "1";  // name (1), version (2)
  std::string scope_spans = bytes({0x0a, 0x0d}) + scope + bytes({0x12, 0x45}) + span_bytes;  // scope (1), spans (2)
  std::string resource_spans = bytes({0x0a, 0x00}) +  // resource (1), empty
                               bytes({0x12, 0x56}) + scope_spans;  // scopeSpans (2)
  std::string request = bytes({0x0a, 0x5a}) + resource_spans;  // resourceSpans (1)

  std::string out = "left over from the last batch";
  protobuf::encode_traces(out, {}, "1", std::vector<SpanData>{span});
  EXPECT_EQ(out, request);

  // Logs: one event, no resource attributes.
  LogEvent event{5, "e", {{"n", true}}};
  std::string name_value = bytes({0x0a, 0x01, 'e'});  // AnyValue stringValue (1)
  std::string record = bytes({0x09, 0x05}) + zeros(7) +                                   // timeUnixNano (1)
                       bytes({0x10, 0x09}) +                                              // severityNumber (2): INFO
                       bytes({0x1a, 0x04}) + "INFO" +                                     // severityText (3)
                       bytes({0x2a, 0x03}) + name_value +                                 // body (5)
                       bytes({0x32, 0x11, 0x0a, 0x0a}) + "event.name" + bytes({0x12, 0x03}) + name_value +  // attributes (6)
                       bytes({0x32, 0x07, 0x0a, 0x01, 'n', 0x12, 0x02, 0x10, 0x01}) +    // attributes (6): boolValue (2)
                       bytes({0x59, 0x05}) + zeros(7);                                    // observedTimeUnixNano (11)
  ASSERT_EQ(record.size(), 59u);
  std::string scope_logs = bytes({0x0a, 0x03, 0x0a, 0x01, 's'}) +  // scope (1): name "s", no version
                           bytes({0x12, 0x3b}) + record;            // logRecords (2)
  std::string logs = bytes({0x0a, 0x46}) +                          // resourceLogs (1)
                     bytes({0x0a, 0x00}) +                          // resource (1), empty
                     bytes({0x12, 0x42}) + scope_logs;              // scopeLogs (2)
  protobuf::encode_logs(out, {}, "s", "", {event});
  EXPECT_EQ(out, logs);
}

TEST(MetricsRegistryTest, RendersEveryFamilyOnceInTheTextFormat) {
  auto metrics = make_metrics_registry();
  metrics->counter("jobs_total", "Jobs.", {{"kind", "a\"b\\c\nd"}})->add(2);
  metrics->counter("jobs_total", "Jobs.", {{"kind", "a\"b\\c\nd"}})->add();
  metrics->counter("jobs_total", "Jobs.", {{"kind", "x"}})->add(-5);  // ignored: counters only go up
  metrics->gauge("temperature", "Now.")->set(-3.5);
  auto latency = metrics->histogram("latency_seconds", "Latency.", {}, {0.1, 1});
  latency->observe(0.05);
  latency->observe(0.5);
  latency->observe(7);
  int collected = 0;
  auto collector = metrics->add_collector([&] { ++collected; });
  auto text = metrics->render();
  EXPECT_EQ(collected, 1);
  EXPECT_NE(text.find("# TYPE jobs_total counter\n"), std::string::npos) << text;
  EXPECT_NE(text.find("jobs_total{kind=\"a\\\"b\\\\c\\nd\"} 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("jobs_total{kind=\"x\"} 0\n"), std::string::npos) << text;
  EXPECT_NE(text.find("temperature -3.5\n"), std::string::npos) << text;
  EXPECT_NE(text.find("latency_seconds_bucket{le=\"0.1\"} 1\nlatency_seconds_bucket{le=\"1\"} 2\n"
                      "latency_seconds_bucket{le=\"+Inf\"} 3\nlatency_seconds_sum 7.55\nlatency_seconds_count 3\n"),
            std::string::npos)
      << text;
  EXPECT_EQ(text.find("# HELP jobs_total"), text.rfind("# HELP jobs_total")) << "one family, once";
  collector.reset();
  metrics->render();
  EXPECT_EQ(collected, 1);
  EXPECT_THROW(metrics->gauge("jobs_total", "Jobs.", {{"kind", "x"}}), std::invalid_argument) << "another type";
  EXPECT_THROW(metrics->counter("jobs_total", "Jobs.", {{"other", "x"}}), std::invalid_argument) << "other labels";
  EXPECT_THROW(metrics->counter("bad-name", "x"), std::invalid_argument);
  EXPECT_THROW(metrics->counter("ok", "x", {{"le", "1"}}), std::invalid_argument);
  EXPECT_THROW(metrics->histogram("h", "x", {}, {1, 0.5}), std::invalid_argument);
}

TEST(ProductTelemetryTest, OnlyAllowlistedUndeniedPropertiesLeaveCapped) {
  for (const char* key : {"api_key", "KEY", "access_token", "client_secret", "password", "db_credential",
                          "authorization", "oauth", "system_prompt", "content", "error_message"})
    EXPECT_TRUE(denied_key(key)) << key;
  EXPECT_FALSE(denied_key("version"));
  auto attributes = allowed_properties({{"version", "1.2.3"},
                                        {"plugins", {"http-api", "store-sqlite"}},
                                        {"plugin_count", 2},
                                        {"uptime_seconds", 12.5},
                                        {"store_backend", std::string(200, 's')},
                                        {"hostname", "db.internal"},  // not on the allowlist
                                        {"api_key", "sk-live-123"},
                                        {"message", "hello"},
                                        {"nested", {{"version", "x"}}}});
  std::map<std::string, AttributeValue> by_key(attributes.begin(), attributes.end());
  EXPECT_EQ(by_key.size(), 5u);
  EXPECT_EQ(std::get<std::string>(by_key["version"]), "1.2.3");
  EXPECT_EQ(std::get<std::string>(by_key["plugins"]), "http-api,store-sqlite");
  EXPECT_EQ(std::get<std::int64_t>(by_key["plugin_count"]), 2);
  EXPECT_LE(std::get<std::string>(by_key["store_backend"]).size(), 64u);
}

TEST(ProductTelemetryTest, AnonymousIdIsStoredInTheDataDirectoryAndKept) {
  TempDir dir;
  auto id = anonymous_id(dir / "data");
  EXPECT_EQ(id.size(), 36u);
  EXPECT_EQ(id[14], '4');
  std::ifstream stored(dir / "data" / "telemetry-id");
  std::string on_disk;
  stored >> on_disk;
  EXPECT_EQ(on_disk, id);
  EXPECT_EQ(anonymous_id(dir / "data"), id) << "the same install keeps its id";
  std::ofstream(dir / "data" / "telemetry-id") << "not-a-uuid\n";
  EXPECT_NE(anonymous_id(dir / "data"), "not-a-uuid") << "a damaged file is replaced";
}

}  // namespace
}  // namespace synthorg::telemetry

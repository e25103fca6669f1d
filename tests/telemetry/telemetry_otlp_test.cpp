// What leaves the process, checked at a local OTLP receiver (tests/telemetry/otlp_receiver.js)
// that decodes every request with the official OTLP schema from npm and holds trace requests
// to the shape of ../shared/contracts/otlp/examples/trace.json: a request through the API
// yields a correct trace, the exporter survives a collector that is down, slow, refusing or
// hanging up, and product telemetry never lets a denied key or a secret out. The receiver
// accepts both OTLP/HTTP encodings and gives back the JSON mapping of either, so these tests
// run on the default (binary protobuf) and, where said, on JSON too.
#include <gtest/gtest.h>

#include <Poco/Process.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <regex>
#include <thread>

#include "exporter.hpp"
#include "http_client.hpp"
#include "kernel.hpp"
#include "product.hpp"
#include "synthorg/http_client.hpp"
#include "synthorg/services/executor.hpp"
#include "synthorg/services/http.hpp"
#include "test_support.hpp"
#include "otlp_receiver.hpp"
#include "tracer.hpp"

namespace synthorg::telemetry {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using synthorg::testing::ScopedEnv;
using synthorg::testing::TempDir;

class OtlpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(example))
      GTEST_SKIP() << example << " is absent (../shared/contracts is not checked out here): there is no OTLP "
                   << "example to hold our requests to, so these tests cannot run";
    if (!fs::exists(receiver_dir / "node_modules" / "@opentelemetry" / "otlp-transformer"))
      GTEST_SKIP() << "tests/telemetry/node_modules is missing: run scripts/deps (npm ci --prefix tests/telemetry)";
    receiver_ = std::make_unique<Receiver>();
  }
  static json attributes(const json& list) {
    json out = json::object();
    for (const auto& attribute : list) out[attribute["key"].get<std::string>()] = attribute["value"];
    return out;
  }
  static Resource resource() { return {{{"service.name", std::string("synthorg-test")}}}; }
  static SpanData span(std::string name) {
    SpanData data;
    data.trace_id[0] = 1;
    data.span_id[0] = 2;
    data.name = std::move(name);
    data.kind = SpanKind::internal;
    data.start_ns = 1'700'000'000'000'000'000;
    data.end_ns = data.start_ns + 1000;
    return data;
  }
  // A trace request in the default encoding, the one options() sends as.
  static std::string traces(const std::vector<SpanData>& spans) {
    std::string out;
    encoding_of(ExportOptions{}.protocol).traces(out, resource(), "1", spans);
    return out;
  }
  ExportOptions options(std::chrono::milliseconds timeout = 2s) const {
    ExportOptions out;
    out.endpoint = receiver_->url() + "/v1/traces";
    out.timeout = timeout;
    out.initial_backoff = 50ms;
    out.max_backoff = 2s;
    return out;
  }
  // A request through http-api, traced, exported by the plugin in `protocol` (empty: the
  // default), decoded by the receiver; the body it hands back is the same for either encoding.
  void request_through_the_api_yields_a_correct_trace(const std::string& protocol, const std::string& content_type);
  std::unique_ptr<Receiver> receiver_;
};

void OtlpTest::request_through_the_api_yields_a_correct_trace(const std::string& protocol,
                                                              const std::string& content_type) {
  TempDir dir;
  int port = synthorg::testing::free_port();
  ScopedEnv endpoint("SYNTHORG_TRACE_OTLP_ENDPOINT", receiver_->url() + "/v1/traces");
  ScopedEnv ratio("SYNTHORG_TRACE_SAMPLING_RATIO", "1.0");
  ScopedEnv service("SYNTHORG_TRACE_SERVICE_NAME", "synthorg-test");
  ScopedEnv access("SYNTHORG_HTTP_ACCESS_LOG", "false");
  auto config = company(dir, {"http-api", "telemetry"},
                        "  http-api:\n    config: {address: 127.0.0.1, port: " + std::to_string(port) +
                            "}\n  telemetry:\n    config: {batch_delay: 100ms, data_dir: " + (dir / "data").string() +
                            (protocol.empty() ? "" : ", protocol: " + protocol) + "}\n");
  auto kernel = std::make_unique<kernel::Kernel>(kernel::load_company_config(config, "/unused"));
  kernel->discover();
  kernel->prepare();
  kernel->start();
  // A route that calls out, from the blocking pool, through the SDK's client: the call must
  // carry the request's trace.
  auto executor = kernel->registry().get<Executor>();
  std::string receiver_url = receiver_->url();
  auto route = kernel->registry().get<HttpRouter>()->add(
      {"GET", "/api/v1/test/outgoing/{id}", Access::open, {}, {}, [executor, receiver_url](HttpRequest&, Responder respond) {
         executor->try_post_blocking([receiver_url, respond] {
           http::ClientOptions options;
           options.base_url = receiver_url;
           http::HttpClient client(options);
           auto answer = client.send({.method = "GET", .target = "/echo"});
           respond(HttpResponse::json(answer.status == 200 ? 200 : 502, json::object()));
         });
       }});

  const std::string incoming_trace = "4bf92f3577b34da6a3ce929d0e0e4736", incoming_span = "00f067aa0ba902b7";
  synthorg::testing::Client client(port);
  client.send("GET /api/v1/test/outgoing/42 HTTP/1.1\r\nHost: x\r\ntraceparent: 00-" + incoming_trace + "-" +
              incoming_span + "-01\r\ntracestate: vendor=abc\r\nConnection: close\r\n\r\n");
  ASSERT_EQ(synthorg::testing::status_of(client.response()), 200);
  auto before = std::chrono::system_clock::now();
  // /metrics: http-api's families through the telemetry plugin's Metrics, with process metrics,
  // each family once.
  synthorg::testing::Client scrape(port);
  scrape.send("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  auto metrics = scrape.response();
  for (const char* family : {"synthorg_http_requests_total", "process_resident_memory_bytes", "process_open_fds",
                             "process_cpu_seconds_total", "synthorg_uptime_seconds",
                             "synthorg_telemetry_spans_dropped_total"}) {
    auto help = "# HELP " + std::string(family) + " ";
    EXPECT_NE(metrics.find(help), std::string::npos) << family << " missing:\n" << metrics;
    EXPECT_EQ(metrics.find(help), metrics.rfind(help)) << family << " rendered twice";
  }
  route.reset();
  kernel.reset();  // stop: flushes what is queued

  auto spans = receiver_->spans();
  // The server spans; the bus's deliveries of plugin.started and the like come too.
  std::erase_if(spans, [](const auto& pair) { return pair.first["kind"] != 2; });
  ASSERT_EQ(spans.size(), 2u) << "the outgoing route and /metrics:\n" << receiver_->received().dump(2);
  auto traced = std::find_if(spans.begin(), spans.end(),
                             [](const auto& pair) { return pair.first["name"] == "/api/v1/test/outgoing/{id}"; });
  ASSERT_NE(traced, spans.end()) << receiver_->received().dump(2);
  const auto& [span, resource] = *traced;
  EXPECT_EQ(span["traceId"], incoming_trace) << "the caller's trace goes on";
  EXPECT_EQ(span["parentSpanId"], incoming_span);
  EXPECT_EQ(span["traceState"], "vendor=abc");
  EXPECT_TRUE(std::regex_match(span["spanId"].get<std::string>(), std::regex("^[0-9a-f]{16}$")));
  EXPECT_NE(span["spanId"], incoming_span);
  EXPECT_EQ(span["name"], "/api/v1/test/outgoing/{id}") << "the route template names the span";
  EXPECT_EQ(span["kind"], 2) << "SPAN_KIND_SERVER, as an integer";
  auto start = std::stoull(span["startTimeUnixNano"].get<std::string>());
  auto end = std::stoull(span["endTimeUnixNano"].get<std::string>());
  auto now = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(before.time_since_epoch()).count());
  EXPECT_LE(start, end);
  EXPECT_LT(now - start, 60'000'000'000ull) << "a start time of this minute";
  EXPECT_FALSE(span.contains("status")) << "200: status unset";
  auto attrs = attributes_of(span["attributes"]);
  EXPECT_EQ(attrs["http.request.method"], json({{"stringValue", "GET"}}));
  EXPECT_EQ(attrs["http.route"], json({{"stringValue", "/api/v1/test/outgoing/{id}"}}));
  EXPECT_EQ(attrs["url.path"], json({{"stringValue", "/api/v1/test/outgoing/42"}}));
  EXPECT_EQ(attrs["http.response.status_code"], json({{"intValue", "200"}})) << "int64 as a decimal string";
  auto resource_attrs = attributes_of(resource["attributes"]);
  EXPECT_EQ(resource_attrs["service.name"], json({{"stringValue", "synthorg-test"}}));
  EXPECT_EQ(resource_attrs["service.version"], json({{"stringValue", SYNTHORG_SDK_VERSION}}));
  EXPECT_TRUE(resource_attrs.contains("host.name"));
  EXPECT_TRUE(resource_attrs.contains("service.instance.id"));

  // The outgoing call carried this span as its parent.
  bool propagated = false;
  for (const auto& record : receiver_->received())
    if (record["path"] == "/echo") {
      EXPECT_EQ(record["headers"]["traceparent"],
                "00-" + incoming_trace + "-" + span["spanId"].get<std::string>() + "-01");
      EXPECT_EQ(record["headers"]["tracestate"], "vendor=abc");
      propagated = true;
    }
  EXPECT_TRUE(propagated) << "the receiver saw no outgoing call with a traceparent";
  for (const auto& record : receiver_->received())
    if (record["path"] == "/v1/traces") {
      EXPECT_EQ(record["contentType"], content_type);
      EXPECT_EQ(record["headers"]["content-encoding"], "gzip");
      EXPECT_FALSE(record["headers"].contains("traceparent")) << "the export itself is not traced";
    }
}

TEST_F(OtlpTest, ARequestThroughTheApiYieldsACorrectTrace) {
  request_through_the_api_yields_a_correct_trace("", "application/x-protobuf");
}

TEST_F(OtlpTest, ARequestThroughTheApiYieldsACorrectTraceAsJsonToo) {
  request_through_the_api_yields_a_correct_trace("http/json", "application/json");
}

// Every field the exporter sends, in both encodings, for spans whose values are known: the
// protobuf body, decoded by the official schema, holds each one, and its JSON mapping is the
// very document the JSON encoder writes.
TEST_F(OtlpTest, TheProtobufEncodingOfAKnownSpanDecodesFieldByField) {
  Resource resource{{{"service.name", std::string("synthorg-test")},
                     {"empty", std::string()},
                     {"pid", std::int64_t{4242}},
                     {"ratio", 0.25},
                     {"container", false}}};
  SpanData full = span("GET /api/v1/items/{id}");
  for (std::uint8_t i = 0; i < 16; ++i) full.trace_id[i] = static_cast<std::uint8_t>(0xf0 + i);
  for (std::uint8_t i = 0; i < 8; ++i) full.span_id[i] = static_cast<std::uint8_t>(0x10 * i + 1);
  for (std::uint8_t i = 0; i < 8; ++i) full.parent_span_id[i] = static_cast<std::uint8_t>(0x80 + i);
  full.has_parent = true;
  full.tracestate = "vendor=abc,other=x";
  full.kind = SpanKind::client;
  full.start_ns = 1'700'000'000'123'456'789;
  full.end_ns = full.start_ns + 250'000'000'000;  // varint-sized values would not fit in 32 bits
  full.attributes = {{"text", std::string("caf\xC3\xA9 \"quoted\"\n")},
                     {"empty", std::string()},
                     {"count", std::int64_t{300}},
                     {"zero", std::int64_t{0}},
                     {"negative", std::int64_t{-42}},
                     {"smallest", std::numeric_limits<std::int64_t>::min()},
                     {"ratio", 2.5},
                     {"nan", std::nan("")},
                     {"infinite", -std::numeric_limits<double>::infinity()},
                     {"yes", true},
                     {"no", false}};
  full.dropped_attributes = 3;
  full.status_code = 2;
  full.status_message = "upstream refused";
  SpanData bare = span("bare");  // no parent, no trace state, no attributes, status unset

  std::map<std::string, json> bodies;
  for (auto protocol : {OtlpProtocol::http_protobuf, OtlpProtocol::http_json}) {
    auto options = this->options();
    options.protocol = protocol;
    options.gzip = protocol == OtlpProtocol::http_json;  // both paths of the receiver: plain and gzip
    OtlpSender sender(options, log::Logger("test"));
    std::string body;
    sender.encoding().traces(body, resource, "9.8.7", std::vector<SpanData>{full, bare});
    ASSERT_EQ(sender.send(body, Clock::now() + 10s), SendResult::sent);
    auto records = receiver_->received();
    ASSERT_FALSE(records.empty());
    const auto& record = records.back();
    EXPECT_EQ(record["errors"], json::array()) << record.dump(2);
    EXPECT_EQ(record["contentType"], std::string(sender.encoding().content_type));
    bodies[std::string(protocol_name(protocol))] = record["body"];
  }

  const auto& body = bodies["http/protobuf"];
  ASSERT_EQ(body["resourceSpans"].size(), 1u) << body.dump(2);
  const auto& resource_spans = body["resourceSpans"][0];
  auto resource_attrs = attributes_of(resource_spans["resource"]["attributes"]);
  EXPECT_EQ(resource_attrs["service.name"], json({{"stringValue", "synthorg-test"}}));
  EXPECT_EQ(resource_attrs["empty"], json({{"stringValue", ""}})) << "a set oneof member is sent even when empty";
  EXPECT_EQ(resource_attrs["pid"], json({{"intValue", "4242"}}));
  EXPECT_EQ(resource_attrs["ratio"], json({{"doubleValue", 0.25}}));
  EXPECT_EQ(resource_attrs["container"], json({{"boolValue", false}}));
  ASSERT_EQ(resource_spans["scopeSpans"].size(), 1u);
  const auto& scope_spans = resource_spans["scopeSpans"][0];
  EXPECT_EQ(scope_spans["scope"]["name"], "synthorg");
  EXPECT_EQ(scope_spans["scope"]["version"], "9.8.7");
  ASSERT_EQ(scope_spans["spans"].size(), 2u);

  const auto& sent = scope_spans["spans"][0];
  EXPECT_EQ(sent["traceId"], "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff");
  EXPECT_EQ(sent["spanId"], "0111213141516171");
  EXPECT_EQ(sent["parentSpanId"], "8081828384858687");
  EXPECT_EQ(sent["traceState"], "vendor=abc,other=x");
  EXPECT_EQ(sent["name"], "GET /api/v1/items/{id}");
  EXPECT_EQ(sent["kind"], 3) << "SPAN_KIND_CLIENT";
  EXPECT_EQ(sent["startTimeUnixNano"], "1700000000123456789");
  EXPECT_EQ(sent["endTimeUnixNano"], "1700000250123456789");
  auto attrs = attributes_of(sent["attributes"]);
  EXPECT_EQ(attrs.size(), 11u);
  EXPECT_EQ(attrs["text"], json({{"stringValue", "caf\xC3\xA9 \"quoted\"\n"}}));
  EXPECT_EQ(attrs["empty"], json({{"stringValue", ""}}));
  EXPECT_EQ(attrs["count"], json({{"intValue", "300"}}));
  EXPECT_EQ(attrs["zero"], json({{"intValue", "0"}}));
  EXPECT_EQ(attrs["negative"], json({{"intValue", "-42"}})) << "two's complement, ten bytes";
  EXPECT_EQ(attrs["smallest"], json({{"intValue", "-9223372036854775808"}}));
  EXPECT_EQ(attrs["ratio"], json({{"doubleValue", 2.5}}));
  EXPECT_EQ(attrs["nan"], json({{"doubleValue", "NaN"}}));
  EXPECT_EQ(attrs["infinite"], json({{"doubleValue", "-Infinity"}}));
  EXPECT_EQ(attrs["yes"], json({{"boolValue", true}}));
  EXPECT_EQ(attrs["no"], json({{"boolValue", false}}));
  EXPECT_EQ(sent["droppedAttributesCount"], 3);
  EXPECT_EQ(sent["status"], json({{"code", 2}, {"message", "upstream refused"}}));

  const auto& minimal = scope_spans["spans"][1];
  EXPECT_EQ(minimal["name"], "bare");
  EXPECT_EQ(minimal["kind"], 1) << "SPAN_KIND_INTERNAL";
  for (const char* absent : {"parentSpanId", "traceState", "status", "droppedAttributesCount"})
    EXPECT_FALSE(minimal.contains(absent)) << absent << " is a default: left out";
  EXPECT_EQ(minimal["attributes"], json::array());

  // The two encoders agree: the same document once the receiver's empty repeated fields
  // (events, links, scope attributes), which the JSON encoder never writes, are set aside.
  std::function<json(const json&)> without_empty_lists = [&](const json& value) {
    if (value.is_array()) {
      json out = json::array();
      for (const auto& item : value) out.push_back(without_empty_lists(item));
      return out;
    }
    if (!value.is_object()) return value;
    json out = json::object();
    for (const auto& [key, item] : value.items())
      if (!(item.is_array() && item.empty() && key != "attributes")) out[key] = without_empty_lists(item);
    return out;
  };
  auto from_protobuf = without_empty_lists(body);
  from_protobuf["resourceSpans"][0]["scopeSpans"][0]["scope"].erase("attributes");
  EXPECT_EQ(from_protobuf, without_empty_lists(bodies["http/json"]));
}

TEST_F(OtlpTest, RetriesOn429And503HonouringRetryAfter) {
  for (int status : {429, 503}) {
    receiver_->fault({{"status", status}, {"retry_after", "1"}, {"times", 1}});
    OtlpSender sender(options(), log::Logger("test"));
    auto started = Clock::now();
    EXPECT_EQ(sender.send(traces({span("retried")}), Clock::now() + 20s), SendResult::sent) << status;
    EXPECT_GE(Clock::now() - started, 950ms) << "Retry-After: 1 was honoured";
  }
  auto records = receiver_->received();
  ASSERT_EQ(records.size(), 4u) << records.dump(2);
  EXPECT_EQ(records[0]["answered"], 429);
  EXPECT_EQ(records[1]["answered"], 200);
  EXPECT_EQ(records[2]["answered"], 503);
  EXPECT_EQ(records[3]["answered"], 200);
}

TEST_F(OtlpTest, A400IsNotRetriedAndTheSpansAreCountedDropped) {
  receiver_->fault({{"status", 400}, {"times", 1}});
  SpanExporter exporter(resource(), options(), {100, 10, 50ms}, log::Logger("test"));
  for (int i = 0; i < 3; ++i) exporter.enqueue(span("refused"));
  exporter.shutdown(5s);
  EXPECT_EQ(exporter.stats().dropped_rejected, 3u);
  EXPECT_EQ(exporter.stats().exported, 0u);
  EXPECT_EQ(receiver_->received().size(), 1u) << "no retry of a body the collector refused";
}

TEST_F(OtlpTest, ASlowCollectorTimesOutAndTheBatchIsRetried) {
  receiver_->fault({{"delay_ms", 3000}, {"times", 1}});
  OtlpSender sender(options(500ms), log::Logger("test"));
  auto started = Clock::now();
  EXPECT_EQ(sender.send(traces({span("slow")}), Clock::now() + 20s), SendResult::sent);
  EXPECT_LT(Clock::now() - started, 2500ms) << "the attempt gave up at its timeout rather than waiting";
  EXPECT_EQ(receiver_->received().size(), 2u);
}

TEST_F(OtlpTest, ACollectorClosingMidRequestIsRetried) {
  receiver_->fault({{"close", true}, {"times", 2}});
  OtlpSender sender(options(), log::Logger("test"));
  EXPECT_EQ(sender.send(traces({span("closed")}), Clock::now() + 20s), SendResult::sent);
  auto records = receiver_->received();
  ASSERT_EQ(records.size(), 3u) << records.dump(2);
  EXPECT_EQ(records[2]["answered"], 200);
}

TEST_F(OtlpTest, ACollectorThatIsDownCostsDropsNeverABlockedCaller) {
  ExportOptions down;
  down.endpoint = "http://127.0.0.1:" + std::to_string(synthorg::testing::free_port()) + "/v1/traces";
  down.timeout = 200ms;
  down.initial_backoff = 100ms;
  SpanExporter exporter(resource(), down, {1000, 100, 20ms}, log::Logger("test"));
  auto started = Clock::now();
  for (int i = 0; i < 50'000; ++i) exporter.enqueue(span("lost"));
  auto spent = Clock::now() - started;
  EXPECT_LT(spent, 2s) << "enqueueing never waits on the network";
  exporter.shutdown(300ms);
  const auto& stats = exporter.stats();
  EXPECT_GE(stats.dropped_queue_full.load(), 48'000u) << "a full queue drops and counts";
  EXPECT_EQ(stats.exported.load(), 0u);
  EXPECT_EQ(stats.dropped_queue_full + stats.dropped_failed, 50'000u) << "every span is accounted for";
}

TEST_F(OtlpTest, HugeAndNonUtf8AttributesArriveSanitised) {
  std::vector<SpanData> ended;
  TracerLimits limits;
  auto tracer = std::make_shared<TracerImpl>(1.0, limits, [&](SpanData&& span) { ended.push_back(std::move(span)); });
  auto traced = tracer->start_span("bad\xFFname", SpanKind::client);
  traced->set_attribute("huge", std::string(5 << 20, 'h'));
  traced->set_attribute("latin1", std::string("caf\xE9 \xC0\xAF"));
  traced->set_attribute("control", std::string("line\nbreak\x01", 11));
  traced->set_attribute("nan", std::nan(""));
  traced->end();
  OtlpSender sender(options(), log::Logger("test"));
  ASSERT_EQ(sender.send(traces(ended), Clock::now() + 10s), SendResult::sent);
  auto spans = receiver_->spans();
  ASSERT_EQ(spans.size(), 1u);
  auto attrs = attributes(spans[0].first["attributes"]);
  EXPECT_LE(attrs["huge"]["stringValue"].get<std::string>().size(), limits.max_attribute_bytes);
  EXPECT_EQ(attrs["latin1"]["stringValue"], "caf\xEF\xBF\xBD \xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(attrs["control"]["stringValue"], std::string("line\nbreak\x01", 11));
  EXPECT_EQ(attrs["nan"]["doubleValue"], "NaN");
  EXPECT_EQ(spans[0].first["name"], "bad\xEF\xBF\xBDname");
}

TEST_F(OtlpTest, ProductTelemetryNeverLetsADeniedKeyOrASecretOut) {
  TempDir dir;
  ProductOptions options;
  options.endpoint = receiver_->url() + "/v1/logs";
  options.environment = "ci";
  options.data_dir = dir / "data";
  options.export_options = this->options();
  ProductTelemetry product(options, log::Logger("test"));
  const std::vector<std::string> secrets{"sk-live-SECRET1", "hunter2-SECRET2", "Bearer SECRET3", "SECRET4-prompt",
                                         "SECRET5@db", "SECRET6"};
  json properties = {{"version", "0.1.0"},
                     {"plugins", {"http-api", "telemetry"}},
                     {"plugin_count", 2},
                     {"api_key", secrets[0]},
                     {"password", secrets[1]},
                     {"Authorization", secrets[2]},
                     {"prompt", secrets[3]},
                     {"database_url", secrets[4]},
                     {"store_backend", "sqlite"},
                     {"content", secrets[5]},
                     {"message", secrets[5]},
                     {"user_token", secrets[5]},
                     {"client_secret", secrets[5]},
                     {"credentials", secrets[5]}};
  for (const char* event : {"deployment.startup", "deployment.heartbeat", "deployment.shutdown"})
    product.send(event, properties, Clock::now() + 10s);
  auto records = receiver_->wait_for("/v1/logs", 3);
  std::size_t logs = 0;
  for (const auto& record : records) {
    if (record["path"] != "/v1/logs") continue;
    ++logs;
    EXPECT_EQ(record["errors"], json::array()) << record.dump(2);
    EXPECT_EQ(record["contentType"], "application/x-protobuf") << "the default protocol, for logs too";
    auto text = record["body"].dump();
    for (const auto& secret : secrets) EXPECT_EQ(text.find(secret), std::string::npos) << secret << " left in " << text;
    for (const auto& log_record : record["body"]["resourceLogs"][0]["scopeLogs"][0]["logRecords"]) {
      auto attrs = attributes(log_record["attributes"]);
      for (const auto& [key, value] : attrs.items()) {
        EXPECT_FALSE(denied_key(key)) << key << " left";
        EXPECT_LE(value.dump().size(), 64u + 20u) << key;
      }
      EXPECT_EQ(attrs["version"], json({{"stringValue", "0.1.0"}}));
      EXPECT_EQ(attrs["store_backend"], json({{"stringValue", "sqlite"}}));
      EXPECT_FALSE(attrs.contains("database_url")) << "not on the allowlist";
    }
    auto resource = attributes(record["body"]["resourceLogs"][0]["resource"]["attributes"]);
    EXPECT_EQ(resource["synthorg.install.id"], json({{"stringValue", product.id()}}));
    EXPECT_EQ(resource["deployment.environment"], json({{"stringValue", "ci"}}));
    EXPECT_FALSE(resource.contains("host.name")) << "product telemetry is anonymous";
  }
  EXPECT_EQ(logs, 3u);
}

TEST_F(OtlpTest, ThePluginSendsStartupHeartbeatAndShutdownOnlyWhenEnabled) {
  TempDir dir;
  auto config = company(dir, {"telemetry"},
                        "  telemetry:\n    config: {heartbeat_interval: 300ms, environment: configured, "
                        "product_endpoint: " + receiver_->url() + "/v1/logs, data_dir: " + (dir / "data").string() +
                            "}\n");
  auto run = [&](const char* enabled) {
    ScopedEnv flag("SYNTHORG_TELEMETRY_ENABLED", enabled);
    ScopedEnv tag("SYNTHORG_TELEMETRY_ENV", "staging");
    kernel::Kernel kernel(kernel::load_company_config(config, "/unused"));
    kernel.discover();
    kernel.prepare();
    kernel.start();
    std::this_thread::sleep_for(800ms);
  };
  run("no");
  EXPECT_TRUE(receiver_->received().empty()) << "off sends nothing";
  EXPECT_FALSE(fs::exists(dir / "data" / "telemetry-id")) << "off writes no id either";
  run("yes");
  std::vector<std::string> events;
  for (const auto& record : receiver_->received()) {
    ASSERT_EQ(record["path"], "/v1/logs");
    EXPECT_EQ(record["errors"], json::array()) << record.dump(2);
    const auto& logs = record["body"]["resourceLogs"][0];
    auto resource = attributes(logs["resource"]["attributes"]);
    EXPECT_EQ(resource["deployment.environment"], json({{"stringValue", "staging"}}));
    std::ifstream id_file(dir / "data" / "telemetry-id");
    std::string id;
    id_file >> id;
    EXPECT_EQ(resource["synthorg.install.id"], json({{"stringValue", id}}));
    for (const auto& log_record : logs["scopeLogs"][0]["logRecords"]) {
      events.push_back(log_record["body"]["stringValue"]);
      auto attrs = attributes(log_record["attributes"]);
      EXPECT_EQ(attrs["plugins"], json({{"stringValue", "telemetry"}}));
      EXPECT_EQ(attrs["plugin_count"], json({{"intValue", "1"}}));
    }
  }
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events.front(), "deployment.startup");
  EXPECT_EQ(events[1], "deployment.heartbeat");
  EXPECT_EQ(events.back(), "deployment.shutdown");
}

TEST(TelemetryStartTest, BadEnvironmentStopsStartUpWithTheReason) {
  TempDir dir;
  auto config = company(dir, {"telemetry"}, "  telemetry: {}\n");
  for (auto [name, value, expected] : std::vector<std::tuple<const char*, const char*, const char*>>{
           {"SYNTHORG_TRACE_OTLP_ENDPOINT", "ftp://collector/v1/traces", "the scheme 'ftp' is not http or https"},
           {"SYNTHORG_TRACE_OTLP_ENDPOINT", "collector:4318", "not http or https"},
           {"SYNTHORG_TRACE_SAMPLING_RATIO", "1.5", "not a ratio from 0.0 to 1.0"},
           {"SYNTHORG_TRACE_SAMPLING_RATIO", "-1", "not a ratio from 0.0 to 1.0"},
           {"SYNTHORG_TELEMETRY_ENABLED", "maybe", "neither on"},
           {"SYNTHORG_TRACE_OTLP_PROTOCOL", "grpc", "SYNTHORG_TRACE_OTLP_PROTOCOL=grpc is not an OTLP protocol"},
           {"SYNTHORG_TRACE_OTLP_PROTOCOL", "http/xml", "fix: http/protobuf, the default, or http/json"}}) {
    ScopedEnv bad(name, value);
    kernel::Kernel kernel(kernel::load_company_config(config, "/unused"));
    kernel.discover();
    kernel.prepare();
    try {
      kernel.start();
      ADD_FAILURE() << name << "=" << value << " was accepted";
    } catch (const std::exception& error) {
      EXPECT_NE(std::string(error.what()).find(expected), std::string::npos) << error.what();
    }
  }
}

// The setting is checked with the rest of company.yaml: a bad value never reaches start().
TEST(TelemetryStartTest, AnUnknownProtocolSettingIsRefusedNamingTheTwoValues) {
  TempDir dir;
  auto config = company(dir, {"telemetry"}, "  telemetry:\n    config: {protocol: grpc}\n");
  try {
    kernel::Kernel kernel(kernel::load_company_config(config, "/unused"));
    kernel.discover();
    kernel.prepare();
    kernel.start();
    ADD_FAILURE() << "protocol: grpc was accepted";
  } catch (const std::exception& error) {
    std::string what = error.what();
    EXPECT_NE(what.find("protocol"), std::string::npos) << what;
    EXPECT_NE(what.find("http/protobuf"), std::string::npos) << what;
    EXPECT_NE(what.find("http/json"), std::string::npos) << what;
  }
}

}  // namespace
}  // namespace synthorg::telemetry

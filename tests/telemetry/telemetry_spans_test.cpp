// The spans beyond the HTTP handler, checked end to end at the OTLP receiver: a real kernel with
// http-api, store-sqlite and telemetry, a route whose Store calls run on the blocking pool and
// which publishes an event, and requests that never reach a handler. What is proved is the
// parent/child links: request span -> store spans (made on another thread), request span ->
// bus delivery span, and a server span with the right status for 404, 405, 400 and 401.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <mutex>

#include "http_client.hpp"
#include "kernel.hpp"
#include "otlp_receiver.hpp"
#include "synthorg/blocking_routes.hpp"
#include "synthorg/bus.hpp"
#include "synthorg/services/executor.hpp"
#include "synthorg/services/http.hpp"
#include "synthorg/services/orchestrator.hpp"
#include "synthorg/services/store.hpp"

namespace synthorg::telemetry {
namespace {

using synthorg::testing::ScopedEnv;

class TraceSpansTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(example))
      GTEST_SKIP() << example << " is absent (../shared/contracts is not checked out here): these tests cannot run";
    if (!fs::exists(receiver_dir / "node_modules" / "@opentelemetry" / "otlp-transformer"))
      GTEST_SKIP() << "tests/telemetry/node_modules is missing: run scripts/deps (npm ci --prefix tests/telemetry)";
    receiver_ = std::make_unique<Receiver>();
    port_ = synthorg::testing::free_port();
    endpoint_.emplace("SYNTHORG_TRACE_OTLP_ENDPOINT", receiver_->url() + "/v1/traces");
    std::vector<std::string> names{"http-api", "telemetry", "store-sqlite"};
    std::string extra;
    if (with_docker_) {
      if (!fs::exists("/var/run/docker.sock")) GTEST_SKIP() << "no Docker engine here (scripts/services docker)";
      names.push_back("orchestrator-docker");
      extra = "  orchestrator-docker:\n    enabled: true\n";
    }
    auto config = company(dir_, names,
                          "  http-api:\n    config: {address: 127.0.0.1, port: " + std::to_string(port_) +
                              "}\n  store-sqlite:\n    config: {path: " + (dir_ / "s.db").string() +
                              "}\n  telemetry:\n    config: {batch_delay: 100ms, data_dir: " + (dir_ / "data").string() +
                              "}\n" + extra);
    kernel_ = std::make_unique<kernel::Kernel>(kernel::load_company_config(config, "/unused"));
    kernel_->discover();
    kernel_->prepare();
    kernel_->start();
  }
  void TearDown() override { kernel_.reset(); }

  int get(const std::string& request) {
    synthorg::testing::Client client(port_);
    client.send(request);
    return synthorg::testing::status_of(client.response());
  }
  // Stops the kernel (which flushes the exporter) and returns every span by name.
  std::multimap<std::string, json> collect() {
    routes_.clear();
    kernel_.reset();
    std::multimap<std::string, json> out;
    for (auto& [span, resource] : receiver_->spans()) out.emplace(span["name"].get<std::string>(), span);
    return out;
  }
  static const json& one(const std::multimap<std::string, json>& spans, const std::string& name) {
    static const json none;
    auto [first, last] = spans.equal_range(name);
    EXPECT_EQ(std::distance(first, last), 1) << name;
    return first == last ? none : first->second;
  }

  bool with_docker_ = false;
  TempDir dir_;
  std::unique_ptr<Receiver> receiver_;
  int port_ = 0;
  std::optional<ScopedEnv> endpoint_;
  ScopedEnv ratio_{"SYNTHORG_TRACE_SAMPLING_RATIO", "1.0"};
  ScopedEnv access_{"SYNTHORG_HTTP_ACCESS_LOG", "false"};
  std::unique_ptr<kernel::Kernel> kernel_;
  std::vector<Token> routes_;
};

TEST_F(TraceSpansTest, StoreCallsOnTheBlockingPoolAndBusDeliveriesAreChildrenOfTheRequestSpan) {
  auto& registry = kernel_->registry();
  auto store = registry.get<Store>();  // what any plugin gets: the tracing decorator
  store->ensure_collection({"test_docs", {}, {}});
  store->insert("test_docs", {{"secret", "do-not-trace"}}, "doc-1");
  auto executor = registry.get<Executor>();
  auto& bus = kernel_->bus();
  std::mutex mutex;
  std::vector<std::string> delivered;
  auto subscription = bus.subscribe("test.touched", [&](const Event& event) {
    std::lock_guard lock(mutex);
    delivered.push_back(event.id);
  });
  routes_.push_back(registry.get<HttpRouter>()->add(
      {"GET", "/api/v1/test/docs/{id}", Access::open, {}, {}, [executor, store, &bus](HttpRequest& request, Responder respond) {
         bus.publish("test.touched", {{"id", request.params.at("id")}});  // on the I/O thread
         auto id = request.params.at("id");
         routes::respond_blocking<HttpResponse>(
             *executor, std::move(respond),
             [store, id] {
               if (store->get("test_docs", id)) return HttpResponse::json(200, json::object());
               try {  // a failing call: its span says so
                 store->update("test_docs", id, json::object(), 1);
               } catch (const StoreError&) {
               }
               return HttpResponse::json(404, json::object());
             },
             [] { return HttpResponse::json(500, json::object()); });
       }}));

  EXPECT_EQ(get("GET /api/v1/test/docs/doc-1?token=abc HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), 200);
  EXPECT_EQ(get("GET /api/v1/test/docs/missing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), 404);
  for (auto deadline = Clock::now() + 5s; Clock::now() < deadline;) {
    {
      std::lock_guard lock(mutex);
      if (delivered.size() == 2) break;
    }
    std::this_thread::sleep_for(10ms);
  }
  subscription.reset();
  auto spans = collect();

  // Two request spans; one trace each, with its store and delivery spans under it.
  auto [first, last] = spans.equal_range("/api/v1/test/docs/{id}");
  ASSERT_EQ(std::distance(first, last), 2) << receiver_->received().dump(2);
  std::map<std::string, json> requests;  // by status
  for (auto it = first; it != last; ++it)
    requests[attributes_of(it->second["attributes"])["http.response.status_code"]["intValue"]] = it->second;
  const auto& found = requests["200"];
  const auto& missing = requests["404"];
  ASSERT_TRUE(found.is_object() && missing.is_object());

  std::vector<json> gets, updates, deliveries;
  for (auto& [name, span] : spans) {
    if (name == "store.get test_docs") gets.push_back(span);
    if (name == "store.update test_docs") updates.push_back(span);
    // The WebSocket hub subscribes to "*": only the deliveries to this test's subscription.
    if (name == "bus.deliver test.touched" &&
        attributes_of(span["attributes"])["synthorg.bus.pattern"] == json({{"stringValue", "test.touched"}}))
      deliveries.push_back(span);
  }
  ASSERT_EQ(gets.size(), 2u);
  ASSERT_EQ(updates.size(), 1u);
  ASSERT_EQ(deliveries.size(), 2u);
  auto child_of = [](const json& child, const json& parent) {
    return child["traceId"] == parent["traceId"] && child["parentSpanId"] == parent["spanId"];
  };
  for (const auto* request : {&found, &missing}) {
    EXPECT_EQ(std::count_if(gets.begin(), gets.end(), [&](const json& s) { return child_of(s, *request); }), 1)
        << "the store call made on the blocking pool is a child of its request's span";
    EXPECT_EQ(std::count_if(deliveries.begin(), deliveries.end(), [&](const json& s) { return child_of(s, *request); }), 1)
        << "the delivery of the event the request published is a child of its span";
  }
  EXPECT_TRUE(child_of(updates[0], missing));

  auto get_attrs = attributes_of(gets[0]["attributes"]);
  EXPECT_EQ(gets[0]["kind"], 3) << "CLIENT";
  EXPECT_EQ(get_attrs["db.system.name"], json({{"stringValue", "sqlite"}}));
  EXPECT_EQ(get_attrs["db.collection.name"], json({{"stringValue", "test_docs"}}));
  EXPECT_EQ(get_attrs["db.operation.name"], json({{"stringValue", "get"}}));
  EXPECT_FALSE(gets[0].contains("status"));
  EXPECT_EQ(updates[0]["status"]["code"], 2) << "a call that throws: ERROR";
  EXPECT_EQ(attributes_of(updates[0]["attributes"])["error.type"], json({{"stringValue", "not_found"}}));

  auto delivery_attrs = attributes_of(deliveries[0]["attributes"]);
  EXPECT_EQ(deliveries[0]["kind"], 5) << "CONSUMER";
  EXPECT_EQ(delivery_attrs["messaging.destination.name"], json({{"stringValue", "test.touched"}}));
  EXPECT_TRUE(delivery_attrs.contains("messaging.message.id"));

  // The setup's calls, outside any request, are traces of their own.
  EXPECT_FALSE(one(spans, "store.insert test_docs").contains("parentSpanId"));
  // No document, and no query string, in any span.
  auto everything = receiver_->received().dump();
  EXPECT_EQ(everything.find("do-not-trace"), std::string::npos);
  EXPECT_EQ(everything.find("token=abc"), std::string::npos);
}

TEST_F(TraceSpansTest, RequestsThatReachNoHandlerStillYieldAServerSpanWithTheirStatus) {
  auto& registry = kernel_->registry();
  auto respond_ok = [](HttpRequest&, Responder respond) { respond(HttpResponse::json(200, json::object())); };
  routes_.push_back(registry.get<HttpRouter>()->add({"GET", "/api/v1/test/open", Access::open, {}, {}, respond_ok}));
  // No Authenticator runs: the gate refuses this one with 401.
  routes_.push_back(registry.get<HttpRouter>()->add({"GET", "/api/v1/test/private", Access::signed_in, {}, {}, respond_ok}));

  const std::string parent_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
  EXPECT_EQ(get("GET /api/v1/nothing-here HTTP/1.1\r\nHost: x\r\ntraceparent: 00-" + parent_trace +
                "-00f067aa0ba902b7-01\r\nConnection: close\r\n\r\n"),
            404);
  EXPECT_EQ(get("POST /api/v1/test/open HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"), 405);
  EXPECT_EQ(get("GET /api/v1/test/private HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), 401);
  EXPECT_EQ(get("BREW /pot HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n"), 400);
  auto spans = collect();

  auto status_of = [](const json& span) { return attributes_of(span["attributes"])["http.response.status_code"]; };
  const auto& not_found = one(spans, "GET unmatched");
  EXPECT_EQ(status_of(not_found), json({{"intValue", "404"}}));
  EXPECT_EQ(not_found["kind"], 2);
  EXPECT_EQ(not_found["traceId"], parent_trace) << "an incoming traceparent is honoured here too";
  EXPECT_FALSE(attributes_of(not_found["attributes"]).contains("http.route"));
  EXPECT_FALSE(not_found.contains("status")) << "4xx leaves the status unset";
  EXPECT_EQ(status_of(one(spans, "POST unmatched")), json({{"intValue", "405"}}));
  const auto& refused = one(spans, "/api/v1/test/private");
  EXPECT_EQ(status_of(refused), json({{"intValue", "401"}}));
  EXPECT_EQ(attributes_of(refused["attributes"])["http.route"], json({{"stringValue", "/api/v1/test/private"}}));
  const auto& malformed = one(spans, "_OTHER unmatched");
  EXPECT_EQ(status_of(malformed), json({{"intValue", "400"}}));
  EXPECT_EQ(spans.count("/api/v1/test/open"), 0u) << "the 405 is not the open route's";
}

TEST_F(TraceSpansTest, AProxiedRequestIsASpanWhoseContextTheWorkloadReceives) {
  auto url = receiver_->url();  // http://127.0.0.1:<port>
  auto port = static_cast<std::uint16_t>(std::stoi(url.substr(url.rfind(':') + 1)));
  routes_.push_back(kernel_->registry().get<HttpRouter>()->add(
      {"GET", "/api/v1/test/proxy/{*rest}", Access::open, {}, {}, {}, [port](HttpRequest&, ProxyDecide decide) {
         decide(ProxyTarget{"127.0.0.1", port, "/echo", {}, {}});
       }}));
  const std::string client_trace = "0af7651916cd43dd8448eb211c80319c";
  EXPECT_EQ(get("GET /api/v1/test/proxy/x HTTP/1.1\r\nHost: x\r\ntraceparent: 00-" + client_trace +
                "-b7ad6b7169203331-01\r\nConnection: close\r\n\r\n"),
            200);
  auto spans = collect();
  const auto& proxied = one(spans, "/api/v1/test/proxy/{*rest}");
  EXPECT_EQ(proxied["traceId"], client_trace);
  EXPECT_EQ(attributes_of(proxied["attributes"])["http.response.status_code"], json({{"intValue", "200"}}));
  bool seen = false;
  for (const auto& record : receiver_->received())
    if (record["path"] == "/echo") {
      seen = true;
      EXPECT_EQ(record["headers"]["traceparent"], "00-" + client_trace + "-" + proxied["spanId"].get<std::string>() + "-01")
          << "the workload's parent is our span, not the client's";
    }
  EXPECT_TRUE(seen);
}

class TraceOrchestratorTest : public TraceSpansTest {
 protected:
  void SetUp() override {
    with_docker_ = true;
    TraceSpansTest::SetUp();
  }
};

TEST_F(TraceOrchestratorTest, OrchestratorCallsOnTheBlockingPoolAreChildrenOfTheRequestSpan) {
  auto& registry = kernel_->registry();
  auto orchestrator = registry.get<Orchestrator>();  // the tracing decorator of orchestrator-docker
  ASSERT_TRUE(orchestrator);
  auto executor = registry.get<Executor>();
  routes_.push_back(registry.get<HttpRouter>()->add(
      {"GET", "/api/v1/test/workloads", Access::open, {}, {}, [executor, orchestrator](HttpRequest&, Responder respond) {
         routes::respond_blocking<HttpResponse>(
             *executor, std::move(respond),
             [orchestrator] {
               orchestrator->list({{"synthorg.test", "trace-spans"}});
               try {  // an id Docker does not know: not_found, and the span says so
                 orchestrator->inspect("synthorg-no-such-workload");
               } catch (const OrchestratorError&) {
               }
               return HttpResponse::json(200, json::object());
             },
             [] { return HttpResponse::json(500, json::object()); });
       }}));
  EXPECT_EQ(get("GET /api/v1/test/workloads HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"), 200);
  auto spans = collect();
  const auto& request = one(spans, "/api/v1/test/workloads");
  const auto& list = one(spans, "orchestrator.list");
  const auto& inspect = one(spans, "orchestrator.inspect");
  for (const auto* call : {&list, &inspect}) {
    EXPECT_EQ((*call)["traceId"], request["traceId"]);
    EXPECT_EQ((*call)["parentSpanId"], request["spanId"]);
    EXPECT_EQ((*call)["kind"], 3);
    EXPECT_EQ(attributes_of((*call)["attributes"])["synthorg.orchestrator.backend"], json({{"stringValue", "docker"}}));
  }
  EXPECT_EQ(inspect["status"]["code"], 2);
  EXPECT_EQ(attributes_of(inspect["attributes"])["error.type"], json({{"stringValue", "not_found"}}));
  EXPECT_EQ(attributes_of(inspect["attributes"])["synthorg.workload.id"], json({{"stringValue", "synthorg-no-such-workload"}}));
}

}  // namespace
}  // namespace synthorg::telemetry

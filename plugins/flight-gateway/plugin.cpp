// flight-gateway: PondPilot's gRPC port. Arrow Flight SQL clients (ADBC, JDBC, the PondPilot app)
// connect once; each call is checked (the HTTP API's tokens, or Flight's Handshake with Basic
// credentials) and relayed to the caller's own workload, started on first use. The gRPC relay is
// gateway.cpp; this file wires it to the kernel's services.
#include <chrono>
#include <map>
#include <mutex>

#include <fmt/format.h>

#include "gateway.hpp"
#include "synthorg/plugin.hpp"
#include "synthorg/services/http.hpp"
#include "synthorg/services/listener.hpp"
#include "synthorg/services/metrics.hpp"
#include "synthorg/services/tracer.hpp"
#include "synthorg/services/workloads.hpp"
#include "synthorg/trace_context.hpp"

namespace synthorg::flight_gateway {
namespace {

using nlohmann::json;

// gRPC status codes (grpc::StatusCode), without gRPC's headers.
enum Code : int {
  kCancelled = 1,
  kInvalidArgument = 3,
  kResourceExhausted = 8,
  kFailedPrecondition = 9,
  kUnavailable = 14,
  kUnauthenticated = 16,
};

const char* code_name(int code) {
  static constexpr const char* names[] = {"OK",
                                          "CANCELLED",
                                          "UNKNOWN",
                                          "INVALID_ARGUMENT",
                                          "DEADLINE_EXCEEDED",
                                          "NOT_FOUND",
                                          "ALREADY_EXISTS",
                                          "PERMISSION_DENIED",
                                          "RESOURCE_EXHAUSTED",
                                          "FAILED_PRECONDITION",
                                          "ABORTED",
                                          "OUT_OF_RANGE",
                                          "UNIMPLEMENTED",
                                          "INTERNAL",
                                          "UNAVAILABLE",
                                          "DATA_LOSS",
                                          "UNAUTHENTICATED"};
  return code >= 0 && code <= 16 ? names[code] : "UNKNOWN";
}

// A workload that cannot be had, in gRPC's terms: a start that failed or a full host is
// UNAVAILABLE (retry later), a configuration without a grpc port a FAILED_PRECONDITION.
Refusal refusal_of(const WorkloadUnavailable& error) {
  auto code = error.code() == "no_port" ? kFailedPrecondition : kUnavailable;
  return {code, fmt::format("your workload is not available ({}): {}", error.code(), error.what()),
          error.retry_after_seconds()};
}

// The sign-in route's answer, in gRPC's terms. Its problem+json detail is shown as it is: it
// never holds a secret.
std::variant<std::string, Refusal> login_result(const HttpResponse& response) {
  json body = json::parse(response.body, nullptr, false);
  if (response.status == 200 && body.is_object() && body.contains("token") && body["token"].is_string())
    return body["token"].get<std::string>();
  std::string detail = body.is_object() ? body.value("detail", "") : "";
  if (response.status == 401) return Refusal{kUnauthenticated, "invalid username or password"};
  if (response.status == 429) {
    std::int64_t wait = 0;
    for (const auto& [name, value] : response.headers)
      if (name == "retry-after") wait = std::atoll(value.c_str());
    return Refusal{kResourceExhausted, detail.empty() ? "too many failed sign-ins; wait before trying again" : detail,
                   std::max<std::int64_t>(wait, 1)};
  }
  if (response.status >= 400 && response.status < 500)
    return Refusal{kUnauthenticated, fmt::format("sign-in refused: {}", detail.empty() ? "bad credentials" : detail)};
  return Refusal{kUnavailable, fmt::format("sign-in failed ({}): {}; retry shortly", response.status, detail)};
}

// Prometheus series per method and status, created on first use.
class CallMetrics {
 public:
  explicit CallMetrics(std::shared_ptr<Metrics> metrics) : metrics_(std::move(metrics)) {}
  void observe(const CallRecord& record) {
    if (!metrics_) return;
    std::shared_ptr<Counter> counter;
    std::shared_ptr<Histogram> histogram;
    {
      std::lock_guard lock(mutex_);
      auto& series = series_[{record.method, record.code}];
      if (!series.first) {
        MetricLabels labels{{"method", record.method.empty() ? "unknown" : record.method},
                            {"code", code_name(record.code)}};
        series.first = metrics_->counter("synthorg_grpc_calls_total", "Flight gRPC calls, by method and status.", labels);
        series.second = metrics_->histogram("synthorg_grpc_call_duration_seconds",
                                            "Flight gRPC calls' duration, by method and status.", labels);
      }
      counter = series.first;
      histogram = series.second;
    }
    counter->add();
    histogram->observe(record.seconds);
  }

 private:
  std::shared_ptr<Metrics> metrics_;
  std::mutex mutex_;
  std::map<std::pair<std::string, int>, std::pair<std::shared_ptr<Counter>, std::shared_ptr<Histogram>>> series_;
};

class FlightGatewayPlugin final : public Plugin {
 public:
  static PluginManifest manifest() {
    return {.name = "flight-gateway",
            .version = "0.1.0",
            .description = "The Arrow Flight SQL port (gRPC): each caller's calls relayed to their own workload",
            .provides = {std::string(Listener::service_id)},
            // Workloads start first and stop last: calls in flight end before their workloads do.
            .needs = {{std::string(Workloads::service_id), true},
                      {"synthorg.Executor/1", true},
                      {std::string(Authenticator::service_id), false},
                      {std::string(HttpDispatcher::service_id), false},
                      {std::string(Metrics::service_id), false},
                      {std::string(Tracer::service_id), false}},
            .config =
                ConfigMap{}
                    .string("address", "0.0.0.0", "IP address to listen on")
                    .integer("port", 8081,
                             "TCP port of the gRPC server (0: any free port); the default configuration takes "
                             "SYNTHORG_GRPC_PORT, else GRPC_PORT")
                    .range(0, 65535)
                    .string("tls_cert_file", "", "PEM certificate chain: with tls_key_file, TLS instead of h2c")
                    .string("tls_key_file", "", "PEM private key of tls_cert_file")
                    .integer("max_message_bytes", 64LL * 1024 * 1024,
                             "Largest message a client may send (RESOURCE_EXHAUSTED beyond)")
                    .range(1024, 2LL * 1024 * 1024 * 1024 - 1)
                    .integer("max_streams_per_user", 200, "Calls one user may have open at once (RESOURCE_EXHAUSTED beyond)")
                    .range(1, 1'000'000)
                    .integer("max_streams_per_connection", 1000,
                             "Calls open at once on one client connection (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS)")
                    .range(1, 1'000'000)
                    .integer("threads", 1,
                             "gRPC completion queues, a thread each. 1 handles every call's I/O and completions "
                             "on one thread, with no hand-off: the lowest latency (bench/flight.sh: +372 µs a "
                             "relayed call on 1, +983 on 2, on two cores). Raise it for many concurrent streams "
                             "on many cores")
                    .range(1, 64)
                    .duration("drain_timeout", "5s", "On stop, how long calls in flight may take to finish")
                    .boolean("access_log", true, "Log one line per call (method, status, ms, user)")};
  }
  explicit FlightGatewayPlugin(PluginContext& context) : context_(context) {}

  void configure(const json& config) override {
    options_.address = config.at("address").get<std::string>();
    options_.port = static_cast<unsigned short>(config.at("port").get<std::int64_t>());
    options_.tls_cert_file = config.at("tls_cert_file").get<std::string>();
    options_.tls_key_file = config.at("tls_key_file").get<std::string>();
    if (options_.tls_cert_file.empty() != options_.tls_key_file.empty())
      throw std::invalid_argument("tls_cert_file and tls_key_file go together: set both for TLS, or neither for h2c");
    options_.max_message_bytes = config.at("max_message_bytes").get<std::size_t>();
    options_.max_streams_per_user = config.at("max_streams_per_user").get<std::size_t>();
    options_.max_streams_per_connection = config.at("max_streams_per_connection").get<std::size_t>();
    options_.threads = config.at("threads").get<std::size_t>();
    drain_ = std::chrono::milliseconds(config.at("drain_timeout").get<std::int64_t>());
    access_log_ = config.at("access_log").get<bool>();
  }

  void start() override {
    auto& registry = context_.registry().shared();
    auto& executor = context_.executor();
    auto metrics = std::make_shared<CallMetrics>(registry.get<Metrics>());
    auto tracer = registry.get<Tracer>();
    log::Logger log("flight-gateway");
    GatewayHooks hooks;
    hooks.authenticate = [&registry](const std::string& authorization) -> std::optional<Principal> {
      auto authenticator = registry.get<Authenticator>();
      if (!authenticator) return std::nullopt;
      HttpRequest request;
      request.method = "POST";
      request.path = "/grpc";
      request.headers.emplace_back("authorization", authorization);
      return authenticator->authenticate(request);
    };
    hooks.login = [&registry](const std::string& username, const std::string& password, const std::string& remote,
                              std::function<void(std::variant<std::string, Refusal>)> done) {
      auto dispatcher = registry.get<HttpDispatcher>();
      if (!dispatcher)
        return done(Refusal{kUnavailable, "signing in with Basic credentials needs the http-api and auth plugins"});
      HttpRequest request;
      request.method = "POST";
      request.path = "/api/v1/auth/login";
      request.headers.emplace_back("content-type", "application/json");
      request.body = json{{"username", username}, {"password", password}}.dump();
      request.remote_address = remote;
      dispatcher->dispatch(std::move(request), [done](HttpResponse response) { done(login_result(response)); });
    };
    hooks.acquire = [&registry, &executor](const std::string& subject,
                                           std::function<void(std::variant<Endpoint, Refusal>)> done) {
      auto workloads = registry.get<Workloads>();
      if (!workloads) return done(Refusal{kUnavailable, "no workloads plugin is running; enable plugins.workloads"});
      bool queued = executor.try_post_blocking([workloads, subject, done] {
        try {
          auto endpoint = workloads->acquire(subject, "grpc");
          done(Endpoint{endpoint.workload_id, endpoint.host, endpoint.port});
        } catch (const WorkloadUnavailable& error) {
          done(refusal_of(error));
        } catch (const std::exception& error) {
          done(Refusal{kUnavailable, fmt::format("your workload could not be started: {}", error.what()), 1});
        }
      });
      if (!queued) done(Refusal{kUnavailable, "the server is busy starting workloads; retry shortly", 1});
    };
    hooks.touch = [&registry](const Endpoint& endpoint, const std::string& subject) {
      auto workloads = registry.get<Workloads>();
      return workloads && workloads->touch(endpoint.workload_id, subject);
    };
    hooks.unreachable = [&registry, &executor](const Endpoint& endpoint) {
      auto workloads = registry.get<Workloads>();
      if (!workloads) return;
      // Dropped when the pool is full: the reaper's rounds find a dead workload as well.
      executor.try_post_blocking([workloads, id = endpoint.workload_id] {
        try {
          workloads->check_alive(id);
        } catch (const std::exception&) {
          // Nothing to add: the next acquire() or the reaper tries again.
        }
      });
    };
    hooks.take_call = [&registry](const std::string& subject) -> std::int64_t {
      auto workloads = registry.get<Workloads>();
      return workloads ? workloads->take_call(subject) : 0;
    };
    hooks.observe = [metrics, tracer, log, access_log = access_log_](const std::string& method,
                                                                    std::string_view traceparent) {
      std::shared_ptr<Span> span;
      if (tracer) {
        TraceContext parent;
        if (auto parsed = trace::parse_traceparent(traceparent)) parent = *parsed;
        span = tracer->start_span(fmt::format("arrow.flight.protocol.FlightService/{}", method.empty() ? "unknown" : method),
                                  SpanKind::server, parent);
        if (span->recording()) {
          span->set_attribute("rpc.system", std::string("grpc"));
          span->set_attribute("rpc.service", std::string("arrow.flight.protocol.FlightService"));
          span->set_attribute("rpc.method", method);
        }
      }
      return [metrics, span, log, access_log](const CallRecord& record) {
        metrics->observe(record);
        if (span) {
          span->set_attribute("rpc.grpc.status_code", static_cast<std::int64_t>(record.code));
          if (!record.subject.empty()) span->set_attribute("enduser.id", record.subject);
          if (record.code != 0) span->set_error(code_name(record.code));
          span->end();
        }
        if (access_log)
          log.info("grpc call", {{"method", record.method},
                                 {"status", std::string(code_name(record.code))},
                                 {"ms", record.seconds * 1000},
                                 {"user_id", record.subject}});
      };
    };
    auto gateway = std::make_unique<Gateway>(options_, std::move(hooks), log);
    gateway->start();
    // The kernel's first phase of a stop: no new calls, those in flight get the drain timeout.
    listener_registration_ = context_.registry().provide<Listener>(std::make_shared<FunctionListener>(
        "flight-gateway", [gateway = gateway.get(), drain = drain_](std::chrono::milliseconds grace) {
          gateway->stop(std::min(grace, drain));
        }));
    gateway_ = std::move(gateway);
    if (auto service = registry.get<Metrics>()) {
      auto open = service->gauge("synthorg_grpc_calls_open", "Flight gRPC calls open now.");
      collector_ = service->add_collector([open, gateway = gateway_.get()] {
        open->set(static_cast<double>(gateway->stats().calls_open.load()));
      });
    }
    // PondPilot's operators look for this line: `docker compose logs proxy | grep -i grpc`.
    context_.log().info("gRPC server started", {{"address", options_.address},
                                                {"port", static_cast<std::int64_t>(gateway_->port())},
                                                {"tls", !options_.tls_cert_file.empty()}});
  }

  void stop() override {
    listener_registration_.reset();
    collector_.reset();
    if (gateway_) gateway_->stop(drain_);
    gateway_.reset();
  }

 private:
  PluginContext& context_;
  GatewayOptions options_;
  std::chrono::milliseconds drain_{5000};
  bool access_log_ = true;
  std::unique_ptr<Gateway> gateway_;
  Registration listener_registration_;
  Token collector_;
};

}  // namespace
}  // namespace synthorg::flight_gateway

SYNTHORG_PLUGIN(synthorg::flight_gateway::FlightGatewayPlugin)

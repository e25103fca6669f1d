#include "probes.hpp"

#include <charconv>

#include <chrono>

#include <fmt/format.h>

#include "synthorg/services/health.hpp"
#include "synthorg/services/kernel_info.hpp"
#include "synthorg/services/workloads.hpp"
#include "synthorg/version.hpp"

namespace synthorg::http_api {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

struct Readiness {
  bool ready = true;
  json checks = json::array();
  json failing = json::array();
};

// Runs every HealthCheck; called on the blocking pool since checks may touch a database.
Readiness run_checks(ServiceRegistry& registry) {
  Readiness result;
  // Not ready while the kernel is still starting plugins (or already stopping them).
  auto kernel = registry.get<KernelInfo>();
  bool serving = !kernel || kernel->serving();
  result.checks.push_back({{"name", "kernel"}, {"status", serving ? "up" : "down"}, {"critical", true}});
  if (!serving) {
    result.ready = false;
    result.failing.push_back("kernel");
    result.checks.back()["detail"] = "plugins are starting or stopping";
  }
  for (const auto& check : registry.all<HealthCheck>()) {
    HealthReport report;
    try {
      report = check->check();
    } catch (const std::exception& error) {
      report = {false, std::string("the check threw: ") + error.what(), json::object()};
    }
    json entry = {{"name", check->name()}, {"status", report.up ? "up" : "down"}, {"critical", check->critical()}};
    if (!report.detail.empty()) entry["detail"] = report.detail;
    if (!report.data.empty()) entry["data"] = report.data;
    if (!report.up && check->critical()) {
      result.ready = false;
      result.failing.push_back(check->name());
    }
    result.checks.push_back(std::move(entry));
  }
  return result;
}

// Answers from the blocking pool, or 503 at once when the pool is full.
void with_checks(PluginContext& context, Responder respond, std::function<HttpResponse(const Readiness&)> answer) {
  auto& registry = context.registry().shared();
  bool queued = context.executor().try_post_blocking([&registry, respond, answer = std::move(answer)] {
    respond(answer(run_checks(registry)));
  });
  if (!queued)
    respond(HttpResponse::problem(503, "busy", "the server is too busy to run its health checks; retry shortly")
                .header("retry-after", "1"));
}

json operation(std::string summary, std::string tag, json responses) {
  return {{"summary", std::move(summary)}, {"tags", {std::move(tag)}}, {"responses", std::move(responses)}};
}

json json_response(std::string description, json schema) {
  return {{"description", std::move(description)}, {"content", {{"application/json", {{"schema", std::move(schema)}}}}}};
}

}  // namespace

std::vector<Token> mount_probes(Router& router, PluginContext& context, std::shared_ptr<RequestMetrics> metrics) {
  const auto started = Clock::now();
  auto uptime = [started] { return std::chrono::duration<double>(Clock::now() - started).count(); };
  std::vector<Token> tokens;
  auto add = [&](std::string method, std::string pattern, json openapi, HttpHandler handler) {
    tokens.push_back(router.add({std::move(method), std::move(pattern), Access::open, {}, std::move(openapi), std::move(handler)}));
  };
  json checks_schema = {{"type", "array"}, {"items", {{"type", "object"}}}};

  add("GET", "/api/v1/healthz",
      operation("Liveness: 200 while the process serves", "health",
                {{"200", json_response("Alive", {{"type", "object"},
                                                 {"required", {"status", "version", "uptime_seconds"}},
                                                 {"properties", {{"status", {{"const", "ok"}}},
                                                                 {"version", {{"type", "string"}}},
                                                                 {"uptime_seconds", {{"type", "number"}}}}}})}}),
      [uptime](HttpRequest&, Responder respond) {
        // Formatted directly: load balancers poll this, and building a JSON tree for three
        // fixed fields was most of its cost.
        HttpResponse response;
        response.headers.emplace_back("content-type", "application/json");
        // Milliseconds are all a poller needs, and fixed-point digits are cheaper than the
        // shortest round-trip form of a double.
        auto millis = static_cast<std::uint64_t>(uptime() * 1000);
        char digits[24];
        auto* end = std::to_chars(digits, digits + sizeof digits, millis / 1000).ptr;
        *end++ = '.';
        for (auto divisor : {100u, 10u, 1u}) *end++ = static_cast<char>('0' + millis % 1000 / divisor % 10);
        auto& body = response.body;
        body.reserve(96);
        body = R"({"status":"ok","uptime_seconds":)";
        body.append(digits, end);
        body += R"(,"version":")" SYNTHORG_SDK_VERSION R"("})";
        respond(std::move(response));
      });
  add("GET", "/api/v1/readyz",
      operation("Readiness: 200 when every critical health check passes, else 503 naming them", "health",
                {{"200", json_response("Ready", {{"type", "object"}})},
                 {"503", json_response("Not ready", {{"type", "object"}})}}),
      [&context](HttpRequest&, Responder respond) {
        with_checks(context, respond, [](const Readiness& r) {
          if (r.ready) return HttpResponse::json(200, {{"status", "ready"}, {"checks", r.checks}});
          return HttpResponse::problem(503, "not_ready",
                                       fmt::format("failing health checks: {}", r.failing.dump()),
                                       {{"checks", r.checks}, {"failing", r.failing}});
        });
      });
  add("GET", "/health", operation("Liveness (alias)", "health", {{"200", json_response("Alive", {{"type", "object"}})}}),
      [](HttpRequest&, Responder respond) { respond(HttpResponse::json(200, {{"status", "healthy"}})); });
  add("GET", "/ready",
      operation("Readiness (alias)", "health",
                {{"200", json_response("Ready", {{"type", "object"}})},
                 {"503", json_response("Not ready", {{"type", "object"}})}}),
      [&context](HttpRequest&, Responder respond) {
        with_checks(context, respond, [](const Readiness& r) {
          if (r.ready) return HttpResponse::json(200, {{"ready", true}});
          return HttpResponse::json(503, {{"ready", false}, {"failing", r.failing}, {"checks", r.checks}});
        });
      });
  add("GET", "/health/detailed",
      operation("Every health check with its detail", "health",
                {{"200", json_response("Healthy", {{"type", "object"}})},
                 {"503", json_response("Unhealthy", {{"type", "object"}})}}),
      [&context, uptime](HttpRequest&, Responder respond) {
        with_checks(context, respond, [&context, uptime](const Readiness& r) {
          json body = {{"status", r.ready ? "healthy" : "unhealthy"},
                       {"uptime_seconds", uptime()},
                       {"version", SYNTHORG_SDK_VERSION},
                       {"checks", r.checks}};
          // Per-user containers, when the workloads plugin runs.
          if (auto workloads = context.registry().get<Workloads>()) {
            auto counters = workloads->counters();
            body["containers"] = {{"active", counters.active},
                                  {"total_spawned", counters.total_spawned},
                                  {"total_stopped", counters.total_stopped}};
          }
          return HttpResponse::json(r.ready ? 200 : 503, body);
        });
      });
  add("GET", "/api/v1/openapi.json",
      operation("This API's OpenAPI 3.1 document, assembled from every mounted route", "meta",
                {{"200", json_response("The document", {{"type", "object"}})}}),
      [&router](HttpRequest&, Responder respond) { respond(HttpResponse::json(200, router.openapi(SYNTHORG_SDK_VERSION))); });
  add("GET", "/metrics",
      {{"summary", "Prometheus metrics (text exposition format 0.0.4)"},
       {"tags", {"meta"}},
       {"responses", {{"200", {{"description", "Metrics"}, {"content", {{"text/plain", {{"schema", {{"type", "string"}}}}}}}}}}}},
      [metrics](HttpRequest&, Responder respond) {
        auto text = metrics->metrics().render();
        HttpResponse response;
        response.body = std::move(text);
        response.header("content-type", "text/plain; version=0.0.4; charset=utf-8");
        respond(std::move(response));
      });
  add("GET", "/api/v1/capabilities",
      operation("Which optional features are wired, so a client can adapt", "meta",
                {{"200", json_response("Capabilities", {{"type", "object"}})}}),
      [&context](HttpRequest&, Responder respond) {
        auto& registry = context.registry().shared();
        respond(HttpResponse::json(200, {{"version", SYNTHORG_SDK_VERSION},
                                         {"auth", registry.has("synthorg.Authenticator/1")},
                                         {"store", registry.has("synthorg.Store/1")},
                                         {"orchestrator", registry.has("synthorg.Orchestrator/1")},
                                         {"workloads", registry.has(Workloads::service_id)},
                                         // What runs, named for what it does: the telemetry plugin
                                         // always serves metrics, and traces only with an OTLP endpoint.
                                         {"metrics", registry.has("synthorg.Metrics/1")},
                                         {"tracing", registry.has("synthorg.Tracer/1")},
                                         {"fine_tune", registry.has("synthorg.FineTune/1")}}));
      });
  return tokens;
}

}  // namespace synthorg::http_api

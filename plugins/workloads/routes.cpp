#include "routes.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "synthorg/blocking_routes.hpp"
#include "synthorg/openapi.hpp"

namespace synthorg::workloads {
namespace {

using nlohmann::json;
using Work = std::function<HttpResponse()>;

HttpResponse problem(const WorkloadProblem& error) {
  auto response = HttpResponse::problem(error.status, error.code, error.what(), error.extra);
  if (error.retry_after > 0) response.header("retry-after", std::to_string(error.retry_after));
  return response;
}

HttpResponse failure(const RouteContext& context, std::string_view route) {
  try {
    throw;
  } catch (const WorkloadProblem& error) {
    return problem(error);
  } catch (const StoreError& error) {
    if (error.code() == StoreErrc::conflict)
      return HttpResponse::problem(409, "conflict", "the workload changed meanwhile; retry");
    return routes::current_problem(context.log, route);
  } catch (...) {
    return routes::current_problem(context.log, route);
  }
}

// The per-user token bucket, on the I/O thread: a 429 to send, or nothing.
std::optional<HttpResponse> rate_limited(RouteContext& context, std::string_view route, const HttpRequest& request) {
  const auto& user = request.principal->subject;
  auto per_minute = context.settings->get("workloads", "requests_per_minute").value.get<double>();
  auto burst = context.settings->get("workloads", "burst_size").value.get<double>();
  auto wait = context.limiter->take(user, per_minute, burst, RateLimiter::Clock::now());
  if (!wait) return std::nullopt;
  context.log.warn("Rate limit exceeded", {{"user_id", user}, {"route", route}, {"retry_after", wait}});
  return HttpResponse::problem(429, "rate_limited", fmt::format("too many workload requests; try again in {} s", wait),
                               {{"retry_after", wait}})
      .header("retry-after", std::to_string(wait));
}

// Rate limit on the I/O thread, then the work on the blocking pool.
void guarded(const std::shared_ptr<RouteContext>& context, std::string route, HttpRequest& request,
             Responder respond, Work work) {
  if (auto refused = rate_limited(*context, route, request)) return respond(std::move(*refused));
  routes::respond_blocking<HttpResponse>(context->executor, std::move(respond), std::move(work),
                                         [context, route] { return failure(*context, route); });
}

bool is_admin(const HttpRequest& request) { return role_at_least(request.principal->role, "admin"); }

// The record when the caller may see it; another user's is "not found", never "forbidden".
std::optional<Document> visible(RouteContext& context, const HttpRequest& request, const std::string& id) {
  auto record = context.manager->find(id);
  if (!record) return std::nullopt;
  if (!is_admin(request) && record->data.value("owner", "") != request.principal->subject) return std::nullopt;
  return record;
}

HttpResponse not_found() { return HttpResponse::problem(404, "not_found", "no such workload"); }

// ---- OpenAPI ----

using openapi::json_response;
using openapi::problem_response;
using openapi::ref;

json operation(std::string summary, json responses, bool with_id) {
  json out = {{"summary", std::move(summary)}, {"tags", {"workloads"}}, {"responses", std::move(responses)}};
  out["responses"]["429"] = problem_response("Rate limited (rate_limited); see Retry-After");
  out["responses"]["503"] = problem_response(
      "Busy, max_per_host reached, capacity, orchestrator_unavailable or store_unavailable; see Retry-After");
  // http-api adds the {id} path parameter itself.
  if (with_id) out["responses"]["404"] = problem_response("No such workload, or another user's (not_found)");
  return out;
}

json workload_schema() {
  json text = {{"type", "string"}};
  return {{"type", "object"},
          {"required", {"id", "owner", "state", "reason", "container_id", "created_at", "last_used_at", "urls"}},
          {"properties",
           {{"id", text},
            {"owner", text},
            {"state", {{"type", "string"}, {"enum", {"starting", "running", "stopped", "failed"}}}},
            {"reason", text},
            {"message", text},
            {"container_id", text},
            {"endpoint", {{"type", {"object", "null"}}, {"description", "Where its http port is reached"}}},
            {"endpoints",
             {{"type", "object"},
              {"description", "Where each named port is reached: {http: {host, port}, grpc: {host, port}}"}}},
            {"created_at", text},
            {"updated_at", text},
            {"last_used_at", text},
            {"urls", {{"type", "object"}}}}}};
}

// ---- handlers ----

void create(const std::shared_ptr<RouteContext>& context, HttpRequest& request, Responder respond) {
  guarded(context, "create", request, respond, [context, user = request.principal->subject] {
    auto outcome = context->manager->get_or_create(user);
    return HttpResponse::json(outcome.created ? 201 : 200, Manager::to_json(outcome.record));
  });
}

void list(const std::shared_ptr<RouteContext>& context, HttpRequest& request, Responder respond) {
  auto limit = request.page_limit();
  // Admins see everybody's, or one user's with ?user=; others only ever their own.
  std::string owner = request.principal->subject;
  if (is_admin(request)) owner = request.query_param("user").value_or("");
  auto cursor = request.query_param("cursor").value_or("");
  guarded(context, "list", request, respond, [context, owner, limit, cursor] {
    try {
      auto page = context->manager->list(owner, limit, cursor);
      json items = json::array();
      for (const auto& record : page.documents) items.push_back(Manager::to_json(record));
      return HttpResponse::json(200, {{"workloads", items}, {"next_cursor", page.next_cursor}});
    } catch (const StoreError& error) {
      if (error.code() != StoreErrc::invalid) throw;
      return HttpResponse::problem(400, "invalid_cursor", "the cursor is not one this list gave out");
    }
  });
}

void get_one(const std::shared_ptr<RouteContext>& context, HttpRequest& request, Responder respond) {
  guarded(context, "get", request, respond, [context, request] {
    auto record = visible(*context, request, request.params.at("id"));
    if (!record) return not_found();
    return HttpResponse::json(200, Manager::to_json(*record));
  });
}

void remove(const std::shared_ptr<RouteContext>& context, HttpRequest& request, Responder respond) {
  guarded(context, "delete", request, respond, [context, request] {
    auto record = visible(*context, request, request.params.at("id"));
    if (!record) return not_found();
    return HttpResponse::json(200, Manager::to_json(context->manager->stop(*record, "user")));
  });
}

void touch(const std::shared_ptr<RouteContext>& context, HttpRequest& request, Responder respond) {
  guarded(context, "touch", request, respond, [context, request] {
    auto record = visible(*context, request, request.params.at("id"));
    if (!record) return not_found();
    return HttpResponse::json(200, Manager::to_json(context->manager->touch(*record)));
  });
}

// ---- the proxy ----

ProxyTarget target_of(const std::shared_ptr<RouteContext>& context, const std::string& id, const Route& route,
                      const HttpRequest& request) {
  ProxyTarget target;
  target.host = route.host;
  target.port = route.port;
  target.target = "/" + request.params.at("path") + (request.query.empty() ? "" : "?" + request.query);
  // Where the workload is mounted, for services that build absolute links.
  target.headers = {{"x-forwarded-prefix", "/api/v1/workloads/" + id + "/proxy"}, {"x-workload-id", id}};
  std::weak_ptr<Manager> manager = context->manager;
  auto& executor = context->executor;
  target.done = [manager, id, &executor](int status) {
    if (status != 0) return;
    // Unreachable: find out (off the I/O thread) whether its container died.
    executor.try_post_blocking([manager, id] {
      if (auto alive = manager.lock()) {
        try {
          alive->check_alive(id);
        } catch (const std::exception&) {  // the reaper's next round looks again
        }
      }
    });
  };
  return target;
}

// /api/v1/workloads/{id}/proxy/{*path}: to the caller's own workload only (an admin's too: a
// sandbox is its user's). "me" is the caller's workload, whichever it is now. A warm request is
// answered from memory on the I/O thread; otherwise the blocking pool finds or starts it (the
// first request waits for the spawn, bounded by ready_timeout) and then forwards.
void proxy(const std::shared_ptr<RouteContext>& context, HttpRequest& request, ProxyDecide decide) {
  if (auto refused = rate_limited(*context, "proxy", request)) return decide(std::move(*refused));
  const auto& user = request.principal->subject;
  const auto& id = request.params.at("id");
  if (id != "me")
    if (auto route = context->manager->route(id, user)) return decide(target_of(context, id, *route, request));
  auto work = [context, request, user, id]() -> ProxyDecision {
    if (id != "me") {
      auto record = context->manager->find(id);
      if (!record || record->data.value("owner", "") != user) return not_found();
    }
    auto outcome = context->manager->get_or_create(user);
    if (outcome.record.data.value("state", "") != "running")
      return HttpResponse::problem(503, "workload_starting", "your workload is still starting; retry shortly")
          .header("retry-after", "1");
    auto route = context->manager->route(outcome.record.id, user);
    if (!route)
      return HttpResponse::problem(409, "no_port", "this workload serves nothing to proxy to (workloads.port is 0)");
    return target_of(context, outcome.record.id, *route, request);
  };
  routes::respond_blocking<ProxyDecision>(context->executor, std::move(decide), std::move(work),
                                          [context] { return failure(*context, "proxy"); });
}

}  // namespace

std::vector<Token> mount_routes(HttpRouter& router, std::shared_ptr<RouteContext> context) {
  std::vector<Token> tokens;
  tokens.push_back(router.add_schema("Workload", workload_schema()));
  auto add = [&](std::string method, std::string pattern, json openapi,
                 void (*handler)(const std::shared_ptr<RouteContext>&, HttpRequest&, Responder)) {
    tokens.push_back(router.add({std::move(method), std::move(pattern), Access::signed_in, {}, std::move(openapi),
                                 [context, handler](HttpRequest& request, Responder respond) {
                                   handler(context, request, std::move(respond));
                                 }}));
  };
  json failed = problem_response("The spawn failed (image_missing, invalid_spec, spawn_failed); the reason is in "
                                 "detail and the failed record in `workload`, kept for a cool-down");
  add("POST", "/api/v1/workloads",
      operation("Get or create the caller's workload (one per user)",
                {{"200", json_response("The caller's workload, already there", ref("Workload"))},
                 {"201", json_response("Started now", ref("Workload"))},
                 {"502", failed}},
                false),
      create);
  json listing = operation("Workloads: your own; admins everybody's, or one user's with ?user=",
                           {{"200", json_response("A page, newest first",
                                             {{"type", "object"},
                                              {"properties", {{"workloads", {{"type", "array"}, {"items", ref("Workload")}}},
                                                              {"next_cursor", {{"type", "string"}}}}}})},
                            {"400", problem_response("A bad limit or cursor")}},
                           false);
  listing["parameters"] = {
      {{"name", "user"}, {"in", "query"}, {"required", false}, {"schema", {{"type", "string"}}}},
      {{"name", "limit"}, {"in", "query"}, {"required", false},
       {"schema", {{"type", "integer"}, {"minimum", 1}, {"maximum", 1000}, {"default", 100}}}},
      {{"name", "cursor"}, {"in", "query"}, {"required", false}, {"schema", {{"type", "string"}}}}};
  add("GET", "/api/v1/workloads", listing, list);
  json missing = problem_response("No such workload, or another user's (not_found)");
  add("GET", "/api/v1/workloads/{id}",
      operation("One workload", {{"200", json_response("The workload", ref("Workload"))}, {"404", missing}}, true), get_one);
  add("DELETE", "/api/v1/workloads/{id}",
      operation("Stop and remove it (reason user); idempotent",
                {{"200", json_response("The stopped record", ref("Workload"))}, {"404", missing},
                 {"502", problem_response("The container could not be stopped (stop_failed)")}},
                true),
      remove);
  add("POST", "/api/v1/workloads/{id}/touch",
      operation("Mark it used now, postponing the idle reaper",
                {{"200", json_response("The workload", ref("Workload"))}, {"404", missing},
                 {"409", problem_response("It is not running (not_running)")}},
                true),
      touch);
  for (std::string method : {"GET", "POST", "PUT", "DELETE", "PATCH"}) {
    json forwarded = operation(
        "To your workload's service: HTTP with streamed bodies, and WebSocket upgrades; {id} may be `me`. "
        "Credentials are stripped; a stopped workload is started first",
        {{"200", {{"description", "Whatever the workload answers"}}},
         {"502", problem_response("The workload cannot be reached (upstream_unreachable), exited "
                                  "(workload_exited) or failed to start")},
         {"504", problem_response("The workload did not answer in time (upstream_timeout)")}},
        true);
    std::string lower = method;
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
    forwarded["operationId"] = "workloadProxy_" + lower;
    RouteSpec route{method, "/api/v1/workloads/{id}/proxy/{*path}", Access::signed_in, {}, std::move(forwarded), {}};
    route.proxy = [context](HttpRequest& request, ProxyDecide decide) { proxy(context, request, std::move(decide)); };
    tokens.push_back(router.add(std::move(route)));
  }
  return tokens;
}

}  // namespace synthorg::workloads

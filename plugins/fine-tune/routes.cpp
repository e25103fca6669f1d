#include "routes.hpp"

#include <fmt/format.h>

#include "synthorg/blocking_routes.hpp"
#include "synthorg/openapi.hpp"

namespace synthorg::fine_tune {
namespace {

using nlohmann::json;
using Work = std::function<HttpResponse()>;

HttpResponse failure(const RouteContext& context, std::string_view route) {
  try {
    throw;
  } catch (const Problem& error) {
    auto response = HttpResponse::problem(error.status, error.code, error.what(), error.extra);
    if (error.status == 503) response.header("retry-after", "5");
    return response;
  } catch (const StoreError& error) {
    if (error.code() == StoreErrc::invalid)
      return HttpResponse::problem(400, "invalid_cursor", "the cursor is not one this list gave out");
    return routes::current_problem(context.log, route);
  } catch (...) {
    return routes::current_problem(context.log, route);
  }
}

// The work on the blocking pool; 503 busy when its queue is full.
void blocking(const std::shared_ptr<RouteContext>& context, std::string route, Responder respond, Work work) {
  routes::respond_blocking<HttpResponse>(context->executor, std::move(respond), std::move(work),
                                         [context, route] { return failure(*context, route); });
}

// ---- OpenAPI ----

using openapi::json_response;
using openapi::problem_response;
using openapi::ref;

json operation(std::string summary, json responses) {
  json out = {{"summary", std::move(summary)}, {"tags", {"fine-tune"}}, {"responses", std::move(responses)}};
  out["responses"]["503"] =
      problem_response("Busy, orchestrator_unavailable or store_unavailable; see Retry-After");
  return out;
}

json run_schema() {
  json text = {{"type", "string"}};
  json when = {{"type", {"string", "null"}}};
  json stage = {{"type", "object"},
                {"properties",
                 {{"name", text},
                  {"state", {{"type", "string"},
                             {"enum", {"pending", "running", "complete", "failed", "cancelled", "interrupted"}}}},
                  {"attempts", {{"type", "integer"}}},
                  {"progress", {{"type", "number"}}},
                  {"container_id", text},
                  {"started_at", when},
                  {"finished_at", when},
                  {"duration_ms", {{"type", {"integer", "null"}}}},
                  {"exit_code", {{"type", {"integer", "null"}}}},
                  {"error", text},
                  {"malformed_lines", {{"type", "integer"}}},
                  {"health", {{"type", "string"}, {"enum", {"unknown", "healthy", "unresponsive"}}}}}}};
  return {{"type", "object"},
          {"required", {"id", "state", "stage", "stages", "progress", "config", "reason", "last_error"}},
          {"properties",
           {{"id", text},
            {"state", {{"type", "string"}, {"enum", {"running", "interrupted", "complete", "failed", "cancelled"}}}},
            {"stage", text},
            {"stages", {{"type", "array"}, {"items", stage}}},
            {"progress", {{"type", "number"}}},
            {"config", run_config_schema()},
            {"image", text},
            {"variant", text},
            {"reason", text},
            {"last_error", text},
            {"checkpoint", text},
            {"resumes", {{"type", "integer"}}},
            {"created_by", text},
            {"started_at", when},
            {"finished_at", when},
            {"created_at", text},
            {"updated_at", text},
            {"urls", {{"type", "object"}}}}}};
}

// ---- handlers ----

void create(const std::shared_ptr<RouteContext>& context, HttpRequest& request, Responder respond) {
  auto config = parse_run_config(request.body);  // a Problem here is answered by the catch in mount_routes
  blocking(context, "create", respond, [context, config, user = request.principal->subject] {
    return HttpResponse::json(201, Manager::to_json(context->manager->start_run(config, user)));
  });
}

void list(const std::shared_ptr<RouteContext>& context, HttpRequest& request, Responder respond) {
  auto limit = request.page_limit();
  auto cursor = request.query_param("cursor").value_or("");
  blocking(context, "list", respond, [context, limit, cursor] {
    auto page = context->manager->list(limit, cursor);
    json runs = json::array();
    for (const auto& record : page.documents) runs.push_back(Manager::to_json(record));
    return HttpResponse::json(200, {{"runs", runs}, {"next_cursor", page.next_cursor}});
  });
}

void get_one(const std::shared_ptr<RouteContext>& context, HttpRequest& request, Responder respond) {
  blocking(context, "get", respond, [context, id = request.params.at("id")] {
    auto record = context->manager->find(id);
    if (!record) return HttpResponse::problem(404, "not_found", "no such fine-tune run");
    return HttpResponse::json(200, Manager::to_json(*record));
  });
}

void cancel(const std::shared_ptr<RouteContext>& context, HttpRequest& request, Responder respond) {
  blocking(context, "cancel", respond, [context, id = request.params.at("id")] {
    return HttpResponse::json(200, Manager::to_json(context->manager->cancel(id)));
  });
}

void resume(const std::shared_ptr<RouteContext>& context, HttpRequest& request, Responder respond) {
  blocking(context, "resume", respond, [context, id = request.params.at("id"), user = request.principal->subject] {
    return HttpResponse::json(200, Manager::to_json(context->manager->resume(id, user)));
  });
}

void preflight(const std::shared_ptr<RouteContext>& context, HttpRequest&, Responder respond) {
  blocking(context, "preflight", respond, [context] { return HttpResponse::json(200, context->manager->preflight()); });
}

}  // namespace

std::vector<Token> mount_routes(HttpRouter& router, std::shared_ptr<RouteContext> context) {
  std::vector<Token> tokens;
  tokens.push_back(router.add_schema("FineTuneRun", run_schema()));
  auto add = [&](std::string method, std::string pattern, json openapi,
                 void (*handler)(const std::shared_ptr<RouteContext>&, HttpRequest&, Responder)) {
    tokens.push_back(router.add({std::move(method), std::move(pattern), Access::role, "admin", std::move(openapi),
                                 [context, handler](HttpRequest& request, Responder respond) {
                                   try {
                                     handler(context, request, respond);
                                   } catch (const Problem& error) {
                                     respond(HttpResponse::problem(error.status, error.code, error.what(), error.extra));
                                   }
                                 }}));
  };
  json missing = problem_response("No such run (not_found)");
  json created = operation("Start a run: its stages run one after another, each in a one-shot container",
                           {{"201", json_response("The run, started", ref("FineTuneRun"))},
                            {"400", problem_response("A bad body (invalid_body) or run setting (invalid_run_config, "
                                                     "`field` names it)")},
                            {"409", problem_response("As many runs are active as allowed (too_many_active_runs)")}});
  created["requestBody"] = {{"required", false},
                            {"content", {{"application/json", {{"schema", run_config_schema()}}}}}};
  add("POST", "/api/v1/fine-tune/runs", created, create);
  json listing = operation("Runs, newest first",
                           {{"200", json_response("A page of runs",
                                             {{"type", "object"},
                                              {"properties", {{"runs", {{"type", "array"}, {"items", ref("FineTuneRun")}}},
                                                              {"next_cursor", {{"type", "string"}}}}}})},
                            {"400", problem_response("A bad limit or cursor")}});
  listing["parameters"] = {
      {{"name", "limit"}, {"in", "query"}, {"required", false},
       {"schema", {{"type", "integer"}, {"minimum", 1}, {"maximum", 1000}, {"default", 100}}}},
      {{"name", "cursor"}, {"in", "query"}, {"required", false}, {"schema", {{"type", "string"}}}}};
  add("GET", "/api/v1/fine-tune/runs", listing, list);
  add("GET", "/api/v1/fine-tune/runs/{id}",
      operation("One run, with its stages", {{"200", json_response("The run", ref("FineTuneRun"))}, {"404", missing}}),
      get_one);
  add("POST", "/api/v1/fine-tune/runs/{id}/cancel",
      operation("Cancel a running or interrupted run: its stage container is stopped and removed",
                {{"200", json_response("The cancelled run", ref("FineTuneRun"))},
                 {"404", missing},
                 {"409", problem_response("The run has finished already (run_finished)")}}),
      cancel);
  add("POST", "/api/v1/fine-tune/runs/{id}/resume",
      operation("Resume a failed, cancelled or interrupted run from its first stage not complete",
                {{"200", json_response("The run, running again", ref("FineTuneRun"))},
                 {"404", missing},
                 {"409", problem_response("The run is complete (run_complete) or running (run_active), or as "
                                          "many runs are active as allowed (too_many_active_runs)")}}),
      resume);
  add("POST", "/api/v1/fine-tune/preflight",
      operation("Check that a run could start: orchestrator reachable, image runs, GPUs for the gpu variant",
                {{"200", json_response("Each check with ok and detail; ok is true when all pass", {{"type", "object"}})}}),
      preflight);
  return tokens;
}

}  // namespace synthorg::fine_tune

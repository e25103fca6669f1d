#include "settings_routes.hpp"

#include <fmt/format.h>

#include "synthorg/blocking_routes.hpp"
#include "synthorg/crypto.hpp"
#include "synthorg/services/kernel_info.hpp"
#include "synthorg/services/settings.hpp"

namespace synthorg::http_api {
namespace {

using nlohmann::json;

json view_json(const SettingView& view) {
  const auto& d = view.definition;
  json out = {{"namespace", d.space},          {"key", d.key},
              {"type", to_string(d.type)},     {"value", view.shown_value},
              {"source", to_string(view.source)}, {"default", d.default_value},
              {"description", d.description},  {"sensitive", d.sensitive},
              {"restart_required", d.restart_required}, {"env", d.env_name()}};
  if (d.minimum) out["minimum"] = *d.minimum;
  if (d.maximum) out["maximum"] = *d.maximum;
  if (!d.pattern.empty()) out["pattern"] = d.pattern;
  if (!d.choices.empty()) out["choices"] = d.choices;
  if (!view.problem.empty()) out["problem"] = view.problem;
  return out;
}

// A strong ETag of the effective value and its source. Keyed with a per-process secret, so the
// ETag of a sensitive value cannot be used to guess it offline.
std::string etag_of(const SettingValue& value) {
  static const std::string key = crypto::random_bytes(32);
  auto digest = crypto::hmac_sha256(key, value.value.dump() + "|" + std::string(to_string(value.source)));
  return "\"" + crypto::to_hex(digest.substr(0, 12)) + "\"";
}

HttpResponse settings_problem(const SettingsError& error) {
  switch (error.code()) {
    case SettingsErrc::unknown: return HttpResponse::problem(404, "setting_not_found", error.what());
    case SettingsErrc::invalid: return HttpResponse::problem(422, "setting_invalid", error.what());
    case SettingsErrc::pinned: return HttpResponse::problem(409, "setting_pinned", error.what());
    case SettingsErrc::unavailable: return HttpResponse::problem(503, "settings_unavailable", error.what());
  }
  return HttpResponse::problem(500, "internal_error", "unexpected settings error");
}

std::optional<SettingView> find_view(Settings& settings, std::string_view space, std::string_view key) {
  for (auto& view : settings.list())
    if (view.definition.space == space && view.definition.key == key) return view;
  return std::nullopt;
}

json op(std::string summary, json responses, json extra = json::object()) {
  json out = {{"summary", std::move(summary)}, {"tags", {"settings"}}, {"responses", std::move(responses)}};
  out.update(extra);
  return out;
}

}  // namespace

std::vector<Token> mount_settings_routes(Router& router, PluginContext& context) {
  std::vector<Token> tokens;
  auto& registry = context.registry().shared();
  auto settings_of = [&registry]() { return registry.get<Settings>(); };
  auto add = [&](std::string method, std::string pattern, Access access, std::string role, json openapi,
                 HttpHandler handler) {
    tokens.push_back(router.add({std::move(method), std::move(pattern), access, std::move(role), std::move(openapi),
                                 std::move(handler)}));
  };
  json ok = {{"200", {{"description", "OK"}, {"content", {{"application/json", {{"schema", {{"type", "object"}}}}}}}}}};

  add("GET", "/api/v1/settings", Access::signed_in, {}, op("Every setting, its value (masked when sensitive) and source", ok),
      [settings_of](HttpRequest&, Responder respond) {
        json all = json::array();
        for (const auto& view : settings_of()->list()) all.push_back(view_json(view));
        respond(HttpResponse::json(200, {{"settings", all}}));
      });
  add("GET", "/api/v1/settings/{ns}", Access::signed_in, {}, op("The settings of one namespace", ok),
      [settings_of](HttpRequest& request, Responder respond) {
        json all = json::array();
        for (const auto& view : settings_of()->list())
          if (view.definition.space == request.params.at("ns")) all.push_back(view_json(view));
        if (all.empty())
          return respond(HttpResponse::problem(404, "setting_not_found",
                                               fmt::format("there is no settings namespace '{}'", request.params.at("ns"))));
        respond(HttpResponse::json(200, {{"settings", all}}));
      });
  add("GET", "/api/v1/settings/{ns}/{key}", Access::signed_in, {}, op("One setting, with an ETag for If-Match", ok),
      [settings_of](HttpRequest& request, Responder respond) {
        auto settings = settings_of();
        auto view = find_view(*settings, request.params.at("ns"), request.params.at("key"));
        if (!view)
          return respond(HttpResponse::problem(404, "setting_not_found",
                                               fmt::format("there is no setting {}.{}", request.params.at("ns"),
                                                           request.params.at("key"))));
        auto value = settings->get(request.params.at("ns"), request.params.at("key"));
        respond(HttpResponse::json(200, view_json(*view)).header("etag", etag_of(value)));
      });

  json write_body = {{"required", true},
                     {"content", {{"application/json", {{"schema", {{"type", "object"}, {"required", {"value"}},
                                                                     {"properties", {{"value", json::object()}}}}}}}}}};
  auto write = [settings_of, &context](bool reset) {
    return [settings_of, &context, reset](HttpRequest& request, Responder respond) {
      const std::string space = request.params.at("ns"), key = request.params.at("key");
      json value;
      if (!reset) {
        if (request.header("content-type").substr(0, 16) != "application/json")
          return respond(HttpResponse::problem(415, "unsupported_media_type", "send the body as application/json"));
        auto body = parse_client_json(request.body);
        if (body.is_discarded() || !body.is_object() || !body.contains("value"))
          return respond(HttpResponse::problem(400, "invalid_body",
                                               "the body must be a JSON object with the new value: {\"value\": ...}"));
        value = body["value"];
      }
      std::string if_match(request.header("if-match"));
      std::string actor = request.principal ? request.principal->subject : "unknown";
      bool queued = context.executor().try_post_blocking([=, log = context.log()] {
        auto settings = settings_of();
        try {
          if (!if_match.empty() && if_match != "*" && if_match != etag_of(settings->get(space, key)))
            return respond(HttpResponse::problem(409, "etag_mismatch",
                                                 "the setting changed since you read it; read it again (its ETag) "
                                                 "and retry"));
          if (reset) settings->reset(space, key, actor);
          else settings->set(space, key, value, actor);
          auto view = find_view(*settings, space, key);
          respond(HttpResponse::json(200, view_json(*view)).header("etag", etag_of(settings->get(space, key))));
        } catch (const SettingsError& error) {
          respond(settings_problem(error));
        } catch (...) {
          respond(routes::current_problem(log, "settings"));
        }
      });
      if (!queued) respond(HttpResponse::problem(503, "busy", "the server is too busy; retry shortly").header("retry-after", "1"));
    };
  };
  add("PUT", "/api/v1/settings/{ns}/{key}", Access::role, "admin",
      op("Change a setting (admin); If-Match with the ETag guards against lost updates", ok,
         {{"requestBody", write_body}}),
      write(false));
  add("DELETE", "/api/v1/settings/{ns}/{key}", Access::role, "admin",
      op("Remove the stored value, so the next source applies (admin)", ok), write(true));

  add("GET", "/api/v1/plugins", Access::signed_in, {},
      {{"summary", "The plugins the kernel loaded, in start order"}, {"tags", {"introspection"}}, {"responses", ok}},
      [&registry](HttpRequest&, Responder respond) {
        auto info = registry.get<KernelInfo>();
        respond(HttpResponse::json(200, {{"plugins", info ? info->plugins() : json::array()}}));
      });
  add("GET", "/api/v1/services", Access::role, "admin",
      {{"summary", "Every registered service and its provider (admin)"}, {"tags", {"introspection"}}, {"responses", ok}},
      [&registry](HttpRequest&, Responder respond) {
        json all = json::array();
        for (const auto& service : registry.list())
          all.push_back({{"service", service.service_id}, {"provider", service.owner}, {"ranking", service.ranking},
                         {"registration", service.registration_id}});
        respond(HttpResponse::json(200, {{"services", all}}));
      });
  return tokens;
}

}  // namespace synthorg::http_api

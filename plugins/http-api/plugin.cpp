// http-api: the shared HTTP port. Provides HttpRouter; serves health probes, the OpenAPI
// document and Prometheus metrics itself; every other route comes from other plugins.
#include <chrono>

#include <fmt/format.h>

#include "dispatcher.hpp"
#include "listener.hpp"
#include "metrics.hpp"
#include "probes.hpp"
#include "router.hpp"
#include "server.hpp"
#include "settings_routes.hpp"
#include "tracing.hpp"
#include "websocket.hpp"
#include "synthorg/plugin.hpp"
#include "synthorg/services/listener.hpp"
#include "synthorg/services/metrics.hpp"
#include "synthorg/services/settings.hpp"
#include "synthorg/services/tracer.hpp"
#include "synthorg/version.hpp"

namespace synthorg::http_api {
namespace {

using nlohmann::json;

SettingDefinition limit(std::string key, std::int64_t value, double minimum, double maximum, std::string description) {
  SettingDefinition definition;
  definition.space = "http";
  definition.key = std::move(key);
  definition.type = SettingType::integer;
  definition.default_value = value;
  definition.minimum = minimum;
  definition.maximum = maximum;
  definition.description = std::move(description);
  definition.restart_required = true;
  return definition;
}

class HttpApiPlugin final : public Plugin {
 public:
  static PluginManifest manifest() {
    return {.name = "http-api",
            .version = "0.1.0",
            .description = "The HTTP API port (Boost.Beast): routes from every plugin, health probes, OpenAPI, metrics",
            .provides = {std::string(HttpRouter::service_id), std::string(HttpDispatcher::service_id),
                         std::string(Listener::service_id)},
            // The Store, when there is one, starts first and stops last: readiness reports it.
            // Metrics and Tracer (the telemetry plugin) are looked up once, at start.
            .needs = {{"synthorg.Executor/1", true}, {"synthorg.Settings/1", true}, {"synthorg.Store/1", false},
                      {"synthorg.Metrics/1", false}, {"synthorg.Tracer/1", false}},
            .config = ConfigMap{}
                          .string("address", "0.0.0.0", "IP address to listen on")
                          .integer("port", 3001, "TCP port to listen on (0: any free port)")
                          .range(0, 65535)
                          .duration("drain_timeout", "5s", "On stop, how long in-flight requests may take to finish")};
  }
  explicit HttpApiPlugin(PluginContext& context) : context_(context) {}

  void configure(const json& config) override {
    options_.address = config.at("address").get<std::string>();
    options_.port = static_cast<unsigned short>(config.at("port").get<std::int64_t>());
    drain_ = std::chrono::milliseconds(config.at("drain_timeout").get<std::int64_t>());
  }

  void start() override {
    auto settings = context_.registry().get<Settings>();
    std::vector<Token> definitions;
    for (auto& definition : {
             limit("max_header_bytes", 16 * 1024, 1024, 1 << 20, "Largest request line and headers, in bytes (431 beyond)"),
             limit("max_body_bytes", 1 << 20, 0, 1 << 30, "Largest request body, in bytes (413 beyond)"),
             limit("request_timeout_ms", 10'000, 100, 600'000, "A request must arrive whole within this, from its first byte (408)"),
             limit("idle_timeout_ms", 60'000, 100, 3'600'000, "A kept-alive connection with no request is closed after this"),
             limit("upstream_timeout_ms", 60'000, 100, 3'600'000,
                   "Proxy routes: to connect to the upstream, and for each wait on it (504 before it answers)"),
             limit("max_connections", 0, 0, 1'000'000,
                   "Open connections, WebSockets included; more get 503 and are closed. 0: derived from the "
                   "open-file limit, (RLIMIT_NOFILE - 256) / 2, so the limit answers before descriptors run out"),
             limit("ws_max_per_user", 16, 1, 100'000, "Live event (WebSocket) connections one user may hold open (429 beyond)"),
             limit("ws_idle_timeout_ms", 60'000, 1'000, 3'600'000,
                   "A WebSocket client is pinged after half of this with nothing received, and dropped after all of it"),
         })
      definitions.push_back(settings->define(definition));
    SettingDefinition access_log;
    access_log.space = "http";
    access_log.key = "access_log";
    access_log.type = SettingType::boolean;
    access_log.default_value = true;
    access_log.description = "Log one line per request (method, path, status, bytes, ms, request id)";
    access_log.restart_required = true;
    definitions.push_back(settings->define(access_log));
    SettingDefinition cors;
    cors.space = "api";
    cors.key = "cors_allowed_origins";
    cors.type = SettingType::list;
    cors.default_value = json::array();
    cors.pattern = std::string(kOriginPattern);
    cors.description =
        "Origins whose pages may call the API from a browser, each scheme://host[:port] exactly as the browser "
        "sends it (no path, no trailing slash), or * for any origin (then without credentials). Empty: none";
    definitions.push_back(settings->define(cors));

    auto options = options_;
    auto integer = [&](const char* key) { return settings->get("http", key).value.get<std::int64_t>(); };
    options.limits.max_header_bytes = static_cast<std::size_t>(integer("max_header_bytes"));
    options.limits.max_body_bytes = static_cast<std::size_t>(integer("max_body_bytes"));
    options.limits.request_timeout = std::chrono::milliseconds(integer("request_timeout_ms"));
    options.limits.idle_timeout = std::chrono::milliseconds(integer("idle_timeout_ms"));
    options.limits.upstream_timeout = std::chrono::milliseconds(integer("upstream_timeout_ms"));
    auto max_connections = static_cast<std::size_t>(integer("max_connections"));
    options.limits.max_connections = max_connections > 0 ? max_connections : http_relay::default_max_connections();
    WebSocketLimits ws_limits;
    ws_limits.max_per_user = static_cast<std::size_t>(integer("ws_max_per_user"));
    ws_limits.idle_timeout = std::chrono::milliseconds(integer("ws_idle_timeout_ms"));
    options.single_io_thread = context_.executor().stats().io_threads == 1;
    options.access_log = settings->get("http", "access_log").value.get<bool>();

    auto router = std::make_shared<Router>();
    auto& registry = context_.registry().shared();
    auto service = registry.get<Metrics>();
    auto metrics = std::make_shared<RequestMetrics>(service ? service : make_metrics_registry());
    // No Tracer (tracing off): handlers are not wrapped and the gate records nothing, so the
    // request path is exactly what it is without the telemetry plugin.
    auto tracer = registry.get<Tracer>();
    if (tracer)
      router->wrap_routes([tracer](RouteSpec& route) { trace_route(tracer, route); });
    Gate check = [&registry](const RouteSpec& route, HttpRequest& request) -> std::optional<HttpResponse> {
      if (route.access == Access::open) return std::nullopt;
      auto authenticator = registry.get<Authenticator>();
      if (!authenticator)
        return HttpResponse::problem(401, "authentication_required",
                                     "this route needs a signed-in user, and no Authenticator is running "
                                     "(enable the auth plugin)");
      request.principal = authenticator->authenticate(request);
      if (!request.principal)
        return HttpResponse::problem(401, "authentication_required",
                                     "sign in first: send a bearer token or the session cookie")
            .header("www-authenticate", "Bearer");
      if (route.access == Access::role && !role_at_least(request.principal->role, route.role))
        return HttpResponse::problem(403, "forbidden",
                                     fmt::format("this needs the role {} or above; you are {}", route.role,
                                                 request.principal->role));
      return std::nullopt;
    };
    Gate gate = check;
    if (tracer)
      gate = [check, tracer](const RouteSpec& route, HttpRequest& request) {
        auto refused = check(route, request);
        if (refused) trace_refusal(*tracer, route, request, refused->status);
        return refused;
      };
    Observer observer = [metrics](std::string_view method, std::string_view pattern, int status, double seconds) {
      metrics->observe(method, pattern, status, seconds);
    };
    auto server = std::make_unique<Server>(context_.executor().io_context(), router, gate, observer, options,
                                           log::Logger("http-api"));
    auto hub = std::make_shared<WebSocketHub>(context_.bus().shared(), ws_limits, log::Logger("http-api.ws"));
    server->set_websocket(hub);
    if (tracer)
      server->set_unrouted([tracer](const HttpRequest& request, int status) { trace_unrouted(*tracer, request, status); });
    auto collector = metrics->watch(server->stats(), hub->stats(), context_.bus().shared());
    auto routes = mount_probes(*router, context_, metrics);
    routes.push_back(router->add(
        {"GET", "/api/v1/ws", Access::signed_in, {},
         {{"summary", "Live events over WebSocket: send {\"action\":\"subscribe\",\"channels\":[...]}; frames are "
                      "{version, event_type, channel, timestamp, payload}"},
          {"tags", {"events"}},
          {"responses", {{"101", {{"description", "Switching protocols"}}},
                         {"426", {{"description", "Not a WebSocket upgrade"}}},
                         {"429", {{"description", "This user holds http.ws_max_per_user live event connections already"}}}}}},
         [](HttpRequest&, Responder respond) {
           respond(HttpResponse::problem(426, "upgrade_required", "connect with a WebSocket client (Upgrade: websocket)")
                       .header("upgrade", "websocket"));
         }}));
    for (auto& token : mount_settings_routes(*router, context_)) routes.push_back(std::move(token));
    // The cross-origin policy follows its setting without a restart.
    auto cors_policy = [settings] {
      return std::make_shared<const CorsPolicy>(settings->get("api", "cors_allowed_origins").value);
    };
    server->set_cors(cors_policy());
    auto cors_subscription = context_.bus().subscribe(
        std::string(SettingChanged::topic), [server = server.get(), cors_policy](const Event& event) {
          if (event.payload.value("namespace", "") == "api" && event.payload.value("key", "") == "cors_allowed_origins")
            server->set_cors(cors_policy());
        });
    server->start();
    hub->start();
    auto registration = context_.registry().provide<HttpRouter>(router);
    // Other plugins reach the API port on loopback when it listens on every address.
    auto host = options.address == "0.0.0.0" ? std::string("127.0.0.1") : options.address == "::" ? std::string("::1")
                                                                                                  : options.address;
    auto dispatcher_registration = context_.registry().provide<HttpDispatcher>(
        std::make_shared<Dispatcher>(router, gate, observer, host, server->port(), log::Logger("http-api")));

    // The kernel's first phase of a stop: live event clients are told the server is going away
    // (1001), then requests in flight finish.
    auto listener_registration = context_.registry().provide<Listener>(std::make_shared<FunctionListener>(
        "http-api", [server = server.get(), hub = hub.get(), drain = drain_](std::chrono::milliseconds grace) {
          hub->stop();
          server->stop(std::min(grace, drain));
        }));

    definitions_ = std::move(definitions);
    cors_subscription_ = std::move(cors_subscription);
    routes_ = std::move(routes);
    listener_registration_ = std::move(listener_registration);
    server_ = std::move(server);
    hub_ = std::move(hub);
    registration_ = std::move(registration);
    dispatcher_registration_ = std::move(dispatcher_registration);
    collector_ = std::move(collector);
    context_.log().info("HTTP API listening", {{"address", options.address},
                                               {"port", static_cast<std::int64_t>(server_->port())},
                                               {"max_connections", static_cast<std::uint64_t>(options.limits.max_connections)}});
  }

  void stop() override {
    cors_subscription_.reset();  // its handler uses the server
    listener_registration_.reset();
    dispatcher_registration_.reset();
    registration_.reset();
    collector_.reset();  // reads the server's stats: goes before the server
    if (hub_) hub_->stop();
    hub_.reset();
    if (server_) server_->stop(drain_);
    server_.reset();
    routes_.clear();
    definitions_.clear();
  }

 private:
  PluginContext& context_;
  ServerOptions options_;
  std::chrono::milliseconds drain_{5000};
  std::vector<Token> definitions_;
  std::vector<Token> routes_;
  std::unique_ptr<Server> server_;
  std::shared_ptr<WebSocketHub> hub_;
  Registration registration_, dispatcher_registration_, listener_registration_;
  Token collector_;
  Subscription cors_subscription_;
};

}  // namespace
}  // namespace synthorg::http_api

SYNTHORG_PLUGIN(synthorg::http_api::HttpApiPlugin)

// web: the dashboard's port (3000). Serves the built dashboard (or any static site) with strict
// security headers and a CSP nonce per request, and puts the API behind the same origin: /api/*
// goes to http-api in this kernel with no network hop, or to api_upstream over HTTP.
#include <dlfcn.h>

#include <filesystem>
#include <stdexcept>

#include <fmt/format.h>
#include <Poco/URI.h>

#include "listener.hpp"
#include "server.hpp"
#include "static_files.hpp"
#include "synthorg/plugin.hpp"
#include "synthorg/services/http.hpp"
#include "synthorg/services/listener.hpp"

namespace synthorg::web {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

// The dashboard is installed beside this plugin (<plugins>/web-dashboard), in the build tree too.
fs::path installed_dashboard() {
  Dl_info info{};
  if (::dladdr(reinterpret_cast<void*>(&installed_dashboard), &info) == 0 || !info.dli_fname) return {};
  return fs::path(info.dli_fname).parent_path() / "web-dashboard";
}

// "http://backend:3001" → {backend, 3001}; throws std::invalid_argument naming what is wrong
// (https, a path, no host).
Upstream parse_upstream(const std::string& url) {
  Poco::URI uri;
  try {
    uri = Poco::URI(url);
  } catch (const std::exception& error) {
    throw std::invalid_argument(fmt::format("'{}' is not a URL: {}", url, error.what()));
  }
  if (uri.getScheme() != "http")
    throw std::invalid_argument(fmt::format("'{}' must start with http:// (TLS to the upstream is not supported; "
                                            "keep it on a private network)", url));
  if (uri.getHost().empty()) throw std::invalid_argument(fmt::format("'{}' has no host", url));
  if (!uri.getPath().empty() && uri.getPath() != "/")
    throw std::invalid_argument(fmt::format("'{}' has a path; give only scheme, host and port", url));
  return {uri.getHost(), uri.getPort()};
}

class WebPlugin final : public Plugin {
 public:
  static PluginManifest manifest() {
    return {.name = "web",
            .version = "0.1.0",
            .description = "The dashboard's port: static files with strict headers and a CSP nonce, and /api/* "
                           "in process or to an upstream",
            .provides = {std::string(Listener::service_id)},
            // Optional: when http-api runs here it starts first, and /api/* is handed to it.
            .needs = {{"synthorg.Executor/1", true}, {std::string(HttpDispatcher::service_id), false}},
            .config =
                ConfigMap{}
                    .string("address", "0.0.0.0", "IP address to listen on")
                    .integer("port", 3000, "TCP port to listen on (0: any free port)")
                    .range(0, 65535)
                    .string("root", "",
                            "Directory of files to serve; it must hold index.html. Empty: the dashboard installed "
                            "beside the plugin (<plugin dir>/web-dashboard)")
                    .string("api_upstream", "",
                            "Where /api/* goes when http-api is not in this kernel, e.g. http://backend:3001; "
                            "empty: nowhere (502 api_unavailable)")
                    .duration("upstream_connect_timeout", "5s", "Connecting to api_upstream; beyond it 504")
                    .range(1, 600'000)
                    .duration("upstream_timeout", "60s",
                              "For an API answer to begin and between its chunks (in process too); beyond it 504")
                    .range(1, 3'600'000)
                    .integer("cache_file_bytes", 256 * 1024, "Files up to this size are kept in memory")
                    .range(0, 64LL * 1024 * 1024)
                    .integer("cache_total_bytes", 64LL * 1024 * 1024, "Memory for cached files, in bytes")
                    .range(0, 16LL * 1024 * 1024 * 1024)
                    .integer("max_body_bytes", 1024 * 1024,
                             "Largest request body read whole, for the API in process (413 beyond); bodies "
                             "relayed to api_upstream or to the API port stream through, unlimited")
                    .range(0, 1LL << 32)
                    .duration("request_timeout", "10s", "A request must arrive whole within this")
                    .range(100, 600'000)
                    .duration("idle_timeout", "60s", "A kept-alive connection with no request is closed after this")
                    .range(100, 3'600'000)
                    .integer("max_connections", 0,
                             "Open connections, tunnels included; more get 503 and are closed. 0: derived from "
                             "the open-file limit, (RLIMIT_NOFILE - 256) / 2")
                    .range(0, 1'000'000)
                    .boolean("access_log", true, "Log one line per request")
                    .boolean("hsts", true,
                             "Send Strict-Transport-Security (max-age=63072000); browsers ignore it over plain HTTP")
                    .duration("drain_timeout", "5s", "On stop, how long in-flight requests may take to finish")};
  }
  explicit WebPlugin(PluginContext& context) : context_(context) {}

  void configure(const json& config) override {
    options_.address = config.at("address").get<std::string>();
    options_.port = static_cast<unsigned short>(config.at("port").get<std::int64_t>());
    auto root = config.at("root").get<std::string>();
    static_.root = root.empty() ? installed_dashboard() : fs::path(root);
    upstream_.reset();
    if (auto url = config.at("api_upstream").get<std::string>(); !url.empty()) {
      try {
        upstream_ = parse_upstream(url);
      } catch (const std::invalid_argument& error) {
        throw std::invalid_argument(fmt::format("api_upstream: {}", error.what()));
      }
    }
    connect_timeout_ = std::chrono::milliseconds(config.at("upstream_connect_timeout").get<std::int64_t>());
    timeout_ = std::chrono::milliseconds(config.at("upstream_timeout").get<std::int64_t>());
    static_.cache_file_bytes = config.at("cache_file_bytes").get<std::size_t>();
    static_.cache_total_bytes = config.at("cache_total_bytes").get<std::size_t>();
    options_.max_body_bytes = config.at("max_body_bytes").get<std::size_t>();
    options_.request_timeout = std::chrono::milliseconds(config.at("request_timeout").get<std::int64_t>());
    options_.idle_timeout = std::chrono::milliseconds(config.at("idle_timeout").get<std::int64_t>());
    auto max_connections = config.at("max_connections").get<std::size_t>();
    options_.max_connections = max_connections > 0 ? max_connections : http_relay::default_max_connections();
    options_.access_log = config.at("access_log").get<bool>();
    options_.hsts = config.at("hsts").get<bool>();
    options_.single_io_thread = context_.executor().stats().io_threads == 1;
    drain_ = std::chrono::milliseconds(config.at("drain_timeout").get<std::int64_t>());
  }

  void start() override {
    auto files = std::make_shared<FileStore>(static_);  // throws, with the fix, on a bad root
    ApiOptions api;
    auto& registry = context_.registry().shared();
    api.dispatcher = [&registry] { return registry.get<HttpDispatcher>(); };
    api.upstream = upstream_;
    api.connect_timeout = connect_timeout_;
    api.timeout = timeout_;
    auto server = std::make_unique<Server>(context_.executor().io_context(), files, std::move(api), options_,
                                           log::Logger("web"));
    server->start();
    // The kernel's first phase of a stop: requests in flight (relayed ones too) finish.
    listener_registration_ = context_.registry().provide<Listener>(std::make_shared<FunctionListener>(
        "web", [server = server.get(), drain = drain_](std::chrono::milliseconds grace) {
          server->stop(std::min(grace, drain));
        }));
    server_ = std::move(server);
    // The line a new operator looks for: where to point a browser (a wildcard address is not one).
    bool wildcard = options_.address == "0.0.0.0" || options_.address == "::" || options_.address.empty();
    auto host = wildcard ? std::string("localhost")
                         : options_.address.find(':') != std::string::npos ? "[" + options_.address + "]" : options_.address;
    context_.log().info("web listening: open the dashboard in a browser",
                                         {{"url", fmt::format("http://{}:{}/", host, server_->port())},
                                          {"address", options_.address},
                                          {"port", static_cast<std::int64_t>(server_->port())},
                                          {"root", files->root().string()},
                                          {"api", upstream_ ? fmt::format("http://{}:{}", upstream_->host, upstream_->port)
                                                            : std::string("in process")}});
  }

  void stop() override {
    listener_registration_.reset();
    if (server_) server_->stop(drain_);
    server_.reset();
  }

 private:
  PluginContext& context_;
  ServerOptions options_;
  StaticOptions static_;
  std::optional<Upstream> upstream_;
  std::chrono::milliseconds connect_timeout_{5000}, timeout_{60'000};
  std::chrono::milliseconds drain_{5000};
  std::unique_ptr<Server> server_;
  Registration listener_registration_;
};

}  // namespace
}  // namespace synthorg::web

SYNTHORG_PLUGIN(synthorg::web::WebPlugin)

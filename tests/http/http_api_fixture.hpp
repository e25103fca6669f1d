// The fixture of the http-api tests: a real kernel in-process with http-api and store-sqlite on
// a free loopback port, small limits, and test doubles for health and authentication.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "http_client.hpp"
#include "kernel.hpp"
#include "synthorg/services/health.hpp"
#include "synthorg/services/http.hpp"
#include "test_support.hpp"

namespace synthorg::kernel {

using nlohmann::json;
using synthorg::testing::Client;
using synthorg::testing::free_port;
using synthorg::testing::TempDir;
namespace fs = std::filesystem;

class FixedHealth final : public HealthCheck {
 public:
  explicit FixedHealth(bool up) : up_(up) {}
  std::string name() const override { return "fixture"; }
  HealthReport check() override { return {up_, up_ ? "" : "the fixture is down on purpose", json::object()}; }

 private:
  bool up_;
};

// Anyone with "Bearer <role>" is that role: enough to test the gates, not a real scheme.
class RoleFromHeader final : public Authenticator {
 public:
  std::optional<Principal> authenticate(const HttpRequest& request) const override {
    auto header = std::string(request.header("authorization"));
    if (header.rfind("Bearer ", 0) != 0) return std::nullopt;
    return Principal{"user-1", header.substr(7), json::object()};
  }
};

class HttpApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto plugins = dir.path() / "plugins";
    fs::create_directories(plugins);
    for (const char* name : {"http-api.so", "store-sqlite.so"})
      fs::create_symlink(fs::path(SYNTHORG_PLUGIN_BUILD_DIR) / name, plugins / name);
    port = free_port();
    ::setenv("SYNTHORG_HTTP_REQUEST_TIMEOUT_MS", "700", 1);
    ::setenv("SYNTHORG_HTTP_MAX_HEADER_BYTES", "2048", 1);
    ::setenv("SYNTHORG_HTTP_MAX_BODY_BYTES", "1000", 1);
    ::setenv("SYNTHORG_HTTP_ACCESS_LOG", "false", 1);
    auto config = dir.write("company.yaml", "company_name: Test\nkernel:\n  plugin_dirs: [" + plugins.string() +
                                                "]\nplugins:\n  http-api:\n    config: {address: 127.0.0.1, port: " +
                                                std::to_string(port) + ", drain_timeout: 2s}\n  store-sqlite:\n"
                                                "    config: {path: " + (dir / "s.db").string() + "}\n");
    kernel = std::make_unique<Kernel>(load_company_config(config, "/unused"));
    kernel->discover();
    kernel->prepare();
    kernel->start();
  }
  void TearDown() override {
    kernel.reset();
    for (const char* name : {"SYNTHORG_HTTP_REQUEST_TIMEOUT_MS", "SYNTHORG_HTTP_MAX_HEADER_BYTES",
                             "SYNTHORG_HTTP_MAX_BODY_BYTES", "SYNTHORG_HTTP_ACCESS_LOG", "SYNTHORG_HTTP_MAX_CONNECTIONS",
                             "SYNTHORG_HTTP_WS_MAX_PER_USER", "SYNTHORG_HTTP_WS_IDLE_TIMEOUT_MS"})
      ::unsetenv(name);
  }
  std::string get(const std::string& path, const std::string& extra_headers = "") {
    Client client(port);
    client.send("GET " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + extra_headers + "\r\n");
    return client.response();
  }
  // Stops the kernel and starts it again on the same configuration, to pick up settings changed
  // in the environment.
  void restart() {
    kernel.reset();
    kernel = std::make_unique<Kernel>(load_company_config(dir.path() / "company.yaml", "/unused"));
    kernel->discover();
    kernel->prepare();
    kernel->start();
  }
  Token mount(RouteSpec route) { return kernel->registry().get<HttpRouter>()->add(std::move(route)); }

  TempDir dir;
  int port = 0;
  std::unique_ptr<Kernel> kernel;
};

}  // namespace synthorg::kernel

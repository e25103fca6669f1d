// The node OTLP receiver (otlp_receiver.js) as the tests drive it, and the company.yaml of a
// kernel under test: shared by the exporter tests and the span tests.
#pragma once

#include <gtest/gtest.h>

#include <Poco/Process.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "synthorg/http_client.hpp"
#include "test_support.hpp"

namespace synthorg::telemetry {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
using synthorg::testing::TempDir;

const fs::path example = fs::path(SYNTHORG_CONTRACTS_DIR) / "otlp" / "examples" / "trace.json";
const fs::path receiver_dir = fs::path(SYNTHORG_SOURCE_DIR) / "tests" / "telemetry";

// <dir>/plugins with links to the built plugins named, and a company.yaml loading them.
inline fs::path company(const TempDir& dir, const std::vector<std::string>& names, const std::string& plugins_yaml) {
  auto plugins = dir.path() / "plugins";
  fs::create_directories(plugins);
  for (const auto& name : names) fs::create_symlink(fs::path(SYNTHORG_PLUGIN_BUILD_DIR) / (name + ".so"), plugins / (name + ".so"));
  return dir.write("company.yaml", "company_name: Test\nkernel:\n  plugin_dirs: [" + plugins.string() +
                                       "]\nplugins:\n" + plugins_yaml);
}

// The node receiver on an ephemeral loopback port, stopped with the object.
class Receiver {
 public:
  Receiver() {
    auto ready = dir_ / "ready.json";
    handle_.emplace(Poco::Process::launch(
        "/usr/bin/node", {(receiver_dir / "otlp_receiver.js").string(), "--ready-file", ready.string(), "--example",
                          example.string()}));
    for (auto deadline = Clock::now() + 20s; !fs::exists(ready) || fs::file_size(ready) == 0;) {
      if (Clock::now() > deadline || !Poco::Process::isRunning(*handle_))
        throw std::runtime_error("the OTLP receiver did not start (see its output above)");
      std::this_thread::sleep_for(20ms);
    }
    url_ = json::parse(std::ifstream(ready)).at("url");
    http::ClientOptions options;
    options.base_url = url_;
    options.propagate_trace = false;
    client_ = std::make_unique<http::HttpClient>(options);
  }
  ~Receiver() {
    client_.reset();
    Poco::Process::kill(*handle_);
    handle_->wait();
  }
  const std::string& url() const { return url_; }
  json received() { return json::parse(call("GET", "/__received").body)["received"]; }
  void fault(const json& fault) { call("POST", "/__control", fault.dump()); }
  // Waits until `count` requests to `path` have arrived; returns all requests so far.
  json wait_for(const std::string& path, std::size_t count, std::chrono::milliseconds timeout = 10s) {
    for (auto deadline = Clock::now() + timeout;;) {
      auto all = received();
      std::size_t seen = 0;
      for (const auto& record : all) seen += record["path"] == path;
      if (seen >= count || Clock::now() > deadline) return all;
      std::this_thread::sleep_for(50ms);
    }
  }
  // Every span that arrived, each with the resource it came with; fails on any decoding error.
  std::vector<std::pair<json, json>> spans() {
    std::vector<std::pair<json, json>> out;
    for (const auto& record : received()) {
      if (record["path"] != "/v1/traces" || !record.contains("body")) continue;
      EXPECT_EQ(record["errors"], json::array()) << "the official schema refused what we sent:\n" << record.dump(2);
      for (const auto& resource_spans : record["body"]["resourceSpans"])
        for (const auto& scope_spans : resource_spans["scopeSpans"])
          for (const auto& span : scope_spans["spans"]) out.emplace_back(span, resource_spans["resource"]);
    }
    return out;
  }

 private:
  http::ClientResponse call(const std::string& method, const std::string& target, std::string body = {}) {
    http::ClientRequest request;
    request.method = method;
    request.target = target;
    request.body = std::move(body);
    return client_->send(request);
  }
  TempDir dir_;
  std::optional<Poco::ProcessHandle> handle_;
  std::string url_;
  std::unique_ptr<http::HttpClient> client_;
};

// An OTLP attribute list as {key: value}.
inline nlohmann::json attributes_of(const nlohmann::json& list) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& attribute : list) out[attribute["key"].get<std::string>()] = attribute["value"];
  return out;
}

}  // namespace synthorg::telemetry

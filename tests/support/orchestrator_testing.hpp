// Helpers shared by the orchestrator tests (tests/orchestrator): the error an orchestrator call
// throws, and a contract server (tests/contract/*_server.py) run as a process for one test.
#pragma once

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <Poco/Process.h>

#include "plugin_host.hpp"
#include "synthorg/http_client.hpp"
#include "synthorg/services/orchestrator.hpp"
#include "test_support.hpp"

namespace synthorg::testing {

// The OrchestratorError `call` throws; a test failure (and a made-up `failed` error) when it
// throws something else or nothing.
inline OrchestratorError orchestrator_error_of(const std::function<void()>& call) {
  try {
    call();
  } catch (const OrchestratorError& error) {
    return error;
  } catch (const std::exception& error) {
    ADD_FAILURE() << "expected an OrchestratorError, got: " << error.what();
    return {OrchestratorErrc::failed, error.what()};
  }
  ADD_FAILURE() << "expected an OrchestratorError";
  return {OrchestratorErrc::failed, "(none)"};
}

// A contract server on an ephemeral port with its own CA, stopped with the object: runs
// `/usr/bin/python3 <script> --ready-file <dir>/ready.json --workdir <dir>/server <args...>`
// and waits for the ready file, whose JSON (info()) names at least `url` and `ca_file`. The
// control calls are the /__contract/ endpoints every contract server offers.
class ContractServer {
 public:
  // `what` names the server in the error thrown when it does not start.
  ContractServer(const std::string& script, const std::vector<std::string>& args,
                 const std::string& what = "the contract server") {
    namespace fs = std::filesystem;
    using namespace std::chrono_literals;
    auto ready = dir_ / "ready.json";
    std::vector<std::string> command{script, "--ready-file", ready.string(), "--workdir", (dir_ / "server").string()};
    command.insert(command.end(), args.begin(), args.end());
    handle_.emplace(Poco::Process::launch("/usr/bin/python3", command));
    for (auto deadline = std::chrono::steady_clock::now() + 30s; !fs::exists(ready);) {
      if (std::chrono::steady_clock::now() > deadline || !Poco::Process::isRunning(*handle_)) {
        stop();
        throw std::runtime_error(what + " did not start (see its output above)");
      }
      std::this_thread::sleep_for(50ms);
    }
    info_ = nlohmann::json::parse(std::ifstream(ready));
    http::ClientOptions options;
    options.base_url = url();
    options.ca_file = ca_file();
    client_ = std::make_unique<http::HttpClient>(options);
  }
  ~ContractServer() {
    client_.reset();
    stop();
  }
  ContractServer(const ContractServer&) = delete;
  ContractServer& operator=(const ContractServer&) = delete;

  // The ready file's contents.
  const nlohmann::json& info() const { return info_; }
  std::string url() const { return info_.at("url"); }
  std::string ca_file() const { return info_.at("ca_file"); }

  // One request to the server, with a bearer token when one is given.
  http::ClientResponse send(const std::string& method, const std::string& target,
                            const nlohmann::json& body = nullptr, const std::string& token = {}) {
    http::ClientRequest request;
    request.method = method;
    request.target = target;
    if (!body.is_null()) {
      request.body = body.dump();
      request.headers = {{"Content-Type", "application/json"}};
    }
    if (!token.empty()) request.headers.emplace_back("Authorization", "Bearer " + token);
    return client_->send(request);
  }
  // A control call: its JSON answer, or an exception unless it answered 200.
  nlohmann::json hook(const std::string& method, const std::string& path, const nlohmann::json& body = nullptr) {
    auto response = send(method, path, body);
    if (response.status != 200) throw std::runtime_error(path + " answered " + std::to_string(response.status));
    return nlohmann::json::parse(response.body);
  }

  // The contract violations recorded so far (a JSON array).
  nlohmann::json violations() { return list("/__contract/violations", "violations"); }
  // The requests received so far (a JSON array of method, path, query, body...).
  nlohmann::json requests() { return list("/__contract/requests", "requests"); }
  // Makes the next matching request fail as `fault` says (the fields are the server's own).
  void fail_next(const nlohmann::json& fault) { hook("POST", "/__contract/fail-next", fault); }

 private:
  // fly_server.py wraps its lists ({"violations": [...]}); kubernetes_server.py answers the bare list.
  nlohmann::json list(const std::string& path, const std::string& key) {
    auto answer = hook("GET", path);
    return answer.is_object() ? answer.at(key) : answer;
  }

  void stop() {
    if (handle_ && Poco::Process::isRunning(*handle_)) {
      Poco::Process::requestTermination(handle_->id());
      handle_->wait();
    }
  }

  TempDir dir_;
  std::optional<Poco::ProcessHandle> handle_;
  nlohmann::json info_;
  std::unique_ptr<http::HttpClient> client_;
};

// A hardened workload of the test image running `script`, labelled with the test's run.
inline WorkloadSpec busybox_spec(const std::string& run, const std::string& script) {
  WorkloadSpec spec;
  spec.image = "synthorg-test/busybox:latest";
  spec.command = {"/bin/busybox", "sh", "-c", script};
  spec.labels = {{"synthorg.test-run", run}};
  spec.user = "65534:65534";
  spec.tmpfs = {{"/tmp"}};
  return spec;
}

// A fixture around one contract server: skipped, saying why, where the contract document is
// absent; at the end the run's workloads are removed and no contract violation may be left.
template <class Server>
class ContractServerTest : public ::testing::Test {
 protected:
  ContractServerTest(std::filesystem::path contract, std::string backend)
      : contract_(std::move(contract)), backend_(std::move(backend)) {}

  void SetUp() override {
    if (!std::filesystem::exists(contract_))
      GTEST_SKIP() << contract_ << " is absent (../shared/contracts is not checked out here): the " << backend_
                   << " contract server has nothing to check requests against, so these tests cannot run";
    server_ = std::make_unique<Server>();
  }

  void TearDown() override {
    if (!server_) return;
    if (orchestrator_) {
      try {
        for (const auto& status : orchestrator_->list({{"synthorg.test-run", run_}})) orchestrator_->remove(status.id);
      } catch (const std::exception&) {
        // A test that breaks the token cannot clean up through the plugin; the server goes anyway.
      }
    }
    if (check_violations_) {
      auto found = server_->violations();
      EXPECT_TRUE(found.empty()) << "contract violations:\n" << found.dump(2);
    }
  }

  std::shared_ptr<Orchestrator> start_plugin(const std::string& path, const nlohmann::json& config) {
    host_.start(path, config);
    orchestrator_ = host_.get<Orchestrator>();
    return orchestrator_;
  }

  WorkloadSpec spec(const std::string& script) const { return busybox_spec(run_, script); }

  // The requests the server received for `method` on paths ending in `suffix`.
  std::vector<nlohmann::json> requests(const std::string& method, const std::string& suffix) {
    std::vector<nlohmann::json> out;
    for (const auto& request : server_->requests())
      if (request["method"] == method && request["path"].template get<std::string>().ends_with(suffix))
        out.push_back(request);
    return out;
  }

  std::filesystem::path contract_;
  std::string backend_;
  std::unique_ptr<Server> server_;
  PluginHost host_;
  std::shared_ptr<Orchestrator> orchestrator_;
  std::string run_ = "t" + std::to_string(::getpid()) + "-" + std::to_string(std::rand() % 100000);
  bool check_violations_ = true;
};

}  // namespace synthorg::testing

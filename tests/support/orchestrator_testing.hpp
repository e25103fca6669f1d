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

}  // namespace synthorg::testing

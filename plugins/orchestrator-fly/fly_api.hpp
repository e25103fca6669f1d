// The Fly Machines API (https://api.machines.dev, whose OpenAPI document the contract tests check against) as the
// orchestrator uses it: one app, JSON in and out, and every failure turned into an
// OrchestratorError whose message says what to do and never contains the token.
#pragma once

#include <chrono>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "synthorg/http_client.hpp"
#include "synthorg/services/orchestrator.hpp"

namespace synthorg::orchestrator_fly {

inline constexpr std::string_view default_api_url = "https://api.machines.dev";

struct ApiOptions {
  std::string base_url{default_api_url};
  std::string app;
  std::string token;  // as FLY_API_TOKEN gives it; never logged
  std::string ca_file;
  std::chrono::milliseconds request_timeout{30000};
};

// The Authorization header fly-go sends (AuthorizationHeader in superfly/fly-go auth.go):
// macaroon tokens (comma-separated parts, one prefixed fm1r_ or fm2_) with the FlyV1 scheme,
// anything else as Bearer. Tokens printed by `fly tokens create` already start with "FlyV1 "
// and go as they are.
std::string authorization_header(std::string_view token);

// Turns a Fly answer that is not 2xx into the error the Orchestrator contract names:
// ErrorResponse.status insufficient_capacity/volume_placement_capacity -> capacity,
// name_taken -> conflict, 401/403 -> unavailable (with what to check about the token),
// 404 -> not_found, 400/422 -> invalid_spec (or image_missing when the registry has no such
// image), 408/429/5xx -> unavailable, 409/412 -> conflict. `what` says what was attempted.
OrchestratorError error_for(int status, std::string_view body, std::string_view what, std::string_view app);

struct Answer {
  int status = 0;
  nlohmann::json body;      // null when the answer had none (or it was not JSON)
  std::string next_cursor;  // fly-next-cursor, for paged lists
};

class FlyApi {
 public:
  // Throws std::invalid_argument (naming the setting) when the URL or CA cannot be used.
  explicit FlyApi(ApiOptions options);

  // Sends one request to `path` (under /v1/apps/{app}; already encoded) and returns the 2xx
  // answer, or one whose status is in `accepted`; throws OrchestratorError otherwise.
  // GETs are retried twice on connection failures, 429 and 5xx, as fly-go does.
  // `retry` false: one attempt only (health checks must answer quickly).
  Answer call(std::string_view method, const std::string& path, const nlohmann::json& body = nullptr,
              std::initializer_list<int> accepted = {}, std::chrono::milliseconds timeout = {},
              std::string_view what = {}, bool retry = true);

  const ApiOptions& options() const noexcept { return options_; }
  std::string describe() const { return http_->describe(); }  // the base URL, for messages

 private:
  ApiOptions options_;
  std::string authorization_;
  std::unique_ptr<http::HttpClient> http_;
};

}  // namespace synthorg::orchestrator_fly

#include "fly_api.hpp"

#include <stdexcept>
#include <thread>
#include <vector>

namespace synthorg::orchestrator_fly {
namespace {

constexpr std::string_view flyv1_prefix = "FlyV1 ";

bool contains(std::string_view text, std::string_view part) { return text.find(part) != std::string_view::npos; }

std::string lower(std::string_view text) {
  std::string out(text);
  for (auto& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

// What the registry said when an image cannot be resolved: flaps relays it in a 4xx error.
bool image_missing_text(std::string_view text) {
  auto l = lower(text);
  return contains(l, "manifest unknown") || contains(l, "manifest_unknown") || contains(l, "image not found") ||
         contains(l, "failed to get manifest") || contains(l, "failed to resolve image") ||
         contains(l, "repository does not exist");
}

// flyd's words for a host that cannot fit the guest (superfly/fly-go flaps_error.go): a 409
// that is about capacity, not about a conflicting change.
bool capacity_text(std::string_view text) {
  auto l = lower(text);
  return contains(l, "insufficient cpus available") || contains(l, "insufficient memory available") ||
         contains(l, "insufficient resources available") || contains(l, "insufficient ips available") ||
         contains(l, "no capacity");
}

// Replaces every piece of the token in `text`: an error body must not carry it into a log.
std::string scrub(std::string text, std::string_view token) {
  std::vector<std::string_view> pieces;
  if (token.starts_with(flyv1_prefix)) token.remove_prefix(flyv1_prefix.size());
  pieces.push_back(token);
  for (std::size_t start = 0; start <= token.size();) {
    auto comma = token.find(',', start);
    auto piece = token.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    if (piece.size() >= 8) pieces.push_back(piece);
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  for (auto piece : pieces) {
    if (piece.size() < 4) continue;
    for (auto at = text.find(piece); at != std::string::npos; at = text.find(piece, at))
      text.replace(at, piece.size(), "********");
  }
  return text;
}

}  // namespace

std::string authorization_header(std::string_view token) {
  if (token.starts_with(flyv1_prefix)) return std::string(token);
  for (std::size_t start = 0; start <= token.size();) {
    auto comma = token.find(',', start);
    auto part = token.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    auto prefix = part.substr(0, part.find('_'));
    if (part.find('_') != std::string_view::npos && (prefix == "fm1r" || prefix == "fm2"))
      return std::string(flyv1_prefix) + std::string(token);
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return "Bearer " + std::string(token);
}

OrchestratorError error_for(int status, std::string_view body, std::string_view what, std::string_view app) {
  std::string text, code;
  try {
    auto parsed = nlohmann::json::parse(body);
    if (parsed.is_object()) {
      if (parsed.contains("error") && parsed["error"].is_string()) text = parsed["error"].get<std::string>();
      if (parsed.contains("status") && parsed["status"].is_string()) code = parsed["status"].get<std::string>();
    }
  } catch (const nlohmann::json::exception&) {
  }
  if (text.empty()) text = std::string(body.substr(0, 300));
  auto message = std::string(what) + ": the Fly Machines API answered " + std::to_string(status) +
                 (text.empty() ? std::string() : ": " + text);
  // The status code is the API's own classification; it wins over the HTTP status.
  if (code == "insufficient_capacity" || code == "volume_placement_capacity")
    return {OrchestratorErrc::capacity, message + " (Fly has no room for this machine here; try another region "
                                                  "or a smaller guest)"};
  if (code == "name_taken") return {OrchestratorErrc::conflict, message};
  switch (status) {
    case 401:
    case 403:
      return {OrchestratorErrc::unavailable,
              std::string(what) + ": the Fly Machines API refused the token (HTTP " + std::to_string(status) +
                  "): check that FLY_API_TOKEN holds a current token with access to the app '" + std::string(app) +
                  "' (`fly tokens create deploy -a " + std::string(app) + "`)"};
    case 404: return {OrchestratorErrc::not_found, message};
    case 400:
    case 422:
      if (image_missing_text(text)) return {OrchestratorErrc::image_missing, message};
      return {OrchestratorErrc::invalid_spec, message};
    case 409:
      if (capacity_text(text)) return {OrchestratorErrc::capacity, message};
      return {OrchestratorErrc::conflict, message};
    case 412: return {OrchestratorErrc::conflict, message};
    case 408:
    case 429: return {OrchestratorErrc::unavailable, message + " (retry later)"};
    default: break;
  }
  if (status >= 500) return {OrchestratorErrc::unavailable, message + " (retry later)"};
  return {OrchestratorErrc::failed, message};
}

FlyApi::FlyApi(ApiOptions options) : options_(std::move(options)) {
  if (options_.app.empty())
    throw std::invalid_argument("no Fly app: set plugins.orchestrator-fly.config.app or FLY_APP_NAME");
  if (options_.token.empty()) throw std::invalid_argument("FLY_API_TOKEN is empty");
  authorization_ = authorization_header(options_.token);
  http::ClientOptions client;
  client.base_url = options_.base_url;
  client.ca_file = options_.ca_file;
  client.user_agent = "synthorg-orchestrator-fly";
  try {
    http_ = std::make_unique<http::HttpClient>(std::move(client));
  } catch (const std::invalid_argument& error) {
    throw std::invalid_argument("the Fly Machines API URL '" + options_.base_url +
                                "' cannot be used (plugins.orchestrator-fly.config.api_url or FLY_FLAPS_BASE_URL; "
                                "ca_file): " + error.what());
  }
}

Answer FlyApi::call(std::string_view method, const std::string& path, const nlohmann::json& body,
                    std::initializer_list<int> accepted, std::chrono::milliseconds timeout, std::string_view what,
                    bool retry) {
  http::ClientRequest request;
  request.method = std::string(method);
  request.target = "/v1/apps/" + http::url_encode(options_.app) + path;
  request.headers = {{"Authorization", authorization_}, {"Accept", "application/json"}};
  if (!body.is_null()) {
    request.headers.emplace_back("Content-Type", "application/json");
    request.body = body.dump();
  }
  request.timeout = timeout.count() > 0 ? timeout : options_.request_timeout;
  std::string doing = what.empty() ? std::string(method) + " " + request.target : std::string(what);

  const bool idempotent = retry && method == "GET";
  constexpr int attempts = 3;
  for (int attempt = 1;; ++attempt) {
    bool transient = false;
    http::ClientResponse response;
    try {
      response = http_->send(request);
    } catch (const http::ClientError& error) {
      if (idempotent && attempt < attempts && error.code() != http::ClientErrc::cancelled) {
        std::this_thread::sleep_for(std::chrono::milliseconds(250 * attempt * attempt));
        continue;
      }
      auto reason = scrub(error.what(), options_.token);
      if (error.code() == http::ClientErrc::cancelled) throw OrchestratorError(OrchestratorErrc::failed, doing + ": cancelled");
      throw OrchestratorError(OrchestratorErrc::unavailable,
                              doing + ": cannot reach the Fly Machines API at " + http_->describe() + ": " + reason);
    }
    transient = response.status == 429 || response.status >= 500;
    if (transient && idempotent && attempt < attempts) {
      std::this_thread::sleep_for(std::chrono::milliseconds(250 * attempt * attempt));
      continue;
    }
    bool ok = response.status >= 200 && response.status < 300;
    for (int status : accepted) ok = ok || response.status == status;
    if (!ok) {
      auto error = error_for(response.status, response.body, doing, options_.app);
      throw OrchestratorError(error.code(), scrub(error.what(), options_.token));
    }
    Answer answer;
    answer.status = response.status;
    answer.next_cursor = std::string(response.header("fly-next-cursor"));
    if (!response.body.empty()) {
      try {
        answer.body = nlohmann::json::parse(response.body);
      } catch (const nlohmann::json::exception&) {
        if (response.status >= 200 && response.status < 300)
          throw OrchestratorError(OrchestratorErrc::failed,
                                  doing + ": the Fly Machines API answered with something that is not JSON");
      }
    }
    return answer;
  }
}

}  // namespace synthorg::orchestrator_fly

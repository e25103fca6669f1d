#include "docker_engine.hpp"

#include <cerrno>
#include <cstdio>

namespace synthorg::orchestrator_docker {
namespace {

std::pair<int, int> parse_version(std::string_view text) {
  int major = 0, minor = 0;
  if (std::sscanf(std::string(text).c_str(), "%d.%d", &major, &minor) != 2) return {0, 0};
  return {major, minor};
}

std::string engine_message(const nlohmann::json& body) {
  if (body.is_object() && body.contains("message") && body["message"].is_string())
    return body["message"].get<std::string>();
  return {};
}

bool mentions(const std::string& text, std::string_view needle) { return text.find(needle) != std::string::npos; }

}  // namespace

OrchestratorError engine_error(int status, const nlohmann::json& body, std::string_view what) {
  auto message = engine_message(body);
  auto text = std::string(what) + ": the Docker engine answered " + std::to_string(status) +
              (message.empty() ? std::string() : ": " + message);
  if (status == 404) {
    if (mentions(message, "No such image") || mentions(message, "pull access denied") ||
        mentions(message, "manifest unknown") || mentions(message, "not found: manifest"))
      return {OrchestratorErrc::image_missing, text};
    return {OrchestratorErrc::not_found, text};
  }
  if (status == 400) return {OrchestratorErrc::invalid_spec, text};
  if (status == 409) return {OrchestratorErrc::conflict, text};
  if (status == 503) return {OrchestratorErrc::unavailable, text};
  if (mentions(message, "no space left") || mentions(message, "cannot allocate memory") ||
      mentions(message, "insufficient"))
    return {OrchestratorErrc::capacity, text};
  return {OrchestratorErrc::failed, text};
}

DockerEngine::DockerEngine(const std::string& host, std::chrono::milliseconds request_timeout)
    : client_(http::ClientOptions{.base_url = host, .connect_timeout = std::chrono::milliseconds(3000),
                                  .user_agent = "synthorg-orchestrator-docker"}),
      request_timeout_(request_timeout) {}

void DockerEngine::raise_unreachable(const http::ClientError& error, std::string_view what) {
  {
    // The next call checks the engine again: it may come back as another version.
    std::lock_guard lock(mutex_);
    negotiated_ = false;
  }
  std::string reason = error.what();
  std::string fix;
  if (mentions(reason, "Permission denied") || mentions(reason, "permission denied"))
    fix = "; the kernel's user may not use the socket: add it to the socket's group (usually 'docker') "
          "or point DOCKER_HOST elsewhere";
  else if (error.code() == http::ClientErrc::connect)
    fix = "; is dockerd running? Start it, or set DOCKER_HOST (or plugins.orchestrator-docker.config.host)";
  throw OrchestratorError(OrchestratorErrc::unavailable,
                          std::string(what) + ": cannot reach the Docker engine at " + client_.describe() + ": " +
                              reason + fix);
}

nlohmann::json DockerEngine::negotiate() {
  http::ClientResponse ping, version;
  try {
    ping = client_.send({.method = "GET", .target = "/_ping", .timeout = std::chrono::milliseconds(3000)});
    version = client_.send({.method = "GET", .target = "/version", .timeout = std::chrono::milliseconds(3000)});
  } catch (const http::ClientError& error) {
    raise_unreachable(error, "checking the Docker engine");
  }
  if (ping.status != 200 || version.status != 200)
    throw OrchestratorError(OrchestratorErrc::unavailable,
                            "the Docker engine at " + client_.describe() + " answered /_ping with " +
                                std::to_string(ping.status) + " and /version with " + std::to_string(version.status));
  nlohmann::json info = nlohmann::json::parse(version.body, nullptr, false);
  if (!info.is_object())
    throw OrchestratorError(OrchestratorErrc::unavailable,
                            "the Docker engine at " + client_.describe() + " answered /version with something not JSON");
  std::string server_api = std::string(ping.header("API-Version"));
  if (server_api.empty()) server_api = info.value("ApiVersion", "");
  if (parse_version(server_api) < parse_version(api_version))
    throw OrchestratorError(OrchestratorErrc::unavailable,
                            "the Docker engine at " + client_.describe() + " speaks API " +
                                (server_api.empty() ? std::string("(unknown)") : server_api) + "; SynthOrg needs " +
                                std::string(api_version) + " (Docker 20.10) or newer: upgrade the engine");
  std::lock_guard lock(mutex_);
  negotiated_ = true;
  return info;
}

void DockerEngine::ensure_negotiated() {
  {
    std::lock_guard lock(mutex_);
    if (negotiated_) return;
  }
  negotiate();
}

EngineReply DockerEngine::call(std::string_view method, const std::string& path, const nlohmann::json* body,
                               std::initializer_list<int> accepted, std::chrono::milliseconds timeout,
                               bool* timed_out) {
  ensure_negotiated();
  http::ClientRequest request{.method = std::string(method),
                              .target = "/v" + std::string(api_version) + path,
                              .timeout = timeout.count() > 0 ? timeout : request_timeout_};
  if (body) {
    request.headers.emplace_back("Content-Type", "application/json");
    request.body = body->dump();
  }
  http::ClientResponse response;
  const std::string what = std::string(method) + " " + path;
  try {
    response = client_.send(request);
  } catch (const http::ClientError& error) {
    if (error.code() == http::ClientErrc::timeout) {
      if (timed_out) {
        *timed_out = true;
        return {};
      }
      throw OrchestratorError(OrchestratorErrc::unavailable, what + ": the Docker engine did not answer in time");
    }
    raise_unreachable(error, what);
  }
  EngineReply reply{response.status, nlohmann::json::parse(response.body, nullptr, false)};
  if (reply.body.is_discarded()) reply.body = nullptr;
  for (int ok : accepted)
    if (ok == response.status) return reply;
  throw engine_error(response.status, reply.body, what);
}

void DockerEngine::stream_lines(const std::string& path, const std::stop_token& stop, const LogSink& sink) {
  ensure_negotiated();
  std::string pending;                       // bytes of an incomplete frame
  std::string partial[2];                    // an incomplete line per stream
  bool keep_going = true;
  auto emit = [&](int which, std::string_view data) {
    auto& line = partial[which];
    for (char c : data) {
      if (!keep_going) return;
      if (c == '\n') {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        keep_going = sink(which == 0 ? LogStream::stdout_stream : LogStream::stderr_stream, line);
        line.clear();
      } else {
        line.push_back(c);
      }
    }
  };
  auto on_data = [&](std::string_view data) {
    pending.append(data);
    std::size_t offset = 0;
    while (keep_going && pending.size() - offset >= 8) {
      auto header = reinterpret_cast<const unsigned char*>(pending.data() + offset);
      std::size_t size = (std::size_t(header[4]) << 24) | (std::size_t(header[5]) << 16) |
                         (std::size_t(header[6]) << 8) | std::size_t(header[7]);
      if (pending.size() - offset - 8 < size) break;
      int which = header[0] == 2 ? 1 : 0;
      emit(which, std::string_view(pending).substr(offset + 8, size));
      offset += 8 + size;
    }
    pending.erase(0, offset);
    return keep_going;
  };
  const std::string what = "GET " + path;
  http::ClientResponse response;
  try {
    response = client_.stream({.method = "GET", .target = "/v" + std::string(api_version) + path,
                               .timeout = std::chrono::milliseconds(0)},
                              on_data, stop);
  } catch (const http::ClientError& error) {
    if (error.code() == http::ClientErrc::cancelled) return;
    raise_unreachable(error, what);
  }
  if (response.status < 200 || response.status >= 300) {
    auto body = nlohmann::json::parse(response.body, nullptr, false);
    throw engine_error(response.status, body.is_discarded() ? nlohmann::json() : body, what);
  }
  // A last line without its newline is still a line.
  for (int which = 0; which < 2 && keep_going; ++which)
    if (!partial[which].empty())
      keep_going = sink(which == 0 ? LogStream::stdout_stream : LogStream::stderr_stream, partial[which]);
}

EngineReply DockerEngine::stream_json(std::string_view method, const std::string& path,
                                      const std::function<void(const nlohmann::json&)>& on_object,
                                      std::chrono::milliseconds timeout) {
  ensure_negotiated();
  std::string pending;
  auto on_data = [&](std::string_view data) {
    pending.append(data);
    std::size_t newline;
    while ((newline = pending.find('\n')) != std::string::npos) {
      auto object = nlohmann::json::parse(pending.substr(0, newline), nullptr, false);
      pending.erase(0, newline + 1);
      if (!object.is_discarded()) on_object(object);
    }
    return true;
  };
  const std::string what = std::string(method) + " " + path;
  http::ClientResponse response;
  try {
    response = client_.stream({.method = std::string(method), .target = "/v" + std::string(api_version) + path,
                               .timeout = timeout},
                              on_data);
  } catch (const http::ClientError& error) {
    if (error.code() == http::ClientErrc::timeout)
      throw OrchestratorError(OrchestratorErrc::unavailable, what + ": the Docker engine did not finish in time");
    raise_unreachable(error, what);
  }
  if (!pending.empty()) on_data("\n");
  EngineReply reply{response.status, nlohmann::json::parse(response.body, nullptr, false)};
  if (reply.body.is_discarded()) reply.body = nullptr;
  return reply;
}

}  // namespace synthorg::orchestrator_docker

// Helpers for tests that drive a real `synthorg serve` with containers: the output of a shell
// command (docker inspect, docker ps) and a WebSocket client that reads the kernel's events.
#pragma once

#include <sys/socket.h>

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <initializer_list>
#include <string>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <nlohmann/json.hpp>

#include "http_client.hpp"

namespace synthorg::testing {

// stdout of `command` (stderr dropped), trailing newlines and spaces removed.
inline std::string shell(const std::string& command) {
  std::string out;
  if (FILE* pipe = ::popen((command + " 2>/dev/null").c_str(), "r")) {
    char buffer[4096];
    for (std::size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;) out.append(buffer, n);
    ::pclose(pipe);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

inline std::size_t lines(const std::string& text) {
  if (text.empty()) return 0;
  return static_cast<std::size_t>(std::count(text.begin(), text.end(), '\n')) + 1;
}

inline std::size_t occurrences(const std::string& text, const std::string& needle) {
  std::size_t count = 0;
  for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++count;
  return count;
}

// The `code` of a problem+json answer.
inline std::string code_of(const std::string& response) { return body_of(response).value("code", ""); }

// A synthorg.instance value of one test's own, so its containers are told from everyone else's.
inline std::string test_instance(const std::string& prefix) {
  return prefix + std::to_string(::getpid()) + "-" + std::to_string(std::rand() % 100000);
}

// Removes every container labelled synthorg.instance=<instance>; returns the ids still there.
inline std::string remove_instance_containers(const std::string& instance) {
  auto ids = shell("docker ps -aq --filter label=synthorg.instance=" + instance);
  std::replace(ids.begin(), ids.end(), '\n', ' ');
  if (!ids.empty()) shell("docker rm -f " + ids);
  return shell("docker ps -aq --filter label=synthorg.instance=" + instance);
}

// Links the named plugin files of this build into `dir` (created), for a kernel's plugin_dirs.
inline void link_plugins(const std::filesystem::path& dir, std::initializer_list<const char*> names) {
  std::filesystem::create_directories(dir);
  for (const char* name : names) std::filesystem::create_symlink(std::filesystem::path(SYNTHORG_PLUGIN_BUILD_DIR) / name, dir / name);
}

// A blocking WebSocket client on Beast with a bearer token; reads give up after 10 s.
class EventClient {
 public:
  EventClient(int port, const std::string& bearer) : ws_(io_) {
    boost::asio::ip::tcp::endpoint endpoint(boost::asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port));
    ws_.next_layer().connect(endpoint);
    timeval timeout{10, 0};
    ::setsockopt(ws_.next_layer().native_handle(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    ws_.set_option(boost::beast::websocket::stream_base::decorator([bearer](boost::beast::websocket::request_type& request) {
      request.set(boost::beast::http::field::authorization, "Bearer " + bearer);
    }));
    ws_.handshake("127.0.0.1", "/api/v1/ws");
  }
  void send(const std::string& text) { ws_.write(boost::asio::buffer(text)); }
  nlohmann::json receive() {
    boost::beast::flat_buffer buffer;
    boost::beast::error_code ec;
    ws_.read(buffer, ec);
    if (ec) return {{"error", ec.message()}};
    return nlohmann::json::parse(boost::beast::buffers_to_string(buffer.data()));
  }

 private:
  boost::asio::io_context io_;
  boost::beast::websocket::stream<boost::asio::ip::tcp::socket> ws_;
};

}  // namespace synthorg::testing

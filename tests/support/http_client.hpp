// A raw HTTP/1.1 client over a plain socket, so tests send exactly the bytes they mean (bad
// ones included) and can keep a connection open; and helpers to read the answers.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace synthorg::testing {

// A free TCP port on 127.0.0.1 (free when asked; bind it soon).
int free_port();

// A TCP connection to 127.0.0.1:port whose reads give up after the timeout; -1 when it fails.
int connect_loopback(int port, int receive_timeout_seconds = 10);
// Sends `bytes` on a new loopback connection; returns all that arrives until the server closes.
std::string exchange_until_closed(int port, const std::string& bytes);

// One request on a new connection (Connection: close), a JSON body when `body` is not empty and
// a bearer token when `token` is not; returns the response.
std::string request(int port, const std::string& method, const std::string& path, const std::string& body = "",
                    const std::string& token = "");

class Client {
 public:
  explicit Client(int port);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  bool connected() const { return connected_; }
  void send(const std::string& bytes);
  // One response: headers, then Content-Length bytes of body (or the raw chunks of a chunked
  // one). Empty when the server closed.
  std::string response();
  // Reads until `text` has arrived; returns all that is buffered (still unread by response()),
  // empty when the connection ended first.
  std::string wait_for(const std::string& text);
  // True when the server closed the connection (read returns 0) within the receive timeout.
  bool closed_by_server();

 private:
  bool fill();
  int fd_;
  bool connected_ = false;
  std::string buffer_;
};

int status_of(const std::string& response);
nlohmann::json body_of(const std::string& response);
std::string header_of(const std::string& response, const std::string& name);  // name lower-case

}  // namespace synthorg::testing

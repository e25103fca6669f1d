#include "http_client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>

namespace synthorg::testing {
namespace {

sockaddr_in loopback(int port) {
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return address;
}

std::string lowered(std::string text) {
  for (auto& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

}  // namespace

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  auto address = loopback(0);
  ::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
  socklen_t length = sizeof address;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length);
  ::close(fd);
  return ntohs(address.sin_port);
}

int connect_loopback(int port, int receive_timeout_seconds) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  timeval timeout{receive_timeout_seconds, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  auto address = loopback(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) return fd;
  ::close(fd);
  return -1;
}

std::string exchange_until_closed(int port, const std::string& bytes) {
  int fd = connect_loopback(port);
  std::string received;
  if (fd >= 0 && ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size())) {
    char buffer[4096];
    for (ssize_t got; (got = ::recv(fd, buffer, sizeof buffer, 0)) > 0;) received.append(buffer, static_cast<std::size_t>(got));
  }
  if (fd >= 0) ::close(fd);
  return received;
}

Client::Client(int port) : fd_(connect_loopback(port)), connected_(fd_ >= 0) {}

std::string request(int port, const std::string& method, const std::string& path, const std::string& body,
                    const std::string& token) {
  Client client(port);
  std::string head = method + " " + path + " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n";
  if (!token.empty()) head += "Authorization: Bearer " + token + "\r\n";
  if (!body.empty()) head += "Content-Type: application/json\r\n";
  client.send(head + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
  return client.response();
}

Client::~Client() { ::close(fd_); }

void Client::send(const std::string& bytes) { (void)::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL); }

std::string Client::response() {
  for (;;) {
    auto end = buffer_.find("\r\n\r\n");
    if (end != std::string::npos) {
      std::size_t length = 0;
      auto head = lowered(buffer_.substr(0, end));
      if (auto at = head.find("content-length: "); at != std::string::npos) length = std::stoul(head.substr(at + 16));
      if (head.find("transfer-encoding: chunked") != std::string::npos) {  // raw chunks, up to the last
        auto last = buffer_.find("\r\n0\r\n\r\n", end);
        length = last == std::string::npos ? buffer_.size() + 1 - end - 4 : last + 7 - end - 4;
      }
      if (buffer_.size() >= end + 4 + length) {
        auto out = buffer_.substr(0, end + 4 + length);
        buffer_.erase(0, end + 4 + length);
        return out;
      }
    }
    if (!fill()) return {};
  }
}

std::string Client::wait_for(const std::string& text) {
  while (buffer_.find(text) == std::string::npos)
    if (!fill()) return {};
  return buffer_;
}

bool Client::closed_by_server() {
  char byte;
  return ::recv(fd_, &byte, 1, 0) == 0;
}

bool Client::fill() {
  char chunk[4096];
  auto got = ::recv(fd_, chunk, sizeof chunk, 0);
  if (got <= 0) return false;
  buffer_.append(chunk, static_cast<std::size_t>(got));
  return true;
}

int status_of(const std::string& response) { return response.size() > 12 ? std::stoi(response.substr(9, 3)) : 0; }

nlohmann::json body_of(const std::string& response) {
  auto at = response.find("\r\n\r\n");
  return at == std::string::npos ? nlohmann::json() : nlohmann::json::parse(response.substr(at + 4), nullptr, false);
}

std::string header_of(const std::string& response, const std::string& name) {
  auto at = lowered(response).find("\r\n" + name + ": ");
  if (at == std::string::npos) return {};
  auto start = at + 4 + name.size();
  return response.substr(start, response.find("\r\n", start) - start);
}

}  // namespace synthorg::testing

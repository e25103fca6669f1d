#include "request.hpp"

#include <cctype>

namespace synthorg::http_api {

HttpRequest to_http_request(BeastRequest& message, std::string remote_address) {
  HttpRequest request;
  request.method = std::string(message.method_string());
  auto target = std::string_view(message.target().data(), message.target().size());
  auto question = target.find('?');
  request.path = std::string(target.substr(0, question));
  if (question != std::string_view::npos) request.query = std::string(target.substr(question + 1));
  request.headers.reserve(8);
  for (const auto& field : message) {
    auto name = field.name_string();
    auto value = field.value();
    std::string lowered(name.data(), name.size());
    for (char& c : lowered) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + ('a' - 'A')) : c;  // ASCII, no locale
    request.headers.emplace_back(std::move(lowered), std::string(value.data(), value.size()));
  }
  request.body = std::move(message.body());
  request.remote_address = std::move(remote_address);
  return request;
}

}  // namespace synthorg::http_api

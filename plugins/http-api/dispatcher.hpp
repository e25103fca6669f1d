// The HttpDispatcher service: the router, gate and metrics of the API port offered to other
// plugins in the same kernel, so the web plugin can hand /api/* over without a network hop.
#pragma once

#include <memory>
#include <string>

#include "router.hpp"
#include "server.hpp"
#include "synthorg/log.hpp"

namespace synthorg::http_api {

class Dispatcher final : public HttpDispatcher {
 public:
  Dispatcher(std::shared_ptr<Router> router, Gate gate, Observer observer, std::string host, unsigned short port,
             log::Logger log)
      : router_(std::move(router)), gate_(std::move(gate)), observer_(std::move(observer)), host_(std::move(host)),
        port_(port), log_(std::move(log)) {}

  void dispatch(HttpRequest request, Responder respond) override;
  bool streams(std::string_view method, std::string_view path) const override {
    auto route = router_->match(method == "HEAD" ? "GET" : method, path).route;
    return route && route->proxy;
  }
  std::pair<std::string, unsigned short> endpoint() const override { return {host_, port_}; }

 private:
  std::shared_ptr<Router> router_;
  Gate gate_;
  Observer observer_;
  std::string host_;
  unsigned short port_;
  log::Logger log_;
};

}  // namespace synthorg::http_api

#include "dispatcher.hpp"

#include <atomic>
#include <chrono>

#include <fmt/format.h>

namespace synthorg::http_api {

// The same steps as a request on the API port (server.cpp): match, 404/405, gate, handler, a
// handler's HttpRequestError or exception turned into a problem. Kept apart from the socket
// session so that both can call it without one knowing the other's stream.
void Dispatcher::dispatch(HttpRequest request, Responder respond) {
  auto started = std::chrono::steady_clock::now();
  auto shared = std::make_shared<HttpRequest>(std::move(request));
  auto match = router_->match(shared->method == "HEAD" ? "GET" : shared->method, shared->path);
  auto answered = std::make_shared<std::atomic<bool>>(false);
  // A HEAD keeps its GET's body: the caller needs its length for Content-Length and sends none
  // of it (cleared here, the length would be lost: a HEAD said Content-Length: 0).
  Responder once = [shared, answered, respond = std::move(respond), observer = observer_,
                    pattern = match.pattern, started](HttpResponse response) {
    if (answered->exchange(true)) return;  // a second answer is a handler bug: ignore it
    if (observer)
      observer(shared->method, pattern, response.status,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
    respond(std::move(response));
  };
  if (!match.route) {
    if (!match.allowed_methods.empty()) {
      std::string allow;
      for (const auto& method : match.allowed_methods) allow += (allow.empty() ? "" : ", ") + method;
      auto response = HttpResponse::problem(
          405, "method_not_allowed", fmt::format("{} is not allowed on {}; use {}", shared->method, shared->path, allow));
      response.header("allow", allow);
      return once(std::move(response));
    }
    return once(HttpResponse::problem(404, "not_found", fmt::format("there is no route {}", shared->path)));
  }
  shared->params = std::move(match.params);
  if (auto refused = gate_(*match.route, *shared)) return once(std::move(*refused));
  if (match.route->proxy)  // a caller that did not ask streams() first
    return once(HttpResponse::problem(502, "stream_route",
                                      fmt::format("{} streams: send it to the API port itself", shared->path)));
  try {
    match.route->handler(*shared, once);
  } catch (const HttpRequestError& refused) {
    once(HttpResponse::problem(refused.status(), refused.code(), refused.what()));
  } catch (const std::exception& error) {
    log_.error("route handler threw", {{"route", match.pattern}, {"error", error.what()},
                                       {"request_id", shared->request_id}});
    once(HttpResponse::problem(500, "internal_error", "the server failed to handle this request; it was logged",
                               {{"request_id", shared->request_id}}));
  }
}

}  // namespace synthorg::http_api

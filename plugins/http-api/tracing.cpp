#include "tracing.hpp"

namespace synthorg::http_api {
namespace {

std::unique_ptr<Span> server_span(Tracer& tracer, const RouteSpec& route, const HttpRequest& request) {
  TraceContext parent;
  if (auto header = request.header("traceparent"); !header.empty())
    if (auto parsed = trace::parse_traceparent(header, request.header("tracestate"))) parent = std::move(*parsed);
  // The route template, not the path, names the span: ids in paths would make every name unique.
  auto span = tracer.start_span(route.pattern, SpanKind::server, parent);
  if (span->recording()) {
    span->set_attribute("http.request.method", request.method);
    span->set_attribute("http.route", route.pattern);
    span->set_attribute("url.path", request.path);
    span->set_attribute("synthorg.request_id", request.request_id);
  }
  return span;
}

void finish(Span& span, int status) {
  if (span.recording()) span.set_attribute("http.response.status_code", static_cast<std::int64_t>(status));
  // Server spans: 5xx is our failure; 4xx is the caller's and leaves the status unset.
  if (status >= 500) span.set_error("HTTP " + std::to_string(status));
  span.end();
}

}  // namespace

HttpHandler traced_handler(std::shared_ptr<Tracer> tracer, const RouteSpec& route, HttpHandler handler) {
  return [tracer = std::move(tracer), route = std::make_shared<const RouteSpec>(RouteSpec{
                                          route.method, route.pattern, route.access, route.role, {}, {}}),
          handler = std::move(handler)](HttpRequest& request, Responder respond) {
    std::shared_ptr<Span> span = server_span(*tracer, *route, request);
    trace::ScopedContext scope(span->context());
    try {
      handler(request, [span, respond = std::move(respond)](HttpResponse response) {
        finish(*span, response.status);
        respond(std::move(response));
      });
    } catch (const HttpRequestError& refused) {
      finish(*span, refused.status());
      throw;  // the server answers it
    } catch (...) {
      finish(*span, 500);
      throw;
    }
  };
}

void trace_refusal(Tracer& tracer, const RouteSpec& route, const HttpRequest& request, int status) {
  auto span = server_span(tracer, route, request);
  finish(*span, status);
}

}  // namespace synthorg::http_api

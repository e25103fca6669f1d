#include "tracing.hpp"

namespace synthorg::http_api {
namespace {

// A method a client made up would be a new span name per request: OpenTelemetry's _OTHER.
std::string_view known_method(std::string_view method) {
  for (std::string_view known : {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"})
    if (method == known) return known;
  return "_OTHER";
}

// `route` empty: the request matched none.
std::unique_ptr<Span> server_span(Tracer& tracer, std::string_view name, std::string_view route,
                                  const HttpRequest& request) {
  TraceContext parent;
  if (auto header = request.header("traceparent"); !header.empty())
    if (auto parsed = trace::parse_traceparent(header, request.header("tracestate"))) parent = std::move(*parsed);
  auto span = tracer.start_span(name, SpanKind::server, parent);
  if (span->recording()) {
    span->set_attribute("http.request.method", std::string(known_method(request.method)));
    if (!route.empty()) span->set_attribute("http.route", std::string(route));
    if (!request.path.empty()) span->set_attribute("url.path", request.path);
    span->set_attribute("synthorg.request_id", request.request_id);
  }
  return span;
}

std::unique_ptr<Span> server_span(Tracer& tracer, const RouteSpec& route, const HttpRequest& request) {
  return server_span(tracer, route.pattern, route.pattern, request);
}

void finish(Span& span, int status) {
  if (span.recording()) span.set_attribute("http.response.status_code", static_cast<std::int64_t>(status));
  // Server spans: 5xx is our failure; 4xx is the caller's and leaves the status unset.
  if (status >= 500) span.set_error("HTTP " + std::to_string(status));
  span.end();
}

HttpHandler traced_handler(std::shared_ptr<Tracer> tracer, std::string pattern, HttpHandler handler) {
  return [tracer = std::move(tracer), pattern = std::move(pattern), handler = std::move(handler)](HttpRequest& request,
                                                                                              Responder respond) {
    // Span and responder in one shared block, held by the wrapped responder and by the error
    // paths below: the handler may throw after it stored (or answered through) the responder.
    struct Answering {
      std::unique_ptr<Span> span;
      Responder respond;
    };
    auto state = std::make_shared<Answering>(Answering{server_span(*tracer, pattern, pattern, request), std::move(respond)});
    Span& span = *state->span;
    trace::ScopedContext scope(span.context());
    try {
      handler(request, [state](HttpResponse response) {
        finish(*state->span, response.status);
        state->respond(std::move(response));
      });
    } catch (const HttpRequestError& refused) {
      finish(span, refused.status());
      throw;  // the server answers it
    } catch (...) {
      finish(span, 500);
      throw;
    }
  };
}

ProxyResolver traced_proxy(std::shared_ptr<Tracer> tracer, std::string pattern, ProxyResolver resolve) {
  return [tracer = std::move(tracer), pattern = std::move(pattern), resolve = std::move(resolve)](HttpRequest& request,
                                                                                              ProxyDecide decide) {
    std::shared_ptr<Span> span = server_span(*tracer, pattern, pattern, request);
    trace::ScopedContext scope(span->context());
    auto traced_decide = [span, decide = std::move(decide)](ProxyDecision decision) {
      if (const auto* answer = std::get_if<HttpResponse>(&decision)) {
        finish(*span, answer->status);
      } else {
        // Set after the client's own headers: the workload sees this span as its parent.
        auto& target = std::get<ProxyTarget>(decision);
        const auto& context = span->context();
        target.headers.emplace_back("traceparent", trace::format_traceparent(context));
        if (!context.tracestate.empty()) target.headers.emplace_back("tracestate", context.tracestate);
        target.done = [span, done = std::move(target.done)](int status) {
          finish(*span, status == 0 ? 502 : status);  // 0: unreachable or broken off, answered 502
          if (done) done(status);
        };
      }
      decide(std::move(decision));
    };
    try {
      resolve(request, std::move(traced_decide));
    } catch (const HttpRequestError& refused) {
      finish(*span, refused.status());
      throw;
    } catch (...) {
      finish(*span, 500);
      throw;
    }
  };
}

}  // namespace

void trace_route(const std::shared_ptr<Tracer>& tracer, RouteSpec& route) {
  // The route template, not the path, names the span: ids in paths would make every name unique.
  if (route.handler) route.handler = traced_handler(tracer, route.pattern, std::move(route.handler));
  if (route.proxy) route.proxy = traced_proxy(tracer, route.pattern, std::move(route.proxy));
}

void trace_refusal(Tracer& tracer, const RouteSpec& route, const HttpRequest& request, int status) {
  auto span = server_span(tracer, route, request);
  finish(*span, status);
}

void trace_unrouted(Tracer& tracer, const HttpRequest& request, int status) {
  auto span = server_span(tracer, std::string(known_method(request.method)) + " unmatched", {}, request);
  finish(*span, status);
}

}  // namespace synthorg::http_api

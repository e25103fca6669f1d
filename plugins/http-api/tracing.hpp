// Server spans for HTTP requests, when a Tracer runs: each route handler is wrapped (see
// Router::wrap_handlers) so the span starts as the handler is called and ends when it answers;
// the incoming W3C traceparent/tracestate is the parent, and the span is the thread's current
// context while the handler runs (and, through the Executor, in the work it posts).
#pragma once

#include <memory>

#include "synthorg/services/http.hpp"
#include "synthorg/services/tracer.hpp"

namespace synthorg::http_api {

HttpHandler traced_handler(std::shared_ptr<Tracer> tracer, const RouteSpec& route, HttpHandler handler);

// A request the gate refused (401, 403) never reaches its handler: one span for the refusal.
void trace_refusal(Tracer& tracer, const RouteSpec& route, const HttpRequest& request, int status);

// A request no route took (404, 405) or that could not be read whole (400, 408, 413, 431): a
// span `<METHOD> unmatched` (an unknown method is _OTHER), without http.route.
void trace_unrouted(Tracer& tracer, const HttpRequest& request, int status);

}  // namespace synthorg::http_api

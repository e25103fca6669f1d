// Server spans for HTTP requests, when a Tracer runs: each route is wrapped (see
// Router::wrap_routes) so the span starts as its handler is called and ends when it answers —
// for a proxy route, when the upstream exchange ends; the incoming W3C traceparent/tracestate is
// the parent, and the span is the thread's current context while the handler or resolver runs
// (and, through the Executor, in the work it posts).
#pragma once

#include <memory>

#include "synthorg/services/http.hpp"
#include "synthorg/services/tracer.hpp"

namespace synthorg::http_api {

// Replaces the route's handler (or proxy resolver) with one that traces it. A proxied request
// goes upstream with this span as its traceparent.
void trace_route(const std::shared_ptr<Tracer>& tracer, RouteSpec& route);

// A request the gate refused (401, 403) never reaches its handler: one span for the refusal.
void trace_refusal(Tracer& tracer, const RouteSpec& route, const HttpRequest& request, int status);

// A request no route took (404, 405) or that could not be read whole (400, 408, 413, 431): a
// span `<METHOD> unmatched` (an unknown method is _OTHER), without http.route.
void trace_unrouted(Tracer& tracer, const HttpRequest& request, int status);

}  // namespace synthorg::http_api

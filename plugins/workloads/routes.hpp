// The HTTP side of workloads: /api/v1/workloads, /api/v1/workloads/{id}[/touch] and the proxy
// /api/v1/workloads/{id}/proxy/*, every route signed in and rate-limited per user. Handlers
// check the limit on the I/O thread and hand the Store and Orchestrator work to the blocking
// pool; http-api streams proxied exchanges itself (RouteSpec::proxy).
#pragma once

#include <memory>
#include <vector>

#include "manager.hpp"
#include "rate_limit.hpp"
#include "synthorg/log.hpp"
#include "synthorg/services/executor.hpp"
#include "synthorg/services/http.hpp"
#include "synthorg/services/settings.hpp"
#include "synthorg/token.hpp"

namespace synthorg::workloads {

struct RouteContext {
  Executor& executor;
  std::shared_ptr<Manager> manager;
  std::shared_ptr<Settings> settings;
  std::shared_ptr<RateLimiter> limiter;
  log::Logger log;
};

std::vector<Token> mount_routes(HttpRouter& router, std::shared_ptr<RouteContext> context);

}  // namespace synthorg::workloads

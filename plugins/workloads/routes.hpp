// The HTTP side of workloads: /api/v1/workloads and /api/v1/workloads/{id}[/touch], every route
// signed in and rate-limited per user. Handlers check the limit on the I/O thread and hand the
// Store and Orchestrator work to the blocking pool.
//
// TODO(issue 6, part 3): /api/v1/workloads/{id}/proxy/* (HTTP with streamed bodies and WebSocket
// upgrades to the container's endpoint, credentials stripped, last-used refreshed, the first
// request waiting for a spawn) is the next step; records already carry `urls.proxy`.
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

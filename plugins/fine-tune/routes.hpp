// The admin API of fine-tune: /api/v1/fine-tune/runs[/{id}[/cancel|/resume]] and /preflight.
// Bodies are checked on the I/O thread; Store and Orchestrator work goes to the blocking pool.
#pragma once

#include <memory>
#include <vector>

#include "manager.hpp"
#include "synthorg/log.hpp"
#include "synthorg/services/executor.hpp"
#include "synthorg/services/http.hpp"
#include "synthorg/token.hpp"

namespace synthorg::fine_tune {

struct RouteContext {
  Executor& executor;
  std::shared_ptr<Manager> manager;
  log::Logger log;
};

std::vector<Token> mount_routes(HttpRouter& router, std::shared_ptr<RouteContext> context);

}  // namespace synthorg::fine_tune

// The routes http-api serves itself: liveness and readiness (with the PondPilot-style
// aliases), the OpenAPI document, Prometheus metrics and the capability list.
#pragma once

#include <memory>
#include <vector>

#include "metrics.hpp"
#include "router.hpp"
#include "server.hpp"
#include "synthorg/plugin.hpp"

namespace synthorg::http_api {

std::vector<Token> mount_probes(Router& router, PluginContext& context, std::shared_ptr<RequestMetrics> metrics);

}  // namespace synthorg::http_api

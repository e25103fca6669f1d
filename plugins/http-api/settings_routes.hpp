// The settings API (/api/v1/settings...) and introspection (/api/v1/plugins, /api/v1/services).
#pragma once

#include <vector>

#include "router.hpp"
#include "synthorg/plugin.hpp"

namespace synthorg::http_api {

std::vector<Token> mount_settings_routes(Router& router, PluginContext& context);

}  // namespace synthorg::http_api

// The process's own figures, read from /proc at each scrape: CPU seconds, resident memory,
// open file descriptors, start time and uptime (the names the Prometheus client libraries use).
#pragma once

#include "synthorg/services/metrics.hpp"

namespace synthorg::telemetry {

Token watch_process(Metrics& metrics);

}  // namespace synthorg::telemetry

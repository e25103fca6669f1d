// One HTTP/1.1 GET with a deadline, for `synthorg probe` and the doctor's port check. The
// container image has no shell and no curl, so compose health checks and Kubernetes exec
// probes run the image's own binary.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace synthorg::kernel {

struct ProbeResult {
  int status = 0;     // the HTTP status, 0 when no response came
  std::string error;  // why no response came
};

// `host` is an IP address (or "localhost"); no TLS: probes go to the server's own port.
ProbeResult http_get(const std::string& host, std::uint16_t port, const std::string& target,
                     std::chrono::milliseconds timeout);

}  // namespace synthorg::kernel

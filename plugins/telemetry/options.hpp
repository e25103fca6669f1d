// What the environment says about telemetry, read once at start and checked there: a bad value
// stops start-up with a message naming the variable, the value and the fix, rather than
// tracing silently nowhere. Functions take the environment as a lookup so tests can give each
// case its own, without touching the process's.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace synthorg::telemetry {

// Returns the variable's value, or nullopt when unset.
using Environment = std::function<std::optional<std::string>(std::string_view name)>;
Environment process_environment();

struct TraceOptions {
  std::string endpoint;  // empty: tracing off
  double sampling_ratio = 1.0;
  std::string service_name = "synthorg";
};

// SYNTHORG_TRACE_OTLP_ENDPOINT, SYNTHORG_TRACE_SAMPLING_RATIO, SYNTHORG_TRACE_SERVICE_NAME.
// Throws std::invalid_argument with the reason.
TraceOptions trace_options(const Environment& env);

// OTLP/HTTP's two encodings, named as OTEL_EXPORTER_OTLP_PROTOCOL names them.
enum class OtlpProtocol { http_protobuf, http_json };
std::string_view protocol_name(OtlpProtocol protocol);

// SYNTHORG_TRACE_OTLP_PROTOCOL when set and not empty (it wins, as the other SYNTHORG_TRACE_*
// do), else `configured` (the telemetry plugin's `protocol` setting): http/protobuf or
// http/json. Throws std::invalid_argument naming where the value came from, the value, and the
// two accepted values. It governs traces and product telemetry alike.
OtlpProtocol otlp_protocol(const Environment& env, std::string_view configured);

// An http(s) URL with a host, no userinfo, nothing but a path after it; throws
// std::invalid_argument naming `variable` otherwise.
void check_endpoint(std::string_view url, std::string_view variable);

// true/1/yes → true, false/0/no → false (any case, spaces trimmed), unset or empty → false;
// anything else throws std::invalid_argument.
bool parse_enabled(const std::optional<std::string>& value, std::string_view variable);

// The environment tag: SYNTHORG_TELEMETRY_ENV, then "ci" when a CI marker is set (CI,
// GITLAB_CI, BUILDKITE, JENKINS_URL, any RUNPOD_*), then SYNTHORG_TELEMETRY_ENV_BAKED, then
// `configured`, then "dev". `names` lists the environment's variable names (for RUNPOD_*).
std::string resolve_environment(const Environment& env, const std::function<bool(std::string_view prefix)>& has_prefix,
                                std::string_view configured);
// The same on the process's own environment.
std::string resolve_environment(std::string_view configured);

}  // namespace synthorg::telemetry

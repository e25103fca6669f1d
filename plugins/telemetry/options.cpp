#include "options.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <stdexcept>

#include <Poco/URI.h>
#include <fmt/format.h>

extern char** environ;

namespace synthorg::telemetry {
namespace {

std::string trimmed_lower(std::string_view text) {
  auto begin = text.find_first_not_of(" \t\r\n");
  if (begin == std::string_view::npos) return {};
  auto end = text.find_last_not_of(" \t\r\n");
  std::string out(text.substr(begin, end - begin + 1));
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

// A CI runner may set these to "false" or "0" when it means no; anything else counts.
bool marker_set(const std::optional<std::string>& value) {
  if (!value) return false;
  auto word = trimmed_lower(*value);
  return !word.empty() && word != "false" && word != "0" && word != "no";
}

}  // namespace

Environment process_environment() {
  return [](std::string_view name) -> std::optional<std::string> {
    const char* value = std::getenv(std::string(name).c_str());
    if (!value) return std::nullopt;
    return std::string(value);
  };
}

void check_endpoint(std::string_view url, std::string_view variable) {
  auto refuse = [&](std::string_view why) {
    // Userinfo may hold a secret: the value is only echoed when it has none.
    bool has_userinfo = url.find('@') != std::string_view::npos;
    throw std::invalid_argument(fmt::format("{}={} is not a usable OTLP endpoint: {} (fix: e.g. "
                                            "http://otel-collector:4318/v1/traces)",
                                            variable, has_userinfo ? "<redacted>" : std::string(url), why));
  };
  Poco::URI uri;
  try {
    uri = Poco::URI(std::string(url));
  } catch (const std::exception& error) {
    refuse(fmt::format("it is not a URL ({})", error.what()));
  }
  if (uri.getScheme() != "http" && uri.getScheme() != "https")
    refuse(uri.getScheme().empty() ? "it has no scheme; only http and https are supported"
                                   : fmt::format("the scheme '{}' is not http or https", uri.getScheme()));
  if (uri.getHost().empty()) refuse("it has no host");
  if (!uri.getUserInfo().empty()) refuse("credentials in the URL are not supported");
  if (!uri.getFragment().empty()) refuse("it has a #fragment");
  if (url.find_first_of(" \t\r\n") != std::string_view::npos) refuse("it contains white space");
}

TraceOptions trace_options(const Environment& env) {
  TraceOptions options;
  if (auto endpoint = env("SYNTHORG_TRACE_OTLP_ENDPOINT"); endpoint && !endpoint->empty()) {
    check_endpoint(*endpoint, "SYNTHORG_TRACE_OTLP_ENDPOINT");
    options.endpoint = *endpoint;
  }
  if (auto ratio = env("SYNTHORG_TRACE_SAMPLING_RATIO"); ratio && !ratio->empty()) {
    std::size_t used = 0;
    double value = NAN;
    try {
      value = std::stod(*ratio, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != ratio->size() || !std::isfinite(value) || value < 0 || value > 1)
      throw std::invalid_argument(fmt::format("SYNTHORG_TRACE_SAMPLING_RATIO={} is not a ratio from 0.0 to 1.0 "
                                              "(fix: e.g. 0.1 to keep one trace in ten, 1 to keep all)",
                                              *ratio));
    options.sampling_ratio = value;
  }
  if (auto name = env("SYNTHORG_TRACE_SERVICE_NAME"); name && !name->empty()) {
    if (name->size() > 128 || std::any_of(name->begin(), name->end(), [](unsigned char c) { return c < 0x20; }))
      throw std::invalid_argument("SYNTHORG_TRACE_SERVICE_NAME must be at most 128 printable characters");
    options.service_name = *name;
  }
  return options;
}

std::string_view protocol_name(OtlpProtocol protocol) {
  return protocol == OtlpProtocol::http_json ? "http/json" : "http/protobuf";
}

OtlpProtocol otlp_protocol(const Environment& env, std::string_view configured) {
  std::string source = "telemetry.protocol";
  std::string value(configured);
  if (auto variable = env("SYNTHORG_TRACE_OTLP_PROTOCOL"); variable && !variable->empty()) {
    source = "SYNTHORG_TRACE_OTLP_PROTOCOL";
    value = *variable;
  }
  // Trimmed and in any case, as the on/off flags are read; the values themselves are OTel's.
  auto word = trimmed_lower(value);
  if (word == "http/protobuf") return OtlpProtocol::http_protobuf;
  if (word == "http/json") return OtlpProtocol::http_json;
  throw std::invalid_argument(fmt::format("{}={} is not an OTLP protocol this exporter speaks (fix: http/protobuf, "
                                          "the default, or http/json; grpc is not supported)",
                                          source, value));
}

bool parse_enabled(const std::optional<std::string>& value, std::string_view variable) {
  if (!value) return false;
  auto word = trimmed_lower(*value);
  if (word.empty() || word == "false" || word == "0" || word == "no") return false;
  if (word == "true" || word == "1" || word == "yes") return true;
  throw std::invalid_argument(fmt::format("{}={} is neither on (true, 1, yes) nor off (false, 0, no)", variable,
                                          *value));
}

std::string resolve_environment(const Environment& env, const std::function<bool(std::string_view)>& has_prefix,
                                std::string_view configured) {
  auto clean = [](const std::optional<std::string>& value) { return value ? trimmed_lower(*value) : std::string(); };
  if (auto explicit_tag = clean(env("SYNTHORG_TELEMETRY_ENV")); !explicit_tag.empty()) return explicit_tag.substr(0, 64);
  for (const char* marker : {"CI", "GITLAB_CI", "BUILDKITE", "JENKINS_URL"})
    if (marker_set(env(marker))) return "ci";
  if (has_prefix("RUNPOD_")) return "ci";
  if (auto baked = clean(env("SYNTHORG_TELEMETRY_ENV_BAKED")); !baked.empty()) return baked.substr(0, 64);
  if (auto tag = trimmed_lower(configured); !tag.empty()) return tag.substr(0, 64);
  return "dev";
}

std::string resolve_environment(std::string_view configured) {
  return resolve_environment(process_environment(), [](std::string_view prefix) {
    for (char** entry = environ; entry && *entry; ++entry)
      if (std::string_view(*entry).starts_with(prefix)) return true;
    return false;
  }, configured);
}

}  // namespace synthorg::telemetry

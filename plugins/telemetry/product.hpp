// Product telemetry, opt-in (SYNTHORG_TELEMETRY_ENABLED): deployment.startup, .heartbeat and
// .shutdown as OTLP log records. What may leave is decided here and nowhere else: a property
// must be on the allowlist, its key must match no denied pattern, and strings are capped, so a
// caller cannot leak a secret by passing it in.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "exporter.hpp"
#include "otlp_json.hpp"

namespace synthorg::telemetry {

// Keys whose name contains any of these (case-insensitive) never leave, whatever the allowlist says.
bool denied_key(std::string_view key);
// The properties allowed out, as OTLP attributes: allowlisted and not denied, scalars or lists
// of strings only (joined), strings cut at 64 characters. Everything else is dropped.
Attributes allowed_properties(const nlohmann::json& properties);

// The install's anonymous id: a random UUID in <data_dir>/telemetry-id, created on first use.
// Nothing about the host goes into it.
std::string anonymous_id(const std::filesystem::path& data_dir);

struct ProductOptions {
  std::string endpoint;  // OTLP logs URL; empty: events are built (and tested) but not sent
  std::string environment;
  std::filesystem::path data_dir;
  ExportOptions export_options;
};

class ProductTelemetry {
 public:
  ProductTelemetry(ProductOptions options, log::Logger log);
  // Builds the event and, when an endpoint is set, sends it (blocking: call from the blocking
  // pool, or at shutdown with the stop deadline).
  void send(std::string_view event, const nlohmann::json& properties,
            std::chrono::steady_clock::time_point deadline);
  // The last body built, for tests and `--dry-run` style inspection: encoded as
  // export_options.protocol says (binary under http/protobuf).
  std::string last_body() const;
  const std::string& id() const noexcept { return id_; }

 private:
  ProductOptions options_;
  log::Logger log_;
  std::string id_;
  Resource resource_;
  const OtlpEncoding& encoding_;  // the export options' protocol, as the sender sends it
  std::unique_ptr<OtlpSender> sender_;
  mutable std::mutex mutex_;
  std::string last_body_;
};

}  // namespace synthorg::telemetry

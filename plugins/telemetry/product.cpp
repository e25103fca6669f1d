#include "product.hpp"

#include <algorithm>
#include <array>
#include <fstream>
#include <regex>
#include <set>

#include <fmt/format.h>

#include "span_data.hpp"
#include "synthorg/crypto.hpp"
#include "synthorg/version.hpp"

namespace synthorg::telemetry {
namespace {

constexpr std::size_t max_string = 64;

// What an event may carry: the version, which plugins and backends run, counts, uptime.
const std::set<std::string, std::less<>> allowlist{
    "version",         "plugins",        "plugin_count", "store_backend",  "orchestrator_backend",
    "uptime_seconds",  "workloads_active", "users_count", "event_count",   "os",
    "arch",            "threads",        "heartbeat_seq", "reason",
};

constexpr std::array<std::string_view, 9> denied_patterns{"key",  "token",  "secret",  "password", "credential",
                                                          "auth", "prompt", "content", "message"};

std::string lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

std::string capped(std::string_view text) { return sanitize_utf8(text, max_string); }

std::uint64_t unix_nanos() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
}

}  // namespace

bool denied_key(std::string_view key) {
  auto name = lower(key);
  return std::any_of(denied_patterns.begin(), denied_patterns.end(),
                     [&](std::string_view pattern) { return name.find(pattern) != std::string::npos; });
}

Attributes allowed_properties(const nlohmann::json& properties) {
  Attributes out;
  if (!properties.is_object()) return out;
  for (const auto& [key, value] : properties.items()) {
    if (denied_key(key) || !allowlist.contains(key)) continue;
    if (value.is_string()) {
      out.emplace_back(key, capped(value.get<std::string>()));
    } else if (value.is_boolean()) {
      out.emplace_back(key, value.get<bool>());
    } else if (value.is_number_integer()) {
      out.emplace_back(key, value.get<std::int64_t>());
    } else if (value.is_number()) {
      out.emplace_back(key, value.get<double>());
    } else if (value.is_array()) {
      // Plugin names: each one a name, not free text; the joined list capped like any string.
      std::string joined;
      for (const auto& item : value)
        if (item.is_string()) joined += (joined.empty() ? "" : ",") + item.get<std::string>();
      out.emplace_back(key, capped(joined));
    }
  }
  return out;
}

std::string anonymous_id(const std::filesystem::path& data_dir) {
  static const std::regex uuid("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$");
  auto file = data_dir / "telemetry-id";
  std::string existing;
  if (std::ifstream in(file); in >> existing && std::regex_match(existing, uuid)) return existing;
  auto bytes = crypto::random_bytes(16);
  bytes[6] = static_cast<char>((bytes[6] & 0x0f) | 0x40);  // version 4
  bytes[8] = static_cast<char>((bytes[8] & 0x3f) | 0x80);  // RFC 4122 variant
  auto hex = trace::to_hex(reinterpret_cast<const std::uint8_t*>(bytes.data()), 16);
  auto id = fmt::format("{}-{}-{}-{}-{}", hex.substr(0, 8), hex.substr(8, 4), hex.substr(12, 4), hex.substr(16, 4),
                        hex.substr(20));
  std::error_code ignored;
  std::filesystem::create_directories(data_dir, ignored);
  auto temporary = file;
  temporary += ".tmp";
  {
    std::ofstream out(temporary, std::ios::trunc);
    out << id << '\n';
    if (!out) throw std::runtime_error(fmt::format("cannot write the telemetry id to {} (fix: make the data "
                                                   "directory writable, or turn product telemetry off)",
                                                   file.string()));
  }
  std::filesystem::rename(temporary, file);
  return id;
}

ProductTelemetry::ProductTelemetry(ProductOptions options, log::Logger log)
    : options_(std::move(options)), log_(std::move(log)), id_(anonymous_id(options_.data_dir)),
      encoding_(encoding_of(options_.export_options.protocol)) {
  // No host name, no instance id, no address: the install is known only by its random id.
  resource_.attributes = {{"service.name", std::string("synthorg")},
                          {"service.version", std::string(SYNTHORG_SDK_VERSION)},
                          {"synthorg.install.id", id_},
                          {"deployment.environment", capped(options_.environment)}};
  if (!options_.endpoint.empty()) {
    auto export_options = options_.export_options;
    export_options.endpoint = options_.endpoint;
    sender_ = std::make_unique<OtlpSender>(export_options, log_);
  }
}

void ProductTelemetry::send(std::string_view event, const nlohmann::json& properties,
                            std::chrono::steady_clock::time_point deadline) {
  LogEvent record{unix_nanos(), std::string(event), allowed_properties(properties)};
  std::string body;
  encoding_.logs(body, resource_, "synthorg.product", SYNTHORG_SDK_VERSION, {record});
  {
    std::lock_guard lock(mutex_);
    last_body_ = body;
  }
  if (!sender_) return;
  if (sender_->send(body, deadline) != SendResult::sent)
    log_.debug("product telemetry event not delivered", {{"event", std::string(event)}});
}

std::string ProductTelemetry::last_body() const {
  std::lock_guard lock(mutex_);
  return last_body_;
}

}  // namespace synthorg::telemetry

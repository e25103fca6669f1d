// telemetry: the Metrics service (with process metrics) always; the Tracer and its OTLP/HTTP
// exporter (binary protobuf, or JSON) while SYNTHORG_TRACE_OTLP_ENDPOINT is set; opt-in
// product telemetry while SYNTHORG_TELEMETRY_ENABLED says so. Reading order: options (the environment, checked),
// tracer + exporter, product, process metrics.
#include <unistd.h>

#include <mutex>

#include <boost/asio/steady_timer.hpp>
#include <fmt/format.h>

#include "exporter.hpp"
#include "options.hpp"
#include "process_metrics.hpp"
#include "product.hpp"
#include "tracer.hpp"
#include "synthorg/crypto.hpp"
#include "synthorg/plugin.hpp"
#include "synthorg/services/kernel_info.hpp"
#include "synthorg/services/metrics.hpp"
#include "synthorg/version.hpp"

namespace synthorg::telemetry {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

std::string host_name() {
  char buffer[256] = {};
  return ::gethostname(buffer, sizeof buffer - 1) == 0 ? std::string(buffer) : std::string("unknown");
}

std::string instance_id() {
  auto bytes = crypto::random_bytes(16);
  return trace::to_hex(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
}

// Runs `tick` every `interval` on the io_context; the work itself goes to the blocking pool.
class Heartbeat : public std::enable_shared_from_this<Heartbeat> {
 public:
  Heartbeat(Executor& executor, milliseconds interval, std::function<void()> tick)
      : executor_(executor), interval_(interval), timer_(executor.io_context()), tick_(std::move(tick)) {}
  void start() { arm(); }
  // Returns once no tick runs: a tick uses the plugin, which goes after stop().
  void stop() {
    stopped_ = true;
    executor_.post([self = shared_from_this()] { self->timer_.cancel(); });
    std::lock_guard wait(ticking_);
  }

 private:
  void arm() {
    timer_.expires_after(interval_);
    timer_.async_wait([self = shared_from_this()](const boost::system::error_code& error) {
      if (error || self->stopped_) return;
      self->executor_.try_post_blocking([self] {
        std::lock_guard running(self->ticking_);
        if (!self->stopped_) self->tick_();
      });
      self->arm();
    });
  }

  Executor& executor_;
  milliseconds interval_;
  boost::asio::steady_timer timer_;
  std::function<void()> tick_;
  std::atomic<bool> stopped_{false};
  std::mutex ticking_;
};

class TelemetryPlugin final : public Plugin {
 public:
  static PluginManifest manifest() {
    return {.name = "telemetry",
            .version = "0.1.0",
            .description = "Metrics (Prometheus, with process metrics), OpenTelemetry traces over OTLP/HTTP, "
                           "opt-in anonymous product telemetry",
            // Tracer too, but only while tracing is on: it is not declared, since a declared
            // service must be registered. Plugins that use it need Metrics (optional) as well,
            // which orders them after this plugin.
            .provides = {std::string(Metrics::service_id)},
            .needs = {{"synthorg.Executor/1", true}, {"synthorg.KernelInfo/1", false}},
            .config = ConfigMap{}
                          .integer("batch_size", 512, "Spans per OTLP request at most")
                          .range(1, 10'000)
                          .integer("queue_size", 8192, "Spans waiting for export at most; more are dropped and counted")
                          .range(1, 1'000'000)
                          .duration("batch_delay", "2s", "A batch smaller than batch_size is sent after this")
                          .duration("export_timeout", "10s", "One OTLP request, connect to answer")
                          .integer("max_attempts", 5, "Tries per batch on 429/502/503/504 or an unreachable collector")
                          .range(1, 20)
                          .enumeration("protocol", {"http/protobuf", "http/json"}, "http/protobuf",
                                       "OTLP/HTTP encoding of traces and product telemetry: binary protobuf "
                                       "(application/x-protobuf) or JSON (application/json); "
                                       "SYNTHORG_TRACE_OTLP_PROTOCOL, when set, wins")
                          .boolean("gzip", true, "Compress OTLP requests (Content-Encoding: gzip)")
                          .integer("max_attribute_bytes", 1024, "Longest attribute value sent; longer ones are cut")
                          .range(16, 65'536)
                          .duration("shutdown_flush", "3s", "On stop, how long queued spans and events may take to go")
                          .string("environment", "", "Product telemetry's environment tag when neither "
                                                     "SYNTHORG_TELEMETRY_ENV, a CI marker nor "
                                                     "SYNTHORG_TELEMETRY_ENV_BAKED says (empty: dev)")
                          .string("product_endpoint", "", "OTLP/HTTP logs URL that product telemetry goes to "
                                                          "(only when SYNTHORG_TELEMETRY_ENABLED is on)")
                          .string("data_dir", "./data", "Where the anonymous install id (telemetry-id) is kept")
                          .duration("heartbeat_interval", "1h", "How often product telemetry sends a heartbeat")};
  }
  explicit TelemetryPlugin(PluginContext& context) : context_(context) {}

  void configure(const json& config) override { config_ = config; }

  void start() override {
    auto environment = process_environment();
    // These throw with the variable, the value and the fix: the kernel refuses to start.
    auto trace = trace_options(environment);
    auto protocol = otlp_protocol(environment, config_.at("protocol").get<std::string>());
    bool product_on = parse_enabled(environment("SYNTHORG_TELEMETRY_ENABLED"), "SYNTHORG_TELEMETRY_ENABLED");
    auto product_endpoint = config_.at("product_endpoint").get<std::string>();
    if (product_on && !product_endpoint.empty()) check_endpoint(product_endpoint, "telemetry.product_endpoint");

    ExportOptions export_options;
    export_options.protocol = protocol;  // product telemetry copies these: one protocol for both
    export_options.gzip = config_.at("gzip").get<bool>();
    export_options.timeout = milliseconds(config_.at("export_timeout").get<std::int64_t>());
    export_options.max_attempts = static_cast<int>(config_.at("max_attempts").get<std::int64_t>());
    auto flush = milliseconds(config_.at("shutdown_flush").get<std::int64_t>());

    auto metrics = make_metrics_registry();
    std::vector<Token> tokens;
    tokens.push_back(watch_process(*metrics));

    std::shared_ptr<SpanExporter> exporter;
    std::shared_ptr<TracerImpl> tracer;
    if (!trace.endpoint.empty()) {
      Resource resource{{{"service.name", trace.service_name},
                         {"service.version", std::string(SYNTHORG_SDK_VERSION)},
                         {"service.instance.id", instance_id()},
                         {"host.name", sanitize_utf8(host_name(), 255)},
                         {"telemetry.sdk.name", std::string("synthorg")},
                         {"telemetry.sdk.language", std::string("cpp")},
                         {"telemetry.sdk.version", std::string(SYNTHORG_SDK_VERSION)}}};
      export_options.endpoint = trace.endpoint;
      BatchOptions batch{static_cast<std::size_t>(config_.at("queue_size").get<std::int64_t>()),
                         static_cast<std::size_t>(config_.at("batch_size").get<std::int64_t>()),
                         milliseconds(config_.at("batch_delay").get<std::int64_t>())};
      exporter = std::make_shared<SpanExporter>(std::move(resource), export_options, batch, log::Logger("telemetry.otlp"));
      TracerLimits limits;
      limits.max_attribute_bytes = static_cast<std::size_t>(config_.at("max_attribute_bytes").get<std::int64_t>());
      tracer = std::make_shared<TracerImpl>(trace.sampling_ratio, limits,
                                            [exporter](SpanData&& span) { exporter->enqueue(std::move(span)); });
      tokens.push_back(watch_exporter(*metrics, exporter));
    }

    std::shared_ptr<ProductTelemetry> product;
    if (product_on) {
      ProductOptions options;
      options.endpoint = product_endpoint;
      options.environment = resolve_environment(config_.at("environment").get<std::string>());
      options.data_dir = config_.at("data_dir").get<std::string>();
      options.export_options = export_options;
      options.export_options.max_attempts = 3;
      product = std::make_shared<ProductTelemetry>(std::move(options), log::Logger("telemetry.product"));
    }

    // Registered last: nothing above can fail after a service is visible.
    auto metrics_registration = context_.registry().provide<Metrics>(metrics);
    Registration tracer_registration;
    if (tracer) tracer_registration = context_.registry().provide<Tracer>(tracer);

    started_ = Clock::now();
    if (product) {
      product_started(product);
      heartbeat_ = std::make_shared<Heartbeat>(context_.executor(),
                                               milliseconds(config_.at("heartbeat_interval").get<std::int64_t>()),
                                               [this, product] { product->send("deployment.heartbeat", properties(), deadline()); });
      heartbeat_->start();
    }
    tokens_ = std::move(tokens);
    exporter_ = std::move(exporter);
    product_ = std::move(product);
    flush_ = flush;
    metrics_registration_ = std::move(metrics_registration);
    tracer_registration_ = std::move(tracer_registration);
    context_.log().info("telemetry started",
                        {{"tracing", trace.endpoint.empty() ? "off" : "on"},
                         {"sampling_ratio", trace.sampling_ratio},
                         {"protocol", std::string(protocol_name(protocol))},
                         {"service_name", trace.service_name},
                         {"product_telemetry", product_on ? "on" : "off"}});
  }

  void stop() override {
    if (heartbeat_) heartbeat_->stop();
    heartbeat_.reset();
    if (product_) product_->send("deployment.shutdown", properties(), Clock::now() + std::min(flush_, milliseconds(2000)));
    product_.reset();
    tracer_registration_.reset();
    metrics_registration_.reset();
    // The plugins that made spans have stopped (they depend on us): flush what they left.
    if (exporter_) exporter_->shutdown(flush_);
    exporter_.reset();
    tokens_.clear();
  }

 private:
  static Token watch_exporter(Metrics& metrics, const std::shared_ptr<SpanExporter>& exporter) {
    const char* help = "Spans the OTLP exporter dropped: queue_full (never blocking), rejected (4xx), failed "
                       "(retries exhausted or unsent at shutdown).";
    auto exported = metrics.counter("synthorg_telemetry_spans_exported_total", "Spans the collector accepted.");
    auto queue_full = metrics.counter("synthorg_telemetry_spans_dropped_total", help, {{"reason", "queue_full"}});
    auto rejected = metrics.counter("synthorg_telemetry_spans_dropped_total", help, {{"reason", "rejected"}});
    auto failed = metrics.counter("synthorg_telemetry_spans_dropped_total", help, {{"reason", "failed"}});
    // The exporter counts; each scrape adds what it counted since the last one.
    struct Last {
      std::mutex mutex;
      std::uint64_t exported = 0, queue_full = 0, rejected = 0, failed = 0;
    };
    auto last = std::make_shared<Last>();
    auto advance = [](Counter& counter, std::uint64_t now, std::uint64_t& before) {
      if (now > before) counter.add(static_cast<double>(now - before));
      before = now;
    };
    std::weak_ptr<SpanExporter> weak = exporter;
    return metrics.add_collector([=] {
      auto live = weak.lock();
      if (!live) return;
      const auto& stats = live->stats();
      std::lock_guard lock(last->mutex);
      advance(*exported, stats.exported.load(), last->exported);
      advance(*queue_full, stats.dropped_queue_full.load(), last->queue_full);
      advance(*rejected, stats.dropped_rejected.load(), last->rejected);
      advance(*failed, stats.dropped_failed.load(), last->failed);
    });
  }

  Clock::time_point deadline() const { return Clock::now() + milliseconds(config_.at("export_timeout").get<std::int64_t>()); }

  // Only what the allowlist in product.cpp lets out is kept; this builds the candidates.
  json properties() const {
    json out = {{"version", SYNTHORG_SDK_VERSION},
                {"uptime_seconds", std::chrono::duration<double>(Clock::now() - started_).count()}};
    if (auto kernel = context_.registry().get<KernelInfo>()) {
      json names = json::array();
      for (const auto& plugin : kernel->plugins()) {
        auto name = plugin.value("name", "");
        names.push_back(name);
        if (name.starts_with("store-")) out["store_backend"] = name.substr(6);
        if (name.starts_with("orchestrator-")) out["orchestrator_backend"] = name.substr(13);
      }
      out["plugins"] = names;
      out["plugin_count"] = names.size();
    }
    return out;
  }

  void product_started(const std::shared_ptr<ProductTelemetry>& product) {
    auto due = deadline();
    if (!context_.executor().try_post_blocking([product, properties = properties(), due] {
          product->send("deployment.startup", properties, due);
        }))
      context_.log().debug("product telemetry: the blocking pool is full; the startup event is skipped");
  }

  PluginContext& context_;
  json config_;
  Clock::time_point started_ = Clock::now();
  milliseconds flush_{3000};
  std::vector<Token> tokens_;
  std::shared_ptr<SpanExporter> exporter_;
  std::shared_ptr<ProductTelemetry> product_;
  std::shared_ptr<Heartbeat> heartbeat_;
  Registration metrics_registration_, tracer_registration_;
};

}  // namespace
}  // namespace synthorg::telemetry

SYNTHORG_PLUGIN(synthorg::telemetry::TelemetryPlugin)

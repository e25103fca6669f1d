// OTLP/HTTP export: one POST per batch through the SDK's HttpClient (gzip, a timeout, retries
// with backoff on 429/502/503/504 and on a collector that cannot be reached, honouring
// Retry-After), and a batching span processor in front of it whose bounded queue drops (and
// counts) rather than ever blocking the thread that ended a span.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "options.hpp"
#include "otlp_json.hpp"
#include "synthorg/http_client.hpp"
#include "synthorg/log.hpp"

namespace synthorg::telemetry {

// One OTLP/HTTP encoding: its Content-Type and its encoders, which write a whole request into
// `out` (cleared first, its capacity kept). Picked once from ExportOptions::protocol; the
// exporter, the sender and product telemetry all go through the one they were given.
struct OtlpEncoding {
  std::string_view content_type;
  void (*traces)(std::string& out, const Resource& resource, std::string_view scope_version,
                 std::span<const SpanData> spans);
  void (*logs)(std::string& out, const Resource& resource, std::string_view scope_name,
               std::string_view scope_version, const std::vector<LogEvent>& events);
};
const OtlpEncoding& encoding_of(OtlpProtocol protocol);

struct ExportOptions {
  std::string endpoint;  // the full URL, e.g. http://collector:4318/v1/traces
  // Binary protobuf by default, as OTel SDKs default to: a fraction of JSON's CPU to encode
  // and to gzip, on the exporter's one thread.
  OtlpProtocol protocol = OtlpProtocol::http_protobuf;
  bool gzip = true;
  std::chrono::milliseconds timeout{10'000};         // one attempt, connect to answer
  std::chrono::milliseconds initial_backoff{500};
  std::chrono::milliseconds max_backoff{30'000};     // also caps what Retry-After may ask for
  int max_attempts = 5;
};

enum class SendResult { sent, rejected, failed };

// Posts OTLP bodies, encoded as options().protocol says (encoding()), to one endpoint. Blocking: call it from the exporter's thread or the
// blocking pool. `deadline` bounds the attempts (shutdown gives a short one).
class OtlpSender {
 public:
  OtlpSender(ExportOptions options, log::Logger log);
  SendResult send(const std::string& body, std::chrono::steady_clock::time_point deadline);
  // Brings the deadline of the send under way (and of later ones) forward to `deadline`: at
  // shutdown, a batch waiting out a backoff must not hold the process for its whole budget.
  void shorten(std::chrono::steady_clock::time_point deadline);
  const ExportOptions& options() const noexcept { return options_; }
  const OtlpEncoding& encoding() const noexcept { return encoding_; }

 private:
  ExportOptions options_;
  const OtlpEncoding& encoding_;
  std::string target_;
  http::HttpClient client_;
  log::Logger log_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::chrono::steady_clock::time_point limit_ = std::chrono::steady_clock::time_point::max();
};

struct BatchOptions {
  std::size_t max_queue = 8192;
  std::size_t max_batch = 512;
  std::chrono::milliseconds delay{2000};  // a partial batch goes after this
};

struct ExporterStats {
  std::atomic<std::uint64_t> exported{0};
  std::atomic<std::uint64_t> dropped_queue_full{0};
  std::atomic<std::uint64_t> dropped_rejected{0};  // the collector answered 4xx: not retried
  std::atomic<std::uint64_t> dropped_failed{0};    // retries exhausted, or still queued at shutdown
  std::atomic<std::uint64_t> batches{0};
};

class SpanExporter {
 public:
  SpanExporter(Resource resource, ExportOptions export_options, BatchOptions batch, log::Logger log);
  ~SpanExporter();

  // Never blocks beyond a short lock: a full queue drops the span and counts it.
  void enqueue(SpanData&& span) noexcept;
  // Sends what is queued within `grace`, then stops the thread; what is left is counted dropped.
  void shutdown(std::chrono::milliseconds grace);
  const ExporterStats& stats() const noexcept { return stats_; }

 private:
  void run();

  Resource resource_;
  BatchOptions batch_;
  OtlpSender sender_;
  log::Logger log_;
  ExporterStats stats_;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::vector<SpanData> queue_;
  std::vector<SpanData> spent_;  // exported, waiting to be recycled by the next enqueue
  bool stopping_ = false;
  std::chrono::steady_clock::time_point deadline_ = std::chrono::steady_clock::time_point::max();
  // One thread of its own: export blocks on the network and waits out backoffs, which would
  // hold a slot of the shared blocking pool for as long as a collector is down.
  std::thread thread_;
};

// gzip (RFC 1952) through libdeflate.
std::string gzip(std::string_view data);

}  // namespace synthorg::telemetry

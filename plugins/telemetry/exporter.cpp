#include "exporter.hpp"

#include <pthread.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <random>

#include <Poco/URI.h>
#include <fmt/format.h>
#include <libdeflate.h>

#include "otlp_protobuf.hpp"
#include "synthorg/version.hpp"

namespace synthorg::telemetry {
namespace {

using Clock = std::chrono::steady_clock;

http::ClientOptions client_options(const ExportOptions& options) {
  Poco::URI uri(options.endpoint);
  http::ClientOptions client;
  client.base_url = uri.getScheme() + "://" + uri.getAuthority();
  client.connect_timeout = std::min(options.timeout, std::chrono::milliseconds(5000));
  client.max_idle_connections = 2;
  client.max_response_bytes = 1 << 20;
  client.user_agent = std::string("synthorg-otlp/") + SYNTHORG_SDK_VERSION;
  client.propagate_trace = false;  // the export is not part of any trace
  return client;
}

std::string target_of(const std::string& endpoint) {
  Poco::URI uri(endpoint);
  auto target = uri.getPathAndQuery();
  return target.empty() ? "/" : target;
}

// Retry-After as delay-seconds (HTTP-dates are rare from collectors and treated as absent).
std::optional<std::chrono::milliseconds> retry_after(std::string_view value) {
  std::int64_t seconds = 0;
  auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), seconds);
  if (error != std::errc() || end != value.data() + value.size() || seconds < 0) return std::nullopt;
  return std::chrono::seconds(seconds);
}

bool retryable(int status) { return status == 429 || status == 502 || status == 503 || status == 504; }

}  // namespace

const OtlpEncoding& encoding_of(OtlpProtocol protocol) {
  // The overloads returning a string are not these: the pointers name the ones writing into `out`.
  static const OtlpEncoding json{"application/json", &encode_traces, &encode_logs};
  static const OtlpEncoding binary{"application/x-protobuf", &protobuf::encode_traces, &protobuf::encode_logs};
  return protocol == OtlpProtocol::http_json ? json : binary;
}

std::string gzip(std::string_view data) {
  // One compressor and output buffer per thread, kept: a compressor takes some 200 KiB of
  // tables, and a fresh bound-sized string per body is zeroed in full before a third of it is
  // written. Level 1: libdeflate's fastest, which on span batches compresses as well as zlib's
  // level 1 at about a third of its CPU, taken on a small machine from the threads serving requests.
  struct Compressor {
    libdeflate_compressor* state = libdeflate_alloc_compressor(1);
    std::unique_ptr<char[]> buffer;
    std::size_t capacity = 0;
    ~Compressor() { libdeflate_free_compressor(state); }
  };
  thread_local Compressor compressor;
  if (!compressor.state) throw std::bad_alloc();
  auto bound = libdeflate_gzip_compress_bound(compressor.state, data.size());
  if (bound > compressor.capacity) {
    compressor.buffer = std::make_unique_for_overwrite<char[]>(bound);
    compressor.capacity = bound;
  }
  auto size = libdeflate_gzip_compress(compressor.state, data.data(), data.size(), compressor.buffer.get(), bound);
  if (size == 0) throw std::runtime_error("libdeflate: gzip output exceeded its own bound");
  return std::string(compressor.buffer.get(), size);
}

OtlpSender::OtlpSender(ExportOptions options, log::Logger log)
    : options_(std::move(options)), encoding_(encoding_of(options_.protocol)), target_(target_of(options_.endpoint)),
      client_(client_options(options_)), log_(std::move(log)) {}

void OtlpSender::shorten(Clock::time_point deadline) {
  std::lock_guard lock(mutex_);
  limit_ = std::min(limit_, deadline);
  wake_.notify_all();
}

SendResult OtlpSender::send(const std::string& body, Clock::time_point deadline) {
  http::ClientRequest request;
  request.method = "POST";
  request.target = target_;
  request.headers = {{"Content-Type", std::string(encoding_.content_type)}};
  if (options_.gzip) {
    request.body = gzip(body);
    request.headers.emplace_back("Content-Encoding", "gzip");
  } else {
    request.body = body;
  }
  thread_local std::mt19937 jitter{std::random_device{}()};
  auto backoff = options_.initial_backoff;
  for (int attempt = 1;; ++attempt) {
    {
      std::lock_guard lock(mutex_);
      deadline = std::min(deadline, limit_);
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left <= std::chrono::milliseconds(0)) return SendResult::failed;
    request.timeout = std::min(options_.timeout, left);
    std::optional<std::chrono::milliseconds> wait;
    std::string why;
    try {
      auto response = client_.send(request);
      if (response.status >= 200 && response.status < 300) return SendResult::sent;
      if (!retryable(response.status)) {
        // 400 and the like: the same body would be refused again. The collector's own words
        // help the operator; our data is not in them beyond what it echoes.
        log_.warn("the OTLP collector refused a batch; it is dropped",
                  {{"status", static_cast<std::int64_t>(response.status)},
                   {"endpoint", client_.describe()},
                   {"answer", response.body.substr(0, 200)}});
        return SendResult::rejected;
      }
      why = fmt::format("HTTP {}", response.status);
      wait = retry_after(response.header("retry-after"));
    } catch (const http::ClientError& error) {
      why = error.what();  // down, slow, or closed mid-request: worth another try
    }
    if (attempt >= options_.max_attempts) {
      log_.warn("OTLP export failed; the batch is dropped",
                {{"endpoint", client_.describe()}, {"error", why}, {"attempts", static_cast<std::int64_t>(attempt)}});
      return SendResult::failed;
    }
    // Full jitter below the exponential step, unless the collector said how long to wait.
    auto pause = wait ? std::min(*wait, options_.max_backoff)
                      : std::chrono::milliseconds(std::uniform_int_distribution<std::int64_t>(
                            backoff.count() / 2, backoff.count())(jitter));
    backoff = std::min(backoff * 2, options_.max_backoff);
    auto until = Clock::now() + pause;
    std::unique_lock lock(mutex_);
    if (wake_.wait_until(lock, until, [&] { return until >= std::min(deadline, limit_); })) return SendResult::failed;
  }
}

SpanExporter::SpanExporter(Resource resource, ExportOptions export_options, BatchOptions batch, log::Logger log)
    : resource_(std::move(resource)), batch_(batch), sender_(std::move(export_options), log), log_(std::move(log)),
      thread_([this] { run(); }) {}

SpanExporter::~SpanExporter() { shutdown(std::chrono::milliseconds(0)); }

void SpanExporter::enqueue(SpanData&& span) noexcept {
  bool wake = false;
  std::vector<SpanData> released;  // recycled after the lock, on this thread
  {
    std::lock_guard lock(mutex_);
    released.swap(spent_);
    if (stopping_ || queue_.size() >= batch_.max_queue) {
      stats_.dropped_queue_full.fetch_add(1, std::memory_order_relaxed);
    } else {
      queue_.push_back(std::move(span));
      wake = queue_.size() == batch_.max_batch;  // once per full batch, not per span
    }
  }
  if (wake) ready_.notify_one();
  if (!released.empty()) recycle_spans(released);
}

void SpanExporter::run() {
  // Export is background work: when the CPU is short, the threads serving requests go first
  // and the queue (bounded, counted) absorbs the difference.
  ::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 10);
  ::pthread_setname_np(::pthread_self(), "synthorg-otlp");  // for top -H and perf: whose CPU this is
  std::vector<SpanData> taken;  // swapped with queue_, then spent_: the buffers keep their capacity
  std::string body;  // reused: sized once by the largest batch
  std::unique_lock lock(mutex_);
  for (;;) {
    auto due = Clock::now() + batch_.delay;
    ready_.wait_until(lock, due, [this] { return stopping_ || queue_.size() >= batch_.max_batch; });
    if (queue_.empty()) {
      if (stopping_) return;
      continue;
    }
    // The whole queue in O(1): span-ending threads never wait while a batch is moved out.
    taken.swap(queue_);
    // While running, a batch may retry for as long as its attempts take; at shutdown only
    // until the grace ends.
    auto deadline = stopping_ ? deadline_ : Clock::now() + std::chrono::hours(1);
    lock.unlock();
    // Batches are encoded where the spans lie, not moved out first.
    const std::span<const SpanData> spans(taken);
    for (std::size_t next = 0; next < spans.size();) {
      auto batch = spans.subspan(next, std::min(spans.size() - next, batch_.max_batch));
      next += batch.size();
      SendResult result = SendResult::failed;
      try {
        sender_.encoding().traces(body, resource_, SYNTHORG_SDK_VERSION, batch);
        result = sender_.send(body, deadline);
      } catch (const std::exception& error) {
        log_.warn("OTLP export failed", {{"error", error.what()}});
      }
      stats_.batches.fetch_add(1, std::memory_order_relaxed);
      auto& counter = result == SendResult::sent       ? stats_.exported
                      : result == SendResult::rejected ? stats_.dropped_rejected
                                                       : stats_.dropped_failed;
      counter.fetch_add(batch.size(), std::memory_order_relaxed);
    }
    // The spans go back to the threads that made them (the next enqueue), to be reused
    // (recycle_spans): freed here, every string of every span crossed glibc's arenas, taking the
    // span-making thread's arena lock and leaving its tcache empty. A batch's worth at most,
    // which is all a thread keeps; the rest, and all of them when the last ones were not taken
    // back yet (no span ended since), are freed here.
    if (taken.size() > batch_.max_batch)
      taken.erase(taken.begin() + static_cast<std::ptrdiff_t>(batch_.max_batch), taken.end());
    auto capacity = taken.capacity();
    lock.lock();
    if (spent_.empty()) spent_.swap(taken);  // taken: the buffer the last enqueue left, empty
    lock.unlock();
    taken.clear();
    // Next swapped with queue_: sized as before, so the queue does not grow again one
    // reallocation (and one move of every span) at a time.
    taken.reserve(capacity);
    lock.lock();
    if (stopping_ && Clock::now() >= deadline_) {
      stats_.dropped_failed.fetch_add(queue_.size(), std::memory_order_relaxed);
      queue_.clear();
      return;
    }
  }
}

void SpanExporter::shutdown(std::chrono::milliseconds grace) {
  {
    std::lock_guard lock(mutex_);
    if (!thread_.joinable()) return;
    if (!stopping_) {
      stopping_ = true;
      deadline_ = Clock::now() + grace;
    }
  }
  ready_.notify_all();
  sender_.shorten(Clock::now() + grace);
  thread_.join();
}

}  // namespace synthorg::telemetry

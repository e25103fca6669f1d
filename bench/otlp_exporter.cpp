// The telemetry exporter under load (issue 8): spans made at a fixed rate by request-like
// threads through the real Tracer and batching exporter, against a collector that answers
// (an nginx sink: URL as argv[1]) and one that is down. Reports what the span-making threads
// paid per span (p50/p99/max of start+attributes+end), what was exported and what was dropped.
// Usage: synthorg-bench-exporter COLLECTOR_URL [SPANS_PER_SECOND] [SECONDS]
// The encoding is the plugin's default (http/protobuf) unless SYNTHORG_TRACE_OTLP_PROTOCOL says
// http/json, so the two can be compared.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "exporter.hpp"
#include "options.hpp"
#include "tracer.hpp"

using namespace synthorg;
using namespace synthorg::telemetry;
using Clock = std::chrono::steady_clock;

struct Outcome {
  double offered_per_second = 0, p50_us = 0, p99_us = 0, max_us = 0;
  std::uint64_t exported = 0, dropped = 0;
};

Outcome run(const std::string& endpoint, OtlpProtocol protocol, int rate, int seconds) {
  ExportOptions options;
  options.endpoint = endpoint;
  options.protocol = protocol;
  options.timeout = std::chrono::milliseconds(1000);
  options.initial_backoff = std::chrono::milliseconds(200);
  auto exporter = std::make_shared<SpanExporter>(Resource{{{"service.name", std::string("bench")}}}, options,
                                                 BatchOptions{}, log::Logger("bench"));
  auto tracer = std::make_shared<TracerImpl>(1.0, TracerLimits{}, [exporter](SpanData&& span) {
    exporter->enqueue(std::move(span));
  });
  constexpr int threads = 2;  // like the kernel's I/O threads on this 2-core machine
  std::vector<std::vector<double>> costs(threads);
  std::vector<std::thread> workers;
  auto started = Clock::now();
  for (int t = 0; t < threads; ++t)
    workers.emplace_back([&, t] {
      auto per_thread = rate / threads;
      auto interval = std::chrono::nanoseconds(1'000'000'000LL / per_thread);
      auto next = Clock::now();
      for (long i = 0; i < static_cast<long>(per_thread) * seconds; ++i) {
        auto before = Clock::now();
        auto span = tracer->start_span("/api/v1/healthz", SpanKind::server);
        span->set_attribute("http.request.method", std::string("GET"));
        span->set_attribute("http.route", std::string("/api/v1/healthz"));
        span->set_attribute("http.response.status_code", std::int64_t{200});
        span->end();
        costs[t].push_back(std::chrono::duration<double, std::micro>(Clock::now() - before).count());
        next += interval;
        std::this_thread::sleep_until(next);
      }
    });
  for (auto& worker : workers) worker.join();
  auto elapsed = std::chrono::duration<double>(Clock::now() - started).count();
  exporter->shutdown(std::chrono::milliseconds(3000));
  std::vector<double> all;
  for (auto& list : costs) all.insert(all.end(), list.begin(), list.end());
  std::sort(all.begin(), all.end());
  Outcome out;
  out.offered_per_second = all.size() / elapsed;
  out.p50_us = all[all.size() / 2];
  out.p99_us = all[all.size() * 99 / 100];
  out.max_us = all.back();
  const auto& stats = exporter->stats();
  out.exported = stats.exported;
  out.dropped = stats.dropped_queue_full + stats.dropped_failed + stats.dropped_rejected;
  return out;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s COLLECTOR_URL [SPANS_PER_SECOND] [SECONDS]\n", argv[0]);
    return 2;
  }
  int rate = argc > 2 ? std::stoi(argv[2]) : 50'000;
  int seconds = argc > 3 ? std::stoi(argv[3]) : 5;
  auto protocol = otlp_protocol(process_environment(), protocol_name(ExportOptions{}.protocol));
  std::printf("OTLP encoding: %s\n\n", std::string(protocol_name(protocol)).c_str());
  std::printf("| collector | spans/s made | per span p50 | p99 | max | exported | dropped (counted) |\n");
  std::printf("|---|---:|---:|---:|---:|---:|---:|\n");
  for (auto [what, url] : {std::pair<const char*, std::string>{"up (nginx sink)", argv[1]},
                           {"down (nothing listening)", "http://127.0.0.1:9/v1/traces"}}) {
    auto out = run(url, protocol, rate, seconds);
    std::printf("| %s | %.0f | %.2f µs | %.2f µs | %.0f µs | %llu | %llu |\n", what, out.offered_per_second, out.p50_us,
                out.p99_us, out.max_us, static_cast<unsigned long long>(out.exported),
                static_cast<unsigned long long>(out.dropped));
  }
}

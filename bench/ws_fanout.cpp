// WebSocket fan-out (issue 4): N clients subscribed to one channel of GET /api/v1/ws, events
// published inside the server by the event-source fixture, delivery latency measured per event
// and per client. Run through bench/ws_fanout.sh, which starts the server and signs in.
//
//   synthorg-ws-fanout --port P --token JWT [--clients 1000] [--rate 10000] [--seconds 5]
//                      [--server-pid PID] [--channel bench] [--no-sweep]
//
// 1. Reads the server's VmRSS, opens and subscribes every client, waits, reads it again: the
//    difference over N is the resident memory of one idle subscribed connection.
// 2. Asks the fixture for `rate` events/s for `seconds` and measures what arrives: latency of
//    every delivery (receive time − `sent_ns` in the payload; both CLOCK_REALTIME on one host),
//    deliveries per second, deliveries lost (a client got fewer than published), and clients the
//    server dropped as too slow (close 1008).
// 3. Unless --no-sweep: two highest rates, each found by doubling or halving and then bisecting
//    to within 15%: the highest that meets the target (every event reaches every client, none
//    dropped, p99 under 20 ms), and the highest the server keeps up with (nothing lost, and
//    deliveries/s at least 95% of what was offered: no backlog growing, whatever the latency).
// A client the server closed is reconnected before the next run.
//
// Everything runs on one thread and one io_context: the machine this was written for has two
// cores, and the server needs them more than the clients do.
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iterator>
#include <sstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>  // before asio: Boost 1.74's awaitable.hpp uses std::exchange without it
#include <vector>

#include <sys/resource.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

struct Options {
  std::string host = "127.0.0.1";
  unsigned short port = 0;
  std::string token;
  std::string channel = "bench";
  std::size_t clients = 1000;
  std::int64_t rate = 10'000;  // events/s published for the target run
  double seconds = 5;          // length of each run
  int server_pid = 0;          // for VmRSS; 0 skips the memory figure
  bool sweep = true;
  double target_p99_ms = 20;
  double target_idle_kib = 20;
  std::size_t connect_concurrency = 64;  // upgrades in flight at once
};

std::int64_t realtime_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The integer after `"key":` in a frame the server serialised (compact JSON, no spaces). A full
// JSON parse per frame would make this client, not the server, the thing measured.
std::optional<std::int64_t> field(std::string_view text, std::string_view quoted_key_colon) {
  auto at = text.find(quoted_key_colon);
  if (at == std::string_view::npos) return std::nullopt;
  auto begin = text.data() + at + quoted_key_colon.size();
  std::int64_t value = 0;
  auto [end, ec] = std::from_chars(begin, text.data() + text.size(), value);
  if (ec != std::errc()) return std::nullopt;
  return value;
}

// CPU time (user + system) a process has used so far, in seconds; of this process when pid is 0.
double cpu_seconds(int pid) {
  if (pid == 0) {
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    auto seconds = [](timeval t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
    return seconds(usage.ru_utime) + seconds(usage.ru_stime);
  }
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  std::istringstream fields(text.substr(text.rfind(')') + 2));  // after "pid (comm) "
  std::string skip;
  for (int i = 3; i < 14; ++i) fields >> skip;  // state .. cmajflt
  double user_ticks = 0, system_ticks = 0;
  fields >> user_ticks >> system_ticks;
  return (user_ticks + system_ticks) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

std::optional<std::int64_t> server_rss_kib(int pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
  return std::nullopt;
}

struct Client {
  explicit Client(asio::io_context& io) : ws(io) {}
  websocket::stream<beast::tcp_stream> ws;
  beast::flat_buffer buffer;
  bool subscribed = false;
  bool finished = false;  // the session is over: the slot may be reconnected
  // Events of one run seen by this client (reset when a frame of a newer run arrives).
  std::uint64_t run = 0;
  std::int64_t received_in_run = 0;
};

struct RunStats {
  std::vector<std::uint32_t> latency_us;  // every delivery of the run
  std::int64_t first_sent_ns = 0, last_received_ns = 0;
};

struct RunResult {
  std::int64_t rate = 0;
  std::size_t clients = 0;
  std::int64_t events = 0;  // published
  std::uint64_t deliveries = 0, lost = 0, slow_dropped = 0;
  double deliveries_per_s = 0;
  double p50_ms = 0, p99_ms = 0, max_ms = 0;
  // CPU time per delivery over the run: what each side costs, whoever is the bottleneck.
  double server_cpu_us = 0, client_cpu_us = 0;
  bool complete() const { return clients > 0 && lost == 0 && slow_dropped == 0; }
  bool meets_latency(double p99_target_ms) const { return complete() && p99_ms < p99_target_ms; }
  bool keeps_up() const {
    return complete() && deliveries_per_s >= 0.95 * static_cast<double>(rate) * static_cast<double>(clients);
  }
};

class FanOutBench {
 public:
  FanOutBench(asio::io_context& io, Options options)
      : io_(io), options_(std::move(options)), endpoint_(asio::ip::make_address(options_.host), options_.port) {
    subscribe_message_ = R"({"action":"subscribe","channels":[")" + options_.channel + R"("]})";
  }

  asio::awaitable<void> run() {
    std::optional<std::int64_t> rss_before, rss_after;
    if (options_.server_pid) rss_before = server_rss_kib(options_.server_pid);
    clients_.resize(options_.clients);
    co_await connect_missing();
    co_await sleep(1s);  // let allocations made during the upgrades settle
    if (options_.server_pid) rss_after = server_rss_kib(options_.server_pid);
    auto idle_clients = subscribed();

    auto target = co_await result_at(options_.rate);
    std::optional<std::int64_t> best_latency, best_throughput;
    if (options_.sweep) {
      auto full_clients = [this](const RunResult& run) { return run.clients == options_.clients; };
      best_throughput =
          co_await highest_rate(100, [&](const RunResult& run) { return full_clients(run) && run.keeps_up(); });
      best_latency = co_await highest_rate(
          10, [&](const RunResult& run) { return full_clients(run) && run.meets_latency(options_.target_p99_ms); });
    }
    print(rss_before, rss_after, idle_clients, target, best_latency, best_throughput);
    for (auto& client : clients_)
      if (client && client->subscribed) client->ws.async_close(websocket::close_code::normal, [](beast::error_code) {});
    co_await sleep(200ms);
    io_.stop();
  }

 private:
  using Timer = asio::steady_timer;

  asio::awaitable<void> sleep(std::chrono::steady_clock::duration duration) {
    Timer timer(io_, duration);
    co_await timer.async_wait(asio::use_awaitable);
  }

  std::size_t subscribed() const {
    return static_cast<std::size_t>(std::count_if(clients_.begin(), clients_.end(),
                                                  [](const auto& client) { return client && client->subscribed; }));
  }

  // Opens every slot that has no live session, `connect_concurrency` upgrades at a time, and
  // waits until each is subscribed or has failed.
  asio::awaitable<void> connect_missing() {
    for (auto& slot : clients_) {
      if (slot && !slot->finished) continue;
      while (connecting_ >= options_.connect_concurrency) co_await sleep(2ms);
      slot = std::make_shared<Client>(io_);
      ++connecting_;
      asio::co_spawn(io_, session(slot), asio::detached);
    }
    while (connecting_ > 0) co_await sleep(5ms);
    if (auto missing = options_.clients - subscribed())
      std::fprintf(stderr, "ws_fanout: %zu of %zu clients could not subscribe (%s)\n", missing, options_.clients,
                   last_error_.c_str());
  }

  asio::awaitable<void> session(std::shared_ptr<Client> client) {
    beast::error_code ec;
    auto on_error = asio::redirect_error(asio::use_awaitable, ec);
    bool counted_as_connecting = true;
    auto done_connecting = [&] {
      if (counted_as_connecting) --connecting_;
      counted_as_connecting = false;
    };
    auto fail = [&](const char* step) {
      last_error_ = std::string(step) + ": " + ec.message();
      done_connecting();
      client->subscribed = false;
      client->finished = true;
    };

    auto& socket = beast::get_lowest_layer(client->ws);
    socket.expires_after(10s);
    co_await socket.async_connect(endpoint_, on_error);
    if (ec) co_return fail("connect");
    socket.expires_never();
    client->ws.set_option(websocket::stream_base::timeout::suggested(beast::role_type::client));
    client->ws.set_option(websocket::stream_base::decorator([this](websocket::request_type& request) {
      request.set(http::field::authorization, "Bearer " + options_.token);
    }));
    co_await client->ws.async_handshake(options_.host + ":" + std::to_string(options_.port), "/api/v1/ws", on_error);
    if (ec) co_return fail("upgrade");
    co_await client->ws.async_write(asio::buffer(subscribe_message_), on_error);
    if (ec) co_return fail("subscribe");
    co_await client->ws.async_read(client->buffer, on_error);
    if (ec) co_return fail("subscribe reply");
    auto reply = beast::buffers_to_string(client->buffer.data());
    client->buffer.consume(client->buffer.size());
    if (reply.find(R"("type":"subscribed")") == std::string::npos || reply.find("denied") != std::string::npos) {
      last_error_ = "subscription refused: " + reply;
      done_connecting();
      client->finished = true;
      co_return;
    }
    client->subscribed = true;
    done_connecting();

    for (;;) {
      co_await client->ws.async_read(client->buffer, on_error);
      if (ec) break;
      auto received_ns = realtime_ns();
      auto data = client->buffer.data();
      on_frame(*client, {static_cast<const char*>(data.data()), data.size()}, received_ns);
      client->buffer.consume(client->buffer.size());
    }
    if (ec == websocket::error::closed && client->ws.reason().code == websocket::close_code::policy_error)
      ++slow_dropped_;
    client->subscribed = false;
    client->finished = true;
  }

  void on_frame(Client& client, std::string_view frame, std::int64_t received_ns) {
    ++frames_;
    auto run = field(frame, R"("run":)");
    auto sent_ns = field(frame, R"("sent_ns":)");
    if (!run || !sent_ns) return;  // not one of the fixture's events
    if (client.run != static_cast<std::uint64_t>(*run)) {
      client.run = static_cast<std::uint64_t>(*run);
      client.received_in_run = 0;
    }
    ++client.received_in_run;
    if (client.run <= measured_up_to_) return;  // a late frame of a run already reported
    auto& stats = runs_[client.run];
    auto latency_us = std::max<std::int64_t>(0, (received_ns - *sent_ns) / 1000);
    stats.latency_us.push_back(static_cast<std::uint32_t>(std::min<std::int64_t>(latency_us, UINT32_MAX)));
    if (stats.first_sent_ns == 0 || *sent_ns < stats.first_sent_ns) stats.first_sent_ns = *sent_ns;
    stats.last_received_ns = std::max(stats.last_received_ns, received_ns);
  }

  // Waits until no frame has arrived for half a second (the previous run's backlog is gone).
  asio::awaitable<void> quiesce() {
    auto deadline = std::chrono::steady_clock::now() + 60s;
    for (auto seen = frames_;; seen = frames_) {
      co_await sleep(500ms);
      if (frames_ == seen || std::chrono::steady_clock::now() > deadline) co_return;
    }
  }

  struct Started {
    std::uint64_t run = 0;
    std::int64_t events = 0;
  };

  asio::awaitable<Started> start_publishing(std::int64_t rate, std::int64_t duration_ms) {
    beast::tcp_stream stream(io_);
    stream.expires_after(10s);
    co_await stream.async_connect(endpoint_, asio::use_awaitable);
    http::request<http::string_body> request{http::verb::post, "/api/v1/test/event-source/runs", 11};
    request.set(http::field::host, options_.host);
    request.set(http::field::authorization, "Bearer " + options_.token);
    request.set(http::field::content_type, "application/json");
    request.body() = R"({"rate":)" + std::to_string(rate) + R"(,"duration_ms":)" + std::to_string(duration_ms) + "}";
    request.prepare_payload();
    co_await http::async_write(stream, request, asio::use_awaitable);
    beast::flat_buffer buffer;
    http::response<http::string_body> response;
    co_await http::async_read(stream, buffer, response, asio::use_awaitable);
    auto run = field(response.body(), R"("run":)");
    auto events = field(response.body(), R"("events":)");
    if (response.result_int() != 202 || !run || !events)
      throw std::runtime_error("POST /api/v1/test/event-source/runs answered " +
                               std::to_string(response.result_int()) + ": " + response.body() +
                               " (is the event-source fixture loaded?)");
    co_return Started{static_cast<std::uint64_t>(*run), *events};
  }

  asio::awaitable<RunResult> measure(std::int64_t rate) {
    co_await quiesce();
    co_await connect_missing();
    std::vector<std::shared_ptr<Client>> measured;
    for (auto& client : clients_)
      if (client && client->subscribed) measured.push_back(client);
    auto slow_dropped_before = slow_dropped_;
    auto duration = std::chrono::milliseconds(static_cast<std::int64_t>(options_.seconds * 1000));
    auto server_cpu_before = options_.server_pid ? cpu_seconds(options_.server_pid) : 0.0;
    auto client_cpu_before = cpu_seconds(0);
    auto started = co_await start_publishing(rate, duration.count());

    // Done when every measured client has every event, or when deliveries stop coming: one
    // second without progress once publishing is over (a rate the server cannot carry leaves
    // clients dropped or events lost, and never completes).
    std::uint64_t expected = static_cast<std::uint64_t>(started.events) * measured.size();
    co_await sleep(duration);
    auto give_up = std::chrono::steady_clock::now() + 60s;
    for (auto delivered = runs_[started.run].latency_us.size();
         delivered < expected && std::chrono::steady_clock::now() < give_up;) {
      co_await sleep(1s);
      auto now_delivered = runs_[started.run].latency_us.size();
      if (now_delivered == delivered) break;
      delivered = now_delivered;
    }

    auto& stats = runs_[started.run];
    RunResult result{.rate = rate, .clients = measured.size(), .events = started.events};
    result.deliveries = stats.latency_us.size();
    if (result.deliveries > 0) {
      auto per_delivery_us = [&](double seconds) { return seconds * 1e6 / static_cast<double>(result.deliveries); };
      if (options_.server_pid)
        result.server_cpu_us = per_delivery_us(cpu_seconds(options_.server_pid) - server_cpu_before);
      result.client_cpu_us = per_delivery_us(cpu_seconds(0) - client_cpu_before);
    }
    result.slow_dropped = slow_dropped_ - slow_dropped_before;
    for (const auto& client : measured) {
      auto got = client->run == started.run ? client->received_in_run : 0;
      result.lost += static_cast<std::uint64_t>(std::max<std::int64_t>(0, started.events - got));
    }
    if (!stats.latency_us.empty()) {
      auto& latency = stats.latency_us;
      auto at = [&](double quantile) {
        auto index = static_cast<std::size_t>(quantile * static_cast<double>(latency.size() - 1));
        std::nth_element(latency.begin(), latency.begin() + static_cast<std::ptrdiff_t>(index), latency.end());
        return latency[index] / 1000.0;
      };
      result.p50_ms = at(0.50);
      result.p99_ms = at(0.99);
      result.max_ms = *std::max_element(latency.begin(), latency.end()) / 1000.0;
      auto window_s = static_cast<double>(stats.last_received_ns - stats.first_sent_ns) / 1e9;
      if (window_s > 0) result.deliveries_per_s = static_cast<double>(result.deliveries) / window_s;
    }
    runs_.erase(started.run);  // the latencies of a large run are hundreds of MB
    measured_up_to_ = started.run;
    std::fprintf(stderr, "ws_fanout: %lld events/s x %zu clients: %llu of %llu delivered, p99 %.2f ms, %llu dropped\n",
                 static_cast<long long>(rate), result.clients, static_cast<unsigned long long>(result.deliveries),
                 static_cast<unsigned long long>(expected), result.p99_ms,
                 static_cast<unsigned long long>(result.slow_dropped));
    co_return result;
  }

  // One measured run per rate: the searches share them.
  asio::awaitable<RunResult> result_at(std::int64_t rate) {
    if (auto known = results_.find(rate); known != results_.end()) co_return known->second;
    auto result = co_await measure(rate);
    results_.emplace(rate, result);
    co_return result;
  }

  // The highest rate (events/s, at most the target rate) for which `passes` holds, to within
  // 15%: doubles up from `start` while it passes or halves down while it fails, then bisects
  // between the highest that passed and the lowest that failed. Nothing when even 1 event/s fails.
  asio::awaitable<std::optional<std::int64_t>> highest_rate(std::int64_t start,
                                                            std::function<bool(const RunResult&)> passes) {
    std::optional<std::int64_t> passed, failed;
    for (auto rate = std::min(start, options_.rate);;) {
      bool ok = passes(co_await result_at(rate));
      (ok ? passed : failed) = rate;
      if (ok && !failed && rate < options_.rate) rate = std::min(rate * 2, options_.rate);
      else if (!ok && !passed && rate > 1) rate /= 2;
      else break;
    }
    while (passed && failed && *failed > *passed * 115 / 100 && *failed - *passed > 1) {
      auto rate = (*passed + *failed) / 2;
      (passes(co_await result_at(rate)) ? passed : failed) = rate;
    }
    co_return passed;
  }

  void print(std::optional<std::int64_t> rss_before, std::optional<std::int64_t> rss_after, std::size_t idle_clients,
             const RunResult& target, std::optional<std::int64_t> best_latency,
             std::optional<std::int64_t> best_throughput) const {
    auto verdict = [](bool met) { return met ? "met" : "NOT MET"; };
    auto clients = static_cast<std::int64_t>(options_.clients);
    std::optional<double> kib_per_idle_client;
    if (rss_before && rss_after && idle_clients > 0)
      kib_per_idle_client = static_cast<double>(*rss_after - *rss_before) / static_cast<double>(idle_clients);
    bool memory_met = kib_per_idle_client && idle_clients == options_.clients &&
                      *kib_per_idle_client < options_.target_idle_kib;
    bool target_met = target.clients == options_.clients && target.meets_latency(options_.target_p99_ms);

    std::printf("| measure | figure | target | verdict |\n|---|---:|---|---|\n");
    if (kib_per_idle_client) {
      std::printf("| server VmRSS, before → with %zu idle subscribed clients | %lld → %lld KiB | | |\n", idle_clients,
                  static_cast<long long>(*rss_before), static_cast<long long>(*rss_after));
      std::printf("| resident memory per idle connection | %.1f KiB | < %.0f KiB | %s |\n", *kib_per_idle_client,
                  options_.target_idle_kib, verdict(memory_met));
    }
    std::printf("| %lld events/s to %zu clients: delivered | %.0f deliveries/s (%.0f events/s per client) | %lld "
                "deliveries/s | %s |\n",
                static_cast<long long>(target.rate), target.clients, target.deliveries_per_s,
                target.clients ? target.deliveries_per_s / static_cast<double>(target.clients) : 0.0,
                static_cast<long long>(target.rate * clients), verdict(target.keeps_up()));
    std::printf("| delivery latency p50 / p99 / max (frames delivered) | %.2f / %.2f / %.2f ms | p99 < %.0f ms | %s |\n",
                target.p50_ms, target.p99_ms, target.max_ms, options_.target_p99_ms,
                verdict(target.deliveries > 0 && target.p99_ms < options_.target_p99_ms));
    std::printf("| deliveries lost / clients dropped as slow (1008) | %llu of %llu / %llu | 0 / 0 | %s |\n",
                static_cast<unsigned long long>(target.lost),
                static_cast<unsigned long long>(target.events) * target.clients,
                static_cast<unsigned long long>(target.slow_dropped), verdict(target.complete()));
    if (options_.sweep) {
      auto rate_text = [&](std::optional<std::int64_t> rate) {
        return rate ? std::to_string(*rate) + " events/s (" + std::to_string(*rate * clients) + " deliveries/s)"
                    : std::string("none, not even 1 event/s");
      };
      std::printf("| highest rate meeting the target: nothing lost, p99 < %.0f ms | %s | %lld events/s | %s |\n",
                  options_.target_p99_ms, rate_text(best_latency).c_str(), static_cast<long long>(options_.rate),
                  verdict(best_latency && *best_latency >= options_.rate));
      std::printf("| highest rate kept up with: nothing lost, ≥ 95%% of offered deliveries/s | %s | | |\n",
                  rate_text(best_throughput).c_str());
    }
    std::printf("\ntarget (%zu clients, %lld events/s, p99 < %.0f ms, nothing lost): %s\n", options_.clients,
                static_cast<long long>(options_.rate), options_.target_p99_ms, verdict(target_met));
    if (kib_per_idle_client)
      std::printf("target (< %.0f KiB resident per idle connection): %s\n", options_.target_idle_kib,
                  verdict(memory_met));

    std::printf("\n| events/s published | clients | deliveries/s | p50 ms | p99 ms | max ms | lost | dropped | "
                "server CPU µs/delivery | client CPU µs/delivery | keeps up | p99 < %.0f ms, nothing lost |\n"
                "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n",
                options_.target_p99_ms);
    for (const auto& [rate, run] : results_)
      std::printf("| %lld | %zu | %.0f | %.2f | %.2f | %.2f | %llu | %llu | %.1f | %.1f | %s | %s |\n",
                  static_cast<long long>(rate), run.clients, run.deliveries_per_s, run.p50_ms, run.p99_ms, run.max_ms,
                  static_cast<unsigned long long>(run.lost), static_cast<unsigned long long>(run.slow_dropped),
                  run.server_cpu_us, run.client_cpu_us, run.keeps_up() ? "yes" : "no",
                  run.meets_latency(options_.target_p99_ms) ? "yes" : "no");
  }

  asio::io_context& io_;
  Options options_;
  tcp::endpoint endpoint_;
  std::string subscribe_message_;
  std::vector<std::shared_ptr<Client>> clients_;
  std::size_t connecting_ = 0;
  std::string last_error_;
  std::uint64_t frames_ = 0;
  std::uint64_t slow_dropped_ = 0;
  std::map<std::uint64_t, RunStats> runs_;     // by the fixture's run id, while measuring
  std::uint64_t measured_up_to_ = 0;           // runs up to this id are reported
  std::map<std::int64_t, RunResult> results_;  // by rate, every run measured
};

Options parse(int argc, char** argv) {
  Options options;
  if (const char* token = std::getenv("SYNTHORG_BENCH_TOKEN")) options.token = token;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(std::string(arg) + " needs a value");
      return argv[++i];
    };
    if (arg == "--host") options.host = value();
    else if (arg == "--port") options.port = static_cast<unsigned short>(std::stoi(value()));
    else if (arg == "--token") options.token = value();
    else if (arg == "--channel") options.channel = value();
    else if (arg == "--clients") options.clients = std::stoul(value());
    else if (arg == "--rate") options.rate = std::stoll(value());
    else if (arg == "--seconds") options.seconds = std::stod(value());
    else if (arg == "--server-pid") options.server_pid = std::stoi(value());
    else if (arg == "--no-sweep") options.sweep = false;
    else throw std::invalid_argument("unknown argument " + std::string(arg));
  }
  if (options.port == 0 || options.token.empty())
    throw std::invalid_argument("usage: ws_fanout --port P --token JWT (or SYNTHORG_BENCH_TOKEN) [--clients N] "
                                "[--rate EVENTS_PER_S] [--seconds S] [--server-pid PID] [--channel C] [--no-sweep]");
  return options;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    auto options = parse(argc, argv);
    asio::io_context io(1);
    FanOutBench bench(io, std::move(options));
    asio::co_spawn(io, bench.run(), [](std::exception_ptr error) {
      if (error) std::rethrow_exception(error);
    });
    io.run();
    return 0;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "ws_fanout: %s\n", error.what());
    return 1;
  }
}

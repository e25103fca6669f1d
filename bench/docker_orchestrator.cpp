// orchestrator-docker against the same Engine API calls made directly, side by side in one run
// (issue 5 targets): spawn = create + start until running, within 1.1x of the two direct calls;
// inspect p99 under 5 ms; 50 concurrent spawns and removes with no failure and nothing leaked.
// Usage: synthorg-bench-docker [--rounds N] [--concurrent N]   (bench/run-all runs it)
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "synthorg/bus.hpp"
#include "synthorg/host/plugin_file.hpp"
#include "synthorg/host/thread_pool_executor.hpp"
#include "synthorg/http_client.hpp"
#include "synthorg/plugin.hpp"
#include "synthorg/registry.hpp"
#include "synthorg/services/orchestrator.hpp"

using namespace synthorg;
using Clock = std::chrono::steady_clock;

namespace {

constexpr const char* image = "synthorg-test/busybox:latest";

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

double percentile(std::vector<double> values, double p) {
  std::sort(values.begin(), values.end());
  auto index = static_cast<std::size_t>(p * static_cast<double>(values.size() - 1) + 0.5);
  return values[index];
}

WorkloadSpec bench_spec(const std::string& run) {
  WorkloadSpec spec;
  spec.image = image;
  spec.command = {"/bin/busybox", "sleep", "300"};
  spec.labels = {{"synthorg.bench", run}};
  spec.user = "65534:65534";
  spec.tmpfs = {{"/tmp"}};
  spec.memory_bytes = 64ll << 20;
  spec.pids_limit = 32;
  return spec;
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = 15, concurrent = 50;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--rounds")) rounds = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--concurrent")) concurrent = std::atoi(argv[i + 1]);
  }
  auto executor = std::make_shared<host::ThreadPoolExecutor>(host::ExecutorOptions{1, 2, 64});
  ServiceRegistry registry;
  EventBus bus([&](std::function<void()> task) { executor->post(std::move(task)); });
  auto executor_registration = registry.provide<Executor>(executor);
  auto file = host::load_plugin_file(SYNTHORG_ORCHESTRATOR_DOCKER);
  host::PluginInstance plugin(file, std::make_shared<PluginContext>("orchestrator-docker", registry, bus));
  plugin.configure(nlohmann::json::object());
  plugin.start();
  auto docker = registry.get<Orchestrator>();
  auto health = docker->health();
  if (!health.up) {
    std::fprintf(stderr, "docker_orchestrator: %s\n", health.detail.c_str());
    return 1;
  }
  const std::string run = "b" + std::to_string(::getpid());
  auto spec = bench_spec(run);

  // The direct calls: the very create body the plugin sends, then start, on one kept-alive
  // connection, as a hand-written client would make them.
  http::HttpClient direct({.base_url = "unix:///var/run/docker.sock"});
  std::string body = R"({"Image":")" + std::string(image) +
                     R"(","Cmd":["/bin/busybox","sleep","300"],"User":"65534:65534","Labels":{"synthorg.managed":"true","synthorg.bench":")" +
                     run +
                     R"("},"HostConfig":{"Memory":67108864,"MemorySwap":67108864,"PidsLimit":32,"CapDrop":["ALL"],"SecurityOpt":["no-new-privileges:true"],"ReadonlyRootfs":true,"Tmpfs":{"/tmp":"rw,noexec,nosuid,nodev,size=64m"},"RestartPolicy":{"Name":"no"}}})";
  auto direct_spawn = [&]() -> std::string {
    auto created = direct.send({.method = "POST", .target = "/v1.41/containers/create",
                                .headers = {{"Content-Type", "application/json"}}, .body = body});
    if (created.status != 201) throw std::runtime_error("create: " + created.body);
    auto id = nlohmann::json::parse(created.body).at("Id").get<std::string>();
    auto started = direct.send({.method = "POST", .target = "/v1.41/containers/" + id + "/start"});
    if (started.status != 204) throw std::runtime_error("start: " + started.body);
    return id;
  };

  std::vector<double> plugin_ms, direct_ms;
  for (int i = 0; i < rounds + 1; ++i) {  // the first round warms both up and is dropped
    auto t0 = Clock::now();
    auto id = direct_spawn();
    double d = ms_since(t0);
    docker->remove(id);
    t0 = Clock::now();
    auto status = docker->spawn(spec);
    double p = ms_since(t0);
    docker->remove(status.id);
    if (i > 0) {
      direct_ms.push_back(d);
      plugin_ms.push_back(p);
    }
  }

  auto target = docker->spawn(spec);
  std::vector<double> inspect_ms;
  for (int i = 0; i < 1000; ++i) {
    auto t0 = Clock::now();
    docker->inspect(target.id);
    inspect_ms.push_back(ms_since(t0));
  }
  docker->remove(target.id);

  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  auto t0 = Clock::now();
  for (int i = 0; i < concurrent; ++i) {
    threads.emplace_back([&] {
      try {
        auto status = docker->spawn(spec);
        docker->remove(status.id);
      } catch (const std::exception& error) {
        std::fprintf(stderr, "concurrent spawn failed: %s\n", error.what());
        ++failures;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  double concurrent_s = ms_since(t0) / 1000;
  auto leaked = docker->list({{"synthorg.bench", run}}).size();

  double ratio = percentile(plugin_ms, 0.5) / percentile(direct_ms, 0.5);
  double inspect_p99 = percentile(inspect_ms, 0.99);
  std::printf("| measure | orchestrator-docker | direct Engine API calls | ratio | target |\n|---|---:|---:|---:|---|\n");
  std::printf("| spawn (create + start), median of %d | %.1f ms | %.1f ms | %.2f | <= 1.1x %s |\n", rounds,
              percentile(plugin_ms, 0.5), percentile(direct_ms, 0.5), ratio, ratio <= 1.1 ? "met" : "NOT MET");
  std::printf("| inspect, 1000 calls | p50 %.2f ms, p99 %.2f ms | | | p99 < 5 ms %s |\n", percentile(inspect_ms, 0.5),
              inspect_p99, inspect_p99 < 5 ? "met" : "NOT MET");
  std::printf("| %d concurrent spawn + remove | %.1f s, %d failed, %zu left behind | | | none failed or leaked %s |\n",
              concurrent, concurrent_s, failures.load(), leaked, failures == 0 && leaked == 0 ? "met" : "NOT MET");
  plugin.stop();
  bus.shutdown();
  executor->stop();
  return 0;
}

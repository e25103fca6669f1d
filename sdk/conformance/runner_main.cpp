// synthorg-conformance: runs the conformance kit on plugin files.
//   synthorg-conformance --plugin FILE [--plugin FILE...] [--config JSON] [--with FILE...]
//                        [--kind auto|generic|store|orchestrator] [--kit-image IMAGE] [gtest flags]
// --kind auto (the default) runs every kit the plugins' manifests call for: the generic kit
// always, the Store kit for a plugin that provides synthorg.Store/1, the orchestrator kit for one
// that provides synthorg.Orchestrator/1. A kind given by hand narrows that, and says what it leaves out.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>

#include <CLI/CLI.hpp>

#include "isolation.hpp"
#include "kit.hpp"
#include "synthorg/host/plugin_file.hpp"
#include "synthorg/log.hpp"
#include "synthorg/services/orchestrator.hpp"
#include "synthorg/services/store.hpp"

int main(int argc, char** argv) {
  CLI::App app{"SynthOrg conformance kit: checks that plugin files behave as the kernel requires"};
  app.allow_extras();  // GoogleTest's own flags pass through
  std::vector<std::string> plugins, providers;
  std::string config = "{}", kind = "auto";
  const char* image_from_env = std::getenv("SYNTHORG_KIT_IMAGE");
  std::string kit_image = image_from_env && *image_from_env ? image_from_env : "synthorg-test/busybox:latest";
  app.add_option("--plugin", plugins, "Plugin file to check (repeatable)")->required()->check(CLI::ExistingFile);
  app.add_option("--config", config, "The plugin's configuration as JSON");
  app.add_option("--with", providers, "Provider plugin file to load and start first (repeatable)")->check(CLI::ExistingFile);
  app.add_option("--kind", kind,
                 "Which kit: auto (default: every kit the plugins' manifests call for), generic, store (generic plus "
                 "the Store contract) or orchestrator (generic plus the Orchestrator contract)")
      ->check(CLI::IsMember({"auto", "generic", "store", "orchestrator"}));
  long long call_timeout_ms = 60'000;
  app.add_option("--call-timeout", call_timeout_ms,
                 "Milliseconds one start() or stop() of the plugin may take (default 60000, the kernel's "
                 "kernel.start_timeout); an overrun fails the kit naming the call")
      ->check(CLI::Range(100LL, 3'600'000LL));
  bool in_process = false;
  app.add_flag("--in-process", in_process,
               "Run every test in this process, as under a debugger; a plugin that crashes then ends the kit "
               "without its report (by default the tests run in a child process and a crash is reported and survived)");
  app.add_option("--kit-image", kit_image, "Image the orchestrator kit's workloads run (default: $SYNTHORG_KIT_IMAGE, else synthorg-test/busybox:latest)");
  const std::vector<std::string> command_line(argv, argv + argc);
  const bool child = synthorg::conformance::report_progress_if_child();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  auto& options = synthorg::conformance::options();
  for (const auto& plugin : plugins) options.plugins.emplace_back(plugin);
  for (const auto& provider : providers) options.providers.emplace_back(provider);
  options.kit_image = kit_image;
  options.call_timeout = std::chrono::milliseconds(call_timeout_ms);
  try {
    options.config = nlohmann::json::parse(config);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "--config is not valid JSON: %s\n", e.what());
    return 2;
  }
  auto level = synthorg::log::Options{synthorg::log::Level::warn};
  synthorg::log::configure(synthorg::log::options_from_env(level));

  // What the manifests call for. A file the host refuses gets the generic kit, which reports why.
  // A file the host refuses is reported once, here, rather than by every test of every kit.
  bool store = false, orchestrator = false;
  for (const auto& plugin : plugins) {
    try {
      for (const auto& service : synthorg::host::load_plugin_file(plugin).manifest.provides) {
        store = store || service == synthorg::Store::service_id;
        orchestrator = orchestrator || service == synthorg::Orchestrator::service_id;
      }
    } catch (const std::exception& refused) {
      std::fprintf(stderr, "synthorg-conformance: FAILED: the host refuses this file, so no kit can run: %s\n",
                   refused.what());
      return 1;
    }
  }
  if (kind == "auto") {
    kind = orchestrator && store ? "all" : orchestrator ? "orchestrator" : store ? "store" : "generic";
    if (!child)
      std::printf("synthorg-conformance: running the %s kit%s, from the plugins' manifests\n",
                kind == "all" ? "generic, store and orchestrator" : kind.c_str(), kind == "all" ? "s" : "");
  } else if (!child) {
    for (auto [provided, needed] : {std::pair{orchestrator, "orchestrator"}, std::pair{store, "store"}})
      if (provided && kind != needed)
        std::printf("synthorg-conformance: note: a plugin provides the %s service, whose contract --kind %s leaves "
                    "unchecked; drop --kind to run every kit it calls for\n",
                    needed, kind.c_str());
  }

  std::vector<std::string> rest = app.remaining();
  bool listing = std::find(rest.begin(), rest.end(), "--gtest_list_tests") != rest.end();
  if (!child && !in_process && !listing) return synthorg::conformance::run_isolated(command_line);
  // Each kind runs its own suites unless the caller picks tests with --gtest_filter.
  std::string filter = kind == "all"            ? "--gtest_filter=*GenericKit*:StoreKit.*:OrchestratorKit.*"
                       : kind == "store"        ? "--gtest_filter=*GenericKit*:StoreKit.*"
                       : kind == "orchestrator" ? "--gtest_filter=*GenericKit*:OrchestratorKit.*"
                                                : "--gtest_filter=*GenericKit*";
  std::vector<char*> gtest_argv{argv[0], filter.data()};
  for (auto& arg : rest) gtest_argv.push_back(arg.data());
  int gtest_argc = static_cast<int>(gtest_argv.size());
  ::testing::InitGoogleTest(&gtest_argc, gtest_argv.data());
  return RUN_ALL_TESTS();
}

// synthorg-conformance: runs the conformance kit on plugin files.
//   synthorg-conformance --plugin FILE [--plugin FILE...] [--config JSON] [--with FILE...]
//                        [--kind generic|store|orchestrator] [--kit-image IMAGE] [gtest flags]
#include <gtest/gtest.h>

#include <cstdlib>

#include <CLI/CLI.hpp>

#include "kit.hpp"
#include "synthorg/log.hpp"

int main(int argc, char** argv) {
  CLI::App app{"SynthOrg conformance kit: checks that plugin files behave as the kernel requires"};
  app.allow_extras();  // GoogleTest's own flags pass through
  std::vector<std::string> plugins, providers;
  std::string config = "{}", kind = "generic";
  const char* image_from_env = std::getenv("SYNTHORG_KIT_IMAGE");
  std::string kit_image = image_from_env && *image_from_env ? image_from_env : "synthorg-test/busybox:latest";
  app.add_option("--plugin", plugins, "Plugin file to check (repeatable)")->required()->check(CLI::ExistingFile);
  app.add_option("--config", config, "The plugin's configuration as JSON");
  app.add_option("--with", providers, "Provider plugin file to load and start first (repeatable)")->check(CLI::ExistingFile);
  app.add_option("--kind", kind, "Which kit: generic, store (generic plus the Store contract) or orchestrator (generic plus the Orchestrator contract)")
      ->check(CLI::IsMember({"generic", "store", "orchestrator"}));
  app.add_option("--kit-image", kit_image, "Image the orchestrator kit's workloads run (default: $SYNTHORG_KIT_IMAGE, else synthorg-test/busybox:latest)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  auto& options = synthorg::conformance::options();
  for (const auto& plugin : plugins) options.plugins.emplace_back(plugin);
  for (const auto& provider : providers) options.providers.emplace_back(provider);
  options.kit_image = kit_image;
  try {
    options.config = nlohmann::json::parse(config);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "--config is not valid JSON: %s\n", e.what());
    return 2;
  }
  auto level = synthorg::log::Options{synthorg::log::Level::warn};
  synthorg::log::configure(synthorg::log::options_from_env(level));

  std::vector<std::string> rest = app.remaining();
  // Each kind runs its own suites unless the caller picks tests with --gtest_filter.
  std::string filter = kind == "store"          ? "--gtest_filter=*GenericKit*:StoreKit.*"
                       : kind == "orchestrator" ? "--gtest_filter=*GenericKit*:OrchestratorKit.*"
                                                : "--gtest_filter=*GenericKit*";
  std::vector<char*> gtest_argv{argv[0], filter.data()};
  for (auto& arg : rest) gtest_argv.push_back(arg.data());
  int gtest_argc = static_cast<int>(gtest_argv.size());
  ::testing::InitGoogleTest(&gtest_argc, gtest_argv.data());
  return RUN_ALL_TESTS();
}

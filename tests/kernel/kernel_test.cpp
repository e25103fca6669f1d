#include <gtest/gtest.h>

#include <mutex>

#include "kernel.hpp"
#include "test_services.hpp"
#include "test_support.hpp"

namespace synthorg::kernel {
namespace {

using synthorg::testing::TempDir;

// A kernel on a temporary plugin directory holding the named fixtures.
class KernelTest : public ::testing::Test {
 protected:
  std::unique_ptr<Kernel> make(const std::vector<std::string>& fixtures, const std::string& rest) {
    auto plugins = dir.plugins(fixtures);
    auto file = dir.write("company.yaml", "company_name: Test\nkernel:\n  plugin_dirs: [" + plugins.string() +
                                              "]\n  shutdown_timeout: 2s\n" + rest);
    auto kernel = std::make_unique<Kernel>(load_company_config(file, "/unused"));
    events = kernel->bus().subscribe("*", [this](const Event& e) {
      std::lock_guard lock(mutex);
      seen.push_back(e.topic + ":" + e.payload.value(e.payload.contains("service") ? "service" : "plugin", std::string()));
    }, {.delivery = Delivery::immediate});
    return kernel;
  }
  std::string failure(Kernel& kernel) {
    try {
      kernel.discover();
      kernel.prepare();
      kernel.start();
    } catch (const std::exception& e) {
      return e.what();
    }
    ADD_FAILURE() << "the kernel came up";
    return {};
  }
  bool saw(const std::string& entry) {
    std::lock_guard lock(mutex);
    return std::find(seen.begin(), seen.end(), entry) != seen.end();
  }
  PluginState state_of(Kernel& kernel, const std::string& name) {
    for (auto& p : kernel.plugins())
      if (p.file.manifest.name == name) return p.state;
    ADD_FAILURE() << "no plugin " << name;
    return PluginState::failed;
  }

  TempDir dir;
  std::mutex mutex;
  std::vector<std::string> seen;
  Subscription events;
};

TEST_F(KernelTest, StartsInDependencyOrderAndStopsInReverse) {
  auto kernel = make({"greeter", "greeter-client"}, "plugins:\n  greeter-client: {}\n  greeter: {config: {greeting: Howdy}}\n");
  kernel->discover();
  kernel->prepare();
  EXPECT_EQ(kernel->start_order(), (std::vector<std::string>{"greeter", "greeter-client"}));
  ASSERT_TRUE(kernel->start());
  auto client = kernel->registry().get<synthorg::test::Client>();
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(client->last_greeting(), "Howdy, client!") << "the client used the configured greeter";
  EXPECT_TRUE(saw("plugin.loaded:greeter"));
  EXPECT_TRUE(saw("plugin.started:greeter-client"));
  EXPECT_TRUE(saw("service.registered:test.Greeter/1"));
  EXPECT_TRUE(kernel->stop());
  EXPECT_FALSE(kernel->registry().has("test.Greeter/1"));
  EXPECT_TRUE(saw("service.unregistered:test.Client/1"));
  std::lock_guard lock(mutex);
  auto client_stop = std::find(seen.begin(), seen.end(), "plugin.stopped:greeter-client");
  auto greeter_stop = std::find(seen.begin(), seen.end(), "plugin.stopped:greeter");
  EXPECT_LT(client_stop, greeter_stop) << "stop runs in reverse start order";
}

TEST_F(KernelTest, LoadsWhatAnEnabledPluginNeedsAndNothingElse) {
  auto kernel = make({"greeter", "greeter-client", "slow"}, "plugins:\n  greeter-client: {}\n");
  kernel->discover();
  kernel->prepare();
  EXPECT_EQ(kernel->start_order(), (std::vector<std::string>{"greeter", "greeter-client"}));
  EXPECT_EQ(state_of(*kernel, "slow"), PluginState::discovered) << "not enabled, not needed: not started";
}

TEST_F(KernelTest, SelectChoosesBetweenProvidersAndAmbiguityIsAnError) {
  auto ambiguous = make({"greeter", "greeter-alt", "greeter-client"}, "plugins:\n  greeter-client: {}\n");
  auto error = failure(*ambiguous);
  EXPECT_NE(error.find("plugin 'greeter-client' needs test.Greeter/1, which several plugins provide (greeter, greeter-alt)"),
            std::string::npos) << error;
  EXPECT_NE(error.find("select: {greeter: greeter}"), std::string::npos) << error;

  TempDir other;
  std::swap(dir, other);
  auto chosen = make({"greeter", "greeter-alt", "greeter-client"},
                     "select: {greeter: greeter-alt}\nplugins:\n  greeter-client: {}\n  greeter: {}\n");
  chosen->discover();
  chosen->prepare();
  EXPECT_EQ(chosen->start_order(), (std::vector<std::string>{"greeter-alt", "greeter-client"}));
  EXPECT_EQ(state_of(*chosen, "greeter"), PluginState::excluded) << "enabled, but select chose another provider";
}

TEST_F(KernelTest, PluginConfigErrorsPointIntoTheFile) {
  auto kernel = make({"greeter"}, "plugins:\n  greeter:\n    config:\n      repeat: 99\n      greting: Hi\n");
  auto error = failure(*kernel);
  EXPECT_NE(error.find("company.yaml:8:7: plugins.greeter.config.repeat: 99 is out of range (fix: use a value between 1 and 10)"),
            std::string::npos) << error;
  EXPECT_NE(error.find("company.yaml:9:7: plugins.greeter.config.greting: unknown key \"greting\" (fix: did you mean \"greeting\"?)"),
            std::string::npos) << error;
}

TEST_F(KernelTest, AFailedStartRollsBackWhatStarted) {
  auto kernel = make({"greeter", "throwing-start"}, "plugins:\n  greeter: {}\n  throwing-start: {}\n");
  auto error = failure(*kernel);
  EXPECT_EQ(error, "plugin 'throwing-start': start failed: database unreachable: connection refused");
  EXPECT_EQ(state_of(*kernel, "greeter"), PluginState::stopped);
  EXPECT_FALSE(kernel->registry().has("test.Greeter/1"));
  EXPECT_TRUE(saw("plugin.failed:throwing-start"));
  EXPECT_TRUE(saw("plugin.stopped:greeter"));
}

TEST_F(KernelTest, AnOptionalPluginThatFailsIsLeftOut) {
  auto kernel = make({"greeter", "throwing-start"}, "plugins:\n  greeter: {}\n  throwing-start: {optional: true}\n");
  kernel->discover();
  kernel->prepare();
  EXPECT_TRUE(kernel->start());
  EXPECT_EQ(state_of(*kernel, "throwing-start"), PluginState::failed);
  EXPECT_EQ(state_of(*kernel, "greeter"), PluginState::started);
  EXPECT_EQ(kernel->start_order(), std::vector<std::string>{"greeter"});
}

TEST_F(KernelTest, DependencyCycleIsRefusedWithTheWholeChain) {
  auto kernel = make({"cycle-a", "cycle-b"}, "plugins:\n  cycle-a: {}\n  cycle-b: {}\n");
  auto error = failure(*kernel);
  EXPECT_NE(error.find("dependency cycle: 'cycle-a' needs test.CycleB/1 from 'cycle-b', which needs test.CycleA/1 from 'cycle-a'"),
            std::string::npos) << error;
}

TEST_F(KernelTest, MissingRequiredServiceIsRefused) {
  auto kernel = make({"needs-missing"}, "plugins:\n  needs-missing: {}\n");
  auto error = failure(*kernel);
  EXPECT_NE(error.find("plugin 'needs-missing' ("), std::string::npos) << error;
  EXPECT_NE(error.find("needs service test.Nothing/1, which no loadable plugin provides"), std::string::npos) << error;
}

TEST_F(KernelTest, RefusedAndDuplicateFilesDoNotStopTheRest) {
  auto kernel = make({"greeter", "dup-one", "dup-two", "bad-abi-major", "not-a-plugin", "no-entry"},
                     "plugins:\n  greeter: {}\n  dup: {}\n");
  kernel->discover();
  kernel->prepare();
  ASSERT_TRUE(kernel->start());
  std::vector<std::string> reasons;
  for (auto& r : kernel->refusals()) reasons.push_back(r.reason);
  ASSERT_EQ(reasons.size(), 4u);
  auto joined = reasons[0] + "\n" + reasons[1] + "\n" + reasons[2] + "\n" + reasons[3];
  EXPECT_NE(joined.find("dup-two.so: duplicate plugin name 'dup', already loaded from"), std::string::npos) << joined;
  EXPECT_NE(joined.find("bad-abi-major.so: built for plugin ABI 99.x"), std::string::npos) << joined;
  EXPECT_EQ(state_of(*kernel, "dup"), PluginState::started);
}

TEST_F(KernelTest, AnEnabledPluginThatIsMissingIsAnError) {
  auto kernel = make({"greeter", "bad-abi-major"}, "plugins:\n  greter: {}\n");
  auto error = failure(*kernel);
  EXPECT_NE(error.find("plugins.greter: no plugin named 'greter' was found (fix: did you mean \"greeter\"?; 1 plugin file(s) were refused"),
            std::string::npos) << error;
  TempDir other;
  std::swap(dir, other);
  auto optional = make({"greeter"}, "plugins:\n  absent: {optional: true}\n  greeter: {}\n");
  optional->discover();
  optional->prepare();
  EXPECT_TRUE(optional->start()) << "an optional plugin that is missing is only a warning";
}

TEST_F(KernelTest, PluginDirectoryThatDoesNotExist) {
  auto file = dir.write("company.yaml", "company_name: Test\nkernel:\n  plugin_dirs: [./nowhere]\n");
  Kernel kernel(load_company_config(file, "/unused"));
  try {
    kernel.discover();
    ADD_FAILURE() << "discovered a missing directory";
  } catch (const KernelError& e) {
    EXPECT_NE(std::string(e.what()).find("company.yaml:3:17: kernel.plugin_dirs: plugin directory \"" + (dir / "nowhere").string() +
                                         "\" does not exist (fix: create it"),
              std::string::npos) << e.what();
  }
}

TEST_F(KernelTest, StopRequestedDuringStartUpStopsWhatStarted) {
  auto kernel = make({"greeter"}, "plugins:\n  greeter: {}\n");
  kernel->discover();
  kernel->prepare();
  std::atomic<bool> stop{true};
  EXPECT_FALSE(kernel->start(&stop));
  EXPECT_EQ(state_of(*kernel, "greeter"), PluginState::configured);
  EXPECT_FALSE(kernel->registry().has("test.Greeter/1"));
}

TEST_F(KernelTest, APluginThatOverrunsTheShutdownDeadlineIsAbandoned) {
  auto kernel = make({"slow", "greeter"}, "plugins:\n  greeter: {}\n  slow: {config: {stop_delay: 5s}}\n");
  kernel->discover();
  kernel->prepare();
  ASSERT_TRUE(kernel->start());
  auto began = std::chrono::steady_clock::now();
  EXPECT_FALSE(kernel->stop()) << "stop reports that a plugin did not stop in time";
  EXPECT_LT(std::chrono::steady_clock::now() - began, std::chrono::milliseconds(4000));
  EXPECT_EQ(state_of(*kernel, "greeter"), PluginState::stopped) << "the others still stop";
  EXPECT_TRUE(saw("plugin.failed:slow"));
}

// A start() that hangs is refused after its limit, naming the plugin and the limit, and what had
// started is stopped again; optional or not (an overrun start may still register later).
TEST_F(KernelTest, AStartThatOverrunsItsLimitIsRefusedNamingThePlugin) {
  auto kernel = make({"slow", "greeter"}, "  start_timeout: 300ms\nplugins:\n  greeter: {}\n"
                                          "  slow: {optional: true, config: {start_delay: 3s}}\n");
  kernel->discover();
  kernel->prepare();
  auto began = std::chrono::steady_clock::now();
  std::string error;
  try {
    kernel->start();
  } catch (const KernelError& refused) {
    error = refused.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - began, std::chrono::milliseconds(2500)) << "not the 3 s it would take";
  EXPECT_NE(error.find("plugin 'slow': start() did not return within 300 ms"), std::string::npos) << error;
  EXPECT_NE(error.find("plugins.slow.start_timeout"), std::string::npos) << error;
  EXPECT_TRUE(saw("plugin.failed:slow"));
}

TEST_F(KernelTest, APluginsOwnStartTimeoutWinsOverTheKernels) {
  auto patient = make({"slow", "greeter"}, "  start_timeout: 300ms\nplugins:\n  greeter: {}\n"
                                           "  slow: {start_timeout: 5s, config: {start_delay: 500ms}}\n");
  patient->discover();
  patient->prepare();
  EXPECT_TRUE(patient->start());
}

TEST_F(KernelTest, LeftoversAfterStopAreSweptAndCounted) {
  auto kernel = make({"leaky"}, "plugins:\n  leaky: {}\n");
  nlohmann::json stopped;
  auto sub = kernel->bus().subscribe("plugin.stopped", [&](const Event& e) { stopped = e.payload; }, {.delivery = Delivery::immediate});
  kernel->discover();
  kernel->prepare();
  ASSERT_TRUE(kernel->start());
  EXPECT_TRUE(kernel->stop());
  EXPECT_EQ(stopped["leftovers_swept"], 2);
  EXPECT_FALSE(kernel->registry().has("test.Marker/1"));
}

TEST(Slots, AreDerivedFromServiceIds) {
  EXPECT_EQ(slot_of("synthorg.Store/1"), "store");
  EXPECT_EQ(slot_of("synthorg.HttpRouter/2"), "http_router");
  EXPECT_EQ(slot_of("test.Greeter/1"), "greeter");
}

}  // namespace
}  // namespace synthorg::kernel

#include <gtest/gtest.h>

#include "synthorg/host/plugin_file.hpp"
#include "synthorg/host/thread_pool_executor.hpp"
#include "test_support.hpp"

namespace synthorg::host {
namespace {

using synthorg::testing::fixture;

std::string refusal(const std::filesystem::path& path) {
  try {
    load_plugin_file(path);
  } catch (const PluginRefused& e) {
    std::string what = e.what();
    EXPECT_EQ(what.find('\n'), std::string::npos) << "a refusal is one line";
    EXPECT_EQ(what.rfind(std::filesystem::absolute(path).string() + ": ", 0), 0u) << "a refusal starts with the file: " << what;
    return what;
  }
  ADD_FAILURE() << path << " was accepted";
  return {};
}

TEST(Loader, ReadsAGoodPluginsManifest) {
  auto file = load_plugin_file(fixture("greeter"));
  EXPECT_EQ(file.manifest.name, "greeter");
  EXPECT_EQ(file.manifest.version, "1.2.3");
  EXPECT_EQ(file.manifest.provides, std::vector<std::string>{"test.Greeter/1"});
  ASSERT_EQ(file.manifest.needs.size(), 1u);
  EXPECT_EQ(file.manifest.needs[0].service, "synthorg.Executor/1");
  EXPECT_TRUE(file.manifest.needs[0].required);
  ASSERT_NE(file.manifest.config.find("repeat"), nullptr);
  EXPECT_EQ(file.manifest.config.find("repeat")->maximum, 10);
  EXPECT_EQ(std::string(file.descriptor->toolchain), host_toolchain_signature());
}

TEST(Loader, RefusesEachBadFileWithItsReason) {
  EXPECT_NE(refusal(fixture("bad-abi-major")).find("built for plugin ABI 99.x but this host speaks 1.x"), std::string::npos);
  EXPECT_NE(refusal(fixture("bad-abi-minor")).find("built for plugin ABI 1.77 but this host speaks only 1.0"), std::string::npos);
  auto toolchain = refusal(fixture("bad-toolchain"));
  EXPECT_NE(toolchain.find("built with another toolchain: gcc-4 (the host: "), std::string::npos) << toolchain;
  EXPECT_NE(toolchain.find("; boost=105500 (the host: boost="), std::string::npos) << toolchain;
  EXPECT_EQ(toolchain.find("cxx11abi"), std::string::npos) << "only what differs: " << toolchain;
  // dlopen refuses a plugin built with the old std::string ABI before its descriptor can be read;
  // the signature section still says what differs.
  auto old_abi = refusal(fixture("old-abi"));
  EXPECT_NE(old_abi.find("cannot be loaded (" ), std::string::npos) << old_abi;
  EXPECT_NE(old_abi.find("built with another toolchain: cxx11abi=0 (the host: cxx11abi=1); rebuild"), std::string::npos)
      << old_abi;
  EXPECT_NE(refusal(fixture("bad-struct-size")).find("struct_size 16 is smaller than"), std::string::npos);
  EXPECT_NE(refusal(fixture("bad-name")).find("plugin name \"Bad_Name\" is invalid"), std::string::npos);
  EXPECT_NE(refusal(fixture("no-entry")).find("missing the entry symbol synthorg_plugin_v1"), std::string::npos);
  EXPECT_NE(refusal(fixture("not-a-plugin")).find("not a loadable shared object"), std::string::npos);
  // dlopen's own words, without the stale errno text Boost appends to them.
  auto undefined = refusal(fixture("undefined-symbol"));
  EXPECT_NE(undefined.find("undefined symbol: synthorg_fixture_symbol_nobody_defines"), std::string::npos) << undefined;
  EXPECT_TRUE(undefined.ends_with("synthorg_fixture_symbol_nobody_defines")) << undefined;
  EXPECT_NE(refusal(fixture("no-such-plugin")).find("no such file"), std::string::npos);
  EXPECT_NE(refusal(SYNTHORG_FIXTURE_DIR).find("not a regular file"), std::string::npos);
}

TEST(Loader, ValidatesNamesAndVersions) {
  for (auto name : {"web", "store-postgres", "a1"}) EXPECT_TRUE(valid_plugin_name(name)) << name;
  for (auto name : {"", "Web", "1web", "web_api", "-x", "a b"}) EXPECT_FALSE(valid_plugin_name(name)) << name;
  for (auto v : {"1.0.0", "0.1.0-rc.1", "10.20.30+build.5"}) EXPECT_TRUE(valid_semver(v)) << v;
  for (auto v : {"", "1", "1.0", "01.0.0", "1.0.0-", "v1.0.0", "1.0.0 beta"}) EXPECT_FALSE(valid_semver(v)) << v;
}

TEST(Loader, AFailedStartSweepsWhatItRegistered) {
  const auto& file = load_plugin_file(fixture("greeter"));
  host::ThreadPoolExecutor executor({1, 1, 8});
  ServiceRegistry registry;
  EventBus bus([&](std::function<void()> task) { executor.post(std::move(task)); });
  auto context = std::make_shared<PluginContext>("greeter", registry, bus);
  PluginInstance instance(file, context);
  instance.configure(nlohmann::json::object());
  context->inject_fault_at(2);  // the registration succeeds, the subscription throws
  try {
    instance.start();
    ADD_FAILURE() << "start succeeded despite the injected fault";
  } catch (const PluginFailed& e) {
    EXPECT_NE(std::string(e.what()).find("plugin 'greeter': start failed: injected fault"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(registry.has("test.Greeter/1"));
  EXPECT_EQ(context->live_registrations() + context->live_subscriptions(), 0u);
}

TEST(Loader, ConfigureRefusesWhatTheConfigMapForbids) {
  const auto& file = load_plugin_file(fixture("greeter"));
  host::ThreadPoolExecutor executor({1, 1, 8});
  ServiceRegistry registry;
  EventBus bus([&](std::function<void()> task) { executor.post(std::move(task)); });
  PluginInstance instance(file, std::make_shared<PluginContext>("greeter", registry, bus));
  try {
    instance.configure({{"repeat", 99}});
    ADD_FAILURE() << "accepted repeat: 99";
  } catch (const PluginFailed& e) {
    EXPECT_NE(std::string(e.what()).find("plugin 'greeter': configure failed: repeat: 99 is out of range"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace synthorg::host

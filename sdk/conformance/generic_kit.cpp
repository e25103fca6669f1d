// The generic conformance kit: what every plugin must do, whatever it provides.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <future>
#include <map>
#include <stdexcept>
#include <thread>

#include "kit.hpp"

namespace synthorg::conformance {

Options& options() {
  static Options instance;
  return instance;
}

void within_limit(std::string_view call, std::string_view plugin, const std::function<void()>& body) {
  auto outcome = std::make_shared<std::promise<std::exception_ptr>>();
  auto finished = outcome->get_future();
  std::thread runner([body, outcome] {
    try {
      body();
      outcome->set_value(nullptr);
    } catch (...) {
      outcome->set_value(std::current_exception());
    }
  });
  auto limit = options().call_timeout;
  if (finished.wait_for(limit) == std::future_status::timeout) {
    runner.detach();
    std::fprintf(stderr,
                 "\nsynthorg-conformance: FAILED: %.*s of plugin '%.*s' did not return within %lld ms (--call-timeout; "
                 "the kernel refuses it the same way, after kernel.start_timeout). The kit stops here: the call is "
                 "still running.\n",
                 static_cast<int>(call.size()), call.data(), static_cast<int>(plugin.size()), plugin.data(),
                 static_cast<long long>(limit.count()));
    std::fflush(nullptr);
    std::_Exit(abandoned_exit_code);
  }
  runner.join();
  if (auto error = finished.get()) std::rethrow_exception(error);
}

const host::PluginFile& load(const std::filesystem::path& path) {
  static std::map<std::filesystem::path, std::unique_ptr<host::PluginFile>> loaded;
  auto& slot = loaded[path];
  if (!slot) slot = std::make_unique<host::PluginFile>(host::load_plugin_file(path));
  return *slot;
}

KitHost::KitHost()
    : executor_(std::make_shared<host::ThreadPoolExecutor>(host::ExecutorOptions{2, 2, 256})),
      bus_([executor = executor_.get()](std::function<void()> task) { executor->post(std::move(task)); }),
      executor_registration_(registry_.provide<Executor>(executor_)) {}

KitHost::~KitHost() {
  for (auto it = providers_.rbegin(); it != providers_.rend(); ++it) it->reset();
  bus_.shutdown();
  executor_->stop();
}

void KitHost::start_providers() {
  for (const auto& path : options().providers) {
    const auto& file = load(path);
    // A provider is started as the kernel would start it: not at all when what it requires is
    // missing (it may rely on it without looking, as http-api does on Settings).
    if (auto unmet = unmet_needs(file); !unmet.empty())
      throw std::runtime_error("provider '" + file.manifest.name + "' requires " + unmet.front() +
                               ", which the kit does not provide; test this plugin against a kernel instead");
    auto instance = std::make_unique<host::PluginInstance>(file, context_for(file));
    instance->configure(nlohmann::json::object());
    instance->start();
    providers_.push_back(std::move(instance));
  }
}

std::shared_ptr<PluginContext> KitHost::context_for(const host::PluginFile& file) {
  return std::make_shared<PluginContext>(file.manifest.name, registry_, bus_);
}

std::vector<std::string> KitHost::unmet_needs(const host::PluginFile& file) const {
  std::vector<std::string> unmet;
  for (const auto& need : file.manifest.needs)
    if (need.required && !registry_.has(need.service)) unmet.push_back(need.service);
  return unmet;
}

namespace {

class GenericKit : public ::testing::TestWithParam<std::filesystem::path> {
 protected:
  void SetUp() override {
    try {
      file_ = &load(GetParam());
    } catch (const host::PluginRefused& e) {
      GTEST_FAIL() << "the host refuses this file: " << e.what();
    }
    host_.start_providers();
    auto unmet = host_.unmet_needs(*file_);
    for (const auto& service : unmet)
      ADD_FAILURE() << "plugin '" << file_->manifest.name << "' requires " << service
                    << ", which nothing here provides; pass --with <provider plugin file>";
    if (!unmet.empty()) GTEST_SKIP() << "required services missing (reported as failures above)";
  }

  // A created and configured instance with its own context.
  std::unique_ptr<host::PluginInstance> configured() {
    auto instance = std::make_unique<host::PluginInstance>(*file_, host_.context_for(*file_));
    instance->configure(options().config);
    return instance;
  }

  void expect_provides_registered(const std::string& when) {
    for (const auto& service : file_->manifest.provides)
      EXPECT_TRUE(host_.registry().has(service))
          << when << ": the plugin declares it provides " << service << " but did not register it";
  }

  const host::PluginFile* file_ = nullptr;
  KitHost host_;
};

TEST_P(GenericKit, DescriptorIsComplete) {
  const auto& m = file_->manifest;
  EXPECT_TRUE(host::valid_plugin_name(m.name)) << "name \"" << m.name << "\"";
  EXPECT_TRUE(host::valid_semver(m.version)) << "version \"" << m.version << "\"";
  EXPECT_FALSE(m.description.empty()) << "describe what the plugin does in its manifest";
  for (const auto& field : m.config.fields())
    EXPECT_FALSE(field.description.empty()) << "config field \"" << field.name << "\" has no description";
  std::vector<ConfigIssue> issues;
  m.config.apply(options().config, "config", issues);
  for (const auto& issue : issues)
    ADD_FAILURE() << "the configuration under test is invalid: " << issue.path << ": " << issue.message;
}

TEST_P(GenericKit, LifecycleCanRepeat) {
  auto instance = configured();
  for (int round = 1; round <= 2; ++round) {
    auto when = "start #" + std::to_string(round);
    ASSERT_NO_THROW(within_limit("start()", file_->manifest.name, [&] { instance->start(); })) << when;
    expect_provides_registered(when);
    ASSERT_NO_THROW(within_limit("stop()", file_->manifest.name, [&] { instance->stop(); })) << "stop #" << round;
  }
  EXPECT_NO_THROW(instance.reset()) << "destroy";
}

TEST_P(GenericKit, NothingSurvivesStop) {
  auto instance = configured();
  auto& context = instance->context();
  std::size_t arrivals = 0, departures = 0;
  auto watch = host_.registry().watch_all([&](ServiceEvent event, const ServiceInfo& info) {
    if (info.owner == file_->manifest.name) ++(event == ServiceEvent::arrived ? arrivals : departures);
  });
  ASSERT_NO_THROW(within_limit("start()", file_->manifest.name, [&] { instance->start(); }));
  ASSERT_NO_THROW(within_limit("stop()", file_->manifest.name, [&] { instance->stop(); }));
  EXPECT_EQ(context.live_registrations(), 0u)
      << "registrations or trackers still held after stop(); release their tokens in stop(), not in the destructor";
  EXPECT_EQ(context.live_subscriptions(), 0u)
      << "bus subscriptions still held after stop(); release them in stop(), not in the destructor";
  EXPECT_EQ(departures, arrivals) << "services registered in start() did not depart in stop()";
}

TEST_P(GenericKit, InvalidConfigurationIsRefused) {
  auto instance = std::make_unique<host::PluginInstance>(*file_, host_.context_for(*file_));
  const std::string bogus = "synthorg_conformance_unknown_key";
  try {
    instance->configure({{bogus, 1}});
    ADD_FAILURE() << "configure accepted an unknown key \"" << bogus << "\"";
  } catch (const host::PluginFailed& e) {
    EXPECT_NE(std::string(e.what()).find(bogus), std::string::npos)
        << "the error should name the offending key; it was: " << e.what();
  }
  for (const auto& field : file_->manifest.config.fields()) {
    nlohmann::json wrong = options().config;
    wrong[field.name] = field.type == FieldType::boolean ? nlohmann::json("not-a-boolean") : nlohmann::json::array({true});
    EXPECT_THROW(instance->configure(wrong), host::PluginFailed) << "configure accepted a wrong type for " << field.name;
  }
  EXPECT_NO_THROW(instance.reset()) << "destroy after refused configuration";
}

TEST_P(GenericKit, FailedStartLeavesNothingBehind) {
  int mutations = 0;
  {
    auto probe = configured();
    ASSERT_NO_THROW(within_limit("start()", file_->manifest.name, [&] { probe->start(); }));
    mutations = probe->context().mutations();
    ASSERT_NO_THROW(within_limit("stop()", file_->manifest.name, [&] { probe->stop(); }));
  }
  RecordProperty("registrations_and_subscriptions_in_start", mutations);
  // Fail the start at every registration or subscription it makes, one at a time.
  for (int fault = 1; fault <= mutations; ++fault) {
    auto instance = configured();
    auto& context = instance->context();
    context.inject_fault_at(fault);
    EXPECT_THROW(instance->start(), host::PluginFailed) << "start succeeded although registration #" << fault << " failed";
    EXPECT_EQ(context.live_registrations() + context.live_subscriptions(), 0u) << "after a start failed at #" << fault;
    EXPECT_FALSE(instance->started());
    context.inject_fault_at(0);
    EXPECT_NO_THROW(instance->start()) << "a start after a failed one (fault at #" << fault << ") must work";
    expect_provides_registered("start after a failed start");
    EXPECT_NO_THROW(instance->stop());
  }
}

std::string test_name(const ::testing::TestParamInfo<std::filesystem::path>& info) {
  std::string name = info.param.stem().string();
  for (char& c : name)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return name + "_" + std::to_string(info.index);
}

INSTANTIATE_TEST_SUITE_P(Plugins, GenericKit, ::testing::ValuesIn(options().plugins), test_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(GenericKit);

}  // namespace
}  // namespace synthorg::conformance

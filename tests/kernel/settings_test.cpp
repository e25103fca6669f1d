// The Settings service end to end: a real kernel, the real store-sqlite plugin on a temporary
// file, and the settings-user fixture that defines a plain and a sensitive setting.
#include <gtest/gtest.h>

#include <cstdlib>
#include <mutex>

#include <sqlite3.h>

#include "kernel.hpp"
#include "synthorg/crypto.hpp"
#include "test_support.hpp"

namespace synthorg::kernel {
namespace {

using nlohmann::json;
using synthorg::testing::TempDir;

using synthorg::testing::ScopedEnv;

class SettingsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::unsetenv("SYNTHORG_SETTINGS_KEY");
    plugins = dir.plugins({"settings-user"});
    std::filesystem::create_symlink(std::filesystem::path(SYNTHORG_PLUGIN_BUILD_DIR) / "store-sqlite.so",
                                    plugins / "store-sqlite.so");
  }

  // A kernel with store-sqlite (unless `with_store` is false) and settings-user.
  std::unique_ptr<Kernel> make(const std::string& settings_yaml = "", bool with_store = true) {
    std::string yaml = "company_name: Test\nkernel:\n  plugin_dirs: [" + plugins.string() + "]\n";
    yaml += "plugins:\n  settings-user: {}\n";
    if (with_store) yaml += "  store-sqlite:\n    config: {path: " + (dir / "db" / "s.db").string() + "}\n";
    if (!settings_yaml.empty()) yaml += "settings:\n" + settings_yaml;
    auto kernel = std::make_unique<Kernel>(load_company_config(dir.write("company.yaml", yaml), "/unused"));
    changes_ = kernel->bus().subscribe("settings.changed", [this](const Event& event) {
      std::lock_guard lock(mutex_);
      events_.push_back(event.payload);
    }, {.delivery = Delivery::immediate});
    return kernel;
  }
  std::unique_ptr<Kernel> started(const std::string& settings_yaml = "", bool with_store = true) {
    auto kernel = make(settings_yaml, with_store);
    kernel->discover();
    kernel->prepare();
    kernel->start();
    return kernel;
  }
  std::string start_failure(const std::string& settings_yaml = "") {
    auto kernel = make(settings_yaml);
    try {
      kernel->discover();
      kernel->prepare();
      kernel->start();
    } catch (const std::exception& e) {
      return e.what();
    }
    ADD_FAILURE() << "the kernel started";
    return {};
  }
  // The stored row, read with SQLite directly: what is really on disk.
  std::string raw_row(const std::string& id) {
    sqlite3* db = nullptr;
    sqlite3_open_v2((dir / "db" / "s.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
    sqlite3_stmt* statement = nullptr;
    sqlite3_prepare_v2(db, "SELECT data FROM doc_kernel_settings WHERE id = ?", -1, &statement, nullptr);
    sqlite3_bind_text(statement, 1, id.c_str(), -1, SQLITE_TRANSIENT);
    std::string data;
    if (sqlite3_step(statement) == SQLITE_ROW) data = reinterpret_cast<const char*>(sqlite3_column_text(statement, 0));
    sqlite3_finalize(statement);
    sqlite3_close(db);
    return data;
  }
  std::vector<json> events() {
    std::lock_guard lock(mutex_);
    return events_;
  }
  static SettingsErrc error_of(const std::function<void()>& call) {
    try {
      call();
    } catch (const SettingsError& error) {
      return error.code();
    }
    ADD_FAILURE() << "expected a SettingsError";
    return SettingsErrc::unknown;
  }

  TempDir dir;
  std::filesystem::path plugins;
  std::mutex mutex_;
  std::vector<json> events_;
  Subscription changes_;
};

TEST_F(SettingsTest, ASensitiveSettingWithoutAKeyRefusesToStartAndSaysHowToFixIt) {
  auto message = start_failure();
  EXPECT_NE(message.find("fixture.token is sensitive"), std::string::npos) << message;
  EXPECT_NE(message.find("SYNTHORG_SETTINGS_KEY is not set"), std::string::npos) << message;
  EXPECT_NE(message.find("synthorg keygen fernet"), std::string::npos) << message;

  ScopedEnv malformed("SYNTHORG_SETTINGS_KEY", "not-a-fernet-key");
  message = start_failure();
  EXPECT_NE(message.find("SYNTHORG_SETTINGS_KEY is malformed"), std::string::npos) << message;
  EXPECT_EQ(message.find("not-a-fernet-key"), std::string::npos) << "the key must never be echoed: " << message;
}

TEST_F(SettingsTest, ResolutionIsEnvThenDatabaseThenConfigThenDefault) {
  ScopedEnv key("SYNTHORG_SETTINGS_KEY", crypto::Fernet::generate_key());
  {
    auto kernel = started();
    auto value = kernel->settings().get("fixture", "level");
    EXPECT_EQ(value.value, 3);
    EXPECT_EQ(value.source, SettingSource::default_value);
    kernel->stop();
  }
  {
    auto kernel = started("  fixture:\n    level: 5\n");
    EXPECT_EQ(kernel->settings().get("fixture", "level").value, 5);
    EXPECT_EQ(kernel->settings().get("fixture", "level").source, SettingSource::config);
    kernel->settings().set("fixture", "level", 7, "test");
    EXPECT_EQ(kernel->settings().get("fixture", "level").value, 7);
    EXPECT_EQ(kernel->settings().get("fixture", "level").source, SettingSource::database);
    kernel->stop();
  }
  {
    auto kernel = started("  fixture:\n    level: 5\n");
    EXPECT_EQ(kernel->settings().get("fixture", "level").value, 7) << "the stored value survives a restart";
    EXPECT_EQ(kernel->settings().get("fixture", "level").source, SettingSource::database);
    kernel->settings().reset("fixture", "level", "test");
    EXPECT_EQ(kernel->settings().get("fixture", "level").source, SettingSource::config);
    kernel->settings().set("fixture", "level", 8, "test");
    kernel->stop();
  }
  ScopedEnv pinned("SYNTHORG_FIXTURE_LEVEL", "2");
  auto kernel = started("  fixture:\n    level: 5\n");
  auto value = kernel->settings().get("fixture", "level");
  EXPECT_EQ(value.value, 2);
  EXPECT_EQ(value.source, SettingSource::env);
  EXPECT_EQ(error_of([&] { kernel->settings().set("fixture", "level", 4, "test"); }), SettingsErrc::pinned);
  EXPECT_EQ(error_of([&] { kernel->settings().reset("fixture", "level", "test"); }), SettingsErrc::pinned);
}

TEST_F(SettingsTest, BadValuesAreRefusedWithTheRuleTheyBreak) {
  ScopedEnv key("SYNTHORG_SETTINGS_KEY", crypto::Fernet::generate_key());
  auto kernel = started();
  auto& settings = kernel->settings();
  for (const json& bad : {json(0), json(10), json("5"), json(2.5), json(true), json(nullptr)}) {
    try {
      settings.set("fixture", "level", bad, "test");
      ADD_FAILURE() << "accepted " << bad;
    } catch (const SettingsError& error) {
      EXPECT_EQ(error.code(), SettingsErrc::invalid);
      EXPECT_NE(std::string(error.what()).find("fixture.level"), std::string::npos) << error.what();
    }
  }
  EXPECT_EQ(settings.get("fixture", "level").value, 3) << "nothing was stored";
  EXPECT_EQ(error_of([&] { settings.set("fixture", "nope", 1, "test"); }), SettingsErrc::unknown);
  EXPECT_EQ(error_of([&] { settings.set("fixture", "token", 42, "test"); }), SettingsErrc::invalid);
  EXPECT_EQ(error_of([&] { settings.get("nothing", "here"); }), SettingsErrc::unknown);
  EXPECT_EQ(error_of([&] { settings.set("backup", "keep", -1, "test"); }), SettingsErrc::invalid);
}

TEST_F(SettingsTest, BadEnvironmentAndConfigValuesStopTheStartNamingTheSource) {
  ScopedEnv key("SYNTHORG_SETTINGS_KEY", crypto::Fernet::generate_key());
  {
    ScopedEnv bad("SYNTHORG_FIXTURE_LEVEL", "lots");
    auto message = start_failure();
    EXPECT_NE(message.find("SYNTHORG_FIXTURE_LEVEL=lots: expected a whole number"), std::string::npos) << message;
  }
  {
    ScopedEnv secret("SYNTHORG_FIXTURE_TOKEN", "s3cret-value");
    auto kernel = started();
    EXPECT_EQ(kernel->settings().get("fixture", "token").value, "s3cret-value");
  }
  auto message = start_failure("  fixture:\n    level: 99\n");
  EXPECT_NE(message.find("company.yaml settings.fixture.level"), std::string::npos) << message;
  EXPECT_NE(message.find("above the maximum 9"), std::string::npos) << message;
}

TEST_F(SettingsTest, SensitiveValuesAreEncryptedAtRestAndRedactedEverywhere) {
  ScopedEnv key("SYNTHORG_SETTINGS_KEY", crypto::Fernet::generate_key());
  const std::string secret = "hunter2-this-is-secret";
  {
    auto kernel = started();
    kernel->settings().set("fixture", "token", secret, "admin");
    EXPECT_EQ(kernel->settings().get("fixture", "token").value, secret);
    for (const auto& view : kernel->settings().list()) {
      if (view.definition.key != "token") continue;
      EXPECT_EQ(view.shown_value, "********");
      EXPECT_EQ(view.source, SettingSource::database);
    }
    auto seen = events();
    ASSERT_FALSE(seen.empty());
    EXPECT_EQ(seen.back()["key"], "token");
    EXPECT_TRUE(seen.back()["value"].is_null()) << "a sensitive value never goes on the bus";
    kernel->stop();
  }
  auto row = raw_row("fixture.token");
  ASSERT_FALSE(row.empty());
  EXPECT_EQ(row.find(secret), std::string::npos) << "stored in clear: " << row;
  auto token = json::parse(row)["encrypted"].get<std::string>();
  EXPECT_EQ(crypto::Fernet(std::getenv("SYNTHORG_SETTINGS_KEY")).decrypt(token), json(secret).dump());

  auto kernel = started();
  EXPECT_EQ(kernel->settings().get("fixture", "token").value, secret) << "read back after a restart";
}

TEST_F(SettingsTest, AWrongKeyReportsTheStoredValueAndKeepsIt) {
  {
    ScopedEnv key("SYNTHORG_SETTINGS_KEY", crypto::Fernet::generate_key());
    auto kernel = started();
    kernel->settings().set("fixture", "token", "original", "admin");
    kernel->stop();
  }
  auto before = raw_row("fixture.token");
  ScopedEnv other_key("SYNTHORG_SETTINGS_KEY", crypto::Fernet::generate_key());
  {
    auto kernel = started();
    auto value = kernel->settings().get("fixture", "token");
    EXPECT_EQ(value.source, SettingSource::default_value);
    EXPECT_NE(value.problem.find("cannot be decrypted"), std::string::npos) << value.problem;
    EXPECT_EQ(kernel->settings().undecryptable(), std::vector<std::string>{"fixture.token"});
    kernel->stop();
  }
  EXPECT_EQ(raw_row("fixture.token"), before) << "the value it could not read is left exactly as it was";
}

TEST_F(SettingsTest, ChangesArePublishedOnlyWhenTheValueChanges) {
  ScopedEnv key("SYNTHORG_SETTINGS_KEY", crypto::Fernet::generate_key());
  auto kernel = started();
  auto count = events().size();
  kernel->settings().set("fixture", "level", 4, "alice");
  kernel->settings().set("fixture", "level", 4, "alice");
  auto seen = events();
  ASSERT_EQ(seen.size(), count + 1);
  EXPECT_EQ(seen.back(), (json{{"namespace", "fixture"}, {"key", "level"}, {"source", "database"},
                               {"restart_required", false}, {"actor", "alice"}, {"value", 4}}));
}

TEST_F(SettingsTest, WithoutAStoreValuesCannotBeWritten) {
  ScopedEnv key("SYNTHORG_SETTINGS_KEY", crypto::Fernet::generate_key());
  auto kernel = started("", false);  // settings-user only needs a Store optionally
  auto& settings = kernel->settings();
  EXPECT_EQ(error_of([&] { settings.set("backup", "keep", 3, "test"); }), SettingsErrc::unavailable);
  EXPECT_EQ(settings.get("backup", "keep").value, 7);
}

TEST_F(SettingsTest, UnknownConfigSettingsAreReported) {
  ScopedEnv key("SYNTHORG_SETTINGS_KEY", crypto::Fernet::generate_key());
  auto kernel = started("  fixture:\n    levl: 5\n  backup:\n    keep: 3\n");
  EXPECT_EQ(kernel->settings().undefined_config_settings(), std::vector<std::string>{"fixture.levl"});
  EXPECT_EQ(kernel->settings().get("backup", "keep").value, 3);
}

}  // namespace
}  // namespace synthorg::kernel

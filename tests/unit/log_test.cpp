#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "synthorg/log.hpp"
#include "test_support.hpp"

namespace synthorg {
namespace {

class LogTest : public ::testing::Test {
 protected:
  void TearDown() override { log::configure({}); }
  std::string read_log() {
    std::ifstream in(dir.path() / "synthorg.log");
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }
  testing::TempDir dir;
};

TEST_F(LogTest, LogfmtLinesQuoteWhatNeedsQuoting) {
  log::configure({.level = log::Level::info, .format = log::Format::logfmt, .dir = dir.path().string()});
  log::Logger("workloads").info("Container spawned", {{"user_id", "u-1"}, {"note", "two words"}, {"count", 3},
                                                      {"ratio", 0.5}, {"ok", true}, {"quote", "a\"b"}});
  log::Logger("workloads").debug("hidden at info");
  auto text = read_log();
  EXPECT_NE(text.find(" level=info logger=workloads msg=\"Container spawned\" user_id=u-1 note=\"two words\" count=3 "
                      "ratio=0.5 ok=true quote=\"a\\\"b\"\n"),
            std::string::npos)
      << text;
  EXPECT_EQ(text.rfind("time=", 0), 0u) << text;
  EXPECT_EQ(text.find("hidden"), std::string::npos);
}

TEST_F(LogTest, JsonLinesAreValidJson) {
  log::configure({.level = log::Level::debug, .format = log::Format::json, .dir = dir.path().string()});
  log::Logger("kernel").warn("Odd \"input\"\n", {{"value", -7}, {"path", "a\\b"}});
  auto text = read_log();
  auto line = nlohmann::json::parse(text.substr(0, text.find('\n')));
  EXPECT_EQ(line["level"], "warn");
  EXPECT_EQ(line["logger"], "kernel");
  EXPECT_EQ(line["msg"], "Odd \"input\"\n");
  EXPECT_EQ(line["value"], -7);
  EXPECT_EQ(line["path"], "a\\b");
}

TEST_F(LogTest, EnvironmentChoosesLevelAndFormatAndRefusesNonsense) {
  setenv("SYNTHORG_LOG_LEVEL", "WARNING", 1);
  setenv("SYNTHORG_LOG_FORMAT", "json", 1);
  auto options = log::options_from_env();
  EXPECT_EQ(options.level, log::Level::warn);
  EXPECT_EQ(options.format, log::Format::json);
  setenv("SYNTHORG_LOG_LEVEL", "loud", 1);
  try {
    log::options_from_env();
    ADD_FAILURE() << "accepted a nonsense level";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("SYNTHORG_LOG_LEVEL=\"loud\""), std::string::npos);
  }
  unsetenv("SYNTHORG_LOG_LEVEL");
  unsetenv("SYNTHORG_LOG_FORMAT");
}

TEST_F(LogTest, UnusableLogDirectoryIsAClearError) {
  auto file = dir.write("not-a-dir", "x");
  try {
    log::configure({.dir = (file / "sub").string()});
    ADD_FAILURE() << "accepted a log directory under a file";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("SYNTHORG_LOG_DIR"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace synthorg

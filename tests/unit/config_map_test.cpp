#include <gtest/gtest.h>

#include "synthorg/config_map.hpp"

namespace synthorg {
namespace {

using nlohmann::json;

ConfigMap sample() {
  return ConfigMap{}
      .string("image", "busybox", "Image to run")
      .pattern("[a-z0-9./:-]+")
      .integer("port", 8080, "Service port")
      .range(1, 65535)
      .number("cpu", 0.5, "CPUs")
      .range(0.01, 64)
      .boolean("read_only", true, "Read-only root")
      .duration("idle_timeout", "5m", "Idle time before stopping")
      .string_list("command", {}, "Command")
      .string_map("env", "Environment")
      .enumeration("variant", {"cpu", "gpu"}, "cpu", "Image variant")
      .string("token", "", "Secret token")
      .sensitive();
}

std::string issues_text(const std::vector<ConfigIssue>& issues) {
  std::string out;
  for (auto& i : issues) out += i.path + ": " + i.message + " (fix: " + i.fix + ")\n";
  return out;
}

TEST(ConfigMap, FillsDefaultsAndNormalisesDurations) {
  auto applied = sample().apply(json::object());
  EXPECT_EQ(applied["image"], "busybox");
  EXPECT_EQ(applied["port"], 8080);
  EXPECT_EQ(applied["idle_timeout"], 300000) << "durations arrive as milliseconds";
  EXPECT_EQ(applied["variant"], "cpu");
  EXPECT_EQ(sample().apply(nullptr), applied) << "null means nothing given";
}

TEST(ConfigMap, AcceptsValidValues) {
  auto applied = sample().apply({{"port", 80}, {"cpu", 2}, {"idle_timeout", "1m30s"}, {"command", {"sh", "-c"}},
                                 {"env", {{"A", "1"}}}, {"variant", "gpu"}});
  EXPECT_EQ(applied["cpu"], 2.0);
  EXPECT_EQ(applied["idle_timeout"], 90000);
  EXPECT_EQ(applied["variant"], "gpu");
}

TEST(ConfigMap, UnknownKeySuggestsTheNearestKnownOne) {
  std::vector<ConfigIssue> issues;
  sample().apply({{"imgae", "x"}}, "plugins.w.config", issues);
  ASSERT_EQ(issues.size(), 1u);
  EXPECT_EQ(issues[0].path, "plugins.w.config.imgae");
  EXPECT_EQ(issues[0].message, "unknown key \"imgae\"");
  EXPECT_EQ(issues[0].fix, "did you mean \"image\"?");
  issues.clear();
  sample().apply({{"zzzzzzzz", 1}}, "", issues);
  ASSERT_EQ(issues.size(), 1u);
  EXPECT_NE(issues[0].fix.find("known keys: image, port"), std::string::npos) << issues[0].fix;
}

TEST(ConfigMap, WrongTypesAndRangesAreEachReported) {
  std::vector<ConfigIssue> issues;
  sample().apply({{"port", "eighty"}, {"cpu", 100}, {"read_only", "yes"}, {"idle_timeout", 5}, {"command", {"ok", 3}},
                  {"env", {{"A", 1}}}, {"variant", "gpuu"}, {"image", "UPPER CASE"}},
                 "c", issues);
  auto text = issues_text(issues);
  EXPECT_EQ(issues.size(), 8u) << text;
  EXPECT_NE(text.find("c.port: expected a whole number, got \"eighty\""), std::string::npos) << text;
  EXPECT_NE(text.find("c.cpu: 100 is out of range (fix: use a value between 0.01 and 64"), std::string::npos) << text;
  EXPECT_NE(text.find("c.read_only: expected true or false"), std::string::npos) << text;
  EXPECT_NE(text.find("c.idle_timeout: expected a duration with a unit, got 5 (fix: write a duration"), std::string::npos) << text;
  EXPECT_NE(text.find("c.command[1]: expected a string"), std::string::npos) << text;
  EXPECT_NE(text.find("c.env.A: expected a string"), std::string::npos) << text;
  EXPECT_NE(text.find("did you mean \"gpu\"?"), std::string::npos) << text;
  EXPECT_NE(text.find("does not match the pattern"), std::string::npos) << text;
}

TEST(ConfigMap, RequiredKeysMustBeGiven) {
  auto map = ConfigMap{}.string("url", "", "Database URL").required();
  std::vector<ConfigIssue> issues;
  map.apply(json::object(), "db", issues);
  ASSERT_EQ(issues.size(), 1u);
  EXPECT_EQ(issues[0].message, "required key \"url\" is missing");
  EXPECT_THROW(map.apply(json::object()), ConfigError);
  EXPECT_EQ(map.apply({{"url", "x"}})["url"], "x");
}

TEST(ConfigMap, NonMapInputIsRefused) {
  std::vector<ConfigIssue> issues;
  sample().apply(json::array({1}), "plugins.x.config", issues);
  ASSERT_EQ(issues.size(), 1u);
  EXPECT_EQ(issues[0].path, "plugins.x.config");
}

TEST(ConfigMap, DeclarationMistakesAreCaughtEarly) {
  EXPECT_THROW(ConfigMap{}.duration("d", "soon", ""), std::invalid_argument);
  EXPECT_THROW(ConfigMap{}.enumeration("e", {"a"}, "b", ""), std::invalid_argument);
  EXPECT_THROW(ConfigMap{}.integer("x", 1, "").integer("x", 2, ""), std::invalid_argument);
  EXPECT_THROW(ConfigMap{}.required(), std::logic_error);
  EXPECT_ANY_THROW(ConfigMap{}.string("s", "", "").pattern("(unclosed"));
}

TEST(ConfigMap, SerialisesAcrossTheDescriptorLosslessly) {
  auto map = sample();
  auto copy = ConfigMap::from_json(json::parse(map.to_json().dump()));
  EXPECT_EQ(copy.to_json(), map.to_json());
  EXPECT_EQ(copy.json_schema(), map.json_schema());
  EXPECT_THROW(ConfigMap::from_json(json::object()), std::invalid_argument);
  EXPECT_ANY_THROW(ConfigMap::from_json(json::parse(R"([{"name":"x","type":"colour"}])")));
}

TEST(ConfigMap, JsonSchemaDescribesEveryField) {
  auto schema = sample().json_schema();
  EXPECT_EQ(schema["type"], "object");
  EXPECT_EQ(schema["additionalProperties"], false);
  EXPECT_EQ(schema["properties"]["port"]["type"], "integer");
  EXPECT_EQ(schema["properties"]["port"]["maximum"], 65535);
  EXPECT_EQ(schema["properties"]["variant"]["enum"], json({"cpu", "gpu"}));
  EXPECT_EQ(schema["properties"]["token"]["writeOnly"], true);
  EXPECT_EQ(schema["properties"]["idle_timeout"]["default"], "5m");
  EXPECT_EQ(schema["properties"]["env"]["additionalProperties"]["type"], "string");
}

TEST(Durations, ParseUnitsAndCompounds) {
  EXPECT_EQ(parse_duration("250ms")->count(), 250);
  EXPECT_EQ(parse_duration("10s")->count(), 10000);
  EXPECT_EQ(parse_duration("2h")->count(), 7200000);
  EXPECT_EQ(parse_duration("1d")->count(), 86400000);
  EXPECT_EQ(parse_duration("1m30s")->count(), 90000);
  // Each number fits, its product with the unit (or the sum) does not: refused, not wrapped.
  for (auto bad : {"", "10", "s", "10x", "1.5s", "-1s", "10 s", "99999999999999999999s", "240713881645d",
                   "2562047788016h", "106751991167d1d"})
    EXPECT_FALSE(parse_duration(bad)) << bad;
}

TEST(DidYouMean, FindsCloseNamesOnly) {
  std::vector<std::string> names{"enabled", "optional", "config"};
  EXPECT_EQ(did_you_mean("enabeld", names), "enabled");
  EXPECT_EQ(did_you_mean("confg", names), "config");
  EXPECT_EQ(did_you_mean("database", names), "");
}

}  // namespace
}  // namespace synthorg

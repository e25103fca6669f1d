#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "company_config.hpp"
#include "test_support.hpp"

namespace synthorg::kernel {
namespace {

CompanyConfig parse(const std::string& yaml) { return parse_company_config(yaml, "company.yaml", "/etc/synthorg", "/default/plugins"); }

std::string error_of(const std::string& yaml) {
  try {
    parse(yaml);
  } catch (const ConfigFileError& e) {
    return e.what();
  }
  ADD_FAILURE() << "accepted:\n" << yaml;
  return {};
}

TEST(CompanyConfig, EmbeddedDefaultIsValid) {
  auto config = parse_company_config(embedded_company_yaml(), "<embedded default>", "/", "/default/plugins");
  EXPECT_FALSE(config.company_name.empty());
  EXPECT_EQ(config.kernel.plugin_dirs, std::vector<std::filesystem::path>{"/default/plugins"});
  EXPECT_EQ(config.kernel.shutdown_timeout, std::chrono::seconds(10));
}

// The PondPilot guide's CONTAINER_* variables reach the workloads plugin through the shipped
// configurations (the embedded default and the image's), and their defaults hold when unset.
TEST(CompanyConfig, ThePondPilotContainerVariablesReachTheWorkloadsOfEveryShippedConfig) {
  using synthorg::testing::ScopedEnv;
  std::ifstream image_file(std::string(SYNTHORG_SOURCE_DIR) + "/packaging/docker/company.yaml");
  std::stringstream image_text;
  image_text << image_file.rdbuf();
  ASSERT_FALSE(image_text.str().empty());
  struct Shipped {
    std::string name, text, memory_default;
  };
  for (const auto& shipped : {Shipped{"embedded default", std::string(embedded_company_yaml()), "2g"},
                              Shipped{"packaging/docker/company.yaml", image_text.str(), "512m"}}) {
    {
      auto defaults = parse_company_config(shipped.text, shipped.name, "/", "/default/plugins").plugins.at("workloads").config;
      EXPECT_EQ(defaults["image"], "synthorg/flightsql-duckdb:latest") << shipped.name;
      EXPECT_EQ(defaults["memory_limit"], shipped.memory_default) << shipped.name;
      EXPECT_EQ(defaults["cpu_limit"], 0.5) << shipped.name;
      EXPECT_TRUE(defaults["network"].is_null() || defaults["network"] == "") << shipped.name << ": the engine's default";
    }
    ScopedEnv image("CONTAINER_IMAGE", "ghcr.io/pondpilot/sqlflite:latest");
    ScopedEnv memory("CONTAINER_MEMORY_LIMIT", "1g");
    ScopedEnv cpu("CONTAINER_CPU_LIMIT", "1.5");
    ScopedEnv network("CONTAINER_NETWORK", "pondpilot");
    auto set = parse_company_config(shipped.text, shipped.name, "/", "/default/plugins").plugins.at("workloads").config;
    EXPECT_EQ(set["image"], "ghcr.io/pondpilot/sqlflite:latest") << shipped.name;
    EXPECT_EQ(set["memory_limit"], "1g") << shipped.name;
    EXPECT_EQ(set["cpu_limit"], 1.5) << shipped.name;
    EXPECT_EQ(set["network"], "pondpilot") << shipped.name;
  }
}

TEST(CompanyConfig, ReadsEverySection) {
  auto config = parse(R"(company_name: Acme
kernel:
  plugin_dirs: [plugins, /opt/more]
  threads: 3
  shutdown_timeout: 2s
select:
  store: store-sqlite
plugins:
  hello: {config: {greeting: Hi}}
  quiet: {enabled: false, optional: true}
  bare:
)");
  EXPECT_EQ(config.company_name, "Acme");
  EXPECT_EQ(config.kernel.plugin_dirs, (std::vector<std::filesystem::path>{"/etc/synthorg/plugins", "/opt/more"}));
  EXPECT_EQ(config.kernel.threads, 3u);
  EXPECT_EQ(config.kernel.shutdown_timeout, std::chrono::seconds(2));
  EXPECT_EQ(config.select.at("store"), "store-sqlite");
  EXPECT_TRUE(config.plugins.at("hello").enabled);
  EXPECT_EQ(config.plugins.at("hello").config["greeting"], "Hi");
  EXPECT_FALSE(config.plugins.at("quiet").enabled);
  EXPECT_TRUE(config.plugins.at("quiet").optional);
  EXPECT_TRUE(config.plugins.at("bare").enabled) << "a listed plugin with no settings is enabled";
}

TEST(CompanyConfig, ThePondPilotContainersSectionSetsTheWorkloadsLimits) {
  auto config = parse("company_name: Acme\ncontainers:\n  memory_limit: \"1g\"\n  cpu_limit: 1.0\n"
                      "plugins:\n  workloads: {config: {image: duckdb}}\n");
  EXPECT_EQ(config.plugins.at("workloads").config["memory_limit"], "1g");
  EXPECT_EQ(config.plugins.at("workloads").config["cpu_limit"], 1.0);
  EXPECT_EQ(config.plugins.at("workloads").config["image"], "duckdb");
  // The same value in both places is fine; two different ones are refused, naming both.
  EXPECT_NO_THROW(parse("company_name: A\ncontainers: {cpu_limit: 2}\nplugins:\n  workloads: {config: {cpu_limit: 2}}\n"));
  auto conflict = error_of("company_name: A\ncontainers: {cpu_limit: 2}\nplugins:\n  workloads: {config: {cpu_limit: 1}}\n");
  EXPECT_NE(conflict.find("containers.cpu_limit"), std::string::npos) << conflict;
  EXPECT_NE(conflict.find("plugins.workloads.config.cpu_limit"), std::string::npos) << conflict;
  EXPECT_NE(conflict.find("keep one of the two"), std::string::npos) << conflict;
  auto typo = error_of("company_name: A\ncontainers: {memory_limt: 1g}\n");
  EXPECT_NE(typo.find("did you mean \"memory_limit\""), std::string::npos) << typo;
  auto other = error_of("company_name: A\ncontainers: {image: x}\n");
  EXPECT_NE(other.find("plugins.workloads.config"), std::string::npos) << other;
  EXPECT_NE(error_of("company_name: A\ncontainers: 512m\n").find("expected a map"), std::string::npos);
}

TEST(CompanyConfig, MalformedYamlNamesFileLineAndColumn) {
  auto error = error_of("company_name: x\nkernel:\n  threads: [1\n");
  EXPECT_EQ(error.rfind("company.yaml:", 0), 0u) << error;
  EXPECT_NE(error.find("malformed YAML"), std::string::npos) << error;
  EXPECT_NE(error.find("fix:"), std::string::npos) << error;
}

TEST(CompanyConfig, UnknownKeysSuggestTheIntendedOne) {
  auto error = error_of("company_name: x\nkernal:\n  threads: 1\n");
  EXPECT_NE(error.find("company.yaml:2:1: kernal: unknown key \"kernal\" (fix: did you mean \"kernel\"?)"), std::string::npos) << error;
  error = error_of("company_name: x\nplugins:\n  web:\n    enabeld: true\n");
  EXPECT_NE(error.find("company.yaml:4:5: plugins.web.enabeld: unknown key"), std::string::npos) << error;
  EXPECT_NE(error.find("did you mean \"enabled\"?"), std::string::npos) << error;
}

TEST(CompanyConfig, WrongTypesQuoteTheValueAndTheFix) {
  auto error = error_of("company_name: x\nkernel:\n  threads: many\n  shutdown_timeout: 10\n");
  EXPECT_NE(error.find("company.yaml:3:3: kernel.threads: expected a whole number, got \"many\""), std::string::npos) << error;
  EXPECT_NE(error.find("kernel.shutdown_timeout: expected a duration with a unit, got 10 (fix: write a duration"), std::string::npos) << error;
  error = error_of("company_name: x\nplugins: [a, b]\n");
  EXPECT_NE(error.find("plugins: expected a map of plugin names"), std::string::npos) << error;
  error = error_of("company_name: x\nplugins:\n  Bad_Name: {}\n");
  EXPECT_NE(error.find("\"Bad_Name\" is not a plugin name"), std::string::npos) << error;
}

TEST(CompanyConfig, MissingOrEmptyRequiredValues) {
  EXPECT_NE(error_of("kernel: {}\n").find("required key \"company_name\" is missing"), std::string::npos);
  EXPECT_NE(error_of("company_name: \"\"\n").find("expected a non-empty string"), std::string::npos);
  EXPECT_NE(error_of("").find("the file is empty"), std::string::npos);
  EXPECT_NE(error_of("- a\n- b\n").find("the top level is not a map"), std::string::npos);
  EXPECT_NE(error_of("company_name: x\ncompany_name: y\n").find("duplicate key"), std::string::npos);
}

TEST(CompanyConfig, ExpandsEnvironmentVariables) {
  setenv("SYNTHORG_TEST_THREADS", "7", 1);
  setenv("SYNTHORG_TEST_EMPTY", "", 1);
  unsetenv("SYNTHORG_TEST_UNSET");
  auto config = parse(R"(company_name: "${SYNTHORG_TEST_UNSET:-Acme} $$5"
kernel:
  threads: ${SYNTHORG_TEST_THREADS}
  blocking_threads: ${SYNTHORG_TEST_EMPTY:-2}
)");
  EXPECT_EQ(config.company_name, "Acme $5");
  EXPECT_EQ(config.kernel.threads, 7u) << "an expanded plain scalar is typed after expansion";
  EXPECT_EQ(config.kernel.blocking_threads, 2u) << ":- also applies to an empty variable, as in the shell";
  unsetenv("SYNTHORG_TEST_THREADS");
  unsetenv("SYNTHORG_TEST_EMPTY");
}

TEST(CompanyConfig, ADefaultMayReferToAnotherVariable) {
  unsetenv("SYNTHORG_TEST_UNSET");
  setenv("SYNTHORG_TEST_SECOND", "9", 1);
  auto second = parse("company_name: x\nkernel:\n  threads: ${SYNTHORG_TEST_UNSET:-${SYNTHORG_TEST_SECOND:-3}}\n");
  EXPECT_EQ(second.kernel.threads, 9u) << "the first unset: the second";
  unsetenv("SYNTHORG_TEST_SECOND");
  auto fallback = parse("company_name: x\nkernel:\n  threads: ${SYNTHORG_TEST_UNSET:-${SYNTHORG_TEST_SECOND:-3}}\n");
  EXPECT_EQ(fallback.kernel.threads, 3u) << "both unset: the innermost default";
  setenv("SYNTHORG_TEST_UNSET", "5", 1);
  auto first = parse("company_name: \"${SYNTHORG_TEST_UNSET:-${SYNTHORG_TEST_SECOND:-3}}}\"\n");
  EXPECT_EQ(first.company_name, "5}") << "the first set wins; a brace after the reference is text";
  unsetenv("SYNTHORG_TEST_UNSET");
  EXPECT_NE(error_of("company_name: \"${SYNTHORG_TEST_UNSET:-${SYNTHORG_TEST_SECOND\"\n").find("unterminated"),
            std::string::npos);
}

TEST(CompanyConfig, UnsetVariableIsAnErrorWithItsPosition) {
  unsetenv("SYNTHORG_TEST_UNSET");
  auto error = error_of("company_name: x\nplugins:\n  db:\n    config: {url: \"${SYNTHORG_TEST_UNSET}\"}\n");
  EXPECT_NE(error.find("company.yaml:4:"), std::string::npos) << error;
  EXPECT_NE(error.find("plugins.db.config.url: environment variable SYNTHORG_TEST_UNSET is not set"), std::string::npos) << error;
  EXPECT_NE(error.find("${SYNTHORG_TEST_UNSET:-default}"), std::string::npos) << error;
  EXPECT_NE(error_of("company_name: \"${UNCLOSED\"\n").find("unterminated"), std::string::npos);
  EXPECT_NE(error_of("company_name: \"${1BAD}\"\n").find("is not a variable reference"), std::string::npos);
}

// Found by fuzz/company_config_fuzzer: each of these once escaped as an exception that was not a
// ConfigFileError ("stod", "invalid UTF-8 byte"), so the operator got no position and no fix.
TEST(CompanyConfig, OutOfRangeNumbersAndBytesThatAreNotUtf8AreConfigErrorsWithPositions) {
  auto huge = error_of("company_name: x\nkernel:\n  threads: 1e999\n");
  EXPECT_NE(huge.find("company.yaml:3:3: kernel.threads: expected a whole number, got \"1e999\""), std::string::npos)
      << huge;
  EXPECT_NE(error_of("company_name: x\nkernel: {threads: 1e-400}\n").find("kernel.threads"), std::string::npos);
  auto latin1 = error_of("company_name: x\nplugins:\n  caf\xe9: {}\n");
  EXPECT_NE(latin1.find("company.yaml:3:6: the file is not valid UTF-8 here (fix: save it as UTF-8)"), std::string::npos)
      << latin1;
  for (const char* bad : {"\xed\xa0\x80", "\xe0\x80\xaf", "\xf4\x90\x80\x80", "\xc0\xaf", "\xe2\x82"})
    EXPECT_NE(error_of(std::string("company_name: \"") + bad + "\"\n").find("not valid UTF-8"), std::string::npos)
        << "surrogates, overlong forms, past U+10FFFF and cut short are all refused";
  EXPECT_EQ(parse("company_name: \"Caf\xc3\xa9 \xf0\x9f\x8c\xb1\"\n").company_name, "Caf\xc3\xa9 \xf0\x9f\x8c\xb1");

  EXPECT_NE(error_of("company_name: \"\\uD800\"\n").find("invalid unicode"), std::string::npos) << "yaml-cpp's own check";
  auto with_nul = error_of(std::string("company_name: compa\"${X \"$\"${Y\r\0NY", 31));
  EXPECT_FALSE(with_nul.empty()) << "found by the fuzzer: a NUL in an unterminated reference";

  setenv("SYNTHORG_TEST_LATIN1", "caf\xe9", 1);
  auto from_env = error_of("company_name: ${SYNTHORG_TEST_LATIN1}\n");
  EXPECT_NE(from_env.find("company_name: environment variable SYNTHORG_TEST_LATIN1 is not valid UTF-8"), std::string::npos)
      << from_env;
  unsetenv("SYNTHORG_TEST_LATIN1");
}

TEST(CompanyConfig, ALiteralDollarInsideADefaultOpensNothing) {
  unsetenv("SYNTHORG_TEST_UNSET");
  EXPECT_EQ(parse("company_name: \"${SYNTHORG_TEST_UNSET:-$${x}\"\n").company_name, "${x");
  EXPECT_EQ(parse("company_name: \"${SYNTHORG_TEST_UNSET:-a$$b}\"\n").company_name, "a$b");
}

TEST(CompanyConfig, ReportsEveryMistakeAtOnce) {
  unsetenv("SYNTHORG_TEST_UNSET");
  auto error = error_of("company_name: ${SYNTHORG_TEST_UNSET}\nkernal: {}\nkernel: {threads: -1}\n");
  EXPECT_NE(error.find("SYNTHORG_TEST_UNSET is not set"), std::string::npos) << error;
  EXPECT_NE(error.find("unknown key \"kernal\""), std::string::npos) << error;
  EXPECT_NE(error.find("kernel.threads: -1 is out of range"), std::string::npos) << error;
}

// `select: {orchestrator: auto}` (the embedded default) picks what this machine can run.
TEST(CompanyConfig, AutoOrchestratorFollowsWhatTheMachineOffers) {
  using synthorg::testing::ScopedEnv;
  synthorg::testing::TempDir dir;
  auto file = dir.write("c.yaml", "company_name: Auto\nselect: {orchestrator: auto}\n");
  ScopedEnv config_path("SYNTHORG_CONFIG_PATH", file.string());
  ScopedEnv no_service_host("KUBERNETES_SERVICE_HOST", nullptr);
  ScopedEnv no_service_port("KUBERNETES_SERVICE_PORT", nullptr);
  {
    ScopedEnv no_engine("DOCKER_HOST", "unix://" + (dir / "no-such.sock").string());
    EXPECT_EQ(load_company_config(std::nullopt, "/p").select.at("orchestrator"), "orchestrator-process");
  }
  {
    // A socket that accepts connections stands for a running engine.
    auto path = dir / "engine.sock";
    int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strcpy(address.sun_path, path.c_str());
    ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
    ASSERT_EQ(::listen(fd, 1), 0);
    ScopedEnv engine("DOCKER_HOST", "unix://" + path.string());
    EXPECT_EQ(load_company_config(std::nullopt, "/p").select.at("orchestrator"), "orchestrator-docker");
    ::close(fd);
  }
  {
    ScopedEnv tcp_engine("DOCKER_HOST", "tcp://127.0.0.1:2375");
    EXPECT_EQ(load_company_config(std::nullopt, "/p").select.at("orchestrator"), "orchestrator-docker")
        << "an engine named by TCP is the operator's explicit choice";
  }
  ScopedEnv service_host("KUBERNETES_SERVICE_HOST", "10.0.0.1");
  ScopedEnv service_port("KUBERNETES_SERVICE_PORT", "443");
  EXPECT_EQ(load_company_config(std::nullopt, "/p").select.at("orchestrator"), "orchestrator-kubernetes");
}

TEST(CompanyConfig, FileChoiceAndDatabaseUrlOverride) {
  synthorg::testing::TempDir dir;
  auto file = dir.write("c.yaml", "company_name: FromFile\nselect: {store: store-sqlite}\n");
  setenv("SYNTHORG_CONFIG_PATH", file.c_str(), 1);
  setenv("SYNTHORG_DATABASE_URL", "postgres://u:p@127.0.0.1/db", 1);
  auto config = load_company_config(std::nullopt, "/p");
  EXPECT_EQ(config.company_name, "FromFile");
  EXPECT_EQ(config.document.file, file.string());
  EXPECT_EQ(config.select.at("store"), "store-postgres") << "SYNTHORG_DATABASE_URL selects the PostgreSQL store";
  unsetenv("SYNTHORG_DATABASE_URL");
  setenv("SYNTHORG_CONFIG_PATH", (dir / "missing.yaml").c_str(), 1);
  try {
    load_company_config(std::nullopt, "/p");
    ADD_FAILURE() << "accepted a missing file";
  } catch (const ConfigFileError& e) {
    EXPECT_NE(std::string(e.what()).find("missing.yaml: cannot read the configuration file (named by SYNTHORG_CONFIG_PATH): no such file"),
              std::string::npos)
        << e.what();
  }
  unsetenv("SYNTHORG_CONFIG_PATH");
}

TEST(CompanyConfig, PersistenceBackendPicksTheStoreAndTheDatabaseUrlStillWins) {
  synthorg::testing::TempDir dir;
  auto file = dir.write("c.yaml", "company_name: X\nselect: {store: store-postgres}\n");
  setenv("SYNTHORG_CONFIG_PATH", file.c_str(), 1);
  unsetenv("SYNTHORG_DATABASE_URL");
  setenv("SYNTHORG_PERSISTENCE_BACKEND", "SQLite", 1);
  EXPECT_EQ(load_company_config(std::nullopt, "/p").select.at("store"), "store-sqlite");
  setenv("SYNTHORG_DATABASE_URL", "postgres://u:p@127.0.0.1/db", 1);
  EXPECT_EQ(load_company_config(std::nullopt, "/p").select.at("store"), "store-postgres") << "the URL still wins";
  unsetenv("SYNTHORG_DATABASE_URL");
  auto error_for = [](const char* value) {
    setenv("SYNTHORG_PERSISTENCE_BACKEND", value, 1);
    try {
      load_company_config(std::nullopt, "/p");
    } catch (const ConfigFileError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_NE(error_for("postgres").find("needs SYNTHORG_DATABASE_URL"), std::string::npos);
  auto bad = error_for("mysql");
  EXPECT_NE(bad.find("SYNTHORG_PERSISTENCE_BACKEND is \"mysql\"; it must be sqlite or postgres"), std::string::npos)
      << bad;
  unsetenv("SYNTHORG_PERSISTENCE_BACKEND");
  unsetenv("SYNTHORG_CONFIG_PATH");
}

}  // namespace
}  // namespace synthorg::kernel

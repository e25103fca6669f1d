// auth: users, passwords (Argon2id) and JWT sessions. Provides the Authenticator that http-api
// asks about every protected request, and mounts /api/v1/auth/* and /api/v1/users.
#include <algorithm>
#include <cstdlib>
#include <stdexcept>

#include <fmt/format.h>

#include "jwt.hpp"
#include "limits.hpp"
#include "passwords.hpp"
#include "routes.hpp"
#include "sessions.hpp"
#include "synthorg/plugin.hpp"
#include "synthorg/services/settings.hpp"
#include "synthorg/services/store.hpp"
#include "users.hpp"

namespace synthorg::auth {
namespace {

using nlohmann::json;

constexpr std::size_t min_secret_characters = 32;

// The fix goes in the message; the value never does, not even its first characters.
std::string secret_from_env() {
  const char* value = std::getenv("SYNTHORG_JWT_SECRET");
  if (!value || !*value)
    throw std::runtime_error(
        "SYNTHORG_JWT_SECRET is not set; the auth plugin signs sessions with it "
        "(fix: export SYNTHORG_JWT_SECRET=\"$(synthorg keygen jwt)\", the same value on every replica)");
  std::string secret(value);
  if (secret.size() < min_secret_characters)
    throw std::runtime_error(fmt::format(
        "SYNTHORG_JWT_SECRET is {} characters long; it must be at least {} "
        "(fix: export SYNTHORG_JWT_SECRET=\"$(synthorg keygen jwt)\", which gives 86)",
        secret.size(), min_secret_characters));
  return secret;
}

SettingDefinition integer_setting(std::string key, std::int64_t value, double minimum, double maximum,
                                  std::string description) {
  SettingDefinition definition;
  definition.space = "auth";
  definition.key = std::move(key);
  definition.type = SettingType::integer;
  definition.default_value = value;
  definition.minimum = minimum;
  definition.maximum = maximum;
  definition.description = std::move(description);
  return definition;
}

struct Options {
  std::vector<JwtAlgorithm> algorithms;
  std::chrono::seconds token_ttl{12 * 3600};
  std::chrono::seconds leeway{30};
  bool cookie_secure = false;
  std::size_t hash_concurrency = 2;
  std::size_t hash_queue = 64;
  Argon2Params argon2;
  ExternalTokens external;
};

class AuthPlugin final : public Plugin {
 public:
  static PluginManifest manifest() {
    return {.name = "auth",
            .version = "0.1.0",
            .description = "Users, Argon2id passwords and JWT sessions; the Authenticator behind every protected route",
            .provides = {std::string(Authenticator::service_id)},
            .needs = {{"synthorg.HttpRouter/1", true},
                      {"synthorg.Store/1", true},
                      {"synthorg.Settings/1", true},
                      {"synthorg.Executor/1", true}},
            .config = ConfigMap{}
                          .string_list("algorithms", {"HS256"},
                                       "JWT algorithms accepted (HS256, HS384, HS512); the first one signs new tokens")
                          .duration("token_ttl", "12h", "How long a session token is valid")
                          .duration("leeway", "30s", "Clock skew allowed when checking exp, nbf and iat (1s to 5m)")
                          .boolean("cookie_secure", false,
                                   "Mark the session cookie Secure (set it when clients reach us over HTTPS)")
                          .integer("hash_concurrency", 2,
                                   "Argon2id hashes running at once; keep it below kernel.blocking_threads")
                          .range(1, 256)
                          .integer("hash_queue", 64, "Sign-ins waiting for a hashing slot; more get 503 busy")
                          .range(0, 100000)
                          .integer("argon2_memory_kib", 19456, "Argon2id memory per hash, in KiB")
                          .range(64, 4 * 1024 * 1024)
                          .integer("argon2_iterations", 2, "Argon2id passes over that memory")
                          .range(1, 64)
                          .integer("argon2_parallelism", 1, "Argon2id lanes (libargon2 starts a thread per lane beyond one)")
                          .range(1, 16)
                          .boolean("accept_external_tokens", false,
                                   "Accept tokens signed with the secret whose sub is no user here (another issuer's, "
                                   "e.g. PondPilot's auth); refused otherwise")
                          .string("external_max_role", "viewer",
                                  "The highest role an accepted external token keeps (viewer, operator or admin)")
                          .pattern("^(viewer|operator|admin)$")};
  }
  explicit AuthPlugin(PluginContext& context) : context_(context) {}

  void configure(const json& config) override {
    Options options;
    for (const auto& name : config.at("algorithms").get<std::vector<std::string>>()) {
      auto algorithm = parse_algorithm(name);
      if (!algorithm)
        throw std::invalid_argument(fmt::format(
            "algorithms: {} is not accepted; only HMAC with the shared secret is (fix: use HS256, HS384 or HS512)",
            json(name).dump()));
      if (std::find(options.algorithms.begin(), options.algorithms.end(), *algorithm) == options.algorithms.end())
        options.algorithms.push_back(*algorithm);
    }
    if (options.algorithms.empty())
      throw std::invalid_argument("algorithms: the list is empty (fix: [HS256])");
    auto seconds = [&](const char* key) {
      return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::milliseconds(config.at(key).get<std::int64_t>()));
    };
    options.token_ttl = seconds("token_ttl");
    options.leeway = seconds("leeway");
    if (options.token_ttl < std::chrono::minutes(1) || options.token_ttl > std::chrono::hours(24 * 30))
      throw std::invalid_argument("token_ttl: must be from 1m to 30d");
    // At least a second: a password change revokes by whole seconds of iat, and a fresh token
    // may be stamped up to a second ahead (see Sessions::issue).
    if (options.leeway < std::chrono::seconds(1) || options.leeway > std::chrono::minutes(5))
      throw std::invalid_argument("leeway: must be from 1s to 5m");
    options.cookie_secure = config.at("cookie_secure").get<bool>();
    options.hash_concurrency = config.at("hash_concurrency").get<std::size_t>();
    options.hash_queue = config.at("hash_queue").get<std::size_t>();
    options.argon2.memory_kib = config.at("argon2_memory_kib").get<std::uint32_t>();
    options.argon2.iterations = config.at("argon2_iterations").get<std::uint32_t>();
    options.argon2.parallelism = config.at("argon2_parallelism").get<std::uint32_t>();
    if (options.argon2.memory_kib < 8 * options.argon2.parallelism)
      throw std::invalid_argument("argon2_memory_kib: must be at least 8 KiB per lane (argon2_parallelism)");
    options.external.accept = config.at("accept_external_tokens").get<bool>();
    options.external.max_role = config.at("external_max_role").get<std::string>();
    options_ = std::move(options);
  }

  void start() override {
    // Everything into locals first: a start that fails part-way must leave nothing behind.
    JwtCodec codec({secret_from_env(), options_.algorithms, options_.leeway});
    auto settings = context_.registry().get<Settings>();
    auto store = context_.registry().get<Store>();
    if (!settings || !store) throw std::runtime_error("the Settings and Store services are required");
    std::vector<Token> definitions;
    definitions.push_back(settings->define(integer_setting(
        "lockout_attempts", 5, 1, 1000, "Failed sign-ins in a row after which a username is locked out")));
    definitions.push_back(settings->define(
        integer_setting("lockout_seconds", 300, 1, 86400, "How long a locked-out username must wait")));
    definitions.push_back(settings->define(
        integer_setting("password_min_length", 12, 8, 1024, "Shortest password accepted, in characters")));

    // start() runs on the kernel's thread, not an I/O thread: blocking here is allowed.
    auto users = std::make_shared<UserStore>(store);
    users->ensure_collections();
    auto sessions = std::make_shared<Sessions>(std::move(codec), options_.token_ttl, options_.external);
    auto now = unix_now();
    auto known = users->load_all();
    for (const auto& user : known) sessions->remember(user);
    auto revocations = users->load_revocations(now);
    for (const auto& revocation : revocations) sessions->revoke(revocation, now);

    auto& executor = context_.executor();
    auto context = std::make_shared<AuthContext>(AuthContext{
        executor, settings, users, sessions, std::make_shared<const PasswordHasher>(options_.argon2),
        std::make_shared<LoginThrottle>(),
        std::make_shared<HashQueue>(executor, options_.hash_concurrency, options_.hash_queue), options_.cookie_secure,
        log::Logger("auth")});
    auto router = context_.registry().get<HttpRouter>();
    if (!router) throw std::runtime_error("the HttpRouter service is required (enable http-api)");
    auto routes = mount_routes(*router, context);
    auto registration = context_.registry().provide<Authenticator>(std::make_shared<SessionAuthenticator>(sessions));

    definitions_ = std::move(definitions);
    routes_ = std::move(routes);
    registration_ = std::move(registration);
    context_.log().info("auth ready", {{"users", known.size()},
                                       {"revoked_tokens", revocations.size()},
                                       {"algorithm", to_string(options_.algorithms.front())},
                                       {"token_ttl_s", static_cast<std::int64_t>(options_.token_ttl.count())}});
    if (known.empty())
      context_.log().warn("no users yet: create the first admin with POST /api/v1/auth/setup");
  }

  void stop() override {
    registration_.reset();
    routes_.clear();
    definitions_.clear();
  }

 private:
  PluginContext& context_;
  Options options_;
  std::vector<Token> definitions_;
  std::vector<Token> routes_;
  Registration registration_;
};

}  // namespace
}  // namespace synthorg::auth

SYNTHORG_PLUGIN(synthorg::auth::AuthPlugin)

// auth: users, passwords (Argon2id) and JWT sessions. Provides the Authenticator that http-api
// asks about every protected request, and mounts /api/v1/auth/* and /api/v1/users.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include <fmt/format.h>

#include "jwt.hpp"
#include "limits.hpp"
#include "passwords.hpp"
#include "routes.hpp"
#include "sessions.hpp"
#include "synthorg/crypto.hpp"
#include "synthorg/plugin.hpp"
#include "synthorg/services/settings.hpp"
#include "synthorg/services/store.hpp"
#include "users.hpp"

namespace synthorg::auth {
namespace {

using nlohmann::json;

void check_secret(const std::string& secret, const std::string& where) {
  if (auto problem = crypto::jwt_secret_problem(secret); !problem.empty())
    throw std::runtime_error(fmt::format(
        "{} {} (fix: export SYNTHORG_JWT_SECRET=\"$(synthorg keygen jwt)\", 86 characters of URL-safe base64)", where,
        problem));
}

// A secret of this install's own, for a single machine started without SYNTHORG_JWT_SECRET
// (`make run`): made on first start, then read back, so sessions survive restarts. Mode 0600; a
// file others may read is refused, as ssh refuses such a key.
std::string secret_from_file(const std::filesystem::path& path, const log::Logger& log) {
  namespace fs = std::filesystem;
  std::error_code error;
  bool generated = false;
  if (!fs::exists(path, error)) {
    if (path.has_parent_path()) {
      fs::create_directories(path.parent_path(), error);
      if (error)
        throw std::runtime_error(fmt::format("cannot create {} for the generated JWT secret: {} (fix: set "
                                             "SYNTHORG_JWT_SECRET, or make the directory writable)",
                                             path.parent_path().string(), error.message()));
    }
    // Written whole under a name of its own, then linked into place: a second kernel starting at
    // the same moment finds either no file or the whole secret, and both end up with the same one.
    auto draft = path;
    draft += ".new-" + std::to_string(::getpid());
    int fd = ::open(draft.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
      throw std::runtime_error(fmt::format("cannot create the JWT secret file {}: {} (fix: set SYNTHORG_JWT_SECRET, "
                                           "or make the directory writable)",
                                           draft.string(), std::strerror(errno)));
    auto secret = crypto::base64url_encode(crypto::random_bytes(64)) + "\n";
    bool written = ::write(fd, secret.data(), secret.size()) == static_cast<ssize_t>(secret.size()) && ::fsync(fd) == 0;
    ::close(fd);
    int linked = written ? ::link(draft.c_str(), path.c_str()) : -1;
    int link_error = errno;
    ::unlink(draft.c_str());
    if (!written) throw std::runtime_error("cannot write the generated JWT secret to " + draft.string());
    if (linked == 0) {
      generated = true;
      log.warn("SYNTHORG_JWT_SECRET is not set: sessions are signed with a secret generated now and kept in "
               "secret_file (mode 0600); fine on one machine, but production must set its own "
               "SYNTHORG_JWT_SECRET (synthorg keygen jwt), the same on every replica",
               {{"secret_file", fs::absolute(path, error).string()}});
    } else if (link_error != EEXIST) {
      throw std::runtime_error(fmt::format("cannot create the JWT secret file {}: {} (fix: set SYNTHORG_JWT_SECRET, "
                                           "or make the directory writable)",
                                           path.string(), std::strerror(link_error)));
    }
  }
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0)
    throw std::runtime_error(fmt::format("cannot read the JWT secret file {}: {}", path.string(), std::strerror(errno)));
  if (info.st_mode & (S_IRWXG | S_IRWXO))
    throw std::runtime_error(fmt::format("the JWT secret file {} may be read by other users (mode {:o}) (fix: "
                                         "chmod 600 {})",
                                         path.string(), info.st_mode & 0777, path.string()));
  std::ifstream in(path);
  std::string secret;
  std::getline(in, secret);
  if (!in && secret.empty())
    throw std::runtime_error(fmt::format("cannot read the JWT secret file {}", path.string()));
  check_secret(secret, "the secret in " + path.string());
  if (!generated)
    log.info("Sessions are signed with the secret in secret_file, as SYNTHORG_JWT_SECRET is not set",
             {{"secret_file", fs::absolute(path, error).string()}});
  return secret;
}

// The fix goes in the message; the value never does, not even its first characters.
std::string signing_secret(const std::string& secret_file, const log::Logger& log) {
  const char* value = std::getenv("SYNTHORG_JWT_SECRET");
  if (value && *value) {
    std::string secret(value);
    check_secret(secret, "SYNTHORG_JWT_SECRET");
    return secret;
  }
  if (!secret_file.empty()) return secret_from_file(secret_file, log);
  throw std::runtime_error(
      "SYNTHORG_JWT_SECRET is not set; the auth plugin signs sessions with it "
      "(fix: export SYNTHORG_JWT_SECRET=\"$(synthorg keygen jwt)\", the same value on every replica)");
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
  std::string secret_file;
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
                          .pattern("^(viewer|operator|admin)$")
                          .string("secret_file", "",
                                  "Without SYNTHORG_JWT_SECRET: the file holding this install's signing secret, "
                                  "generated on first start (mode 0600; a file others may read is refused). For one "
                                  "machine only: replicas must share SYNTHORG_JWT_SECRET. Empty: the variable is "
                                  "required")};
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
    options.secret_file = config.at("secret_file").get<std::string>();
    options_ = std::move(options);
  }

  void start() override {
    // Everything into locals first: a start that fails part-way must leave nothing behind.
    JwtCodec codec({signing_secret(options_.secret_file, context_.log()), options_.algorithms, options_.leeway});
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
      context_.log().warn("No user yet: setup is waiting. Open the dashboard to create the first admin (or POST "
                          "/api/v1/auth/setup); until then anyone who reaches the API port can do it");
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

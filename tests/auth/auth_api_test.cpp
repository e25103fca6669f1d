// The auth plugin end to end: a real kernel in-process with http-api, store-sqlite and auth on a
// free loopback port, spoken to over raw sockets. Sign-in flows, revocation, roles, bad bodies,
// lockout under 10,000 failed logins, and what a restart keeps.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <atomic>
#include <cstdlib>
#include <thread>

#include "../../plugins/auth/jwt.hpp"
#include "kernel.hpp"
#include "synthorg/crypto.hpp"
#include "http_client.hpp"
#include "test_support.hpp"

namespace synthorg::kernel {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;
using synthorg::testing::TempDir;
using namespace synthorg::testing;

const char* const secret = "test-secret-for-auth-api-tests-0123456789-abcdefghij";
const char* const admin_password = "correct horse battery staple";

std::string request_bytes(const std::string& method, const std::string& path, const std::string& body,
                          const std::string& headers, const std::string& type, bool close) {
  std::string out = method + " " + path + " HTTP/1.1\r\nHost: x\r\n" + (close ? "Connection: close\r\n" : "") + headers;
  if (!type.empty()) out += "Content-Type: " + type + "\r\n";
  if (method != "GET") out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  return out + "\r\n" + body;
}

std::string code_of(const std::string& response) { return body_of(response).value("code", ""); }
std::string bearer(const std::string& token) { return "Authorization: Bearer " + token + "\r\n"; }
std::string cookie(const std::string& token) { return "Cookie: theme=dark; synthorg_session=" + token + "\r\n"; }
std::string credentials(const std::string& username, const std::string& password) {
  return json{{"username", username}, {"password", password}}.dump();
}

class AuthApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ::setenv("SYNTHORG_JWT_SECRET", secret, 1);
    ::setenv("SYNTHORG_HTTP_ACCESS_LOG", "false", 1);
    auto plugins = dir.path() / "plugins";
    fs::create_directories(plugins);
    for (const char* name : {"http-api.so", "store-sqlite.so", "auth.so"})
      fs::create_symlink(fs::path(SYNTHORG_PLUGIN_BUILD_DIR) / name, plugins / name);
    port = free_port();
    if (start_in_setup) start();
  }
  void TearDown() override {
    kernel.reset();
    for (const char* name : {"SYNTHORG_JWT_SECRET", "SYNTHORG_HTTP_ACCESS_LOG", "SYNTHORG_AUTH_LOCKOUT_ATTEMPTS"})
      ::unsetenv(name);
  }
  void start() {
    auto config = dir.write("company.yaml",
                            "company_name: Test\nkernel:\n  plugin_dirs: [" + (dir.path() / "plugins").string() +
                                "]\n  blocking_threads: 4\nplugins:\n  http-api:\n    config: {address: 127.0.0.1, port: " +
                                std::to_string(port) + "}\n  store-sqlite:\n    config: {path: " + (dir / "s.db").string() +
                                store_extra + "}\n  auth:\n    config: " + auth_config + "\n");
    kernel = std::make_unique<Kernel>(load_company_config(config, "/unused"));
    kernel->discover();
    kernel->prepare();
    kernel->start();
  }
  void restart() {
    kernel.reset();
    start();
  }

  std::string call(const std::string& method, const std::string& path, const std::string& body = "",
                   const std::string& headers = "", const std::string& type = "application/json") {
    Client client(port);
    client.send(request_bytes(method, path, body, headers, method == "GET" ? "" : type, true));
    return client.response();
  }
  std::string login(const std::string& username, const std::string& password) {
    return call("POST", "/api/v1/auth/login", credentials(username, password));
  }
  std::string token_for(const std::string& username, const std::string& password) {
    auto response = login(username, password);
    EXPECT_EQ(status_of(response), 200) << response;
    return body_of(response).value("token", "");
  }
  std::string setup_admin() {
    auto response = call("POST", "/api/v1/auth/setup", credentials("admin", admin_password));
    EXPECT_EQ(status_of(response), 201) << response;
    return token_for("admin", admin_password);
  }
  void create_user(const std::string& admin, const std::string& username, const std::string& role) {
    auto response = call("POST", "/api/v1/users",
                         json{{"username", username}, {"password", username + "-password-123"}, {"role", role}}.dump(),
                         bearer(admin));
    ASSERT_EQ(status_of(response), 201) << response;
  }

  // Light Argon2 parameters keep the suite quick; the lockout tests use the real defaults.
  std::string auth_config = "{argon2_memory_kib: 4096, argon2_iterations: 1}";
  std::string store_extra;  // more of store-sqlite's config, e.g. ", max_size_mb: 1"
  bool start_in_setup = true;
  TempDir dir;
  int port = 0;
  std::unique_ptr<Kernel> kernel;
};

TEST_F(AuthApiTest, SetupCreatesTheFirstAdminOnce) {
  EXPECT_EQ(status_of(call("GET", "/api/v1/auth/me")), 401);
  EXPECT_EQ(status_of(call("GET", "/api/v1/users")), 401);
  auto response = call("POST", "/api/v1/auth/setup", credentials("Admin", admin_password));
  ASSERT_EQ(status_of(response), 201) << response;
  auto user = body_of(response)["user"];
  EXPECT_EQ(user["username"], "admin") << "usernames are lower-cased";
  EXPECT_EQ(user["role"], "admin");
  EXPECT_FALSE(user.contains("password_hash"));
  auto again = call("POST", "/api/v1/auth/setup", credentials("someone", "another long password"));
  EXPECT_EQ(status_of(again), 409) << again;
  EXPECT_EQ(code_of(again), "already_set_up");
  restart();
  EXPECT_EQ(status_of(call("POST", "/api/v1/auth/setup", credentials("someone", "another long password"))), 409)
      << "after a restart too";
}

TEST_F(AuthApiTest, BadBodiesAreProblemsWithCodes) {
  struct Case {
    std::string body, type;
    int status;
    std::string code;
  };
  std::vector<Case> cases{
      {credentials("admin", admin_password), "text/plain", 415, "unsupported_media_type"},
      {credentials("admin", admin_password), "", 415, "unsupported_media_type"},
      {credentials("admin", admin_password), "application/x-www-form-urlencoded", 415, "unsupported_media_type"},
      {"{\"username\": \"admin\", ", "application/json", 400, "invalid_json"},
      {"", "application/json", 400, "invalid_json"},
      {"\xff\xfe", "application/json", 400, "invalid_json"},
      {"[1, 2]", "application/json", 400, "invalid_body"},
      {"\"admin\"", "application/json", 400, "invalid_body"},
      {R"({"username": "admin"})", "application/json", 400, "invalid_body"},
      {R"({"username": "admin", "password": 12345678901234})", "application/json", 400, "invalid_body"},
      {R"({"username": "admin", "password": null})", "application/json", 400, "invalid_body"},
      {R"({"username": "admin", "password": "long enough password", "role": "admin"})", "application/json", 400,
       "invalid_body"},
      {credentials("admin", "short"), "application/json; charset=utf-8", 422, "weak_password"},
      {credentials("admin", "elevenchars"), "application/json", 422, "weak_password"},
      {credentials("admin", std::string(2000, 'x')), "application/json", 422, "weak_password"},
      {credentials("", admin_password), "application/json", 422, "invalid_username"},
      {credentials("bad name", admin_password), "application/json", 422, "invalid_username"},
      {credentials(".dot", admin_password), "application/json", 422, "invalid_username"},
      {credentials(std::string(65, 'a'), admin_password), "application/json", 422, "invalid_username"},
      {credentials("caf\xc3\xa9", admin_password), "application/json", 422, "invalid_username"},
  };
  for (const auto& c : cases) {
    auto response = call("POST", "/api/v1/auth/setup", c.body, "", c.type);
    EXPECT_EQ(status_of(response), c.status) << c.body << " as " << c.type << ": " << response;
    EXPECT_EQ(code_of(response), c.code) << c.body;
    EXPECT_EQ(header_of(response, "content-type"), "application/problem+json");
  }
  // Twelve characters, not twelve bytes: four three-byte characters are too few.
  EXPECT_EQ(status_of(call("POST", "/api/v1/auth/setup", credentials("admin", "\xe2\x9c\x93\xe2\x9c\x93\xe2\x9c\x93\xe2\x9c\x93"))), 422);
  auto admin = setup_admin();
  EXPECT_EQ(status_of(call("POST", "/api/v1/auth/login", "{nope", "", "")), 415);
  EXPECT_EQ(code_of(call("POST", "/api/v1/auth/login", "{nope")), "invalid_json");
  EXPECT_EQ(code_of(call("POST", "/api/v1/auth/change-password", "[]", bearer(admin))), "invalid_body");
  EXPECT_EQ(code_of(call("POST", "/api/v1/users", R"({"username":"x","password":"long enough pass"})", bearer(admin))),
            "invalid_body");
  EXPECT_EQ(code_of(call("GET", "/api/v1/users?limit=0", "", bearer(admin))), "invalid_query");
  EXPECT_EQ(code_of(call("GET", "/api/v1/users?limit=ten", "", bearer(admin))), "invalid_query");
  EXPECT_EQ(code_of(call("GET", "/api/v1/users?cursor=garbage", "", bearer(admin))), "invalid_cursor");
}

TEST_F(AuthApiTest, LoginGivesATokenAndACookieThatBothWork) {
  setup_admin();
  auto bad = login("admin", "not the password at all");
  EXPECT_EQ(status_of(bad), 401) << bad;
  EXPECT_EQ(code_of(bad), "invalid_credentials");
  EXPECT_EQ(code_of(login("nobody", "not the password at all")), "invalid_credentials") << "same answer, unknown name";

  auto response = login("ADMIN", admin_password);
  ASSERT_EQ(status_of(response), 200) << response;
  auto body = body_of(response);
  auto token = body["token"].get<std::string>();
  EXPECT_EQ(body["token_type"], "Bearer");
  EXPECT_EQ(body["user"]["username"], "admin");
  EXPECT_EQ(body["expires_at"].get<std::string>().size(), 20u) << body["expires_at"];
  auto set_cookie = header_of(response, "set-cookie");
  EXPECT_EQ(set_cookie, "synthorg_session=" + token + "; HttpOnly; SameSite=Strict; Path=/; Max-Age=43200");
  EXPECT_EQ(header_of(response, "cache-control"), "no-store");

  auto claims = json::parse(*crypto::base64url_decode(token.substr(token.find('.') + 1, token.rfind('.') - token.find('.') - 1)));
  for (const char* claim : {"sub", "role", "iat", "exp", "jti"}) EXPECT_TRUE(claims.contains(claim)) << claim;
  EXPECT_EQ(claims["exp"].get<std::int64_t>() - claims["iat"].get<std::int64_t>(), 43200);

  for (const auto& sent : {bearer(token), cookie(token), "Authorization: bearer " + token + "\r\n"}) {
    auto me = call("GET", "/api/v1/auth/me", "", sent);
    ASSERT_EQ(status_of(me), 200) << me;
    EXPECT_EQ(body_of(me)["username"], "admin");
    EXPECT_EQ(body_of(me)["role"], "admin");
    EXPECT_EQ(body_of(me)["id"], claims["sub"]);
  }
  EXPECT_EQ(status_of(call("GET", "/api/v1/auth/me", "", bearer(token + "x"))), 401);
  EXPECT_EQ(status_of(call("GET", "/api/v1/auth/me", "", bearer(""))), 401);
  EXPECT_EQ(status_of(call("GET", "/api/v1/auth/me", "", "Authorization: Basic YWRtaW46eA==\r\n")), 401);
  EXPECT_EQ(status_of(call("GET", "/api/v1/auth/me", "", "Cookie: synthorg_session=\r\n")), 401);
}

TEST_F(AuthApiTest, LogoutRevokesThatTokenOnlyAndSurvivesARestart) {
  setup_admin();
  auto first = token_for("admin", admin_password);
  auto second = token_for("admin", admin_password);
  auto out = call("POST", "/api/v1/auth/logout", "", cookie(first), "");
  ASSERT_EQ(status_of(out), 204) << out;
  EXPECT_EQ(header_of(out, "set-cookie"), "synthorg_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
  EXPECT_EQ(status_of(call("GET", "/api/v1/auth/me", "", bearer(first))), 401);
  EXPECT_EQ(status_of(call("GET", "/api/v1/auth/me", "", cookie(first))), 401);
  EXPECT_EQ(status_of(call("POST", "/api/v1/auth/logout", "", bearer(first))), 401) << "already out";
  EXPECT_EQ(status_of(call("GET", "/api/v1/auth/me", "", bearer(second))), 200) << "other sessions stay";
  restart();
  EXPECT_EQ(status_of(call("GET", "/api/v1/auth/me", "", bearer(first))), 401) << "the denylist is in the Store";
  EXPECT_EQ(status_of(call("GET", "/api/v1/auth/me", "", bearer(second))), 200);
}

TEST_F(AuthApiTest, WebSocketTicketsWorkOnceOnlyForTheUpgradePath) {
  auto admin = setup_admin();
  EXPECT_EQ(status_of(call("POST", "/api/v1/auth/ws-ticket", "", "", "")), 401) << "tickets need a signed-in user";
  auto issued = call("POST", "/api/v1/auth/ws-ticket", "", bearer(admin), "");
  ASSERT_EQ(status_of(issued), 201) << issued;
  EXPECT_EQ(body_of(issued)["expires_in"], 30);
  auto ticket = body_of(issued)["ticket"].get<std::string>();
  EXPECT_EQ(ticket.size(), 48u);
  EXPECT_EQ(status_of(call("GET", "/api/v1/auth/me?ticket=" + ticket)), 401) << "not a credential elsewhere";
  // Without an Upgrade header the route answers 426, but only once the gate let the ticket in.
  EXPECT_EQ(status_of(call("GET", "/api/v1/ws?ticket=" + ticket)), 426);
  EXPECT_EQ(status_of(call("GET", "/api/v1/ws?ticket=" + ticket)), 401) << "single use";
  EXPECT_EQ(status_of(call("GET", "/api/v1/ws?ticket=not-a-ticket")), 401);
}

TEST_F(AuthApiTest, ChangePasswordRevokesEveryOlderToken) {
  setup_admin();
  auto one = token_for("admin", admin_password);
  auto two = token_for("admin", admin_password);
  std::string next = "a brand new long password";
  auto body = [&](const std::string& current, const std::string& fresh) {
    return json{{"current_password", current}, {"new_password", fresh}}.dump();
  };
  auto wrong = call("POST", "/api/v1/auth/change-password", body("wrong password!!", next), bearer(one));
  EXPECT_EQ(status_of(wrong), 403) << wrong;
  EXPECT_EQ(code_of(wrong), "invalid_credentials");
  EXPECT_EQ(code_of(call("POST", "/api/v1/auth/change-password", body(admin_password, "short"), bearer(one))),
            "weak_password");
  EXPECT_EQ(code_of(call("POST", "/api/v1/auth/change-password", body(admin_password, admin_password), bearer(one))),
            "same_password");
  EXPECT_EQ(status_of(call("POST", "/api/v1/auth/change-password", body(admin_password, next))), 401);

  auto changed = call("POST", "/api/v1/auth/change-password", body(admin_password, next), bearer(one));
  ASSERT_EQ(status_of(changed), 200) << changed;
  auto fresh = body_of(changed)["token"].get<std::string>();
  EXPECT_NE(header_of(changed, "set-cookie").find(fresh), std::string::npos);
  EXPECT_EQ(status_of(call("GET", "/api/v1/auth/me", "", bearer(one))), 401) << "the token used for the change";
  EXPECT_EQ(status_of(call("GET", "/api/v1/auth/me", "", bearer(two))), 401) << "another session";
  EXPECT_EQ(status_of(call("GET", "/api/v1/auth/me", "", bearer(fresh))), 200) << "the one handed back";
  EXPECT_EQ(status_of(login("admin", admin_password)), 401);
  auto after = token_for("admin", next);
  EXPECT_EQ(status_of(call("GET", "/api/v1/auth/me", "", bearer(after))), 200) << "a login in the same second works";
  restart();
  EXPECT_EQ(status_of(call("GET", "/api/v1/auth/me", "", bearer(two))), 401) << "kept in the users collection";
  EXPECT_EQ(status_of(call("GET", "/api/v1/auth/me", "", bearer(after))), 200);
}

TEST_F(AuthApiTest, RolesGateUserManagement) {
  auto admin = setup_admin();
  create_user(admin, "olive", "operator");
  create_user(admin, "vic", "viewer");
  create_user(admin, "ada", "admin");
  auto taken = call("POST", "/api/v1/users",
                    json{{"username", "Vic"}, {"password", "long enough password"}, {"role", "viewer"}}.dump(), bearer(admin));
  EXPECT_EQ(status_of(taken), 409) << taken;
  EXPECT_EQ(code_of(taken), "username_taken");
  EXPECT_EQ(code_of(call("POST", "/api/v1/users",
                         json{{"username", "x"}, {"password", "long enough password"}, {"role", "root"}}.dump(),
                         bearer(admin))),
            "invalid_role");

  auto viewer = token_for("vic", "vic-password-123");
  auto operator_token = token_for("olive", "olive-password-123");
  auto me = call("GET", "/api/v1/auth/me", "", bearer(viewer));
  EXPECT_EQ(body_of(me)["role"], "viewer");
  for (const auto& token : {viewer, operator_token}) {
    EXPECT_EQ(status_of(call("GET", "/api/v1/users", "", bearer(token))), 403);
    EXPECT_EQ(status_of(call("POST", "/api/v1/users",
                             json{{"username", "eve"}, {"password", "long enough password"}, {"role", "admin"}}.dump(),
                             bearer(token))),
              403);
  }
  auto list = call("GET", "/api/v1/users?limit=2", "", bearer(token_for("ada", "ada-password-123")));
  ASSERT_EQ(status_of(list), 200) << list;
  auto page = body_of(list);
  ASSERT_EQ(page["users"].size(), 2u);
  EXPECT_EQ(page["users"][0]["username"], "admin") << "oldest first";
  EXPECT_FALSE(page["users"][0].contains("password_hash"));
  auto rest = body_of(call("GET", "/api/v1/users?cursor=" + page["next_cursor"].get<std::string>(), "", bearer(admin)));
  EXPECT_EQ(rest["users"].size(), 2u);
  EXPECT_EQ(rest["next_cursor"], "");
}

TEST_F(AuthApiTest, TokensFromAnotherIssuerAreRefusedUnlessAcceptedAndThenCapped) {
  auth::JwtCodec theirs({secret, {auth::JwtAlgorithm::hs256}, 30s});
  auto now = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  auto me = [&](const std::string& token) { return call("GET", "/api/v1/auth/me", "", bearer(token)); };
  auto forged = theirs.sign({{"sub", "pondpilot-user-7"}, {"role", "admin"}, {"exp", now + 600}});
  EXPECT_EQ(status_of(me(forged)), 401) << "by default a sub that is no user here is refused, whatever its role";
  EXPECT_EQ(status_of(call("GET", "/api/v1/users", "", bearer(forged))), 401) << "and never an admin";

  auth_config = "{argon2_memory_kib: 4096, argon2_iterations: 1, accept_external_tokens: true, external_max_role: operator}";
  restart();
  auto capped = me(forged);
  ASSERT_EQ(status_of(capped), 200) << capped;
  EXPECT_EQ(body_of(capped)["role"], "operator") << "accepted, its role capped at external_max_role";
  EXPECT_EQ(status_of(call("GET", "/api/v1/users", "", bearer(forged))), 403);
}

TEST_F(AuthApiTest, TokensFromElsewhereWithTheSecretAreAcceptedWhenConfigured) {
  auth_config = "{argon2_memory_kib: 4096, argon2_iterations: 1, accept_external_tokens: true, external_max_role: admin}";
  restart();
  auth::JwtCodec theirs({secret, {auth::JwtAlgorithm::hs256}, 30s});
  auto now = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  auto me = [&](const std::string& token) { return call("GET", "/api/v1/auth/me", "", bearer(token)); };
  auto plain = me(theirs.sign({{"sub", "pondpilot-user-7"}, {"exp", now + 600}}));
  ASSERT_EQ(status_of(plain), 200) << plain;
  EXPECT_EQ(body_of(plain)["role"], "viewer");
  EXPECT_EQ(body_of(plain)["id"], "pondpilot-user-7");
  EXPECT_TRUE(body_of(plain)["username"].is_null());
  EXPECT_EQ(body_of(me(theirs.sign({{"sub", "p"}, {"role", "operator"}, {"exp", now + 600}})))["role"], "operator");
  EXPECT_EQ(status_of(me(theirs.sign({{"sub", "p"}, {"exp", now - 600}}))), 401) << "expired";
  EXPECT_EQ(status_of(me(theirs.sign({{"sub", "p"}, {"exp", now + 600}, {"nbf", now + 300}}))), 401) << "not yet valid";
  EXPECT_EQ(status_of(me(theirs.sign({{"sub", "p"}}))), 401) << "no exp";
  EXPECT_EQ(status_of(me(theirs.sign({{"sub", "p"}, {"role", "root"}, {"exp", now + 600}}))), 401) << "unknown role";
  auth::JwtCodec other_secret({"some-other-secret-of-enough-length-000000", {auth::JwtAlgorithm::hs256}, 30s});
  EXPECT_EQ(status_of(me(other_secret.sign({{"sub", "p"}, {"exp", now + 600}}))), 401);
  auth::JwtCodec strong({secret, {auth::JwtAlgorithm::hs512}, 30s});
  EXPECT_EQ(status_of(me(strong.sign({{"sub", "p"}, {"exp", now + 600}}))), 401) << "HS512 is not configured";
  auto claims = crypto::base64url_encode(json{{"sub", "p"}, {"role", "admin"}, {"exp", now + 600}}.dump());
  EXPECT_EQ(status_of(me(crypto::base64url_encode(R"({"alg":"none"})") + "." + claims + ".")), 401) << "alg none";
  // A token from elsewhere has no password here.
  auto change = call("POST", "/api/v1/auth/change-password",
                     json{{"current_password", "whatever it was"}, {"new_password", "a brand new long password"}}.dump(),
                     bearer(theirs.sign({{"sub", "p"}, {"exp", now + 600}})));
  EXPECT_EQ(code_of(change), "not_a_local_user") << change;
  // Logout works on it too, by its signature since it has no jti.
  auto foreign = theirs.sign({{"sub", "q"}, {"exp", now + 600}});
  EXPECT_EQ(status_of(call("POST", "/api/v1/auth/logout", "", bearer(foreign))), 204);
  EXPECT_EQ(status_of(me(foreign)), 401);
}

// Disabling, deleting or signing a user out everywhere applies to every token of theirs at once,
// including tokens issued before; a deleted user's name is free again, and their old token is
// still refused (never taken for another issuer's).
TEST_F(AuthApiTest, DisabledAndDeletedUsersLoseAccessAtOnce) {
  auto admin = setup_admin();
  create_user(admin, "eve", "operator");
  auto eve = token_for("eve", "eve-password-123");
  auto id = body_of(call("GET", "/api/v1/auth/me", "", bearer(eve)))["id"].get<std::string>();
  auto me = [&](const std::string& token) { return status_of(call("GET", "/api/v1/auth/me", "", bearer(token))); };

  auto disabled = call("POST", "/api/v1/users/" + id + "/disable", "", bearer(admin));
  ASSERT_EQ(status_of(disabled), 200) << disabled;
  EXPECT_EQ(body_of(disabled)["user"]["disabled"], true);
  EXPECT_EQ(me(eve), 401) << "the token from before is refused at once";
  auto refused = login("eve", "eve-password-123");
  EXPECT_EQ(status_of(refused), 403) << refused;
  EXPECT_EQ(code_of(refused), "account_disabled");
  EXPECT_EQ(code_of(login("eve", "wrong password 123")), "invalid_credentials") << "a wrong password says nothing more";

  ASSERT_EQ(status_of(call("POST", "/api/v1/users/" + id + "/enable", "", bearer(admin))), 200);
  EXPECT_EQ(me(eve), 401) << "tokens from before the disabling stay dead";
  auto fresh = token_for("eve", "eve-password-123");
  EXPECT_EQ(me(fresh), 200);

  std::this_thread::sleep_for(1100ms);  // revocation is by whole seconds of iat
  auto later = token_for("eve", "eve-password-123");
  EXPECT_EQ(status_of(call("DELETE", "/api/v1/users/" + id + "/sessions", "", bearer(admin))), 204);
  EXPECT_EQ(me(later), 401) << "signed out everywhere";
  std::this_thread::sleep_for(1100ms);
  auto last = token_for("eve", "eve-password-123");
  EXPECT_EQ(me(last), 200) << "a sign-in after it works";

  EXPECT_EQ(status_of(call("DELETE", "/api/v1/users/" + id, "", bearer(admin))), 204);
  EXPECT_EQ(me(last), 401) << "a deleted user's token is refused at once";
  EXPECT_EQ(status_of(login("eve", "eve-password-123")), 401);
  EXPECT_EQ(status_of(call("DELETE", "/api/v1/users/" + id, "", bearer(admin))), 404) << "gone";
  auto listed = body_of(call("GET", "/api/v1/users", "", bearer(admin)))["users"];
  EXPECT_EQ(listed.size(), 1u) << "only the admin is listed: " << listed;
  create_user(admin, "eve", "viewer");  // the name is free again
  restart();
  EXPECT_EQ(me(last), 401) << "and still refused after a restart";

  auto self_id = body_of(call("GET", "/api/v1/auth/me", "", bearer(admin)))["id"].get<std::string>();
  EXPECT_EQ(code_of(call("POST", "/api/v1/users/" + self_id + "/disable", "", bearer(admin))), "cannot_change_self");
  EXPECT_EQ(code_of(call("POST", "/api/v1/users/nobody/disable", "", bearer(admin))), "user_not_found");
  create_user(admin, "vic", "viewer");
  auto vic = token_for("vic", "vic-password-123");
  EXPECT_EQ(status_of(call("POST", "/api/v1/users/" + id + "/disable", "", bearer(vic))), 403) << "admins only";
}

// A full database is said to be full (507 store_full, with what to do), not "cannot be reached;
// retry shortly"; the refused change leaves nothing behind, reads go on, and writes work again
// once space is freed. The database is filled by another connection, as another table or a full
// disk would.
class FullStoreTest : public AuthApiTest {
 protected:
  FullStoreTest() {
    store_extra = ", max_size_mb: 1";
  }
};

TEST_F(FullStoreTest, AFullDatabaseAnswers507StoreFullAndWritesWorkAgainOnceSpaceIsFreed) {
  auto admin = setup_admin();
  sqlite3* filler = nullptr;
  ASSERT_EQ(sqlite3_open((dir / "s.db").c_str(), &filler), SQLITE_OK);
  sqlite3_busy_timeout(filler, 5000);
  ASSERT_EQ(sqlite3_exec(filler, "CREATE TABLE filler(blob BLOB)", nullptr, nullptr, nullptr), SQLITE_OK);
  std::string refused;
  int created = 0;
  for (int round = 0; round < 64 && refused.empty(); ++round) {
    ASSERT_EQ(sqlite3_exec(filler, "INSERT INTO filler VALUES (zeroblob(65536))", nullptr, nullptr, nullptr), SQLITE_OK);
    auto username = "user" + std::to_string(round);
    auto response = call("POST", "/api/v1/users",
                         json{{"username", username}, {"password", "long enough password"}, {"role", "viewer"}}.dump(),
                         bearer(admin));
    if (status_of(response) == 201) {
      ++created;
      continue;
    }
    refused = response;
    ASSERT_EQ(status_of(response), 507) << response;
    auto retry = call("GET", "/api/v1/users?limit=1000", "", bearer(admin));
    ASSERT_EQ(status_of(retry), 200) << "reads go on: " << retry;
    EXPECT_EQ(body_of(retry)["users"].size(), static_cast<std::size_t>(created + 1)) << "the refused user was not kept";
  }
  ASSERT_FALSE(refused.empty()) << "4 MiB went into a database limited to 1 MiB";
  EXPECT_EQ(code_of(refused), "store_full") << refused;
  auto detail = body_of(refused).value("detail", "");
  EXPECT_NE(detail.find("full"), std::string::npos) << detail;
  EXPECT_NE(detail.find("free disk space"), std::string::npos) << "says what to do: " << detail;
  EXPECT_EQ(detail.find((dir / "s.db").string()), std::string::npos) << "the path stays in the log: " << detail;
  EXPECT_EQ(status_of(call("GET", "/api/v1/healthz")), 200);

  ASSERT_EQ(sqlite3_exec(filler, "DROP TABLE filler", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(filler);
  auto again = call("POST", "/api/v1/users",
                    json{{"username", "after"}, {"password", "long enough password"}, {"role", "viewer"}}.dump(),
                    bearer(admin));
  EXPECT_EQ(status_of(again), 201) << "space freed, writes work again: " << again;
}

// A body nested a million levels deep would overflow a thread's stack wherever it is copied or
// dumped (found by fuzz/json_body_fuzzer on the fine-tune route): every client JSON is refused
// past 64 levels, and the server serves on.
TEST_F(AuthApiTest, DeeplyNestedBodiesAreRefusedAndTheServerServesOn) {
  auto admin = setup_admin();
  std::string deep = "{\"username\": " + std::string(500'000, '[') + std::string(500'000, ']') + "}";
  auto refused = call("POST", "/api/v1/auth/login", deep);
  EXPECT_EQ(status_of(refused), 400) << refused.substr(0, 300);
  EXPECT_EQ(code_of(refused), "invalid_json");
  EXPECT_NE(body_of(refused).value("detail", "").find("64 levels"), std::string::npos) << refused.substr(0, 300);
  std::string setting = "{\"value\": " + std::string(400'000, '[') + std::string(400'000, ']') + "}";
  EXPECT_EQ(status_of(call("PUT", "/api/v1/settings/backup/keep", setting, bearer(admin))), 400);
  std::string fine = "{\"username\": \"admin\", \"password\": \"" + std::string(admin_password) + "\", \"x\": " +
                     std::string(60, '[') + std::string(60, ']') + "}";
  EXPECT_NE(code_of(call("POST", "/api/v1/auth/login", fine)), "invalid_json") << "64 levels are plenty";
  EXPECT_EQ(status_of(call("GET", "/api/v1/auth/me", "", bearer(admin))), 200) << "still serving";
}

TEST_F(AuthApiTest, TheOpenApiDocumentValidatesWithTheAuthRoutes) {
  auto response = call("GET", "/api/v1/openapi.json");
  ASSERT_EQ(status_of(response), 200);
  auto document = body_of(response);
  for (const char* path : {"/api/v1/auth/setup", "/api/v1/auth/login", "/api/v1/auth/me", "/api/v1/auth/logout",
                           "/api/v1/auth/change-password", "/api/v1/users"})
    EXPECT_TRUE(document["paths"].contains(path)) << path;
  EXPECT_TRUE(document["paths"]["/api/v1/auth/login"]["post"].contains("requestBody"));
  EXPECT_TRUE(document["components"]["schemas"].contains("AuthSession"));
  auto file = dir.write("openapi.json", document.dump());
  std::string command = "python3 -c \"import json,sys; from openapi_spec_validator import validate; "
                        "validate(json.load(open(sys.argv[1])))\" " + file.string() + " 2>&1";
  EXPECT_EQ(std::system(command.c_str()), 0) << "openapi-spec-validator rejected the document";
}

class AuthStartTest : public AuthApiTest {
 protected:
  AuthStartTest() { start_in_setup = false; }
  std::string start_error() {
    try {
      start();
    } catch (const std::exception& error) {
      kernel.reset();
      return error.what();
    }
    return "(it started)";
  }
};

TEST_F(AuthStartTest, AMissingOrShortSecretStopsTheStartWithTheFix) {
  ::unsetenv("SYNTHORG_JWT_SECRET");
  auto unset = start_error();
  EXPECT_NE(unset.find("SYNTHORG_JWT_SECRET is not set"), std::string::npos) << unset;
  EXPECT_NE(unset.find("synthorg keygen jwt"), std::string::npos) << unset;
  const char* short_secret = "short-but-not-empty-secret-31ch";
  ::setenv("SYNTHORG_JWT_SECRET", short_secret, 1);
  auto too_short = start_error();
  EXPECT_NE(too_short.find("31 characters long; it must be at least 32"), std::string::npos) << too_short;
  EXPECT_NE(too_short.find("synthorg keygen jwt"), std::string::npos) << too_short;
  EXPECT_EQ(too_short.find(short_secret), std::string::npos) << "never echoed";
  EXPECT_EQ(too_short.find("short-but"), std::string::npos) << "not even a prefix";
  // The guides' rule: URL-safe base64. A standard-base64 secret (openssl rand -base64 33) is
  // refused with how to make it URL-safe, and never echoed.
  const char* standard = "Kq3+ZxF/9wYd2Lm0pQv7RtS1uXy4Aa8Bc5De6Gh";
  ::setenv("SYNTHORG_JWT_SECRET", standard, 1);
  auto not_url_safe = start_error();
  EXPECT_NE(not_url_safe.find("outside URL-safe base64"), std::string::npos) << not_url_safe;
  EXPECT_NE(not_url_safe.find("at position 4"), std::string::npos) << not_url_safe;
  EXPECT_NE(not_url_safe.find("+ replaced by - and / by _"), std::string::npos) << not_url_safe;
  EXPECT_EQ(not_url_safe.find("Kq3"), std::string::npos) << "never echoed";
  ::setenv("SYNTHORG_JWT_SECRET", "your-secret-key-at-least-32-characters-long", 1);  // the PondPilot guide's example
  auth_config = "{}";
  EXPECT_EQ(start_error(), "(it started)");
  kernel.reset();
  ::setenv("SYNTHORG_JWT_SECRET", secret, 1);
  auth_config = "{algorithms: [HS256, RS256]}";
  auto algorithm = start_error();
  EXPECT_NE(algorithm.find("\"RS256\" is not accepted"), std::string::npos) << algorithm;
  auth_config = "{algorithms: [none]}";
  EXPECT_NE(start_error().find("\"none\" is not accepted"), std::string::npos);
  auth_config = "{}";
  EXPECT_EQ(start_error(), "(it started)");
}

// The real Argon2id parameters here: hashing is what an attacker would try to exhaust.
class AuthLockoutTest : public AuthApiTest {
 protected:
  AuthLockoutTest() { auth_config = "{}"; }
};

TEST_F(AuthLockoutTest, LockoutHoldsAgainstTenThousandFailedLoginsAndOthersAreServed) {
  auto admin = setup_admin();
  create_user(admin, "victim", "viewer");
  constexpr int threads = 8, per_thread = 1250;
  std::atomic<int> unauthorised{0}, locked{0}, other{0}, missing_retry_after{0};
  std::atomic<bool> done{false};
  std::vector<std::thread> attackers;
  auto started = std::chrono::steady_clock::now();
  for (int t = 0; t < threads; ++t)
    attackers.emplace_back([&] {
      Client client(port);
      auto bytes = request_bytes("POST", "/api/v1/auth/login", credentials("victim", "guess guess guess"), "",
                                 "application/json", false);
      for (int i = 0; i < per_thread; ++i) {
        client.send(bytes);
        auto response = client.response();
        switch (status_of(response)) {
          case 401: ++unauthorised; break;
          case 429:
            ++locked;
            if (header_of(response, "retry-after").empty()) ++missing_retry_after;
            break;
          default: ++other;
        }
      }
    });
  // Meanwhile the server answers others, and another user signs in.
  std::chrono::steady_clock::duration slowest{};
  int probes = 0;
  bool others_signed_in = false;
  std::thread watcher([&] {
    while (!done) {
      auto before = std::chrono::steady_clock::now();
      if (status_of(call("GET", "/api/v1/healthz")) == 200) slowest = std::max(slowest, std::chrono::steady_clock::now() - before);
      ++probes;
      if (!others_signed_in) others_signed_in = status_of(login("admin", admin_password)) == 200;
      std::this_thread::sleep_for(20ms);
    }
  });
  for (auto& attacker : attackers) attacker.join();
  done = true;
  watcher.join();
  auto took = std::chrono::steady_clock::now() - started;

  EXPECT_EQ(unauthorised + locked + other, threads * per_thread);
  EXPECT_EQ(other, 0);
  EXPECT_GE(unauthorised, 5);
  // Five to lock it, plus at most what was already hashing when the lock engaged.
  EXPECT_LE(unauthorised, 5 + 2) << "the lock must be checked before hashing";
  EXPECT_EQ(missing_retry_after, 0);
  EXPECT_TRUE(others_signed_in);
  EXPECT_GT(probes, 0);
  EXPECT_LT(slowest, 500ms) << "healthz stayed responsive";
  std::cout << "10,000 failed logins in " << std::chrono::duration<double>(took).count() << " s; " << unauthorised
            << " hashed, " << locked << " refused before hashing; slowest healthz "
            << std::chrono::duration<double, std::milli>(slowest).count() << " ms\n";
  auto correct = login("victim", "victim-password-123");
  EXPECT_EQ(status_of(correct), 429) << "even the right password waits out the lock";
  EXPECT_EQ(code_of(correct), "locked_out");
  EXPECT_EQ(status_of(login("admin", admin_password)), 200) << "per username";
}

class AuthBusyTest : public AuthApiTest {
 protected:
  AuthBusyTest() { auth_config = "{hash_concurrency: 1, hash_queue: 2}"; }
};

TEST_F(AuthBusyTest, HashingIsBoundedAndTheOverflowIsBusy) {
  setup_admin();
  constexpr int attempts = 24;
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < attempts; ++i) {
    clients.push_back(std::make_unique<Client>(port));
    clients.back()->send(request_bytes("POST", "/api/v1/auth/login",
                                       credentials("name-" + std::to_string(i), "guess guess guess"), "",
                                       "application/json", true));
  }
  auto before = std::chrono::steady_clock::now();
  EXPECT_EQ(status_of(call("GET", "/api/v1/healthz")), 200);
  EXPECT_LT(std::chrono::steady_clock::now() - before, 500ms);
  int busy = 0, refused = 0;
  for (auto& client : clients) {
    auto response = client->response();
    if (status_of(response) == 503) {
      ++busy;
      EXPECT_EQ(code_of(response), "busy");
      EXPECT_EQ(header_of(response, "retry-after"), "1");
    } else {
      EXPECT_EQ(status_of(response), 401) << response;
      ++refused;
    }
  }
  EXPECT_GT(busy, 0) << "one hashing and two waiting, the rest turned away";
  // Three slots; the last answer before the burst (setup's) is sent from inside its hashing job,
  // so that job's slot may still be held when the burst lands: two is the least served.
  EXPECT_GE(refused, 2);
  EXPECT_EQ(status_of(login("admin", admin_password)), 200) << "and then it recovers";
}

}  // namespace
}  // namespace synthorg::kernel

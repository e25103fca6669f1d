// Cross-origin requests from browsers (api.cors_allowed_origins, SYNTHORG_API_CORS_ALLOWED_ORIGINS):
// preflights allowed and refused, the headers of ordinary answers, `*` never with credentials,
// a bad value refused at start naming the variable, and a change through the settings API taking
// effect without a restart. The browser's own view is in plugins/web/tests/browser_test.mjs.
#include <chrono>
#include <thread>

#include "http_api_fixture.hpp"

namespace synthorg::kernel {
namespace {

using synthorg::testing::body_of;
using synthorg::testing::header_of;
using synthorg::testing::status_of;

class CorsTest : public HttpApiTest {
 protected:
  void TearDown() override {
    ::unsetenv("SYNTHORG_API_CORS_ALLOWED_ORIGINS");
    HttpApiTest::TearDown();
  }
  void allow(const char* origins) {
    ::setenv("SYNTHORG_API_CORS_ALLOWED_ORIGINS", origins, 1);
    restart();
  }
  std::string send(const std::string& head, const std::string& body = "") {
    Client client(port);
    client.send(head + "Host: x\r\nConnection: close\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" +
                body);
    return client.response();
  }
  std::string preflight(const std::string& origin, const std::string& method, const std::string& headers = "") {
    return send("OPTIONS /api/v1/settings HTTP/1.1\r\nOrigin: " + origin + "\r\nAccess-Control-Request-Method: " +
                method + "\r\n" + (headers.empty() ? "" : "Access-Control-Request-Headers: " + headers + "\r\n"));
  }
};

TEST_F(CorsTest, WithNoOriginAllowedBrowsersGetNoCrossOriginAccessAndAPreflightSaysHowToAllowOne) {
  auto answer = get("/api/v1/healthz", "Origin: http://localhost:5173\r\n");
  EXPECT_EQ(status_of(answer), 200);
  EXPECT_EQ(header_of(answer, "access-control-allow-origin"), "") << answer;
  auto refused = preflight("http://localhost:5173", "GET");
  EXPECT_EQ(status_of(refused), 403) << refused;
  EXPECT_EQ(body_of(refused)["code"], "cors_refused");
  EXPECT_NE(body_of(refused)["detail"].get<std::string>().find("SYNTHORG_API_CORS_ALLOWED_ORIGINS"), std::string::npos);
  EXPECT_EQ(header_of(refused, "access-control-allow-origin"), "");
  EXPECT_EQ(status_of(get("/api/v1/healthz")), 200) << "still serving";
}

TEST_F(CorsTest, AnAllowedOriginsPreflightIsAnsweredAndItsAnswersCarryTheHeadersWithCredentials) {
  // Comma-separated, with blanks, in upper case and with a default port: compared as browsers
  // send an Origin (lower case, no default port).
  allow(" http://localhost:5173 , HTTPS://App.Example.com:443");
  auto ok = preflight("http://localhost:5173", "PUT", "Authorization, content-type,If-Match");
  ASSERT_EQ(status_of(ok), 204) << ok;
  EXPECT_EQ(header_of(ok, "access-control-allow-origin"), "http://localhost:5173");
  EXPECT_EQ(header_of(ok, "access-control-allow-credentials"), "true");
  EXPECT_NE(header_of(ok, "access-control-allow-methods").find("PUT"), std::string::npos);
  EXPECT_EQ(header_of(ok, "access-control-allow-headers"), "authorization, content-type, if-match");
  EXPECT_EQ(header_of(ok, "access-control-max-age"), "600");
  EXPECT_NE(header_of(ok, "vary").find("Origin"), std::string::npos);
  EXPECT_EQ(status_of(preflight("https://app.example.com", "GET")), 204) << "normalised as the browser sends it";

  // Refused, each naming what is not allowed; nothing granted.
  for (auto [origin, method, headers, named] :
       {std::tuple{"http://localhost:5174", "GET", "", "http://localhost:5174"},
        std::tuple{"http://localhost:5173.evil.example", "GET", "", "evil"},
        std::tuple{"null", "GET", "", "null"},
        std::tuple{"http://localhost:5173", "TRACE", "", "TRACE"},
        std::tuple{"http://localhost:5173", "get", "", "get"},
        std::tuple{"http://localhost:5173", "POST", "content-type, x-secret", "x-secret"}}) {
    auto refused = preflight(origin, method, headers);
    EXPECT_EQ(status_of(refused), 403) << origin << " " << method << " " << headers;
    EXPECT_EQ(header_of(refused, "access-control-allow-origin"), "") << origin;
    EXPECT_NE(body_of(refused)["detail"].get<std::string>().find(named), std::string::npos) << refused;
  }

  // Ordinary answers, errors included (a page must be able to read why it failed).
  auto answer = get("/api/v1/healthz", "Origin: http://localhost:5173\r\n");
  EXPECT_EQ(header_of(answer, "access-control-allow-origin"), "http://localhost:5173") << answer;
  EXPECT_EQ(header_of(answer, "access-control-allow-credentials"), "true");
  EXPECT_NE(header_of(answer, "access-control-expose-headers").find("X-Request-Id"), std::string::npos);
  EXPECT_EQ(header_of(answer, "vary"), "Origin");
  auto missing = get("/api/v1/nothing-here", "Origin: http://localhost:5173\r\n");
  EXPECT_EQ(status_of(missing), 404);
  EXPECT_EQ(header_of(missing, "access-control-allow-origin"), "http://localhost:5173");
  auto other = get("/api/v1/healthz", "Origin: http://other.example\r\n");
  EXPECT_EQ(status_of(other), 200);
  EXPECT_EQ(header_of(other, "access-control-allow-origin"), "");
  EXPECT_EQ(header_of(other, "vary"), "Origin") << "caches must keep answers per origin";
  // A same-origin or non-browser request is untouched but for Vary.
  EXPECT_EQ(header_of(get("/api/v1/healthz"), "access-control-allow-origin"), "");
}

TEST_F(CorsTest, AnyOriginIsAllowedOnlyWithoutCredentials) {
  allow(R"(["*"])");  // the guide's JSON form
  auto ok = preflight("https://anywhere.example", "POST", "content-type");
  ASSERT_EQ(status_of(ok), 204) << ok;
  EXPECT_EQ(header_of(ok, "access-control-allow-origin"), "*");
  EXPECT_EQ(header_of(ok, "access-control-allow-credentials"), "") << "never * with credentials";
  auto answer = get("/api/v1/healthz", "Origin: https://anywhere.example\r\n");
  EXPECT_EQ(header_of(answer, "access-control-allow-origin"), "*");
  EXPECT_EQ(header_of(answer, "access-control-allow-credentials"), "");
}

TEST_F(CorsTest, AnOriginThatIsNotOneIsRefusedAtStartNamingTheVariable) {
  for (const char* bad : {"http://localhost:5173/", "http://localhost:5173/app", "localhost:5173", "ftp://x.example",
                          R"(["http://ok.example", 5])", "[not json"}) {
    ::setenv("SYNTHORG_API_CORS_ALLOWED_ORIGINS", bad, 1);
    kernel.reset();
    try {
      restart();
      ADD_FAILURE() << bad << " was accepted";
    } catch (const std::exception& error) {
      EXPECT_NE(std::string(error.what()).find("SYNTHORG_API_CORS_ALLOWED_ORIGINS"), std::string::npos)
          << bad << ": " << error.what();
    }
  }
}

TEST_F(CorsTest, AChangeThroughTheSettingsApiTakesEffectWithoutARestart) {
  auto auth = kernel->registry().provide<Authenticator>(std::make_shared<RoleFromHeader>());
  const std::string admin = "Authorization: Bearer admin\r\nContent-Type: application/json\r\n";
  EXPECT_EQ(status_of(preflight("http://localhost:5173", "GET")), 403);

  auto invalid = send("PUT /api/v1/settings/api/cors_allowed_origins HTTP/1.1\r\n" + admin,
                      R"({"value": ["http://localhost:5173/"]})");
  EXPECT_EQ(status_of(invalid), 422) << invalid;
  EXPECT_NE(body_of(invalid)["detail"].get<std::string>().find("http://localhost:5173/"), std::string::npos) << invalid;

  auto changed = send("PUT /api/v1/settings/api/cors_allowed_origins HTTP/1.1\r\n" + admin,
                      R"({"value": ["http://localhost:5173"]})");
  ASSERT_EQ(status_of(changed), 200) << changed;
  int status = 0;
  for (int i = 0; i < 100 && status != 204; ++i) {
    status = status_of(preflight("http://localhost:5173", "GET"));
    if (status != 204) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(status, 204) << "the new origin is allowed without a restart";
  auto listed = body_of(get("/api/v1/settings/api/cors_allowed_origins", "Authorization: Bearer viewer\r\n"));
  EXPECT_EQ(listed["type"], "list") << listed;
}

}  // namespace
}  // namespace synthorg::kernel

#include "routes.hpp"

#include <algorithm>
#include <ctime>
#include <map>
#include <string>
#include <variant>

#include <fmt/format.h>

#include "synthorg/blocking_routes.hpp"

namespace synthorg::auth {
namespace {

using nlohmann::json;
using Work = std::function<HttpResponse()>;
using SteadyClock = std::chrono::steady_clock;

// ---- answers ----

HttpResponse busy() {
  return HttpResponse::problem(503, "busy", "the server is too busy to take this now; retry shortly")
      .header("retry-after", "1");
}

HttpResponse locked_out(std::int64_t seconds) {
  return HttpResponse::problem(429, "locked_out",
                               fmt::format("too many failed sign-ins for this user; try again in {} s", seconds),
                               {{"retry_after", seconds}})
      .header("retry-after", std::to_string(seconds));
}

HttpResponse invalid_credentials(int status = 401, std::string_view detail = "wrong username or password") {
  return HttpResponse::problem(status, "invalid_credentials", detail);
}

// What a failed Store call or anything unexpected becomes. Internals stay in the log.
HttpResponse failure(const AuthContext& context, std::string_view route) {
  try {
    throw;
  } catch (const StoreError& error) {
    if (auto answer = routes::store_problem(error, context.log, route)) return std::move(*answer);
    switch (error.code()) {
      case StoreErrc::conflict:
        return HttpResponse::problem(409, "conflict", "the record changed meanwhile; retry");
      case StoreErrc::not_found:
        return HttpResponse::problem(404, "not_found", "no such user");
      default:
        context.log.error("store call failed", {{"route", route}, {"error", error.what()}});
    }
  } catch (const std::exception& error) {
    context.log.error("auth route failed", {{"route", route}, {"error", error.what()}});
  } catch (...) {
    context.log.error("auth route failed", {{"route", route}});
  }
  return HttpResponse::problem(500, "internal_error", "the server failed to handle this request; it was logged");
}

std::string rfc3339(double seconds) {
  // Foreign tokens may claim any exp: keep it within what RFC 3339 can spell.
  std::time_t time = static_cast<std::time_t>(std::clamp(seconds, 0.0, 253402300799.0));
  std::tm parts{};
  ::gmtime_r(&time, &parts);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &parts);
  return text;
}

std::string cookie(const AuthContext& context, std::string_view value, std::int64_t max_age) {
  return fmt::format("{}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}", session_cookie, value, max_age,
                     context.cookie_secure ? "; Secure" : "");
}

HttpResponse session_response(const AuthContext& context, int status, const User& user,
                              const Sessions::Issued& issued) {
  auto response = HttpResponse::json(status, {{"token", issued.token},
                                              {"token_type", "Bearer"},
                                              {"expires_at", rfc3339(static_cast<double>(issued.expires_at))},
                                              {"user", user.to_public_json()}});
  response.header("set-cookie", cookie(context, issued.token, issued.expires_at - issued.issued_at));
  response.header("cache-control", "no-store");
  return response;
}

// ---- where the work runs ----

// Store work on the blocking pool; 503 busy when the pool refuses it.
void blocking(const std::shared_ptr<AuthContext>& context, std::string route, Responder respond, Work work) {
  bool queued = context->executor.try_post_blocking([context, route, respond, work = std::move(work)] {
    try {
      respond(work());
    } catch (...) {
      respond(failure(*context, route));
    }
  });
  if (!queued) respond(busy());
}

// Argon2id work (and the Store calls around it) through the bounded hashing queue.
void hashing(const std::shared_ptr<AuthContext>& context, std::string route, Responder respond, Work work) {
  bool queued = context->hashing->submit({[context, route, respond, work = std::move(work)] {
                                            try {
                                              respond(work());
                                            } catch (...) {
                                              respond(failure(*context, route));
                                            }
                                          },
                                          [respond] { respond(busy()); }});
  if (!queued) respond(busy());
}

std::int64_t setting(const AuthContext& context, const char* key) {
  return context.settings->get("auth", key).value.get<std::int64_t>();
}

// ---- request bodies ----

std::string lower(std::string_view text) {
  std::string out(text);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// A JSON object body holding exactly the string fields named (all required), or the problem.
std::variant<std::map<std::string, std::string>, HttpResponse> string_fields(const HttpRequest& request,
                                                                              std::vector<std::string> names) {
  auto type = request.header("content-type");
  auto media = lower(type.substr(0, type.find(';')));
  std::erase_if(media, [](char c) { return c == ' ' || c == '\t'; });
  if (media != "application/json")
    return HttpResponse::problem(415, "unsupported_media_type",
                                 type.empty() ? "send the body as application/json (no Content-Type was given)"
                                              : "send the body as application/json, not " + std::string(type));
  auto body = parse_client_json(request.body);
  if (body.is_discarded())
    return HttpResponse::problem(400, "invalid_json",
                                 fmt::format("the body is not valid JSON (or nests deeper than {} levels)",
                                             max_client_json_depth));
  if (!body.is_object()) return HttpResponse::problem(400, "invalid_body", "the body must be a JSON object");
  std::map<std::string, std::string> fields;
  for (const auto& [key, value] : body.items()) {
    if (std::find(names.begin(), names.end(), key) == names.end())
      return HttpResponse::problem(400, "invalid_body",
                                   fmt::format("unknown field {}; this takes {}", json(key).dump(), json(names).dump()));
    if (!value.is_string())
      return HttpResponse::problem(400, "invalid_body", fmt::format("field {} must be a string", json(key).dump()));
    fields[key] = value.get<std::string>();
  }
  for (const auto& name : names)
    if (!fields.contains(name))
      return HttpResponse::problem(400, "invalid_body", fmt::format("field \"{}\" is required", name));
  return fields;
}

std::size_t characters(std::string_view utf8) {
  std::size_t count = 0;
  for (unsigned char c : utf8) count += (c & 0xC0) != 0x80;
  return count;
}

std::optional<HttpResponse> password_problem(const AuthContext& context, const std::string& password) {
  auto minimum = setting(context, "password_min_length");
  if (password.size() > max_password_bytes)
    return HttpResponse::problem(422, "weak_password",
                                 fmt::format("a password may be at most {} bytes", max_password_bytes));
  if (static_cast<std::int64_t>(characters(password)) < minimum)
    return HttpResponse::problem(422, "weak_password",
                                 fmt::format("a password needs at least {} characters", minimum));
  return std::nullopt;
}

std::variant<std::string, HttpResponse> username_of(const std::string& given) {
  if (auto name = normalise_username(given)) return *name;
  return HttpResponse::problem(422, "invalid_username",
                               "a username is 1 to 64 of a-z 0-9 . _ @ -, starting with a letter or digit");
}

// ---- OpenAPI ----

json ref(std::string_view name) { return {{"$ref", fmt::format("#/components/schemas/{}", name)}}; }

json json_content(json schema) { return {{"application/json", {{"schema", std::move(schema)}}}}; }

json response(std::string description, json schema = nullptr) {
  json out = {{"description", std::move(description)}};
  if (!schema.is_null()) out["content"] = json_content(std::move(schema));
  return out;
}

json operation(std::string summary, std::string tag, json responses, json body_schema = nullptr) {
  json out = {{"summary", std::move(summary)}, {"tags", {std::move(tag)}}, {"responses", std::move(responses)}};
  if (!body_schema.is_null())
    out["requestBody"] = {{"required", true}, {"content", json_content(std::move(body_schema))}};
  return out;
}

json set_cookie_header() {
  return {{"Set-Cookie",
           {{"description", "synthorg_session=<jwt>; HttpOnly; SameSite=Strict; Path=/ (and Secure when configured)"},
            {"schema", {{"type", "string"}}}}}};
}

json problem_response(std::string description) {
  return {{"description", std::move(description)},
          {"content", {{"application/problem+json", {{"schema", ref("Problem")}}}}}};
}

json object_schema(json properties, json required) {
  return {{"type", "object"},
          {"additionalProperties", false},
          {"required", std::move(required)},
          {"properties", std::move(properties)}};
}

std::vector<std::pair<std::string, json>> schemas() {
  json username = {{"type", "string"}, {"minLength", 1}, {"maxLength", 64}, {"pattern", "^[A-Za-z0-9][A-Za-z0-9._@-]*$"}};
  json password = {{"type", "string"}, {"minLength", 1}};
  json role = {{"type", "string"}, {"enum", {"admin", "operator", "viewer"}}};
  json user = object_schema({{"id", {{"type", "string"}}},
                             {"username", {{"type", "string"}}},
                             {"role", role},
                             {"created_at", {{"type", "string"}, {"format", "date-time"}}},
                             {"disabled", {{"type", "boolean"}}}},
                            {"id", "username", "role", "created_at", "disabled"});
  return {
      {"AuthUser", user},
      {"AuthCredentials", object_schema({{"username", username}, {"password", password}}, {"username", "password"})},
      {"AuthNewUser", object_schema({{"username", username}, {"password", password}, {"role", role}},
                                    {"username", "password", "role"})},
      {"AuthPasswordChange", object_schema({{"current_password", password}, {"new_password", password}},
                                           {"current_password", "new_password"})},
      {"AuthSession", object_schema({{"token", {{"type", "string"}}},
                                     {"token_type", {{"const", "Bearer"}}},
                                     {"expires_at", {{"type", "string"}, {"format", "date-time"}}},
                                     {"user", ref("AuthUser")}},
                                    {"token", "token_type", "expires_at", "user"})},
      {"AuthMe", object_schema({{"id", {{"type", "string"}}},
                                {"username", {{"type", {"string", "null"}}}},
                                {"role", role},
                                {"created_at", {{"type", {"string", "null"}}}},
                                {"expires_at", {{"type", {"string", "null"}}, {"format", "date-time"}}}},
                               {"id", "username", "role", "expires_at"})},
      {"AuthUserPage", object_schema({{"users", {{"type", "array"}, {"items", ref("AuthUser")}}},
                                      {"next_cursor", {{"type", "string"}}}},
                                     {"users", "next_cursor"})},
  };
}

// ---- handlers ----

void setup(const std::shared_ptr<AuthContext>& context, HttpRequest& request, Responder respond) {
  auto parsed = string_fields(request, {"username", "password"});
  if (auto* problem = std::get_if<HttpResponse>(&parsed)) return respond(std::move(*problem));
  auto& fields = std::get<0>(parsed);
  auto name = username_of(fields["username"]);
  if (auto* problem = std::get_if<HttpResponse>(&name)) return respond(std::move(*problem));
  if (auto problem = password_problem(*context, fields["password"])) return respond(std::move(*problem));
  auto already = [] {
    return HttpResponse::problem(409, "already_set_up", "the first admin exists already; sign in instead");
  };
  if (context->sessions->has_users()) return respond(already());  // before spending a hash on it
  hashing(context, "setup", respond,
          [context, username = std::get<std::string>(name), password = fields["password"], already]() {
            auto hash = context->hasher->hash(password);
            try {
              auto user = context->users->create_first_admin(username, hash);
              context->sessions->remember(user);
              context->log.info("first admin created", {{"user", user.id}, {"username", user.username}});
              return HttpResponse::json(201, {{"user", user.to_public_json()}});
            } catch (const AlreadySetUp&) {
              return already();
            }
          });
}

// What a first-run screen needs before it asks anything: whether setup is waiting, and the
// password rule it will be held to (so a form never allows what the server refuses).
void setup_state(const std::shared_ptr<AuthContext>& context, HttpRequest&, Responder respond) {
  respond(HttpResponse::json(200, {{"needed", !context->sessions->has_users()},
                                   {"password_min_length", setting(*context, "password_min_length")}}));
}

void login(const std::shared_ptr<AuthContext>& context, HttpRequest& request, Responder respond) {
  auto parsed = string_fields(request, {"username", "password"});
  if (auto* problem = std::get_if<HttpResponse>(&parsed)) return respond(std::move(*problem));
  auto& fields = std::get<0>(parsed);
  auto username = normalise_username(fields["username"]);
  // No such name can exist, and the rules are public: nothing to hash, nothing to count.
  if (!username || fields["password"].size() > max_password_bytes) return respond(invalid_credentials());
  if (auto wait = context->throttle->retry_after(*username, SteadyClock::now())) return respond(locked_out(wait));
  hashing(context, "login", respond,
          [context, username = *username, password = fields["password"], remote = request.remote_address]() {
            // Again here: requests queued before the lock engaged must not hash either.
            if (auto wait = context->throttle->retry_after(username, SteadyClock::now())) return locked_out(wait);
            auto stored = context->users->find_by_username(username);
            bool good = false;
            if (stored) good = context->hasher->verify(stored->password_hash, password);
            else context->hasher->verify_dummy(password);
            if (!good) {
              auto locked = context->throttle->fail(username, SteadyClock::now(),
                                                    static_cast<int>(setting(*context, "lockout_attempts")),
                                                    std::chrono::seconds(setting(*context, "lockout_seconds")));
              if (locked)
                context->log.warn("sign-in locked after repeated failures",
                                  {{"username", username}, {"seconds", locked}, {"remote", remote}});
              else
                context->log.info("sign-in failed", {{"username", username}, {"remote", remote}});
              return invalid_credentials();
            }
            context->throttle->succeed(username);
            context->sessions->remember(stored->user);
            if (stored->user.disabled)
              return HttpResponse::problem(403, "account_disabled",
                                           "this account is disabled; ask an administrator to enable it");
            auto issued = context->sessions->issue(stored->user, unix_now());
            return session_response(*context, 200, stored->user, issued);
          });
}

void me(const std::shared_ptr<AuthContext>& context, HttpRequest& request, Responder respond) {
  const auto& principal = *request.principal;
  json body = {{"id", principal.subject}, {"role", principal.role}, {"username", nullptr}, {"expires_at", nullptr}};
  if (auto exp = principal.claims.find("exp"); exp != principal.claims.end() && exp->is_number())
    body["expires_at"] = rfc3339(exp->get<double>());
  if (auto user = context->sessions->user(principal.subject)) {
    body["username"] = user->username;
    body["created_at"] = user->created_at;
  }
  respond(HttpResponse::json(200, body));
}

void ws_ticket(const std::shared_ptr<AuthContext>& context, HttpRequest& request, Responder respond) {
  auto ticket = context->sessions->issue_ticket(*request.principal, unix_now());
  respond(HttpResponse::json(201, {{"ticket", ticket}, {"expires_in", Sessions::ticket_seconds}}));
}

void logout(const std::shared_ptr<AuthContext>& context, HttpRequest& request, Responder respond) {
  const auto& claims = request.principal->claims;
  auto now = unix_now();
  Revocation revocation{Sessions::revocation_key(claims, token_from(request)),
                        context->sessions->revocation_expiry(claims, now)};
  blocking(context, "logout", respond, [context, revocation, now] {
    context->sessions->revoke(revocation, now);  // in force from here, whatever the Store says
    context->users->save_revocation(revocation);
    HttpResponse response{204, {}, {}};
    response.header("set-cookie", cookie(*context, "", 0));
    return response;
  });
}

void change_password(const std::shared_ptr<AuthContext>& context, HttpRequest& request, Responder respond) {
  auto parsed = string_fields(request, {"current_password", "new_password"});
  if (auto* problem = std::get_if<HttpResponse>(&parsed)) return respond(std::move(*problem));
  auto& fields = std::get<0>(parsed);
  if (auto problem = password_problem(*context, fields["new_password"])) return respond(std::move(*problem));
  if (fields["new_password"] == fields["current_password"])
    return respond(HttpResponse::problem(422, "same_password", "the new password must differ from the current one"));
  if (fields["current_password"].size() > max_password_bytes)
    return respond(invalid_credentials(403, "the current password is wrong"));
  // The cache answers the lockout without hashing when it knows the user; a user another replica
  // created is looked up in the Store below.
  if (auto cached = context->sessions->user(request.principal->subject))
    if (auto wait = context->throttle->retry_after(cached->username, SteadyClock::now()))
      return respond(locked_out(wait));
  hashing(context, "change-password", respond,
          [context, id = request.principal->subject, current = fields["current_password"],
           next = fields["new_password"]]() {
            auto stored = context->users->get(id);
            if (!stored)
              return HttpResponse::problem(403, "not_a_local_user",
                                           "this token was issued elsewhere: its subject has no password here");
            const auto& username = stored->user.username;
            if (auto wait = context->throttle->retry_after(username, SteadyClock::now())) return locked_out(wait);
            if (!context->hasher->verify(stored->password_hash, current)) {
              context->throttle->fail(username, SteadyClock::now(), static_cast<int>(setting(*context, "lockout_attempts")),
                                      std::chrono::seconds(setting(*context, "lockout_seconds")));
              return invalid_credentials(403, "the current password is wrong");
            }
            auto hash = context->hasher->hash(next);
            // Every token issued before the next whole second stops working, this request's too;
            // the caller gets a fresh one below.
            auto valid_after = unix_now() + 1;
            auto updated = context->users->set_password(id, hash, valid_after, stored->version);
            context->sessions->remember(updated);
            context->log.info("password changed; older tokens revoked", {{"user", id}});
            return session_response(*context, 200, updated, context->sessions->issue(updated, unix_now()));
          });
}

void create_user(const std::shared_ptr<AuthContext>& context, HttpRequest& request, Responder respond) {
  auto parsed = string_fields(request, {"username", "password", "role"});
  if (auto* problem = std::get_if<HttpResponse>(&parsed)) return respond(std::move(*problem));
  auto& fields = std::get<0>(parsed);
  auto name = username_of(fields["username"]);
  if (auto* problem = std::get_if<HttpResponse>(&name)) return respond(std::move(*problem));
  if (!valid_role(fields["role"]))
    return respond(HttpResponse::problem(422, "invalid_role", "role must be admin, operator or viewer"));
  if (auto problem = password_problem(*context, fields["password"])) return respond(std::move(*problem));
  hashing(context, "create-user", respond,
          [context, username = std::get<std::string>(name), password = fields["password"], role = fields["role"],
           actor = request.principal->subject]() {
            auto hash = context->hasher->hash(password);
            try {
              auto user = context->users->create(username, role, hash);
              context->sessions->remember(user);
              context->log.info("user created", {{"user", user.id}, {"role", user.role}, {"by", actor}});
              return HttpResponse::json(201, {{"user", user.to_public_json()}});
            } catch (const StoreError& error) {
              if (error.code() != StoreErrc::conflict) throw;
              return HttpResponse::problem(409, "username_taken", "a user with this username exists already");
            }
          });
}

void list_users(const std::shared_ptr<AuthContext>& context, HttpRequest& request, Responder respond) {
  auto limit = request.page_limit();
  auto cursor = request.query_param("cursor").value_or("");
  blocking(context, "list-users", respond, [context, limit, cursor] {
    try {
      auto [users, next] = context->users->list(limit, cursor);
      json list = json::array();
      for (const auto& user : users) list.push_back(user.to_public_json());
      return HttpResponse::json(200, {{"users", list}, {"next_cursor", next}});
    } catch (const StoreError& error) {
      if (error.code() != StoreErrc::invalid) throw;
      return HttpResponse::problem(400, "invalid_cursor", "the cursor is not one this list gave out");
    }
  });
}

// POST /api/v1/users/{id}/disable, /enable, DELETE /api/v1/users/{id} and
// DELETE /api/v1/users/{id}/sessions: one change to a user, applied to the Store and then to the
// token cache, so every token of theirs is judged by it from the next request on.
void change_user(const std::shared_ptr<AuthContext>& context, HttpRequest& request, Responder respond,
                 std::string action) {
  auto id = request.params.at("id");
  auto actor = request.principal->subject;
  if (id == actor && action != "revoke-sessions")
    return respond(HttpResponse::problem(409, "cannot_change_self",
                                         fmt::format("you cannot {} your own account; ask another admin", action)));
  blocking(context, action, respond, [context, id, actor, action] {
    auto now = unix_now();
    std::optional<User> user;
    if (action == "disable" || action == "enable") user = context->users->set_disabled(id, action == "disable", now);
    else if (action == "delete") user = context->users->remove(id, now);
    else user = context->users->revoke_tokens(id, now);
    if (!user) return HttpResponse::problem(404, "user_not_found", fmt::format("there is no user {}", id));
    context->sessions->remember(*user);
    context->log.info("user changed", {{"user", id}, {"action", action}, {"by", actor}});
    if (action == "delete" || action == "revoke-sessions") return HttpResponse{204, {}, {}};
    return HttpResponse::json(200, {{"user", user->to_public_json()}});
  });
}

void disable_user(const std::shared_ptr<AuthContext>& context, HttpRequest& request, Responder respond) {
  change_user(context, request, std::move(respond), "disable");
}
void enable_user(const std::shared_ptr<AuthContext>& context, HttpRequest& request, Responder respond) {
  change_user(context, request, std::move(respond), "enable");
}
void delete_user(const std::shared_ptr<AuthContext>& context, HttpRequest& request, Responder respond) {
  change_user(context, request, std::move(respond), "delete");
}
void revoke_sessions(const std::shared_ptr<AuthContext>& context, HttpRequest& request, Responder respond) {
  change_user(context, request, std::move(respond), "revoke-sessions");
}

}  // namespace

std::vector<Token> mount_routes(HttpRouter& router, std::shared_ptr<AuthContext> context) {
  std::vector<Token> tokens;
  for (auto& [name, schema] : schemas()) tokens.push_back(router.add_schema(name, schema));
  auto add = [&](std::string method, std::string pattern, Access access, std::string role, json openapi,
                 void (*handler)(const std::shared_ptr<AuthContext>&, HttpRequest&, Responder)) {
    tokens.push_back(router.add({std::move(method), std::move(pattern), access, std::move(role), std::move(openapi),
                                 [context, handler](HttpRequest& request, Responder respond) {
                                   handler(context, request, std::move(respond));
                                 }}));
  };
  json bad_body = problem_response("Bad JSON or fields (invalid_json, invalid_body)");
  json bad_type = problem_response("Not application/json (unsupported_media_type)");
  json busy = problem_response("Too busy (busy) or the database is unreachable (store_unavailable)");
  json rules = problem_response("A rule is broken (weak_password, invalid_username, invalid_role)");
  json full = problem_response("The database is full (store_full): nothing was saved; reads still work");

  add("POST", "/api/v1/auth/setup", Access::open, {},
      operation("Create the first admin; refused once any user exists", "auth",
                {{"201", response("The admin was created", object_schema({{"user", ref("AuthUser")}}, {"user"}))},
                 {"400", bad_body}, {"409", problem_response("Set up already (already_set_up)")},
                 {"415", bad_type}, {"422", rules}, {"503", busy}, {"507", full}},
                ref("AuthCredentials")),
      setup);
  add("GET", "/api/v1/auth/setup", Access::open, {},
      operation("Whether the first admin is still to be created, and the password rule setup holds to", "auth",
                {{"200", response("The setup state",
                                  object_schema({{"needed", {{"type", "boolean"}}},
                                                 {"password_min_length", {{"type", "integer"}}}},
                                                {"needed", "password_min_length"}))}}),
      setup_state);
  json signed_in = response("Signed in", ref("AuthSession"));
  signed_in["headers"] = set_cookie_header();
  add("POST", "/api/v1/auth/login", Access::open, {},
      operation("Sign in: a JWT in the body and in the synthorg_session cookie", "auth",
                {{"200", signed_in}, {"400", bad_body}, {"401", problem_response("Wrong username or password")},
                 {"415", bad_type},
                 {"429", problem_response("Locked out after repeated failures (locked_out); see Retry-After")},
                 {"503", busy}},
                ref("AuthCredentials")),
      login);
  add("GET", "/api/v1/auth/me", Access::signed_in, {},
      operation("Who the token or cookie belongs to", "auth", {{"200", response("The caller", ref("AuthMe"))}}), me);
  add("POST", "/api/v1/auth/ws-ticket", Access::signed_in, {},
      operation("A one-time ticket (30 s) for GET /api/v1/ws?ticket=..., for clients that cannot send headers",
                "auth",
                {{"201", response("The ticket", object_schema({{"ticket", {{"type", "string"}}},
                                                               {"expires_in", {{"type", "integer"}}}},
                                                              {"ticket", "expires_in"}))}}),
      ws_ticket);
  json logged_out = response("Logged out: this token is revoked and the cookie cleared");
  logged_out["headers"] = set_cookie_header();
  add("POST", "/api/v1/auth/logout", Access::signed_in, {},
      operation("Revoke the token used for this request", "auth", {{"204", logged_out}, {"503", busy}}), logout);
  json changed = response("Changed: older tokens are revoked; here is a fresh one", ref("AuthSession"));
  changed["headers"] = set_cookie_header();
  add("POST", "/api/v1/auth/change-password", Access::signed_in, {},
      operation("Change your password; every token issued before stops working", "auth",
                {{"200", changed}, {"400", bad_body},
                 {"403", problem_response("Wrong current password, or not a local user")},
                 {"409", problem_response("Changed concurrently; retry")}, {"415", bad_type},
                 {"422", problem_response("A rule is broken (weak_password, same_password)")},
                 {"429", problem_response("Locked out (locked_out)")}, {"503", busy}},
                ref("AuthPasswordChange")),
      change_password);
  add("POST", "/api/v1/users", Access::role, "admin",
      operation("Create a user (admin)", "users",
                {{"201", response("Created", object_schema({{"user", ref("AuthUser")}}, {"user"}))},
                 {"400", bad_body}, {"409", problem_response("The username is taken (username_taken)")},
                 {"415", bad_type}, {"422", rules}, {"503", busy}, {"507", full}},
                ref("AuthNewUser")),
      create_user);
  json list = operation("List users, oldest first (admin)", "users",
                        {{"200", response("A page of users", ref("AuthUserPage"))},
                         {"400", problem_response("A bad limit or cursor")}, {"503", busy}});
  list["parameters"] = {
      {{"name", "limit"}, {"in", "query"}, {"required", false},
       {"schema", {{"type", "integer"}, {"minimum", 1}, {"maximum", 1000}, {"default", 100}}}},
      {{"name", "cursor"}, {"in", "query"}, {"required", false}, {"schema", {{"type", "string"}}}}};
  add("GET", "/api/v1/users", Access::role, "admin", list, list_users);
  json user_changed = response("The user as it is now", object_schema({{"user", ref("AuthUser")}}, {"user"}));
  json not_found = problem_response("No such user (user_not_found)");
  json self = problem_response("Not on your own account (cannot_change_self)");
  add("POST", "/api/v1/users/{id}/disable", Access::role, "admin",
      operation("Disable a user (admin): no sign-in, and every token of theirs refused at once", "users",
                {{"200", user_changed}, {"404", not_found}, {"409", self}, {"503", busy}}),
      disable_user);
  add("POST", "/api/v1/users/{id}/enable", Access::role, "admin",
      operation("Enable a disabled user (admin); tokens from before the disabling stay refused", "users",
                {{"200", user_changed}, {"404", not_found}, {"409", self}, {"503", busy}}),
      enable_user);
  add("DELETE", "/api/v1/users/{id}", Access::role, "admin",
      operation("Delete a user (admin): every token refused at once, the username free again", "users",
                {{"204", response("Deleted")}, {"404", not_found}, {"409", self}, {"503", busy}}),
      delete_user);
  add("DELETE", "/api/v1/users/{id}/sessions", Access::role, "admin",
      operation("Sign a user out everywhere (admin): every token issued so far is refused", "users",
                {{"204", response("Every session revoked")}, {"404", not_found}, {"503", busy}}),
      revoke_sessions);
  return tokens;
}

}  // namespace synthorg::auth

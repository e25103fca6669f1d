// The HTTP side of auth: /api/v1/auth/* and the minimal /api/v1/users, each with its OpenAPI
// operation. Handlers answer from memory on the I/O thread where they can; hashing goes through
// the HashQueue and Store work through Executor::try_post_blocking, with 503 busy when refused.
#pragma once

#include <memory>
#include <vector>

#include "limits.hpp"
#include "passwords.hpp"
#include "sessions.hpp"
#include "synthorg/log.hpp"
#include "synthorg/services/executor.hpp"
#include "synthorg/services/http.hpp"
#include "synthorg/services/settings.hpp"
#include "synthorg/token.hpp"
#include "users.hpp"

namespace synthorg::auth {

struct AuthContext {
  Executor& executor;
  std::shared_ptr<Settings> settings;
  std::shared_ptr<UserStore> users;
  std::shared_ptr<Sessions> sessions;
  std::shared_ptr<const PasswordHasher> hasher;
  std::shared_ptr<LoginThrottle> throttle;
  std::shared_ptr<HashQueue> hashing;
  bool cookie_secure = false;
  log::Logger log;
};

// The tokens unmount the routes and remove the schemas.
std::vector<Token> mount_routes(HttpRouter& router, std::shared_ptr<AuthContext> context);

}  // namespace synthorg::auth

// What HTTP routes whose work blocks (Store and Orchestrator calls) share: handing that work to
// the Executor's blocking pool, and answering an exception it threw as problem+json. Header-only
// on purpose: it adds nothing to libsynthorg-sdk.so's ABI.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "synthorg/log.hpp"
#include "synthorg/services/executor.hpp"
#include "synthorg/services/http.hpp"
#include "synthorg/services/orchestrator.hpp"
#include "synthorg/services/store.hpp"

namespace synthorg::routes {

// What a caller is told about a Store that cannot take the call, whatever the route: one that
// cannot be reached is 503 store_unavailable with Retry-After: 5 (retrying may work); a full one
// is 507 store_full (retrying will not: an operator must free space; reads still work). The
// store's own message, which names files and hosts, stays in the log. nullopt for other codes.
inline std::optional<HttpResponse> store_problem(const StoreError& error, const log::Logger& log, std::string_view route) {
  switch (error.code()) {
    case StoreErrc::unavailable:
      log.warn("store unavailable", {{"route", route}, {"error", error.what()}});
      return HttpResponse::problem(503, "store_unavailable", "the database cannot be reached; retry shortly")
          .header("retry-after", "5");
    case StoreErrc::full:
      log.error("store full: writes are refused until space is freed", {{"route", route}, {"error", error.what()}});
      return HttpResponse::problem(507, "store_full",
                                   "the database is full, so this change was not saved (nothing of it was kept); "
                                   "reading still works. An administrator must free disk space or raise the "
                                   "store's size limit (store-sqlite's max_size_mb); the server log says which");
    default: return std::nullopt;
  }
}

// Call inside a catch block. A Store that cannot take the call answers as store_problem says;
// an Orchestrator that cannot be reached is 503 orchestrator_unavailable with Retry-After: 5;
// anything else is logged with the route and answered 500 internal_error, so what failed stays
// in the log.
inline HttpResponse current_problem(const log::Logger& log, std::string_view route) {
  try {
    throw;
  } catch (const StoreError& error) {
    if (auto answer = store_problem(error, log, route)) return std::move(*answer);
    log.error("store call failed", {{"route", route}, {"error", error.what()}});
  } catch (const OrchestratorError& error) {
    if (error.code() == OrchestratorErrc::unavailable)
      return HttpResponse::problem(503, "orchestrator_unavailable",
                                   std::string("the orchestrator cannot be reached: ") + error.what())
          .header("retry-after", "5");
    log.error("orchestrator call failed", {{"route", route}, {"error", error.what()}});
  } catch (const std::exception& error) {
    log.error("route failed", {{"route", route}, {"error", error.what()}});
  } catch (...) {
    log.error("route failed", {{"route", route}});
  }
  return HttpResponse::problem(500, "internal_error", "the server failed to handle this request; it was logged");
}

// Runs `work` on the blocking pool and answers with what it returns; when it throws, answers
// with what `on_error` returns (called inside the catch block, so it may rethrow to sort the
// exception out). When the pool's queue is full: 503 busy with Retry-After: 1, at once.
// `Answer` is HttpResponse for a Responder, or ProxyDecision for a proxy route's ProxyDecide.
template <class Answer>
void respond_blocking(Executor& executor, std::function<void(Answer)> respond,
                      std::type_identity_t<std::function<Answer()>> work, std::function<HttpResponse()> on_error) {
  bool queued = executor.try_post_blocking([respond, work = std::move(work), on_error = std::move(on_error)] {
    try {
      respond(work());
    } catch (...) {
      respond(on_error());
    }
  });
  if (!queued)
    respond(HttpResponse::problem(503, "busy", "the server is too busy to take this now; retry shortly")
                .header("retry-after", "1"));
}

}  // namespace synthorg::routes

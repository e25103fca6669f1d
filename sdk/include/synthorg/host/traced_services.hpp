// Tracing decorators of the Store and the Orchestrator. The kernel has the registry hand these
// out in place of the providers while a Tracer runs (ServiceRegistry::decorate), so every call
// any plugin makes becomes a CLIENT span, child of the thread's current context (the HTTP
// request's span, carried to the blocking pool by the Executor), without a plugin writing a
// line of tracing. With no Tracer nothing is decorated: callers get the provider itself.
//
// What goes on a span is chosen here, once: operation and collection or workload id, never a
// document, a query's values, an environment or an error message (which may echo data).
#pragma once

#include <memory>

#include "synthorg/services/orchestrator.hpp"
#include "synthorg/services/store.hpp"
#include "synthorg/services/tracer.hpp"

namespace synthorg::host {

// Spans `store.<operation> <collection>` (`store.transaction`, `store.ping`...), attributes
// db.system.name, db.collection.name, db.operation.name; status ERROR and error.type (the
// StoreErrc, or the exception's kind) when the call throws. Calls inside a transaction are
// children of the transaction's span.
std::shared_ptr<Store> traced_store(std::shared_ptr<Store> store, std::shared_ptr<Tracer> tracer);

// Spans `orchestrator.<operation>`, attributes synthorg.orchestrator.backend and, for calls on
// one workload, synthorg.workload.id. The span is the current context during the call, so the
// backend's HTTP calls (Docker, Kubernetes, Fly) carry it in their traceparent.
std::shared_ptr<Orchestrator> traced_orchestrator(std::shared_ptr<Orchestrator> orchestrator,
                                                  std::shared_ptr<Tracer> tracer);

}  // namespace synthorg::host

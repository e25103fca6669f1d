#include "synthorg/host/traced_services.hpp"

#include <string>
#include <utility>

namespace synthorg::host {
namespace {

// Runs `call` inside a CLIENT span that is the thread's current context meanwhile, so anything
// the call traces or sends (a nested Store call, the backend's HTTP request) is its child. The
// span ends when this returns or throws; a throw marks it failed with the error's kind only.
template <class Call, class Describe>
auto in_span(Tracer& tracer, std::string_view name, Describe&& describe, Call&& call) -> decltype(call()) {
  auto span = tracer.start_span(name, SpanKind::client);
  trace::ScopedContext scope(span->context());
  if (span->recording()) describe(*span);
  auto fail = [&](std::string_view kind) {
    span->set_attribute("error.type", std::string(kind));
    span->set_error(kind);
  };
  try {
    return call();
  } catch (const StoreError& error) {
    fail(to_string(error.code()));
    throw;
  } catch (const OrchestratorError& error) {
    fail(to_string(error.code()));
    throw;
  } catch (...) {
    fail("exception");
    throw;
  }
}

std::string db_system(std::string_view backend) {
  // OpenTelemetry's db.system.name values.
  return backend == "postgres" ? "postgresql" : std::string(backend);
}

// The document operations, on the store itself (Base = Store) or on a transaction's StoreOps.
template <class Base>
class TracedOps : public Base {
 public:
  TracedOps(StoreOps& inner, std::shared_ptr<Tracer> tracer, std::shared_ptr<const std::string> system)
      : inner_(&inner), tracer_(std::move(tracer)), system_(std::move(system)) {}

  Document insert(std::string_view collection, const nlohmann::json& data, std::string_view id) override {
    return traced("insert", collection, [&] { return inner_->insert(collection, data, id); });
  }
  std::optional<Document> get(std::string_view collection, std::string_view id) override {
    return traced("get", collection, [&] { return inner_->get(collection, id); });
  }
  Document update(std::string_view collection, std::string_view id, const nlohmann::json& data,
                  std::int64_t expected_version) override {
    return traced("update", collection, [&] { return inner_->update(collection, id, data, expected_version); });
  }
  bool remove(std::string_view collection, std::string_view id, std::optional<std::int64_t> expected_version) override {
    return traced("remove", collection, [&] { return inner_->remove(collection, id, expected_version); });
  }
  Page query(std::string_view collection, const Query& query) override {
    return traced("query", collection, [&] { return inner_->query(collection, query); });
  }
  std::int64_t count(std::string_view collection,
                     const std::vector<std::pair<std::string, nlohmann::json>>& where) override {
    return traced("count", collection, [&] { return inner_->count(collection, where); });
  }

 protected:
  // `collection` empty: an operation on the whole store (transaction, ping...).
  template <class Call>
  auto traced(std::string_view operation, std::string_view collection, Call&& call) -> decltype(call()) {
    std::string name = "store.";
    name += operation;
    if (!collection.empty()) (name += ' ') += collection;
    return in_span(
        *tracer_, name,
        [&](Span& span) {
          span.set_attribute("db.system.name", *system_);
          span.set_attribute("db.operation.name", std::string(operation));
          if (!collection.empty()) span.set_attribute("db.collection.name", std::string(collection));
        },
        std::forward<Call>(call));
  }

  StoreOps* inner_;
  std::shared_ptr<Tracer> tracer_;
  std::shared_ptr<const std::string> system_;
};

class TracedStore final : public TracedOps<Store> {
 public:
  TracedStore(std::shared_ptr<Store> store, std::shared_ptr<Tracer> tracer)
      : TracedOps<Store>(*store, std::move(tracer), std::make_shared<const std::string>(db_system(store->info().backend))),
        store_(std::move(store)) {}

  void ensure_collection(const CollectionSpec& spec) override {
    traced("ensure_collection", spec.name, [&] { store_->ensure_collection(spec); });
  }
  int schema_version(std::string_view collection) override {
    return traced("schema_version", collection, [&] { return store_->schema_version(collection); });
  }
  void transaction(const std::function<void(StoreOps&)>& body) override {
    traced("transaction", {}, [&] {
      store_->transaction([&](StoreOps& ops) {
        TracedOps<StoreOps> inside(ops, tracer_, system_);
        body(inside);
      });
    });
  }
  void ping() override {
    traced("ping", {}, [&] { store_->ping(); });
  }
  StoreInfo info() const override { return store_->info(); }
  Snapshot snapshot(const std::filesystem::path& directory) override {
    return traced("snapshot", {}, [&] { return store_->snapshot(directory); });
  }
  void restore(const Snapshot& snapshot) override {
    traced("restore", {}, [&] { store_->restore(snapshot); });
  }

 private:
  std::shared_ptr<Store> store_;
};

class TracedOrchestrator final : public Orchestrator {
 public:
  TracedOrchestrator(std::shared_ptr<Orchestrator> inner, std::shared_ptr<Tracer> tracer)
      : inner_(std::move(inner)), tracer_(std::move(tracer)), backend_(inner_->backend()) {}

  std::string backend() const override { return backend_; }
  WorkloadStatus spawn(const WorkloadSpec& spec) override {
    return traced("spawn", {}, [&] { return inner_->spawn(spec); });
  }
  WorkloadStatus inspect(const std::string& id) override {
    return traced("inspect", id, [&] { return inner_->inspect(id); });
  }
  std::vector<WorkloadStatus> list(const std::map<std::string, std::string>& labels) override {
    return traced("list", {}, [&] { return inner_->list(labels); });
  }
  void stop(const std::string& id, std::chrono::seconds grace) override {
    traced("stop", id, [&] { inner_->stop(id, grace); });
  }
  void remove(const std::string& id) override {
    traced("remove", id, [&] { inner_->remove(id); });
  }
  WaitResult wait(const std::string& id, std::chrono::milliseconds timeout) override {
    return traced("wait", id, [&] { return inner_->wait(id, timeout); });
  }
  void logs(const std::string& id, const LogOptions& options, const LogSink& sink) override {
    traced("logs", id, [&] { inner_->logs(id, options, sink); });
  }
  Endpoint endpoint(const std::string& id, std::uint16_t container_port) override {
    return traced("endpoint", id, [&] { return inner_->endpoint(id, container_port); });
  }
  OrchestratorHealth health() override {
    return traced("health", {}, [&] { return inner_->health(); });
  }

 private:
  template <class Call>
  auto traced(std::string_view operation, std::string_view id, Call&& call) -> decltype(call()) {
    std::string name = "orchestrator.";
    name += operation;
    return in_span(
        *tracer_, name,
        [&](Span& span) {
          span.set_attribute("synthorg.orchestrator.backend", backend_);
          if (!id.empty()) span.set_attribute("synthorg.workload.id", std::string(id));
        },
        std::forward<Call>(call));
  }

  std::shared_ptr<Orchestrator> inner_;
  std::shared_ptr<Tracer> tracer_;
  std::string backend_;
};

}  // namespace

std::shared_ptr<Store> traced_store(std::shared_ptr<Store> store, std::shared_ptr<Tracer> tracer) {
  return std::make_shared<TracedStore>(std::move(store), std::move(tracer));
}

std::shared_ptr<Orchestrator> traced_orchestrator(std::shared_ptr<Orchestrator> orchestrator,
                                                  std::shared_ptr<Tracer> tracer) {
  return std::make_shared<TracedOrchestrator>(std::move(orchestrator), std::move(tracer));
}

}  // namespace synthorg::host

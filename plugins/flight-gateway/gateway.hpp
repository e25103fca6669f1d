// The gRPC side of the Flight SQL gateway: one async generic service that relays every call of
// arrow.flight.protocol.FlightService to the caller's own workload, its payload never decoded.
// Messages, metadata, deadlines, cancellation, trailers and status pass through; each direction
// has one message in flight at most, so gRPC's flow control reaches from the client to the
// workload and a slow reader slows the writer instead of filling memory.
//
// gRPC's headers stay in gateway.cpp: this header is all the plugin's wiring sees.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <atomic>

#include "synthorg/log.hpp"
#include "synthorg/services/http.hpp"

namespace synthorg::flight_gateway {

struct GatewayOptions {
  std::string address = "0.0.0.0";
  unsigned short port = 8081;
  std::string tls_cert_file;  // PEM; with tls_key_file, TLS instead of h2c
  std::string tls_key_file;
  std::size_t max_message_bytes = 64 * 1024 * 1024;  // one message from a client; larger: RESOURCE_EXHAUSTED
  std::size_t max_streams_per_user = 100;             // calls one user may have open at once
  std::size_t max_streams_per_connection = 1000;      // HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS
  std::size_t threads = 1;                            // completion queues, a thread each
};

// Where a user's calls go.
struct Endpoint {
  std::string workload_id;
  std::string host;
  std::uint16_t port = 0;
};

// A refusal in gRPC terms: status code (grpc::StatusCode's numbers) and message.
struct Refusal {
  int code;
  std::string message;
  std::int64_t retry_after_seconds = 0;  // sent as google.rpc.RetryInfo when > 0
};

// One finished call, for metrics, traces and the log.
struct CallRecord {
  std::string method;  // "DoGet"; "" for a path outside FlightService
  int code = 0;        // its gRPC status code
  double seconds = 0;
  std::string subject;  // the caller, "" when not signed in
};

// What the gateway asks of the rest of the kernel. Callbacks may run on any thread; `login` and
// `acquire` may answer later, from another thread.
struct GatewayHooks {
  // `authorization: Bearer …` → the caller; nullopt when the token is not good.
  std::function<std::optional<Principal>(const std::string& authorization)> authenticate;
  // A username and password → a bearer token (the HTTP API's sign-in, with its lockout);
  // `remote` is the client's address, for the sign-in log.
  std::function<void(const std::string& username, const std::string& password, const std::string& remote,
                     std::function<void(std::variant<std::string, Refusal>)> done)>
      login;
  // The user's workload, started and waited for when there is none.
  std::function<void(const std::string& subject, std::function<void(std::variant<Endpoint, Refusal>)> done)> acquire;
  // Marks a known running workload used now; false when it is not known to be running (ask
  // acquire). Never blocks.
  std::function<bool(const Endpoint& endpoint, const std::string& subject)> touch;
  // A workload could not be reached (UNAVAILABLE from it): have it looked at. May block the
  // caller's thread briefly; post the real work elsewhere.
  std::function<void(const Endpoint& endpoint)> unreachable;
  // One call's worth of the user's rate limit: 0 when taken, else seconds until there is one.
  std::function<std::int64_t(const std::string& subject)> take_call;
  // At a call's start (its method, the caller's traceparent): what to run when it ends, with the
  // record (metrics, the server span, the log). May be empty.
  std::function<std::function<void(const CallRecord& record)>(const std::string& method, std::string_view traceparent)>
      observe;
};

struct GatewayStats {
  std::atomic<std::int64_t> calls_open{0};
  std::atomic<std::uint64_t> calls_total{0};
};

class Gateway {
 public:
  Gateway(GatewayOptions options, GatewayHooks hooks, log::Logger log);
  ~Gateway();
  // Binds and starts serving; throws std::runtime_error naming the address and the fix.
  void start();
  // Stops accepting calls, lets open ones run for up to `grace`, then cancels the rest.
  void stop(std::chrono::milliseconds grace);
  unsigned short port() const noexcept;
  const GatewayStats& stats() const noexcept;
  // A workload stopped or moved: its endpoint is no longer used for `subject`.
  void forget_endpoint(const std::string& subject);

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace synthorg::flight_gateway

#include "gateway.hpp"

#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#include <fmt/format.h>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include "call_policy.hpp"

namespace synthorg::flight_gateway {
namespace {

using Clock = std::chrono::steady_clock;

// The HTTP/2 receive window of each relayed stream, both ways: enough for a full-speed DoGet on
// loopback, and the bound on what a slow reader leaves buffered in the gateway per stream.
constexpr int kStreamWindowBytes = 1024 * 1024;

std::string to_string(grpc::string_ref text) { return std::string(text.data(), text.size()); }

std::string read_file(const std::string& path, const char* what) {
  std::ifstream file(path, std::ios::binary);
  if (!file)
    throw std::runtime_error(fmt::format("cannot read the TLS {} file {} (fix: check tls_{}_file and its permissions)",
                                         what, path, what));
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

// gRPC's peer, "ipv4:127.0.0.1:5000" or "ipv6:[::1]:5000", as the address alone.
std::string peer_address(const std::string& peer) {
  auto colon = peer.find(':');
  auto last = peer.rfind(':');
  if (colon == std::string::npos || last == colon) return peer;
  auto address = peer.substr(colon + 1, last - colon - 1);
  if (address.size() >= 2 && address.front() == '[' && address.back() == ']') address = address.substr(1, address.size() - 2);
  return address;
}

grpc::Status status_of(const Refusal& refusal) {
  auto code = static_cast<grpc::StatusCode>(refusal.code);
  if (refusal.retry_after_seconds > 0)
    return {code, refusal.message, retry_info_details(refusal.code, refusal.message, refusal.retry_after_seconds)};
  return {code, refusal.message};
}

}  // namespace

struct Gateway::Impl : grpc::CallbackGenericService {
  Impl(GatewayOptions options, GatewayHooks hooks, log::Logger log)
      : options(std::move(options)), hooks(std::move(hooks)), log(std::move(log)) {}

  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext* context) override;

  // One channel per workload endpoint, shared by every call to it (HTTP/2 multiplexes them).
  std::shared_ptr<grpc::Channel> channel_for(const Endpoint& endpoint) {
    auto target = fmt::format("{}:{}", endpoint.host, endpoint.port);
    std::lock_guard lock(channels_mutex);
    auto& channel = channels[target];
    if (!channel) {
      grpc::ChannelArguments arguments;
      // The workload's answers go to the client unchanged: no limit of our own on their size.
      arguments.SetMaxReceiveMessageSize(-1);
      arguments.SetMaxSendMessageSize(-1);
      // Its own connection per target, not one shared with other channels of this process.
      arguments.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
      // What a stream may have in flight towards us is what sits in our memory while the client
      // reads slowly: a fixed window, not one that BDP probing grows to megabytes per stream.
      arguments.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
      arguments.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, kStreamWindowBytes);
      channel = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), arguments);
    }
    return channel;
  }

  // Admits one more call of `subject` (max_streams_per_user); released with release_stream().
  bool admit_stream(const std::string& subject) {
    std::lock_guard lock(streams_mutex);
    auto& open = streams[subject];
    if (open >= options.max_streams_per_user) return false;
    ++open;
    return true;
  }
  void release_stream(const std::string& subject) {
    std::lock_guard lock(streams_mutex);
    auto it = streams.find(subject);
    if (it != streams.end() && --it->second == 0) streams.erase(it);
  }

  std::optional<Endpoint> cached_endpoint(const std::string& subject) {
    std::lock_guard lock(endpoints_mutex);
    auto it = endpoints.find(subject);
    if (it == endpoints.end()) return std::nullopt;
    return it->second;
  }
  void cache_endpoint(const std::string& subject, const Endpoint& endpoint) {
    std::lock_guard lock(endpoints_mutex);
    endpoints[subject] = endpoint;
  }
  void forget_endpoint(const std::string& subject) {
    std::lock_guard lock(endpoints_mutex);
    endpoints.erase(subject);
  }

  GatewayOptions options;
  GatewayHooks hooks;
  log::Logger log;
  GatewayStats stats;
  std::unique_ptr<grpc::Server> server;
  unsigned short bound_port = 0;
  std::atomic<bool> stopping{false};
  std::mutex channels_mutex;
  std::unordered_map<std::string, std::shared_ptr<grpc::Channel>> channels;
  std::mutex streams_mutex;
  std::unordered_map<std::string, std::size_t> streams;
  std::mutex endpoints_mutex;
  std::unordered_map<std::string, Endpoint> endpoints;
};

namespace {

// One relayed call: the client's side (Down, a server reactor) and the workload's side (Up, a
// client reactor on a generic stub), pumping one message at a time each way. gRPC may run the
// two reactors' reactions on different threads at once, hence the mutex; it is recursive because
// a Start* call may complete, and react, on the calling thread.
class Call {
 public:
  Call(Gateway::Impl& gateway, grpc::GenericCallbackServerContext* context)
      : gateway_(gateway), context_(context), started_(Clock::now()), down_(*this), up_(*this) {
    ++gateway_.stats.calls_open;
    ++gateway_.stats.calls_total;
    method_ = std::string(flight_method(context_->method()));
    if (gateway_.hooks.observe) ended_ = gateway_.hooks.observe(method_, header("traceparent"));
    Reaction reaction(*this);
    begin();
  }

  grpc::ServerGenericBidiReactor* reactor() { return &down_; }

 private:
  struct Down : grpc::ServerGenericBidiReactor {
    explicit Down(Call& call) : call(call) {}
    void OnReadDone(bool ok) override { call.down_read_done(ok); }
    void OnWriteDone(bool ok) override { call.down_write_done(ok); }
    void OnCancel() override { call.down_cancelled(); }
    void OnDone() override { call.down_done(); }
    Call& call;
  };
  struct Up : grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
    explicit Up(Call& call) : call(call) {}
    void OnReadInitialMetadataDone(bool ok) override { call.up_metadata(ok); }
    void OnReadDone(bool ok) override { call.up_read_done(ok); }
    void OnWriteDone(bool ok) override { call.up_write_done(ok); }
    void OnDone(const grpc::Status& status) override { call.up_done(status); }
    Call& call;
  };

  std::string_view header(std::string_view name) const {
    const auto& metadata = context_->client_metadata();
    auto it = metadata.find(grpc::string_ref(name.data(), name.size()));
    return it == metadata.end() ? std::string_view{} : std::string_view(it->second.data(), it->second.size());
  }

  // With the mutex held, from here on.
  void begin() {
    if (method_.empty())
      return finish({grpc::StatusCode::UNIMPLEMENTED,
                     fmt::format("this port serves Arrow Flight (arrow.flight.protocol.FlightService); {} is not "
                                 "one of its methods",
                                 to_string(context_->method()))});
    if (gateway_.stopping) return finish({grpc::StatusCode::UNAVAILABLE, "the gateway is shutting down; retry"});
    auto authorization = std::string(header("authorization"));
    if (context_->method() == kHandshake) return handshake(authorization);
    if (bearer_token(authorization).empty())
      return finish({grpc::StatusCode::UNAUTHENTICATED,
                     "send 'authorization: Bearer <token>' (from the Handshake with Basic credentials, or from "
                     "POST /api/v1/auth/login)"});
    auto principal = gateway_.hooks.authenticate(authorization);
    if (!principal)
      return finish({grpc::StatusCode::UNAUTHENTICATED,
                     "the bearer token is not valid here (expired, revoked, or signed with another key); sign in again"});
    subject_ = principal->subject;
    if (!gateway_.admit_stream(subject_)) {
      subject_admitted_ = false;
      return finish({grpc::StatusCode::RESOURCE_EXHAUSTED,
                     fmt::format("you have {} calls open at once, the most allowed (max_streams_per_user); wait for "
                                 "one to end",
                                 gateway_.options.max_streams_per_user)});
    }
    subject_admitted_ = true;
    if (auto wait = gateway_.hooks.take_call(subject_); wait > 0)
      return finish(status_of({static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED),
                               fmt::format("too many calls: your rate limit is used up; retry in {} s", wait), wait}));
    if (auto endpoint = gateway_.cached_endpoint(subject_); endpoint && gateway_.hooks.touch(*endpoint, subject_))
      return connect(*endpoint);
    ++pending_;
    gateway_.hooks.acquire(subject_, [this](std::variant<Endpoint, Refusal> result) {
      Reaction reaction(*this);
      --pending_;
      if (auto* refusal = std::get_if<Refusal>(&result)) {
        finish(status_of(*refusal));
      } else if (cancelled_) {
        finish({grpc::StatusCode::CANCELLED, "the call was cancelled while its workload started"});
      } else {
        gateway_.cache_endpoint(subject_, std::get<Endpoint>(result));
        connect(std::get<Endpoint>(result));
      }
      });
  }

  // Handshake is answered here, never relayed: Basic credentials are exchanged for a bearer token
  // in the `authorization` response header (what Flight clients read), and a bearer token is
  // checked. Each request message is echoed back as the response (HandshakeRequest and
  // HandshakeResponse share their fields), until the client half-closes.
  void handshake(const std::string& authorization) {
    if (auto credentials = parse_basic(authorization)) {
      ++pending_;
      gateway_.hooks.login(credentials->username, credentials->password, peer_address(context_->peer()),
                           [this](std::variant<std::string, Refusal> result) {
                             Reaction reaction(*this);
                             --pending_;
                             if (auto* refusal = std::get_if<Refusal>(&result)) {
                               finish(status_of(*refusal));
                             } else {
                               echo_handshake("Bearer " + std::get<std::string>(result));
                             }
                                                    });
      return;
    }
    if (!bearer_token(authorization).empty()) {
      if (!gateway_.hooks.authenticate(authorization))
        return finish({grpc::StatusCode::UNAUTHENTICATED,
                       "the bearer token is not valid here (expired, revoked, or signed with another key); sign in "
                       "again"});
      return echo_handshake(authorization);
    }
    finish({grpc::StatusCode::UNAUTHENTICATED,
            "send 'authorization: Basic base64(username:password)' to get a token, or 'authorization: Bearer <token>'"});
  }

  void echo_handshake(const std::string& authorization) {
    if (finished_ || cancelled_) return finish({grpc::StatusCode::CANCELLED, "cancelled"});
    handshaking_ = true;
    context_->AddInitialMetadata("authorization", authorization);
    context_->AddTrailingMetadata("authorization", authorization);  // some clients read trailers
    down_.StartSendInitialMetadata();
    reading_down_ = true;
    down_.StartRead(&down_message_);
  }

  void connect(const Endpoint& endpoint) {
    if (finished_) return;
    if (cancelled_) return finish({grpc::StatusCode::CANCELLED, "cancelled"});
    endpoint_ = endpoint;
    auto channel = gateway_.channel_for(endpoint);
    if (context_->deadline() != std::chrono::system_clock::time_point::max())
      up_context_.set_deadline(context_->deadline());
    for (const auto& [name, value] : context_->client_metadata()) {
      auto key = to_string(name);
      if (forwarded_to_workload(key)) up_context_.AddMetadata(key, to_string(value));
    }
    stub_ = std::make_unique<grpc::GenericStub>(channel);
    stub_->PrepareBidiStreamingCall(&up_context_, to_string(context_->method()), grpc::StubOptions(), &up_);
    // Held until this side will start nothing more on the upstream call: its OnDone must not
    // come before a write or read that a client message or a written answer is about to start.
    up_.AddHold();
    up_started_ = held_ = true;
    ++pending_;  // the upstream call, until its OnDone
    up_.StartCall();
    reading_down_ = true;
    down_.StartRead(&down_message_);
  }

  // The client's messages to the workload.
  void down_read_done(bool ok) {
    Reaction reaction(*this);
    reading_down_ = false;
    if (handshaking_) {
      if (!ok || finished_) {
        finish(grpc::Status::OK);
      } else {
        writing_down_ = true;
        down_.StartWrite(&down_message_);
      }
      return;
    }
    if (!up_started_ || up_finished_ || writes_closed_) {
      maybe_finish();
      return;
    }
    if (ok) {
      up_writing_ = true;
      up_.StartWrite(&down_message_);
    } else {
      writes_closed_ = true;  // the client half-closed (or went away): so does the upstream
      up_.StartWritesDone();
      drop_hold();
    }
  }

  void up_write_done(bool ok) {
    Reaction reaction(*this);
    up_writing_ = false;
    if (ok && !finished_ && !cancelled_ && !writes_closed_) {
      reading_down_ = true;
      down_.StartRead(&down_message_);
    } else {
      writes_closed_ = true;
      drop_hold();
    }
  }

  // The workload's answers to the client.
  void up_metadata(bool ok) {
    Reaction reaction(*this);
    if (ok && !finished_) {
      for (const auto& [name, value] : up_context_.GetServerInitialMetadata()) {
        auto key = to_string(name);
        if (forwarded_to_client(key)) context_->AddInitialMetadata(key, to_string(value));
      }
      down_.StartSendInitialMetadata();
      reading_up_ = true;
      up_.StartRead(&up_message_);
    } else {
      close_upstream();
    }
  }

  void up_read_done(bool ok) {
    Reaction reaction(*this);
    reading_up_ = false;
    if (ok && !finished_) {
      writing_down_ = true;
      down_.StartWrite(&up_message_);
    } else {
      close_upstream();
    }
  }

  void down_write_done(bool ok) {
    Reaction reaction(*this);
    writing_down_ = false;
    if (handshaking_) {
      if (ok && !finished_) {
        reading_down_ = true;
        down_.StartRead(&down_message_);
      } else {
        finish({grpc::StatusCode::CANCELLED, "the client went away"});
      }
      return;
    }
    if (ok && !up_finished_ && !cancelled_) {
      reading_up_ = true;
      up_.StartRead(&up_message_);
    } else {
      if (!ok) up_context_.TryCancel();  // the client is gone: so is the workload's work for it
      close_upstream();
      maybe_finish();
    }
  }

  void up_done(const grpc::Status& status) {
    Reaction reaction(*this);
    --pending_;
    up_finished_ = true;
    upstream_status_ = status;
    for (const auto& [name, value] : up_context_.GetServerTrailingMetadata()) {
      auto key = to_string(name);
      if (forwarded_to_client(key)) context_->AddTrailingMetadata(key, to_string(value));
    }
    if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
      // The workload did not answer: look it up again next time (it may have stopped or moved),
      // and have its container looked at, so that a dead one is replaced.
      gateway_.forget_endpoint(subject_);
      if (gateway_.hooks.unreachable) gateway_.hooks.unreachable(endpoint_);
    }
    maybe_finish();
  }

  void down_cancelled() {
    Reaction reaction(*this);
    cancelled_ = true;
    if (up_started_ && !up_finished_) up_context_.TryCancel();
    if (!up_started_ && pending_ == 0) finish({grpc::StatusCode::CANCELLED, "cancelled"});
  }

  void down_done() {
    Reaction reaction(*this);
    down_done_ = true;
    if (subject_admitted_) gateway_.release_stream(subject_);
    --gateway_.stats.calls_open;
    if (ended_)
      ended_(CallRecord{method_, static_cast<int>(final_code_),
                        std::chrono::duration<double>(Clock::now() - started_).count(), subject_});
  }

  // The upstream's answer goes to the client once nothing is being written to it.
  void maybe_finish() {
    if (up_finished_ && !writing_down_) finish(upstream_status_);
  }

  void finish(const grpc::Status& status) {
    if (finished_) return;
    finished_ = true;
    final_code_ = status.error_code();
    down_.Finish(status);
  }

  // Nothing more will be read from the workload: its answer is over (or failed), so nothing more
  // is written to it either, and its OnDone may come.
  void close_upstream() {
    reads_closed_ = writes_closed_ = true;
    drop_hold();
  }

  void drop_hold() {
    if (held_ && writes_closed_ && reads_closed_) {
      held_ = false;
      up_.RemoveHold();
    }
  }

  // Every entry into the call (its constructor, each reaction, each hook's answer) holds one:
  // the lock, and a depth count, so that the outermost one deletes the call once both reactors
  // are done and nothing of ours is pending. (A Start* or Finish may react on the calling thread,
  // inside another reaction: the inner one must not delete what the outer one still uses.)
  struct Reaction {
    explicit Reaction(Call& call) : call(call), lock(call.mutex_) { ++call.depth_; }
    ~Reaction() {
      bool over = --call.depth_ == 0 && call.down_done_ && call.pending_ == 0;
      lock.unlock();
      if (over) delete &call;
    }
    Call& call;
    std::unique_lock<std::recursive_mutex> lock;
  };

  Gateway::Impl& gateway_;
  grpc::GenericCallbackServerContext* context_;
  Clock::time_point started_;
  Down down_;
  Up up_;
  grpc::ClientContext up_context_;
  std::recursive_mutex mutex_;
  std::string method_, subject_;
  std::function<void(const CallRecord&)> ended_;
  Endpoint endpoint_;
  grpc::ByteBuffer down_message_, up_message_;  // the one message in flight each way
  grpc::Status upstream_status_;
  grpc::StatusCode final_code_ = grpc::StatusCode::OK;
  int pending_ = 0;  // login, acquire, the upstream call: each until it calls back
  bool handshaking_ = false, subject_admitted_ = false, up_started_ = false, held_ = false;
  bool reading_down_ = false, writing_down_ = false, reading_up_ = false, up_writing_ = false;
  bool writes_closed_ = false, reads_closed_ = false, up_finished_ = false;
  bool cancelled_ = false, finished_ = false, down_done_ = false;
  int depth_ = 0;
  std::unique_ptr<grpc::GenericStub> stub_;
};

}  // namespace

grpc::ServerGenericBidiReactor* Gateway::Impl::CreateReactor(grpc::GenericCallbackServerContext* context) {
  return (new Call(*this, context))->reactor();
}

Gateway::Gateway(GatewayOptions options, GatewayHooks hooks, log::Logger log)
    : impl_(std::make_shared<Impl>(std::move(options), std::move(hooks), std::move(log))) {}

Gateway::~Gateway() { stop(std::chrono::milliseconds(0)); }

void Gateway::start() {
  auto& options = impl_->options;
  std::shared_ptr<grpc::ServerCredentials> credentials;
  if (!options.tls_cert_file.empty()) {
    grpc::SslServerCredentialsOptions tls;
    tls.pem_key_cert_pairs.push_back({read_file(options.tls_key_file, "key"), read_file(options.tls_cert_file, "cert")});
    credentials = grpc::SslServerCredentials(tls);
  } else {
    credentials = grpc::InsecureServerCredentials();
  }
  auto address = options.address.find(':') != std::string::npos ? fmt::format("[{}]:{}", options.address, options.port)
                                                                  : fmt::format("{}:{}", options.address, options.port);
  int bound = 0;
  grpc::ServerBuilder builder;
  builder.AddListeningPort(address, credentials, &bound);
  builder.RegisterCallbackGenericService(impl_.get());
  builder.SetMaxReceiveMessageSize(static_cast<int>(std::min<std::size_t>(options.max_message_bytes, INT32_MAX)));
  builder.SetMaxSendMessageSize(-1);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, static_cast<int>(options.max_streams_per_connection));
  builder.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, kStreamWindowBytes);
  // Another process on the port must fail the start, not share it.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  impl_->server = builder.BuildAndStart();
  if (!impl_->server || bound == 0) {
    impl_->server.reset();
    throw std::runtime_error(fmt::format("cannot listen for gRPC on {} (fix: free the port, or set "
                                         "SYNTHORG_GRPC_PORT to another one)",
                                         address));
  }
  impl_->bound_port = static_cast<unsigned short>(bound);
  impl_->stopping = false;
}

void Gateway::stop(std::chrono::milliseconds grace) {
  if (!impl_->server) return;
  impl_->stopping = true;
  // Shutdown stops new calls at once and cancels those still open when the deadline passes.
  impl_->server->Shutdown(std::chrono::system_clock::now() + grace);
  impl_->server->Wait();
  impl_->server.reset();
}

unsigned short Gateway::port() const noexcept { return impl_->bound_port; }

const GatewayStats& Gateway::stats() const noexcept { return impl_->stats; }

void Gateway::forget_endpoint(const std::string& subject) { impl_->forget_endpoint(subject); }

}  // namespace synthorg::flight_gateway

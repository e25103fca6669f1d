#include "gateway.hpp"

#include <pthread.h>

#include <algorithm>
#include <array>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#include <absl/synchronization/mutex.h>
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

namespace {
class Call;

// What a completion-queue event names: the call, and which of its operations completed.
struct Tag {
  Call* call;
  void (Call::*handle)(bool ok);
};
}  // namespace

struct Gateway::Impl {
  Impl(GatewayOptions options, GatewayHooks hooks, log::Logger log)
      : options(std::move(options)), hooks(std::move(hooks)), log(std::move(log)) {}

  // Posts the request for the next call on `queue` (one is always waiting on each queue).
  void request_call(grpc::ServerCompletionQueue* queue);

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
      // The client retries, not the relay: gRPC's retry filter would buffer every message it
      // sends on, for calls the relay must never replay.
      arguments.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
      arguments.SetInt(GRPC_ARG_ENABLE_CHANNELZ, 0);
      arguments.SetInt(GRPC_ARG_MINIMAL_STACK, 1);
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

  // Calls in memory, including the one waiting on each queue; stop() waits for none before it
  // shuts the queues down (an operation started on a shut queue aborts the process).
  void call_created() {
    std::lock_guard lock(calls_mutex);
    ++calls_alive;
  }
  void call_deleted() {
    std::lock_guard lock(calls_mutex);
    if (--calls_alive == 0) calls_gone.notify_all();
  }

  GatewayOptions options;
  GatewayHooks hooks;
  log::Logger log;
  GatewayStats stats;
  grpc::AsyncGenericService service;
  std::unique_ptr<grpc::Server> server;
  std::vector<std::unique_ptr<grpc::ServerCompletionQueue>> queues;
  std::vector<std::thread> threads;
  unsigned short bound_port = 0;
  std::atomic<bool> stopping{false};
  std::mutex channels_mutex;
  std::unordered_map<std::string, std::shared_ptr<grpc::Channel>> channels;
  std::mutex streams_mutex;
  std::unordered_map<std::string, std::size_t> streams;
  std::mutex endpoints_mutex;
  std::unordered_map<std::string, Endpoint> endpoints;
  std::mutex calls_mutex;
  std::condition_variable calls_gone;
  std::size_t calls_alive = 0;
};

namespace {

// One relayed call, driven by the completion queue it arrived on: the client's side (`down_`, a
// generic server stream) and the workload's side (`up_`, a generic client stream on the same
// queue), so that each completion is handled by the thread that polled its I/O, with no hand-off.
// Each direction has one read and one write in flight at most, and at most two of the workload's
// messages wait in between: gRPC's flow control reaches from the client to the workload, and a
// slow reader slows the writer instead of filling memory.
//
// Reactions come from the queue's thread, and the login and acquire hooks answer from others:
// every entry takes the mutex. `outstanding_` counts what will still call back (operations
// started, the done notification, hooks); the last one out deletes the call.
class Call {
 public:
  Call(Gateway::Impl& gateway, grpc::ServerCompletionQueue* queue)
      : gateway_(gateway), queue_(queue), down_(&context_) {
    gateway_.call_created();
  }
  ~Call() { gateway_.call_deleted(); }

  void request() {
    std::lock_guard lock(mutex_);
    context_.AsyncNotifyWhenDone(&done_tag_);  // delivered only once a call is matched
    ++outstanding_;
    gateway_.service.RequestCall(&context_, &down_, queue_, queue_, &new_call_tag_);
  }

  // From the queue's thread.
  static void react(void* raw, bool ok) {
    auto* tag = static_cast<Tag*>(raw);
    Call& call = *tag->call;
    Reaction reaction(call);
    --call.outstanding_;
    (call.*tag->handle)(ok);
  }

 private:
  std::string_view header(std::string_view name) const {
    const auto& metadata = context_.client_metadata();
    auto it = metadata.find(grpc::string_ref(name.data(), name.size()));
    return it == metadata.end() ? std::string_view{} : std::string_view(it->second.data(), it->second.size());
  }

  void new_call(bool ok) {
    if (!ok) return;  // the server is shutting down: no call came
    ++outstanding_;   // the done notification, now that it will come
    if (!gateway_.stopping) gateway_.request_call(queue_);
    started_ = Clock::now();
    ++gateway_.stats.calls_open;
    ++gateway_.stats.calls_total;
    counted_ = true;
    method_ = std::string(flight_method(to_string(context_.method())));
    if (gateway_.hooks.observe) ended_ = gateway_.hooks.observe(method_, header("traceparent"));
    begin();
  }

  void begin() {
    if (method_.empty())
      return finish({grpc::StatusCode::UNIMPLEMENTED,
                     fmt::format("this port serves Arrow Flight (arrow.flight.protocol.FlightService); {} is not "
                                 "one of its methods",
                                 context_.method())});
    if (gateway_.stopping) return finish({grpc::StatusCode::UNAVAILABLE, "the gateway is shutting down; retry"});
    auto authorization = std::string(header("authorization"));
    if (context_.method() == kHandshake) return handshake(authorization);
    if (bearer_token(authorization).empty())
      return finish({grpc::StatusCode::UNAUTHENTICATED,
                     "send 'authorization: Bearer <token>' (from the Handshake with Basic credentials, or from "
                     "POST /api/v1/auth/login)"});
    auto principal = gateway_.hooks.authenticate(authorization);
    if (!principal)
      return finish({grpc::StatusCode::UNAUTHENTICATED,
                     "the bearer token is not valid here (expired, revoked, or signed with another key); sign in again"});
    subject_ = principal->subject;
    if (!gateway_.admit_stream(subject_))
      return finish({grpc::StatusCode::RESOURCE_EXHAUSTED,
                     fmt::format("you have {} calls open at once, the most allowed (max_streams_per_user); wait for "
                                 "one to end",
                                 gateway_.options.max_streams_per_user)});
    subject_admitted_ = true;
    if (auto wait = gateway_.hooks.take_call(subject_); wait > 0)
      return finish(status_of({static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED),
                               fmt::format("too many calls: your rate limit is used up; retry in {} s", wait), wait}));
    if (auto endpoint = gateway_.cached_endpoint(subject_); endpoint && gateway_.hooks.touch(*endpoint, subject_))
      return connect(*endpoint);
    ++outstanding_;
    gateway_.hooks.acquire(subject_, [this](std::variant<Endpoint, Refusal> result) {
      Reaction reaction(*this);
      --outstanding_;
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
      ++outstanding_;
      gateway_.hooks.login(credentials->username, credentials->password, peer_address(context_.peer()),
                           [this](std::variant<std::string, Refusal> result) {
                             Reaction reaction(*this);
                             --outstanding_;
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
    context_.AddInitialMetadata("authorization", authorization);
    context_.AddTrailingMetadata("authorization", authorization);  // some clients read trailers
    read_down();
  }

  void connect(const Endpoint& endpoint) {
    if (finished_) return;
    if (cancelled_) return finish({grpc::StatusCode::CANCELLED, "cancelled"});
    endpoint_ = endpoint;
    if (context_.deadline() != std::chrono::system_clock::time_point::max()) up_context_.set_deadline(context_.deadline());
    for (const auto& [name, value] : context_.client_metadata()) {
      auto key = to_string(name);
      if (forwarded_to_workload(key)) up_context_.AddMetadata(key, to_string(value));
    }
    stub_ = std::make_unique<grpc::GenericStub>(gateway_.channel_for(endpoint));
    up_ = stub_->PrepareCall(&up_context_, context_.method(), queue_);
    up_started_ = true;
    if (single_request(method_)) {
      // Its headers wait for the one message and leave with it and the half-close in one write;
      // a corked start completes nothing. Its reads start once that write is on its way.
      up_context_.set_initial_metadata_corked(true);
      up_->StartCall(&up_start_tag_);
      up_writable_ = true;
    } else {
      // A stream's headers leave at once (the workload may answer before the client writes).
      // The start and the first write share gRPC's send operations: writes wait for its end.
      ++outstanding_;
      up_->StartCall(&up_start_tag_);
      read_up();
    }
    read_down();
  }

  void up_started(bool) {
    up_writable_ = true;
    if (held_down_) {
      bool ok = *held_down_;
      held_down_.reset();
      relay_down(ok);
    }
  }

  // The client's messages to the workload.
  void read_down() {
    ++outstanding_;
    down_.Read(&down_message_, &down_read_tag_);
  }

  void down_read(bool ok) {
    if (handshaking_) {
      if (!ok || finished_) return finish(grpc::Status::OK);
      writing_down_ = true;
      ++outstanding_;
      down_.Write(down_message_, &down_write_tag_);
      return;
    }
    if (!up_started_ || up_finished_ || writes_closed_) return;
    if (!up_writable_) {
      held_down_ = ok;  // relayed once the upstream call has started
      return;
    }
    relay_down(ok);
  }

  void relay_down(bool ok) {
    if (up_finished_ || writes_closed_ || finished_) return;
    ++outstanding_;
    if (!ok) {
      writes_closed_ = true;  // the client half-closed (or went away): so does the upstream
      up_->WritesDone(&up_write_tag_);
      read_up();
    } else if (single_request(method_)) {
      writes_closed_ = true;  // its only message, and the half-close with it: one write
      up_->WriteLast(down_message_, grpc::WriteOptions(), &up_write_tag_);
      read_up();
    } else {
      up_->Write(down_message_, &up_write_tag_);
    }
  }

  void up_written(bool ok) {
    if (ok && !writes_closed_ && !finished_ && !cancelled_) read_down();
  }

  // The workload's answers to the client: a read into a free slot while fewer than two wait.
  void read_up() {
    if (reading_up_ || up_ended_ || waiting_.size() >= 2) return;
    reading_slot_ = free_slot();
    reading_up_ = true;
    ++outstanding_;
    up_->Read(&slots_[reading_slot_], &up_read_tag_);
  }

  int free_slot() const {
    for (int slot = 0; slot < 3; ++slot) {
      bool used = slot == writing_slot_;
      for (int waiting : waiting_) used = used || slot == waiting;
      if (!used) return slot;
    }
    return 0;  // not reached: at most two wait and one is written
  }

  void up_read(bool ok) {
    reading_up_ = false;
    if (!metadata_forwarded_) {
      // The workload's headers, received with its first message (or its trailers-only answer),
      // leave with our first write to the client.
      metadata_forwarded_ = true;
      for (const auto& [name, value] : up_context_.GetServerInitialMetadata()) {
        auto key = to_string(name);
        if (forwarded_to_client(key)) context_.AddInitialMetadata(key, to_string(value));
      }
    }
    if (ok) {
      waiting_.push_back(reading_slot_);
      write_down();
      read_up();
    } else {
      up_ended_ = true;
      ++outstanding_;
      up_->Finish(&upstream_status_, &up_finish_tag_);
    }
  }

  // Sends the next waiting message, or, once the workload's status is in and nothing waits, the
  // status; the last message and the status go in one write. A one-message answer is held until
  // its status is in, so that headers, message and trailers leave together.
  void write_down() {
    if (writing_down_ || finished_ || client_gone_) return;
    bool hold = single_response(method_) && !up_finished_;
    if (waiting_.size() >= 2 || (waiting_.size() == 1 && !hold && !up_finished_)) {
      writing_slot_ = waiting_.front();
      waiting_.pop_front();
      writing_down_ = true;
      ++outstanding_;
      down_.Write(slots_[writing_slot_], &down_write_tag_);
    } else if (up_finished_ && waiting_.size() == 1) {
      writing_slot_ = waiting_.front();
      waiting_.pop_front();
      finish(upstream_status_, &slots_[writing_slot_]);
    } else if (up_finished_ && waiting_.empty()) {
      finish(upstream_status_);
    }
  }

  void down_written(bool ok) {
    writing_down_ = false;
    writing_slot_ = -1;
    if (handshaking_) return ok && !finished_ ? read_down() : finish({grpc::StatusCode::CANCELLED, "the client went away"});
    if (!ok) {
      // The client is gone: so is the workload's work for it. Its status still ends the call.
      client_gone_ = true;
      if (up_started_ && !up_finished_) up_context_.TryCancel();
      if (up_finished_) finish(upstream_status_);
      return;
    }
    write_down();
    read_up();
  }

  void up_finished(bool) {
    up_finished_ = true;
    for (const auto& [name, value] : up_context_.GetServerTrailingMetadata()) {
      auto key = to_string(name);
      if (forwarded_to_client(key)) context_.AddTrailingMetadata(key, to_string(value));
    }
    if (upstream_status_.error_code() == grpc::StatusCode::UNAVAILABLE) {
      // The workload did not answer: look it up again next time (it may have stopped or moved),
      // and have its container looked at, so that a dead one is replaced.
      gateway_.forget_endpoint(subject_);
      if (gateway_.hooks.unreachable) gateway_.hooks.unreachable(endpoint_);
    }
    if (client_gone_) return finish(upstream_status_);
    write_down();
  }

  // The server call is over: finished, or cancelled by the client, its deadline or the stop.
  void done(bool) {
    cancelled_ = context_.IsCancelled();
    if (cancelled_ && up_started_ && !up_finished_) up_context_.TryCancel();
    if (cancelled_ && !finished_) {
      final_code_ = grpc::StatusCode::CANCELLED;
      if (!up_started_ && outstanding_ == 0) finish({grpc::StatusCode::CANCELLED, "cancelled"});
    }
    if (subject_admitted_) gateway_.release_stream(subject_);
    subject_admitted_ = false;
    if (counted_) --gateway_.stats.calls_open;
    counted_ = false;
    if (ended_)
      ended_(CallRecord{method_, static_cast<int>(final_code_),
                        std::chrono::duration<double>(Clock::now() - started_).count(), subject_});
    ended_ = nullptr;
  }

  void finish(const grpc::Status& status, const grpc::ByteBuffer* last = nullptr) {
    if (finished_) return;
    finished_ = true;
    if (final_code_ == grpc::StatusCode::OK) final_code_ = status.error_code();
    ++outstanding_;
    if (last)
      down_.WriteAndFinish(*last, grpc::WriteOptions(), status, &finish_tag_);
    else
      down_.Finish(status, &finish_tag_);
  }

  void finished(bool) {}

  // Every entry into the call (each reaction, each hook's answer) holds one: the lock, and a
  // depth count, so that the outermost one deletes the call once nothing will call back.
  struct Reaction {
    explicit Reaction(Call& call) : call(call), lock(call.mutex_) { ++call.depth_; }
    ~Reaction() {
      bool over = --call.depth_ == 0 && call.outstanding_ == 0;
      lock.unlock();
      if (over) delete &call;
    }
    Call& call;
    std::unique_lock<std::recursive_mutex> lock;
  };

  Gateway::Impl& gateway_;
  grpc::ServerCompletionQueue* queue_;
  grpc::GenericServerContext context_;
  grpc::GenericServerAsyncReaderWriter down_;
  grpc::ClientContext up_context_;
  std::unique_ptr<grpc::GenericStub> stub_;
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> up_;
  std::recursive_mutex mutex_;
  Clock::time_point started_;
  std::string method_, subject_;
  std::function<void(const CallRecord&)> ended_;
  Endpoint endpoint_;
  grpc::ByteBuffer down_message_;             // the client's one message in flight
  std::array<grpc::ByteBuffer, 3> slots_;     // the workload's: two waiting, one being written
  std::deque<int> waiting_;
  int reading_slot_ = -1, writing_slot_ = -1;
  grpc::Status upstream_status_;
  grpc::StatusCode final_code_ = grpc::StatusCode::OK;
  int outstanding_ = 0, depth_ = 0;
  bool counted_ = false, handshaking_ = false, subject_admitted_ = false, up_started_ = false;
  bool writing_down_ = false, reading_up_ = false, writes_closed_ = false;
  bool up_ended_ = false, up_finished_ = false, metadata_forwarded_ = false, client_gone_ = false;
  bool cancelled_ = false, finished_ = false, up_writable_ = false;
  std::optional<bool> held_down_;  // a read from the client (its `ok`) waiting for the upstream's start
  Tag new_call_tag_{this, &Call::new_call}, done_tag_{this, &Call::done}, finish_tag_{this, &Call::finished};
  Tag down_read_tag_{this, &Call::down_read}, down_write_tag_{this, &Call::down_written};
  Tag up_start_tag_{this, &Call::up_started}, up_read_tag_{this, &Call::up_read};
  Tag up_write_tag_{this, &Call::up_written}, up_finish_tag_{this, &Call::up_finished};
};

}  // namespace

void Gateway::Impl::request_call(grpc::ServerCompletionQueue* queue) { (new Call(*this, queue))->request(); }

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
  builder.RegisterAsyncGenericService(&impl_->service);
  // `threads` queues, a thread each: each call lives on one queue, and its thread handles every
  // completion of that call, the client's side and the workload's. gRPC's poller is shared by
  // the queues, so with more than one, I/O read on one thread often completes on another (a
  // wake-up each time): one is the fastest for a call, more serve more calls at once.
  for (std::size_t i = 0; i < std::max<std::size_t>(options.threads, 1); ++i)
    impl_->queues.push_back(builder.AddCompletionQueue());
  // Debian's abseil checks every Mutex acquisition for lock-order cycles (a debugging aid that
  // costs gRPC a few percent of its CPU); gRPC is the only user of absl's Mutex in this process.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  builder.SetMaxReceiveMessageSize(static_cast<int>(std::min<std::size_t>(options.max_message_bytes, INT32_MAX)));
  builder.SetMaxSendMessageSize(-1);
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, static_cast<int>(options.max_streams_per_connection));
  builder.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, kStreamWindowBytes);
  // Another process on the port must fail the start, not share it.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddChannelArgument(GRPC_ARG_ENABLE_CHANNELZ, 0);
  impl_->server = builder.BuildAndStart();
  if (!impl_->server || bound == 0) {
    impl_->server.reset();
    for (auto& queue : impl_->queues) {
      queue->Shutdown();
      void* tag;
      bool ok;
      while (queue->Next(&tag, &ok)) {
      }
    }
    impl_->queues.clear();
    throw std::runtime_error(fmt::format("cannot listen for gRPC on {} (fix: free the port, or set "
                                         "SYNTHORG_GRPC_PORT to another one)",
                                         address));
  }
  impl_->bound_port = static_cast<unsigned short>(bound);
  impl_->stopping = false;
  for (auto& queue : impl_->queues) {
    impl_->request_call(queue.get());
    impl_->threads.emplace_back([queue = queue.get()] {
      void* tag;
      bool ok;
      while (queue->Next(&tag, &ok)) Call::react(tag, ok);
    });
    pthread_setname_np(impl_->threads.back().native_handle(),
                       ("synthorg-grpc-" + std::to_string(impl_->threads.size() - 1)).c_str());
  }
}

void Gateway::stop(std::chrono::milliseconds grace) {
  if (!impl_->server) return;
  impl_->stopping = true;
  // Shutdown stops new calls at once and cancels those still open when the deadline passes; the
  // queues' threads go on handling what that completes, until every call is gone. Only then may
  // the queues shut down: an operation started on a shut queue aborts the process.
  impl_->server->Shutdown(std::chrono::system_clock::now() + grace);
  {
    std::unique_lock lock(impl_->calls_mutex);
    if (!impl_->calls_gone.wait_for(lock, grace + std::chrono::seconds(10), [&] { return impl_->calls_alive == 0; }))
      impl_->log.error("gRPC calls still open after the stop's grace; shutting down regardless",
                       {{"calls", impl_->calls_alive}});
  }
  for (auto& queue : impl_->queues) queue->Shutdown();
  for (auto& thread : impl_->threads) thread.join();
  impl_->threads.clear();
  impl_->queues.clear();
  impl_->server.reset();
}

unsigned short Gateway::port() const noexcept { return impl_->bound_port; }

const GatewayStats& Gateway::stats() const noexcept { return impl_->stats; }

void Gateway::forget_endpoint(const std::string& subject) { impl_->forget_endpoint(subject); }

}  // namespace synthorg::flight_gateway

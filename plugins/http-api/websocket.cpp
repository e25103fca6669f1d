#include "websocket.hpp"

#include <algorithm>
#include <deque>

#include <boost/asio/compose.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <fmt/chrono.h>
#include <fmt/format.h>

namespace synthorg::http_api {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

// One complete server-to-client WebSocket message: a single unmasked text frame (header and
// payload), built once and shared by every client it goes to.
struct Frame {
  std::string bytes;
  Clock::time_point queued;  // when it was built: how long it has waited, for the slow-client test
};
using FramePtr = std::shared_ptr<const Frame>;

FramePtr text_frame(std::string_view payload, Clock::time_point now) {
  auto frame = std::make_shared<Frame>();
  frame->queued = now;
  auto& bytes = frame->bytes;
  auto size = static_cast<std::uint64_t>(payload.size());
  bytes.reserve(payload.size() + 10);
  bytes.push_back(static_cast<char>(0x81));  // FIN, opcode 1 (text); RSV bits clear: no extension
  if (size < 126) {
    bytes.push_back(static_cast<char>(size));  // MASK bit clear: servers never mask
  } else if (size <= 0xFFFF) {
    bytes.push_back(static_cast<char>(126));
    for (int shift = 8; shift >= 0; shift -= 8) bytes.push_back(static_cast<char>((size >> shift) & 0xFF));
  } else {
    bytes.push_back(static_cast<char>(127));
    for (int shift = 56; shift >= 0; shift -= 8) bytes.push_back(static_cast<char>((size >> shift) & 0xFF));
  }
  bytes.append(payload);
  return frame;
}

std::string_view channel_of(std::string_view topic) { return topic.substr(0, topic.find('.')); }

std::string timestamp(std::chrono::system_clock::time_point time) {
  auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(time.time_since_epoch()).count() % 1000;
  return fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:03}Z", fmt::gmtime(std::chrono::system_clock::to_time_t(time)), millis);
}

FramePtr control(const json& body) { return text_frame(body.dump(), Clock::now()); }

bool valid_channel(const std::string& channel) {
  return !channel.empty() && channel.size() <= 64 && std::all_of(channel.begin(), channel.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

}  // namespace

std::string_view channel_role(std::string_view channel) noexcept {
  // Who changed what in the running system is for those who run it.
  if (channel == "settings" || channel == "service" || channel == "bus") return "admin";
  // Plugin failures and backups (with their paths and errors) are for those who operate it.
  if (channel == "plugin" || channel == "backup") return "operator";
  return "viewer";
}

// The layer between Beast's websocket::stream and the TCP stream; every byte the server sends
// passes through it. It owns the right to write: one writer at a time, each writing its bytes in
// full before the next starts. Two kinds of writers take turns:
// - Beast's: the handshake response, then only control frames (pong from within a read, the
//   keep-alive ping from its timer, close from async_close or from a read that fails the
//   connection), each one whole frame in one asio::async_write, which here is one
//   async_write_some written in full. Beast itself serialises these (at most one at a time).
// - The hub's (write_frames): complete, pre-framed data messages, after the handshake only.
// So frames never interleave, whatever Beast writes when. This is valid because Beast sends no
// data frames on this stream (wr_cont stays false, so a control frame may go between any two
// of our messages), permessage-deflate is off (set so in WsClient::start; raw frames carry no
// RSV1), and a server never masks. A Beast write waiting for the socket goes before a waiting
// hub write. Once Beast has written a close frame, or tears the connection down, the hub writes
// nothing more. Everything here runs on the connection's strand.
class FrameStream {
 public:
  using executor_type = beast::tcp_stream::executor_type;

  explicit FrameStream(beast::tcp_stream stream)
      : stream_(std::move(stream)), beast_turn_(stream_.get_executor()), hub_turn_(stream_.get_executor()) {
    beast_turn_.expires_at(asio::steady_timer::time_point::max());
    hub_turn_.expires_at(asio::steady_timer::time_point::max());
  }

  executor_type get_executor() noexcept { return stream_.get_executor(); }
  beast::tcp_stream& next_layer() noexcept { return stream_; }
  const beast::tcp_stream& next_layer() const noexcept { return stream_; }

  template <class MutableBuffers, class ReadHandler>
  auto async_read_some(const MutableBuffers& buffers, ReadHandler&& handler) {
    return stream_.async_read_some(buffers, std::forward<ReadHandler>(handler));
  }

  // Beast's writes: wait for the socket, write everything, give the socket back.
  template <class ConstBuffers, class WriteHandler>
  auto async_write_some(const ConstBuffers& buffers, WriteHandler&& handler) {
    return asio::async_compose<WriteHandler, void(beast::error_code, std::size_t)>(BeastWrite<ConstBuffers>{*this, buffers},
                                                                                  handler, stream_);
  }

  // The handshake is over: Beast writes control frames only from now on.
  void opened() noexcept { open_ = true; }

  // The hub's writes, on the stream's strand: `bytes` (whole frames) in full, then
  // handler(error_code, bytes written); operation_aborted once the connection is closing.
  template <class Handler>
  void write_frames(asio::const_buffer bytes, Handler handler) {
    if (!busy_) {
      busy_ = true;
      return write_granted(bytes, std::move(handler));
    }
    hub_waiting_ = true;
    hub_turn_.async_wait([this, bytes, handler = std::move(handler)](beast::error_code) mutable {
      write_granted(bytes, std::move(handler));  // handed over by release()
    });
  }

 private:
  template <class ConstBuffers>
  struct BeastWrite {
    FrameStream& layer;
    ConstBuffers buffers;
    int state = 0;

    template <class Self>
    void operator()(Self& self, beast::error_code ec = {}, std::size_t written = 0) {
      if (state == 0) {
        state = 1;
        if (layer.busy_) {
          layer.beast_waiting_ = true;
          return layer.beast_turn_.async_wait(std::move(self));  // handed over by release()
        }
        layer.busy_ = true;
      }
      if (state == 1) {
        state = 2;
        if (layer.open_) {
          unsigned char first = 0;
          asio::buffer_copy(asio::buffer(&first, 1), buffers);
          if (first == 0x88) layer.closed_ = true;  // FIN + close: nothing may follow
        }
        return asio::async_write(layer.stream_, buffers, std::move(self));
      }
      layer.release();
      self.complete(ec, written);
    }
  };

  struct Teardown {
    FrameStream& layer;
    beast::role_type role;
    int state = 0;

    template <class Self>
    void operator()(Self& self, beast::error_code ec = {}) {
      if (state == 0) {
        state = 1;
        layer.closed_ = true;
        if (layer.busy_) {
          layer.beast_waiting_ = true;
          return layer.beast_turn_.async_wait(std::move(self));
        }
        layer.busy_ = true;
      }
      if (state == 1) {
        state = 2;
        using beast::websocket::async_teardown;
        return async_teardown(role, layer.stream_, std::move(self));
      }
      layer.release();
      self.complete(ec);
    }
  };

  template <class TeardownHandler>
  friend void async_teardown(beast::role_type role, FrameStream& layer, TeardownHandler&& handler) {
    asio::async_compose<TeardownHandler, void(beast::error_code)>(Teardown{layer, role}, handler, layer.stream_);
  }

  template <class Handler>
  void write_granted(asio::const_buffer bytes, Handler handler) {
    if (closed_) {
      release();
      return asio::post(stream_.get_executor(),
                        [handler = std::move(handler)]() mutable { handler(asio::error::operation_aborted, 0); });
    }
    asio::async_write(stream_, bytes, [this, handler = std::move(handler)](beast::error_code ec, std::size_t n) mutable {
      release();
      handler(ec, n);
    });
  }

  // Hands the socket to the next writer, Beast's first, or frees it.
  void release() {
    if (beast_waiting_) {
      beast_waiting_ = false;
      beast_turn_.cancel();
    } else if (hub_waiting_) {
      hub_waiting_ = false;
      hub_turn_.cancel();
    } else {
      busy_ = false;
    }
  }

  beast::tcp_stream stream_;
  asio::steady_timer beast_turn_, hub_turn_;  // never expire: cancel() is the wake-up
  bool busy_ = false, beast_waiting_ = false, hub_waiting_ = false;
  bool open_ = false, closed_ = false;
};

class WsClient : public std::enable_shared_from_this<WsClient> {
 public:
  WsClient(beast::tcp_stream stream, Principal principal, std::shared_ptr<WebSocketHub> hub, std::function<void()> closed)
      : ws_(std::move(stream)), principal_(std::move(principal)), hub_(std::move(hub)), on_closed_(std::move(closed)) {}
  ~WsClient() {
    beast::error_code ignored;
    beast::get_lowest_layer(ws_).socket().close(ignored);
    if (on_closed_) on_closed_();
  }

  void start(beast::http::request<beast::http::string_body> request) {
    // A client that sends nothing, not even a pong, for idle_timeout is gone (a dead peer, a
    // half-open connection): Beast pings it at half the time and drops it at the end.
    websocket::stream_base::timeout timeout{};
    timeout.handshake_timeout = std::chrono::seconds(30);
    timeout.idle_timeout = hub_->limits_.idle_timeout;
    timeout.keep_alive_pings = true;
    ws_.set_option(timeout);
    ws_.read_message_max(hub_->limits_.max_message_bytes);
    ws_.set_option(websocket::stream_base::decorator(
        [](websocket::response_type& response) { response.set(beast::http::field::server, "synthorg"); }));
    // Raw frames (FrameStream) need permessage-deflate off, Beast's default: said here so that
    // it stays so (no RSV1, no compression state to keep in step).
    websocket::permessage_deflate deflate;
    deflate.server_enable = deflate.client_enable = false;
    ws_.set_option(deflate);
    beast::get_lowest_layer(ws_).expires_never();
    ws_.async_accept(request, [self = shared_from_this()](beast::error_code ec) {
      if (ec) return self->finish();
      self->ws_.next_layer().opened();
      bool start = false;
      {
        std::lock_guard lock(self->mutex_);
        self->open_ = true;
        start = !self->queue_.empty() && !self->writing_ && !self->closing_;
        if (start) self->writing_ = true;
      }
      if (start) self->flush();
      self->read();
    });
  }

  // From the hub's deliver(), with the hub's mutex held.
  void offer(const FramePtr& frame) { send(frame, true); }

  void close(websocket::close_code code, std::string reason) {
    asio::post(ws_.get_executor(), [self = shared_from_this(), code, reason] {
      {
        std::lock_guard lock(self->mutex_);
        if (self->closing_) return;
        self->closing_ = true;
      }
      self->ws_.async_close(websocket::close_reason(code, reason), [self](beast::error_code) { self->finish(); });
    });
  }

 private:
  friend class WebSocketHub;

  void send(FramePtr frame, bool droppable) {
    const auto& limits = hub_->limits_;
    bool start = false, drop_now = false;
    {
      std::lock_guard lock(mutex_);
      if (dropped_ || closing_) return;
      // Behind by more than max_lag, or by more than max_queued_bytes: too slow. One frame alone
      // is always accepted, however large.
      if (droppable && !queue_.empty() &&
          (frame->queued - queue_.front()->queued > limits.max_lag ||
           queued_bytes_ + frame->bytes.size() > limits.max_queued_bytes)) {
        dropped_ = drop_now = true;
        queue_.clear();
        queued_bytes_ = 0;
        ++hub_->stats_.slow_clients_dropped;
      } else {
        queued_bytes_ += frame->bytes.size();
        queue_.push_back(std::move(frame));
        start = open_ && !writing_;
        if (start) writing_ = true;
      }
    }
    if (drop_now) return close(websocket::close_code::policy_error, "too slow: events were not read in time");
    if (start) asio::post(ws_.get_executor(), [self = shared_from_this()] { self->flush(); });
  }

  // On the strand, with writing_ set: everything queued (up to write_batch_bytes) in one write.
  void flush() {
    std::size_t bytes = 0;
    {
      std::lock_guard lock(mutex_);
      if (closing_ || queue_.empty()) {
        writing_ = false;
        if (batch_.capacity() > 16 * 1024) std::string().swap(batch_);  // idle connections stay small
        return;
      }
      while (!queue_.empty() && (taken_.empty() || bytes + queue_.front()->bytes.size() <= hub_->limits_.write_batch_bytes)) {
        bytes += queue_.front()->bytes.size();
        taken_.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      queued_bytes_ -= bytes;
    }
    asio::const_buffer out;
    if (taken_.size() == 1) {
      out = asio::buffer(taken_.front()->bytes);  // kept alive by taken_ until written
    } else {
      batch_.clear();
      batch_.reserve(bytes);
      for (const auto& frame : taken_) batch_ += frame->bytes;
      out = asio::buffer(batch_);
    }
    ws_.next_layer().write_frames(out, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      auto count = self->taken_.size();
      self->taken_.clear();
      if (ec) return self->finish();
      self->hub_->stats_.frames_sent += count;
      self->flush();
    });
  }

  void read() {
    ws_.async_read(buffer_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      // On an oversized message Beast itself closes with 1009; either way this client is done.
      if (ec) return self->finish();
      self->handle(beast::buffers_to_string(self->buffer_.data()));
      self->buffer_.consume(self->buffer_.size());
      self->read();
    });
  }

  void handle(const std::string& text) {
    auto message = parse_client_json(text);
    if (message.is_discarded() || !message.is_object() || !message.contains("action") || !message["action"].is_string())
      return send(control({{"type", "error"}, {"code", "invalid_message"},
                           {"detail", "send a JSON object with an action: subscribe, unsubscribe or ping"}}),
                  false);
    auto action = message["action"].get<std::string>();
    if (action == "ping") return send(control({{"type", "pong"}}), false);
    if (action != "subscribe" && action != "unsubscribe")
      return send(control({{"type", "error"}, {"code", "unknown_action"},
                           {"detail", "unknown action '" + action + "'; use subscribe, unsubscribe or ping"}}),
                  false);
    const auto& channels = message.value("channels", json());
    if (!channels.is_array() || channels.empty() ||
        !std::all_of(channels.begin(), channels.end(), [](const json& c) { return c.is_string() && valid_channel(c); }))
      return send(control({{"type", "error"}, {"code", "invalid_channels"},
                           {"detail", "channels must be a non-empty list of names like \"workloads\""}}),
                  false);
    json accepted = json::array(), denied = json::array();
    // Under the hub's lock, reply included: no event of a channel just joined is queued before
    // the reply, none of a channel just left after it.
    std::lock_guard lock(hub_->mutex_);
    for (const auto& item : channels) {
      auto channel = item.get<std::string>();
      if (action == "unsubscribe") {
        hub_->remove_subscriber(this, channel);
        accepted.push_back(channel);
      } else if (role_at_least(principal_.role, channel_role(channel))) {
        hub_->add_subscriber(this, channel);
        accepted.push_back(channel);
      } else {
        denied.push_back(channel);
      }
    }
    json reply = {{"type", action == "subscribe" ? "subscribed" : "unsubscribed"}, {"channels", accepted}};
    if (!denied.empty()) reply["denied"] = denied;
    send(control(reply), false);
  }

  void finish() {
    {
      std::lock_guard lock(mutex_);
      closing_ = true;
      queue_.clear();
      queued_bytes_ = 0;
    }
    hub_->forget(this);
  }

  websocket::stream<FrameStream> ws_;
  Principal principal_;
  std::shared_ptr<WebSocketHub> hub_;
  std::function<void()> on_closed_;  // the server stops counting the connection
  beast::flat_buffer buffer_;
  // The channels followed and this client's index in each subscriber list (the hub's mutex).
  std::vector<std::pair<std::string, std::size_t>> channels_;
  // Frames waiting (mutex_); those being written and the bytes of a batch (the strand).
  std::mutex mutex_;
  std::deque<FramePtr> queue_;
  std::size_t queued_bytes_ = 0;
  bool open_ = false, writing_ = false, dropped_ = false, closing_ = false;
  std::vector<FramePtr> taken_;
  std::string batch_;
};

WebSocketHub::WebSocketHub(EventBus& bus, WebSocketLimits limits, log::Logger log)
    : bus_(bus), limits_(limits), log_(std::move(log)) {}

void WebSocketHub::start() {
  stopped_ = false;
  std::weak_ptr<WebSocketHub> self = weak_from_this();
  subscription_ = bus_.subscribe("*", [self](const Event& event) {
    if (auto hub = self.lock()) hub->deliver(event);
  });
}

void WebSocketHub::stop() {
  stopped_ = true;
  subscription_.reset();
  std::vector<std::shared_ptr<WsClient>> clients;
  {
    std::lock_guard lock(mutex_);
    clients.reserve(clients_.size());
    for (const auto& [_, client] : clients_) clients.push_back(client);
  }
  for (const auto& client : clients) client->close(websocket::close_code::going_away, "server stopping");
}

bool WebSocketHub::reserve(const std::string& subject) {
  std::lock_guard lock(mutex_);
  auto& places = per_user_[subject];  // max_per_user is at least 1: a full entry is never empty
  if (places >= limits_.max_per_user) return false;
  ++places;
  return true;
}

void WebSocketHub::accept(beast::tcp_stream stream, beast::http::request<beast::http::string_body> request,
                          Principal principal, std::function<void()> closed) {
  auto client = std::make_shared<WsClient>(std::move(stream), std::move(principal), shared_from_this(), std::move(closed));
  {
    std::lock_guard lock(mutex_);
    if (stopped_) {
      release_place(client->principal_.subject);
      return;
    }
    clients_.emplace(client.get(), client);
    ++stats_.clients;
  }
  client->start(std::move(request));
}

void WebSocketHub::release_place(const std::string& subject) {
  auto it = per_user_.find(subject);
  if (it != per_user_.end() && --it->second == 0) per_user_.erase(it);
}

void WebSocketHub::deliver(const Event& event) {
  std::string channel(channel_of(event.topic));
  {
    std::lock_guard lock(mutex_);
    if (!subscribers_.contains(channel)) return;  // lists are removed when they empty
  }
  auto frame = text_frame(json{{"version", 1},
                               {"event_type", event.topic},
                               {"channel", channel},
                               {"timestamp", timestamp(event.time)},
                               {"payload", event.payload}}
                              .dump(-1, ' ', false, json::error_handler_t::replace),
                          Clock::now());
  // An event about one user (a string `user_id` in its payload: their workload, their run) is
  // theirs: it reaches that user and admins, never the other subscribers of its channel.
  std::string user;
  if (event.payload.is_object())
    if (auto found = event.payload.find("user_id"); found != event.payload.end() && found->is_string())
      user = found->get<std::string>();
  std::lock_guard lock(mutex_);
  auto it = subscribers_.find(channel);
  if (it == subscribers_.end()) return;
  for (auto* client : it->second)
    if (user.empty() || client->principal_.subject == user || role_at_least(client->principal_.role, "admin"))
      client->offer(frame);
}

void WebSocketHub::add_subscriber(WsClient* client, const std::string& channel) {
  if (!clients_.contains(client)) return;  // already forgotten: its connection is over
  for (const auto& [name, _] : client->channels_)
    if (name == channel) return;
  auto& list = subscribers_[channel];
  client->channels_.emplace_back(channel, list.size());
  list.push_back(client);
}

void WebSocketHub::remove_subscriber(WsClient* client, const std::string& channel) {
  auto mine = std::find_if(client->channels_.begin(), client->channels_.end(),
                           [&](const auto& entry) { return entry.first == channel; });
  if (mine == client->channels_.end()) return;
  auto it = subscribers_.find(channel);
  auto& list = it->second;
  auto slot = mine->second;
  auto* moved = list.back();
  list[slot] = moved;
  list.pop_back();
  if (moved != client)
    for (auto& [name, index] : moved->channels_)
      if (name == channel) {
        index = slot;
        break;
      }
  if (list.empty()) subscribers_.erase(it);
  client->channels_.erase(mine);
}

void WebSocketHub::forget(WsClient* client) {
  std::shared_ptr<WsClient> last;  // released after the lock
  std::lock_guard lock(mutex_);
  auto it = clients_.find(client);
  if (it == clients_.end()) return;
  while (!client->channels_.empty()) {
    auto channel = client->channels_.back().first;
    remove_subscriber(client, channel);
  }
  release_place(client->principal_.subject);
  last = std::move(it->second);
  clients_.erase(it);
  --stats_.clients;
}

}  // namespace synthorg::http_api

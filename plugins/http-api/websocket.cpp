#include "websocket.hpp"

#include <deque>

#include <boost/asio/dispatch.hpp>
#include <boost/asio/post.hpp>
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
using Frame = std::shared_ptr<const std::string>;

std::string_view channel_of(std::string_view topic) { return topic.substr(0, topic.find('.')); }

std::string timestamp(std::chrono::system_clock::time_point time) {
  auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(time.time_since_epoch()).count() % 1000;
  return fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:03}Z", fmt::gmtime(std::chrono::system_clock::to_time_t(time)), millis);
}

Frame control(json body) { return std::make_shared<const std::string>(body.dump()); }

bool valid_channel(const std::string& channel) {
  return !channel.empty() && channel.size() <= 64 && std::all_of(channel.begin(), channel.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

}  // namespace

std::string_view channel_role(std::string_view channel) noexcept {
  // Who changed what in the running system is for those who run it.
  if (channel == "settings" || channel == "service" || channel == "bus") return "admin";
  if (channel == "plugin") return "operator";
  return "viewer";
}

class WsClient : public std::enable_shared_from_this<WsClient> {
 public:
  WsClient(beast::tcp_stream stream, Principal principal, std::shared_ptr<WebSocketHub> hub)
      : ws_(std::move(stream)), principal_(std::move(principal)), hub_(std::move(hub)) {}

  void start(beast::http::request<beast::http::string_body> request) {
    ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
    ws_.read_message_max(hub_->limits_.max_message_bytes);
    ws_.set_option(websocket::stream_base::decorator(
        [](websocket::response_type& response) { response.set(beast::http::field::server, "synthorg"); }));
    beast::get_lowest_layer(ws_).expires_never();
    ws_.async_accept(request, [self = shared_from_this()](beast::error_code ec) {
      if (ec) return self->finish();
      self->read();
    });
  }

  // From the bus thread: queue a frame when this client follows the channel.
  void offer(std::string_view channel, const Frame& frame) {
    {
      std::lock_guard lock(mutex_);
      if (!channels_.contains(std::string(channel))) return;
    }
    send(frame, true);
  }

  void close(websocket::close_code code, std::string reason) {
    asio::dispatch(ws_.get_executor(), [self = shared_from_this(), code, reason] {
      {
        std::lock_guard lock(self->mutex_);
        if (self->closing_) return;
        self->closing_ = true;
      }
      self->ws_.async_close(websocket::close_reason(code, reason), [self](beast::error_code) { self->finish(); });
    });
  }

 private:
  void send(const Frame& frame, bool droppable) {
    bool start = false, drop_now = false;
    {
      std::lock_guard lock(mutex_);
      if (dropped_ || closing_) return;
      if (droppable && queue_.size() >= hub_->limits_.queue_frames) {
        dropped_ = drop_now = true;
        ++hub_->stats_.slow_clients_dropped;
      } else {
        queue_.push_back(frame);
        start = !writing_;
        writing_ = true;
      }
    }
    if (drop_now) return close(websocket::close_code::policy_error, "too slow: events were not read in time");
    if (start) asio::post(ws_.get_executor(), [self = shared_from_this()] { self->write_next(); });
  }

  void write_next() {
    Frame frame;
    {
      std::lock_guard lock(mutex_);
      if (queue_.empty() || closing_) {
        writing_ = false;
        return;
      }
      frame = queue_.front();
      queue_.pop_front();
    }
    ws_.text(true);
    ws_.async_write(asio::buffer(*frame), [self = shared_from_this(), frame](beast::error_code ec, std::size_t) {
      if (ec) return self->finish();
      ++self->hub_->stats_.frames_sent;
      self->write_next();
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
    auto message = json::parse(text, nullptr, false);
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
    {
      std::lock_guard lock(mutex_);
      for (const auto& item : channels) {
        auto channel = item.get<std::string>();
        if (action == "unsubscribe") {
          channels_.erase(channel);
          accepted.push_back(channel);
        } else if (role_at_least(principal_.role, channel_role(channel))) {
          channels_.insert(channel);
          accepted.push_back(channel);
        } else {
          denied.push_back(channel);
        }
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
    }
    hub_->forget(this);
  }

  websocket::stream<beast::tcp_stream> ws_;
  Principal principal_;
  std::shared_ptr<WebSocketHub> hub_;
  beast::flat_buffer buffer_;
  std::mutex mutex_;
  std::set<std::string> channels_;
  std::deque<Frame> queue_;
  bool writing_ = false, dropped_ = false, closing_ = false;
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
  std::set<std::shared_ptr<WsClient>> clients;
  {
    std::lock_guard lock(mutex_);
    clients = clients_;
  }
  for (const auto& client : clients) client->close(websocket::close_code::going_away, "server stopping");
}

void WebSocketHub::accept(beast::tcp_stream stream, beast::http::request<beast::http::string_body> request,
                          Principal principal) {
  auto client = std::make_shared<WsClient>(std::move(stream), std::move(principal), shared_from_this());
  {
    std::lock_guard lock(mutex_);
    if (stopped_) return;
    clients_.insert(client);
    ++stats_.clients;
  }
  client->start(std::move(request));
}

void WebSocketHub::deliver(const Event& event) {
  auto channel = channel_of(event.topic);
  Frame frame;
  std::lock_guard lock(mutex_);
  if (clients_.empty()) return;
  frame = std::make_shared<const std::string>(json{{"version", 1},
                                                   {"event_type", event.topic},
                                                   {"channel", channel},
                                                   {"timestamp", timestamp(event.time)},
                                                   {"payload", event.payload}}
                                                  .dump(-1, ' ', false, json::error_handler_t::replace));
  for (const auto& client : clients_) client->offer(channel, frame);
}

void WebSocketHub::forget(WsClient* client) {
  std::shared_ptr<WsClient> last;
  std::lock_guard lock(mutex_);
  for (auto it = clients_.begin(); it != clients_.end(); ++it)
    if (it->get() == client) {
      last = *it;
      clients_.erase(it);
      --stats_.clients;
      break;
    }
}

}  // namespace synthorg::http_api

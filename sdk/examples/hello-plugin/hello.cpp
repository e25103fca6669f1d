// hello: the smallest complete plugin. It provides a service (example.Greeter/1), reads its
// settings from a config map, publishes events on a timer from the kernel's io_context, and
// answers "example.ping" events. Everything it registers or subscribes is released in stop().
#include <memory>
#include <string>

#include <boost/asio/steady_timer.hpp>

#include "synthorg/plugin.hpp"

namespace example {

class Greeter {
 public:
  static constexpr std::string_view service_id = "example.Greeter/1";
  virtual ~Greeter() = default;
  virtual std::string greet(const std::string& who) const = 0;
};

namespace {

class FixedGreeter final : public Greeter {
 public:
  explicit FixedGreeter(std::string greeting) : greeting_(std::move(greeting)) {}
  std::string greet(const std::string& who) const override { return greeting_ + ", " + who + "!"; }

 private:
  std::string greeting_;
};

class HelloPlugin final : public synthorg::Plugin {
 public:
  static synthorg::PluginManifest manifest() {
    return {.name = "hello",
            .version = "1.0.0",
            .description = "Example plugin: greets, and publishes a heartbeat event",
            .provides = {"example.Greeter/1"},
            .needs = {{"synthorg.Executor/1", true}},
            .config = synthorg::ConfigMap{}
                          .string("greeting", "Hello", "The greeting to use")
                          .duration("interval", "10s", "Time between example.heartbeat events")
                          .range(10, 3'600'000)};
  }

  explicit HelloPlugin(synthorg::PluginContext& context) : context_(context) {}

  void configure(const nlohmann::json& config) override {
    greeting_ = config.at("greeting").get<std::string>();
    interval_ = std::chrono::milliseconds(config.at("interval").get<std::int64_t>());  // durations arrive in ms
  }

  void start() override {
    greeter_ = context_.registry().provide<Greeter>(std::make_shared<FixedGreeter>(greeting_));
    ping_ = context_.bus().subscribe("example.ping", [this](const synthorg::Event& event) {
      context_.bus().publish("example.pong", {{"reply_to", event.id}, {"text", greeting_}});
    });
    timer_ = std::make_shared<boost::asio::steady_timer>(context_.executor().io_context());
    schedule(timer_);
    context_.log().info("Hello started", {{"greeting", greeting_}});
  }

  void stop() override {
    timer_->cancel();
    timer_.reset();
    ping_.reset();
    greeter_.reset();
  }

 private:
  // The timer is shared with its handler so that a tick racing stop() never touches freed state.
  void schedule(std::shared_ptr<boost::asio::steady_timer> timer) {
    timer->expires_after(interval_);
    timer->async_wait([this, timer](const boost::system::error_code& error) {
      if (error) return;  // cancelled by stop()
      context_.bus().publish("example.heartbeat", {{"plugin", "hello"}});
      schedule(timer);
    });
  }

  synthorg::PluginContext& context_;
  std::string greeting_;
  std::chrono::milliseconds interval_{10'000};
  synthorg::Registration greeter_;
  synthorg::Subscription ping_;
  std::shared_ptr<boost::asio::steady_timer> timer_;
};

}  // namespace
}  // namespace example

SYNTHORG_PLUGIN(example::HelloPlugin)

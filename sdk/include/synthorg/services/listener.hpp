// Listener: a port that takes work from outside (http-api, web, flight-gateway; any plugin may
// provide one or several). On shutdown the kernel drains every listener first — no new
// connections or calls, those in flight finish — and only then stops the plugins in reverse
// dependency order, so a request in flight still has the workloads, orchestrator and store it
// was using until it is answered.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <string_view>

namespace synthorg {

class Listener {
 public:
  static constexpr std::string_view service_id = "synthorg.Listener/1";
  virtual ~Listener() = default;

  virtual std::string name() const = 0;  // "http-api", "web", "flight-gateway"
  // Stops taking new work and waits up to `grace` (or the listener's own drain timeout, when
  // shorter) for the work in flight to finish, then closes what is left. Called once, from a
  // kernel thread, before any plugin stops; the plugin's stop() comes later and finds it drained.
  virtual void drain(std::chrono::milliseconds grace) = 0;
};

// A Listener whose drain is one function: what a plugin with one server registers.
class FunctionListener final : public Listener {
 public:
  FunctionListener(std::string name, std::function<void(std::chrono::milliseconds grace)> drain)
      : name_(std::move(name)), drain_(std::move(drain)) {}
  std::string name() const override { return name_; }
  void drain(std::chrono::milliseconds grace) override { drain_(grace); }

 private:
  std::string name_;
  std::function<void(std::chrono::milliseconds)> drain_;
};

}  // namespace synthorg

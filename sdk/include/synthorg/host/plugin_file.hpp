// Host side of the plugin ABI: loading a plugin file, checking its descriptor before any C++
// crosses, and driving one instance through its lifecycle. Used by the kernel and the
// conformance kit; plugins never include this.
#pragma once

#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

#include "synthorg/abi.h"
#include "synthorg/plugin.hpp"

namespace synthorg::host {

// A file that is not a usable plugin. what() is one line naming the file and the reason.
class PluginRefused : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A plugin call that failed. what() names the plugin, the call and the plugin's own reason.
class PluginFailed : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A loaded plugin file whose descriptor passed every check. The library stays mapped for the
// life of the process (see ARCHITECTURE.md: plugins are never unloaded).
struct PluginFile {
  std::filesystem::path path;
  const synthorg_plugin_descriptor* descriptor = nullptr;
  PluginManifest manifest;  // read back from the descriptor
};

// Loads with RTLD_NOW | RTLD_LOCAL and checks, in this order: the entry symbol, struct size,
// ABI major equal and host minor >= plugin minor, toolchain signature, name, version,
// service ids, config map. Throws PluginRefused.
PluginFile load_plugin_file(const std::filesystem::path& path);

bool valid_plugin_name(std::string_view name) noexcept;
bool valid_semver(std::string_view version) noexcept;

// One created plugin. The destructor calls destroy (stopping first when still started).
class PluginInstance {
 public:
  // Calls create with `context`. Throws PluginFailed.
  PluginInstance(const PluginFile& file, std::shared_ptr<PluginContext> context);
  ~PluginInstance();
  PluginInstance(const PluginInstance&) = delete;
  PluginInstance& operator=(const PluginInstance&) = delete;

  // `config` as the operator wrote it: the plugin applies its own config map (defaults,
  // durations to milliseconds) exactly once. Throws PluginFailed.
  void configure(const nlohmann::json& config);
  void start();                                  // throws PluginFailed, after sweeping
  void stop();                                   // throws PluginFailed
  bool started() const noexcept { return started_; }
  const std::string& name() const noexcept { return file_.manifest.name; }
  PluginContext& context() noexcept { return *context_; }

 private:
  [[noreturn]] void fail(std::string_view call) const;
  const PluginFile& file_;
  std::shared_ptr<PluginContext> context_;
  void* instance_ = nullptr;
  bool started_ = false;
};

}  // namespace synthorg::host

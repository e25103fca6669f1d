// Structured logging. One spdlog registry lives inside libsynthorg-sdk.so; this header keeps
// spdlog and fmt out of every plugin's compile. Lines are logfmt by default
// (`time=... level=info logger=kernel msg="Plugin started" plugin=hello`) or JSON.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>

namespace synthorg::log {

enum class Level { trace, debug, info, warn, error, critical, off };
enum class Format { logfmt, json };

struct Options {
  Level level = Level::info;
  Format format = Format::logfmt;
  std::string dir;  // when set, also write rotating files there
  std::size_t max_file_bytes = 10 * 1024 * 1024;
  std::size_t max_files = 5;
};

// Reads SYNTHORG_LOG_LEVEL, SYNTHORG_LOG_FORMAT and SYNTHORG_LOG_DIR over `base`.
// Throws std::invalid_argument naming the variable when a value is not understood.
Options options_from_env(Options base = {});
// Replaces the sinks and format of every logger. Called by the host, once, early.
void configure(const Options& options);
std::string_view level_name(Level level) noexcept;

// One key=value pair of a log line. Holds views: build it in the call expression.
class Field {
 public:
  using Value = std::variant<std::string_view, std::int64_t, std::uint64_t, double, bool>;

  Field(std::string_view key, std::string_view value) : key_(key), value_(value) {}
  Field(std::string_view key, const std::string& value) : key_(key), value_(std::string_view(value)) {}
  Field(std::string_view key, const char* value) : key_(key), value_(std::string_view(value)) {}
  Field(std::string_view key, bool value) : key_(key), value_(value) {}
  template <class T, std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>, int> = 0>
  Field(std::string_view key, T value)
      : key_(key),
        value_(std::is_signed_v<T> ? Value(static_cast<std::int64_t>(value))
                                   : Value(static_cast<std::uint64_t>(value))) {}
  template <class T, std::enable_if_t<std::is_floating_point_v<T>, int> = 0>
  Field(std::string_view key, T value) : key_(key), value_(static_cast<double>(value)) {}

  std::string_view key() const noexcept { return key_; }
  const Value& value() const noexcept { return value_; }

 private:
  std::string_view key_;
  Value value_;
};

using Fields = std::initializer_list<Field>;

class Logger {
 public:
  explicit Logger(std::string name);

  bool enabled(Level level) const noexcept;
  void log(Level level, std::string_view message, Fields fields = {}) const;
  void trace(std::string_view message, Fields fields = {}) const { log(Level::trace, message, fields); }
  void debug(std::string_view message, Fields fields = {}) const { log(Level::debug, message, fields); }
  void info(std::string_view message, Fields fields = {}) const { log(Level::info, message, fields); }
  void warn(std::string_view message, Fields fields = {}) const { log(Level::warn, message, fields); }
  void error(std::string_view message, Fields fields = {}) const { log(Level::error, message, fields); }
  const std::string& name() const noexcept { return name_; }

 private:
  std::string name_;
  std::shared_ptr<void> sink_;  // the spdlog::logger, kept opaque
};

}  // namespace synthorg::log

#include "synthorg/log.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <mutex>
#include <stdexcept>
#include <vector>

#include <spdlog/sinks/rotating_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

namespace synthorg::log {
namespace {

spdlog::level::level_enum to_spdlog(Level level) {
  switch (level) {
    case Level::trace: return spdlog::level::trace;
    case Level::debug: return spdlog::level::debug;
    case Level::info: return spdlog::level::info;
    case Level::warn: return spdlog::level::warn;
    case Level::error: return spdlog::level::err;
    case Level::critical: return spdlog::level::critical;
    case Level::off: return spdlog::level::off;
  }
  return spdlog::level::info;
}

std::string_view spdlog_level_name(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace: return "trace";
    case spdlog::level::debug: return "debug";
    case spdlog::level::info: return "info";
    case spdlog::level::warn: return "warn";
    case spdlog::level::err: return "error";
    case spdlog::level::critical: return "critical";
    default: return "off";
  }
}

void append_json_string(std::string& out, std::string_view text) {
  out += '"';
  for (unsigned char c : text) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          static constexpr char hex[] = "0123456789abcdef";
          out += "\\u00";
          out += hex[c >> 4];
          out += hex[c & 0xF];
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

bool needs_logfmt_quotes(std::string_view text) {
  if (text.empty()) return true;
  return std::any_of(text.begin(), text.end(), [](unsigned char c) {
    return c <= ' ' || c == '=' || c == '"' || c == '\\' || c == 0x7F;
  });
}

void append_logfmt_string(std::string& out, std::string_view text) {
  if (needs_logfmt_quotes(text)) {
    append_json_string(out, text);  // logfmt quoting is JSON string quoting
  } else {
    out += text;
  }
}

void append_number(std::string& out, const Field::Value& value) {
  std::array<char, 32> buffer{};
  auto [end, ec] = std::visit(
      [&](auto v) -> std::to_chars_result {
        if constexpr (std::is_same_v<decltype(v), std::string_view> || std::is_same_v<decltype(v), bool>) {
          return {buffer.data(), std::errc{}};
        } else {
          return std::to_chars(buffer.data(), buffer.data() + buffer.size(), v);
        }
      },
      value);
  (void)ec;
  out.append(buffer.data(), end);
}

void append_value(std::string& out, const Field::Value& value, Format format) {
  if (auto text = std::get_if<std::string_view>(&value)) {
    format == Format::json ? append_json_string(out, *text) : append_logfmt_string(out, *text);
  } else if (auto flag = std::get_if<bool>(&value)) {
    out += *flag ? "true" : "false";
  } else {
    append_number(out, value);
  }
}

// Renders time, level and logger around the body that Logger::log has already formatted.
class LineFormatter final : public spdlog::formatter {
 public:
  explicit LineFormatter(Format format) : format_(format) {}

  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    std::string line;
    line.reserve(64 + msg.payload.size());
    auto since_epoch = msg.time.time_since_epoch();
    auto seconds = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
    auto millis = std::chrono::duration_cast<std::chrono::milliseconds>(since_epoch - seconds).count();
    std::time_t t = seconds.count();
    std::tm utc{};
    gmtime_r(&t, &utc);
    char stamp[64];
    std::snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", utc.tm_year + 1900,
                  utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec, static_cast<int>(millis));
    std::string_view logger(msg.logger_name.data(), msg.logger_name.size());
    std::string_view body(msg.payload.data(), msg.payload.size());
    if (format_ == Format::json) {
      line += "{\"time\":\"";
      line += stamp;
      line += "\",\"level\":\"";
      line += spdlog_level_name(msg.level);
      line += "\",\"logger\":";
      append_json_string(line, logger);
      line += ',';
      line += body;
      line += "}\n";
    } else {
      line += "time=";
      line += stamp;
      line += " level=";
      line += spdlog_level_name(msg.level);
      line += " logger=";
      append_logfmt_string(line, logger);
      line += ' ';
      line += body;
      line += '\n';
    }
    dest.append(line.data(), line.data() + line.size());
  }

  std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<LineFormatter>(format_); }

 private:
  Format format_;
};

struct Backend {
  std::mutex mutex;
  Options options;
  std::vector<spdlog::sink_ptr> sinks{std::make_shared<spdlog::sinks::stderr_sink_mt>()};
  std::atomic<Format> format{Format::logfmt};

  void apply_to(spdlog::logger& logger) {
    logger.sinks() = sinks;
    logger.set_level(to_spdlog(options.level));
    logger.set_formatter(std::make_unique<LineFormatter>(options.format));
    logger.flush_on(spdlog::level::trace);  // every line reaches its file: nothing lost in a crash
  }
};

Backend& backend() {
  static Backend instance;
  return instance;
}

std::string lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

}  // namespace

std::string_view level_name(Level level) noexcept { return spdlog_level_name(to_spdlog(level)); }

Options options_from_env(Options base) {
  if (const char* value = std::getenv("SYNTHORG_LOG_LEVEL"); value && *value) {
    static const std::pair<std::string_view, Level> names[] = {
        {"trace", Level::trace}, {"debug", Level::debug}, {"info", Level::info},
        {"warn", Level::warn},   {"warning", Level::warn}, {"error", Level::error},
        {"critical", Level::critical}, {"off", Level::off}};
    auto wanted = lower(value);
    auto it = std::find_if(std::begin(names), std::end(names), [&](auto& n) { return n.first == wanted; });
    if (it == std::end(names))
      throw std::invalid_argument("SYNTHORG_LOG_LEVEL=\"" + std::string(value) +
                                  "\" is not a log level; use one of trace, debug, info, warn, error, critical, off");
    base.level = it->second;
  }
  if (const char* value = std::getenv("SYNTHORG_LOG_FORMAT"); value && *value) {
    auto wanted = lower(value);
    if (wanted == "logfmt" || wanted == "text") {
      base.format = Format::logfmt;
    } else if (wanted == "json") {
      base.format = Format::json;
    } else {
      throw std::invalid_argument("SYNTHORG_LOG_FORMAT=\"" + std::string(value) +
                                  "\" is not a log format; use logfmt or json");
    }
  }
  if (const char* value = std::getenv("SYNTHORG_LOG_DIR"); value && *value) base.dir = value;
  return base;
}

void configure(const Options& options) {
  std::vector<spdlog::sink_ptr> sinks{std::make_shared<spdlog::sinks::stderr_sink_mt>()};
  if (!options.dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(options.dir, ec);
    if (ec)
      throw std::invalid_argument("SYNTHORG_LOG_DIR: cannot create log directory \"" + options.dir +
                                  "\": " + ec.message());
    try {
      sinks.push_back(std::make_shared<spdlog::sinks::rotating_file_sink_mt>(
          (std::filesystem::path(options.dir) / "synthorg.log").string(), options.max_file_bytes,
          options.max_files));
    } catch (const spdlog::spdlog_ex& e) {
      throw std::invalid_argument("SYNTHORG_LOG_DIR: cannot open a log file in \"" + options.dir +
                                  "\": " + e.what());
    }
  }
  auto& b = backend();
  std::lock_guard lock(b.mutex);
  b.options = options;
  b.sinks = std::move(sinks);
  b.format = options.format;
  spdlog::apply_all([&](const std::shared_ptr<spdlog::logger>& logger) { b.apply_to(*logger); });
}

Logger::Logger(std::string name) : name_(std::move(name)) {
  auto& b = backend();
  std::lock_guard lock(b.mutex);
  auto existing = spdlog::get(name_);
  if (!existing) {
    existing = std::make_shared<spdlog::logger>(name_);
    b.apply_to(*existing);
    spdlog::register_logger(existing);
  }
  sink_ = existing;
}

bool Logger::enabled(Level level) const noexcept {
  return static_cast<spdlog::logger*>(sink_.get())->should_log(to_spdlog(level));
}

void Logger::log(Level level, std::string_view message, Fields fields) const {
  auto* logger = static_cast<spdlog::logger*>(sink_.get());
  auto spd_level = to_spdlog(level);
  if (!logger->should_log(spd_level)) return;
  Format format = backend().format.load(std::memory_order_relaxed);
  std::string body;
  body.reserve(48 + message.size() + fields.size() * 24);
  if (format == Format::json) {
    body += "\"msg\":";
    append_json_string(body, message);
    for (const auto& field : fields) {
      body += ',';
      append_json_string(body, field.key());
      body += ':';
      append_value(body, field.value(), format);
    }
  } else {
    body += "msg=";
    append_json_string(body, message);  // messages are always quoted, as in the examples
    for (const auto& field : fields) {
      body += ' ';
      body += field.key();
      body += '=';
      append_value(body, field.value(), format);
    }
  }
  logger->log(spd_level, spdlog::string_view_t(body.data(), body.size()));
}

}  // namespace synthorg::log

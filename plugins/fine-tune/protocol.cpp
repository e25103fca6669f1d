#include "protocol.hpp"

#include <charconv>
#include <cmath>

namespace synthorg::fine_tune {
namespace {

bool starts_with(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() && text.substr(0, prefix.size()) == prefix;
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t' || text.back() == '\r')) text.remove_suffix(1);
  return text;
}

bool valid_stage_name(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) return false;
  return true;
}

Message malformed(std::string problem) {
  Message message;
  message.kind = MessageKind::malformed;
  message.problem = std::move(problem);
  return message;
}

}  // namespace

std::string truncate_utf8(std::string_view text, std::size_t bytes) {
  if (text.size() <= bytes) return std::string(text);
  std::size_t cut = bytes;
  // Step back over continuation bytes (10xxxxxx) so a multi-byte character is not split.
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  return std::string(text.substr(0, cut)) + "…";
}

Message parse_line(std::string_view raw) {
  auto line = trim(raw.substr(0, std::min(raw.size(), max_line_bytes)));
  bool cut = raw.size() > max_line_bytes;
  Message message;
  if (starts_with(line, "STAGE_START:") || starts_with(line, "STAGE_COMPLETE:")) {
    bool start = starts_with(line, "STAGE_START:");
    auto name = trim(line.substr(start ? 12 : 15));
    if (cut || !valid_stage_name(name)) return malformed("the stage name must be 1-64 of [a-z0-9_-]");
    message.kind = start ? MessageKind::stage_start : MessageKind::stage_complete;
    message.text = std::string(name);
  } else if (starts_with(line, "PROGRESS:")) {
    auto value = trim(line.substr(9));
    double fraction = 0;
    auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), fraction);
    if (cut || error != std::errc() || end != value.data() + value.size() || !std::isfinite(fraction) ||
        fraction < 0 || fraction > 1)
      return malformed("PROGRESS takes a fraction from 0 to 1");
    message.kind = MessageKind::progress;
    message.fraction = fraction;
  } else if (starts_with(line, "ERROR:")) {
    auto text = trim(line.substr(6));
    if (text.empty()) return malformed("ERROR needs a message");
    message.kind = MessageKind::error;
    message.text = truncate_utf8(text, max_message_bytes);
  } else if (starts_with(line, "CHECKPOINT:")) {
    auto path = trim(line.substr(11));
    if (path.empty() || cut || path.size() > max_message_bytes) return malformed("CHECKPOINT needs a path");
    message.kind = MessageKind::checkpoint;
    message.text = std::string(path);
  }
  return message;
}

}  // namespace synthorg::fine_tune

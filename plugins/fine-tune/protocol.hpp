// The progress protocol a stage prints on its log stream, one message a line:
//   STAGE_START:<name>   PROGRESS:<fraction 0..1>   ERROR:<message>   STAGE_COMPLETE:<name>
//   CHECKPOINT:<path>    (optional: where the stage left what a later stage or a resume needs)
// Everything else is the stage's own output and is ignored; a line that starts like a message
// but does not parse is malformed (logged, rate-limited, and ignored). Pure: no I/O here.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace synthorg::fine_tune {

// Lines longer than this are cut before parsing: a stage cannot make the kernel hold (or log)
// megabytes because it printed one long line.
inline constexpr std::size_t max_line_bytes = 4096;
// ERROR: messages and checkpoint paths kept in the Store and on the bus are cut to this.
inline constexpr std::size_t max_message_bytes = 1024;

enum class MessageKind { none, stage_start, progress, error, stage_complete, checkpoint, malformed };

struct Message {
  MessageKind kind = MessageKind::none;
  std::string text;      // the stage name, error message or checkpoint path
  double fraction = 0;   // for progress
  std::string problem;   // for malformed: what is wrong
};

// Parses one line (without its newline; a trailing '\r' is tolerated).
Message parse_line(std::string_view line);

// Cuts `text` to at most `bytes` bytes without splitting a UTF-8 sequence, marking the cut.
std::string truncate_utf8(std::string_view text, std::size_t bytes);

}  // namespace synthorg::fine_tune

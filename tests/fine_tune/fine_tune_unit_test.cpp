// The fine-tune plugin's pure parts: the progress protocol parser and the run configuration an
// admin posts (every bad value refused naming its field).
#include <gtest/gtest.h>

#include <string>

#include "../../plugins/fine-tune/options.hpp"
#include "../../plugins/fine-tune/protocol.hpp"

namespace synthorg::fine_tune {
namespace {

using nlohmann::json;

TEST(FineTuneProtocolTest, ParsesEachMessage) {
  auto start = parse_line("STAGE_START:training");
  EXPECT_EQ(start.kind, MessageKind::stage_start);
  EXPECT_EQ(start.text, "training");
  auto progress = parse_line("PROGRESS:0.25\r");
  EXPECT_EQ(progress.kind, MessageKind::progress);
  EXPECT_DOUBLE_EQ(progress.fraction, 0.25);
  EXPECT_EQ(parse_line("PROGRESS:1").kind, MessageKind::progress);
  EXPECT_EQ(parse_line("PROGRESS: 0").kind, MessageKind::progress);
  auto error = parse_line("ERROR: CUDA out of memory ");
  EXPECT_EQ(error.kind, MessageKind::error);
  EXPECT_EQ(error.text, "CUDA out of memory");
  auto done = parse_line("STAGE_COMPLETE:deploying");
  EXPECT_EQ(done.kind, MessageKind::stage_complete);
  EXPECT_EQ(done.text, "deploying");
  auto checkpoint = parse_line("CHECKPOINT:/data/ckpt-3");
  EXPECT_EQ(checkpoint.kind, MessageKind::checkpoint);
  EXPECT_EQ(checkpoint.text, "/data/ckpt-3");
}

TEST(FineTuneProtocolTest, OtherOutputIsIgnoredAndBrokenMessagesAreMalformed) {
  for (const char* line : {"", "epoch 1/3 loss=0.2", "progress:0.5", " STAGE_STARTED", "ERRORS: none"})
    EXPECT_EQ(parse_line(line).kind, MessageKind::none) << line;
  for (const char* line : {"PROGRESS:", "PROGRESS:lots", "PROGRESS:1.5", "PROGRESS:-0.1", "PROGRESS:nan",
                           "PROGRESS:0.5x", "PROGRESS:inf", "STAGE_START:", "STAGE_START:Training",
                           "STAGE_COMPLETE:a b", "ERROR:", "ERROR:   ", "CHECKPOINT:"}) {
    auto message = parse_line(line);
    EXPECT_EQ(message.kind, MessageKind::malformed) << line;
    EXPECT_FALSE(message.problem.empty()) << line;
  }
}

TEST(FineTuneProtocolTest, VeryLongLinesAreCut) {
  std::string progress = "PROGRESS:0." + std::string(100'000, '5');
  EXPECT_EQ(parse_line(progress).kind, MessageKind::malformed) << "a number cut at max_line_bytes is no number";
  EXPECT_EQ(parse_line("STAGE_START:" + std::string(10'000, 'a')).kind, MessageKind::malformed);
  auto error = parse_line("ERROR:" + std::string(1'000'000, 'e'));
  EXPECT_EQ(error.kind, MessageKind::error);
  EXPECT_LE(error.text.size(), max_message_bytes + 3) << "kept to max_message_bytes (and the mark)";
  EXPECT_EQ(parse_line(std::string(1'000'000, 'x')).kind, MessageKind::none);
  // A cut never splits a UTF-8 character: é is two bytes.
  std::string accents;
  for (int i = 0; i < 10; ++i) accents += "\xC3\xA9";
  auto cut = truncate_utf8(accents, 5);
  EXPECT_EQ(cut, "\xC3\xA9\xC3\xA9…");
}

TEST(FineTuneRunConfigTest, DefaultsAreFilledIn) {
  auto config = parse_run_config("");
  EXPECT_EQ(config["epochs"], 3);
  EXPECT_DOUBLE_EQ(config["learning_rate"].get<double>(), 2e-5);
  EXPECT_EQ(config["batch_size"], 16);
  EXPECT_DOUBLE_EQ(config["validation_split"].get<double>(), 0.1);
  EXPECT_EQ(config["options"], json::object());
  EXPECT_EQ(parse_run_config(R"({"epochs": null, "options": null})"), config) << "null is the default";
  auto given = parse_run_config(R"({"epochs": 10, "learning_rate": 0.001, "batch_size": 64,
                                    "validation_split": 0, "options": {"model": "bge-small"}})");
  EXPECT_EQ(given["epochs"], 10);
  EXPECT_EQ(given["batch_size"], 64);
  EXPECT_EQ(given["options"]["model"], "bge-small");
}

TEST(FineTuneRunConfigTest, EachBadValueIsRefusedNamingItsField) {
  struct Case {
    std::string body, field, words;
  };
  for (const auto& [body, field, words] : std::vector<Case>{
           {R"({"epochs": 0})", "epochs", "from 1"},
           {R"({"epochs": 1001})", "epochs", "at most 1000"},
           {R"({"epochs": "3"})", "epochs", "a whole number"},
           {R"({"epochs": 2.5})", "epochs", "a whole number"},
           {R"({"epochs": true})", "epochs", "a whole number"},
           {R"({"learning_rate": 0})", "learning_rate", "above 0"},
           {R"({"learning_rate": -1})", "learning_rate", "above 0"},
           {R"({"learning_rate": 1.5})", "learning_rate", "at most 1"},
           {R"({"batch_size": 0})", "batch_size", "from 1"},
           {R"({"batch_size": 8.5})", "batch_size", "a whole number"},
           {R"({"validation_split": 1})", "validation_split", "below 1"},
           {R"({"validation_split": -0.1})", "validation_split", "from 0"},
           {R"({"validation_split": "0.1"})", "validation_split", "a number"},
           {R"({"epoch": 3})", "epoch", "did you mean \"epochs\""},
           {R"({"options": [1, 2]})", "options", "JSON object"},
           {R"({"options": {"blob": ")" + std::string(20'000, 'x') + R"("}})", "options", "larger than"},
       }) {
    try {
      parse_run_config(body);
      ADD_FAILURE() << body.substr(0, 80) << " was accepted";
    } catch (const Problem& problem) {
      EXPECT_EQ(problem.status, 400);
      EXPECT_EQ(problem.code, "invalid_run_config");
      EXPECT_EQ(problem.extra.value("field", ""), field) << body.substr(0, 80);
      EXPECT_NE(std::string(problem.what()).find(words), std::string::npos) << problem.what();
      EXPECT_EQ(std::string(problem.what()).rfind(field + ":", 0), 0u) << problem.what();
    }
  }
  for (const char* body : {"[]", "3", "{not json", "\"epochs\""}) {
    try {
      parse_run_config(body);
      ADD_FAILURE() << body << " was accepted";
    } catch (const Problem& problem) {
      EXPECT_EQ(problem.code, "invalid_body") << body;
    }
  }
}

}  // namespace
}  // namespace synthorg::fine_tune

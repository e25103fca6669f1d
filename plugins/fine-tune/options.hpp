// What the fine-tune plugin is configured with (its config map, read in plugin.cpp), the stage
// order, the problem type the routes turn into problem+json, and the run configuration an admin
// posts, validated field by field.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace synthorg::fine_tune {

inline constexpr std::array<std::string_view, 5> stage_names = {"generating_data", "mining_negatives", "training",
                                                                "evaluating", "deploying"};

struct Options {
  std::string image;    // resolved: SYNTHORG_FINE_TUNE_IMAGE, else gpu_image or cpu_image by variant
  std::string variant;  // gpu or cpu
  std::vector<std::string> command;
  std::map<std::string, std::string> env;
  std::string data_dir;  // host path mounted at data_target; empty: none
  std::string data_target = "/data";
  std::vector<std::string> read_only_stages;
  std::chrono::milliseconds stage_timeout{2 * 3600 * 1000};
  std::chrono::seconds stop_grace{10};
  std::uint16_t health_port = 15002;
  std::chrono::milliseconds health_interval{10'000};
  std::int64_t health_failures = 3;
  std::chrono::milliseconds preflight_timeout{60'000};
  std::int64_t max_active_runs = 1;
  std::int64_t memory_bytes = 0;
  double cpus = 0;
  std::int64_t pids_limit = 0;
  int gpu_count = -1;
  std::string user = "65534:65534";
  std::string tmpfs_options;
  std::string network;
  std::string instance = "default";
};

// What a route answers when a call cannot be served; routes.cpp turns it into problem+json.
class Problem : public std::runtime_error {
 public:
  Problem(int status, std::string code, const std::string& detail, nlohmann::json extra = nlohmann::json::object())
      : std::runtime_error(detail), status(status), code(std::move(code)), extra(std::move(extra)) {}
  int status;
  std::string code;
  nlohmann::json extra;
};

// The body of POST /api/v1/fine-tune/runs with every default filled in: epochs, learning_rate,
// batch_size, validation_split and a free-form `options` object handed to the stages as is.
// Throws Problem(400, invalid_run_config) naming the field, the bad value and what is allowed.
nlohmann::json parse_run_config(std::string_view body);

// The JSON Schema of that body, for the OpenAPI document.
nlohmann::json run_config_schema();

}  // namespace synthorg::fine_tune

// `synthorg doctor`: checks what a start needs — configuration, plugin files, keys, the data
// directory, the database, the backup directory, the HTTP port, the orchestrator's access —
// and says for each what is wrong and how to fix it. Secrets are judged, never printed.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace synthorg::kernel {

enum class CheckStatus { ok, warn, fail, skip };
std::string_view status_name(CheckStatus status) noexcept;  // "OK", "WARN", "FAIL", "SKIP"

struct CheckResult {
  std::string name;
  CheckStatus status = CheckStatus::ok;
  std::string detail;
  std::string fix;  // empty when there is nothing to do
};

struct DoctorRequest {
  std::optional<std::filesystem::path> config_path;
  std::filesystem::path plugin_dir;
  bool json = false;
};

// Every check, in order; later checks are skipped (with the reason) when what they need failed.
std::vector<CheckResult> run_doctor(const DoctorRequest& request);

// Prints the checks; returns 0 when nothing failed, doctor_unhealthy otherwise. WARN and SKIP
// do not make it unhealthy.
constexpr int doctor_unhealthy = 3;
int doctor_command(const DoctorRequest& request);

}  // namespace synthorg::kernel

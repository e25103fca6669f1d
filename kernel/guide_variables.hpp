// Every environment variable (and build argument) the two deployment guides name — the SynthOrg
// Docker guide and the PondPilot proxy guide — with what this server does with it and the test
// that shows it. `synthorg config docs --guide-variables` prints the table docs/configuration.md
// carries; `synthorg doctor` names the ones set here that nothing reads.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace synthorg::kernel {

struct GuideVariableRow {
  std::string_view name;       // the variable, or a family such as `<NAME>_FILE`
  std::string_view guide;      // "SynthOrg", "PondPilot" or "both"
  std::string_view default_;   // what applies when it is unset
  std::string_view behaviour;  // what this server does with it
  std::string_view test;       // the ctest test that shows it
  bool unused = false;         // accepted and ignored: the guide's product has it, this one has no counterpart
};

const std::vector<GuideVariableRow>& guide_variable_rows();
// The Markdown table, one row per entry, in the order above.
std::string guide_variables_markdown();

}  // namespace synthorg::kernel

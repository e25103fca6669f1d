// `synthorg config docs`: the configuration reference (docs/config-reference.md) as Markdown,
// generated from the same tables that validate: the kernel's config map, each installed
// plugin's config map, and the kernel's setting definitions. A test regenerates and diffs it.
#pragma once

#include <string>
#include <vector>

#include "synthorg/host/plugin_file.hpp"

namespace synthorg::kernel {

// `plugins` in any order: they are listed by name.
std::string config_reference_markdown(std::vector<const host::PluginFile*> plugins);

}  // namespace synthorg::kernel

#include "synthorg/host/plugin_file.hpp"

#include "synthorg/host/call_in_flight.hpp"

#include <elf.h>

#include <cstddef>
#include <cstring>
#include <fstream>
#include <mutex>
#include <optional>
#include <vector>

#include <boost/dll/shared_library.hpp>

namespace synthorg::host {
namespace {

// The bytes of the ABI 1.0 descriptor: a plugin's struct may be longer (a newer minor) but
// never shorter.
constexpr std::size_t abi_1_0_size = offsetof(synthorg_plugin_descriptor, last_error) + sizeof(void*);

// Boost wraps dlerror() as "...(dlerror system message: MESSAGE): STRERROR", where STRERROR is
// whatever errno held, unrelated to the failure: keep MESSAGE alone.
std::string dlerror_text(const std::exception& e) {
  std::string what = e.what();
  auto marker = what.find("dlerror system message: ");
  if (marker == std::string::npos) return what;
  auto text = what.substr(marker + 24);
  if (auto close = text.rfind("): "); close != std::string::npos) return text.substr(0, close);
  if (!text.empty() && text.back() == ')') text.pop_back();
  return text;
}

std::string text_or_empty(const char* text) { return text ? text : ""; }

// Names a lifecycle call for the fatal-signal report (call_in_flight.hpp).
CallInFlight mark(std::string_view call, const PluginFile& file) {
  return CallInFlight({call, " of plugin '", file.manifest.name, "'"});
}

// The toolchain signature SYNTHORG_PLUGIN stores in its own section, read from the file without
// loading it (64-bit little-endian ELF, as every host we build for); nullopt when absent.
std::optional<std::string> embedded_toolchain(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  auto read_at = [&](std::uint64_t offset, void* into, std::size_t size) {
    in.seekg(static_cast<std::streamoff>(offset));
    return static_cast<bool>(in.read(static_cast<char*>(into), static_cast<std::streamsize>(size)));
  };
  Elf64_Ehdr header{};
  if (!read_at(0, &header, sizeof header) || std::memcmp(header.e_ident, ELFMAG, SELFMAG) != 0 ||
      header.e_ident[EI_CLASS] != ELFCLASS64 || header.e_ident[EI_DATA] != ELFDATA2LSB ||
      header.e_shentsize != sizeof(Elf64_Shdr) || header.e_shstrndx >= header.e_shnum || header.e_shnum > 4096)
    return std::nullopt;
  std::vector<Elf64_Shdr> sections(header.e_shnum);
  if (!read_at(header.e_shoff, sections.data(), sections.size() * sizeof(Elf64_Shdr))) return std::nullopt;
  const auto& names = sections[header.e_shstrndx];
  if (names.sh_size > (1u << 20)) return std::nullopt;
  std::string name_table(names.sh_size, '\0');
  if (!read_at(names.sh_offset, name_table.data(), name_table.size())) return std::nullopt;
  for (const auto& section : sections) {
    if (section.sh_name >= name_table.size() || section.sh_size == 0 || section.sh_size > 4096) continue;
    if (std::strcmp(name_table.c_str() + section.sh_name, SYNTHORG_TOOLCHAIN_SECTION) != 0) continue;
    std::string text(section.sh_size, '\0');
    if (!read_at(section.sh_offset, text.data(), text.size())) return std::nullopt;
    return text.substr(0, text.find('\0'));
  }
  return std::nullopt;
}

std::string rebuild_advice(const std::string& plugin_toolchain) {
  return "built with another toolchain: " + toolchain_difference(plugin_toolchain, host_toolchain_signature()) +
         "; rebuild the plugin with the same compiler, standard library and SDK as the host";
}

// A loaded plugin is never unloaded while the process lives (see ARCHITECTURE.md): its
// handle goes into a table that is never destroyed, not even at exit, when unloading code
// that static destructors may still call is how hosts crash.
void keep_loaded_forever(std::unique_ptr<boost::dll::shared_library> library) {
  static std::mutex mutex;
  static auto* loaded = new std::vector<std::unique_ptr<boost::dll::shared_library>>();
  std::lock_guard lock(mutex);
  loaded->push_back(std::move(library));
}

}  // namespace

bool valid_plugin_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > 64 || !(name[0] >= 'a' && name[0] <= 'z')) return false;
  for (char c : name)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  return true;
}

bool valid_semver(std::string_view version) noexcept {
  // MAJOR.MINOR.PATCH with optional -prerelease and +build, numbers without leading zeros.
  std::size_t i = 0;
  for (int part = 0; part < 3; ++part) {
    std::size_t start = i;
    while (i < version.size() && version[i] >= '0' && version[i] <= '9') ++i;
    if (i == start || (i - start > 1 && version[start] == '0')) return false;
    if (part < 2) {
      if (i >= version.size() || version[i] != '.') return false;
      ++i;
    }
  }
  if (i == version.size()) return true;
  if (version[i] != '-' && version[i] != '+') return false;
  for (std::size_t j = i + 1; j < version.size(); ++j) {
    char c = version[j];
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '+')) return false;
  }
  return i + 1 < version.size();
}

PluginFile load_plugin_file(const std::filesystem::path& given) {
  const auto path = std::filesystem::absolute(given);  // never let dlopen search the library path
  auto refuse = [&](const std::string& reason) -> void { throw PluginRefused(path.string() + ": " + reason); };
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) refuse("no such file");
  if (!std::filesystem::is_regular_file(path, ec)) refuse("not a regular file");

  auto library = std::make_unique<boost::dll::shared_library>();
  try {
    library->load(path, boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
  } catch (const std::exception& e) {
    // A plugin built with another std::string ABI (or Boost) references SDK symbols that do not
    // exist here, so dlopen fails before its descriptor can be read: the section says why.
    if (auto toolchain = embedded_toolchain(path); toolchain && *toolchain != host_toolchain_signature())
      refuse("cannot be loaded (" + dlerror_text(e) + "): " + rebuild_advice(*toolchain));
    refuse("not a loadable shared object: " + dlerror_text(e));
  }
  auto& loaded = *library;
  keep_loaded_forever(std::move(library));
  if (!loaded.has(SYNTHORG_PLUGIN_ENTRY))
    refuse("missing the entry symbol " SYNTHORG_PLUGIN_ENTRY "; build the plugin with SYNTHORG_PLUGIN(Class)");
  auto& entry = loaded.get_alias<const synthorg_plugin_descriptor*()>(SYNTHORG_PLUGIN_ENTRY);
  const synthorg_plugin_descriptor* d = entry();
  if (!d) refuse("its entry returned no descriptor (the plugin's manifest() threw)");

  if (d->struct_size < abi_1_0_size)
    refuse("descriptor struct_size " + std::to_string(d->struct_size) + " is smaller than the " +
           std::to_string(abi_1_0_size) + " bytes of ABI 1.0; the file is damaged or not built with the SDK");
  if (d->abi_major != SYNTHORG_ABI_MAJOR)
    refuse("built for plugin ABI " + std::to_string(d->abi_major) + ".x but this host speaks " +
           std::to_string(SYNTHORG_ABI_MAJOR) + ".x; rebuild it against SDK " + std::to_string(SYNTHORG_SDK_VERSION_MAJOR) + ".x");
  if (d->abi_minor > SYNTHORG_ABI_MINOR)
    refuse("built for plugin ABI " + std::to_string(d->abi_major) + "." + std::to_string(d->abi_minor) +
           " but this host speaks only " + std::to_string(SYNTHORG_ABI_MAJOR) + "." + std::to_string(SYNTHORG_ABI_MINOR) +
           "; upgrade SynthOrg or rebuild the plugin against this SDK");
  const std::string toolchain = text_or_empty(d->toolchain);
  if (toolchain != host_toolchain_signature()) refuse(rebuild_advice(toolchain));
  const std::string name = text_or_empty(d->name);
  if (!valid_plugin_name(name))
    refuse("plugin name \"" + name + "\" is invalid; use lower-case letters, digits and '-', starting with a letter");

  auto refuse_named = [&](const std::string& reason) { refuse("plugin '" + name + "': " + reason); };
  PluginFile file{path, d, {}};
  file.manifest.name = name;
  file.manifest.version = text_or_empty(d->version);
  file.manifest.description = text_or_empty(d->description);
  if (!valid_semver(file.manifest.version))
    refuse_named("version \"" + file.manifest.version + "\" is not a semantic version such as 1.2.3");
  if (!d->create || !d->configure || !d->start || !d->stop || !d->destroy || !d->last_error)
    refuse_named("its descriptor lacks a lifecycle function");
  for (std::uint32_t i = 0; i < d->provides_count; ++i) {
    std::string service = text_or_empty(d->provides[i]);
    if (!valid_service_id(service)) refuse_named("provides an invalid service id \"" + service + "\"");
    file.manifest.provides.push_back(std::move(service));
  }
  for (std::uint32_t i = 0; i < d->dependency_count; ++i) {
    std::string service = text_or_empty(d->dependencies[i].service);
    if (!valid_service_id(service)) refuse_named("needs an invalid service id \"" + service + "\"");
    file.manifest.needs.push_back({std::move(service), d->dependencies[i].required != 0});
  }
  try {
    file.manifest.config = ConfigMap::from_json(nlohmann::json::parse(text_or_empty(d->config_map_json)));
  } catch (const std::exception& e) {
    refuse_named(std::string("its config map is unreadable: ") + e.what());
  }
  return file;
}

PluginInstance::PluginInstance(const PluginFile& file, std::shared_ptr<PluginContext> context)
    : file_(file), context_(std::move(context)) {
  auto in_flight = mark("create()", file_);
  instance_ = file_.descriptor->create(context_.get());
  if (!instance_)
    throw PluginFailed("plugin '" + name() + "' (" + file_.path.string() +
                       "): create failed: " + text_or_empty(file_.descriptor->last_error(nullptr)));
}

PluginInstance::~PluginInstance() {
  auto in_flight = mark(started_ ? "stop() and destroy()" : "destroy()", file_);
  if (started_) {
    file_.descriptor->stop(instance_);
    context_->sweep();
  }
  file_.descriptor->destroy(instance_);
}

void PluginInstance::fail(std::string_view call) const {
  std::string reason = text_or_empty(file_.descriptor->last_error(instance_));
  if (reason.empty()) reason = "no reason given";
  throw PluginFailed("plugin '" + name() + "': " + std::string(call) + " failed: " + reason);
}

void PluginInstance::configure(const nlohmann::json& config) {
  auto in_flight = mark("configure()", file_);
  if (file_.descriptor->configure(instance_, config.dump().c_str()) != SYNTHORG_OK) fail("configure");
}

void PluginInstance::start() {
  if (started_) return;
  auto in_flight = mark("start()", file_);
  if (file_.descriptor->start(instance_) != SYNTHORG_OK) {
    context_->sweep();  // a failed start leaves nothing registered or subscribed
    fail("start");
  }
  started_ = true;
}

void PluginInstance::stop() {
  if (!started_) return;
  started_ = false;
  auto in_flight = mark("stop()", file_);
  if (file_.descriptor->stop(instance_) != SYNTHORG_OK) fail("stop");
}

}  // namespace synthorg::host

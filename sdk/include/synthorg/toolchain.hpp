// The toolchain signature: the facts that must be equal between host and plugin before a
// C++ type may cross the plugin boundary (tier 1). It is a string so that a refusal can say
// exactly what differs, as nginx does with its build signature.
#pragma once

#include <cstddef>  // defines _GLIBCXX_USE_CXX11_ABI

#include <boost/version.hpp>
#include <nlohmann/json_fwd.hpp>

#include "synthorg/version.hpp"

#define SYNTHORG_STRINGIFY_(x) #x
#define SYNTHORG_STRINGIFY(x) SYNTHORG_STRINGIFY_(x)

#if defined(__clang__)
#define SYNTHORG_COMPILER_ID "clang-" SYNTHORG_STRINGIFY(__clang_major__)
#elif defined(__GNUC__)
#define SYNTHORG_COMPILER_ID "gcc-" SYNTHORG_STRINGIFY(__GNUC__)
#else
#error "SynthOrg plugins are built with GCC or Clang"
#endif

#if defined(JSON_DIAGNOSTICS) && JSON_DIAGNOSTICS
#define SYNTHORG_JSON_DIAGNOSTICS "1"
#else
#define SYNTHORG_JSON_DIAGNOSTICS "0"
#endif

#define SYNTHORG_TOOLCHAIN_SIGNATURE                                          \
  SYNTHORG_COMPILER_ID                                                        \
  ";cxx11abi=" SYNTHORG_STRINGIFY(_GLIBCXX_USE_CXX11_ABI)                     \
  ";sdk=" SYNTHORG_STRINGIFY(SYNTHORG_SDK_VERSION_MAJOR)                      \
  ";boost=" SYNTHORG_STRINGIFY(BOOST_VERSION)                                 \
  ";json=" SYNTHORG_STRINGIFY(NLOHMANN_JSON_VERSION_MAJOR) "." SYNTHORG_STRINGIFY( \
      NLOHMANN_JSON_VERSION_MINOR) ";json_diag=" SYNTHORG_JSON_DIAGNOSTICS

// Every plugin also carries its signature in an ELF section of this name (SYNTHORG_PLUGIN puts
// it there), so a host can read it from a file that dlopen refuses: a plugin built with another
// std::string ABI cannot even be loaded, and its signature is what says why.
#define SYNTHORG_TOOLCHAIN_SECTION "synthorg_toolchain"

#include <string>
#include <string_view>

namespace synthorg {
// The signature libsynthorg-sdk.so was built with: what the host compares plugins against.
const char* host_toolchain_signature() noexcept;
// The fields of two signatures that differ, e.g. `cxx11abi=0 (the host: cxx11abi=1)`, joined
// with "; "; empty when they are equal.
std::string toolchain_difference(std::string_view plugin, std::string_view host);
}  // namespace synthorg

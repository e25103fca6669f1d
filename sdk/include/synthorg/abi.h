/* SynthOrg plugin ABI, tier 0: the C descriptor every plugin exports.
 *
 * This header is C so that the host can read a descriptor before any C++ type crosses the
 * boundary. The struct is append-only: new fields go at the end and bump
 * SYNTHORG_ABI_MINOR; `struct_size` lets an old host read a newer plugin's prefix (OBS rule).
 * A change that breaks layout or meaning bumps SYNTHORG_ABI_MAJOR.
 */
#ifndef SYNTHORG_ABI_H
#define SYNTHORG_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SYNTHORG_ABI_MAJOR 1
#define SYNTHORG_ABI_MINOR 0

/* The Boost.DLL alias under which a plugin exports `const synthorg_plugin_descriptor* ()`. */
#define SYNTHORG_PLUGIN_ENTRY "synthorg_plugin_v1"

/* Return codes of the lifecycle functions. Anything else is an error too. */
#define SYNTHORG_OK 0
#define SYNTHORG_ERROR 1

typedef struct synthorg_dependency {
  const char* service; /* e.g. "synthorg.Store/1" */
  int32_t required;    /* 1: refuse to start without it; 0: use it when present */
} synthorg_dependency;

typedef struct synthorg_plugin_descriptor {
  uint32_t struct_size; /* sizeof(synthorg_plugin_descriptor) as the plugin was built */
  uint16_t abi_major;
  uint16_t abi_minor;
  const char* toolchain; /* must equal the host's before any C++ crosses (see toolchain.hpp) */
  const char* name;      /* ^[a-z][a-z0-9-]*$, unique per process */
  const char* version;   /* semantic version */
  const char* description;
  const synthorg_dependency* dependencies;
  uint32_t dependency_count;
  const char* const* provides; /* service ids this plugin registers when started */
  uint32_t provides_count;
  const char* config_map_json; /* the plugin's config map, serialised (see config_map.hpp) */

  /* `host` is the plugin's synthorg::PluginContext; it is only passed once the toolchain
   * signature matched. Returns NULL on failure, with the reason in last_error(NULL). */
  void* (*create)(void* host);
  int32_t (*configure)(void* instance, const char* config_json);
  int32_t (*start)(void* instance);
  int32_t (*stop)(void* instance);
  void (*destroy)(void* instance);
  /* The message of the last failed call on `instance` (or of create, when NULL). */
  const char* (*last_error)(void* instance);
} synthorg_plugin_descriptor;

#ifdef __cplusplus
}
#endif

#endif /* SYNTHORG_ABI_H */

# CMake functions for plugin authors, used in this tree and, installed, by out-of-tree plugins.

# synthorg_add_plugin(<name> SOURCES <file>... [LIBRARIES <lib>...] [OUTPUT_DIRECTORY <dir>])
# Builds <name>.so the way the kernel expects: hidden visibility, every symbol resolved at link
# time (-z defs), linked against the SDK library the kernel shares with it.
function(synthorg_add_plugin name)
  cmake_parse_arguments(ARG "" "OUTPUT_DIRECTORY" "SOURCES;LIBRARIES" ${ARGN})
  if(NOT ARG_SOURCES)
    message(FATAL_ERROR "synthorg_add_plugin(${name}): give SOURCES")
  endif()
  add_library(${name} MODULE ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE SynthOrg::sdk ${ARG_LIBRARIES})
  set_target_properties(${name} PROPERTIES
    PREFIX "" OUTPUT_NAME "${name}"
    CXX_VISIBILITY_PRESET hidden VISIBILITY_INLINES_HIDDEN ON
    CXX_STANDARD 20 CXX_STANDARD_REQUIRED ON)
  target_link_options(${name} PRIVATE "LINKER:-z,defs")
  if(ARG_OUTPUT_DIRECTORY)
    set_target_properties(${name} PROPERTIES LIBRARY_OUTPUT_DIRECTORY "${ARG_OUTPUT_DIRECTORY}")
  endif()
endfunction()

# synthorg_add_conformance_test(<plugin-target> [KIND generic|store|orchestrator] [CONFIG <json>] [WITH <plugin-file>...])
# Registers a CTest test that runs the conformance kit on the plugin's file. CONFIG is the
# plugin's configuration as JSON; WITH loads provider plugins for its required services first.
function(synthorg_add_conformance_test target)
  cmake_parse_arguments(ARG "" "CONFIG;KIND" "WITH" ${ARGN})
  set(args --plugin "$<TARGET_FILE:${target}>")
  if(DEFINED ARG_KIND)
    list(APPEND args --kind "${ARG_KIND}")
  endif()
  if(DEFINED ARG_CONFIG)
    list(APPEND args --config "${ARG_CONFIG}")
  endif()
  foreach(provider IN LISTS ARG_WITH)
    list(APPEND args --with "${provider}")
  endforeach()
  add_test(NAME conformance.${target} COMMAND SynthOrg::conformance-runner ${args})
endfunction()

#include "synthorg/toolchain.hpp"

namespace synthorg {
const char* host_toolchain_signature() noexcept { return SYNTHORG_TOOLCHAIN_SIGNATURE; }
}  // namespace synthorg

// src/version.cpp — mproc::version(): the version string compiled into the library.
//
// MPROC_VERSION_STRING comes from the generated mproc/version.hpp (cmake/version.hpp.in) of this build,
// so the string below is fixed when libmproc is compiled; a program compiled against other headers sees
// its own MPROC_VERSION_STRING differ from what this returns.
#include "mproc/version.hpp"

namespace mproc {

const char* version() noexcept { return MPROC_VERSION_STRING; }

}  // namespace mproc

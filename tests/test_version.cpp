// tests/test_version.cpp — the generated mproc/version.hpp and mproc::version() say the version written
// in the project() line of CMakeLists.txt (passed here as MPROC_TEST_PROJECT_VERSION by
// tests/CMakeLists.txt): the macros, the number for #if, and the string compiled into the library.
#include "catch.hpp"

#include <string>

#include <mproc/mproc.hpp>  // the umbrella header brings mproc/version.hpp

#ifndef MPROC_TEST_PROJECT_VERSION
#error "tests/CMakeLists.txt passes MPROC_TEST_PROJECT_VERSION=\"${PROJECT_VERSION}\""
#endif

// The macros must be usable in #if: plain integer literals.
#if !(MPROC_VERSION_MAJOR >= 0 && MPROC_VERSION_MINOR >= 0 && MPROC_VERSION_PATCH >= 0 && MPROC_VERSION >= 0)
#error "the MPROC_VERSION_* macros are not integers usable in #if"
#endif

TEST_CASE("version: the macros match the CMake project version", "[version]") {
  const std::string project = MPROC_TEST_PROJECT_VERSION;
  CHECK(std::string(MPROC_VERSION_STRING) == project);
  CHECK(std::to_string(MPROC_VERSION_MAJOR) + "." + std::to_string(MPROC_VERSION_MINOR) + "." +
            std::to_string(MPROC_VERSION_PATCH) ==
        project);
  CHECK(MPROC_VERSION == MPROC_VERSION_MAJOR * 10000 + MPROC_VERSION_MINOR * 100 + MPROC_VERSION_PATCH);
}

TEST_CASE("version: mproc::version() is the string compiled into the library", "[version]") {
  const char* v = mproc::version();
  REQUIRE(v != nullptr);
  CHECK(std::string(v) == MPROC_TEST_PROJECT_VERSION);
  CHECK(std::string(v) == MPROC_VERSION_STRING);  // headers and library from the same build
  CHECK(mproc::version() == v);                   // a static string: the same pointer every time
}

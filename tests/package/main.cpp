// tests/package/main.cpp — the program scripts/package builds against the installed libmproc-dev .deb,
// once through CMake (find_package) and once through pkg-config, and runs.
//
//   app <how it was built> <expected version>
//
// It forks a Process that exits with code 42, joins it and checks the exit code, then checks that the
// headers it was compiled with (MPROC_VERSION_STRING) and the library it was linked with
// (mproc::version()) both say the expected version. Prints one line; exits 0 only if all is right.
#include <cstdio>
#include <cstring>

#include <mproc/mproc.hpp>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s <how it was built> <expected version>\n", argv[0]);
    return 2;
  }
  const char* how = argv[1];
  const char* expected = argv[2];

  mproc::Process p([](int code) { mproc::exit(code); }, 42);
  p.start();
  p.join();
  const int code = p.exitcode().value_or(-1000);

  const bool versions_ok =
      std::strcmp(mproc::version(), expected) == 0 && std::strcmp(MPROC_VERSION_STRING, expected) == 0;
  const bool ok = code == 42 && versions_ok;
  std::printf("package consumer (%s): mproc::version()=%s, headers %s, expected %s; child exitcode=%d: %s\n",
              how, mproc::version(), MPROC_VERSION_STRING, expected, code, ok ? "ok" : "WRONG");
  return ok ? 0 : 1;
}

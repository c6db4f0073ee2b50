// A consumer of an installed mproc: compiles against the installed headers only (no Boost include
// path, no source tree) and links mproc::mproc from find_package.
#include <cstdio>
#include <mproc/mproc.hpp>

int main() {
  mproc::Process p([](int code) { mproc::exit(code); }, 42);
  p.start();
  p.join();
  const int code = p.exitcode().value_or(-1000);
  std::printf("find_package consumer: child exitcode=%d (%s)\n", code, code == 42 ? "ok" : "WRONG");
  return code == 42 ? 0 : 1;
}

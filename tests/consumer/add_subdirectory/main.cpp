// A consumer that builds mproc as part of its own build (add_subdirectory / FetchContent).
#include <cstdio>
#include <mproc/mproc.hpp>

int main() {
  mproc::Process p([] {
    std::printf("add_subdirectory consumer: hello from %s\n", mproc::current_process().name.c_str());
  });
  p.start();
  p.join();
  const int code = p.exitcode().value_or(-1000);
  std::printf("add_subdirectory consumer: child exitcode=%d (%s)\n", code, code == 0 ? "ok" : "WRONG");
  return code == 0 ? 0 : 1;
}

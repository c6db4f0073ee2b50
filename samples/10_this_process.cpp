// 10_this_process — mproc::this_process is Node's `process` object for the running program: its pid,
// command line, executable, working directory, environment and memory use, and on_exit hooks that run
// with the exit code when the program ends normally.
#include <cstdio>
#include <filesystem>
#include <string>

#include "mproc/process.hpp"
#include "mproc/this_process.hpp"

namespace tp = mproc::this_process;

int main() {
  std::printf("pid %d, parent pid %d\n", tp::pid(), tp::ppid());

  const auto args = tp::argv();  // read from /proc/self/cmdline: works anywhere, not only in main()
  for (std::size_t i = 0; i < args.size(); ++i) std::printf("argv[%zu] = %s\n", i, args[i].c_str());
  std::printf("exec_path = %s\n", tp::exec_path().c_str());

  tp::setenv("MPROC_GREETING", "hello from setenv");
  std::printf("getenv(MPROC_GREETING) = %s\n", tp::getenv("MPROC_GREETING").value_or("(unset)").c_str());
  std::printf("getenv(MPROC_NO_SUCH_VARIABLE) = %s\n",
              tp::getenv("MPROC_NO_SUCH_VARIABLE").value_or("(unset)").c_str());
  std::printf("env() has %zu variables\n", tp::env().size());

  const std::filesystem::path start = tp::cwd();
  tp::chdir("/");
  std::printf("cwd: %s -> chdir(\"/\") -> %s\n", start.c_str(), tp::cwd().c_str());
  tp::chdir(start);

  const tp::MemoryUsage mem = tp::memory_usage();
  std::printf("memory: rss %zu KiB, vms %zu KiB, shared %zu KiB\n", mem.rss / 1024, mem.vms / 1024,
              mem.shared / 1024);

  // The hook lives as long as its Subscription. mproc::exit() (std::exit in the main process) ends the
  // program without destroying main's locals, so the subscription is still there when the hook runs.
  tp::Subscription goodbye =
      tp::on_exit([](int code) { std::printf("on_exit: exiting with code %d\n", code); });
  std::printf("main: done, calling mproc::exit(0)\n");
  mproc::exit(0);
}

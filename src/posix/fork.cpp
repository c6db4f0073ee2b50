#include "posix/fork.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <iostream>

#include "posix/fd.hpp"
#include "posix/signals.hpp"

namespace mproc::detail::posix {

void flush_stdio() noexcept {
  try {
    std::cout.flush();
    std::cerr.flush();
    std::clog.flush();
  } catch (...) {
    // A stream with exceptions enabled must not stop a fork or an exit.
  }
  std::fflush(nullptr);
}

pid_t careful_fork() {
  flush_stdio();
  pid_t pid;
  {
    BlockAllSignals blocked;
    pid = ::fork();
    if (pid == 0) {
      // Still fully blocked here: reset first, then let signals in.
      reset_child_signals();
      return 0;
    }
    // The parent's mask is restored by the guard (also when fork failed).
  }
  if (pid < 0) throw_errno("fork");
  return pid;
}

void child_exit(int code) noexcept {
  flush_stdio();
  ::_exit(code);
}

}  // namespace mproc::detail::posix

#include "posix/fork.hpp"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <iostream>

#include "posix/fd.hpp"
#include "posix/signals.hpp"

namespace mproc::detail::posix {

namespace {

// Whether flushing a standard C++ stream can be left to fflush(nullptr). With sync_with_stdio(true),
// the default, cout/cerr/clog write straight into stdio's buffers through the buffer they were given
// at start-up, which keeps no put area, so their flush() only runs code: the stream sentry, a TLS
// lookup, stdio_sync_filebuf::sync. In a forked child each code or data page that path touches for
// the first time is a page fault (~25 µs on a VM): about six on every child's way out. So a stream is
// flushed unless it still has its start-up buffer and that buffer holds nothing; a buffer installed
// later (sync_with_stdio(false), a user's rdbuf) is always flushed, whatever it keeps where. A member
// pointer taken in a derived class reaches the protected pptr()/pbase() of any streambuf.
struct PutArea : std::streambuf {
  static bool empty(std::streambuf* b) noexcept {
    constexpr auto pptr = &PutArea::pptr;
    constexpr auto pbase = &PutArea::pbase;
    return (b->*pptr)() == (b->*pbase)();
  }
};

// Initialised after this file's std::ios_base::Init (from <iostream>, included above), so the standard
// streams exist.
std::streambuf* const startup_buf[3] = {std::cout.rdbuf(), std::cerr.rdbuf(), std::clog.rdbuf()};

void flush_unless_idle(std::ostream& os, std::streambuf* startup) {
  std::streambuf* b = os.rdbuf();
  if (b == nullptr || (b == startup && PutArea::empty(b))) return;
  os.flush();
}

}  // namespace

void flush_stdio() noexcept {
  try {
    flush_unless_idle(std::cout, startup_buf[0]);
    flush_unless_idle(std::cerr, startup_buf[1]);
    flush_unless_idle(std::clog, startup_buf[2]);
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

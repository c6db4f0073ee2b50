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

// The buffers the standard streams start with, captured before any of the program's own static
// initialisers can install another one (which must then always be flushed): init_priority runs these
// two ahead of every initialiser of default priority, in whatever order the objects are linked (mproc
// is usually a static library, whose initialisers would otherwise run after the program's). The
// extra std::ios_base::Init makes sure the streams exist by then; it is reference-counted.
struct StartupBuffers {
  std::streambuf* cout = std::cout.rdbuf();
  std::streambuf* cerr = std::cerr.rdbuf();
  std::streambuf* clog = std::clog.rdbuf();
};
[[gnu::init_priority(200)]] std::ios_base::Init early_streams;
[[gnu::init_priority(200)]] const StartupBuffers startup_buf;

void flush_unless_idle(std::ostream& os, std::streambuf* startup) {
  std::streambuf* b = os.rdbuf();
  if (b == nullptr || (b == startup && PutArea::empty(b))) return;
  os.flush();
}

}  // namespace

void flush_stdio() noexcept {
  try {
    flush_unless_idle(std::cout, startup_buf.cout);
    flush_unless_idle(std::cerr, startup_buf.cerr);
    flush_unless_idle(std::clog, startup_buf.clog);
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

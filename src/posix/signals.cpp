#include "posix/signals.hpp"

#include <pthread.h>

#include <cerrno>
#include <ctime>

namespace mproc::detail::posix {

BlockAllSignals::BlockAllSignals() noexcept {
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old_);
}

BlockAllSignals::~BlockAllSignals() { pthread_sigmask(SIG_SETMASK, &old_, nullptr); }

void reset_child_signals() noexcept {
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  sigaction(SIGCHLD, &dfl, nullptr);
  sigset_t none;
  sigemptyset(&none);
  pthread_sigmask(SIG_SETMASK, &none, nullptr);
}

SigpipeGuard::SigpipeGuard() noexcept {
  sigemptyset(&pipe_set_);
  sigaddset(&pipe_set_, SIGPIPE);
  sigset_t pending;
  sigemptyset(&pending);
  if (::sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1) was_pending_ = true;
  ::pthread_sigmask(SIG_BLOCK, &pipe_set_, &old_);
}

SigpipeGuard::~SigpipeGuard() {
  const int saved = errno;
  if (raised_ && !was_pending_) {
    // The SIGPIPE of a failed write(2) is directed at the writing thread, so this thread can take it.
    const timespec zero{0, 0};
    while (::sigtimedwait(&pipe_set_, nullptr, &zero) < 0 && errno == EINTR) {
    }
  }
  ::pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  errno = saved;
}

}  // namespace mproc::detail::posix

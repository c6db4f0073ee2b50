#include "posix/wait.hpp"

#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "posix/fd.hpp"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

namespace mproc::detail::posix {

int pidfd_open(pid_t pid) noexcept {
  // pidfds are always close-on-exec (pidfd_open(2)).
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

int pidfd_send_signal(int pidfd, int sig) noexcept {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}

bool have_pidfd() noexcept {
  static const bool have = [] {
    const char* off = std::getenv("MPROC_NO_PIDFD");
    if (off && *off && std::strcmp(off, "0") != 0) return false;
    int fd = pidfd_open(::getpid());
    if (fd >= 0) {
      ::close(fd);
      return true;
    }
    // ENOSYS before Linux 5.3 (EPERM/EACCES from a seccomp filter): fall back to sentinel pipes. Any
    // other error (EMFILE, ENFILE, ENOMEM) is transient and says nothing about the kernel: keep pidfds,
    // or one fd shortage at the first start() would switch this process to the pipe fallback for good
    // (found by fault injection, tests/fault: pidfd_open:1:EMFILE).
    return errno != ENOSYS && errno != EPERM && errno != EACCES;
  }();
  return have;
}

WaitOutcome wait_nohang(pid_t pid) {
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return {WaitOutcome::ended, status};
    if (r == 0) return {WaitOutcome::running, 0};
    if (errno == EINTR) continue;
    if (errno == ECHILD) return {WaitOutcome::not_child, 0};
    throw_errno("waitpid");
  }
}

std::optional<int> wait_blocking(pid_t pid) {
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid, &status, 0);
    if (r == pid) return status;
    if (errno == EINTR) continue;
    if (errno == ECHILD) return std::nullopt;
    throw_errno("waitpid");
  }
}

}  // namespace mproc::detail::posix

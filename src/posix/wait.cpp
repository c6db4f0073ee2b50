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
    if (fd < 0) return false;  // ENOSYS before Linux 5.3: fall back to sentinel pipes
    ::close(fd);
    return true;
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

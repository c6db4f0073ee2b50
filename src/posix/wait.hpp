// src/posix/wait.hpp — waitpid/pidfd wrappers. Status decoding lives in ExitStatus.
#pragma once

#include <sys/types.h>

#include <optional>

namespace mproc::detail::posix {

/// Whether this kernel has pidfd_open (5.3+) and MPROC_NO_PIDFD is not set. Probed once.
bool have_pidfd() noexcept;

/// pidfd_open(pid, 0): a CLOEXEC fd that polls readable when pid exits. -1 with errno on failure.
int pidfd_open(pid_t pid) noexcept;

/// pidfd_send_signal(pidfd, sig). 0 or -1 with errno (ESRCH once the process has been reaped).
int pidfd_send_signal(int pidfd, int sig) noexcept;

/// Result of a non-blocking wait for one pid.
struct WaitOutcome {
  enum Kind { running, ended, not_child } kind;
  int raw_status = 0;
};
/// waitpid(pid, WNOHANG), restarted on EINTR. not_child on ECHILD; std::system_error on other errors.
WaitOutcome wait_nohang(pid_t pid);
/// waitpid(pid, 0), restarted on EINTR. Raw status, or nullopt on ECHILD.
std::optional<int> wait_blocking(pid_t pid);

}  // namespace mproc::detail::posix

// mproc::posix — the teaching wrappers. Deliberately thin: they do what the system calls do.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "mproc/posix.hpp"
#include "posix/fd.hpp"
#include "posix/fork.hpp"

namespace mproc::posix {

namespace px = detail::posix;

pid_t fork() {
  // Flushing first is the one liberty we take: without it a printf() buffered before fork() comes out
  // twice, once from each process, which confuses more than it teaches.
  px::flush_stdio();
  pid_t pid = ::fork();
  if (pid < 0) px::throw_errno("fork");
  return pid;
}

std::optional<WaitResult> waitpid(pid_t pid, bool nohang) {
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid, &status, nohang ? WNOHANG : 0);
    if (r > 0) return WaitResult{r, ExitStatus::from_wait_status(status)};
    if (r == 0) return std::nullopt;
    if (errno == EINTR) continue;
    px::throw_errno("waitpid");
  }
}

WaitResult wait() { return *waitpid(-1, false); }

void exit_now(int status) { ::_exit(status); }

pid_t getpid() { return ::getpid(); }
pid_t getppid() { return ::getppid(); }

int nice(int increment) {
  // nice(2) may legitimately return -1, so errno must be cleared first to tell failure apart.
  errno = 0;
  int r = ::nice(increment);
  if (r == -1 && errno != 0) px::throw_errno("nice");
  return r;
}

int get_priority(pid_t pid) {
  errno = 0;
  int r = ::getpriority(PRIO_PROCESS, static_cast<id_t>(pid));
  if (r == -1 && errno != 0) px::throw_errno("getpriority");
  return r;
}

void set_priority(int value, pid_t pid) {
  if (::setpriority(PRIO_PROCESS, static_cast<id_t>(pid), value) != 0) px::throw_errno("setpriority");
}

}  // namespace mproc::posix

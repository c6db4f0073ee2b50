#include "mproc/exit_status.hpp"

#include <string.h>
#include <sys/wait.h>

#include <string>

namespace mproc {

bool ExitStatus::exited() const noexcept { return WIFEXITED(status_); }
int ExitStatus::code() const noexcept { return WIFEXITED(status_) ? WEXITSTATUS(status_) : 0; }
bool ExitStatus::signaled() const noexcept { return WIFSIGNALED(status_); }
int ExitStatus::signal() const noexcept { return WIFSIGNALED(status_) ? WTERMSIG(status_) : 0; }
bool ExitStatus::core_dumped() const noexcept { return WIFSIGNALED(status_) && WCOREDUMP(status_); }
int ExitStatus::exitcode() const noexcept { return signaled() ? -signal() : code(); }

std::string ExitStatus::to_string() const {
  if (exited()) return "exited with code " + std::to_string(code());
  if (signaled()) {
    // sigabbrev_np (glibc 2.32+) gives "KILL" for SIGKILL; unknown numbers (real-time signals) get
    // their number instead.
    const char* abbrev = ::sigabbrev_np(signal());
    std::string s = "killed by ";
    s += abbrev ? std::string("SIG") + abbrev : "signal " + std::to_string(signal());
    if (core_dumped()) s += " (core dumped)";
    return s;
  }
  return "unknown status " + std::to_string(status_);
}

ExitStatus ExitStatus::from_wait_status(int status) noexcept {
  ExitStatus s;
  s.status_ = status;
  return s;
}

}  // namespace mproc

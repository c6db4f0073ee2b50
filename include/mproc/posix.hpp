// mproc/posix.hpp — thin, checked wrappers over the process system calls, for teaching and samples.
//
// These do exactly what the system calls do, with errors turned into std::system_error (errno and the
// call's name) and statuses into ExitStatus. They are not integrated with the Reaper: posix::wait() or
// posix::waitpid(-1) can reap a child that a Process owns, after which that Process cannot learn its
// status. Use either these or Process for a given child, never both.
// Blocking: wait() and waitpid() without nohang block until a child ends (restarting on EINTR).
#pragma once

#include <sys/types.h>

#include <optional>

#include "mproc/exit_status.hpp"
#include "mproc/export.hpp"

/// Thin, checked wrappers over the process system calls (not integrated with the Reaper: see the top of
/// this header).
namespace mproc::posix {

/// fork(2) after flushing C stdio and std::cout/cerr (so buffered output is not printed twice).
/// 0 in the child, the child's pid in the parent. std::system_error on failure.
MPROC_API pid_t fork();

/// What wait() and waitpid() return: which child ended, and how.
struct WaitResult {
  pid_t pid;          ///< the child that ended
  ExitStatus status;  ///< how it ended
};
/// Wait for any child. std::system_error(ECHILD) when there is none.
MPROC_API WaitResult wait();
/// Wait for pid (-1: any child). With nohang: nullopt when nothing has ended yet.
/// std::system_error(ECHILD) when pid is not a child (or there is none).
MPROC_API std::optional<WaitResult> waitpid(pid_t pid, bool nohang = false);
/// _exit(2): end now, without atexit handlers or flushing stdio.
[[noreturn]] MPROC_API void exit_now(int status);

/// getpid(2): this process's pid. Never throws.
MPROC_API pid_t getpid();
/// getppid(2): the parent's pid (the subreaper's or init's once the parent has died). Never throws.
MPROC_API pid_t getppid();
/// nice(2): add increment to this process's niceness; returns the new niceness. std::system_error
/// (EPERM) when lowering it without privilege.
MPROC_API int nice(int increment);
/// getpriority(PRIO_PROCESS, pid): the niceness of pid (0: this process).
MPROC_API int get_priority(pid_t pid = 0);
/// setpriority(PRIO_PROCESS, pid, value).
MPROC_API void set_priority(int value, pid_t pid = 0);

}  // namespace mproc::posix

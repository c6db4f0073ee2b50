// src/reaper_internal.hpp — what the layers above (process, later pool and spawn) use of the reaper.
// The registry of owned children lives in reaper.cpp; nothing else in mproc calls waitpid on a child.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "mproc/exit_status.hpp"
#include "posix/fd.hpp"

namespace mproc::detail {

/// What the reaper and the owner of one child (a Process, a pool worker, ...) share.
struct ChildHandle {
  explicit ChildHandle(pid_t p) : pid(p) {}
  const pid_t pid;
  /// Readable once the child ended: a pidfd, or the read end of a pipe only the child holds; empty for
  /// an adopted child on a kernel without pidfds.
  posix::UniqueFd sentinel;
  bool sentinel_is_pidfd = false;
  /// Set (release) once reaped; raw_status is valid after ended reads true (acquire).
  std::atomic<bool> ended{false};
  /// The child was reaped by foreign code (a waitpid(-1) outside mproc): its status is unknown.
  std::atomic<bool> lost{false};
  int raw_status = 0;
  ExitStatus status() const noexcept { return ExitStatus::from_wait_status(raw_status); }
};

/// Descriptive data about an owned child.
struct ChildInfo {
  std::string name;
  bool daemon = false;
  /// A Process child: joined (non-daemon) or terminated (daemon) at normal exit of this process.
  bool process = false;
  /// Not a Process (a spawned program), but terminated like a daemon at normal exit of this process
  /// (SIGTERM, SIGKILL after 1 s). False for detached programs, which are left running.
  bool terminate_at_exit = false;
};

/// Own a child that this process just forked. lifeline: the write end of a daemon child's lifeline
/// pipe, kept open until the child is reaped. Never throws after the child is registered.
std::shared_ptr<ChildHandle> own_child(pid_t pid, ChildInfo info, posix::UniqueFd sentinel, bool is_pidfd,
                                       posix::UniqueFd lifeline = {},
                                       std::function<void(pid_t, ExitStatus)> on_exit = {});

/// Keep fd from leaking into children forked by other threads until forget_in_children(fd): every
/// child forked meanwhile closes it first thing (pthread_atfork). Used for lifeline write ends between
/// pipe2() and own_child().
void close_in_children(int fd);
void forget_in_children(int fd);

/// Reap h if it has ended. True if it has ended (now or earlier), also when it was lost.
bool poll_child(ChildHandle& h);
/// Wait until h ended (and reap it) or the deadline passes. True if it ended.
bool wait_child(ChildHandle& h, const posix::Deadline& deadline);
/// Send sig unless the child has been reaped (by pidfd when there is one, so a recycled pid is never
/// hit). std::system_error for errors other than "already gone".
void signal_child(ChildHandle& h, int sig);

/// Reap every owned child that ended; in subreaper mode also re-parented orphans. How many reaped.
std::size_t sweep();

struct LiveChild {
  pid_t pid;
  ChildInfo info;
};
/// Owned children not yet reaped (after a sweep).
std::vector<LiveChild> live_children();

/// Number of mproc's own background reaper threads running (0 or 1).
int reaper_threads() noexcept;

}  // namespace mproc::detail

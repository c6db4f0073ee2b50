// mproc/reaper.hpp — the zombie-reaping layer.
//
// A child that has ended stays a zombie (state Z in ps) until its parent waits for it. mproc owns every
// child it starts (Process, and later Pool workers, async children and spawned programs) in one
// registry, and reaps each exactly once:
//   * ReapMode::on_demand (default): owned children are reaped inside mproc calls (join, is_alive,
//     exitcode, active_children, start, Reaper::reap, ...), never asynchronously;
//   * ReapMode::background: a dedicated thread waits on the children's pidfds and reaps each within
//     100 ms of its end.
// The reaper only ever waits on pids it owns, one waitpid(pid, WNOHANG) each (never waitpid(-1) unless
// become_subreaper() was called): children of std::system, a raw fork() or another library keep their
// exit status for their own waitpid.
//
// Thread-safety: every function may be called from any thread. Fork-safety: the registry's lock is
// taken around fork() (pthread_atfork), so a child of a multi-threaded parent never finds it locked;
// the child starts with an empty registry (its parent's children are not its own).
#pragma once

#include <sys/types.h>
#include <unistd.h>

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mproc/detail/target.hpp"
#include "mproc/exit_status.hpp"
#include "mproc/export.hpp"

namespace mproc {

/// When owned children are reaped: on_demand (the default) inside mproc calls, background on a thread
/// (see the top of this header).
enum class ReapMode { on_demand, background };

/// The registry that owns every child mproc starts and reaps each exactly once (see the top of this
/// header). One per process: Reaper::instance().
class MPROC_API Reaper {
 public:
  /// The process-wide reaper (never destroyed, so it outlives static destructors and atexit hooks).
  static Reaper& instance();

  /// Switch modes. background starts the reaping thread (std::system_error if it cannot); on_demand
  /// stops and joins it.
  void set_mode(ReapMode m);
  /// The current mode (on_demand until set_mode()).
  ReapMode mode() const;

  /// Non-blocking sweep: reap every owned child that has ended. Returns how many were reaped.
  /// In subreaper mode it also reaps ended orphans that were re-parented to this process.
  std::size_t reap();

  /// Own a child that other code forked: it is reaped like mproc's own, and on_exit(pid, status) runs
  /// once it is (on the thread that reaped it, outside the registry lock). UsageError if pid is not a
  /// child of this process; adopting an already owned pid replaces its callback.
  void adopt(pid_t pid, std::function<void(pid_t, ExitStatus)> on_exit = {});

  /// The recorded status of an owned child that has been reaped; nullopt if it is unknown or still
  /// running. The last 4096 statuses are kept.
  std::optional<ExitStatus> status(pid_t pid) const;

  /// Owned children not yet reaped.
  std::size_t owned() const;

  Reaper(const Reaper&) = delete;
  Reaper& operator=(const Reaper&) = delete;

 private:
  Reaper() = default;
};

/// PR_SET_CHILD_SUBREAPER: orphaned descendants re-parent to this process instead of init, and the
/// reaper reaps them too (in subreaper mode Reaper::reap() also collects ended children it does not
/// own, so a raw-fork child's status may then be taken: use it in supervisors). std::system_error on
/// failure.
MPROC_API void become_subreaper();

/// One child as /proc shows it. state: 'R' running, 'S' sleeping, 'D' disk wait, 'T' stopped,
/// 'Z' zombie, ...
struct ChildEntry {
  pid_t pid;         ///< the child
  pid_t ppid;        ///< its parent
  char state;        ///< the state letter, as above
  std::string comm;  ///< its command name (at most 15 bytes)
};
/// The children of parent, zombies included, read from /proc. Never throws for a vanishing process.
MPROC_API std::vector<ChildEntry> list_children(pid_t parent = ::getpid());
/// How many children of parent are zombies right now.
MPROC_API std::size_t count_zombies(pid_t parent = ::getpid());

namespace detail {
MPROC_API pid_t spawn_detached(std::unique_ptr<Target> fn);
}

/// Double fork: fn(args...) runs in a grandchild that is orphaned at once (its parent, our child, exits
/// and is reaped immediately), so it is never our zombie. Returns the grandchild's pid. If fn throws,
/// the grandchild prints it like a Process child and exits 1; otherwise it exits 0.
/// std::system_error if a fork fails.
template <class F, class... Args>
pid_t spawn_detached(F&& fn, Args&&... args) {
  return detail::spawn_detached(detail::make_target(std::forward<F>(fn), std::forward<Args>(args)...));
}

/// Turn the calling process into a classic daemon: fork (the original process _exit(0)s), setsid, fork
/// again (the session leader _exit(0)s, so the daemon can never acquire a terminal), chdir("/"),
/// umask(0), stdin/stdout/stderr to /dev/null. Returns in the daemon. std::system_error on failure.
MPROC_API void daemonize();

}  // namespace mproc

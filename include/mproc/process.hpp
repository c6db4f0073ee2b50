// mproc/process.hpp — Python's multiprocessing.Process for C++.
//
// A Process runs a callable in a forked child:
//
//     mproc::Process p([](int n) { std::printf("%d\n", n); }, 42);
//     p.start();              // fork; the child runs target(42), then exits 0
//     p.join();               // wait for it and reap it
//     assert(p.exitcode() == 0);
//
// In the child: target(args...) returns -> exit code 0; mproc::exit(n) -> n; an escaping exception ->
// "Process <name>:" and the exception's type and what() on stderr, exit code 1; a signal N -> -N.
// The child flushes C stdio and iostreams and ends with _exit(): it never runs the parent's atexit
// handlers or static destructors.
//
// Blocking: start() blocks only for fork(); join() blocks until the child ends, join(timeout) at most
// for timeout (monotonic clock, restarts on EINTR). The rest never blocks.
//
// Reaping: every child started here is owned by the Reaper (mproc/reaper.hpp) and reaped exactly once,
// by mproc: join(), is_alive(), exitcode() and every other mproc call reap it if it has ended; in
// ReapMode::background a thread does it as children end. No zombie is ever left behind, also when the
// Process object is destroyed without join().
//
// Threads: one Process object must not be used from two threads at once (like std::thread); different
// Process objects may be. Forking from a multi-threaded parent is supported: mproc's own locks are
// fork-safe (pthread_atfork), and glibc makes malloc and stdio usable in the child; but a lock some
// *other* thread of the parent held at the instant of fork stays locked forever in the child. Only
// async-signal-safe work is guaranteed in the child before it reaches the target. Set
// MPROC_WARN_THREADS=1 to get a warning on stderr when start() forks from a multi-threaded parent.
//
// Parent exit (normal: return from main, std::exit): daemon children are terminated (SIGTERM, then
// SIGKILL after 1 s) and reaped, then non-daemon children are joined, as Python does. Beyond Python:
// daemon children also die within a second when the parent dies by SIGKILL (each holds the read end of
// a "lifeline" pipe armed with O_ASYNC/F_SETSIG=SIGKILL; the kernel signals it when the last write
// end, held only by the parent, closes). A daemon process may not start children of its own.
//
// Trace: MPROC_TRACE=1 in the environment, or set_trace(true), prints one line per lifecycle event to
// stderr: fork, exit (with status), reaped, orphan re-parented, zombie seen; each names the pid.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "mproc/detail/target.hpp"
#include "mproc/error.hpp"
#include "mproc/exit_status.hpp"
#include "mproc/export.hpp"

/// Python's multiprocessing for C++: processes, the reaper that leaves no zombies, queues, pipes, locks,
/// shared memory and pools, with Python's names and rules.
namespace mproc {

namespace detail {
struct ProcessState;
}

/// Python's multiprocessing.Process: a callable run in a forked child (see the top of this header).
/// Movable, not copyable; a moved-from Process throws UsageError on use.
class MPROC_API Process {
 public:
  /// A Process without target: run() does nothing unless a subclass overrides it.
  Process();

  /// target(args...) runs in the child. target and args are decay-copied now, like std::thread; they
  /// reach the child through fork's copy of memory, so anything copyable (captures included) works.
  template <class F, class... Args>
    requires(!std::is_base_of_v<Process, std::remove_cvref_t<F>> &&
             std::is_invocable_v<std::decay_t<F>, std::decay_t<Args>...>)
  explicit Process(F&& target, Args&&... args) : Process() {
    set_target(detail::make_target(std::forward<F>(target), std::forward<Args>(args)...));
  }

  /// Takes over the other's child (and name, flags, target); the other is left moved-from.
  Process(Process&&) noexcept;
  /// As destroying this Process (see ~Process()), then taking over the other's child.
  Process& operator=(Process&&) noexcept;
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  /// Never throws. A daemon child still running is terminated and reaped; a non-daemon one is handed
  /// to the reaper (it keeps running and is reaped when it ends).
  virtual ~Process();

  /// The name: "Process-N" by default (N counts from 1 in each parent; "Process-1:2" for the second
  /// child of Process-1, as in Python). The child sees it in current_process().name and in
  /// `/proc/<pid>/comm` (cut to 15 bytes). May be changed at any time; a change after start() does not
  /// reach the running child.
  Process& name(std::string n);
  /// The name (see name(std::string)).
  const std::string& name() const;

  /// Daemon flag (default false). UsageError once started.
  Process& daemon(bool d);
  /// The daemon flag.
  bool daemon() const;

  /// Fork the child and run run() in it. Throws UsageError if already started or closed, or when called
  /// from a daemon process; std::system_error if fork fails (nothing is left behind).
  void start();

  /// Block until the child ended, then reap it. UsageError before start, after close, or from a process
  /// that is not the child's parent.
  void join();

  /// As join(), but wait at most timeout. True if the child ended (and was reaped) in time.
  template <class Rep, class Period>
  bool join(std::chrono::duration<Rep, Period> timeout) {
    return join_for(detail::to_nanoseconds(timeout));
  }

  /// True between start() and the child's end; reaps it if it ended. UsageError after close.
  bool is_alive();

  /// The child's pid; nullopt before start.
  std::optional<pid_t> pid() const;

  /// nullopt before start and while running; else the exit code, or -N if killed by signal N.
  /// Reaps the child if it has ended. UsageError after close.
  std::optional<int> exitcode();

  /// As exitcode(), with the whole status. UsageError after close.
  std::optional<ExitStatus> exit_status();

  /// Send SIGTERM (kill: SIGKILL), through the pidfd where the kernel has pidfds, so a recycled pid is
  /// never hit. No-op once the child has ended. UsageError before start or after close.
  void terminate();
  /// As terminate(), with SIGKILL.
  void kill();

  /// Release the sentinel. UsageError if the child is still running. A second close() does nothing;
  /// after close every other call but name()/daemon() getters throws UsageError.
  void close();

  /// An fd that becomes readable once the child has ended (a pidfd; on kernels without pidfds a pipe
  /// only the child holds). Valid until close(). Use with poll/epoll/mproc::wait; do not close it.
  /// UsageError before start or after close.
  int sentinel() const;

 protected:
  /// Runs in the child. Default: target(args...). Subclasses may override it.
  virtual void run();

 private:
  void set_target(std::unique_ptr<detail::Target> t);
  void release_child() noexcept;
  bool join_for(std::chrono::nanoseconds timeout);
  std::unique_ptr<detail::ProcessState> st_;
};

/// Who a process is, as current_process(), parent_process() and active_children() report it.
struct ProcessInfo {
  std::string name;  ///< "MainProcess", or the name its Process had at start()
  pid_t pid;         ///< its pid
  bool daemon;       ///< its daemon flag (false for the main process)
};

/// This process: "MainProcess" in the main program; in a child, its Process's name and daemon flag.
MPROC_API ProcessInfo current_process();
/// The process that started this one; nullopt in the main process.
MPROC_API std::optional<ProcessInfo> parent_process();
/// Live children started by mproc (Process, and later Pool and async); reaps ended ones first.
MPROC_API std::vector<ProcessInfo> active_children();
/// Online CPUs.
MPROC_API unsigned cpu_count();
/// CPUs this process may run on (its affinity mask).
MPROC_API unsigned process_cpu_count();
/// In a child: flush C stdio and iostreams, run this process's on_exit hooks, join its own
/// non-daemon children and terminate its daemons, then _exit(code): nothing of the parent's atexit
/// handlers or static destructors runs. In the main process: std::exit(code).
[[noreturn]] MPROC_API void exit(int code);
/// Turn lifecycle trace lines on or off (MPROC_TRACE=1 in the environment turns them on at start).
MPROC_API void set_trace(bool on);

}  // namespace mproc

// mproc/spawn.hpp — external programs, the way Node's child_process starts them.
//
//     auto r = mproc::exec("echo out; echo err 1>&2; exit 3");    // through /bin/sh -c
//     // r.out == "out\n", r.err == "err\n", r.status.exitcode() == 3
//
//     auto sorter = mproc::spawn("sort", {});                     // stdin, stdout, stderr are pipes
//     sorter.write("pear\napple\n");
//     sorter.close_stdin();                                       // sort sees EOF and prints
//     while (auto line = sorter.read_line_stdout()) std::cout << *line << '\n';
//     sorter.wait();                                              // exited with code 0
//
// What it is: spawn() starts a program (fork+exec on Boost.Process v2's launcher) and returns a
// ChildProcess with its pipes; exec() and exec_file() run one to the end and return what it printed.
// A `file` without '/' is looked up in PATH (the PATH of options.env when that is given and has one,
// else ours; "/bin:/usr/bin" when there is none), like execvp: a file found but not executable is
// skipped, and EACCES is reported only if nothing executable is found.
//
// The child starts clean: it sees only fds 0, 1, 2 (and fd 3, the IPC channel, with ipc = true) —
// nothing the parent opened leaks, CLOEXEC or not; signal handlers are back to SIG_DFL and the signal
// mask is empty (libuv does the same); signals we ignore stay ignored, as exec keeps them, except
// SIGPIPE and SIGXFSZ, which are reset (Python's restore_signals); it is in our process group (its own
// session with detached = true). argv[0] is `file` as given (Node and Python do the same).
//
// Reaping: every child is owned by mproc's reaper (mproc/reaper.hpp), the same as a Process: it is
// waited for by pid/pidfd only, never with waitpid(-1) or a SIGCHLD handler, so std::system() and your
// own fork/waitpid keep working beside it. A ChildProcess destroyed while its program runs closes its
// pipe ends (a program still writing to them gets EPIPE/SIGPIPE; one reading stdin sees EOF) and hands
// it to the reaper, which reaps it when it ends. At normal exit of this process, children that are
// still running get SIGTERM, then SIGKILL after 1 s, and are reaped — they die with their parent —
// except `detached` ones, which keep running in their own session. If this process is killed by
// SIGKILL, non-detached programs are orphaned (an exec'd program cannot carry mproc's lifeline).
//
// Blocking and the pipe deadlock: a child blocks when a pipe to us is full (64 KiB) and nobody reads
// it. So every blocking ChildProcess call keeps all of the child's pipes moving: while write() waits for
// room in stdin, or read_*_stdout waits for stdout, or wait() waits for the end, whatever arrives on
// stdout and stderr is kept in memory for the read_* calls. Nothing is lost and nothing deadlocks; the
// price is memory for output you never read — pass Stdio::ignore for streams you do not want.
// exec()/exec_file() read both streams to the end with the same loop, capped by max_buffer.
//
// Signals: write() never raises SIGPIPE (it is blocked and consumed around the write); a closed stdin
// throws std::system_error(EPIPE). Every blocking call restarts on EINTR and keeps its deadline on the
// monotonic clock.
//
// Threads: a ChildProcess is not meant for concurrent use; guard it with a mutex to share it. Different
// ChildProcess objects may be used from different threads. spawn() may be called from any thread: the
// launch blocks every signal of the calling thread around a vfork-style start and the child resets them.
//
// Fork: a ChildProcess belongs to the process that spawned it. In a child forked afterwards (a
// Process), it must not be used (its program is not that child's child); its fds are closed there only
// by exec or exit. parent_channel() is for the spawned program's side.
//
// Errors: a program that cannot be started (missing, not executable, bad cwd) throws SpawnError, whose
// code() is the errno (ENOENT, EACCES, ENOTDIR, ...) and whose message names the program; nothing is
// left running or unreaped. Misuse (reading a stream that is not a pipe, writing after close_stdin,
// channel() without ipc, any call on a moved-from ChildProcess) throws UsageError. OS failures throw
// std::system_error with the errno.
#pragma once
#include <sys/types.h>

#include <chrono>
#include <csignal>
#include <cstddef>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mproc/connection.hpp"
#include "mproc/error.hpp"
#include "mproc/exit_status.hpp"
#include "mproc/export.hpp"

namespace mproc {
namespace detail {
struct ChildProcessAccess;
}

/// What one of the child's standard streams is connected to.
///   pipe:    a pipe to the ChildProcess (write() / read_*()),
///   inherit: the same file as this process's stream,
///   ignore:  /dev/null.
enum class Stdio { pipe, inherit, ignore };

/// Options of spawn(). Designated initializers read like Node's options: `{.cwd = "/tmp", .ipc = true}`.
struct SpawnOptions {
  /// Working directory of the child; empty: ours. A relative `file` containing '/' is resolved from it.
  std::filesystem::path cwd{};
  /// The child's whole environment (it replaces ours); nullopt: ours, as it is at the call.
  std::optional<std::map<std::string, std::string>> env{};
  /// The child's stdin, stdout and stderr (default: a pipe each).
  ///@{
  Stdio in = Stdio::pipe, out = Stdio::pipe, err = Stdio::pipe;
  ///@}
  /// Own session (setsid): no controlling terminal, not in our process group, and left running at our
  /// exit (neither killed nor waited for). Still reaped by us if it ends while we run.
  bool detached = false;
  /// An extra message channel: ChildProcess::channel() here, mproc::parent_channel() in the child. The
  /// child's end is fd 3, and its number travels in the MPROC_IPC_FD environment variable.
  bool ipc = false;
};

/// A running (or ended) external program started by spawn(). Move-only; a default-constructed or
/// moved-from ChildProcess is empty and every call on it but the destructor throws UsageError.
class MPROC_API ChildProcess {
 public:
  ChildProcess() noexcept;
  /// Takes over o's program and pipes; o becomes empty.
  ChildProcess(ChildProcess&& o) noexcept;
  /// Takes over o's program and pipes (what this held is handed to the reaper, as by the destructor).
  ChildProcess& operator=(ChildProcess&& o) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  /// Closes our pipe ends and the channel; a running program is handed to the reaper (see the top of
  /// this header). Never blocks, never throws.
  ~ChildProcess();

  /// The child's pid (it stays valid as a number after the end; the reaper never signals a reaped pid).
  pid_t pid() const;

  /// Write all of data to the child's stdin. Blocks until it is written, reading stdout/stderr into
  /// memory meanwhile (so a child that answers as it reads never deadlocks us). Throws UsageError if
  /// stdin is not a pipe or was closed; std::system_error(EPIPE) if the child closed its stdin or ended.
  void write(std::string_view data);
  /// Close our end of stdin: the child reads EOF. A second call does nothing. UsageError if stdin is
  /// not a pipe.
  void close_stdin();

  /// The next line of stdout without its '\n'; a last line without '\n' is returned as it is; nullopt at
  /// EOF. Blocks until a line or EOF arrives (stderr keeps being read into memory meanwhile).
  /// UsageError if stdout is not a pipe.
  std::optional<std::string> read_line_stdout();
  /// The same for stderr (an mproc extra).
  std::optional<std::string> read_line_stderr();
  /// Everything not yet returned from stdout, up to EOF (the child closed it, usually by ending). Blocks
  /// until EOF; reads stderr into memory meanwhile, so both streams may be large. "" once at EOF.
  /// UsageError if stdout is not a pipe.
  std::string read_all_stdout();
  /// The same for stderr.
  std::string read_all_stderr();

  /// Wait for the program to end and return how it ended; again after the end, the recorded status.
  /// Keeps reading stdout/stderr into memory while it waits (no pipe deadlock).
  ExitStatus wait();
  /// Wait at most timeout: the status, or nullopt if it is still running. Deadline on the monotonic
  /// clock; a zero or negative timeout just looks.
  template <class R, class P>
  std::optional<ExitStatus> wait(std::chrono::duration<R, P> timeout) {
    return wait_for(to_nanoseconds(timeout));
  }
  /// True until the program has ended (reaps it if it has). Never blocks.
  bool running();
  /// Send signo (by pidfd where the kernel has them, so a recycled pid is never hit). Does nothing once
  /// the program has ended and been reaped. std::system_error for errors other than "already gone"
  /// (EINVAL for a bad signal number).
  void kill(int signo = SIGTERM);

  /// The IPC channel (spawn with ipc = true): `send<T>`/`recv<T>` as on any Connection. UsageError without
  /// ipc. The Connection stays usable after the ChildProcess is gone if you copied it.
  Connection& channel();

 private:
  struct Impl;
  explicit ChildProcess(std::unique_ptr<Impl> impl) noexcept;
  template <class R, class P>
  static std::chrono::nanoseconds to_nanoseconds(std::chrono::duration<R, P> d) {
    if (d <= std::chrono::duration<R, P>::zero()) return std::chrono::nanoseconds::zero();
    if (d >= std::chrono::duration_cast<std::chrono::duration<R, P>>(std::chrono::hours(24 * 365 * 100)))
      return std::chrono::nanoseconds::max();
    return std::chrono::ceil<std::chrono::nanoseconds>(d);
  }
  std::optional<ExitStatus> wait_for(std::chrono::nanoseconds timeout);
  friend struct detail::ChildProcessAccess;
  std::unique_ptr<Impl> impl_;
};

/// Start `file` with arguments args (argv[0] is file itself, as given). Returns once the program is
/// running (exec succeeded). Throws SpawnError (code() = errno) if it cannot be started — missing
/// (ENOENT), not executable (EACCES), cwd missing (ENOENT/ENOTDIR) — with nothing left behind;
/// UsageError for an empty file or an env key that is empty or contains '='; std::system_error if the
/// OS refuses a pipe or the fork.
MPROC_API ChildProcess spawn(const std::string& file, const std::vector<std::string>& args,
                             SpawnOptions options = {});

/// Options of exec() and exec_file().
struct ExecOptions {
  std::filesystem::path cwd{};                              ///< as SpawnOptions::cwd
  std::optional<std::map<std::string, std::string>> env{};  ///< as SpawnOptions::env
  /// Written to the child's stdin, which is then closed (empty: stdin is closed at once).
  std::string input{};
  /// Past it, kill_signal is sent to the child, timed_out is set, and exec returns once the child has
  /// ended (without waiting for EOF from programs the child left behind). nullopt: no limit.
  std::optional<std::chrono::milliseconds> timeout{};
  int kill_signal = SIGTERM;  ///< sent at the timeout and past max_buffer
  /// Per stream: once stdout or stderr passed this many bytes, the child is sent kill_signal, truncated is
  /// set, and that stream keeps exactly max_buffer bytes.
  std::size_t max_buffer = 1024 * 1024;
};

/// What exec() and exec_file() return. A non-zero exit is not an exception: look at status.
struct ExecResult {
  ExitStatus status{};  ///< how the program ended
  /// What it wrote to stdout and stderr (at most max_buffer bytes each).
  ///@{
  std::string out{}, err{};
  ///@}
  bool timed_out = false;  ///< the timeout passed and kill_signal was sent
  bool truncated = false;  ///< a stream passed max_buffer and kill_signal was sent
};

/// Run command through /bin/sh -c and return its status and output (Node's exec). Throws SpawnError if
/// /bin/sh cannot be started (a command the shell cannot find is exit code 127, not an exception);
/// std::system_error on OS failures. Blocks until the program ended and its output is read.
MPROC_API ExecResult exec(const std::string& command, ExecOptions options = {});
/// Run file with args directly, no shell (Node's execFile); PATH lookup as spawn(). Throws SpawnError if
/// file cannot be started.
MPROC_API ExecResult exec_file(const std::string& file, const std::vector<std::string>& args,
                               ExecOptions options = {});

/// In a program started by spawn() with ipc = true: the channel to the parent (the fd named by
/// MPROC_IPC_FD, marked CLOEXEC and removed from the environment on the first call, so the program's own
/// children do not inherit it). Later calls return a copy of the same Connection. nullopt when this
/// program was not started with ipc (no MPROC_IPC_FD). Throws mproc::Error if MPROC_IPC_FD is set but
/// names no open socket. Thread-safe.
MPROC_API std::optional<Connection> parent_channel();

}  // namespace mproc

// mproc/this_process.hpp — Node's `process` object, for the current process.
//
// Information (pid, argv from /proc/self/cmdline, exec path, cwd, environment, memory use from
// /proc/self/statm) and two kinds of hooks:
//   * on_exit(fn): fn(code) runs at normal exit (return from main, std::exit, mproc::exit) with the exit
//     code, like Node's 'exit' event. Hooks registered in a parent do not run in its forked children.
//   * on_signal(signo, fn): fn(signo) runs on an ordinary dispatcher thread (not in signal context), so
//     it may lock, allocate and log. The signal handler only writes to a self-pipe.
// Both return a Subscription: destroying it unsubscribes (the last on_signal subscription of a signal
// restores its previous disposition; the last one overall stops the dispatcher thread).
// Thread-safety: every function may be called from any thread; getenv/setenv/chdir change
// process-wide state (as the C functions do). In a forked child the parent's signal subscriptions are
// gone and their signals are back to SIG_DFL.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mproc/export.hpp"

/// The current process, as Node's `process` object: information, environment, exit and signal hooks.
namespace mproc::this_process {

/// This process's pid (getpid). Never throws.
MPROC_API pid_t pid();
/// The parent's pid (getppid): the subreaper's or init's once the parent has died. Never throws.
MPROC_API pid_t ppid();
/// The command line, from /proc/self/cmdline. std::system_error if /proc is not mounted.
MPROC_API std::vector<std::string> argv();
/// The executable, from /proc/self/exe.
MPROC_API std::filesystem::path exec_path();
/// The working directory. std::filesystem::filesystem_error (a std::system_error) if it cannot be
/// read, e.g. ENOENT once it has been removed.
MPROC_API std::filesystem::path cwd();
/// std::system_error (e.g. ENOENT) on failure.
MPROC_API void chdir(const std::filesystem::path& dir);
/// The value of the environment variable name; nullopt if it is not set.
MPROC_API std::optional<std::string> getenv(std::string_view name);
/// std::system_error (EINVAL) for an empty name or one containing '='.
MPROC_API void setenv(std::string_view name, std::string_view value);
/// A copy of the whole environment, name to value.
MPROC_API std::map<std::string, std::string> env();

/// Bytes: resident set, virtual size, resident shared pages.
struct MemoryUsage {
  /// In bytes: rss the resident set, vms the virtual size, shared the resident shared pages.
  ///@{
  std::size_t rss, vms, shared;
  ///@}
};
/// This process's memory use, from /proc/self/statm. std::system_error (EIO) if it cannot be read.
MPROC_API MemoryUsage memory_usage();

/// RAII handle of an on_exit/on_signal hook. Move-only; destroying it or reset() unsubscribes.
class MPROC_API Subscription {
 public:
  Subscription() = default;
  /// Takes over o's hook; o is left empty.
  Subscription(Subscription&& o) noexcept;
  /// Unsubscribes this one's hook (as reset()), then takes over o's.
  Subscription& operator=(Subscription&& o) noexcept;
  Subscription(const Subscription&) = delete;
  Subscription& operator=(const Subscription&) = delete;
  ~Subscription();
  /// Unsubscribe now; a second call does nothing. Removing the last on_signal subscription stops the
  /// dispatcher thread and waits for it, so for a hook it is running (not when called from a hook).
  void reset() noexcept;
  /// True while subscribed (not reset, moved from or default-constructed).
  explicit operator bool() const noexcept { return id_ != 0; }

 private:
  friend Subscription on_exit(std::function<void(int)>);
  friend Subscription on_signal(int, std::function<void(int)>);
  Subscription(int kind, std::uint64_t id) : kind_(kind), id_(id) {}
  int kind_ = 0;
  std::uint64_t id_ = 0;
};

/// fn(code) runs at normal exit of this process with the exit code, in registration order.
MPROC_API Subscription on_exit(std::function<void(int code)> fn);
/// fn(signo) runs on the dispatcher thread each time signo arrives. std::system_error if the handler
/// cannot be installed; UsageError for SIGKILL, SIGSTOP or a signal number out of range.
MPROC_API Subscription on_signal(int signo, std::function<void(int signo)> fn);

}  // namespace mproc::this_process

// src/runtime.hpp — process-wide facts every mproc module shares: the exit-hook dispatcher, whether
// this process is a child that mproc forked, and how many threads mproc itself runs here.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

#include <sys/types.h>

namespace mproc::detail {

/// Register fn(code) to run at normal exit of *this* process (hooks registered in a parent do not run
/// in its children). Returns an id for remove_exit_hook. Thread-safe and fork-safe.
std::uint64_t add_exit_hook(std::function<void(int)> fn);
void remove_exit_hook(std::uint64_t id) noexcept;

/// The last thing run at exit, after the user hooks (the reaper sets it: terminate daemons, join the
/// rest).
void set_final_exit_hook(void (*fn)()) noexcept;

/// Make sure run_exit_hooks runs at normal exit (glibc on_exit(3), which passes the exit code).
void install_exit_dispatch();

/// Run this process's exit hooks once, then the final hook. A forked child calls it itself before
/// _exit, since _exit runs no atexit/on_exit handlers.
void run_exit_hooks(int code) noexcept;

/// Threads mproc runs in this process (reaper, signal dispatcher): not counted by MPROC_WARN_THREADS.
std::atomic<int>& internal_threads() noexcept;

/// Inside a catch block: the exception in flight as its demangled type name and what() (Python's
/// "<type>: <message>"); may throw std::bad_alloc.
struct ExceptionText {
  std::string type;
  std::string what;
};
ExceptionText describe_current_exception();

/// In a forked child: run body. An escaping exception is printed to stderr as "Process <name>:" and
/// "<demangled type>: <what()>" and gives exit code 1, else the code is 0; then finish_child(code).
[[noreturn]] void run_child_and_exit(const std::string& name, const std::function<void()>& body) noexcept;
/// End a forked child: its exit hooks (own on_exit hooks, then its own children's cleanup), flush
/// stdio, _exit(code).
[[noreturn]] void finish_child(int code) noexcept;

/// getpid() without a system call (glibc stopped caching it): kept up to date by a pthread_atfork
/// child handler. For hot paths only.
pid_t current_pid() noexcept;

/// True in a process mproc forked to run a target (Process, spawn_detached grandchild).
bool in_child() noexcept;
void set_in_child() noexcept;

}  // namespace mproc::detail

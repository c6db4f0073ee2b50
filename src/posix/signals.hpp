// src/posix/signals.hpp — signal-mask guard and the child's signal reset.
#pragma once

#include <signal.h>

namespace mproc::detail::posix {

/// Blocks every signal in the calling thread for its lifetime, restoring the previous mask after.
/// Used around fork() so no handler of the parent runs in the child before its signal state is reset
/// (reproc's process_fork does the same).
class BlockAllSignals {
 public:
  BlockAllSignals() noexcept;
  ~BlockAllSignals();
  BlockAllSignals(const BlockAllSignals&) = delete;
  BlockAllSignals& operator=(const BlockAllSignals&) = delete;
  const sigset_t& previous() const noexcept { return old_; }

 private:
  sigset_t old_;
};

/// In a freshly forked child (signals still blocked): put SIGCHLD back to SIG_DFL (a parent that
/// ignores SIGCHLD would otherwise make the child's own children vanish unwaitable), then unblock every
/// signal, so terminate()/kill() and the daemon lifeline always work. Handlers the user installed stay
/// (fork semantics, as in Python); mproc's own dispatchers reset theirs in pthread_atfork handlers.
/// Async-signal-safe.
void reset_child_signals() noexcept;

/// While alive, SIGPIPE is blocked in the calling thread; a SIGPIPE raised meanwhile by our own write is
/// consumed before the old mask comes back (call epipe() after a write failed with EPIPE), so it is never
/// delivered. A SIGPIPE that was already pending before is left alone. The way for a library to write
/// to a pipe without SIGPIPE when it may not change the process's disposition: see signal(7) and
/// pthread_sigmask(3); curl's sigpipe_ignore does the same. Used by Connection and ChildProcess::write.
class SigpipeGuard {
 public:
  SigpipeGuard() noexcept;
  ~SigpipeGuard();
  SigpipeGuard(const SigpipeGuard&) = delete;
  SigpipeGuard& operator=(const SigpipeGuard&) = delete;
  void epipe() noexcept { raised_ = true; }

 private:
  sigset_t pipe_set_;
  sigset_t old_;
  bool was_pending_ = false;
  bool raised_ = false;
};

}  // namespace mproc::detail::posix

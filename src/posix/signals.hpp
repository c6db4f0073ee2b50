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

}  // namespace mproc::detail::posix

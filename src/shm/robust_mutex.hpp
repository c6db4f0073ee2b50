// src/shm/robust_mutex.hpp — a process-shared mutex that survives its owner's death.
//
// A PTHREAD_MUTEX_ROBUST, PTHREAD_PROCESS_SHARED mutex placed in shared memory. When its owner dies
// (process killed, or thread exited) while holding it, the next locker gets it with owner_died: the
// data it protects may be half-updated, and the locker must repair it, then call make_consistent()
// before unlocking. Boost.Interprocess's interprocess_mutex has no such recovery (it would hang or be
// unusable), which is why mproc uses its own.
// Timed waits use pthread_mutex_clocklock on CLOCK_MONOTONIC (a wall-clock change cannot stretch them).
#pragma once

#include <pthread.h>

#include "posix/fd.hpp"

namespace mproc::detail::shm {

enum class LockResult { acquired, owner_died, timed_out };

class RobustMutex {
 public:
  /// Initialize in place (in freshly mapped shared memory). std::system_error on failure.
  void init();
  /// As init(), but PTHREAD_MUTEX_RECURSIVE: the owning thread may lock it again, and must unlock it
  /// as many times (the RLock). After owner_died the new owner holds it once.
  void init_recursive();
  /// Block until acquired or the deadline passes.
  LockResult lock(const posix::Deadline& deadline);
  /// Block until acquired (no deadline): never timed_out.
  LockResult lock();
  /// Non-blocking: timed_out means "held by someone else".
  LockResult try_lock();
  /// After owner_died, once the protected state is repaired.
  void make_consistent() noexcept;
  void unlock() noexcept;
  /// Unlock, reporting misuse instead of ignoring it: false, and nothing changes, when the calling
  /// thread does not hold the mutex (EPERM: robust mutexes always check their owner on unlock).
  bool unlock_checked() noexcept;

 private:
  pthread_mutex_t m_;
};

}  // namespace mproc::detail::shm

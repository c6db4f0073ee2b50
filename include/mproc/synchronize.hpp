// mproc/synchronize.hpp — Python's multiprocessing synchronization primitives, shared between processes:
// Lock, RLock, Semaphore, BoundedSemaphore, Event, Condition and Barrier.
//
//     mproc::Lock lock;                               // create before starting the processes that use it
//     mproc::Process p([](mproc::Lock l) { std::lock_guard g(l); /* ... */ }, lock);
//     p.start();
//     { std::scoped_lock g(lock); /* ... */ }
//     p.join();
//
// Handles: every class here is a handle. Copies (also into children forked after construction, passed
// by value) refer to the same primitive, which lives in anonymous shared memory: nothing appears in
// /dev/shm, and the memory is gone when the last process holding a handle ends, SIGKILL included. A
// primitive created in a child is shared only with that child's own children.
//
// Blocking and time: acquire(), wait() and friends without a timeout block until done; the timed forms
// wait at most the timeout, measured on the monotonic clock (changing the wall clock does not stretch
// them), and restart on EINTR with the time that is left. try_acquire() never blocks. Sleeping is done
// by the kernel (futexes, or a robust pthread mutex), never by polling; a sleeper re-checks at least
// every 100 ms, so a waker killed half-way through waking it costs it at most that long.
//
// Locks and semaphores meet BasicLockable, Lockable and TimedLockable: std::lock_guard,
// std::unique_lock (also with try_to_lock and try_lock_for) and std::scoped_lock work with them.
//
// Owner death (beyond Python, which deadlocks): a Lock, an RLock or the lock under a Condition held by a
// process (or thread) that dies is recovered: the next acquirer gets it, and owner_died() on the lock
// tells it that the data the lock protected may be half-updated. What is NOT recovered: a Semaphore unit
// held by a process that dies is lost with it (a semaphore has no owner to detect; the others, using
// timeouts, do not hang forever); a Barrier participant that dies leaves the barrier short of a party:
// the others break it by timing out (BrokenBarrierError), and reset() then forgets the dead participant.
// Details per class below.
//
// Threads: every handle may be used from several threads at once; Lock and RLock are owned by the
// thread that acquired them (a thread of some process), not by the process. Fork: a lock held at fork
// stays held by the parent's thread; the child does not own it.
//
// Errors: misuse (releasing a lock this thread does not hold, over-releasing a BoundedSemaphore,
// waiting on a Condition without its lock) throws mproc::UsageError. Constructors throw
// std::system_error when the shared memory cannot be mapped.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>

#include "mproc/detail/target.hpp"
#include "mproc/error.hpp"
#include "mproc/export.hpp"

namespace mproc {

namespace detail {
struct LockShared;
struct SemaphoreShared;
struct EventShared;
struct ConditionShared;
struct BarrierShared;
}  // namespace detail

/// Python's multiprocessing.Lock: a non-recursive mutual-exclusion lock shared between processes, on a
/// robust, process-shared pthread mutex.
///
/// Ownership (unlike Python): the lock belongs to the thread that acquired it. Only that thread may
/// release it; release() from any other thread or process, or of a lock nobody holds, throws
/// UsageError and leaves the lock as it was (Python lets anyone release a held Lock; use a Semaphore
/// for that hand-off pattern). Acquiring it again from the thread that holds it blocks (acquire(t)
/// returns false after t), as in Python.
///
/// Owner death: if the holder dies (killed, or its thread ends) the next acquirer gets the lock at once
/// and owner_died() is true for it.
class MPROC_API Lock {
 public:
  /// std::system_error if the shared memory cannot be mapped.
  Lock();

  /// Block until acquired.
  void acquire();
  /// Block at most timeout; true if acquired.
  template <class R, class P>
  bool acquire(std::chrono::duration<R, P> timeout) {
    return acquire_for(detail::to_nanoseconds(timeout));
  }
  /// Never blocks: true if acquired now (false if anyone, this thread included, holds it).
  bool try_acquire();
  /// UsageError if the calling thread does not hold the lock.
  void release();

  /// True if the acquire that gave the current holder the lock found its previous owner dead (the
  /// protected data may be half-updated). Meaningful to the holder, right after acquiring; reset by
  /// the next ordinary acquire.
  bool owner_died() const noexcept;
  /// True if the calling thread holds the lock. Never blocks.
  bool is_owned() const noexcept;

  // BasicLockable / Lockable / TimedLockable.
  void lock() { acquire(); }                 ///< as acquire()
  void unlock() { release(); }               ///< as release()
  bool try_lock() { return try_acquire(); }  ///< as try_acquire()
  /// As acquire(timeout).
  template <class R, class P>
  bool try_lock_for(std::chrono::duration<R, P> timeout) {
    return acquire(timeout);
  }
  /// As acquire(timeout), with the time left until t on t's clock (then waited on the monotonic clock).
  template <class C, class D>
  bool try_lock_until(std::chrono::time_point<C, D> t) {
    return acquire(t - C::now());
  }

 private:
  bool acquire_for(std::chrono::nanoseconds timeout);
  std::shared_ptr<detail::LockShared> s_;
};

/// Python's multiprocessing.RLock: a recursive lock owned by a (process, thread). The owner may acquire
/// it again; it is free once released as many times as acquired. release() by a thread that does not
/// own it (another thread, another process, or nobody holds it) throws UsageError.
///
/// Owner death: if the owner dies holding it (at any depth), the next acquirer gets it once, with
/// owner_died() true.
class MPROC_API RLock {
 public:
  /// std::system_error if the shared memory cannot be mapped.
  RLock();

  /// Block until acquired (immediate if this thread owns it).
  void acquire();
  /// Block at most timeout; true if acquired (at once if this thread owns it).
  template <class R, class P>
  bool acquire(std::chrono::duration<R, P> timeout) {
    return acquire_for(detail::to_nanoseconds(timeout));
  }
  /// Never blocks: true if acquired (or re-entered) now.
  bool try_acquire();
  /// Undo one acquire. UsageError if the calling thread does not own the lock.
  void release();

  /// As Lock::owner_died(): true if the holder got the lock from a dead owner (re-entries keep it).
  bool owner_died() const noexcept;
  /// True if the calling thread owns the lock. Never blocks.
  bool is_owned() const noexcept;

  void lock() { acquire(); }                 ///< as acquire()
  void unlock() { release(); }               ///< as release()
  bool try_lock() { return try_acquire(); }  ///< as try_acquire()
  /// As acquire(timeout).
  template <class R, class P>
  bool try_lock_for(std::chrono::duration<R, P> timeout) {
    return acquire(timeout);
  }
  /// As acquire(timeout), with the time left until t on t's clock (then waited on the monotonic clock).
  template <class C, class D>
  bool try_lock_until(std::chrono::time_point<C, D> t) {
    return acquire(t - C::now());
  }

 private:
  bool acquire_for(std::chrono::nanoseconds timeout);
  std::shared_ptr<detail::LockShared> s_;
};

/// Python's multiprocessing.Semaphore: a counter; acquire() takes a unit (blocking while there is
/// none), release() gives one back (from any thread or process: units have no owner). On an atomic
/// counter in shared memory; sleepers wait on a futex, woken one per released unit.
///
/// Owner death: not recoverable. A unit taken by a process that dies is gone; waiters using a timeout
/// get false instead of hanging forever.
class MPROC_API Semaphore {
 public:
  /// std::system_error if the shared memory cannot be mapped.
  explicit Semaphore(unsigned value = 1);

  /// Take a unit; blocks while there is none.
  void acquire();
  /// Block at most timeout; true if a unit was taken.
  template <class R, class P>
  bool acquire(std::chrono::duration<R, P> timeout) {
    return acquire_for(detail::to_nanoseconds(timeout));
  }
  /// Never blocks: true if a unit was taken now.
  bool try_acquire();
  /// Give back one unit. Semaphore: UsageError only if the counter would overflow (2^32 - 1).
  /// BoundedSemaphore: UsageError if the value would exceed the initial value.
  void release();
  /// The current value (a snapshot: others may change it at once).
  unsigned get_value() const noexcept;

  void lock() { acquire(); }                 ///< as acquire()
  void unlock() { release(); }               ///< as release()
  bool try_lock() { return try_acquire(); }  ///< as try_acquire()
  /// As acquire(timeout).
  template <class R, class P>
  bool try_lock_for(std::chrono::duration<R, P> timeout) {
    return acquire(timeout);
  }
  /// As acquire(timeout), with the time left until t on t's clock (then waited on the monotonic clock).
  template <class C, class D>
  bool try_lock_until(std::chrono::time_point<C, D> t) {
    return acquire(t - C::now());
  }

 protected:
  /// value units; bounded: release() past value throws UsageError (BoundedSemaphore). std::system_error
  /// if the shared memory cannot be mapped.
  Semaphore(unsigned value, bool bounded);

 private:
  bool acquire_for(std::chrono::nanoseconds timeout);
  std::shared_ptr<detail::SemaphoreShared> s_;
};

/// Python's multiprocessing.BoundedSemaphore: a Semaphore whose release() past the initial value
/// throws UsageError (and changes nothing).
class MPROC_API BoundedSemaphore : public Semaphore {
 public:
  /// value units, and at most value. std::system_error if the shared memory cannot be mapped.
  explicit BoundedSemaphore(unsigned value = 1);
};

/// Python's multiprocessing.Event: a flag that processes wait for. set() wakes every waiter.
/// wait() returns true once the flag is set, also when it was set and cleared again while the caller
/// slept (the set is not missed); false only when the timeout passed with no set() at all.
///
/// Owner death: nothing to recover (an Event has no owner); a setter killed mid-set() either set the
/// flag or did not.
class MPROC_API Event {
 public:
  /// std::system_error if the shared memory cannot be mapped.
  Event();
  /// The flag, now. Never blocks.
  bool is_set() const noexcept;
  /// Set the flag and wake every waiter. Never blocks; a second set() does nothing.
  void set() noexcept;
  /// Reset the flag: wait() blocks again until the next set(). Never blocks.
  void clear() noexcept;
  /// Block until set.
  bool wait();
  /// Block at most timeout; true if set (see above), false on timeout.
  template <class R, class P>
  bool wait(std::chrono::duration<R, P> timeout) {
    return wait_for_ns(detail::to_nanoseconds(timeout));
  }

 private:
  bool wait_for_ns(std::optional<std::chrono::nanoseconds> timeout);
  std::shared_ptr<detail::EventShared> s_;
};

/// Python's multiprocessing.Condition, over a Lock (a new one by default; pass one to share it).
/// wait() and notify() need the lock held by the calling thread (UsageError otherwise).
///
/// notify(n) wakes exactly n of the threads waiting at that moment (all of them if fewer), oldest
/// first; later waiters are not woken by it. Waiters are registered in shared memory under the lock
/// and each sleeps on its own futex word, so a notify is a hand-off, never a broadcast. A timed wait
/// that runs out at the same time as a notify returns true if the notify came first (decided under the
/// lock), so notify(n) never counts a waiter that goes on to report a timeout.
///
/// Owner death: the lock is recovered as Lock's is (owner_died() after acquire(), also after wait()
/// re-acquired it). A waiter that dies while waiting is skipped by later notifies (its death is seen
/// through a robust mutex it holds while registered), so its death does not swallow a wake-up.
/// At most 1024 threads may wait on one Condition at once (mproc::Error beyond that).
class MPROC_API Condition {
 public:
  /// A Condition over its own new Lock. std::system_error if the shared memory cannot be mapped.
  Condition();
  /// A Condition over lock (a handle: the same lock others may hold directly).
  explicit Condition(Lock lock);

  void acquire() { lock_.acquire(); }  ///< the lock's Lock::acquire()
  /// The lock's Lock::acquire(timeout).
  template <class R, class P>
  bool acquire(std::chrono::duration<R, P> timeout) {
    return lock_.acquire(timeout);
  }
  bool try_acquire() { return lock_.try_acquire(); }               ///< the lock's Lock::try_acquire()
  void release() { lock_.release(); }                              ///< the lock's Lock::release()
  bool owner_died() const noexcept { return lock_.owner_died(); }  ///< the lock's Lock::owner_died()
  void lock() { lock_.acquire(); }                                 ///< as acquire()
  void unlock() { lock_.release(); }                               ///< as release()
  bool try_lock() { return lock_.try_acquire(); }                  ///< as try_acquire()
  /// The Lock under this condition.
  Lock get_lock() const { return lock_; }

  /// Release the lock, sleep until notified, re-acquire the lock (blocking, whatever the timeout).
  /// UsageError if the calling thread does not hold the lock.
  void wait() { wait_ns(std::nullopt); }
  /// As wait(), at most timeout: true if notified, false on timeout.
  template <class R, class P>
  bool wait(std::chrono::duration<R, P> timeout) {
    return wait_ns(detail::to_nanoseconds(timeout));
  }
  /// Wait until pred() is true (checked first, and after every wake-up, with the lock held).
  template <class Pred>
  void wait_for(Pred pred) {
    while (!pred()) wait();
  }
  /// As wait_for(pred), at most timeout in all; returns pred()'s last value.
  template <class Pred, class R, class P>
  bool wait_for(Pred pred, std::chrono::duration<R, P> timeout) {
    const auto end = std::chrono::steady_clock::now() + detail::to_nanoseconds(timeout);
    bool result = pred();
    while (!result) {
      const auto left = end - std::chrono::steady_clock::now();
      if (left <= std::chrono::steady_clock::duration::zero()) break;
      wait(left);
      result = pred();
    }
    return result;
  }

  /// Wake n of the current waiters (all if fewer). UsageError if the lock is not held by this thread.
  void notify(std::size_t n = 1);
  /// Wake every current waiter. UsageError if the lock is not held by this thread.
  void notify_all();

 private:
  bool wait_ns(std::optional<std::chrono::nanoseconds> timeout);
  Lock lock_;
  std::shared_ptr<detail::ConditionShared> s_;
};

/// Python's multiprocessing.Barrier: parties threads (of any processes) wait() until all have arrived,
/// then all go on. wait() returns an index in [0, parties), distinct within a pass; the action, if any,
/// runs once per pass, in the process of the last to arrive, before anyone is released (an exception
/// from it breaks the barrier and reaches that caller). Each process runs its own copy of the action
/// (given to the constructor before the fork).
///
/// Broken (BrokenBarrierError from wait(), for every waiter): abort(), reset() while parties wait, or a
/// wait() that times out (the constructor's timeout, or wait(timeout)): as in Python, a timeout breaks
/// the barrier for everybody. Once broken it stays broken until reset().
///
/// Owner death: a participant that dies while waiting leaves the others short of a party; they break
/// the barrier by timing out (without a timeout they would wait forever, as in Python). reset() then
/// forgets the dead participant (its death is seen through a robust mutex it holds while waiting). A
/// process dying while it holds the barrier's internal lock (during the action, for instance) breaks
/// the barrier.
class MPROC_API Barrier {
 public:
  /// UsageError if parties is 0; std::system_error if the shared memory cannot be mapped.
  explicit Barrier(std::size_t parties, std::function<void()> action = {},
                   std::optional<std::chrono::nanoseconds> timeout = {});

  /// Wait for the others, at most the constructor's timeout. BrokenBarrierError if broken meanwhile.
  std::size_t wait();
  /// As wait(), at most timeout (instead of the constructor's).
  template <class R, class P>
  std::size_t wait(std::chrono::duration<R, P> timeout) {
    return wait_ns(detail::to_nanoseconds(timeout));
  }
  /// Back to the initial state; waiters get BrokenBarrierError.
  void reset();
  /// Break the barrier: waiters now and later get BrokenBarrierError until reset().
  void abort();

  /// The number of parties, as constructed.
  std::size_t parties() const noexcept;
  /// Parties waiting in the current pass (0 while it drains or is broken).
  std::size_t n_waiting() const;
  /// True once broken, until reset().
  bool broken() const;

 private:
  std::size_t wait_ns(std::optional<std::chrono::nanoseconds> timeout);
  std::shared_ptr<detail::BarrierShared> s_;
};

}  // namespace mproc

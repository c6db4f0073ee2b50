// The synchronization primitives (mproc/synchronize.hpp): each handle holds a process-local shared_ptr
// to an anonymous shared segment (shm::AnonymousSegment) with the primitive's state in it. The design,
// the memory layouts and what survives a crash are in docs/design/sync.md.
#include "mproc/synchronize.hpp"

#include <pthread.h>
#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>
#include <limits>
#include <new>
#include <string>

#include "mproc/error.hpp"
#include "posix/fd.hpp"
#include "shm/futex.hpp"
#include "shm/robust_mutex.hpp"
#include "shm/segment.hpp"

namespace mproc {

namespace shm = detail::shm;

namespace {

using u32 = std::uint32_t;
using u64 = std::uint64_t;
using shm::LockResult;
using shm::RobustMutex;

// Sleepers re-check at least this often: a waker killed between publishing its change and the futex
// wake costs a sleeper at most one slice (the same bound as the queue's ring).
constexpr std::chrono::nanoseconds kSlice = std::chrono::milliseconds(100);

// The calling thread's kernel thread id, cached: gettid() is a system call on every glibc, too slow for
// the lock's fast path. A forked child's only thread inherits the forking thread's cached value but has
// a different tid, so a pthread_atfork child handler (which runs in exactly that thread) clears the
// cache. initial-exec TLS: one instruction to reach it, where the default model for position-
// independent code calls __tls_get_addr (libmproc is never dlopen'ed).
__attribute__((tls_model("initial-exec"))) thread_local pid_t t_tid = 0;

[[gnu::noinline]] pid_t fetch_tid() noexcept {
  static const bool registered = [] {
    ::pthread_atfork(nullptr, nullptr, [] { t_tid = 0; });
    return true;
  }();
  (void)registered;
  t_tid = ::gettid();
  return t_tid;
}

inline pid_t current_tid() noexcept {
  const pid_t t = t_tid;
  return t != 0 ? t : fetch_tid();
}

// The sleep of one wait-loop iteration: at most a slice, at most what the deadline leaves.
std::chrono::nanoseconds next_sleep(const detail::posix::Deadline& d) {
  auto left = d.remaining();
  return left && *left < kSlice ? *left : kSlice;
}

// Placement-construct T at the start of a fresh (zero-filled) segment.
template <class T>
T* construct_in(shm::AnonymousSegment& seg) {
  static_assert(alignof(T) <= 4096, "a segment starts on a page boundary");
  return new (seg.data()) T();
}

}  // namespace

namespace detail {

// ---------------------------------------------------------------------------------------------------
// Lock and RLock
//
// The robust mutex does the mutual exclusion and the owner-death detection. Beside it, in the same
// cache line, the holder records its thread id (is_owned(), and a cheap "not yours" check before
// unlocking) and whether its acquire found the previous owner dead. These fields are written only by the
// holder, so a thread that reads its own tid in `owner` really is the holder: no other thread writes
// that value. After an owner death the field keeps the dead thread's tid until the next acquire, which
// overwrites it.
struct alignas(64) LockState {
  RobustMutex m;
  std::atomic<pid_t> owner{0};
  std::atomic<u32> died{0};
  std::atomic<u32> depth{0};  // RLock: acquisitions by the current owner
};

struct LockShared {
  explicit LockShared(bool recursive) : seg(sizeof(LockState)), st(construct_in<LockState>(seg)) {
    if (recursive)
      st->m.init_recursive();
    else
      st->m.init();
  }
  shm::AnonymousSegment seg;
  LockState* st;
};

}  // namespace detail

namespace {

// Lock: record what the acquire found. On EOWNERDEAD the mutex is made consistent at once: the lock has
// no state of its own to repair, and the user learns of the death through owner_died().
bool after_lock(detail::LockState& s, LockResult r) noexcept {
  if (r == LockResult::timed_out) return false;
  if (r == LockResult::owner_died) {
    s.m.make_consistent();
    s.died.store(1, std::memory_order_relaxed);
  } else if (s.died.load(std::memory_order_relaxed) != 0) {
    s.died.store(0, std::memory_order_relaxed);
  }
  s.owner.store(current_tid(), std::memory_order_relaxed);
  return true;
}

// RLock: as after_lock, counting re-entries. `depth` is read only by the thread now holding the mutex;
// it is 0 when the previous owner released fully, and stale only after an owner death (reset here).
bool after_rlock(detail::LockState& s, LockResult r) noexcept {
  if (r == LockResult::timed_out) return false;
  if (r == LockResult::owner_died) {
    s.m.make_consistent();  // glibc leaves a recursive mutex recovered this way held once
    s.died.store(1, std::memory_order_relaxed);
    s.depth.store(1, std::memory_order_relaxed);
  } else {
    const u32 depth = s.depth.load(std::memory_order_relaxed);
    if (depth == 0) s.died.store(0, std::memory_order_relaxed);
    s.depth.store(depth + 1, std::memory_order_relaxed);
  }
  s.owner.store(current_tid(), std::memory_order_relaxed);
  return true;
}

[[noreturn]] void not_owner(const char* what) {
  throw UsageError(std::string(what) + ": the calling thread does not hold the lock (nobody holds it, or "
                                       "another thread or process does)");
}

}  // namespace

Lock::Lock() : s_(std::make_shared<detail::LockShared>(false)) {}

void Lock::acquire() { after_lock(*s_->st, s_->st->m.lock()); }

bool Lock::acquire_for(std::chrono::nanoseconds timeout) {
  return after_lock(*s_->st, s_->st->m.lock(detail::posix::Deadline(timeout)));
}

bool Lock::try_acquire() { return after_lock(*s_->st, s_->st->m.try_lock()); }

void Lock::release() {
  auto& s = *s_->st;
  if (s.owner.load(std::memory_order_relaxed) != current_tid()) not_owner("Lock::release");
  // Cleared before the unlock: afterwards the next holder may already have written its own tid.
  s.owner.store(0, std::memory_order_relaxed);
  // The robust mutex checks its owner too; this catches a stale tid left by a dead owner and reused by
  // the kernel for this thread.
  if (!s.m.unlock_checked()) not_owner("Lock::release");
}

bool Lock::owner_died() const noexcept { return s_->st->died.load(std::memory_order_relaxed) != 0; }

bool Lock::is_owned() const noexcept { return s_->st->owner.load(std::memory_order_relaxed) == current_tid(); }

RLock::RLock() : s_(std::make_shared<detail::LockShared>(true)) {}

void RLock::acquire() { after_rlock(*s_->st, s_->st->m.lock()); }

bool RLock::acquire_for(std::chrono::nanoseconds timeout) {
  return after_rlock(*s_->st, s_->st->m.lock(detail::posix::Deadline(timeout)));
}

bool RLock::try_acquire() { return after_rlock(*s_->st, s_->st->m.try_lock()); }

void RLock::release() {
  auto& s = *s_->st;
  if (s.owner.load(std::memory_order_relaxed) != current_tid()) not_owner("RLock::release");
  const u32 depth = s.depth.load(std::memory_order_relaxed);
  if (depth <= 1) {
    s.depth.store(0, std::memory_order_relaxed);
    s.owner.store(0, std::memory_order_relaxed);
  } else {
    s.depth.store(depth - 1, std::memory_order_relaxed);
  }
  if (!s.m.unlock_checked()) not_owner("RLock::release");
}

bool RLock::owner_died() const noexcept { return s_->st->died.load(std::memory_order_relaxed) != 0; }

bool RLock::is_owned() const noexcept { return s_->st->owner.load(std::memory_order_relaxed) == current_tid(); }

// ---------------------------------------------------------------------------------------------------
// Semaphore: the value is the futex word itself. Waiters sleep while it is 0; release() adds a unit and
// wakes one sleeper if the sleeper count says there is one. All operations are sequentially consistent,
// so "waiters++ then read value" (waiter) and "value++ then read waiters" (releaser) cannot both miss.
namespace detail {

struct alignas(64) SemaphoreState {
  std::atomic<u32> value{0};
  std::atomic<u32> waiters{0};
  u32 max = 0;  // BoundedSemaphore: the initial value; else UINT32_MAX
};

struct SemaphoreShared {
  SemaphoreShared(unsigned value, bool bounded)
      : seg(sizeof(SemaphoreState)), st(construct_in<SemaphoreState>(seg)) {
    st->value.store(value);
    st->max = bounded ? value : std::numeric_limits<u32>::max();
  }
  shm::AnonymousSegment seg;
  SemaphoreState* st;
};

}  // namespace detail

static_assert(sizeof(unsigned) == sizeof(u32));

Semaphore::Semaphore(unsigned value) : Semaphore(value, false) {}
Semaphore::Semaphore(unsigned value, bool bounded) : s_(std::make_shared<detail::SemaphoreShared>(value, bounded)) {}
BoundedSemaphore::BoundedSemaphore(unsigned value) : Semaphore(value, true) {}

bool Semaphore::try_acquire() {
  auto& v = s_->st->value;
  u32 cur = v.load();
  while (cur > 0) {
    if (v.compare_exchange_weak(cur, cur - 1)) return true;
  }
  return false;
}

void Semaphore::acquire() { acquire_for(std::chrono::nanoseconds::max()); }

bool Semaphore::acquire_for(std::chrono::nanoseconds timeout) {
  if (try_acquire()) return true;
  auto& s = *s_->st;
  detail::posix::Deadline d(timeout == std::chrono::nanoseconds::max() ? std::nullopt
                                                                        : std::optional(timeout));
  for (;;) {
    if (d.expired()) {
      // Leaving without a unit: if a release() woke us (and not another sleeper) while we were giving
      // up, pass the wake-up on, so a unit never sits unused beside a sleeper.
      if (s.value.load() > 0 && s.waiters.load() > 0) shm::futex_wake(s.value, 1);
      return false;
    }
    s.waiters.fetch_add(1);
    if (s.value.load() == 0) shm::futex_wait(s.value, 0, next_sleep(d));
    s.waiters.fetch_sub(1);
    if (try_acquire()) return true;
  }
}

void Semaphore::release() {
  auto& s = *s_->st;
  u32 cur = s.value.load();
  do {
    if (cur >= s.max) {
      if (s.max == std::numeric_limits<u32>::max()) throw UsageError("Semaphore::release: value would overflow");
      throw UsageError("BoundedSemaphore::release: released more times than acquired (value is already " +
                       std::to_string(cur) + ")");
    }
  } while (!s.value.compare_exchange_weak(cur, cur + 1));
  if (s.waiters.load() > 0) shm::futex_wake(s.value, 1);
}

unsigned Semaphore::get_value() const noexcept { return s_->st->value.load(); }

// ---------------------------------------------------------------------------------------------------
// Event: one futex word, bit 0 = the flag, bits 1.. = the number of set() calls that turned it on (a
// generation). A waiter that saw the word unset returns true as soon as the word changes, since only a
// set() can change an unset word: so a set() followed at once by clear() still releases every waiter
// that was asleep, which a plain flag would not guarantee.
namespace detail {

struct alignas(64) EventState {
  std::atomic<u32> word{0};
  std::atomic<u32> waiters{0};
};

struct EventShared {
  EventShared() : seg(sizeof(EventState)), st(construct_in<EventState>(seg)) {}
  shm::AnonymousSegment seg;
  EventState* st;
};

}  // namespace detail

Event::Event() : s_(std::make_shared<detail::EventShared>()) {}

bool Event::is_set() const noexcept { return (s_->st->word.load() & 1u) != 0; }

void Event::set() noexcept {
  auto& s = *s_->st;
  u32 cur = s.word.load();
  do {
    if (cur & 1u) return;
  } while (!s.word.compare_exchange_weak(cur, (cur + 2u) | 1u));
  if (s.waiters.load() > 0) shm::futex_wake_all(s.word);
}

void Event::clear() noexcept { s_->st->word.fetch_and(~1u); }

bool Event::wait() { return wait_for_ns(std::nullopt); }

bool Event::wait_for_ns(std::optional<std::chrono::nanoseconds> timeout) {
  auto& s = *s_->st;
  const u32 seen = s.word.load();
  if (seen & 1u) return true;
  detail::posix::Deadline d(timeout);
  for (;;) {
    if (s.word.load() != seen) return true;
    if (d.expired()) return false;
    s.waiters.fetch_add(1);
    shm::futex_wait(s.word, seen, next_sleep(d));
    s.waiters.fetch_sub(1);
  }
}

// ---------------------------------------------------------------------------------------------------
// Condition: a table of waiter slots in shared memory, guarded by the condition's Lock.
//
// wait() takes a free slot, locks the slot's robust mutex (held for as long as it waits: the liveness
// token), stamps it with a ticket and marks it WAITING, releases the Lock and sleeps on the slot's state
// word. notify(n) marks the n oldest WAITING slots NOTIFIED and wakes each one's futex: an exact
// hand-off. Before giving a slot a token it try-locks the slot's mutex: EOWNERDEAD means the waiter died
// (the kernel releases a dead thread's robust mutexes when it exits, zombie or not), so the slot is
// freed and the token goes to the next waiter. The waiter decides "notified or timed out" only after
// re-acquiring the Lock, so notify and timeout cannot both count the same wait.
namespace detail {

constexpr u32 kFree = 0, kWaiting = 1, kNotified = 2;
constexpr u32 kConditionSlots = 1024;

struct alignas(64) WaiterSlot {
  RobustMutex m;
  std::atomic<u32> state{kFree};
  u64 ticket = 0;
};

struct ConditionState {
  u64 next_ticket = 0;
  u32 high = 0;  // slots [0, high) have been used
  WaiterSlot slots[kConditionSlots];
};

struct ConditionShared {
  ConditionShared() : seg(sizeof(ConditionState)), st(construct_in<ConditionState>(seg)) {
    for (auto& sl : st->slots) sl.m.init();
  }
  shm::AnonymousSegment seg;
  ConditionState* st;
};

}  // namespace detail

Condition::Condition() : Condition(Lock()) {}
Condition::Condition(Lock lock) : lock_(std::move(lock)), s_(std::make_shared<detail::ConditionShared>()) {}

bool Condition::wait_ns(std::optional<std::chrono::nanoseconds> timeout) {
  if (!lock_.is_owned()) throw UsageError("Condition::wait: the calling thread does not hold the condition's lock");
  detail::posix::Deadline d(timeout);
  auto& c = *s_->st;

  // Take a free slot (the Lock is held: the table is ours). A slot is marked FREE only after its mutex
  // was unlocked, so a FREE slot is lockable; owner_died there means a waiter died after locking the
  // slot and before marking it WAITING, and the slot is simply reused.
  detail::WaiterSlot* slot = nullptr;
  for (u32 i = 0; i < detail::kConditionSlots && slot == nullptr; ++i) {
    auto& sl = c.slots[i];
    if (sl.state.load() != detail::kFree) continue;
    auto r = sl.m.try_lock();
    if (r == LockResult::timed_out) continue;
    if (r == LockResult::owner_died) sl.m.make_consistent();
    slot = &sl;
    if (i >= c.high) c.high = i + 1;
  }
  if (slot == nullptr)
    throw Error("Condition::wait: more than " + std::to_string(detail::kConditionSlots) + " waiters at once");
  slot->ticket = c.next_ticket++;
  slot->state.store(detail::kWaiting);

  lock_.release();
  while (slot->state.load() != detail::kNotified && !d.expired())
    shm::futex_wait(slot->state, detail::kWaiting, next_sleep(d));
  // Re-acquired whatever the timeout (Python does the same): the caller expects to hold the lock.
  lock_.acquire();

  const bool notified = slot->state.load() == detail::kNotified;
  slot->m.unlock();
  slot->state.store(detail::kFree);
  return notified;
}

void Condition::notify(std::size_t n) {
  if (!lock_.is_owned())
    throw UsageError("Condition::notify: the calling thread does not hold the condition's lock");
  auto& c = *s_->st;
  // Give the slot a token if its waiter lives; free the slot of a dead one. True if a token was given.
  auto hand_token = [](detail::WaiterSlot& sl) {
    auto r = sl.m.try_lock();
    if (r == LockResult::timed_out) {  // held: its waiter is alive and waiting
      sl.state.store(detail::kNotified);
      shm::futex_wake(sl.state, 1);
      return true;
    }
    // EOWNERDEAD: the waiter died waiting. Acquired: it died between unlocking its slot and freeing
    // it (under the Lock, so only by dying). Either way nobody will take this token.
    if (r == LockResult::owner_died) sl.m.make_consistent();
    sl.m.unlock();
    sl.state.store(detail::kFree);
    return false;
  };

  std::size_t waiting = 0;
  for (u32 i = 0; i < c.high; ++i) waiting += c.slots[i].state.load() == detail::kWaiting;
  if (n >= waiting) {
    // Everyone (the common notify_all case): one pass, no ordering needed.
    for (u32 i = 0; i < c.high; ++i)
      if (c.slots[i].state.load() == detail::kWaiting) hand_token(c.slots[i]);
    return;
  }
  // Oldest first: n passes, each picking the smallest ticket still waiting.
  std::size_t given = 0;
  while (given < n) {
    detail::WaiterSlot* oldest = nullptr;
    for (u32 i = 0; i < c.high; ++i) {
      auto& sl = c.slots[i];
      if (sl.state.load() == detail::kWaiting && (oldest == nullptr || sl.ticket < oldest->ticket)) oldest = &sl;
    }
    if (oldest == nullptr) return;
    given += hand_token(*oldest);
  }
}

void Condition::notify_all() { notify(std::numeric_limits<std::size_t>::max()); }

// ---------------------------------------------------------------------------------------------------
// Barrier: Python's threading.Barrier algorithm (filling / draining / resetting / broken, a count of the
// parties inside wait()) under a robust mutex, with a futex sequence word as the condition variable.
// Each party inside wait() also holds a slot's robust mutex, so reset() can tell the dead from the
// slow and forget the dead: without that, a party killed while waiting would keep the count from ever
// draining to zero.
namespace detail {

enum : std::int32_t { kFilling = 0, kDraining = 1, kResetting = -1, kBroken = -2 };

struct alignas(64) BarrierSlot {
  RobustMutex m;
  std::atomic<u32> used{0};
};

struct alignas(64) BarrierState {
  RobustMutex m;
  u64 parties = 0;
  std::int32_t state = kFilling;
  u64 count = 0;
  std::atomic<u32> seq{0};
  std::atomic<u32> waiters{0};
};

struct BarrierShared {
  BarrierShared(std::size_t n, std::function<void()> act, std::optional<std::chrono::nanoseconds> t)
      : seg(sizeof(BarrierState) + n * sizeof(BarrierSlot)),
        st(construct_in<BarrierState>(seg)),
        slots(reinterpret_cast<BarrierSlot*>(static_cast<char*>(seg.data()) + sizeof(BarrierState))),
        action(std::move(act)),
        timeout(t) {
    st->m.init();
    st->parties = n;
    for (std::size_t i = 0; i < n; ++i) new (&slots[i]) BarrierSlot();
    for (std::size_t i = 0; i < n; ++i) slots[i].m.init();
  }
  shm::AnonymousSegment seg;
  BarrierState* st;
  BarrierSlot* slots;
  std::function<void()> action;  // process-local: each process runs its own copy
  std::optional<std::chrono::nanoseconds> timeout;
};

static_assert(sizeof(BarrierState) % alignof(BarrierSlot) == 0);

}  // namespace detail

namespace {

// The barrier's mutex, held for the lifetime of this object. A holder that died may have left the
// state half-changed (mid-action, mid-bookkeeping): the barrier is broken, which every party handles.
class BarrierGuard {
 public:
  explicit BarrierGuard(detail::BarrierState& s) : s_(s) { lock(); }
  ~BarrierGuard() { s_.m.unlock(); }
  BarrierGuard(const BarrierGuard&) = delete;
  BarrierGuard& operator=(const BarrierGuard&) = delete;

  // Wake everyone sleeping in wait_change().
  void notify_all() noexcept {
    s_.seq.fetch_add(1);
    if (s_.waiters.load() > 0) shm::futex_wake_all(s_.seq);
  }
  void break_barrier() noexcept {
    s_.state = detail::kBroken;
    notify_all();
  }
  // Release the mutex, sleep until notified (or a slice, or the deadline), re-acquire it.
  void wait_change(const detail::posix::Deadline& d) {
    const u32 seen = s_.seq.load();
    s_.waiters.fetch_add(1);
    s_.m.unlock();
    shm::futex_wait(s_.seq, seen, next_sleep(d));
    s_.waiters.fetch_sub(1);
    lock();
  }

 private:
  void lock() {
    if (s_.m.lock(detail::posix::Deadline(std::nullopt)) == LockResult::owner_died) {
      s_.m.make_consistent();
      break_barrier();
    }
  }
  detail::BarrierState& s_;
};

}  // namespace

Barrier::Barrier(std::size_t parties, std::function<void()> action, std::optional<std::chrono::nanoseconds> timeout) {
  if (parties == 0) throw UsageError("Barrier: parties must be at least 1");
  if (parties > std::numeric_limits<u32>::max()) throw UsageError("Barrier: too many parties");
  s_ = std::make_shared<detail::BarrierShared>(parties, std::move(action), timeout);
}

std::size_t Barrier::wait() { return wait_ns(s_->timeout); }

std::size_t Barrier::wait_ns(std::optional<std::chrono::nanoseconds> timeout) {
  auto& s = *s_->st;
  detail::posix::Deadline d(timeout);
  BarrierGuard g(s);

  // Wait while the previous pass drains or a reset completes. Python waits here without a timeout;
  // we apply the caller's, so a pass that never drains (a dead party) cannot hold a newcomer forever.
  while (s.state == detail::kDraining || s.state == detail::kResetting) {
    if (d.expired()) {
      g.break_barrier();
      throw BrokenBarrierError("Barrier::wait: timed out waiting for the previous pass to drain");
    }
    g.wait_change(d);
  }
  if (s.state == detail::kBroken) throw BrokenBarrierError();

  const std::size_t index = static_cast<std::size_t>(s.count++);
  // A slot for our liveness token: usually slots[index], which is free while filling.
  detail::BarrierSlot* slot = nullptr;
  for (std::size_t j = 0; j < s.parties && slot == nullptr; ++j) {
    auto& sl = s_->slots[(index + j) % s.parties];
    if (sl.used.load() != 0) continue;
    auto r = sl.m.try_lock();
    if (r == LockResult::timed_out) continue;
    if (r == LockResult::owner_died) sl.m.make_consistent();
    sl.used.store(1);
    slot = &sl;
  }

  // Python's `finally`: leave the count, and let the next pass in when the last one leaves.
  struct Leave {
    detail::BarrierState& s;
    detail::BarrierSlot* slot;
    BarrierGuard& g;
    ~Leave() {
      if (slot != nullptr) {
        slot->m.unlock();
        slot->used.store(0);
      }
      if (s.count > 0) --s.count;
      if (s.count == 0 && (s.state == detail::kResetting || s.state == detail::kDraining)) {
        s.state = detail::kFilling;
        g.notify_all();
      }
    }
  } leave{s, slot, g};

  if (index + 1 == s.parties) {
    // The last to arrive: run the action, then release the pass.
    try {
      if (s_->action) s_->action();
    } catch (...) {
      g.break_barrier();
      throw;
    }
    s.state = detail::kDraining;
    g.notify_all();
    return index;
  }
  while (s.state == detail::kFilling) {
    if (d.expired()) {
      g.break_barrier();
      throw BrokenBarrierError("Barrier::wait: timed out; the barrier is now broken for every party");
    }
    g.wait_change(d);
  }
  if (s.state != detail::kDraining) throw BrokenBarrierError();
  return index;
}

void Barrier::reset() {
  auto& s = *s_->st;
  BarrierGuard g(s);
  // Forget parties that died inside wait(): their slot mutexes report EOWNERDEAD (or are free while
  // the slot is still marked used: a death between the two stores that leave a slot). Then recount.
  u64 live = 0;
  for (std::size_t i = 0; i < s.parties; ++i) {
    auto& sl = s_->slots[i];
    if (sl.used.load() == 0) continue;
    auto r = sl.m.try_lock();
    if (r == LockResult::timed_out) {
      ++live;
      continue;
    }
    if (r == LockResult::owner_died) sl.m.make_consistent();
    sl.m.unlock();
    sl.used.store(0);
  }
  s.count = live;
  if (s.count > 0) {
    if (s.state == detail::kFilling || s.state == detail::kBroken) s.state = detail::kResetting;
  } else {
    s.state = detail::kFilling;
  }
  g.notify_all();
}

void Barrier::abort() {
  BarrierGuard g(*s_->st);
  g.break_barrier();
}

std::size_t Barrier::parties() const noexcept { return static_cast<std::size_t>(s_->st->parties); }

std::size_t Barrier::n_waiting() const {
  auto& s = *s_->st;
  BarrierGuard g(s);
  return s.state == detail::kFilling ? static_cast<std::size_t>(s.count) : 0;
}

bool Barrier::broken() const {
  auto& s = *s_->st;
  BarrierGuard g(s);
  return s.state == detail::kBroken;
}

}  // namespace mproc
